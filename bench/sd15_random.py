"""A full-size Stable Diffusion 1.5 pipeline with random weights, for timing.

The UNet, VAE and text encoder use SD 1.5's published configuration values, so a call costs the
same FLOPs as the real model; only the weights are random (the model hub is out of reach here).
The tokenizer is the tiny test model's (its vocabulary size does not change the cost). Built once
(a minute, about 4.3 GB in float32) into bench/.cache/, which git ignores.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

BUILD_VERSION = 1

# stable-diffusion-v1-5/stable-diffusion-v1-5: unet/config.json
UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": (
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ),
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "act_fn": "silu",
    "center_input_sample": False,
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "mid_block_scale_factor": 1,
}
# vae/config.json
VAE: dict[str, Any] = {
    "sample_size": 512,
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "act_fn": "silu",
}
# text_encoder/config.json (openai/clip-vit-large-patch14's text tower)
TEXT: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 768,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}
# scheduler/scheduler_config.json
SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}


def ensure_sd15_random(cache_dir: Path) -> Path:
    """The diffusers folder of the random-weight SD 1.5 pipeline, built on first use."""
    target = cache_dir / f"sd15-random-v{BUILD_VERSION}"
    if (target / "model_index.json").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".sd15-random-", dir=cache_dir))
    try:
        _build().save_pretrained(scratch, safe_serialization=True)
        os.rename(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _build() -> Any:
    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from paintbridge.engine.testmodel import ensure_test_model

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**UNET)
    torch.manual_seed(1)
    vae = AutoencoderKL(**VAE)
    torch.manual_seed(2)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT))
    tokenizer = CLIPTokenizer.from_pretrained(
        ensure_test_model("test:tiny") / "tokenizer", model_max_length=77
    )
    return StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=PNDMScheduler(**SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
