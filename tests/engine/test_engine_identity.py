"""test:identity: the engine's whole recipe with a pipeline that gives its input back."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from paintbridge.engine import Engine, EngineSettings, GenerationRequest
from paintbridge.errors import Cancelled


@pytest.fixture(scope="module")
def identity() -> Engine:
    engine = Engine(EngineSettings(default_model="test:identity"))
    engine.load()
    return engine


def _picture(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    pixels[..., 3] = 255
    pixels[: height // 2, : width // 2, 3] = np.linspace(0, 254, width // 2, dtype=np.uint8)
    return Image.fromarray(pixels, "RGBA")


@pytest.mark.parametrize("size", [(64, 64), (128, 32)])
def test_img2img_gives_the_image_back_pixel_for_pixel(identity: Engine, size) -> None:
    """Exactly: alpha everywhere, colour where opaque (any model sees transparent pixels over
    mid gray)."""
    image = _picture(*size)
    seen: list[tuple[int, int]] = []
    request = GenerationRequest("img2img", "x", image=image, steps=4, strength=0.5)
    result = identity.generate(request, progress=lambda done, total: seen.append((done, total)))
    out, original = np.asarray(result.images[0].image), np.asarray(image)
    opaque = original[..., 3] == 255
    assert np.array_equal(out[..., 3], original[..., 3])
    assert np.array_equal(out[opaque], original[opaque]) and (~opaque).any()
    assert seen == [(1, 2), (2, 2)]


def test_inpaint_gives_the_image_back_and_the_mask_as_alpha(identity: Engine) -> None:
    image = _picture(64, 64).convert("RGB").convert("RGBA")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    request = GenerationRequest("inpaint", "x", image=image, mask=mask, steps=2, strength=1.0)
    out = np.asarray(identity.generate(request).images[0].image)
    assert np.array_equal(out[..., :3], np.asarray(image)[..., :3])
    assert out[32, 32, 3] == 255 and out[0, 0, 3] == 0


def test_txt2img_is_seeded_noise_of_the_size_asked(identity: Engine) -> None:
    def make(seed: int) -> np.ndarray:
        request = GenerationRequest("txt2img", "x", width=64, height=64, steps=1, seed=seed)
        return np.asarray(identity.generate(request).images[0].image)

    assert make(1).shape == (64, 64, 4)
    assert np.array_equal(make(1), make(1)) and not np.array_equal(make(1), make(2))


def test_cancel_between_steps(identity: Engine) -> None:
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done == 3:
            cancel.set()

    request = GenerationRequest("txt2img", "x", width=64, height=64, steps=50)
    with pytest.raises(Cancelled):
        identity.generate(request, progress=progress, cancel=cancel)
