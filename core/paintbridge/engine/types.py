"""The engine's request and result types. One request holds everything about a generation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image

Task = Literal["txt2img", "img2img", "inpaint"]
Seamless = Literal["none", "x", "y", "xy"]
TASKS: tuple[str, ...] = ("txt2img", "img2img", "inpaint")
SEAMLESS_AXES: tuple[str, ...] = ("none", "x", "y", "xy")

# progress(step, steps): called once after every denoising step; for count > 1 the steps of
# all images are counted together, so `step` runs 1..steps exactly once over the whole request.
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class GenerationRequest:
    """One generation, as the CLI, the server and the benchmarks describe it.

    `None` for model, steps, guidance or scheduler means "the model preset's default".
    `image` is RGBA (img2img, inpaint); `mask` is L, 255 = regenerate (inpaint).
    txt2img takes width/height; img2img and inpaint return the size of `image`.
    """

    task: Task
    prompt: str
    negative_prompt: str = ""
    model: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    strength: float = 0.75
    seed: int | None = None
    count: int = 1
    seamless: Seamless = "none"
    scheduler: str | None = None
    image: Image.Image | None = None
    mask: Image.Image | None = None


@dataclass(frozen=True)
class Limits:
    """What one request may ask for. The server and the CLI check these before any work."""

    max_pixels: int = 4096 * 4096  # of an input image or a txt2img output
    max_side: int = 8192
    max_steps: int = 150
    max_count: int = 8
    max_prompt_chars: int = 4000
    max_guidance: float = 50.0


@dataclass(frozen=True)
class GeneratedImage:
    image: Image.Image  # RGBA, the size the request asked for
    seed: int


@dataclass(frozen=True)
class GenerationResult:
    images: list[GeneratedImage]
    # Everything needed to reproduce the images (model, task, prompt, steps, guidance, strength,
    # scheduler, size, seamless...), resolved from the presets; written into PNG text chunks.
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineSettings:
    """How the engine runs; injected, never read from globals."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    dtype: str = "auto"  # auto | float32 | float16 | bfloat16
    default_model: str = "sd15"
    model_dirs: tuple[Path, ...] = ()  # folders searched for local models (and the only ones)
    allow_pickle: bool = False  # load .ckpt/.bin/.pt checkpoints (runs code from the file)
    low_memory: Literal["auto", "on", "off"] = "auto"  # attention slicing + VAE tiling; "on"
    # also keeps glibc's allocator defaults on a CPU (engine/allocator.py)
    cpu_offload: bool = False  # model CPU offload (CUDA only)
    limits: Limits = field(default_factory=Limits)
    # A diffusers folder (configs + tokenizer) of the same architecture, for loading a single
    # .safetensors checkpoint offline; None: the matching preset's repo from the HF cache/hub.
    single_file_config: Path | None = None
    # Accept model paths outside model_dirs (the CLI, for its own user); the server keeps False.
    allow_any_path: bool = False
    allow_download: bool = True  # fetch preset / repo models from the Hugging Face hub
    show_progress_bars: bool = False  # diffusers' own tqdm bars (progress also goes to callbacks)
    # torch CPU threads for the whole process; None keeps torch's default (one per core). On a
    # CPU shared with other busy processes, fewer threads than cores is much faster.
    cpu_threads: int | None = None
    # torch.compile the UNet when a model loads, with CUDA graphs on CUDA (opt-in: the first
    # image at each size waits for compilation, about a minute; on a GPU later steps run several
    # times faster, pipelines.compile_mode)
    compile: bool = False
