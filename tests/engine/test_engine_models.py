"""Model names -> sources: presets, test models, confined local paths, pickle refusal, listing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from engine_support import assert_refused_keeping_the_loaded_model
from safetensors.numpy import save_file

from paintbridge.engine import EngineSettings, list_models, scheduler_names
from paintbridge.engine.models import check_model, resolve_model
from paintbridge.engine.presets import default_preset_name, get_preset, presets
from paintbridge.engine.testmodel import TEST_MODELS
from paintbridge.errors import InvalidRequest, ModelNotFound, UnsafeModelFile

_UNET_WEIGHTS = "diffusion_pytorch_model.safetensors"


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """A models folder with a diffusers folder, a .safetensors, a .ckpt and clutter."""
    folder = tmp_path / "models"
    (folder / "mydiffusers" / "unet").mkdir(parents=True)
    (folder / "mydiffusers" / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionXLPipeline"})
    )
    (folder / "mydiffusers" / "unet" / "config.json").write_text(
        json.dumps({"in_channels": 4, "sample_size": 128, "cross_attention_dim": 2048})
    )
    save_file({"w": np.zeros(1, np.float32)}, folder / "mydiffusers" / "unet" / _UNET_WEIGHTS)
    (folder / "org" / "name").mkdir(parents=True)
    (folder / "org" / "name" / "model_index.json").write_text("{}")
    (folder / "sub" / "deep").mkdir(parents=True)
    (folder / "sub" / "deep" / "m.safetensors").write_bytes(b"not really")
    (folder / "old.ckpt").write_bytes(b"pickle")
    (folder / "notes.txt").write_text("not a model")
    (folder / "empty-folder").mkdir()
    return folder


def test_presets_have_what_the_engine_needs() -> None:
    table = presets()
    assert {"sd15", "sd15-inpaint", "sdxl", "sd-turbo"} <= set(table)
    assert default_preset_name() == "sd15"
    sd15 = table["sd15"]
    assert (sd15.repo, sd15.native, sd15.architecture) == (
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        512,
        "sd1",
    )
    assert table["sd15-inpaint"].tasks == ("inpaint",)
    assert (table["sdxl"].native, table["sdxl"].architecture) == (1024, "sdxl")
    turbo = table["sd-turbo"]
    assert (turbo.repo, turbo.steps, turbo.guidance) == ("stabilityai/sd-turbo", 1, 0.0)
    for preset in table.values():
        assert preset.scheduler in scheduler_names()
        assert preset.steps >= 1 and preset.description


def test_test_and_preset_names_resolve_without_network() -> None:
    settings = EngineSettings()
    tiny = resolve_model("test:tiny", settings)
    assert (tiny.kind, tiny.native, tiny.path, tiny.repo) == ("test", 64, None, None)
    sdxl = resolve_model("sdxl", settings)
    assert (sdxl.kind, sdxl.repo, sdxl.native) == (
        "preset",
        "stabilityai/stable-diffusion-xl-base-1.0",
        1024,
    )
    assert resolve_model("someone/some-model", settings).repo == "someone/some-model"


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache of our own, offline (no test may touch the network)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def cache_repo(cache: Path, repo: str) -> None:
    """Put `repo`'s model_index.json where huggingface_hub's cache layout keeps it."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}")


def test_a_hub_model_that_is_not_cached_offline_is_not_found_before_loading(
    hub_cache: Path, models: Path
) -> None:
    settings = EngineSettings(model_dirs=(models,))
    for name in ("nobody/not-cached", "sdxl"):
        with pytest.raises(ModelNotFound, match="not in the local Hugging Face cache") as missing:
            check_model(name, settings)
        assert "HF_HUB_OFFLINE=1" in missing.value.message
        assert (
            "go online" in missing.value.message
            and "local diffusers folder" in missing.value.message
        )
    cache_repo(hub_cache, "nobody/cached")
    check_model("nobody/cached", settings)
    cache_repo(hub_cache, get_preset("sdxl").repo)  # type: ignore[union-attr]
    check_model("sdxl", settings)
    for name in (*TEST_MODELS, "mydiffusers", "org/name"):
        check_model(name, settings)  # no hub involved: nothing to check
    with pytest.raises(ModelNotFound, match="cannot read .* as a checkpoint"):
        check_model("sub/deep/m.safetensors", settings)  # its header is not safetensors'
    with pytest.raises(ModelNotFound, match="unknown model"):
        check_model("no-such-model", settings)


def test_with_downloads_off_an_uncached_repo_is_not_found_and_on_it_may_load(
    hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(ModelNotFound, match="downloads are turned off: allow downloads"):
        check_model("nobody/not-cached", EngineSettings(allow_download=False))
    check_model("nobody/not-cached", EngineSettings(allow_download=True))  # the load will try


def test_local_names_resolve_inside_model_dirs(models: Path) -> None:
    settings = EngineSettings(model_dirs=(models,))
    folder = resolve_model("mydiffusers", settings)
    assert (folder.kind, folder.path) == ("folder", models / "mydiffusers")
    # `org/name` is a local folder when one exists, a hub repo otherwise
    assert resolve_model("org/name", settings).path == models / "org" / "name"
    deep = resolve_model("sub/deep/m.safetensors", settings)
    assert (deep.kind, deep.path) == ("file", models / "sub" / "deep" / "m.safetensors")
    inside = resolve_model(str(models / "mydiffusers"), settings)
    assert inside.path == models / "mydiffusers"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../secrets.safetensors", "must not contain `..`"),
        ("sub/../../x.safetensors", "must not contain `..`"),
        ("/etc/passwd.safetensors", "is outside the models folders"),
        ("http://example.com/m.safetensors", "not a URL"),
        ("hf://org/name", "not a URL"),
        ("", "must be a model name or path"),
        ("a b/c d", "must be a preset, `org/name` or a local path"),
    ],
)
def test_refuses_names_that_leave_the_models_folders(models: Path, name: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message.replace(".", r"\.").replace("`", ".")):
        resolve_model(name, EngineSettings(model_dirs=(models,)))


def test_absolute_paths_outside_need_allow_any_path(models: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "m.safetensors"
    outside.parent.mkdir()
    outside.write_bytes(b"x")
    with pytest.raises(InvalidRequest, match="is outside the models folders"):
        resolve_model(str(outside), EngineSettings(model_dirs=(models,)))
    with pytest.raises(InvalidRequest, match=r"\(none are configured\)"):
        resolve_model(str(outside), EngineSettings())
    source = resolve_model(str(outside), EngineSettings(model_dirs=(models,), allow_any_path=True))
    assert source.path == outside


@pytest.mark.parametrize("name", ["nothing-here", "nothing.safetensors", "sub/deep/none.bin"])
def test_unknown_names_are_model_not_found(models: Path, name: str) -> None:
    with pytest.raises((ModelNotFound, UnsafeModelFile)) as caught:
        resolve_model(name, EngineSettings(model_dirs=(models,)))
    assert isinstance(caught.value, ModelNotFound)
    assert "sd15" in caught.value.message or "no model" in caught.value.message


def test_folder_without_model_index_is_explained(models: Path) -> None:
    with pytest.raises(ModelNotFound, match="no model_index.json"):
        resolve_model("./empty-folder", EngineSettings(model_dirs=(models,)))


def test_pickle_checkpoints_are_refused_unless_allowed(models: Path) -> None:
    with pytest.raises(UnsafeModelFile, match="pickle checkpoint") as caught:
        resolve_model("old.ckpt", EngineSettings(model_dirs=(models,)))
    assert "allow_pickle" in caught.value.message and caught.value.code == "unsafe_model_file"
    source = resolve_model("old.ckpt", EngineSettings(model_dirs=(models,), allow_pickle=True))
    assert (source.kind, source.path) == ("file", models / "old.ckpt")


def test_list_models(models: Path) -> None:
    listed = {m.name: m for m in list_models(EngineSettings(model_dirs=(models,)))}
    assert {"sd15", "sd15-inpaint", "sdxl", "sd-turbo", *TEST_MODELS, "mydiffusers"} <= set(listed)
    assert listed["sd15"].kind == "preset" and listed["sd15"].native == 512
    assert listed["sd15-inpaint"].tasks == ("inpaint",)
    assert listed["test:tiny"].kind == "test" and "noise" in listed["test:tiny"].description
    assert listed["test:tiny-inpaint"].tasks == ("inpaint",)
    local = listed["mydiffusers"]
    assert (local.kind, local.native, local.architecture) == ("local", 1024, "sdxl")
    # not models: clutter, a folder without model_index.json, an unreadable checkpoint, pickles
    assert not {"notes.txt", "empty-folder", "old.ckpt", "m"} & set(listed)
    with_pickle = list_models(EngineSettings(model_dirs=(models,), allow_pickle=True))
    assert "old.ckpt" in {m.name for m in with_pickle}


def test_sd15_inpaint_preset_is_inpaint_only() -> None:
    preset = get_preset("sd15-inpaint")
    assert preset is not None and preset.repo == "stable-diffusion-v1-5/stable-diffusion-inpainting"


def test_a_safety_checker_in_the_model_index_is_neither_loaded_nor_needed(tmp_path: Path) -> None:
    import shutil

    from paintbridge.engine import Engine, GenerationRequest
    from paintbridge.engine.testmodel import ensure_test_model

    # Like the SD 1.5 repo: the index names a safety checker; here its weights are not even there.
    folder = tmp_path / "with-checker"
    shutil.copytree(ensure_test_model("test:tiny"), folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["safety_checker"] = ["stable_diffusion", "StableDiffusionSafetyChecker"]
    index["requires_safety_checker"] = True
    (folder / "model_index.json").write_text(json.dumps(index))
    engine = Engine(EngineSettings(model_dirs=(tmp_path,), default_model="with-checker"))
    result = engine.generate(GenerationRequest("txt2img", "a cat", steps=1, width=64, height=64))
    assert result.images[0].image.size == (64, 64)
    assert engine._model.base.safety_checker is None  # type: ignore[union-attr]


def _copy_of_the_tiny_model(folder: Path) -> Path:
    import shutil

    from paintbridge.engine.testmodel import ensure_test_model

    shutil.copytree(ensure_test_model("test:tiny"), folder)
    return folder


def test_a_relative_folder_written_as_org_name_is_a_local_path_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`models/tinycopy` (relative to the current folder) is the folder, as `./models/tinycopy`
    is, when paths are allowed (the CLI); a name that is no existing path stays a repo id."""
    from paintbridge.engine import Engine, GenerationRequest

    _copy_of_the_tiny_model(tmp_path / "models" / "tinycopy")
    monkeypatch.chdir(tmp_path)
    settings = EngineSettings(allow_any_path=True)
    source = resolve_model("models/tinycopy", settings)
    assert (source.kind, source.path) == ("folder", Path("models/tinycopy"))
    assert resolve_model("./models/tinycopy", settings).path == source.path
    assert resolve_model("models/elsewhere", settings).repo == "models/elsewhere"
    # the server confines paths to its models folders: there the name is a repo id
    assert resolve_model("models/tinycopy", EngineSettings()).kind == "repo"
    request = GenerationRequest(task="txt2img", prompt="x", steps=1, width=64, height=64)
    engine = Engine(EngineSettings(default_model="models/tinycopy", allow_any_path=True))
    assert engine.generate(request).images and engine.loaded_model == "models/tinycopy"


@pytest.mark.parametrize(
    ("damage", "message"),
    [("truncated", "a file cannot be read"), ("removed", "a file is missing")],
)
def test_a_damaged_weights_file_in_a_folder_is_named_as_such(
    tmp_path: Path, damage: str, message: str
) -> None:
    from paintbridge.engine import Engine

    folder = _copy_of_the_tiny_model(tmp_path / "tinycopy")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    if damage == "removed":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:100_000])
    engine = Engine(EngineSettings(model_dirs=(tmp_path,)))
    with pytest.raises(ModelNotFound, match=message) as caught:
        engine.load("tinycopy")
    other = "a file is missing" if damage == "truncated" else "cannot be read"
    assert other not in caught.value.message


@pytest.mark.parametrize("damage", ["truncated", "removed"])
def test_a_damaged_folder_leaves_the_loaded_model(tmp_path: Path, damage: str) -> None:
    """Cut-off or missing weights in a diffusers folder are found from the headers, before the
    loaded model is dropped, for generate, load and check_model (the server's submit check)."""
    folder = _copy_of_the_tiny_model(tmp_path / "tinycopy")
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    if damage == "removed":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:-1])
    settings = EngineSettings(model_dirs=(tmp_path,), default_model="test:tiny")
    message = "a file is missing" if damage == "removed" else "vae/.* a file cannot be read"
    assert_refused_keeping_the_loaded_model(settings, "tinycopy", ModelNotFound, message)


def test_a_model_whose_name_is_not_utf8_is_left_out_of_the_list(models: Path) -> None:
    """A folder named in another encoding (bytes that are not UTF-8) made /v1/models and
    /sdapi/v1/sd-models a 500 for every plug-in: it is skipped (and logged)."""
    import os

    os.mkdir(os.path.join(os.fsencode(models), b"mod\xe8le"))
    (
        Path(os.fsdecode(os.path.join(os.fsencode(models), b"mod\xe8le"))) / "model_index.json"
    ).write_text("{}")
    names = [info.name for info in list_models(EngineSettings(model_dirs=(models,)))]
    assert "mydiffusers" in names
    for name in names:
        name.encode("utf-8")


def _deny(monkeypatch: pytest.MonkeyPatch, method: str, *paths: Path) -> None:
    """Path.`method` raises PermissionError for `paths`, as it does for a folder or file the
    user may not read (tests run as root, whom chmod does not stop)."""
    original = getattr(Path, method)

    def denied(self: Path, *args: object, **kwargs: object) -> object:
        if self in paths:
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, method, denied)


def test_an_unreadable_entry_is_left_out_of_the_list(
    models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One folder or models folder the server may not read made `paintbridge models` crash
    and /v1/models a 500 for every plug-in."""
    (models / "locked").mkdir()
    locked_folder = tmp_path / "locked-models"
    locked_folder.mkdir()
    _deny(monkeypatch, "is_file", models / "locked" / "model_index.json")
    _deny(monkeypatch, "iterdir", locked_folder)
    listed = [m.name for m in list_models(EngineSettings(model_dirs=(locked_folder, models)))]
    assert "mydiffusers" in listed and "locked" not in listed


def test_an_unreadable_model_is_named_with_permission_denied(
    models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not "no folder of that name", a server error, or "download it again"."""
    (models / "locked").mkdir()
    (models / "locked" / "model_index.json").write_text("{}")
    (models / "locked.bin.safetensors").write_bytes(b"weights")
    unet = models / "mydiffusers" / "unet"
    _deny(monkeypatch, "is_file", models / "locked" / "model_index.json", unet / "config.json")
    _deny(monkeypatch, "open", models / "locked.bin.safetensors")
    settings = EngineSettings(model_dirs=(models,))
    for name, path in [
        ("locked", models / "locked"),
        ("mydiffusers", unet),
        ("locked.bin.safetensors", models / "locked.bin.safetensors"),
    ]:
        with pytest.raises(ModelNotFound, match="permission denied") as caught:
            check_model(name, settings, "txt2img")
        assert str(path) in caught.value.message
    # an unreadable models folder does not hide the models of the others
    other = models.parent / "other"
    _copy_of_the_tiny_model(other / "tinycopy")
    _deny(monkeypatch, "is_dir", models / "tinycopy")
    settings = EngineSettings(model_dirs=(models, other))
    assert resolve_model("tinycopy", settings).path == other / "tinycopy"
    with pytest.raises(ModelNotFound, match="permission denied"):
        resolve_model("tinycopy", EngineSettings(model_dirs=(models,)))


@pytest.mark.parametrize("allow_any_path", [False, True])
def test_a_name_starting_with_a_tilde_is_no_crash(
    models: Path, allow_any_path: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`~x` made expanduser raise "Could not determine home directory": a CLI traceback, a 500
    from the server. The server never expands `~`; on the CLI, `~x` with no user x is a name."""
    monkeypatch.chdir(models.parent)
    (models / "~tilde").mkdir()
    (models / "~tilde" / "model_index.json").write_text("{}")
    settings = EngineSettings(model_dirs=(models,), allow_any_path=allow_any_path)
    assert resolve_model("~tilde", settings).path == models / "~tilde"
    with pytest.raises(ModelNotFound):
        resolve_model("~nosuchuser/m", settings)
    if not allow_any_path:
        with pytest.raises(InvalidRequest, match="is outside the models folders"):
            resolve_model("~/m.safetensors", settings)


def test_every_listed_local_model_is_found_by_its_listed_name(models: Path) -> None:
    """A checkpoint named `Upper.SAFETENSORS` was listed as `Upper`, which was no model, and a
    folder `sd15` as `sd15`, which is the preset."""
    header = {
        "cond_stage_model.transformer.w": np.zeros(1, np.float32),
        "model.diffusion_model.input_blocks.0.0.weight": np.zeros((1, 4, 3, 3), np.float32),
    }
    save_file(header, models / "Upper.SAFETENSORS")
    save_file(header, models / "lower.safetensors")
    shutil.copytree(models / "mydiffusers", models / "sd15")  # as `hf download --local-dir`
    save_file(header, models / "sdxl.safetensors")
    listed = list_models(EngineSettings(model_dirs=(models,)))
    local = [m.name for m in listed if m.kind == "local"]
    # the folder named like the preset is listed by a name that is not the preset's
    assert {"Upper.SAFETENSORS", "lower", "mydiffusers", "./sd15", "./sdxl.safetensors"} <= set(
        local
    )
    for name in local:
        source = resolve_model(name, EngineSettings(model_dirs=(models,)))
        assert source.kind in ("folder", "file") and source.path is not None
        assert source.path.name in (name.removeprefix("./"), f"{name}.safetensors")


def test_a_folder_without_a_component_names_it(tmp_path: Path) -> None:
    """It said "no file named config.json found in directory <the model folder>"."""
    import shutil

    folder = _copy_of_the_tiny_model(tmp_path / "novae")
    shutil.rmtree(folder / "vae")
    settings = EngineSettings(model_dirs=(tmp_path,), default_model="test:tiny")
    message = r"lists 'vae', but .*novae/vae' is missing"
    assert_refused_keeping_the_loaded_model(settings, "novae", ModelNotFound, message)


def test_a_folder_without_the_listed_image_processor_loads(tmp_path: Path) -> None:
    """Only the safety checker (never loaded) uses the feature extractor: a folder may lack it."""
    from paintbridge.engine import Engine, GenerationRequest

    folder = _copy_of_the_tiny_model(tmp_path / "noprocessor")
    index = json.loads((folder / "model_index.json").read_text())
    index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
    (folder / "model_index.json").write_text(json.dumps(index))
    engine = Engine(EngineSettings(model_dirs=(tmp_path,), default_model="noprocessor"))
    result = engine.generate(GenerationRequest("txt2img", "a cat", steps=1, width=64, height=64))
    assert result.images[0].image.size == (64, 64)


def test_a_folder_of_fp16_variant_weights_loads(tmp_path: Path) -> None:
    """save_pretrained(variant="fp16") names every weights file *.fp16.safetensors; loading it
    looked for diffusion_pytorch_model.bin and said to download the model again."""
    from diffusers import DiffusionPipeline

    from paintbridge.engine import Engine, GenerationRequest
    from paintbridge.engine.testmodel import ensure_test_model

    pipe = DiffusionPipeline.from_pretrained(ensure_test_model("test:tiny"))
    pipe.save_pretrained(tmp_path / "halves", variant="fp16")
    assert not (tmp_path / "halves" / "unet" / _UNET_WEIGHTS).exists()
    engine = Engine(EngineSettings(model_dirs=(tmp_path,), default_model="halves"))
    result = engine.generate(GenerationRequest("txt2img", "a cat", steps=1, width=64, height=64))
    assert result.images[0].image.size == (64, 64)
