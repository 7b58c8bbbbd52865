"""The speed-ups, checked on the CPU: channels_last (automatic on CUDA, and on the CPU in
bfloat16), the float32 UNet blocks' own forwards (guidance's shared work done once) and the
opt-in torch.compile leave the picture as it was and reach the pipelines of every task."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.resnet import ResnetBlock2D
from engine_support import box_mask, cpu_packs_bfloat16, every_task, rgba_image

from paintbridge.engine import Engine, EngineSettings, GenerationRequest
from paintbridge.engine import pipelines as pipelines_module
from paintbridge.engine.device import Placement
from paintbridge.engine.pipelines import channels_last_modules, compile_mode, speed_up
from paintbridge.engine.prepack import is_packed

REQUEST = GenerationRequest(task="txt2img", prompt="a red door", width=64, height=64, steps=2)


def pixels(engine: Engine, request: GenerationRequest = REQUEST) -> np.ndarray:
    result = engine.generate(replace(request, seed=5))
    return np.asarray(result.images[0].image).astype(int)


def assert_same_picture(a: np.ndarray, b: np.ndarray, dtype: str) -> None:
    """Within 1 level in float32. In bfloat16 another kernel rounds differently, and the tiny
    random model amplifies that: about a level apart on average, a few at worst."""
    difference = np.abs(a - b)
    if dtype == "float32":
        assert difference.max() <= 1
    else:
        assert difference.mean() < 2 and difference.max() <= 16


@pytest.mark.parametrize(
    ("device", "dtype", "expected"),
    [
        ("cuda", "float16", ("unet",)),
        ("cuda:1", "bfloat16", ("unet",)),
        ("cpu", "bfloat16", ("unet", "vae")),
        ("cpu", "float32", ()),
        ("mps", "float16", ()),
    ],
)
def test_channels_last_where_it_pays(device: str, dtype: str, expected: tuple[str, ...]) -> None:
    assert channels_last_modules(Placement(device=device, dtype=dtype)) == expected


@pytest.mark.parametrize(
    ("device", "saving", "expected"),
    [
        ("cuda", {}, "reduce-overhead"),
        ("cuda:1", {"low_memory": "auto"}, "reduce-overhead"),
        ("cuda", {"low_memory": "on"}, "default"),  # graphs keep their memory
        ("cuda", {"cpu_offload": True}, "default"),  # the weights move every image
        ("cpu", {}, "default"),
        ("mps", {}, "default"),
    ],
)
def test_compile_uses_cuda_graphs_on_cuda_unless_saving_memory(
    device: str, saving: dict, expected: str
) -> None:
    settings = EngineSettings(compile=True, **saving)
    assert compile_mode(Placement(device=device, dtype="float16"), settings) == expected


def test_compile_on_cuda_asks_torch_for_cuda_graphs() -> None:
    compiled: list[dict] = []

    class UNet:
        def to(self, **kwargs: object) -> None:
            pass

        def compile(self, **kwargs: object) -> None:
            compiled.append(kwargs)

    base = SimpleNamespace(unet=UNet())
    speed_up(base, Placement(device="cuda", dtype="float16"), EngineSettings(compile=True))
    assert compiled == [{"mode": "reduce-overhead"}]


def test_cpu_bfloat16_loads_unet_and_vae_channels_last_for_every_task() -> None:
    engine = Engine(EngineSettings(default_model="test:tiny", device="cpu", dtype="bfloat16"))
    engine.load()
    base = engine._model.base  # type: ignore[union-attr]
    # packed from channels_last (test_engine_prepack) where this CPU's oneDNN can; elsewhere as
    # diffusers made it, and every task still runs
    assert is_packed(base.unet.conv_in.weight) == cpu_packs_bfloat16()
    for conv in (base.vae.decoder.conv_in, base.vae.encoder.conv_in):
        assert conv.weight.dtype == torch.bfloat16
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    image = rgba_image(64, 64)
    mask = box_mask(64, 64, (16, 16, 48, 48))
    for request in (
        REQUEST,
        GenerationRequest(task="img2img", prompt="x", image=image, steps=4),
        GenerationRequest(task="inpaint", prompt="x", image=image, mask=mask, steps=4),
    ):
        assert engine._model.pipeline(request.task).vae is base.vae  # type: ignore[union-attr]
        assert pixels(engine, request)[..., :3].std() > 1


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_channels_last_makes_the_same_picture(dtype: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipelines_module, "prepacks", lambda placement, settings: False)
    monkeypatch.setattr(pipelines_module, "channels_last_modules", lambda p: ())
    plain = Engine(EngineSettings(default_model="test:tiny", device="cpu", dtype=dtype))
    plain.load()  # now, while nothing goes channels_last
    assert plain._model.base.unet.conv_in.weight.is_contiguous()  # type: ignore[union-attr]
    monkeypatch.setattr(pipelines_module, "channels_last_modules", lambda p: ("unet", "vae"))
    nhwc = Engine(EngineSettings(default_model="test:tiny", device="cpu", dtype=dtype))
    nhwc.load()
    unet = nhwc._model.base.unet  # type: ignore[union-attr]
    vae = nhwc._model.base.vae  # type: ignore[union-attr]
    for conv in (unet.conv_in, vae.decoder.conv_in, vae.encoder.conv_in):
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        assert not conv.weight.is_contiguous()  # really reordered, not a 1x1 corner case
    assert_same_picture(pixels(nhwc), pixels(plain), dtype)
    image = rgba_image(64, 64)
    img2img = GenerationRequest(task="img2img", prompt="x", image=image, steps=4)
    assert nhwc._model.pipeline("img2img").unet is unet  # type: ignore[union-attr]
    assert_same_picture(pixels(nhwc, img2img), pixels(plain, img2img), dtype)


def own_forwards(engine: Engine) -> list[bool]:
    """For each resnet and transformer block of the engine's UNet: has residuals.py's forward."""
    unet = engine._model.base.unet  # type: ignore[union-attr]
    blocks = [m for m in unet.modules() if isinstance(m, (BasicTransformerBlock, ResnetBlock2D))]
    return ["forward" in vars(block) for block in blocks]


def test_the_float32_unet_blocks_share_guidance_halves_and_make_the_same_picture(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ours = Engine(EngineSettings(default_model="test:tiny", device="cpu", dtype="float32"))
    ours.load()
    assert sum(own_forwards(ours)) >= 2  # the tiny UNet's up- and downsampling resnets stay
    monkeypatch.setattr(pipelines_module, "rewrites_unet_blocks", lambda placement, s: False)
    plain = Engine(EngineSettings(default_model="test:tiny", device="cpu", dtype="float32"))
    plain.load()
    assert not any(own_forwards(plain))
    for request in every_task(REQUEST):
        assert_same_picture(pixels(ours, request), pixels(plain, request), "float32")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_compile_is_opt_in_and_makes_the_same_picture(dtype: str) -> None:
    plain = Engine(EngineSettings(default_model="test:tiny", device="cpu", dtype=dtype))
    plain.load()
    assert plain._model.base.unet._compiled_call_impl is None  # type: ignore[union-attr]
    settings = EngineSettings(default_model="test:tiny", device="cpu", dtype=dtype, compile=True)
    compiled = Engine(settings)
    compiled.load()
    unet = compiled._model.base.unet  # type: ignore[union-attr]
    assert unet._compiled_call_impl is not None
    assert_same_picture(pixels(compiled), pixels(plain), dtype)
    assert compiled._model.pipeline("img2img").unet is unet  # type: ignore[union-attr]
