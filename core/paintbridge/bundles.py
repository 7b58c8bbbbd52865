"""Plug-in bundles: build one installable bundle per host, and install it where the host looks.

Every bundle carries its own copy of `paintbridge.hostkit` (standard library only), so a
plug-in needs nothing but its host's Python:

- Blender: paintbridge_blender.zip, one folder paintbridge_blender/ holding __init__.py,
  blender_manifest.toml and hostkit/. It is an extension zip (4.2+: Blender finds the manifest
  in the zip's single folder) and a legacy add-on zip at once; the add-on imports
  `from . import hostkit`. Installed as <version>/extensions/user_default/paintbridge_blender/
  (4.2+) or <version>/scripts/addons/paintbridge_blender/.
- GIMP 3: paintbridge-gimp/, holding paintbridge-gimp.py (executable; GIMP 3 needs the folder
  named like the file) and hostkit/ beside it (`import hostkit`: the script's folder is on
  sys.path). Installed as plug-ins/paintbridge-gimp/.
- GIMP 2.10: paintbridge-gimp2/, holding paintbridge_gimp2.py and hostkit/; both are copied
  straight into plug-ins/ (2.10 runs plug-ins from the top of that folder).
- Krita: paintbridge_krita.zip: paintbridge_krita.desktop, paintbridge_krita/ (hostkit/ inside,
  `from . import hostkit`) and any *.action, the layout of Krita's "Import Python Plugin from
  File". Installed into pykrita/ (.action files into actions/), enabled in kritarc.

From plugins/gimp/, the GIMP 3 bundle takes every file but those with "gimp2" in their name; the
GIMP 2.10 bundle takes every file but paintbridge-gimp.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import sys
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

from paintbridge.errors import PaintbridgeError

HOSTS = ("blender", "gimp", "gimp2", "krita")
HOST_NAMES = {"blender": "Blender", "gimp": "GIMP 3", "gimp2": "GIMP 2.10", "krita": "Krita"}

BLENDER_NAME = "paintbridge_blender"
GIMP3_NAME = "paintbridge-gimp"
GIMP2_NAME = "paintbridge-gimp2"
GIMP2_MAIN = "paintbridge_gimp2.py"
KRITA_NAME = "paintbridge_krita"

_PACKAGE_DIR = Path(__file__).resolve().parent
HOSTKIT_DIR = _PACKAGE_DIR / "hostkit"
DEFAULT_PLUGINS_DIR = _PACKAGE_DIR.parent.parent / "plugins"

_SKIP_DIRS = {"__pycache__", "tests", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}
_SKIP_NAMES = {".DS_Store", "Thumbs.db"}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed: the same sources give the same zip


class BundleError(PaintbridgeError):
    code = "bundle_error"


# --- build -----------------------------------------------------------------------------------


def _files(root: Path) -> list[Path]:
    """The files under root that belong in a bundle, sorted, relative to root."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if name in _SKIP_NAMES or path.suffix in _SKIP_SUFFIXES:
                continue
            found.append(path.relative_to(root))
    return found


def _copy_tree(src: Path, dst: Path, exclude: Iterable[str] = ()) -> None:
    excluded = set(exclude)
    for rel in _files(src):
        if rel.parts[0] in excluded:
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, target)


def _zip_dir(root: Path, zip_path: Path) -> None:
    """Zips everything under root (paths relative to root), deterministic order and times."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for rel in _files(root):
            info = zipfile.ZipInfo(rel.as_posix(), _ZIP_TIME)
            mode = (root / rel).stat().st_mode
            info.external_attr = (0o755 if mode & stat.S_IXUSR else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, (root / rel).read_bytes())


def _source(plugins_dir: Path, host_folder: str) -> Path:
    folder = plugins_dir / host_folder
    if not folder.is_dir() or not any(folder.iterdir()):
        raise BundleError(
            f"the {host_folder} plug-in sources are missing: {folder} is not a folder with files. "
            "Build the bundles from a source checkout, or pass --source PLUGINS_DIR."
        )
    return folder


def _fresh(path: Path) -> Path:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    return path


def _make_executable(path: Path) -> None:
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def build_blender(out: Path, plugins_dir: Path = DEFAULT_PLUGINS_DIR) -> Path:
    """out/paintbridge_blender.zip: one folder paintbridge_blender/ with the add-on and hostkit/."""
    src = _source(plugins_dir, "blender")
    stage = _fresh(out / f".{BLENDER_NAME}.stage")
    _copy_tree(src, stage / BLENDER_NAME)
    _copy_tree(HOSTKIT_DIR, stage / BLENDER_NAME / "hostkit")
    target = _fresh(out / f"{BLENDER_NAME}.zip")
    _zip_dir(stage, target)
    shutil.rmtree(stage)
    return target


def _gimp_main(src: Path, name: str) -> Path:
    main = src / name
    if not main.is_file():
        raise BundleError(f"the GIMP plug-in needs {main}; it is missing")
    return main


def build_gimp3(out: Path, plugins_dir: Path = DEFAULT_PLUGINS_DIR) -> Path:
    """out/paintbridge-gimp/: paintbridge-gimp.py (executable), the other GIMP 3 files, hostkit/."""
    src = _source(plugins_dir, "gimp")
    _gimp_main(src, f"{GIMP3_NAME}.py")
    target = _fresh(out / GIMP3_NAME)
    _copy_tree(src, target, exclude=[p.name for p in src.iterdir() if "gimp2" in p.name])
    _copy_tree(HOSTKIT_DIR, target / "hostkit")
    _make_executable(target / f"{GIMP3_NAME}.py")
    return target


def build_gimp2(out: Path, plugins_dir: Path = DEFAULT_PLUGINS_DIR) -> Path:
    """out/paintbridge-gimp2/: paintbridge_gimp2.py (executable), hostkit/ beside it."""
    src = _source(plugins_dir, "gimp")
    _gimp_main(src, GIMP2_MAIN)
    target = _fresh(out / GIMP2_NAME)
    _copy_tree(src, target, exclude=[f"{GIMP3_NAME}.py"])
    _copy_tree(HOSTKIT_DIR, target / "hostkit")
    _make_executable(target / GIMP2_MAIN)
    return target


def build_krita(out: Path, plugins_dir: Path = DEFAULT_PLUGINS_DIR) -> Path:
    """out/paintbridge_krita.zip: the .desktop, paintbridge_krita/ + hostkit/, any .action."""
    src = _source(plugins_dir, "krita")
    for needed in (src / f"{KRITA_NAME}.desktop", src / KRITA_NAME / "__init__.py"):
        if not needed.is_file():
            raise BundleError(f"the Krita plug-in needs {needed}; it is missing")
    stage = _fresh(out / f".{KRITA_NAME}.stage")
    _copy_tree(src, stage)
    _copy_tree(HOSTKIT_DIR, stage / KRITA_NAME / "hostkit")
    target = _fresh(out / f"{KRITA_NAME}.zip")
    _zip_dir(stage, target)
    shutil.rmtree(stage)
    return target


BUILDERS = {
    "blender": build_blender,
    "gimp": build_gimp3,
    "gimp2": build_gimp2,
    "krita": build_krita,
}


def build(
    out: Path, hosts: Iterable[str] = HOSTS, plugins_dir: Path = DEFAULT_PLUGINS_DIR
) -> dict[str, Path]:
    """Builds the bundle of each host into `out`; returns {host: bundle path}."""
    out.mkdir(parents=True, exist_ok=True)
    return {host: BUILDERS[host](out, plugins_dir) for host in hosts}


# --- where each host looks -------------------------------------------------------------------


@dataclass(frozen=True)
class HostPaths:
    """Where the hosts keep user plug-ins on one OS, for one user."""

    blender_config: PurePath  # holds one folder per Blender version ("4.5", "5.0")
    gimp3_plugins: PurePath
    gimp2_plugins: PurePath
    krita_resources: PurePath  # holds pykrita/ and actions/
    kritarc: PurePath

    @property
    def krita_pykrita(self) -> PurePath:
        return self.krita_resources / "pykrita"


def host_paths(platform: str, home: str | PurePath, environ: Mapping[str, str]) -> HostPaths:
    """The per-user plug-in folders of Blender, GIMP 3, GIMP 2.10 and Krita.

    `platform` is a sys.platform value ("linux", "darwin", "win32"); `home` and `environ`
    stand for the user's home and environment, so any OS can be computed on any OS."""
    if platform.startswith("win"):
        home_w = PureWindowsPath(home)
        roaming = PureWindowsPath(environ.get("APPDATA") or home_w / "AppData" / "Roaming")
        local = PureWindowsPath(environ.get("LOCALAPPDATA") or home_w / "AppData" / "Local")
        return HostPaths(
            blender_config=roaming / "Blender Foundation" / "Blender",
            gimp3_plugins=roaming / "GIMP" / "3.0" / "plug-ins",
            gimp2_plugins=roaming / "GIMP" / "2.10" / "plug-ins",
            krita_resources=roaming / "krita",
            kritarc=local / "kritarc",
        )
    home_p = PurePosixPath(home)
    if platform == "darwin":
        support = home_p / "Library" / "Application Support"
        return HostPaths(
            blender_config=support / "Blender",
            gimp3_plugins=support / "GIMP" / "3.0" / "plug-ins",
            gimp2_plugins=support / "GIMP" / "2.10" / "plug-ins",
            krita_resources=support / "krita",
            kritarc=home_p / "Library" / "Preferences" / "kritarc",
        )
    config = PurePosixPath(environ.get("XDG_CONFIG_HOME", "").strip() or home_p / ".config")
    data = PurePosixPath(environ.get("XDG_DATA_HOME", "").strip() or home_p / ".local" / "share")
    return HostPaths(
        blender_config=config / "blender",
        gimp3_plugins=config / "GIMP" / "3.0" / "plug-ins",
        gimp2_plugins=config / "GIMP" / "2.10" / "plug-ins",
        krita_resources=data / "krita",
        kritarc=config / "kritarc",
    )


def current_host_paths() -> HostPaths:
    return host_paths(sys.platform, Path.home(), os.environ)


_VERSION_DIR = re.compile(r"^(\d+)\.(\d+)$")


def _version_key(name: str) -> tuple[int, int] | None:
    match = _VERSION_DIR.match(name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def newest_blender_version(blender_config: Path) -> str | None:
    """The newest version folder ("4.5") in Blender's config folder, or None."""
    if not blender_config.is_dir():
        return None
    versions = [
        (key, p.name)
        for p in blender_config.iterdir()
        if p.is_dir() and (key := _version_key(p.name)) is not None
    ]
    return max(versions)[1] if versions else None


def newest_gimp3_plugins(default: Path) -> Path:
    """GIMP 3's plug-in folder: `default` (GIMP/3.0/plug-ins), or the same in the newest 3.x
    settings folder beside it when GIMP made a newer one (it keeps one per minor version)."""
    gimp_root = default.parent.parent
    versions = [
        key
        for p in (gimp_root.iterdir() if gimp_root.is_dir() else ())
        if p.is_dir() and (key := _version_key(p.name)) is not None and key[0] == 3
    ]
    if not versions:
        return default
    major, minor = max(versions)
    return gimp_root / f"{major}.{minor}" / default.name


def blender_target(blender_config: Path, version: str) -> Path:
    """Where the add-on goes for a Blender version: extensions/user_default (4.2+) or
    scripts/addons (older)."""
    key = _version_key(version)
    if key is None:
        raise BundleError(f"a Blender version looks like 4.5, got {version!r}")
    if key >= (4, 2):
        return blender_config / version / "extensions" / "user_default"
    return blender_config / version / "scripts" / "addons"


# --- install ---------------------------------------------------------------------------------


def _replace_dir(src: Path, dst: Path, dry_run: bool, log: list[str]) -> None:
    log.append(f"copy {src.name}/ -> {dst}")
    if dry_run:
        return
    if dst.exists():
        shutil.rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dst)


def _replace_file(src: Path, dst: Path, dry_run: bool, log: list[str]) -> None:
    log.append(f"copy {src.name} -> {dst}")
    if dry_run:
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def _extract(zip_path: Path, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            target = into / info.filename
            archive.extract(info, into)
            if (info.external_attr >> 16) & stat.S_IXUSR:
                _make_executable(target)
    return into


def install_blender(bundle: Path, dest: Path, dry_run: bool = False) -> list[str]:
    """Unpacks paintbridge_blender.zip into dest (extensions/user_default or scripts/addons)."""
    log: list[str] = []
    staging = dest / f".{BLENDER_NAME}.unpack"
    if dry_run:
        log.append(f"copy {BLENDER_NAME}/ -> {dest / BLENDER_NAME}")
        return log
    _extract(bundle, _fresh(staging))
    _replace_dir(staging / BLENDER_NAME, dest / BLENDER_NAME, dry_run, log)
    shutil.rmtree(staging)
    log.append("enable it in Blender: Edit > Preferences > Add-ons > paintbridge")
    return log


def install_gimp3(bundle: Path, dest: Path, dry_run: bool = False) -> list[str]:
    """Copies the paintbridge-gimp/ folder into GIMP 3's plug-ins folder `dest`."""
    log: list[str] = []
    _replace_dir(bundle, dest / GIMP3_NAME, dry_run, log)
    return log


def install_gimp2(bundle: Path, dest: Path, dry_run: bool = False) -> list[str]:
    """Copies paintbridge_gimp2.py and hostkit/ (and any other files) into GIMP 2.10's
    plug-ins folder `dest`."""
    log: list[str] = []
    for item in sorted(bundle.iterdir()):
        if item.is_dir():
            _replace_dir(item, dest / item.name, dry_run, log)
        else:
            _replace_file(item, dest / item.name, dry_run, log)
    return log


def install_krita(
    bundle: Path, pykrita: Path, kritarc: Path | None, dry_run: bool = False
) -> list[str]:
    """Unpacks paintbridge_krita.zip into `pykrita` (.action files into ../actions) and enables
    the plug-in in `kritarc` (skipped when kritarc is None)."""
    log: list[str] = []
    staging = pykrita.parent / f".{KRITA_NAME}.unpack"
    if not dry_run:
        _extract(bundle, _fresh(staging))
        for item in sorted(staging.iterdir()):
            if item.suffix == ".action":
                _replace_file(item, pykrita.parent / "actions" / item.name, dry_run, log)
            elif item.is_dir():
                _replace_dir(item, pykrita / item.name, dry_run, log)
            else:
                _replace_file(item, pykrita / item.name, dry_run, log)
        shutil.rmtree(staging)
    else:
        log.append(f"copy {KRITA_NAME}.desktop and {KRITA_NAME}/ -> {pykrita}")
        with zipfile.ZipFile(bundle) as archive:
            for name in sorted(n for n in archive.namelist() if n.endswith(".action")):
                log.append(f"copy {name} -> {pykrita.parent / 'actions' / name}")
    if kritarc is not None:
        log.append(f"enable {KRITA_NAME} in {kritarc} ([python] enable_{KRITA_NAME}=true)")
        if not dry_run:
            enable_krita_plugin(kritarc, KRITA_NAME)
    else:
        log.append(
            "enable it in Krita: Settings > Configure Krita > Python Plugin Manager, then restart"
        )
    return log


def enable_krita_plugin(kritarc: Path, name: str) -> None:
    """Sets `enable_<name>=true` in the [python] group of kritarc, keeping everything else."""
    key = f"enable_{name}"
    lines = []
    if kritarc.is_file():  # surrogateescape: a kritarc in another encoding keeps its bytes
        lines = kritarc.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    section = None
    inserted = False
    out: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            if section == "python" and not inserted:
                _insert_before_blank_tail(out, f"{key}=true")
                inserted = True
            section = stripped[1:-1]
        elif section == "python" and stripped.split("=", 1)[0].strip() == key:
            if not inserted:
                out.append(f"{key}=true")
                inserted = True
            continue
        out.append(line)
    if section == "python" and not inserted:
        _insert_before_blank_tail(out, f"{key}=true")
        inserted = True
    if not inserted:
        if out and out[-1].strip():
            out.append("")
        out += ["[python]", f"{key}=true"]
    kritarc.parent.mkdir(parents=True, exist_ok=True)
    kritarc.write_text("\n".join(out) + "\n", encoding="utf-8", errors="surrogateescape")


def _insert_before_blank_tail(lines: list[str], entry: str) -> None:
    at = len(lines)
    while at > 0 and not lines[at - 1].strip():
        at -= 1
    lines.insert(at, entry)


# --- the launcher the plug-ins read ----------------------------------------------------------


def server_command(argv0: str | None = None, executable: str | None = None) -> list[str]:
    """The command that starts this paintbridge's server: the `paintbridge` script that is
    running (absolute), else `python -m paintbridge`; followed by "serve"."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    executable = sys.executable if executable is None else executable
    script = Path(argv0)
    if script.stem == "paintbridge" and script.suffix in ("", ".exe") and script.is_file():
        return [str(script.resolve()), "serve"]
    return [str(Path(executable).absolute()), "-m", "paintbridge", "serve"]


def write_launcher(config_dir: Path, command: list[str]) -> Path:
    """Writes hostkit.json ({"command": [...]}) so plug-ins can start the server themselves."""
    from paintbridge import __version__

    config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # it also holds server.json
    path = config_dir / "hostkit.json"
    path.write_text(
        json.dumps({"command": command, "version": __version__}, indent=2) + "\n",
        encoding="utf-8",
    )
    return path
