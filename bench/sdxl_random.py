"""A full-size SDXL base pipeline with random weights, for timing on a GPU.

As bench/sd15_random.py, with SDXL base 1.0's published configuration values (two text
encoders, the 2.6 B parameter UNet); only the weights are random, and both tokenizers are the
tiny test model's. About 7 GB in float16, so it is built on the device it will run on, in float16
there (a CUDA card builds it in seconds; 14 GB of float32 built on a CPU would take minutes), into
bench/.cache/ (ignored by git).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sd15_random import TEXT, VAE

BUILD_VERSION = 1

# stabilityai/stable-diffusion-xl-base-1.0: unet/config.json
UNET: dict[str, Any] = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "act_fn": "silu",
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
}
# vae/config.json: SD 1.5's autoencoder, with its own scale, decoded in float32
VAE_XL: dict[str, Any] = {
    **VAE,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}
# text_encoder_2/config.json (laion/CLIP-ViT-bigG-14's text tower, with its projection)
TEXT_2: dict[str, Any] = {
    **TEXT,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}
# scheduler/scheduler_config.json
SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "prediction_type": "epsilon",
}


def ensure_sdxl_random(cache_dir: Path, device: str) -> Path:
    """The diffusers folder of the random-weight SDXL pipeline, built on `device` on first use."""
    target = cache_dir / f"sdxl-random-v{BUILD_VERSION}"
    if (target / "model_index.json").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".sdxl-random-", dir=cache_dir))
    try:
        _build(device).save_pretrained(scratch, safe_serialization=True)
        os.rename(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _build(device: str) -> Any:
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    from paintbridge.engine.testmodel import ensure_test_model

    dtype = torch.float32 if device == "cpu" else torch.float16
    tokenizer = CLIPTokenizer.from_pretrained(
        ensure_test_model("test:tiny") / "tokenizer", model_max_length=77
    )
    with torch.device(device):
        torch.manual_seed(0)
        unet = UNet2DConditionModel(**UNET).to(dtype)
        torch.manual_seed(1)
        vae = AutoencoderKL(**VAE_XL)  # small; float32 as SDXL decodes (force_upcast)
        torch.manual_seed(2)
        text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT)).to(dtype)
        torch.manual_seed(3)
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**TEXT_2)).to(dtype)
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(**SCHEDULER),
    )
