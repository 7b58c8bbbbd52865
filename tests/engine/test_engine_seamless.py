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


def _downsample_state(modules: list[Any]) -> list[tuple[int, Any, Any]]:
    from diffusers.models.downsampling import Downsample2D

    return [
        (id(m), m.__dict__.get("padding", "absent"), m.conv.__dict__.get("_conv_forward"))
        for root in modules
        for m in root.modules()
        if isinstance(m, Downsample2D)
    ]


def test_seamless_pads_a_downsample2d_circularly_on_the_tiled_axes_only() -> None:
    """diffusers' Downsample2D with padding=0 (the VAE encoder's) pads right and bottom with
    zeros in its own forward; within seamless those pads wrap on the tiled axes."""
    import torch.nn.functional as F
    from diffusers.models.downsampling import Downsample2D

    torch.manual_seed(0)
    down = Downsample2D(3, use_conv=True, out_channels=4, padding=0)
    x = torch.randn(1, 3, 8, 10)
    before = down(x)
    for axes, x_mode, y_mode in [("x", "circular", "constant"), ("y", "constant", "circular")]:
        padded = F.pad(F.pad(x, (0, 1, 0, 0), mode=x_mode), (0, 0, 0, 1), mode=y_mode)
        with seamless([down], axes) as changed:
            assert changed == 1
            assert torch.allclose(down(x), down.conv(padded), atol=1e-6)
        assert down.padding == 0 and "_conv_forward" not in down.conv.__dict__
    with pytest.raises(RuntimeError, match="boom"), seamless([down], "xy"):
        raise RuntimeError("boom")
    assert down.padding == 0 and "_conv_forward" not in down.conv.__dict__
    assert torch.equal(down(x), before)


def _periodic_image(size: int) -> torch.Tensor:
    """A smooth 3-channel picture whose period is its size on both axes (values in -1..1)."""
    y, x = np.mgrid[0:size, 0:size] * (2 * np.pi / size)
    channels = [np.sin(x) + 0.5 * np.cos(2 * y), np.cos(x + y), np.sin(y)]
    return torch.tensor(np.stack(channels) * 0.5, dtype=torch.float32)[None]


@pytest.mark.parametrize("axes", ["x", "y", "xy"])
def test_seamless_vae_encoder_wraps_around_along_the_tiled_axes(
    float32_engine: Engine, axes: str
) -> None:
    """img2img and inpaint encode the picture: shifting a periodic picture circularly shifts
    its latents (8 px a latent cell) along a tiled axis, the right and bottom edges included."""
    model = float32_engine._model
    vae = model.base.vae
    before = _downsample_state(model.modules())
    picture = _periodic_image(64)
    shift = 8 * SHIFT
    with seamless(model.modules(), axes), torch.no_grad():
        latents = vae.encode(picture).latent_dist.mean
        shifted_x = vae.encode(torch.roll(picture, shift, dims=3)).latent_dist.mean
        shifted_y = vae.encode(torch.roll(picture, shift, dims=2)).latent_dist.mean
    assert _downsample_state(model.modules()) == before
    error_x = (torch.roll(latents, SHIFT, dims=3) - shifted_x).abs().max().item()
    error_y = (torch.roll(latents, SHIFT, dims=2) - shifted_y).abs().max().item()
    assert bool(error_x < 1e-4) is ("x" in axes), error_x
    assert bool(error_y < 1e-4) is ("y" in axes), error_y


def test_seamless_decodes_whole_when_the_vae_tiles(float32_engine: Engine) -> None:
    """low_memory tiles the VAE, whose tiles wrap only within themselves: a seamless image is
    decoded (and encoded) whole, and the tiling is back on after the block, also after an
    error."""
    model = float32_engine._model
    vae = model.base.vae
    pipe = model.pipeline("txt2img")
    latents = torch.randn((1, 4, 4, 16), generator=torch.Generator().manual_seed(0))
    assert latents.shape[-1] > vae.tile_latent_min_size  # tiled decode, without seamless

    def image(latents: torch.Tensor) -> np.ndarray:
        out = pipe(prompt="a tiled floor", num_inference_steps=2, latents=latents,
                   height=32, width=128, output_type="np")  # fmt: skip
        return out.images[0]

    try:
        model.set_low_memory("on", 0)
        with seamless(model.modules(), "x"):
            assert not vae.use_tiling
            wide = image(latents)
            shifted = image(torch.roll(latents, SHIFT, dims=3))
        assert vae.use_tiling
        with pytest.raises(RuntimeError, match="boom"), seamless(model.modules(), "xy"):
            raise RuntimeError("boom")
        assert vae.use_tiling
    finally:
        model.set_low_memory("off", 0)
    error = np.abs(np.roll(wide, 8 * SHIFT, axis=1) - shifted).max()
    assert error < 1e-4, error
