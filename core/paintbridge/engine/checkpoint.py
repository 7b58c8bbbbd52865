"""What a single-file checkpoint holds: its architecture, read from its state-dict keys.

A `.safetensors` file is inspected from its header alone (no weights are read). A pickle file
(`.ckpt`, `.bin`, `.pt`, `.pth`) runs code when loaded, so it is only ever opened when the user
allowed it (`EngineSettings.allow_pickle`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paintbridge.errors import ModelNotFound, UnsafeModelFile

SAFE_SUFFIXES: tuple[str, ...] = (".safetensors",)
PICKLE_SUFFIXES: tuple[str, ...] = (".ckpt", ".bin", ".pt", ".pth")
CHECKPOINT_SUFFIXES = SAFE_SUFFIXES + PICKLE_SUFFIXES

_UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
_SDXL_PREFIX = "conditioner.embedders.1."  # OpenCLIP bigG, the second text encoder of SDXL base
_SD1_PREFIX = "cond_stage_model.transformer."  # CLIP ViT-L (transformers layout)
_SD2_PREFIX = "cond_stage_model.model."  # OpenCLIP ViT-H


@dataclass(frozen=True)
class CheckpointInfo:
    architecture: str  # sd1 | sd2 | sdxl
    in_channels: int  # 4, or 9 for an inpainting model

    @property
    def inpaint_only(self) -> bool:
        return self.in_channels == 9


def refuse_pickle(path: Path, allow_pickle: bool) -> None:
    """Raise UnsafeModelFile for a pickle checkpoint unless the user opted in."""
    if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
        raise UnsafeModelFile(
            f"{path.name!r} is a pickle checkpoint ({path.suffix}), which can run arbitrary code "
            "when loaded: use a .safetensors version of the model, or allow pickle files "
            "(`allow_pickle`, CLI --allow-pickle) only if you trust where it came from"
        )


def inspect_checkpoint(path: Path, *, allow_pickle: bool = False) -> CheckpointInfo:
    """The architecture of the original-layout Stable Diffusion checkpoint at `path`."""
    refuse_pickle(path, allow_pickle)
    keys, in_channels = _read_keys(path)
    if any(key.startswith(_SDXL_PREFIX) for key in keys):
        architecture = "sdxl"
    elif any(key.startswith(_SD1_PREFIX) for key in keys):
        architecture = "sd1"
    elif any(key.startswith(_SD2_PREFIX) for key in keys):
        architecture = "sd2"
    else:
        raise ModelNotFound(
            f"{path.name!r} is not a Stable Diffusion 1.x or XL checkpoint (no text encoder "
            "under cond_stage_model or conditioner): a LoRA, a VAE or a lone UNet cannot be "
            "loaded as a model; use a full checkpoint or a diffusers folder"
        )
    if in_channels is None:
        raise ModelNotFound(
            f"{path.name!r} has a text encoder but no UNet ({_UNET_IN} is missing): "
            "the file is incomplete; download it again"
        )
    return CheckpointInfo(architecture=architecture, in_channels=in_channels)


def permission_denied(path: Path, exc: OSError) -> ModelNotFound:
    """The error for a model file or folder that exists but that paintbridge may not read."""
    return ModelNotFound(
        f"cannot read {str(path)!r}: permission denied ({exc.strerror or exc}): give the user "
        "paintbridge runs as read access to it"
    )


def _read_keys(path: Path) -> tuple[list[str], int | None]:
    try:
        if not path.is_file():
            raise ModelNotFound(f"no model file at {str(path)!r}: check the path")
        with path.open("rb"):  # safetensors calls a file it may not read "No such file"
            pass
    except PermissionError as exc:
        raise permission_denied(path, exc) from exc
    try:
        if path.suffix.lower() in SAFE_SUFFIXES:
            return _read_safetensors_keys(path)
        return _read_pickle_keys(path)
    except Exception as exc:  # OSError, SafetensorError, pickle and zip errors...
        raise ModelNotFound(
            f"cannot read {str(path)!r} as a checkpoint ({exc}): the file may be incomplete or "
            "corrupt; download it again"
        ) from exc


def _read_safetensors_keys(path: Path) -> tuple[list[str], int | None]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        keys = list(handle.keys())
        in_channels = handle.get_slice(_UNET_IN).get_shape()[1] if _UNET_IN in keys else None
    return keys, in_channels


def _read_pickle_keys(path: Path) -> tuple[list[str], int | None]:
    import torch

    try:  # mmap reads lazily, but only the zip format (torch >= 1.6) supports it
        state: Any = torch.load(str(path), map_location="cpu", weights_only=False, mmap=True)
    except RuntimeError:
        state = torch.load(str(path), map_location="cpu", weights_only=False)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"expected a state dict, found {type(state).__name__}")
    weight = state.get(_UNET_IN)
    return list(state), (int(weight.shape[1]) if weight is not None else None)
