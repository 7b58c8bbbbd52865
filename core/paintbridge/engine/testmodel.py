"""Tiny random-weight Stable Diffusion pipelines, built offline, for tests and demos.

They are real diffusers pipelines (UNet, 8x VAE, CLIP text encoder, tokenizer, scheduler) with
a few thousand random weights each, so they exercise every code path a real model does and
load through the same `from_pretrained` call. Their images are noise: they prove plumbing,
never quality.

Built deterministically (fixed seeds) into the cache folder the first time they are asked
for; a change to their definition changes BUILD_VERSION and so the folder name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from paintbridge import config

TEST_MODELS = ("test:tiny", "test:tiny-inpaint", "test:identity")
# test:identity loads test:tiny's weights but every task gives its input back (see identity.py).
_WEIGHTS_OF = {"test:identity": "test:tiny"}
TEST_MODEL_NATIVE = 64  # px; the tiny UNet's sample_size (8) times the VAE's 8x
BUILD_VERSION = 1

_UNET = dict(
    block_out_channels=(32, 64),
    layers_per_block=2,
    sample_size=8,
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=32,
    attention_head_dim=8,
    norm_num_groups=32,
)
_VAE = dict(
    block_out_channels=(32, 32, 32, 32),  # four levels: downsamples 8x, like real SD
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    latent_channels=4,
    layers_per_block=1,
    norm_num_groups=32,
    sample_size=TEST_MODEL_NATIVE,
)
_TEXT = dict(
    bos_token_id=0,
    eos_token_id=2,
    hidden_size=32,
    intermediate_size=37,
    layer_norm_eps=1e-05,
    num_attention_heads=4,
    num_hidden_layers=5,
    pad_token_id=1,
    vocab_size=1000,
    max_position_embeddings=77,
)
_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
)


def is_test_model(name: str) -> bool:
    return name in TEST_MODELS


def ensure_test_model(name: str) -> Path:
    """The diffusers folder of test model `name`, built on first use."""
    if name not in TEST_MODELS:
        raise ValueError(f"unknown test model {name!r}; test models are {', '.join(TEST_MODELS)}")
    kind = _WEIGHTS_OF.get(name, name).split(":", 1)[1]
    target = config.cache_dir() / "testmodels" / f"{kind}-v{BUILD_VERSION}"
    if (target / "model_index.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: a server and a test process may build at once.
    scratch = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=target.parent))
    try:
        _build(kind).save_pretrained(scratch, safe_serialization=True)
        try:
            os.rename(scratch, target)
        except OSError:
            if not (target / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _build(kind: str) -> Any:
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    inpaint = kind == "tiny-inpaint"
    torch.manual_seed(0)
    unet = UNet2DConditionModel(in_channels=9 if inpaint else 4, **_UNET)
    torch.manual_seed(1)
    vae = AutoencoderKL(**_VAE)
    torch.manual_seed(2)
    text_encoder = CLIPTextModel(CLIPTextConfig(**_TEXT))
    pipeline_class = StableDiffusionInpaintPipeline if inpaint else StableDiffusionPipeline
    return pipeline_class(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=_tokenizer(),
        scheduler=DDIMScheduler(**_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _byte_symbols() -> list[str]:
    """CLIP's byte-level alphabet: one printable character for each of the 256 bytes."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    symbols = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            symbols.append(256 + extra)
            extra += 1
    return [chr(code) for code in symbols]


def _tokenizer() -> Any:
    """A real CLIP BPE tokenizer with a tiny vocabulary, built without the hub."""
    from transformers import CLIPTokenizer

    symbols = _byte_symbols()
    merges = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>"), ("i", "n")]
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    with tempfile.TemporaryDirectory() as folder:
        vocab_file = Path(folder) / "vocab.json"
        merges_file = Path(folder) / "merges.txt"
        vocab_file.write_text(json.dumps(vocab), encoding="utf-8")
        merges_file.write_text(
            "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
        )
        return CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=77)


# --- a single-file (original Stable Diffusion layout) checkpoint of a test model -------------


def write_single_file_checkpoint(model_dir: Path, out: Path) -> Path:
    """Write the SD 1.x pipeline in `model_dir` as one original-layout .safetensors file,
    the kind a user downloads from a model site, for testing single-file loading."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(model_dir / "unet")
    vae = AutoencoderKL.from_pretrained(model_dir / "vae")
    text_encoder = CLIPTextModel.from_pretrained(model_dir / "text_encoder")
    state: dict[str, Any] = {}
    for key, value in unet_to_ldm(unet.state_dict(), unet.config).items():
        state["model.diffusion_model." + key] = value
    for key, value in vae_to_ldm(vae.state_dict(), vae.config).items():
        state["first_stage_model." + key] = value
    for key, value in text_encoder.state_dict().items():
        # transformers 5 dropped the `text_model.` level that original checkpoints have
        key = key if key.startswith("text_model.") else "text_model." + key
        state["cond_stage_model.transformer." + key] = value
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out))
    return out


_RESNET_TO_LDM = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
_UNET_TOP_LEVEL = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


def _rename(key: str, prefixes: list[tuple[str, str]]) -> str:
    for old, new in prefixes:
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def unet_to_ldm(state: dict[str, Any], cfg: Any) -> dict[str, Any]:
    """diffusers UNet2DConditionModel keys -> the original LDM `model.diffusion_model` keys."""
    per_level = cfg.layers_per_block
    levels = len(cfg.down_block_types)
    prefixes: list[tuple[str, str]] = [(k + ".", v + ".") for k, v in _UNET_TOP_LEVEL.items()]
    for i in range(levels):
        for j in range(per_level):
            ldm = f"input_blocks.{i * (per_level + 1) + j + 1}"
            prefixes.append((f"down_blocks.{i}.resnets.{j}.", f"{ldm}.0."))
            prefixes.append((f"down_blocks.{i}.attentions.{j}.", f"{ldm}.1."))
        if i < levels - 1:
            ldm = f"input_blocks.{(i + 1) * (per_level + 1)}.0.op."
            prefixes.append((f"down_blocks.{i}.downsamplers.0.conv.", ldm))
        has_attention = cfg.up_block_types[i].startswith("CrossAttn")
        for j in range(per_level + 1):
            ldm = f"output_blocks.{i * (per_level + 1) + j}"
            prefixes.append((f"up_blocks.{i}.resnets.{j}.", f"{ldm}.0."))
            prefixes.append((f"up_blocks.{i}.attentions.{j}.", f"{ldm}.1."))
        if i < levels - 1:
            ldm = f"output_blocks.{i * (per_level + 1) + per_level}.{2 if has_attention else 1}."
            prefixes.append((f"up_blocks.{i}.upsamplers.0.", ldm))
    prefixes += [
        ("mid_block.resnets.0.", "middle_block.0."),
        ("mid_block.attentions.0.", "middle_block.1."),
        ("mid_block.resnets.1.", "middle_block.2."),
    ]
    out = {}
    for key, value in state.items():
        out[_rename(_rename_resnet_part(key), prefixes)] = value
    return out


def _rename_resnet_part(key: str) -> str:
    """`...resnets.0.norm1.weight` -> `...resnets.0.in_layers.0.weight`; other keys unchanged."""
    match = re.search(r"resnets\.\d+\.", key)
    if not match:
        return key
    head, rest = key[: match.end()], key[match.end() :]
    for old, new in _RESNET_TO_LDM:
        if rest.startswith(old + "."):
            return head + new + rest[len(old) :]
    return key


def vae_to_ldm(state: dict[str, Any], cfg: Any) -> dict[str, Any]:
    """diffusers AutoencoderKL keys -> the original LDM `first_stage_model` keys."""
    levels = len(cfg.down_block_types)
    prefixes: list[tuple[str, str]] = [
        ("encoder.conv_norm_out.", "encoder.norm_out."),
        ("decoder.conv_norm_out.", "decoder.norm_out."),
    ]
    for i in range(levels):
        for j in range(cfg.layers_per_block):
            prefixes.append(
                (f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}.")
            )
        prefixes.append(
            (f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample.")
        )
        for j in range(cfg.layers_per_block + 1):
            prefixes.append(
                (f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{levels - 1 - i}.block.{j}.")
            )
        prefixes.append(
            (f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{levels - 1 - i}.upsample.")
        )
    for side in ("encoder", "decoder"):
        for j in range(2):
            prefixes.append((f"{side}.mid_block.resnets.{j}.", f"{side}.mid.block_{j + 1}."))
        prefixes.append((f"{side}.mid_block.attentions.0.", f"{side}.mid.attn_1."))
    attention = {
        "group_norm": "norm",
        "to_q": "q",
        "to_k": "k",
        "to_v": "v",
        "to_out.0": "proj_out",
    }
    out = {}
    for key, value in state.items():
        new = _rename(key, prefixes).replace("conv_shortcut", "nin_shortcut")
        if ".mid.attn_1." in new:
            head, _, tail = new.rpartition(".")
            base, _, part = head.partition(".mid.attn_1.")
            new = f"{base}.mid.attn_1.{attention.get(part, part)}.{tail}"
            if value.ndim == 2:  # the original stores these projections as 1x1 convolutions
                value = value[:, :, None, None]
        out[new] = value
    return out
