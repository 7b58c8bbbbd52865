"""The tiny test models: deterministic, loadable like a real model, and convertible to the
original single-file layout that diffusers' own converters read back exactly."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusionInpaintPipeline, StableDiffusionPipeline
from diffusers.loaders import single_file_utils
from safetensors.torch import load_file

from paintbridge.engine import testmodel


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_rebuild_is_byte_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = testmodel.ensure_test_model("test:tiny")
    monkeypatch.setenv("PAINTBRIDGE_CACHE_DIR", str(tmp_path / "cache"))
    second = testmodel.ensure_test_model("test:tiny")
    assert first != second
    assert _digest(first) == _digest(second)


@pytest.mark.parametrize(
    ("name", "pipeline_class", "unet_in"),
    [
        ("test:tiny", StableDiffusionPipeline, 4),
        ("test:tiny-inpaint", StableDiffusionInpaintPipeline, 9),
    ],
)
def test_loads_through_from_pretrained(name: str, pipeline_class: type, unet_in: int) -> None:
    pipe = DiffusionPipeline.from_pretrained(testmodel.ensure_test_model(name))
    assert type(pipe) is pipeline_class
    assert pipe.unet.config.in_channels == unet_in
    assert tuple(pipe.vae.config.block_out_channels) == (32, 32, 32, 32)  # 8x, like real SD


def test_unknown_test_model_is_refused() -> None:
    with pytest.raises(ValueError, match="test:tiny"):
        testmodel.ensure_test_model("test:huge")


def test_single_file_checkpoint_converts_back_exactly(tmp_path: Path) -> None:
    folder = testmodel.ensure_test_model("test:tiny")
    checkpoint = testmodel.write_single_file_checkpoint(folder, tmp_path / "tiny.safetensors")
    state = load_file(str(checkpoint))
    pipe = DiffusionPipeline.from_pretrained(folder)
    for name, convert in [
        ("unet", single_file_utils.convert_ldm_unet_checkpoint),
        ("vae", single_file_utils.convert_ldm_vae_checkpoint),
    ]:
        module = getattr(pipe, name)
        expected = module.state_dict()
        converted = convert(state, dict(module.config))
        assert set(converted) == set(expected), name
        for key, value in expected.items():
            assert torch.equal(converted[key].reshape(value.shape), value), key
