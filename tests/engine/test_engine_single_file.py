"""Single-file checkpoints: architecture detection, config resolution, pickle opt-in, presets
offline."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from engine_support import assert_refused_keeping_the_loaded_model
from safetensors.torch import load_file, save_file

from paintbridge.engine import Engine, EngineSettings, GenerationRequest
from paintbridge.engine.checkpoint import inspect_checkpoint
from paintbridge.engine.hub import is_cached
from paintbridge.engine.presets import get_preset
from paintbridge.engine.testmodel import ensure_test_model, write_single_file_checkpoint
from paintbridge.errors import InvalidRequest, ModelNotFound, UnsafeModelFile

TXT = GenerationRequest(task="txt2img", prompt="a red door", steps=2, seed=11)


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding the tiny model as one original-layout .safetensors file."""
    folder = tmp_path_factory.mktemp("single-file")
    write_single_file_checkpoint(ensure_test_model("test:tiny"), folder / "tiny.safetensors")
    return folder


def test_architecture_is_read_from_the_keys(checkpoint_dir: Path, tmp_path: Path) -> None:
    info = inspect_checkpoint(checkpoint_dir / "tiny.safetensors")
    assert (info.architecture, info.in_channels, info.inpaint_only) == ("sd1", 4, False)
    state = load_file(checkpoint_dir / "tiny.safetensors")
    xl = {
        k.replace("cond_stage_model.transformer.", "conditioner.embedders.1.model."): v
        for k, v in state.items()
    }
    xl["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(32, 9, 3, 3)
    save_file(xl, tmp_path / "xl.safetensors")
    info = inspect_checkpoint(tmp_path / "xl.safetensors")
    assert (info.architecture, info.in_channels, info.inpaint_only) == ("sdxl", 9, True)
    lora = {"lora_unet_down.weight": torch.zeros(2, 2)}
    save_file(lora, tmp_path / "lora.safetensors")
    with pytest.raises(ModelNotFound, match="not a Stable Diffusion 1.x or XL checkpoint"):
        inspect_checkpoint(tmp_path / "lora.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(
        (checkpoint_dir / "tiny.safetensors").read_bytes()[:50]
    )
    with pytest.raises(ModelNotFound, match="incomplete or corrupt"):
        inspect_checkpoint(tmp_path / "cut.safetensors")


def test_single_file_makes_the_same_images_as_the_folder(
    checkpoint_dir: Path, engine: Engine
) -> None:
    settings = EngineSettings(
        model_dirs=(checkpoint_dir,),
        single_file_config=ensure_test_model("test:tiny"),
        default_model="tiny",
    )
    single = Engine(settings)
    single.load("tiny")
    assert single.loaded_model == "tiny"
    result = single.generate(TXT)
    assert result.parameters["model"] == "tiny"
    assert result.images[0].image.size == (64, 64)
    # the same weights through the original layout: the same pixels as the diffusers folder
    assert result.images[0].image.tobytes() == engine.generate(TXT).images[0].image.tobytes()
    assert single.generate(replace(TXT, task="img2img", image=result.images[0].image, steps=4))


def test_single_file_without_a_config_offline_says_how_to_fix(checkpoint_dir: Path) -> None:
    repo = get_preset("sd15").repo  # type: ignore[union-attr]
    if is_cached(repo):
        pytest.skip(f"{repo} is in this machine's Hugging Face cache")
    with pytest.raises(ModelNotFound) as caught:
        Engine(EngineSettings(model_dirs=(checkpoint_dir,))).load("tiny.safetensors")
    message = caught.value.message
    assert "single_file_config" in message and repo in message and "offline" in message


def test_single_file_config_must_be_a_diffusers_folder(
    checkpoint_dir: Path, tmp_path: Path
) -> None:
    settings = EngineSettings(model_dirs=(checkpoint_dir,), single_file_config=tmp_path)
    with pytest.raises(InvalidRequest, match="`single_file_config` must be a diffusers folder"):
        Engine(settings).load("tiny")


def test_pickle_checkpoint_loads_only_when_allowed(checkpoint_dir: Path, tmp_path: Path) -> None:
    torch.save({"state_dict": load_file(checkpoint_dir / "tiny.safetensors")}, tmp_path / "t.ckpt")
    config = ensure_test_model("test:tiny")
    refused = Engine(EngineSettings(model_dirs=(tmp_path,), single_file_config=config))
    with pytest.raises(UnsafeModelFile, match="pickle checkpoint"):
        refused.load("t.ckpt")
    assert refused.loaded_model is None
    allowed = Engine(
        EngineSettings(
            model_dirs=(tmp_path,),
            single_file_config=config,
            allow_pickle=True,
            default_model="t.ckpt",
        )
    )
    allowed.load("t.ckpt")
    assert allowed.generate(TXT).images[0].image.size == (64, 64)


def test_presets_offline_and_not_downloaded_say_how_to_fix() -> None:
    repo = get_preset("sd15").repo  # type: ignore[union-attr]
    if is_cached(repo):
        pytest.skip(f"{repo} is in this machine's Hugging Face cache")
    engine = Engine(EngineSettings())
    with pytest.raises(ModelNotFound) as caught:
        engine.generate(TXT)  # no model named: the default, sd15
    assert repo in caught.value.message and "HF_HUB_OFFLINE" in caught.value.message
    assert caught.value.code == "model_not_found" and engine.loaded_model is None
    with pytest.raises(ModelNotFound, match="downloads are turned off|offline"):
        Engine(EngineSettings(allow_download=False)).load("someone/some-model")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_an_unreadable_checkpoint_leaves_the_loaded_model(
    checkpoint_dir: Path, tmp_path: Path, damage: str
) -> None:
    """A corrupt or cut-off .safetensors is refused from its header before the loaded model is
    dropped, for generate and load alike, and by check_model (what the server asks at submit)."""
    whole = (checkpoint_dir / "tiny.safetensors").read_bytes()
    data = b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all" if damage == "garbage" else whole
    (tmp_path / "broken.safetensors").write_bytes(data[: len(data) // 2])
    settings = EngineSettings(default_model="test:tiny", model_dirs=(tmp_path,))
    message = r"cannot read .*broken\.safetensors.* as a checkpoint"
    assert_refused_keeping_the_loaded_model(settings, "broken", ModelNotFound, message)


@pytest.mark.parametrize(
    ("weights", "config", "task"),
    [("test:tiny-inpaint", "test:tiny", "inpaint"), ("test:tiny", "test:tiny-inpaint", "txt2img")],
)
def test_one_config_folder_serves_regular_and_inpainting_checkpoints(
    tmp_path: Path, weights: str, config: str, task: str, engine: Engine, inpaint_engine: Engine
) -> None:
    """A server has one --model-config: an inpainting checkpoint (9-channel UNet) with a
    regular model's folder, or the other way round, failed on conv_in's shape and said to
    download the files again. The checkpoint makes the same images as its own folder."""
    from engine_support import box_mask, rgba_image

    write_single_file_checkpoint(ensure_test_model(weights), tmp_path / "m.safetensors")
    settings = EngineSettings(
        model_dirs=(tmp_path,), single_file_config=ensure_test_model(config), default_model="m"
    )
    single = Engine(settings)
    single.load("m")
    request = replace(TXT, task=task, width=64, height=64)
    if task == "inpaint":
        request = replace(
            request, image=rgba_image(64, 64), mask=box_mask(64, 64, (16, 16, 48, 48))
        )
    same_weights = inpaint_engine if task == "inpaint" else engine
    made = single.generate(request).images[0].image
    assert made.tobytes() == same_weights.generate(request).images[0].image.tobytes()


def test_a_config_folder_of_another_architecture_is_named_as_such(
    checkpoint_dir: Path, tmp_path: Path
) -> None:
    """Weights whose shapes are not the configuration's said to download the files again."""
    import json
    import shutil

    config = tmp_path / "wider"
    shutil.copytree(ensure_test_model("test:tiny"), config)
    unet = json.loads((config / "unet" / "config.json").read_text())
    unet["cross_attention_dim"] = 64
    (config / "unet" / "config.json").write_text(json.dumps(unet))
    settings = EngineSettings(model_dirs=(checkpoint_dir,), single_file_config=config)
    with pytest.raises(InvalidRequest, match="is of another kind of model") as caught:
        Engine(settings).load("tiny")
    assert "download" not in caught.value.message
