"""check_request, and the tasks a model can do: every bad input is refused before any work,
with a message naming the field and value."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from engine_support import box_mask, rgba_image
from PIL import Image
from safetensors.numpy import save_file

from paintbridge.engine import EngineSettings, GenerationRequest, Limits, check_request
from paintbridge.engine.models import check_model, check_task, model_tasks, resolve_model
from paintbridge.engine.validation import fewest_steps
from paintbridge.errors import InvalidRequest

LIMITS = Limits(
    max_pixels=512 * 512,
    max_side=1024,
    max_steps=50,
    max_count=4,
    max_prompt_chars=20,
    max_guidance=30.0,
)
IMAGE = rgba_image(70, 45)
MASK = box_mask(70, 45, (10, 10, 30, 30))
TXT = GenerationRequest(task="txt2img", prompt="a cat")
IMG = GenerationRequest(task="img2img", prompt="a cat", image=IMAGE)
INP = GenerationRequest(task="inpaint", prompt="a cat", image=IMAGE, mask=MASK)


@pytest.mark.parametrize(
    "request_",
    [
        TXT,
        replace(TXT, width=1, height=1),
        replace(TXT, width=100, height=37),  # not multiples of 8: allowed
        replace(TXT, width=1024, height=256),  # max_side, within max_pixels
        replace(TXT, steps=50, guidance=30.0, count=4, seed=2**32 - 1),
        replace(TXT, steps=1, guidance=0, seed=0, seamless="xy", scheduler="euler_a"),
        replace(TXT, prompt="x" * 20, negative_prompt="y" * 20),
        replace(TXT, strength=0.0),  # ignored by txt2img
        IMG,
        replace(IMG, strength=1.0, steps=1),
        replace(IMG, strength=0.5, steps=2),  # int(2 * 0.5) = 1 step
        replace(IMG, strength=0.03),  # steps from the preset, raised to run one: 34
        INP,
        replace(INP, mask=Image.new("L", (70, 45), 1)),  # faint but not empty
        replace(INP, mask=box_mask(70, 45, (0, 0, 70, 45)).convert("RGB")),  # any mode
    ],
)
def test_accepts(request_: GenerationRequest) -> None:
    check_request(request_, LIMITS)


BAD: list[tuple[GenerationRequest, str]] = [
    (replace(TXT, task="paint"), "`task` must be one of txt2img, img2img, inpaint, got 'paint'"),  # type: ignore[arg-type]
    (replace(TXT, prompt=None), "`prompt` must be a string"),  # type: ignore[arg-type]
    (replace(TXT, prompt="x" * 21), "`prompt` must be at most 20 characters, got 21"),
    (replace(TXT, negative_prompt="x" * 21), "`negative_prompt` must be at most 20 characters"),
    (replace(TXT, model=""), "`model` must be a non-empty name"),
    (replace(TXT, width=0), "`width` must be in [1, 1024], got 0"),
    (replace(TXT, height=-8), "`height` must be in [1, 1024], got -8"),
    (replace(TXT, width=1025), "`width` must be in [1, 1024], got 1025"),
    (replace(TXT, width=64.0), "`width` must be an integer, got 64.0"),  # type: ignore[arg-type]
    (replace(TXT, width=True), "`width` must be an integer"),  # type: ignore[arg-type]
    (replace(TXT, width=1024, height=1024), "`width` * `height` must be at most 262144 pixels"),
    (replace(TXT, steps=0), "`steps` must be in [1, 50], got 0"),
    (replace(TXT, steps=51), "`steps` must be in [1, 50], got 51"),
    (replace(TXT, guidance=-0.5), "`guidance` must be in [0, 30], got -0.5"),
    (replace(TXT, guidance=30.5), "`guidance` must be in [0, 30], got 30.5"),
    (replace(TXT, guidance=math.nan), "`guidance` must be a finite number, got nan"),
    (replace(TXT, guidance=math.inf), "`guidance` must be a finite number, got inf"),
    (replace(TXT, guidance="7"), "`guidance` must be a number"),  # type: ignore[arg-type]
    (replace(TXT, strength=1.5), "`strength` must be in [0, 1], got 1.5"),
    (replace(TXT, strength=-0.1), "`strength` must be in [0, 1], got -0.1"),
    (replace(TXT, strength=math.nan), "`strength` must be a finite number, got nan"),
    (replace(TXT, count=0), "`count` must be in [1, 4], got 0"),
    (replace(TXT, count=5), "`count` must be in [1, 4], got 5"),
    (replace(TXT, seed=-1), "`seed` must be in [0, 4294967295], got -1"),
    (replace(TXT, seed=2**32), "`seed` must be in [0, 4294967295], got 4294967296"),
    (replace(TXT, seed=1.5), "`seed` must be an integer, got 1.5"),  # type: ignore[arg-type]
    (replace(TXT, seamless="z"), "`seamless` must be one of none, x, y, xy, got 'z'"),  # type: ignore[arg-type]
    (replace(TXT, scheduler=3), "`scheduler` must be a name"),  # type: ignore[arg-type]
    (replace(TXT, scheduler="k_fancy"), "`scheduler` must be one of default, ddim, euler"),
    (replace(IMG, image=None), "`image` is required for img2img"),
    (replace(IMG, image=b"png"), "`image` must be a PIL image, got bytes"),  # type: ignore[arg-type]
    (replace(IMG, image=rgba_image(600, 600)), "`image` must be at most 1024 px a side"),
    (replace(IMG, image=Image.new("RGBA", (1025, 4))), "`image` must be at most 1024 px a side"),
    (replace(IMG, strength=0.0), "`strength` must be greater than 0 for img2img and inpaint"),
    (replace(IMG, steps=3, strength=0.3), "got 3 * 0.3: increase steps or strength"),
    (
        replace(IMG, strength=0.01),  # the default steps would be raised to 100
        "`strength` 0.01 is too low for the default steps: it needs 100 steps, more than the "
        "limit of 50; raise strength",
    ),
    (replace(INP, strength=0.019), "it needs 53 steps, more than the limit of 50"),
    (replace(IMG, strength=5e-324), "it needs over a million steps, more than the limit of 50"),
    (replace(INP, image=None), "`image` is required for inpaint"),
    (replace(INP, mask=None), "`mask` is required for inpaint"),
    (
        replace(INP, mask=box_mask(45, 70, (0, 0, 5, 5))),
        "must be the size of `image` (70x45), got 45x70",
    ),
    (
        replace(INP, mask=Image.new("L", (70, 45), 0)),
        "mask is empty: select the area to regenerate",
    ),
    (replace(INP, mask=Image.new("RGBA", (70, 45), (255, 255, 255, 0))), "the mask is empty"),
    (replace(INP, strength=0.1, steps=5), "increase steps or strength"),
]


@pytest.mark.parametrize(("request_", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_refuses(request_: GenerationRequest, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_request(request_, LIMITS)
    assert message in caught.value.message
    assert caught.value.code == "invalid_request"


def test_checks_a_request_with_any_default_limits() -> None:
    big: Any = replace(TXT, width=4096, height=4096)
    check_request(big, Limits())
    with pytest.raises(InvalidRequest, match="pixels"):
        check_request(replace(big, width=4097), Limits())


@pytest.mark.parametrize("strength", [0.001, 0.003, 0.01, 0.019, 0.07, 0.1, 0.3, 1 / 3, 0.5, 1.0])
def test_fewest_steps_is_the_fewest_that_run_one(strength: float) -> None:
    steps = fewest_steps(strength)
    assert int(steps * strength) >= 1 and int((steps - 1) * strength) < 1


# --- the model's tasks, known before it is loaded ---------------------------------------------


def _folder_model(root: Path, in_channels: int) -> Path:
    (root / "unet").mkdir(parents=True)
    (root / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    (root / "unet" / "config.json").write_text(json.dumps({"in_channels": in_channels}))
    save_file({"w": np.zeros(1, "f4")}, root / "unet" / "diffusion_pytorch_model.safetensors")
    return root


def _checkpoint(path: Path, in_channels: int) -> Path:
    tensors = {
        "cond_stage_model.transformer.text_model.final_layer_norm.weight": np.zeros(2, "f4"),
        "model.diffusion_model.input_blocks.0.0.weight": np.zeros((2, in_channels, 1, 1), "f4"),
    }
    save_file(tensors, str(path))
    return path


def test_a_model_that_cannot_do_the_task_is_refused_before_loading(tmp_path: Path) -> None:
    models = tmp_path / "models"
    _folder_model(models / "inpainter", 9)
    _folder_model(models / "painter", 4)
    _checkpoint(models / "inpaint-file.safetensors", 9)
    _checkpoint(models / "file.safetensors", 4)
    settings = EngineSettings(model_dirs=(models,))
    for name in ("test:tiny-inpaint", "sd15-inpaint", "inpainter", "inpaint-file"):
        assert model_tasks(resolve_model(name, settings)) == ("inpaint",), name
        check_task(resolve_model(name, settings), "inpaint")
        for task in ("txt2img", "img2img"):
            with pytest.raises(InvalidRequest, match=f"can only inpaint, got task '{task}'"):
                check_task(resolve_model(name, settings), task)
    for name in ("test:tiny", "sd15", "painter", "file", "org/not-cached"):
        assert model_tasks(resolve_model(name, settings)) == ("txt2img", "img2img", "inpaint")
    check_model("test:tiny", settings, "txt2img")
    with pytest.raises(InvalidRequest, match="'test:tiny-inpaint' is an inpainting model"):
        check_model("test:tiny-inpaint", settings, "img2img")


def test_the_engine_keeps_its_model_when_the_next_cannot_do_the_task(engine: Any) -> None:
    """The engine refuses before it drops the loaded model, whoever asked (CLI, A1111 route)."""
    assert engine.loaded_model == "test:tiny"
    with pytest.raises(InvalidRequest, match="can only inpaint, got task 'txt2img'"):
        engine.generate(replace(TXT, model="test:tiny-inpaint", width=64, height=64, steps=2))
    assert engine.loaded_model == "test:tiny"


def test_errors_show_a_long_name_cut_short() -> None:
    """A 100 kB scheduler or model name was sent back whole in the error."""
    from paintbridge.errors import ModelNotFound

    long = "x" * 100_000
    for request in (
        GenerationRequest("txt2img", "p", scheduler=long),
        GenerationRequest("txt2img", "p", seamless=long),  # type: ignore[arg-type]
    ):
        with pytest.raises(InvalidRequest) as caught:
            check_request(request, Limits())
        assert len(caught.value.message) < 600 and "(100000 characters)" in caught.value.message
    with pytest.raises((InvalidRequest, ModelNotFound)) as missing:
        resolve_model(long, EngineSettings())
    assert len(missing.value.message) < 2000 and "(100000 characters)" in missing.value.message
