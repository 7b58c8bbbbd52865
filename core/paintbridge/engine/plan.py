"""From a checked request to what the pipeline is called with, and back. Pure: no torch.

`make_plan` fills the request's `None` fields from the model preset; `prepare_inputs` scales the
image and mask to the model's own resolution; `finish_image` scales a result back and puts it
together with the original (inpaint composite, img2img alpha).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image

from paintbridge import imageops
from paintbridge.engine.presets import Preset
from paintbridge.engine.schedulers import DEFAULT, check_scheduler_name
from paintbridge.engine.types import GenerationRequest, Limits
from paintbridge.engine.validation import check_denoising_steps, fewest_steps
from paintbridge.errors import InvalidRequest

# Defaults for models without a preset (local folders and files, test models).
FALLBACK_STEPS = 25
FALLBACK_GUIDANCE = 7.5
FALLBACK_SCHEDULER = DEFAULT  # the scheduler the model ships with


@dataclass(frozen=True)
class Plan:
    """Every resolved setting of one request: what runs, and what reproduces it."""

    task: str
    model: str
    steps: int  # num_inference_steps passed to the pipeline
    denoise_steps: int  # steps that actually run: int(steps * strength) for img2img/inpaint
    guidance: float
    strength: float
    scheduler: str
    width: int  # of the result
    height: int
    gen_width: int  # what the model generates at: ~native**2 pixels, multiples of 8
    gen_height: int
    seamless: str

    @property
    def gen_size(self) -> tuple[int, int]:
        return self.gen_width, self.gen_height

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def make_plan(
    request: GenerationRequest, *, model: str, native: int, preset: Preset | None, limits: Limits
) -> Plan:
    """Resolve the request's defaults for a model of `native` px with `preset` (or none).

    img2img and inpaint run int(steps * strength) steps, as in diffusers. When `steps` is left
    to the default and that would run no step at all, it is raised to the fewest steps that run
    one (a 1-step model at strength 0.5 gets steps=2); an explicit `steps` is never changed.
    A txt2img side left None is the model's native size. Every task generates at about
    native**2 pixels with the output's aspect (imageops.model_size) and is scaled to the output.
    """
    guidance = request.guidance
    if guidance is None:
        guidance = preset.guidance if preset else FALLBACK_GUIDANCE
    scheduler = request.scheduler or (preset.scheduler if preset else FALLBACK_SCHEDULER)
    check_scheduler_name(scheduler)
    edits = request.task in ("img2img", "inpaint")
    steps = request.steps
    if steps is None:
        steps = preset.steps if preset else FALLBACK_STEPS
        if edits:
            steps = max(steps, fewest_steps(request.strength))
        if steps > limits.max_steps:
            raise InvalidRequest(
                f"`strength` {request.strength} is too low for the default steps: it needs "
                f"{steps} steps, more than the limit of {limits.max_steps}; raise strength"
            )
    if edits:
        check_denoising_steps(steps, request.strength, limits.max_steps)
    denoise_steps = min(int(steps * request.strength), steps) if edits else steps
    if edits:
        assert request.image is not None
        width, height = request.image.size
    else:
        width = request.width or native
        height = request.height or native
    gen_width, gen_height = imageops.model_size(width, height, native)
    return Plan(
        task=request.task,
        model=model,
        steps=steps,
        denoise_steps=denoise_steps,
        guidance=float(guidance),
        strength=float(request.strength),
        scheduler=scheduler,
        width=width,
        height=height,
        gen_width=gen_width,
        gen_height=gen_height,
        seamless=request.seamless,
    )


@dataclass(frozen=True)
class Inputs:
    """Images for the pipeline, at the generation size (None for txt2img)."""

    image: Image.Image | None = None  # RGB
    mask: Image.Image | None = None  # L, grown and feathered: what the pipeline repaints


def prepare_inputs(request: GenerationRequest, plan: Plan) -> Inputs:
    """The request's image (and mask) as the pipeline takes them, at plan.gen_size.

    The mask is grown and feathered after scaling, in model pixels (imageops.INPAINT_GROW is one
    latent cell), so a large crop costs no more than a small one.
    """
    if plan.task == "txt2img":
        return Inputs()
    assert request.image is not None
    image = imageops.resize(
        imageops.rgb_for_model(imageops.shrink(request.image, plan.gen_size)), plan.gen_size
    )
    if plan.task == "img2img":
        return Inputs(image=image)
    assert request.mask is not None
    small = imageops.resize(imageops.to_mask(request.mask), plan.gen_size)
    return Inputs(image=image, mask=imageops.inpaint_mask(small))


def finish_image(generated: Image.Image, request: GenerationRequest, plan: Plan) -> Image.Image:
    """The RGBA result at the exact size asked: txt2img opaque, img2img with the original's
    alpha, inpaint composited so its alpha is the blend mask (0 wherever the mask was 0)."""
    if plan.task == "inpaint":  # the blend mask first: it needs the most scratch memory
        assert request.mask is not None
        blend = imageops.blend_mask(imageops.to_mask(request.mask))
    result = imageops.resize(generated.convert("RGB"), plan.size)
    if plan.task == "txt2img":
        return result.convert("RGBA")
    assert request.image is not None
    if plan.task == "img2img":
        return imageops.keep_alpha(result, request.image)
    return imageops.composite_inpaint(request.image, result, blend)


def parameters(plan: Plan, request: GenerationRequest, device: str, dtype: str) -> dict[str, Any]:
    """Everything needed to make the same images again (seeds are per image)."""
    return {
        "task": plan.task,
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "model": plan.model,
        "steps": plan.steps,
        "denoise_steps": plan.denoise_steps,
        "guidance": plan.guidance,
        "strength": plan.strength,
        "scheduler": plan.scheduler,
        "width": plan.width,
        "height": plan.height,
        "generated_width": plan.gen_width,
        "generated_height": plan.gen_height,
        "seamless": plan.seamless,
        "count": request.count,
        "dtype": dtype,
        "device": device,
    }
