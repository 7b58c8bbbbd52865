"""Weights packed once for oneDNN (the bf16 UNet on the CPU): the same outputs, the same number
of weights, every task and seamless still work, and a torch that cannot pack changes nothing."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers.models.activations import GEGLU
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from engine_support import every_task, needs_bf16_packing

from paintbridge.engine import Engine, EngineSettings, GenerationRequest, prepack
from paintbridge.engine import pipelines as pipelines_module
from paintbridge.engine.device import Placement
from paintbridge.engine.pipelines import prepacks, rewrites_unet_blocks
from paintbridge.engine.prepack import (
    fuse_geglu,
    is_packed,
    pack_linears,
    prepack_convolutions,
)
from paintbridge.engine.seamless import seamless

REQUEST = GenerationRequest(task="txt2img", prompt="a red door", width=64, height=64, steps=2)


class Custom(torch.nn.Conv2d):
    """A subclass may read its dense weight in its own forward: never packed."""


def convolutions() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(4, 32, 3, padding=1),
        torch.nn.Conv2d(32, 32, 3, stride=2, padding=1),
        torch.nn.Conv2d(32, 16, 1),
        torch.nn.Conv2d(16, 16, 3, padding=1, groups=4, bias=False),
        torch.nn.Conv2d(16, 16, 3, padding=2, dilation=2),
        torch.nn.Conv2d(16, 16, 3, padding="same"),  # a string padding: kept as it is
        torch.nn.Conv2d(16, 16, 3, padding=1, padding_mode="reflect"),  # kept
        Custom(16, 8, 3, padding=1),  # kept
    ).to(torch.bfloat16)


@needs_bf16_packing
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_packed_convolutions_give_the_same_outputs(layout: torch.memory_format) -> None:
    dense = convolutions().to(memory_format=layout)
    packed = copy.deepcopy(dense)
    with torch.inference_mode():
        assert prepack_convolutions(packed) == 5
        assert [is_packed(m.weight) for m in packed] == [True] * 5 + [False] * 3
        assert prepack_convolutions(packed) == 0  # already packed
        for shape in ((2, 4, 16, 16), (1, 4, 24, 40)):  # any batch and size, not just the first
            x = torch.randn(shape).to(torch.bfloat16).contiguous(memory_format=layout)
            torch.testing.assert_close(packed(x), dense(x), rtol=0.02, atol=0.02)
    assert sum(p.numel() for p in packed.parameters()) == sum(p.numel() for p in dense.parameters())


@needs_bf16_packing
def test_seamless_wraps_a_packed_convolution_and_restores_it() -> None:
    dense = convolutions()[:2]
    packed = copy.deepcopy(dense)
    prepack_convolutions(packed)
    packed_forward = packed[0]._conv_forward
    x = torch.randn(1, 4, 12, 20).to(torch.bfloat16)
    with torch.inference_mode():
        unwrapped = packed(x)
        with seamless([dense], "x"), seamless([packed], "x") as changed:
            assert changed == 2
            wrapped = packed(x)
            torch.testing.assert_close(wrapped, dense(x), rtol=0.02, atol=0.02)
        assert not torch.allclose(wrapped, unwrapped)
        assert packed[0]._conv_forward is packed_forward
        torch.testing.assert_close(packed(x), dense(x), rtol=0.02, atol=0.02)


@needs_bf16_packing
@pytest.mark.parametrize("bias", [True, False])
def test_fused_geglu_gives_the_same_outputs(bias: bool) -> None:
    torch.manual_seed(0)
    dense = torch.nn.Sequential(GEGLU(32, 64, bias=bias), torch.nn.Linear(64, 8)).bfloat16()
    fused = copy.deepcopy(dense)
    with torch.inference_mode():
        assert fuse_geglu(fused) == 1
        assert fuse_geglu(fused) == 0  # already fused
        assert not hasattr(fused[0], "proj") and is_packed(fused[0].gate_weight)
        assert not is_packed(fused[1].weight)  # other linears stay as they are
        for shape in ((2, 77, 32), (1, 5, 32)):
            x = torch.randn(shape).to(torch.bfloat16)
            torch.testing.assert_close(fused(x), dense(x), rtol=0.03, atol=0.03)
    assert sum(p.numel() for p in fused.parameters()) == sum(p.numel() for p in dense.parameters())


class CustomLinear(torch.nn.Linear):
    """A subclass may read its dense weight in its own forward: never packed."""


@needs_bf16_packing
def test_packed_linears_give_the_same_outputs() -> None:
    torch.manual_seed(0)
    dense = torch.nn.Sequential(
        torch.nn.Linear(32, 64),
        torch.nn.Linear(64, 16, bias=False),
        CustomLinear(16, 8),  # kept
    ).bfloat16()
    packed = copy.deepcopy(dense)
    with torch.inference_mode():
        assert pack_linears(packed) == 2
        assert [is_packed(m.weight) for m in packed] == [True, True, False]
        assert pack_linears(packed) == 0  # already packed
        for x in (
            torch.randn(2, 77, 32),
            torch.randn(5, 32),
            torch.randn(3, 32, 7).transpose(1, 2),  # not contiguous
        ):
            x = x.to(torch.bfloat16)
            torch.testing.assert_close(packed(x), dense(x), rtol=0.03, atol=0.03)
    assert sum(p.numel() for p in packed.parameters()) == sum(p.numel() for p in dense.parameters())


def test_a_torch_that_cannot_pack_leaves_the_modules_as_they_were(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: object) -> None:
        raise RuntimeError("no oneDNN kernel for this")

    monkeypatch.setattr(prepack, "_pack", refuse)
    monkeypatch.setattr(prepack, "_fuse", refuse)
    monkeypatch.setattr(prepack, "_pack_linear", refuse)
    module = torch.nn.Sequential(
        convolutions(),
        torch.nn.Flatten(2, 3),
        GEGLU(16, 4).bfloat16(),
        torch.nn.Linear(4, 4).bfloat16(),
    )
    x = torch.randn(1, 4, 8, 8).to(torch.bfloat16)
    before = module(x)
    assert prepack_convolutions(module) == 0 and fuse_geglu(module) == 0
    assert pack_linears(module) == 0
    assert not any(is_packed(p) for p in module.parameters())
    assert torch.equal(module(x), before)


@pytest.mark.parametrize(
    ("device", "dtype", "compile", "packed", "own_forwards"),
    [
        ("cpu", "bfloat16", False, True, True),
        ("cpu", "bfloat16", True, False, False),  # torch.compile traces diffusers' modules
        ("cpu", "float32", False, False, True),  # packing gains nothing; the shared halves do
        ("cpu", "float32", True, False, False),
        ("cuda", "bfloat16", False, False, False),  # checking the halves would wait for the card
        ("mps", "float16", False, False, False),
    ],
)
def test_packing_and_the_blocks_own_forwards_only_where_they_pay(
    device: str, dtype: str, compile: bool, packed: bool, own_forwards: bool
) -> None:
    settings = EngineSettings(device=device, dtype=dtype, compile=compile)
    placement = Placement(device=device, dtype=dtype)
    assert prepacks(placement, settings) is packed
    assert rewrites_unet_blocks(placement, settings) is own_forwards


def fused(module: torch.nn.Module, method: str) -> bool:
    """Whether residuals.py gave `module` its own `method`."""
    return method in vars(module)


def pixels(engine: Engine, request: GenerationRequest) -> np.ndarray:
    result = engine.generate(replace(request, seed=5))
    return np.asarray(result.images[0].image).astype(int)


@needs_bf16_packing
def test_the_engine_packs_the_bf16_unet_and_makes_the_same_pictures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    packed = Engine(EngineSettings(default_model="test:tiny", device="cpu", dtype="bfloat16"))
    packed.load()
    base = packed._model.base  # type: ignore[union-attr]
    unet_convs = [m for m in base.unet.modules() if isinstance(m, torch.nn.Conv2d)]
    assert unet_convs and all(is_packed(m.weight) for m in unet_convs)
    unet_linears = [m for m in base.unet.modules() if isinstance(m, torch.nn.Linear)]
    assert unet_linears and all(is_packed(m.weight) for m in unet_linears)
    geglus = [m for m in base.unet.modules() if isinstance(m, GEGLU)]
    assert geglus and all(is_packed(m.gate_weight) for m in geglus)
    transformers = [m for m in base.unet.modules() if isinstance(m, Transformer2DModel)]
    assert transformers and all(fused(m, "_get_output_for_continuous_inputs") for m in transformers)
    blocks = [m for m in base.unet.modules() if isinstance(m, BasicTransformerBlock)]
    assert blocks and all(fused(m, "forward") for m in blocks)
    assert not any(is_packed(m.weight) for m in base.vae.modules() if hasattr(m, "weight"))
    assert base.unet.dtype == torch.bfloat16  # diffusers reads it from the first parameter

    # dense and exact: as diffusers runs them, in bf16 and float32
    monkeypatch.setattr(pipelines_module, "prepacks", lambda placement, settings: False)
    monkeypatch.setattr(pipelines_module, "rewrites_unet_blocks", lambda placement, s: False)
    dense = Engine(EngineSettings(default_model="test:tiny", device="cpu", dtype="bfloat16"))
    dense.load()
    assert not is_packed(dense._model.base.unet.conv_in.weight)  # type: ignore[union-attr]
    exact = Engine(EngineSettings(default_model="test:tiny", device="cpu", dtype="float32"))
    for request in every_task(REQUEST):
        assert packed._model.pipeline(request.task).unet is base.unet  # type: ignore[union-attr]
        reference = pixels(exact, request)
        packed_error = np.abs(pixels(packed, request) - reference)
        dense_error = np.abs(pixels(dense, request) - reference)
        # Packed rounds differently (GELU and residual adds before the bf16 rounding), no worse
        # than bf16 as diffusers runs it; the tiny random model amplifies rounding.
        assert packed_error.mean() <= 1.25 * dense_error.mean() + 0.1
        assert packed_error.max() <= 16
