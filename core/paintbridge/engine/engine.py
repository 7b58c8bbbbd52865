"""`Engine`: one loaded model, three tasks, progress every step, cancel at the next step."""

from __future__ import annotations

import logging
import secrets
import threading
from traceback import format_exception
from typing import Any

from PIL import Image

from paintbridge.engine.allocator import keep_freed_memory
from paintbridge.engine.device import free_memory, resolve_placement, set_cpu_threads
from paintbridge.engine.models import check_task, resolve_model
from paintbridge.engine.pipelines import LoadedModel, load_model
from paintbridge.engine.plan import (
    Inputs,
    Plan,
    finish_image,
    make_plan,
    parameters,
    prepare_inputs,
)
from paintbridge.engine.schedulers import make_scheduler
from paintbridge.engine.seamless import seamless
from paintbridge.engine.types import (
    EngineSettings,
    GeneratedImage,
    GenerationRequest,
    GenerationResult,
    ProgressFn,
)
from paintbridge.engine.validation import MAX_SEED, check_request
from paintbridge.errors import Cancelled, GenerationFailed, PaintbridgeError

log = logging.getLogger(__name__)


class Engine:
    """Generates images with one model at a time on one device.

    Thread-safe: calls are serialised; `cancel` (a threading.Event) may be set from any thread.
    A request whose `model` is None uses `settings.default_model` (the server's `--model`), so
    the answer never depends on which model an earlier request happened to load.
    """

    def __init__(self, settings: EngineSettings | None = None) -> None:
        self.settings = settings if settings is not None else EngineSettings()
        self._placement = resolve_placement(self.settings.device, self.settings.dtype)
        if self.settings.cpu_threads is not None:
            set_cpu_threads(self.settings.cpu_threads)
        # On the CPU, activations reuse freed memory instead of faulting in fresh pages every
        # step: faster, for a higher peak, which low_memory="on" does not pay. The memory stays
        # for the next generation; `unload` (and the server's queue, once idle) give it back.
        self._keeps_freed_memory = (
            self._placement.device == "cpu"
            and self.settings.low_memory != "on"
            and keep_freed_memory()
        )
        self._model: LoadedModel | None = None
        self._lock = threading.RLock()

    @property
    def device(self) -> str:
        """The torch device generation runs on: cpu, cuda, cuda:N or mps."""
        return self._placement.device

    @property
    def dtype(self) -> str:
        """The weights' number type: float32, float16 or bfloat16."""
        return self._placement.dtype

    @property
    def loaded_model(self) -> str | None:
        """The name of the loaded model, as it was asked for; None before the first load."""
        model = self._model
        return model.name if model else None

    def load(self, model: str | None = None) -> None:
        """Load `model` (default: settings.default_model), replacing the loaded one if different.

        Downloads a preset on first use when allowed. The loaded model stays as it was when the
        name cannot be resolved or names a checkpoint whose header cannot be read.
        """
        with self._lock:
            self._load(model or self.settings.default_model)

    def unload(self) -> None:
        """Drop the loaded model and give its memory back."""
        with self._lock:
            self._model = None
            free_memory(self.device)

    def generate(
        self,
        request: GenerationRequest,
        *,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        """Make `request.count` images. Raises InvalidRequest, ModelNotFound, Cancelled (no
        image is returned, none is half-made) or GenerationFailed; the engine stays usable."""
        with self._lock:
            return self._generate(request, progress, cancel)

    def _generate(
        self,
        request: GenerationRequest,
        progress: ProgressFn | None,
        cancel: threading.Event | None,
    ) -> GenerationResult:
        # 1. Check the request: the one gate before any work.
        check_request(request, self.settings.limits)
        # 2. Load the model (nothing to do when it is loaded) and pick the task's pipeline.
        model = self._load(request.model or self.settings.default_model, request.task)
        pipe = model.pipeline(request.task)
        # 3. Resolve defaults from the model's preset.
        plan = make_plan(
            request,
            model=model.name,
            native=model.native,
            preset=model.preset,
            limits=self.settings.limits,
        )
        # 4. Prepare inputs at the model's own resolution.
        inputs = prepare_inputs(request, plan)
        first_seed = request.seed if request.seed is not None else secrets.randbelow(2**32)
        seeds = [(first_seed + i) % (MAX_SEED + 1) for i in range(request.count)]
        steps = _Steps(progress, cancel, request.count)
        try:
            images = self._make_images(model, pipe, request, plan, inputs, seeds, steps)
        except Exception as exc:
            failure = _without_frames(exc, self.device, plan)
        else:
            return GenerationResult(images, parameters(plan, request, self.device, self.dtype))
        # Out of the except block, the failed step's frames and the tensors they held are
        # gone, so the memory can really be given back (empty_cache skips live tensors).
        free_memory(self.device)
        raise failure

    def _make_images(
        self,
        model: LoadedModel,
        pipe: Any,
        request: GenerationRequest,
        plan: Plan,
        inputs: Inputs,
        seeds: list[int],
        steps: _Steps,
    ) -> list[GeneratedImage]:
        images: list[GeneratedImage] = []
        model.set_low_memory(self.settings.low_memory, plan.gen_width * plan.gen_height)
        pipe.scheduler = make_scheduler(plan.scheduler, model.scheduler_config)
        with seamless(model.modules(), plan.seamless):
            for seed in seeds:
                # 5. Denoise, reporting every step; cancel raises before decoding.
                generated = self._denoise(pipe, request, plan, inputs, seed, steps)
                # 6. Back to the size asked, composited with the original.
                images.append(GeneratedImage(finish_image(generated, request, plan), seed))
        return images

    # --- steps of the recipe -------------------------------------------------------------------

    def _load(self, name: str, task: str | None = None) -> LoadedModel:
        if self._model is not None and self._model.name == name:
            return self._model
        source = resolve_model(name, self.settings)
        # A model that cannot do the task, or whose checkpoint cannot be read, must not replace
        # the loaded one.
        check_task(source, task)
        if self._model is not None:
            # Drop the old weights before the new ones arrive: never two models in memory.
            self._model = None
            free_memory(self.device)
        try:
            self._model = load_model(source, self._placement, self.settings)
        except BaseException:
            free_memory(self.device)
            raise
        return self._model

    def _denoise(
        self,
        pipe: Any,
        request: GenerationRequest,
        plan: Plan,
        inputs: Inputs,
        seed: int,
        steps: _Steps,
    ) -> Image.Image:
        import torch

        steps.check_cancel()
        call: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt or None,
            "num_inference_steps": plan.steps,
            "guidance_scale": plan.guidance,
            "generator": torch.Generator("cpu").manual_seed(seed),
            "output_type": "pil",
            "callback_on_step_end": steps.on_step_end,
        }
        if plan.task == "txt2img":
            call.update(width=plan.gen_width, height=plan.gen_height)
        else:
            call.update(image=inputs.image, strength=plan.strength)
        if plan.task == "inpaint":
            call.update(mask_image=inputs.mask, width=plan.gen_width, height=plan.gen_height)
        return pipe(**call).images[0]


def _without_frames(exc: Exception, device: str, plan: Plan) -> PaintbridgeError:
    """The error to raise for a failed generation, holding no traceback: the frames of the
    failed step keep its tensors (gigabytes on a GPU) alive for as long as the error lives.
    torch and diffusers errors become GenerationFailed; the original is logged."""
    if isinstance(exc, PaintbridgeError):  # its own message says it all
        exc.__cause__ = exc.__context__ = None
        return exc.with_traceback(None)
    size = f"{plan.gen_width}x{plan.gen_height}"
    # Logged as text: a log record holding `exc` would keep its frames alive.
    if _is_out_of_memory(exc):
        log.warning("out of memory generating %s: %s", size, f"{type(exc).__name__}: {exc}")
        return GenerationFailed(
            f"out of memory on {device} generating {size} with {plan.model!r}: "
            f"{_out_of_memory_advice(device)}"
        )
    log.warning("generating with %r failed:\n%s", plan.model, "".join(format_exception(exc)))
    return GenerationFailed(
        f"generating with {plan.model!r} at {size} failed ({type(exc).__name__}: {exc}); "
        "the model files may be broken (download them again), or this is a bug to report"
    )


def _out_of_memory_advice(device: str) -> str:
    if device == "cpu":
        return (
            "close other programs, generate fewer images at once (count) or at a smaller "
            "size, turn low_memory on, or use a smaller model; the next job can run"
        )
    return (
        "turn low_memory on, use cpu_offload (CUDA), close other GPU programs, generate fewer "
        "images at once (count), or use a smaller model; the next job can run"
    )


# torch's CPU allocator raises a plain RuntimeError: "DefaultCPUAllocator: can't allocate memory"
_OUT_OF_MEMORY_WORDS = ("out of memory", "can't allocate memory", "cannot allocate memory")


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except AttributeError:  # an older torch without torch.OutOfMemoryError
        pass
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(words in text for words in _OUT_OF_MEMORY_WORDS)


class _Steps:
    """Counts denoising steps over all images of a request; cancels at the end of a step."""

    def __init__(
        self, progress: ProgressFn | None, cancel: threading.Event | None, count: int
    ) -> None:
        self.progress = progress
        self.cancel = cancel
        self.count = count
        self.done = 0

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("the generation was cancelled; no image was made")

    def on_step_end(self, pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict:
        # Raising here aborts the pipeline before the VAE decode: nothing half-made comes back.
        self.check_cancel()
        self.done += 1
        if self.progress is not None:
            # num_timesteps is the real count: int(steps * strength) for img2img and inpaint.
            self.progress(self.done, int(pipe.num_timesteps) * self.count)
        return kwargs
