"""Seamless: convolutions wrap around along the tiled axes, and are restored exactly after.

The tiny model's images are per-pixel noise (neighbouring columns differ as much as opposite
edges do, seamless or not), so comparing edges cannot show tiling. The exact property is tested
instead: an image wraps around when shifting the starting noise circularly shifts the image by
the same amount (8 px per latent cell), with no seam anywhere. That only holds along a tiled axis.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from paintbridge.engine import Engine, EngineSettings, GenerationRequest
from paintbridge.engine.seamless import seamless

SHIFT = 2  # latent cells; even, so the UNet's stride-2 downsampling sees the same grid


def _conv_state(modules: list[Any]) -> list[tuple[int, Any, str]]:
    return [
        (id(m), m.__dict__.get("_conv_forward"), m.padding_mode)
        for root in modules
        for m in root.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]


def test_seamless_conv_matches_a_circular_conv_and_is_restored() -> None:
    torch.manual_seed(0)
    plain = torch.nn.Conv2d(3, 5, 3, padding=1)
    circular = torch.nn.Conv2d(3, 5, 3, padding=1, padding_mode="circular")
    circular.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 6, 9)
    before = plain(x)
    with seamless([plain], "xy") as changed:
        assert changed == 1
        assert torch.allclose(plain(x), circular(x), atol=1e-6)
    with seamless([plain], "x"):  # circular along x only: the rows are padded with zeros
        wrapped_x = plain(x)
    assert torch.allclose(wrapped_x[..., 1:-1, :], circular(x)[..., 1:-1, :], atol=1e-6)
    assert not torch.allclose(wrapped_x[..., 0, :], circular(x)[..., 0, :])
    assert torch.equal(plain(x), before)
    assert "_conv_forward" not in plain.__dict__


def test_seamless_restores_after_an_error() -> None:
    conv = torch.nn.Conv2d(1, 1, 3, padding=1)
    with pytest.raises(RuntimeError, match="boom"), seamless([conv], "y"):
        raise RuntimeError("boom")
    assert "_conv_forward" not in conv.__dict__


def _image(pipe: Any, latents: torch.Tensor) -> np.ndarray:
    out = pipe(
        prompt="a tiled floor",
        num_inference_steps=2,
        latents=latents,
        height=64,
        width=64,
        output_type="np",
    )
    return out.images[0]


@pytest.fixture(scope="module")
def float32_engine() -> Iterator[Engine]:
    """The wrap-around property is exact only in float32: in bfloat16 (the CPU default where
    it is native), attention sums the shifted tokens in another order and rounds differently."""
    engine = Engine(EngineSettings(default_model="test:tiny", dtype="float32"))
    engine.load()
    yield engine
    engine.unload()


@pytest.mark.parametrize("axes", ["none", "x", "y", "xy"])
def test_seamless_images_wrap_around_along_the_tiled_axes(
    float32_engine: Engine, axes: str
) -> None:
    model = float32_engine._model
    pipe = model.pipeline("txt2img")
    before = _conv_state(model.modules())
    latents = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    with seamless(model.modules(), axes):
        image = _image(pipe, latents)
        shifted_x = _image(pipe, torch.roll(latents, SHIFT, dims=3))
        shifted_y = _image(pipe, torch.roll(latents, SHIFT, dims=2))
    assert _conv_state(model.modules()) == before
    error_x = np.abs(np.roll(image, 8 * SHIFT, axis=1) - shifted_x).max()
    error_y = np.abs(np.roll(image, 8 * SHIFT, axis=0) - shifted_y).max()
    assert bool(error_x < 1e-4) is ("x" in axes), error_x
    assert bool(error_y < 1e-4) is ("y" in axes), error_y
    if axes == "none":
        assert error_x > 0.05 and error_y > 0.05


def test_generate_with_seamless_changes_the_image_and_restores(engine: Any) -> None:
    request = GenerationRequest(task="txt2img", prompt="tiles", steps=2, seed=5, width=64)
    before = _conv_state(engine._model.modules())
    plain = engine.generate(request).images[0].image
    tiled = engine.generate(GenerationRequest(**{**request.__dict__, "seamless": "x"}))
    assert tiled.parameters["seamless"] == "x"
    assert tiled.images[0].image.tobytes() != plain.tobytes()
    assert _conv_state(engine._model.modules()) == before
    assert engine.generate(request).images[0].image.tobytes() == plain.tobytes()
