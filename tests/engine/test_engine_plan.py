"""make_plan: defaults from the preset, generation sizes, and the steps img2img really runs."""

from __future__ import annotations

from dataclasses import replace

import pytest
from engine_support import box_mask, rgba_image

from paintbridge.engine import GenerationRequest, Limits
from paintbridge.engine.plan import FALLBACK_STEPS, make_plan, prepare_inputs
from paintbridge.engine.presets import get_preset
from paintbridge.errors import InvalidRequest

SD15 = get_preset("sd15")
TURBO = get_preset("sd-turbo")
SDXL = get_preset("sdxl")
TXT = GenerationRequest(task="txt2img", prompt="a cat")
IMG = GenerationRequest(task="img2img", prompt="a cat", image=rgba_image(4000, 3000))


def test_defaults_come_from_the_preset() -> None:
    assert SD15 and TURBO
    plan = make_plan(TXT, model="sd15", native=512, preset=SD15, limits=Limits())
    assert (plan.steps, plan.guidance, plan.scheduler) == (
        SD15.steps,
        SD15.guidance,
        SD15.scheduler,
    )
    assert (plan.width, plan.height, plan.gen_size) == (512, 512, (512, 512))
    turbo = make_plan(TXT, model="sd-turbo", native=512, preset=TURBO, limits=Limits())
    assert (turbo.steps, turbo.guidance, turbo.denoise_steps) == (1, 0.0, 1)
    explicit = replace(TXT, steps=7, guidance=3.5, scheduler="ddim", width=640)
    plan = make_plan(explicit, model="sd15", native=512, preset=SD15, limits=Limits())
    assert (plan.steps, plan.guidance, plan.scheduler) == (7, 3.5, "ddim")
    assert (plan.width, plan.height) == (640, 512)
    bare = make_plan(TXT, model="x", native=64, preset=None, limits=Limits())
    assert (bare.steps, bare.scheduler, bare.gen_size) == (FALLBACK_STEPS, "default", (64, 64))


def test_a_large_crop_is_generated_at_the_native_size() -> None:
    assert SD15 and SDXL
    plan = make_plan(IMG, model="sd15", native=512, preset=SD15, limits=Limits())
    assert (plan.width, plan.height) == (4000, 3000)
    assert plan.gen_width % 8 == 0 and plan.gen_height % 8 == 0
    assert abs(plan.gen_width * plan.gen_height - 512 * 512) < 0.1 * 512 * 512
    assert abs(plan.gen_width / plan.gen_height - 4 / 3) < 0.05
    xl = make_plan(IMG, model="sdxl", native=1024, preset=SDXL, limits=Limits())
    assert abs(xl.gen_width * xl.gen_height - 1024 * 1024) < 0.1 * 1024 * 1024


def test_img2img_runs_int_steps_times_strength() -> None:
    assert SD15 and TURBO
    plan = make_plan(
        replace(IMG, steps=20, strength=0.5), model="m", native=512, preset=SD15, limits=Limits()
    )
    assert (plan.steps, plan.denoise_steps) == (20, 10)
    # a 1-step default at strength 0.5 would run no step: the default is raised to run one
    turbo = make_plan(
        replace(IMG, strength=0.5), model="t", native=512, preset=TURBO, limits=Limits()
    )
    assert (turbo.steps, turbo.denoise_steps) == (2, 1)
    low = make_plan(
        replace(IMG, strength=0.3), model="t", native=512, preset=TURBO, limits=Limits()
    )
    assert low.denoise_steps == 1 and low.steps == 4
    with pytest.raises(InvalidRequest, match="`strength` 0.001 is too low for the default steps"):
        make_plan(
            replace(IMG, strength=0.001), model="t", native=512, preset=TURBO, limits=Limits()
        )
    with pytest.raises(InvalidRequest, match="increase steps or strength"):
        make_plan(
            replace(IMG, steps=1, strength=0.5),
            model="t",
            native=512,
            preset=TURBO,
            limits=Limits(),
        )


def test_unknown_scheduler_is_refused_before_any_work() -> None:
    with pytest.raises(InvalidRequest, match="`scheduler` must be one of default, ddim"):
        make_plan(
            replace(TXT, scheduler="fancy"), model="m", native=64, preset=None, limits=Limits()
        )


def test_inputs_are_scaled_to_the_generation_size() -> None:
    image = rgba_image(70, 45, alpha=True)
    request = GenerationRequest(
        task="inpaint", prompt="x", image=image, mask=box_mask(70, 45, (30, 20, 40, 30))
    )
    plan = make_plan(request, model="m", native=64, preset=None, limits=Limits())
    inputs = prepare_inputs(request, plan)
    assert inputs.image is not None and inputs.mask is not None
    assert (inputs.image.mode, inputs.image.size) == ("RGB", plan.gen_size)
    assert (inputs.mask.mode, inputs.mask.size) == ("L", plan.gen_size)
    # grown: the pipeline repaints a margin around the selection
    scaled_box = 10 * plan.gen_width / 70 * 10 * plan.gen_height / 45
    assert sum(1 for v in inputs.mask.getdata() if v > 0) > 2 * scaled_box
