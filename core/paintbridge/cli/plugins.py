"""`paintbridge plugins build` and `paintbridge plugins install`: the editor plug-ins.

build   writes one bundle per host into --out (default dist/).
install builds them into a temporary folder and copies each where its host looks (or into
        --dest), enables the Krita plug-in in kritarc, and writes hostkit.json into the
        paintbridge config folder so the plug-ins can start the server themselves.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

HOST_FLAGS = {
    "blender": "Blender (4.2+ as an extension, older as a legacy add-on)",
    "gimp": "GIMP 3",
    "gimp2": "GIMP 2.10 (Python-Fu)",
    "krita": "Krita",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plugins",
        help="build or install the Blender, GIMP and Krita plug-ins",
        description="Build or install the Blender, GIMP and Krita plug-ins.",
    )
    actions = parser.add_subparsers(dest="plugins_command", metavar="ACTION")

    build = actions.add_parser("build", help="write one bundle per host into a folder")
    build.add_argument("--out", type=Path, default=Path("dist"), help="folder (default: dist)")
    build.add_argument("--source", type=Path, help="the plugins/ folder (default: this checkout's)")
    build.set_defaults(func=build_command)

    install = actions.add_parser(
        "install",
        help="install the plug-ins where each host looks",
        description="Install the plug-ins for the chosen hosts (default: every host found).",
    )
    for host, text in HOST_FLAGS.items():
        install.add_argument(f"--{host}", action="store_true", help=f"install for {text}")
    install.add_argument(
        "--all", action="store_true", help="every host whose settings folder exists (default)"
    )
    install.add_argument(
        "--dest",
        type=Path,
        help="install into this folder instead (the host's plug-in folder of a custom profile: "
        "Blender extensions/user_default or scripts/addons, GIMP plug-ins, Krita pykrita, whose "
        "shortcut file goes into the actions folder beside it); needs exactly one host flag",
    )
    install.add_argument(
        "--blender-version", help="the Blender version folder to use, e.g. 4.5 (default: newest)"
    )
    install.add_argument(
        "--source", type=Path, help="the plugins/ folder (default: this checkout's)"
    )
    install.add_argument("--dry-run", action="store_true", help="say what would happen, do nothing")
    install.set_defaults(func=install_command)

    parser.set_defaults(func=lambda args: (parser.print_help(sys.stderr), 2)[1])  # as argparse


def _source(args: argparse.Namespace) -> Path:
    from paintbridge import bundles

    return args.source if args.source is not None else bundles.DEFAULT_PLUGINS_DIR


def build_command(args: argparse.Namespace) -> int:
    from paintbridge import bundles

    if args.out.exists() and not args.out.is_dir():
        raise bundles.BundleError(f"--out takes a folder; {str(args.out)!r} is a file")
    built = bundles.build(args.out, bundles.HOSTS, _source(args))
    for host, path in built.items():
        print(f"{bundles.HOST_NAMES[host]:<10} {path}")
    return 0


def _detected(paths: Any) -> list[str]:
    from paintbridge import bundles

    found = []
    if Path(paths.blender_config).is_dir():
        found.append("blender")
    if bundles.newest_gimp3_plugins(Path(paths.gimp3_plugins)).parent.is_dir():
        found.append("gimp")
    if Path(paths.gimp2_plugins).parent.is_dir():
        found.append("gimp2")
    if Path(paths.krita_resources).is_dir() or Path(paths.kritarc).is_file():
        found.append("krita")
    return found


def install_command(args: argparse.Namespace) -> int:
    from paintbridge import bundles, config

    paths = bundles.current_host_paths()
    chosen = [host for host in bundles.HOSTS if getattr(args, host)]
    if args.dest is not None and len(chosen) != 1:
        raise bundles.BundleError(
            "--dest is one host's plug-in folder: give exactly one of "
            + ", ".join(f"--{h}" for h in bundles.HOSTS)
        )
    if not chosen:
        chosen = _detected(paths)
        if not chosen:
            raise bundles.BundleError(
                "found no Blender, GIMP or Krita settings folder for this user (looked in "
                f"{paths.blender_config}, {Path(paths.gimp3_plugins).parent}, "
                f"{Path(paths.gimp2_plugins).parent}, {paths.krita_resources}). Start the editor "
                "once, or name it: --blender, --gimp, --gimp2, --krita."
            )
    dry = args.dry_run
    command = bundles.server_command()
    launcher = config.config_dir() / "hostkit.json"
    if not dry:  # first: a config folder it cannot write stops it before any plug-in is copied
        try:
            bundles.write_launcher(config.config_dir(), command)
        except OSError as exc:
            raise bundles.BundleError(
                f"could not write {launcher}: {exc.strerror or exc} (set PAINTBRIDGE_CONFIG_DIR "
                "to a writable folder)"
            ) from exc
    with tempfile.TemporaryDirectory(prefix="paintbridge-bundles-") as tmp:
        built = bundles.build(Path(tmp), chosen, _source(args))
        for host in chosen:
            try:
                log = _install_one(host, built[host], args, paths)
            except OSError as exc:  # a folder that cannot be written, a file in the way...
                where = f" ({exc.filename})" if exc.filename else ""
                raise bundles.BundleError(
                    f"could not install the {bundles.HOST_NAMES[host]} plug-in: "
                    f"{exc.strerror or exc}{where}. Close the editor if it holds the files, "
                    "check the folder's permissions, or pick another with --dest."
                ) from exc
            print(f"{bundles.HOST_NAMES[host]}:")
            for line in log:
                print(f"  {line}")
    if dry:
        print(f"would write {launcher}: {command}")
    else:
        print(f"wrote {launcher} (plug-ins start the server with: {' '.join(command)})")
    return 0


def _install_one(host: str, bundle: Path, args: argparse.Namespace, paths: Any) -> list[str]:
    from paintbridge import bundles

    dry = args.dry_run
    if host == "blender":
        dest = args.dest
        if dest is None:
            config_root = Path(paths.blender_config)
            version = args.blender_version or bundles.newest_blender_version(config_root)
            if version is None:
                raise bundles.BundleError(
                    f"found no Blender version folder in {config_root}; start Blender once, or "
                    "pass --blender-version 4.5 (or --dest FOLDER)"
                )
            dest = bundles.blender_target(config_root, version)
        return bundles.install_blender(bundle, dest, dry)
    if host == "gimp":
        dest = args.dest or bundles.newest_gimp3_plugins(Path(paths.gimp3_plugins))
        return bundles.install_gimp3(bundle, dest, dry)
    if host == "gimp2":
        return bundles.install_gimp2(bundle, args.dest or Path(paths.gimp2_plugins), dry)
    if args.dest is not None:  # a custom profile: leave the user's own kritarc alone
        return bundles.install_krita(bundle, args.dest, None, dry)
    return bundles.install_krita(bundle, Path(paths.krita_pykrita), Path(paths.kritarc), dry)
