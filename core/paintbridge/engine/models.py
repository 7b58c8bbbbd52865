"""Model names -> where the weights are. Pure apart from reading folders: no torch, no network.

A model is named, in the order tried:

1. `test:tiny`, `test:tiny-inpaint`: tiny random-weight models built offline (images are noise);
   `test:identity`: gives its input image back unchanged, slowly (for adapter tests).
2. a preset (`sd15`, `sdxl`, ... from presets.json): its Hugging Face repo.
3. a path (absolute, `./x`, `~/x`, `a/b/c`, or a name ending in a checkpoint suffix): a diffusers
   folder or a single checkpoint file. Relative paths are looked up inside `model_dirs`.
4. a bare name: a diffusers folder `<dir>/<name>` or a file `<dir>/<name>.safetensors` in one of
   `settings.model_dirs`.
5. `org/name`: with `settings.allow_any_path` (the CLI), an existing path `org/name` relative to
   the current folder; else a folder `<dir>/org/name` if there is one; else that Hugging Face
   repo. A local path wins over a repo id; a name that is no existing path stays a repo id.

Paths are confined to `settings.model_dirs` (compared after normalising, so `..` cannot leave
them; a symlink the user put inside a models folder is followed) unless
`settings.allow_any_path`, which alone expands `~` (a client's `~/x` is outside them; `~x`, a
name inside them). URLs are refused.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path, PureWindowsPath

from paintbridge.engine import checkpoint, hub
from paintbridge.engine.presets import Preset, get_preset, presets
from paintbridge.engine.testmodel import TEST_MODEL_NATIVE, TEST_MODELS
from paintbridge.engine.types import TASKS, EngineSettings
from paintbridge.errors import InvalidRequest, ModelNotFound, shown

log = logging.getLogger(__name__)

NATIVE = {"sd1": 512, "sd2": 512, "sdxl": 1024}
# The UNet's cross-attention width tells the family: CLIP ViT-L, OpenCLIP ViT-H, both for XL.
_CROSS_ATTENTION_DIM = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
TEST_DESCRIPTION = "test model with tiny random weights: its images are noise (for tests, demos)"
IDENTITY_DESCRIPTION = (
    "test model that gives the input image back unchanged (txt2img: seeded noise), 50 ms a step "
    "(for testing plug-ins)"
)


@dataclass(frozen=True)
class ModelInfo:
    """One model the engine can load, as `GET /v1/models` and `paintbridge models` list it."""

    name: str
    kind: str  # preset | local | test
    description: str
    tasks: tuple[str, ...]
    native: int  # pixels a side the model generates best at
    architecture: str | None = None  # sd1 | sd2 | sdxl; None when unknown
    available: bool = True  # on disk now; False: a preset that downloads on first use


@dataclass(frozen=True)
class ModelSource:
    """Where one model's weights come from: `repo` (preset, repo), `path` (folder, file), or
    neither for a test model, which is built when it is loaded."""

    name: str  # as the request named it
    kind: str  # preset | repo | folder | file | test
    repo: str | None = None  # a Hugging Face repo id (preset, repo)
    path: Path | None = None  # a diffusers folder (folder) or a checkpoint file (file)
    preset: Preset | None = None
    native: int | None = None  # None: derive from the loaded UNet


def resolve_model(name: str, settings: EngineSettings) -> ModelSource:
    """Where the weights of model `name` are (see the module docstring). Touches no network."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest(f"`model` must be a model name or path, got {shown(name)}")
    if "://" in name or name.lower().startswith(("http:", "https:", "hf:", "file:")):
        raise InvalidRequest(
            f"`model` must be a preset, a Hugging Face repo id or a local path, not a URL, "
            f"got {shown(name)}: download the file into your models folder and name it"
        )
    if name in TEST_MODELS:  # built (a few seconds, needs torch) when loaded, not here
        return ModelSource(name, "test", native=TEST_MODEL_NATIVE)
    preset = get_preset(name)
    if preset is not None:
        return ModelSource(name, "preset", repo=preset.repo, preset=preset, native=preset.native)
    if _looks_like_path(name) or ("/" in name and settings.allow_any_path and _exists_here(name)):
        return _local(name, _find_path(name, settings), settings)
    if "/" not in name:
        found = _first_model(
            [c for d in settings.model_dirs for c in (d / name, d / f"{name}.safetensors")]
        )
        if found is not None:
            return _local(name, found, settings)
        raise ModelNotFound(
            f"unknown model {shown(name)}: not a preset ({', '.join(presets())}), not a test model "
            f"({', '.join(TEST_MODELS)}), and no folder or .safetensors file of that name in "
            f"{_dirs_text(settings)}"
        )
    if hub.is_repo_id(name):
        found = _first_model([folder / name for folder in settings.model_dirs])
        if found is not None:
            return _local(name, found, settings)
        return ModelSource(name, "repo", repo=name)
    raise InvalidRequest(
        f"`model` must be a preset, `org/name` or a local path, got {shown(name)}: see "
        "`paintbridge models` for what is available"
    )


def check_model(name: str, settings: EngineSettings, task: str | None = None) -> None:
    """What a server checks before it queues a job for model `name`: the name resolves, the
    model can do `task` (when given), and a Hugging Face model is in the local cache or may be
    downloaded. No network, no torch: a test model passes by its name (resolving it does not
    build it). A checkpoint file whose header cannot be read is refused too."""
    source = resolve_model(name, settings)
    check_task(source, task)
    if source.repo is not None:
        hub.check_loadable(
            source.repo, label=f"model {shown(name)}", allow_download=settings.allow_download
        )


def model_tasks(source: ModelSource) -> tuple[str, ...]:
    """The tasks the model can do, as far as is known without loading it: a preset's or test
    model's by name, a local model's from its UNet config or checkpoint header; all of them for
    a Hugging Face repo or a pickle file (loading the model tells). Raises ModelNotFound for a
    .safetensors file that is not a readable Stable Diffusion checkpoint: loading it would fail
    on the same header."""
    if source.preset is not None:
        return source.preset.tasks
    if source.kind == "test":
        return _tasks_for(source.name)
    if source.kind == "folder" and source.path is not None:
        _check_folder_weights(source.name, source.path)
        return _folder_info(source.path).tasks
    if source.kind == "file" and source.path is not None:
        if source.path.suffix.lower() not in checkpoint.SAFE_SUFFIXES:
            return TASKS  # reading a pickle's keys would run it
        inpaint_only = checkpoint.inspect_checkpoint(source.path).inpaint_only
        return ("inpaint",) if inpaint_only else TASKS
    return TASKS


def check_task(source: ModelSource, task: str | None) -> None:
    """Refuse `task` for a model that cannot do it (txt2img with an inpainting model), and any
    task (or None) for a checkpoint whose header cannot be read, before the model is loaded, so
    a doomed request never replaces the loaded model."""
    tasks = model_tasks(source)
    if task is None or task in tasks:
        return
    if tasks == ("inpaint",):  # as LoadedModel.pipeline says it once the model is loaded
        raise InvalidRequest(
            f"model {source.name!r} is an inpainting model (its UNet takes 9 channels): it can "
            f"only inpaint, got task {task!r}; use a regular model (such as sd15) for {task}"
        )
    raise InvalidRequest(
        f"model {source.name!r} can only do {', '.join(tasks)}, got task {task!r}: use a model "
        f"that does {task} (see `paintbridge models`)"
    )


def _looks_like_path(name: str) -> bool:
    windows = PureWindowsPath(name)
    return (
        os.path.isabs(name)
        # `C:x`, `C:\\x`, `\\\\server\\share`: on Windows, `folder / name` would drop the folder
        or bool(windows.drive or windows.root)
        or name.startswith(("./", "../", "~", ".\\", "..\\"))
        or "\\" in name
        or name.count("/") > 1
        or name.lower().endswith(checkpoint.CHECKPOINT_SUFFIXES)
        or name in (".", "..")
    )


def _exists_here(name: str) -> bool:
    """Whether `name` is an existing path relative to the current folder (or `~`)."""
    try:
        return Path(name).expanduser().exists()
    except (OSError, RuntimeError, ValueError):  # an unknown ~user, a name the OS refuses
        return False


def _dirs_text(settings: EngineSettings) -> str:
    if not settings.model_dirs:
        return "the models folders (none are configured)"
    return "the models folders " + ", ".join(str(d) for d in settings.model_dirs)


def _inside(path: Path, folders: tuple[Path, ...]) -> bool:
    absolute = os.path.abspath(path)
    for folder in folders:
        root = os.path.abspath(folder.expanduser())
        if absolute == root or absolute.startswith(root.rstrip(os.sep) + os.sep):
            return True
    return False


def _find_path(name: str, settings: EngineSettings) -> Path:
    """The path `name` means, refused when it leaves model_dirs (unless allow_any_path)."""
    if settings.allow_any_path:
        given = _expand_user(name)
        if given.is_absolute():
            return given
        found = _first_existing([given, *(folder / given for folder in settings.model_dirs)])
        if found is not None:
            return found
        raise ModelNotFound(f"no model at {str(given.absolute())!r}: check the path")
    if ".." in Path(name.replace("\\", "/")).parts:
        raise InvalidRequest(
            f"`model` must not contain `..`, got {shown(name)}: name a model inside "
            f"{_dirs_text(settings)}"
        )
    # A client's `~` is never expanded: `~/x` would be the server's home folder, outside the
    # models folders; `~x` is a name inside them.
    given = Path(name)
    candidates = [given] if given.is_absolute() else [d / given for d in settings.model_dirs]
    home = given.parts[:1] == ("~",)
    if home or not all(_inside(c, settings.model_dirs) for c in candidates):
        raise InvalidRequest(
            f"`model` path {shown(name)} is outside {_dirs_text(settings)}: move the model "
            "there, or add its folder to the models folders"
        )
    found = _first_existing(candidates)
    if found is not None:
        return found
    raise ModelNotFound(f"no model {shown(name)} in {_dirs_text(settings)}")


def _expand_user(name: str) -> Path:
    """`name` with a leading `~` or `~user` expanded; as written when there is no such user (or
    no home folder), so that `~x` may still name a folder of that name."""
    try:
        return Path(name).expanduser()
    except RuntimeError:  # "Could not determine home directory"
        return Path(name)


def _exists(path: Path) -> bool:
    """Whether `path` exists; False for a name the OS refuses (too long, a NUL byte...), which a
    client may send: that is an unknown model (404), not a server error. PermissionError
    propagates: the path may well be there."""
    try:
        return path.exists()
    except PermissionError:
        raise
    except (OSError, ValueError):
        return False


def _is_model(path: Path) -> bool:
    try:
        if path.is_dir():
            return (path / "model_index.json").is_file()
        return path.is_file() and path.suffix.lower() in checkpoint.CHECKPOINT_SUFFIXES
    except PermissionError:
        raise
    except (OSError, ValueError):  # a name the OS refuses: no model there
        return False


def _first_model(candidates: list[Path]) -> Path | None:
    """The first of `candidates` that is a model (see _first_of)."""
    return _first_of(candidates, _is_model)


def _first_existing(candidates: list[Path]) -> Path | None:
    """The first of `candidates` that exists (see _first_of)."""
    return _first_of(candidates, _exists)


def _first_of(candidates: list[Path], test: Callable[[Path], bool]) -> Path | None:
    """The first of `candidates` that passes `test`. One that may not be read fails the lookup
    only when none passes: an unreadable models folder must not hide the others' models."""
    denied: ModelNotFound | None = None
    for candidate in candidates:
        try:
            if test(candidate):
                return candidate
        except PermissionError as exc:
            denied = denied or checkpoint.permission_denied(candidate, exc)
    if denied is not None:
        raise denied
    return None


def _local(name: str, path: Path, settings: EngineSettings) -> ModelSource:
    try:
        is_dir = path.is_dir()
        has_index = is_dir and (path / "model_index.json").is_file()
    except PermissionError as exc:
        raise checkpoint.permission_denied(path, exc) from exc
    if is_dir:
        if not has_index:
            raise ModelNotFound(
                f"{str(path)!r} is not a diffusers model folder (it has no model_index.json): "
                "name the folder that holds model_index.json, or a .safetensors file"
            )
        return ModelSource(name, "folder", path=path)
    if path.suffix.lower() not in checkpoint.CHECKPOINT_SUFFIXES:
        raise ModelNotFound(
            f"{str(path)!r} is not a model: use a diffusers folder or a .safetensors checkpoint"
        )
    checkpoint.refuse_pickle(path, settings.allow_pickle)
    return ModelSource(name, "file", path=path)


# --- listing -----------------------------------------------------------------------------------


def list_models(settings: EngineSettings) -> list[ModelInfo]:
    """Presets, the test models, then the local models found directly in settings.model_dirs."""
    found = [_preset_info(p) for p in presets().values()]
    found += [
        ModelInfo(
            n,
            "test",
            IDENTITY_DESCRIPTION if n == "test:identity" else TEST_DESCRIPTION,
            _tasks_for(n),
            TEST_MODEL_NATIVE,
            "sd1",
        )
        for n in TEST_MODELS
    ]
    seen: set[str] = set()
    taken = {info.name for info in found}
    for folder in settings.model_dirs:
        try:
            entries = sorted(folder.iterdir()) if folder.is_dir() else []
        except OSError as exc:  # one unreadable folder must not break the whole answer
            log.warning("models folder %s skipped: %s", folder, exc)
            continue
        for entry in entries:
            if not _utf8(entry.name):  # no client could name it; it broke the whole answer
                log.warning("model %r skipped: its name is not valid UTF-8", entry)
                continue
            try:
                info = _local_info(entry, settings)
            except OSError as exc:  # an unreadable folder or file: list the others
                log.warning("model %s skipped: %s", entry, exc)
                continue
            if info is not None and info.name in taken:  # `sd15` would load the preset
                info = replace(info, name=f"./{entry.name}")  # a path: ./sd15.safetensors
            if info is not None and info.name not in seen:
                seen.add(info.name)
                found.append(info)
    return found


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes of a file name (surrogate escapes)
        return False
    return True


def _tasks_for(name: str) -> tuple[str, ...]:
    return ("inpaint",) if name.endswith("inpaint") else TASKS


def _preset_info(preset: Preset) -> ModelInfo:
    try:
        available = hub.is_cached(preset.repo)
    except Exception:  # a broken cache must not break the listing
        available = False
    return ModelInfo(
        preset.name,
        "preset",
        preset.description,
        preset.tasks,
        preset.native,
        preset.architecture,
        available,
    )


def _local_info(entry: Path, settings: EngineSettings) -> ModelInfo | None:
    if entry.is_dir() and (entry / "model_index.json").is_file():
        return _folder_info(entry)
    if entry.is_file() and entry.suffix.lower() in checkpoint.CHECKPOINT_SUFFIXES:
        is_pickle = entry.suffix.lower() in checkpoint.PICKLE_SUFFIXES
        if is_pickle and not settings.allow_pickle:
            return None
        # `x.safetensors` is listed as `x`, which resolve_model finds; `x.SAFETENSORS` by its
        # whole name, as `x` would not find it on a case-sensitive file system.
        name = entry.stem if entry.suffix == ".safetensors" else entry.name
        if is_pickle:  # reading a pickle's keys would run it: list it without looking inside
            return ModelInfo(name, "local", f"pickle checkpoint {entry.name}", TASKS, 512)
        try:
            info = checkpoint.inspect_checkpoint(entry)
        except ModelNotFound:
            return None  # a LoRA, a VAE...: not a model
        tasks = ("inpaint",) if info.inpaint_only else TASKS
        description = f"{info.architecture} checkpoint {entry.name}"
        return ModelInfo(
            name, "local", description, tasks, NATIVE[info.architecture], info.architecture
        )
    return None


# The components of a diffusers pipeline that hold weights the engine loads.
WEIGHT_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")
# Their weight files, as diffusers and transformers name them (sharded ones by their index).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")
# Components a folder may lack though its model_index.json lists them: the safety checker,
# which the engine never loads, and its image processor, which nothing else uses.
OPTIONAL_COMPONENTS = ("safety_checker", "feature_extractor")


def _check_folder_weights(name: str, folder: Path) -> None:
    """Raise ModelNotFound for a diffusers folder that lacks a component its model_index.json
    lists, whose UNet, VAE or text encoder weights are missing, or whose .safetensors files
    have a header that cannot be read or does not cover the file (a cut-off download): loading
    it would fail after the loaded model was dropped. Only headers are read."""
    try:
        _check_folder_components(name, folder)
        for component in WEIGHT_COMPONENTS:
            _check_component_weights(name, folder, component)
    except PermissionError as exc:
        raise checkpoint.permission_denied(Path(exc.filename or folder), exc) from exc


def _check_folder_components(name: str, folder: Path) -> None:
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except PermissionError:
        raise
    except (OSError, ValueError):
        return  # diffusers says what is wrong with the index
    for component, value in index.items() if isinstance(index, dict) else ():
        listed = isinstance(value, list) and None not in value  # [null, null]: not in the model
        if listed and component not in OPTIONAL_COMPONENTS and not (folder / component).is_dir():
            raise ModelNotFound(
                f"cannot load model {name!r}: its model_index.json lists {component!r}, but "
                f"{str(folder / component)!r} is missing: download the model again or check "
                "the folder"
            )


def _check_component_weights(name: str, folder: Path, component: str) -> None:
    from safetensors import safe_open

    part = folder / component
    try:
        if not (part / "config.json").is_file():
            return  # not in this model (text_encoder_2), or diffusers names what is missing
        files = [p for p in part.iterdir() if p.name.endswith(WEIGHT_SUFFIXES)]
    except PermissionError as exc:
        raise checkpoint.permission_denied(part, exc) from exc
    if not files:
        raise ModelNotFound(
            f"cannot load model {name!r}: {component}/ has no weights file: a file is "
            "missing; download the model again or check the folder"
        )
    for path in files:
        if path.suffix != ".safetensors":
            continue
        try:
            with path.open("rb"):  # safetensors calls a file it may not read "No such file"
                pass
        except PermissionError as exc:
            raise checkpoint.permission_denied(path, exc) from exc
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except Exception as exc:  # SafetensorError, OSError
            raise ModelNotFound(
                f"cannot load model {name!r}: {component}/{path.name}: {exc}: a file cannot "
                "be read (it may be incomplete or corrupt); download the model again"
            ) from exc


def _folder_info(folder: Path) -> ModelInfo:
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        unet = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        index, unet = {}, {}
    class_name = str(index.get("_class_name", ""))
    architecture = _CROSS_ATTENTION_DIM.get(unet.get("cross_attention_dim"))
    inpaint = unet.get("in_channels") == 9 or "Inpaint" in class_name
    native = NATIVE.get(architecture or "", 512)
    if isinstance(unet.get("sample_size"), int):
        native = int(unet["sample_size"]) * 8
    description = f"diffusers folder ({class_name or 'unknown pipeline'})"
    return ModelInfo(
        folder.name, "local", description, ("inpaint",) if inpaint else TASKS, native, architecture
    )
