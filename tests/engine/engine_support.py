"""Helpers for the engine tests: small input images and masks, and a request of every task."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from paintbridge.engine import Engine, EngineSettings, GenerationRequest


def cpu_packs_bfloat16() -> bool:
    """Whether this CPU's oneDNN packs bfloat16 weights: it needs AVX512BW, VL and DQ or
    AVX-NE-CONVERT. Elsewhere prepack.py leaves every module as it was (and the engine runs
    float32 anyway, unless bfloat16 is forced)."""
    import torch

    from paintbridge.engine.prepack import prepack_convolutions

    return prepack_convolutions(torch.nn.Conv2d(1, 1, 1).to(torch.bfloat16)) == 1


needs_bf16_packing = pytest.mark.skipif(
    not cpu_packs_bfloat16(),
    reason="this CPU's oneDNN cannot pack bfloat16 weights (it needs AVX512BW/VL/DQ or "
    "AVX-NE-CONVERT); test_a_torch_that_cannot_pack_leaves_the_modules_as_they_were covers it",
)


def rgba_image(width: int, height: int, *, alpha: bool = False) -> Image.Image:
    """A colour gradient; with `alpha`, its alpha runs 0..255 from left to right."""
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    a = x if alpha else np.full_like(x, 255)
    pixels = np.dstack([x, y, 255 - x, a]).astype(np.uint8)
    return Image.fromarray(pixels, "RGBA")


def box_mask(width: int, height: int, box: tuple[int, int, int, int]) -> Image.Image:
    """An L mask: 255 inside `box` (left, top, right, bottom), 0 elsewhere."""
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, box)
    return mask


def assert_refused_keeping_the_loaded_model(
    settings: EngineSettings, name: str, error: type[Exception], message: str
) -> None:
    """Model `name` is refused (`error` matching `message`) by generate, load and check_model
    (what the server asks at submit, for a task or none) before the model loaded first
    (settings.default_model) is dropped: it stays loaded and still generates."""
    import pytest

    from paintbridge.engine.models import check_model

    engine = Engine(settings)
    engine.load()
    loaded = engine.loaded_model
    request = GenerationRequest("txt2img", "a cat", steps=1, width=64, height=64)
    with pytest.raises(error, match=message):
        engine.generate(replace(request, model=name))
    assert engine.loaded_model == loaded
    with pytest.raises(error, match=message):
        engine.load(name)
    assert engine.loaded_model == loaded
    for task in (None, "txt2img"):
        with pytest.raises(error, match=message):
            check_model(name, settings, task)
    assert engine.generate(request).images


def every_task(txt2img: GenerationRequest) -> tuple[GenerationRequest, ...]:
    """`txt2img`, it seamless on both axes, and a 64 px img2img and inpaint (a box mask)."""
    image = rgba_image(64, 64)
    mask = box_mask(64, 64, (16, 16, 48, 48))
    return (
        txt2img,
        replace(txt2img, seamless="xy"),
        GenerationRequest(task="img2img", prompt="x", image=image, steps=4),
        GenerationRequest(task="inpaint", prompt="x", image=image, mask=mask, steps=4),
    )
