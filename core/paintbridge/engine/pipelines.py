"""Load one set of weights and derive the txt2img / img2img / inpaint pipelines from it.

The task pipelines come from `AutoPipelineFor*.from_pipe(base)`: they share every module with
the base pipeline, so switching task costs about a millisecond and no memory.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

from paintbridge.engine import checkpoint, hub
from paintbridge.engine.device import Placement
from paintbridge.engine.models import WEIGHT_COMPONENTS, WEIGHT_SUFFIXES, ModelSource
from paintbridge.engine.prepack import pack_weights
from paintbridge.engine.presets import Preset, preset_for_architecture
from paintbridge.engine.residuals import fuse_residuals
from paintbridge.engine.types import TASKS, EngineSettings
from paintbridge.errors import GenerationFailed, InvalidRequest, ModelNotFound, PaintbridgeError

log = logging.getLogger(__name__)
# Components paintbridge never loads. The SD 1.x safety checker is a 1.2 GB CLIP model that
# blacks out false positives; like AUTOMATIC1111 and ComfyUI we leave it out (and unloaded).
NOT_LOADED = ("safety_checker",)

# Above this many generated pixels, low_memory="auto" slices attention and tiles the VAE:
# beyond SDXL's native 1024x1024, where a 12 GB GPU starts to run out of memory. With a 5%
# margin: every task generates at about native**2 pixels (imageops.model_size), and rounding the
# sides to multiples of 8 lands up to 1.7% above it (1368x768 for 16:9 is 0.2% over 1024**2),
# which needs no more memory than 1024x1024 and should not get the slower paths.
LOW_MEMORY_PIXELS = 1024 * 1024 * 105 // 100


class LoadedModel:
    """The base pipeline of one model and the task pipelines derived from it (cached)."""

    def __init__(
        self, source: ModelSource, base: Any, placement: Placement, settings: EngineSettings
    ) -> None:
        self.source = source
        self.base = base
        self.placement = placement
        self.settings = settings
        self.scheduler_config = base.scheduler.config  # the model's own, kept for every switch
        self.inpaint_only = int(base.unet.config.in_channels) == 9
        self._pipes: dict[str, Any] = {_task_of(base): base}
        self._low_memory: bool | None = None
        self._configure(base)

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def preset(self) -> Preset | None:
        return self.source.preset

    @property
    def native(self) -> int:
        """The side, in pixels, of the square the model generates best at."""
        if self.source.native is not None:
            return self.source.native
        return int(self.base.unet.config.sample_size) * int(self.base.vae_scale_factor)

    @property
    def tasks(self) -> tuple[str, ...]:
        return ("inpaint",) if self.inpaint_only else TASKS

    def modules(self) -> list[Any]:
        """The modules whose convolutions shape the image (for seamless)."""
        return [self.base.unet, self.base.vae]

    def pipeline(self, task: str) -> Any:
        """The pipeline for `task`, sharing the base pipeline's modules."""
        if task not in self.tasks:
            raise InvalidRequest(
                f"model {self.name!r} is an inpainting model (its UNet takes 9 channels): it can "
                f"only inpaint, got task {task!r}; use a regular model (such as sd15) for {task}"
            )
        if task not in self._pipes:
            import diffusers

            auto = {
                "txt2img": diffusers.AutoPipelineForText2Image,
                "img2img": diffusers.AutoPipelineForImage2Image,
                "inpaint": diffusers.AutoPipelineForInpainting,
            }[task]
            try:
                pipe = auto.from_pipe(self.base)
            except ValueError as exc:
                raise InvalidRequest(
                    f"model {self.name!r} ({type(self.base).__name__}) has no {task} "
                    f"pipeline: {exc}"
                ) from exc
            self._configure(pipe)
            self._pipes[task] = pipe
        return self._pipes[task]

    def set_low_memory(self, mode: str, pixels: int) -> bool:
        """Attention slicing + VAE tiling for a generation of `pixels`; returns whether they are on.

        `mode` (settings.low_memory) "on": always; "off": never; "auto": when the generation is
        over LOW_MEMORY_PIXELS.
        """
        wanted = mode == "on" or (mode == "auto" and pixels > LOW_MEMORY_PIXELS)
        if wanted != self._low_memory:
            if wanted:
                self.base.enable_attention_slicing()
                self.base.vae.enable_tiling()
            else:
                self.base.disable_attention_slicing()
                self.base.vae.disable_tiling()
            self._low_memory = wanted
        return wanted

    def _configure(self, pipe: Any) -> None:
        """What from_pipe does not carry over: the progress bar setting and CPU offload."""
        pipe.set_progress_bar_config(disable=not self.settings.show_progress_bars)
        if offloads(self.settings, self.placement):
            pipe.enable_model_cpu_offload(device=self.placement.device)


def offloads(settings: EngineSettings, placement: Placement) -> bool:
    """Model CPU offload: only when asked for, and only on CUDA."""
    return settings.cpu_offload and placement.device.startswith("cuda")


def _task_of(pipe: Any) -> str:
    name = type(pipe).__name__
    if "Inpaint" in name:
        return "inpaint"
    return "img2img" if "Img2Img" in name else "txt2img"


def load_model(source: ModelSource, placement: Placement, settings: EngineSettings) -> LoadedModel:
    """Load the weights `source` names onto the device, ready to generate."""
    _quiet_transformers()
    if settings.cpu_offload and not offloads(settings, placement):
        log.warning("cpu_offload is ignored on %s: it only helps on a CUDA GPU", placement.device)
    if source.repo is not None:
        label = f"model {source.name!r}"
        folder = hub.download_pipeline(
            source.repo, label=label, allow_download=settings.allow_download, skip=NOT_LOADED
        )
        base = _from_pretrained(source.name, folder, placement)
    elif source.kind == "test":
        from paintbridge.engine.testmodel import ensure_test_model

        base = _from_pretrained(source.name, ensure_test_model(source.name), placement)
        if source.name == "test:identity":
            from paintbridge.engine.identity import IdentityModel

            base.to(placement.device)
            return IdentityModel(source, base, placement, settings)
    elif source.kind == "file":
        assert source.path is not None
        base = _from_single_file(source, placement, settings)
    else:
        assert source.path is not None
        base = _from_pretrained(source.name, source.path, placement)
    if not offloads(settings, placement):
        base.to(placement.device)
    speed_up(base, placement, settings)
    return LoadedModel(source, base, placement, settings)


def channels_last_modules(placement: Placement) -> tuple[str, ...]:
    """The pipeline modules whose weights go in channels_last (NHWC) order.

    On CUDA the UNet, as diffusers advises for cuDNN. On the CPU in bfloat16 the UNet and the
    VAE: oneDNN's bf16 convolutions run in NHWC without reordering every activation (bench/:
    UNet step 2.1 -> 1.75 s, VAE decode 5.4 -> 2.5 s at 512 px). In float32 on the CPU bench/
    measured no gain, so nothing changes there."""
    if placement.device.startswith("cuda"):
        return ("unet",)
    if placement.device == "cpu" and placement.dtype == "bfloat16":
        return ("unet", "vae")
    return ()


def prepacks(placement: Placement, settings: EngineSettings) -> bool:
    """Whether the UNet's weights are packed for oneDNN (prepack.py): in bfloat16 on the CPU,
    unless settings.compile (torch.compile traces the UNet's modules as diffusers made them)."""
    return placement.device == "cpu" and placement.dtype == "bfloat16" and not settings.compile


def rewrites_unet_blocks(placement: Placement, settings: EngineSettings) -> bool:
    """Whether the UNet's resnets and transformer blocks get residuals.py's forwards: on the CPU
    in any dtype, unless settings.compile. They compute guidance's shared work once (float32:
    3% of a step or more, the same result to float32 rounding) and, on packed weights, add
    residuals in oneDNN. Not on a GPU, where their check that the halves are equal would wait
    for the card."""
    return placement.device == "cpu" and not settings.compile


def compile_mode(placement: Placement, settings: EngineSettings) -> str:
    """torch.compile's mode for the UNet. On CUDA "reduce-overhead": CUDA graphs launch a step's
    kernels as one. There Python queues an SD 1.5 step's kernels no faster than an H200 runs
    them, so the card waits on launches: compiled with CUDA graphs a step took 8.8 ms against
    14.7 with the default mode and 36.5 uncompiled (bench/results/gpu-h200-2026-12-04-b.md).
    Graphs are recorded per image size, on the one thread that runs jobs, and keep their
    memory; so not where the user asked to save memory: CPU offload moves the weights, which
    the graphs would record again each image, and low_memory "on"."""
    saves_memory = offloads(settings, placement) or settings.low_memory == "on"
    graphs = placement.device.startswith("cuda") and not saves_memory
    return "reduce-overhead" if graphs else "default"


def speed_up(base: Any, placement: Placement, settings: EngineSettings) -> None:
    """channels_last, weights packed for oneDNN and the UNet blocks' own forwards, where they
    pay, and torch.compile of the UNet when settings.compile asks.

    All change the modules in place, so the task pipelines derived later (from_pipe) share
    them."""
    import torch

    for name in channels_last_modules(placement):
        getattr(base, name).to(memory_format=torch.channels_last)
    if prepacks(placement, settings):
        log.debug("packed for oneDNN: %s", pack_weights(base.unet))
    if rewrites_unet_blocks(placement, settings):
        log.debug("UNet blocks with our forwards: %s", fuse_residuals(base.unet))
    if settings.compile:
        # diffusers' bf16 upsampling asks is_torch_version (an lru_cache) on every call; dynamo
        # warns that it traces through the cache, which is harmless here.
        warnings.filterwarnings(
            "ignore",
            message="Dynamo detected a call to a `functools.lru_cache`",
            category=UserWarning,
        )
        base.unet.compile(mode=compile_mode(placement, settings))


def _quiet_transformers() -> None:
    """transformers warns on every load that torchvision (which we do not use: no image
    processor runs) is missing; keep its errors, drop that noise from the user's terminal."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()


def components_to_skip(folder: Path) -> dict[str, Any]:
    """from_pretrained keyword arguments that leave NOT_LOADED components out of `folder`."""
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    skip: dict[str, Any] = {name: None for name in NOT_LOADED if name in index}
    # Only the safety checker uses the image processor: a folder may well lack it.
    if "feature_extractor" in index and not (folder / "feature_extractor").is_dir():
        skip["feature_extractor"] = None
    if "requires_safety_checker" in index:
        skip["requires_safety_checker"] = False
    return skip


def _from_pretrained(name: str, folder: Any, placement: Placement) -> Any:
    from diffusers import DiffusionPipeline

    with _load_errors(name):
        base = DiffusionPipeline.from_pretrained(
            folder,
            dtype=placement.torch_dtype,
            local_files_only=True,
            variant=weights_variant(Path(folder)),
            **components_to_skip(Path(folder)),
        )
    return _complete(name, base)


def weights_variant(folder: Path) -> str | None:
    """The variant to load, "fp16", when a component of `folder` has only fp16-variant weights
    (`*.fp16.safetensors`, as save_pretrained(variant="fp16") names them), which
    from_pretrained otherwise does not look for; it then still loads plain files of the
    components that have no fp16 ones. None otherwise."""
    for component in WEIGHT_COMPONENTS:
        try:
            names = [p.name for p in (folder / component).iterdir()]
        except OSError:  # not in this model; or unreadable, which loading reports
            continue
        weights = [n for n in names if n.endswith(WEIGHT_SUFFIXES)]
        if weights and all(".fp16." in n or ".fp16-" in n for n in weights):  # -: a shard
            return "fp16"
    return None


def _complete(name: str, base: Any) -> Any:
    """`base`, unless a component's file lacked some of its weights: diffusers then leaves
    those empty ("meta" tensors) with a warning, and the job failed later with words about meta
    tensors that named neither the model nor the remedy."""
    for part in WEIGHT_COMPONENTS:
        module = getattr(base, part, None)
        if module is None or not hasattr(module, "named_parameters"):
            continue
        missing = [n for n, p in module.named_parameters() if p.device.type == "meta"]
        if missing:
            raise ModelNotFound(
                f"cannot load model {name!r}: its {part} weights lack {len(missing)} of its "
                f"tensors (such as {missing[0]}): the files are incomplete or from another "
                "model; download the model again"
            )
    return base


def _from_single_file(source: ModelSource, placement: Placement, settings: EngineSettings) -> Any:
    import diffusers

    assert source.path is not None
    info = checkpoint.inspect_checkpoint(source.path, allow_pickle=settings.allow_pickle)
    xl = "XL" if info.architecture == "sdxl" else ""
    kind = "Inpaint" if info.inpaint_only else ""
    cls = getattr(diffusers, f"StableDiffusion{xl}{kind}Pipeline")
    config = _single_file_config(source, info, settings)
    other_kind = (
        f"{str(config)!r}, the configuration folder, is of another kind of model than "
        f"{source.path.name!r} ({info.architecture}, {info.in_channels}-channel UNet): set "
        "`single_file_config` (CLI --model-config) to a diffusers folder of the same kind"
    )
    with _load_errors(source.name, other_kind=other_kind):
        # One configuration folder serves regular and inpainting checkpoints alike: the UNet's
        # input width (4 or 9 channels) is the checkpoint's, the rest is the folder's.
        parts: dict[str, Any] = {}
        if _unet_in_channels(Path(config)) not in (None, info.in_channels):
            parts["unet"] = diffusers.UNet2DConditionModel.from_single_file(
                str(source.path),
                config=str(config),
                subfolder="unet",
                in_channels=info.in_channels,
                dtype=placement.torch_dtype,
                local_files_only=True,
            )
        base = cls.from_single_file(
            str(source.path),
            config=str(config),
            dtype=placement.torch_dtype,
            local_files_only=True,
            **parts,
        )
    return _complete(source.name, base)


def _unet_in_channels(config: Path) -> int | None:
    """The UNet input channels of the diffusers folder `config`; None when it does not say."""
    try:
        unet = json.loads((config / "unet" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    channels = unet.get("in_channels") if isinstance(unet, dict) else None
    return channels if isinstance(channels, int) else None


def _single_file_config(
    source: ModelSource, info: checkpoint.CheckpointInfo, settings: EngineSettings
) -> Any:
    """A diffusers folder with configs + tokenizer matching the checkpoint's architecture."""
    explicit = settings.single_file_config
    if explicit is not None:
        if not (explicit / "model_index.json").is_file():
            raise InvalidRequest(
                f"`single_file_config` must be a diffusers folder (with model_index.json), got "
                f"{str(explicit)!r}"
            )
        return explicit
    kind = "inpainting " if info.inpaint_only else ""
    preset = (
        None
        if info.architecture == "sd2"
        else preset_for_architecture(info.architecture, inpaint=info.inpaint_only)
    )
    if preset is None:
        raise ModelNotFound(
            f"{source.path.name if source.path else source.name!r} is a {info.architecture} "
            f"{kind}checkpoint and paintbridge has no preset to take its configuration from: set "
            "`single_file_config` (CLI --model-config) to a diffusers folder of the same kind "
            "of model"
        )
    label = f"the configuration of {info.architecture} {kind}models (preset {preset.name!r})"
    instead = (
        "set `single_file_config` (CLI --model-config) to a diffusers folder of the same kind "
        "of model"
    )
    return hub.config_folder(
        preset.repo, label=label, allow_download=settings.allow_download, instead=instead
    )


class _load_errors:
    """Turn loading failures into errors that say which model and what to do. `other_kind`:
    what to say when a weight's shape is not the configuration's (a single-file checkpoint
    with a configuration folder of another architecture)."""

    def __init__(self, name: str, other_kind: str | None = None) -> None:
        self.name = name
        self.other_kind = other_kind

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _: Any) -> bool:
        if exc is None or isinstance(exc, PaintbridgeError) or not isinstance(exc, Exception):
            return False
        if self.other_kind is not None and "expected shape" in str(exc):
            raise InvalidRequest(f"cannot load model {self.name!r}: {self.other_kind}") from exc
        if isinstance(exc, PermissionError):
            path = Path(exc.filename) if exc.filename else Path(self.name)
            denied = checkpoint.permission_denied(path, exc)
            raise ModelNotFound(f"cannot load model {self.name!r}: {denied.message}") from exc
        if isinstance(exc, OSError) and _is_missing_file(exc):
            raise ModelNotFound(
                f"cannot load model {self.name!r}: {exc}: a file is missing; download the model "
                "again or check the folder"
            ) from exc
        if isinstance(exc, OSError):
            raise ModelNotFound(
                f"cannot load model {self.name!r}: {exc}: a file cannot be read (it may be "
                "incomplete or corrupt); download the model again"
            ) from exc
        raise GenerationFailed(
            f"cannot load model {self.name!r} ({type(exc).__name__}: {exc}): the model files "
            "may be incomplete or corrupt (download them again), or not a Stable Diffusion model"
        ) from exc


def _is_missing_file(exc: OSError) -> bool:
    """Whether a loading OSError says a file is not there (diffusers: "no file named ...")
    rather than that one is there and cannot be read ("Unable to load weights from ...")."""
    return isinstance(exc, FileNotFoundError) or "file named" in str(exc)
