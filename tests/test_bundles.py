"""paintbridge.bundles and `paintbridge plugins build/install`."""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest

from paintbridge import bundles
from paintbridge.cli import main

# every module of hostkit goes into every bundle
HOSTKIT_FILES = {p.name for p in Path(bundles.HOSTKIT_DIR).glob("*.py")}


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def plugins_src(tmp_path: Path) -> Path:
    """A copy of plugins/ with some clutter that must not reach a bundle."""
    import shutil

    src = tmp_path / "plugins"
    shutil.copytree(bundles.DEFAULT_PLUGINS_DIR, src)
    (src / "blender" / "__pycache__").mkdir(exist_ok=True)
    (src / "blender" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"junk")
    (src / "krita" / "paintbridge_krita.action").write_text("<ActionCollection/>")
    return src


def test_build_writes_every_bundle(tmp_path: Path, plugins_src: Path) -> None:
    out = tmp_path / "dist"
    built = bundles.build(out, plugins_dir=plugins_src)
    assert set(built) == set(bundles.HOSTS)

    with zipfile.ZipFile(built["blender"]) as archive:
        names = set(archive.namelist())
    assert "paintbridge_blender/__init__.py" in names
    assert "paintbridge_blender/blender_manifest.toml" in names
    assert {f"paintbridge_blender/hostkit/{f}" for f in HOSTKIT_FILES} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]

    with zipfile.ZipFile(built["krita"]) as archive:
        names = set(archive.namelist())
    assert {"paintbridge_krita.desktop", "paintbridge_krita/__init__.py"} <= names
    assert "paintbridge_krita.action" in names
    assert {f"paintbridge_krita/hostkit/{f}" for f in HOSTKIT_FILES} <= names

    gimp3 = _tree(built["gimp"])
    assert built["gimp"].name == "paintbridge-gimp"
    assert "paintbridge-gimp.py" in gimp3 and "paintbridge_gimp2.py" not in gimp3
    assert {f"hostkit/{f}" for f in HOSTKIT_FILES} <= gimp3
    assert os.access(built["gimp"] / "paintbridge-gimp.py", os.X_OK)

    gimp2 = _tree(built["gimp2"])
    assert "paintbridge_gimp2.py" in gimp2 and "paintbridge-gimp.py" not in gimp2
    assert {f"hostkit/{f}" for f in HOSTKIT_FILES} <= gimp2
    for tree in (gimp3, gimp2):
        assert not [n for n in tree if "__pycache__" in n]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "paintbridge_blender.zip",
            "paintbridge-gimp",
            "paintbridge-gimp2",
            "paintbridge_krita.zip",
        ]
    )  # no staging folders left behind


def test_build_is_reproducible(tmp_path: Path) -> None:
    first = bundles.build(tmp_path / "a", ["blender", "krita"])
    second = bundles.build(tmp_path / "b", ["blender", "krita"])
    for host in ("blender", "krita"):
        assert first[host].read_bytes() == second[host].read_bytes()


def test_bundled_hostkit_is_importable_as_a_subpackage(tmp_path: Path) -> None:
    """The Blender and Krita add-ons import `from . import hostkit`: the copy in the zip must work
    as a sub-package under any parent name (the parent's own __init__ needs its host, so a
    stand-in parent is used here)."""
    built = bundles.build(tmp_path / "dist", ["blender"])
    with zipfile.ZipFile(built["blender"]) as archive:
        for name in archive.namelist():
            if "/hostkit/" in name:
                target = tmp_path / "site" / "standin_addon" / name.split("/", 1)[1]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(name))
    (tmp_path / "site" / "standin_addon" / "__init__.py").write_text("")
    sys.path.insert(0, str(tmp_path / "site"))
    try:
        from standin_addon import hostkit as bundled  # type: ignore[import-not-found]

        assert bundled.Box(0, 0, 1, 1).area == 1
        assert bundled.__file__.startswith(str(tmp_path))
    finally:
        sys.path.remove(str(tmp_path / "site"))
        for name in [m for m in sys.modules if m.startswith("standin_addon")]:
            del sys.modules[name]


def test_build_without_sources_says_so(tmp_path: Path) -> None:
    with pytest.raises(bundles.BundleError, match="--source"):
        bundles.build(tmp_path / "dist", ["blender"], tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("platform", "home", "environ", "expected"),
    [
        ("linux", "/home/u", {}, {
            "blender_config": "/home/u/.config/blender",
            "gimp3_plugins": "/home/u/.config/GIMP/3.0/plug-ins",
            "gimp2_plugins": "/home/u/.config/GIMP/2.10/plug-ins",
            "krita_pykrita": "/home/u/.local/share/krita/pykrita",
            "kritarc": "/home/u/.config/kritarc",
        }),
        ("linux", "/home/u", {"XDG_CONFIG_HOME": "/c", "XDG_DATA_HOME": "/d"}, {
            "blender_config": "/c/blender",
            "gimp3_plugins": "/c/GIMP/3.0/plug-ins",
            "gimp2_plugins": "/c/GIMP/2.10/plug-ins",
            "krita_pykrita": "/d/krita/pykrita",
            "kritarc": "/c/kritarc",
        }),
        ("darwin", "/Users/u", {}, {
            "blender_config": "/Users/u/Library/Application Support/Blender",
            "gimp3_plugins": "/Users/u/Library/Application Support/GIMP/3.0/plug-ins",
            "gimp2_plugins": "/Users/u/Library/Application Support/GIMP/2.10/plug-ins",
            "krita_pykrita": "/Users/u/Library/Application Support/krita/pykrita",
            "kritarc": "/Users/u/Library/Preferences/kritarc",
        }),
        ("win32", "C:\\Users\\u", {
            "APPDATA": "C:\\Users\\u\\AppData\\Roaming",
            "LOCALAPPDATA": "C:\\Users\\u\\AppData\\Local",
        }, {
            "blender_config": "C:\\Users\\u\\AppData\\Roaming\\Blender Foundation\\Blender",
            "gimp3_plugins": "C:\\Users\\u\\AppData\\Roaming\\GIMP\\3.0\\plug-ins",
            "gimp2_plugins": "C:\\Users\\u\\AppData\\Roaming\\GIMP\\2.10\\plug-ins",
            "krita_pykrita": "C:\\Users\\u\\AppData\\Roaming\\krita\\pykrita",
            "kritarc": "C:\\Users\\u\\AppData\\Local\\kritarc",
        }),
        ("win32", "C:\\Users\\u", {}, {
            "blender_config": "C:\\Users\\u\\AppData\\Roaming\\Blender Foundation\\Blender",
            "gimp3_plugins": "C:\\Users\\u\\AppData\\Roaming\\GIMP\\3.0\\plug-ins",
            "gimp2_plugins": "C:\\Users\\u\\AppData\\Roaming\\GIMP\\2.10\\plug-ins",
            "krita_pykrita": "C:\\Users\\u\\AppData\\Roaming\\krita\\pykrita",
            "kritarc": "C:\\Users\\u\\AppData\\Local\\kritarc",
        }),
    ],
)  # fmt: skip
def test_host_paths_table(
    platform: str, home: str, environ: dict[str, str], expected: dict[str, str]
) -> None:
    paths = bundles.host_paths(platform, home, environ)
    flavour = PureWindowsPath if platform == "win32" else PurePosixPath
    for field, value in expected.items():
        assert getattr(paths, field) == flavour(value), field


def test_blender_version_and_target(tmp_path: Path) -> None:
    assert bundles.newest_blender_version(tmp_path / "missing") is None
    for name in ("3.6", "4.10", "4.5", "config", "5.0"):
        (tmp_path / name).mkdir()
    assert bundles.newest_blender_version(tmp_path) == "5.0"
    (tmp_path / "5.0").rmdir()
    assert bundles.newest_blender_version(tmp_path) == "4.10"
    assert bundles.blender_target(tmp_path, "4.2") == tmp_path / "4.2/extensions/user_default"
    assert bundles.blender_target(tmp_path, "4.1") == tmp_path / "4.1/scripts/addons"
    with pytest.raises(bundles.BundleError):
        bundles.blender_target(tmp_path, "latest")


def test_enable_krita_plugin_keeps_the_rest(tmp_path: Path) -> None:
    rc = tmp_path / "kritarc"
    bundles.enable_krita_plugin(rc, "paintbridge_krita")
    assert rc.read_text() == "[python]\nenable_paintbridge_krita=true\n"
    rc.write_text(
        "[General]\nfoo=1\n\n[python]\nenable_other=true\nenable_paintbridge_krita=false\n\n"
        "[theme]\nTheme=Krita dark\n"
    )
    bundles.enable_krita_plugin(rc, "paintbridge_krita")
    text = rc.read_text()
    assert "enable_paintbridge_krita=true" in text and "=false" not in text
    assert "enable_other=true" in text and "Theme=Krita dark" in text and "foo=1" in text
    rc.write_text("[python]\nenable_other=true\n\n[theme]\nTheme=x\n")
    bundles.enable_krita_plugin(rc, "paintbridge_krita")
    assert rc.read_text() == (
        "[python]\nenable_other=true\nenable_paintbridge_krita=true\n\n[theme]\nTheme=x\n"
    )
    rc.write_text("[General]\nfoo=1\n")
    bundles.enable_krita_plugin(rc, "paintbridge_krita")
    assert rc.read_text() == "[General]\nfoo=1\n\n[python]\nenable_paintbridge_krita=true\n"


def test_server_command(tmp_path: Path) -> None:
    script = tmp_path / "bin" / "paintbridge"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    assert bundles.server_command(str(script), "/py") == [str(script.resolve()), "serve"]
    assert bundles.server_command("/x/paintbridge/__main__.py", "/usr/bin/python3") == [
        "/usr/bin/python3",
        "-m",
        "paintbridge",
        "serve",
    ]


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("--gimp", {"paintbridge-gimp/paintbridge-gimp.py", "paintbridge-gimp/hostkit/pixels.py"}),
        ("--gimp2", {"paintbridge_gimp2.py", "hostkit/client.py"}),
        ("--blender", {"paintbridge_blender/__init__.py", "paintbridge_blender/hostkit/tasks.py"}),
        ("--krita", {"paintbridge_krita.desktop", "paintbridge_krita/hostkit/geometry.py"}),
    ],
)
def test_install_with_dest(
    flag: str,
    expected: set[str],
    tmp_path: Path,
    isolated_dirs: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dest = tmp_path / "profile"
    assert main(["plugins", "install", flag, "--dest", str(dest)]) == 0
    tree = _tree(dest)
    assert expected <= tree
    assert not [n for n in tree if "__pycache__" in n or ".unpack" in n]
    launcher = json.loads((isolated_dirs / "config" / "hostkit.json").read_text())
    assert launcher["command"][-1] == "serve"
    assert Path(launcher["command"][0]).is_absolute()
    if flag == "--gimp":
        assert os.access(dest / "paintbridge-gimp" / "paintbridge-gimp.py", os.X_OK)
    # installing again replaces, it does not nest
    assert main(["plugins", "install", flag, "--dest", str(dest)]) == 0
    assert _tree(dest) == tree


def test_install_into_a_fake_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    (home / ".config" / "blender" / "4.5").mkdir(parents=True)
    (home / ".config" / "GIMP" / "3.0").mkdir(parents=True)
    (home / ".local" / "share" / "krita").mkdir(parents=True)
    (home / ".config" / "kritarc").write_text("[General]\nx=1\n")
    assert main(["plugins", "install"]) == 0  # every host found: Blender, GIMP 3, Krita
    ext = home / ".config/blender/4.5/extensions/user_default/paintbridge_blender"
    assert (ext / "blender_manifest.toml").is_file() and (ext / "hostkit" / "client.py").is_file()
    assert (home / ".config/GIMP/3.0/plug-ins/paintbridge-gimp/paintbridge-gimp.py").is_file()
    assert not (home / ".config/GIMP/2.10").exists()  # not found, not installed
    pykrita = home / ".local/share/krita/pykrita"
    assert (pykrita / "paintbridge_krita" / "hostkit" / "__init__.py").is_file()
    assert "enable_paintbridge_krita=true" in (home / ".config" / "kritarc").read_text()


def test_install_goes_to_the_newest_gimp_3_settings_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    for version in ("2.10", "3.0", "3.2"):
        (home / ".config" / "GIMP" / version).mkdir(parents=True)
    assert main(["plugins", "install", "--gimp"]) == 0
    assert (home / ".config/GIMP/3.2/plug-ins/paintbridge-gimp/paintbridge-gimp.py").is_file()
    assert not (home / ".config/GIMP/3.0/plug-ins").exists()


def test_an_install_that_cannot_write_is_one_line(
    tmp_path: Path, isolated_dirs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["plugins", "install", "--gimp", "--dest", str(blocker / "plug-ins")]) == 2
    err = capsys.readouterr().err
    assert "could not install the GIMP 3 plug-in" in err and str(blocker) in err, err
    assert "Traceback" not in err


def test_an_install_whose_config_folder_is_not_writable_copies_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """hostkit.json cannot be written: said before any plug-in is copied, not after."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("PAINTBRIDGE_CONFIG_DIR", str(blocker / "config"))
    dest = tmp_path / "pykrita"
    assert main(["plugins", "install", "--krita", "--dest", str(dest)]) == 2
    err = capsys.readouterr().err
    assert "could not write" in err and "PAINTBRIDGE_CONFIG_DIR" in err, err
    assert not dest.exists()


def test_enable_krita_plugin_keeps_a_kritarc_in_another_encoding(tmp_path: Path) -> None:
    rc = tmp_path / "kritarc"
    rc.write_bytes("[General]\nrecent=/home/u/caf\xe9.kra\n".encode("latin-1"))
    bundles.enable_krita_plugin(rc, "paintbridge_krita")
    assert rc.read_bytes() == (
        b"[General]\nrecent=/home/u/caf\xe9.kra\n\n[python]\nenable_paintbridge_krita=true\n"
    )


def test_install_dry_run_changes_nothing(
    tmp_path: Path, isolated_dirs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "profile"
    assert main(["plugins", "install", "--krita", "--dest", str(dest), "--dry-run"]) == 0
    assert not dest.exists()
    assert not (isolated_dirs / "config" / "hostkit.json").exists()
    out = capsys.readouterr().out
    assert "would write" in out
    # everything the real install copies is named, the menu's .action beside pykrita too
    assert f"paintbridge_krita.action -> {tmp_path / 'actions' / 'paintbridge_krita.action'}" in out


def test_install_dest_needs_one_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "install", "--dest", str(tmp_path)]) == 2
    assert "exactly one" in capsys.readouterr().err


def test_install_blender_without_a_version_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert main(["plugins", "install", "--blender"]) == 2
    assert "--blender-version" in capsys.readouterr().err
    assert main(["plugins", "install", "--blender", "--blender-version", "4.1"]) == 0
    assert (tmp_path / ".config/blender/4.1/scripts/addons/paintbridge_blender").is_dir()


def test_cli_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "build", "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "paintbridge_blender.zip" in out and "paintbridge_krita.zip" in out
    assert (tmp_path / "d" / "paintbridge-gimp2" / "paintbridge_gimp2.py").is_file()
