"""`check_request`: the one gate every request passes before any work. Pure: no torch.

Every message names the field and the value, and says what would be accepted.
"""

from __future__ import annotations

import math

from PIL import Image

from paintbridge.engine.schedulers import check_scheduler_name, check_scheduler_steps
from paintbridge.engine.types import SEAMLESS_AXES, TASKS, GenerationRequest, Limits
from paintbridge.errors import InvalidRequest, shown
from paintbridge.imageops import mask_is_empty, to_mask

MAX_SEED = 2**32 - 1


def check_request(request: GenerationRequest, limits: Limits) -> None:
    """Raise InvalidRequest for the first thing wrong with `request`; return None if all is well.

    Fields left `None` (model, steps, guidance, scheduler, txt2img size) are resolved later from
    the model preset and are not checked here.
    """
    if request.task not in TASKS:
        raise InvalidRequest(f"`task` must be one of {', '.join(TASKS)}, got {shown(request.task)}")
    _check_text("prompt", request.prompt, limits)
    _check_text("negative_prompt", request.negative_prompt, limits)
    if request.model is not None and (not isinstance(request.model, str) or not request.model):
        raise InvalidRequest(
            f"`model` must be a non-empty name or None, got {shown(request.model)}"
        )
    if request.scheduler is not None:
        if not isinstance(request.scheduler, str):
            raise InvalidRequest(f"`scheduler` must be a name or None, got {request.scheduler!r}")
        check_scheduler_name(request.scheduler)
    _check_size(request.width, request.height, limits)
    if request.steps is not None:
        _check_int("steps", request.steps, 1, limits.max_steps)
        if request.scheduler is not None:
            check_scheduler_steps(request.scheduler, request.steps)
    if request.guidance is not None:
        _check_float("guidance", request.guidance, 0.0, limits.max_guidance)
    _check_float("strength", request.strength, 0.0, 1.0)
    _check_int("count", request.count, 1, limits.max_count)
    if request.seed is not None:
        _check_int("seed", request.seed, 0, MAX_SEED)
    if request.seamless not in SEAMLESS_AXES:
        raise InvalidRequest(
            f"`seamless` must be one of {', '.join(SEAMLESS_AXES)}, got {shown(request.seamless)}"
        )
    if request.task in ("img2img", "inpaint"):
        check_denoising_steps(request.steps, request.strength, limits.max_steps)
        _check_image(request, limits)
    if request.task == "inpaint":
        _check_mask(request)


def fewest_steps(strength: float) -> int:
    """The fewest `steps` for which int(steps * strength), the steps img2img runs, is 1."""
    steps = math.ceil(1 / strength)
    return steps + (int(steps * strength) < 1)  # float rounding


def check_denoising_steps(steps: int | None, strength: float, max_steps: int) -> None:
    """img2img and inpaint run int(steps * strength) steps: at least one is needed. `steps`
    None (the model's default, raised as far as that needs) must stay within `max_steps`."""
    if strength <= 0:
        raise InvalidRequest(
            f"`strength` must be greater than 0 for img2img and inpaint (0 would return the "
            f"image unchanged), got {strength}"
        )
    if steps is None:
        if int(max_steps * strength) < 1:  # even max_steps would run no step
            # 1 / strength overflows for the tiniest (subnormal) strengths
            needed = fewest_steps(strength) if strength >= 1e-6 else "over a million"
            raise InvalidRequest(
                f"`strength` {strength} is too low for the default steps: it needs {needed} "
                f"steps, more than the limit of {max_steps}; raise strength"
            )
    elif int(steps * strength) < 1:
        raise InvalidRequest(
            f"`steps` * `strength` must be at least 1 (the model runs int(steps * strength) "
            f"steps), got {steps} * {strength}: increase steps or strength"
        )


def _check_text(name: str, value: object, limits: Limits) -> None:
    if not isinstance(value, str):
        raise InvalidRequest(f"`{name}` must be a string, got {type(value).__name__}")
    if len(value) > limits.max_prompt_chars:
        raise InvalidRequest(
            f"`{name}` must be at most {limits.max_prompt_chars} characters, got {len(value)}"
        )
    check_unicode(name, value)


def check_unicode(name: str, value: str) -> None:
    """Refuse lone UTF-16 surrogates: JSON may carry one ("\\ud800"), a command line one made
    of bytes that are not UTF-8; no tokenizer, PNG chunk or history line can hold one, so
    such a job would fail later (blaming the model) and its status could not be sent."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(
            f"`{name}` is not valid Unicode text: it holds a lone surrogate "
            f"{value[exc.start : exc.end]!r} at character {exc.start}; send UTF-8 text"
        ) from None


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"`{name}` must be an integer, got {value!r}")
    if not low <= value <= high:
        raise InvalidRequest(f"`{name}` must be in [{low}, {high}], got {value}")


def _check_float(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"`{name}` must be a number, got {value!r}")
    if not math.isfinite(value):
        raise InvalidRequest(f"`{name}` must be a finite number, got {value}")
    if not low <= value <= high:
        raise InvalidRequest(f"`{name}` must be in [{low:g}, {high:g}], got {value}")


def _check_size(width: int | None, height: int | None, limits: Limits) -> None:
    for name, value in (("width", width), ("height", height)):
        if value is not None:
            _check_int(name, value, 1, limits.max_side)
    if width is not None and height is not None and width * height > limits.max_pixels:
        raise InvalidRequest(
            f"`width` * `height` must be at most {limits.max_pixels} pixels, "
            f"got {width}x{height} = {width * height}"
        )


def _check_image(request: GenerationRequest, limits: Limits) -> None:
    image = request.image
    if image is None:
        raise InvalidRequest(f"`image` is required for {request.task}: send the picture to change")
    if not isinstance(image, Image.Image):
        raise InvalidRequest(f"`image` must be a PIL image, got {type(image).__name__}")
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidRequest(f"`image` must not be empty, got {width}x{height}")
    if max(width, height) > limits.max_side or width * height > limits.max_pixels:
        raise InvalidRequest(
            f"`image` must be at most {limits.max_side} px a side and {limits.max_pixels} pixels, "
            f"got {width}x{height}: send a smaller crop"
        )


def _check_mask(request: GenerationRequest) -> None:
    mask, image = request.mask, request.image
    assert image is not None  # checked by _check_image
    if mask is None:
        raise InvalidRequest("`mask` is required for inpaint: 255 where to regenerate, 0 to keep")
    if not isinstance(mask, Image.Image):
        raise InvalidRequest(f"`mask` must be a PIL image, got {type(mask).__name__}")
    if mask.size != image.size:
        raise InvalidRequest(
            f"`mask` must be the size of `image` ({image.width}x{image.height}), "
            f"got {mask.width}x{mask.height}"
        )
    if mask_is_empty(to_mask(mask)):
        raise InvalidRequest("the mask is empty: select the area to regenerate")
