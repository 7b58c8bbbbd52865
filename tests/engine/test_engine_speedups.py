"""The GPU speed-ups, checked on the CPU: channels_last (automatic on CUDA) and the opt-in
torch.compile leave the picture as it was and reach the pipelines of every task."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from engine_support import rgba_image

from paintbridge.engine import Engine, EngineSettings, GenerationRequest
from paintbridge.engine import pipelines as pipelines_module
from paintbridge.engine.device import Placement
from paintbridge.engine.pipelines import uses_channels_last

REQUEST = GenerationRequest(task="txt2img", prompt="a red door", width=64, height=64, steps=2)


def pixels(engine: Engine, request: GenerationRequest = REQUEST) -> np.ndarray:
    result = engine.generate(replace(request, seed=5))
    return np.asarray(result.images[0].image).astype(int)


@pytest.mark.parametrize(
    ("device", "expected"), [("cuda", True), ("cuda:1", True), ("cpu", False), ("mps", False)]
)
def test_channels_last_on_cuda_only(device: str, expected: bool) -> None:
    assert uses_channels_last(Placement(device=device, dtype="float16")) is expected


def test_a_channels_last_unet_makes_the_same_picture(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipelines_module, "uses_channels_last", lambda placement: True)
    nhwc = Engine(EngineSettings(default_model="test:tiny", device="cpu"))
    nhwc.load()
    unet = nhwc._model.base.unet  # type: ignore[union-attr]
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert not unet.conv_in.weight.is_contiguous()  # really reordered, not a 1x1 corner case
    assert np.abs(pixels(nhwc) - pixels(engine)).max() <= 1
    image = rgba_image(64, 64)
    img2img = GenerationRequest(task="img2img", prompt="x", image=image, steps=4)
    assert nhwc._model.pipeline("img2img").unet is unet  # type: ignore[union-attr]
    assert np.abs(pixels(nhwc, img2img) - pixels(engine, img2img)).max() <= 1


def test_compile_is_opt_in_and_makes_the_same_picture(engine: Engine) -> None:
    assert engine._model.base.unet._compiled_call_impl is None  # type: ignore[union-attr]
    compiled = Engine(EngineSettings(default_model="test:tiny", device="cpu", compile=True))
    compiled.load()
    unet = compiled._model.base.unet  # type: ignore[union-attr]
    assert unet._compiled_call_impl is not None
    assert np.abs(pixels(compiled) - pixels(engine)).max() <= 1
    assert compiled._model.pipeline("img2img").unet is unet  # type: ignore[union-attr]
