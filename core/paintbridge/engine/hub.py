"""The Hugging Face hub: download a model repo once (with progress bars), then use the cache.

Offline (`HF_HUB_OFFLINE=1`) or with downloads turned off, only what is already in the local
Hugging Face cache is used, and anything missing is a ModelNotFound that says how to fix it.
"""

from __future__ import annotations

import re
from pathlib import Path

from paintbridge.errors import ModelNotFound

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
# What from_single_file needs from a repo besides weights: configs and the tokenizer files.
CONFIG_PATTERNS = ["*.json", "*.txt", "tokenizer*/*", "scheduler/*"]


def is_repo_id(name: str) -> bool:
    """`org/name` with the characters the hub allows (no `..`)."""
    return bool(REPO_ID.match(name)) and ".." not in name


def is_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


def is_cached(repo: str) -> bool:
    """True when the repo's model_index.json is in the local cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, "model_index.json"), str)


def check_loadable(repo: str, *, label: str, allow_download: bool) -> None:
    """ModelNotFound now when `repo` cannot load: not in the local cache, and offline or with
    downloads off. Cheap (the cache folder only, no network); a cache it cannot read passes,
    the load says why later."""
    if allow_download and not is_offline():
        return  # the load downloads it, or says why it could not
    try:
        cached = is_cached(repo)
    except Exception:  # an unreadable cache or a hub library change: let the load decide
        return
    if not cached:
        raise ModelNotFound(_why_not(repo, label, allow_download, USE_LOCAL))


def _why_not(repo: str, label: str, allow_download: bool, instead: str) -> str:
    if is_offline():
        reason, fix = "the Hugging Face hub is offline here (HF_HUB_OFFLINE=1)", "go online"
    elif not allow_download:
        reason, fix = "downloads are turned off", "allow downloads"
    else:
        reason, fix = "the download failed", "check the connection and the repo name"
    return (
        f"{label} ({repo}) is not in the local Hugging Face cache and {reason}: {fix} and "
        f"load it once to download it, or {instead}"
    )


USE_LOCAL = "use a local diffusers folder or .safetensors file from your models folder"


def download_pipeline(
    repo: str, *, label: str, allow_download: bool, skip: tuple[str, ...] = ()
) -> Path:
    """The local folder of diffusers pipeline `repo`, downloaded first if needed and allowed.

    Only the files the pipeline loads are fetched (not the repo's extra single-file checkpoints,
    nor the folders of the components named in `skip`).
    """
    from diffusers import DiffusionPipeline

    local_only = is_offline() or not allow_download
    try:
        # A component passed as None is one diffusers does not download.
        passed = {name: None for name in skip}
        folder = DiffusionPipeline.download(repo, local_files_only=local_only, **passed)
    except Exception as exc:  # the hub raises OSError, HfHubHTTPError, ValueError...
        message = _why_not(repo, label, allow_download, USE_LOCAL)
        if not local_only:
            message += f" ({type(exc).__name__}: {exc})"
        raise ModelNotFound(message) from exc
    return Path(folder)


def config_folder(repo: str, *, label: str, allow_download: bool, instead: str) -> Path:
    """A local folder with the configs and tokenizer of `repo` (no weights), for single files.

    `instead` says what else the user can do when it is not available."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, local_files_only=True, allow_patterns=CONFIG_PATTERNS))
    except Exception:
        if is_offline() or not allow_download:
            raise ModelNotFound(_why_not(repo, label, allow_download, instead)) from None
    try:
        return Path(snapshot_download(repo, allow_patterns=CONFIG_PATTERNS))
    except Exception as exc:
        message = _why_not(repo, label, allow_download, instead)
        raise ModelNotFound(f"{message} ({type(exc).__name__}: {exc})") from exc
