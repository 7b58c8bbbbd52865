"""Finding and running GIMP 3 for the host tests.

GIMP 3 is the system's (`gimp-console-3.0` on PATH, Debian 13) or lives in the trixie chroot
that install.sh makes on Debian 12 (<repo>/.hosts/gimp-trixie). A chroot cannot see this
checkout, so each run gets a work folder inside the GIMP root (its /tmp) holding a fresh GIMP
profile with the built plug-in bundle, the driver and its config; paths handed to GIMP are the
ones it sees.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.hosts.conftest import LiveServer

from paintbridge import bundles
from paintbridge.hostkit.client import Client, PaintbridgeError

REPO = Path(__file__).resolve().parents[3]
CHROOT = REPO / ".hosts" / "gimp-trixie"
CONSOLE = "gimp-console-3.0"
GUI = "gimp-3.0"
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Gimp3:
    """A runnable GIMP 3: on this system (chroot None) or inside a chroot."""

    chroot: Path | None

    @property
    def root(self) -> Path:
        return self.chroot or Path("/")

    def inside(self, path: Path) -> str:
        """The path as GIMP sees it."""
        if self.chroot is None:
            return str(path)
        return "/" + str(path.relative_to(self.chroot))

    def describe(self) -> str:
        return f"{CONSOLE} in the chroot {self.chroot}" if self.chroot else CONSOLE


def find_gimp3() -> tuple[Gimp3 | None, str]:
    """(the GIMP 3 to use, or None, and why not)."""
    if shutil.which(CONSOLE):
        return Gimp3(None), ""
    if (CHROOT / ".paintbridge-ready").is_file() and (CHROOT / "usr/bin" / CONSOLE).exists():
        if os.geteuid() != 0:
            return None, f"GIMP 3 is in the chroot {CHROOT}, but entering it needs root"
        return Gimp3(CHROOT), ""
    return None, (
        f"GIMP 3 not installed: no {CONSOLE} on PATH and no chroot at {CHROOT}; "
        "run tests/hosts/gimp/install.sh as root (or ./dev hosts)"
    )


class Workspace:
    """A scratch folder GIMP can see, with a fresh profile holding the plug-in bundle."""

    def __init__(self, gimp: Gimp3, prefix: str = "paintbridge-gimp-"):
        self.gimp = gimp
        tmp = gimp.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=tmp))
        os.chmod(self.path, 0o755)
        self.home = self.path / "home"
        self.plugins = self.home / ".config" / "GIMP" / "3.0" / "plug-ins"
        self.plugins.mkdir(parents=True)

    def install_bundle(self) -> Path:
        """Builds the GIMP 3 bundle the way `paintbridge plugins build` does and installs it
        the way `paintbridge plugins install` does, into this profile."""
        built = bundles.build_gimp3(self.path / "build")
        bundles.install_gimp3(built, self.plugins)
        return self.plugins / bundles.GIMP3_NAME

    def _batch_command(self, config: dict, env: dict | None, display: str | None) -> list[str]:
        """The command that runs a driver from stdin in python-fu-eval: gimp-console, or the
        GUI on `display` (an X display both sides of a chroot reach)."""
        config_file = self.path / "config.json"
        config_file.write_text(json.dumps(config))
        variables = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": self.gimp.inside(self.home),
            "XDG_CONFIG_HOME": self.gimp.inside(self.home / ".config"),
            "LANG": "C.UTF-8",
            "PAINTBRIDGE_GIMP_TEST": self.gimp.inside(config_file),
            **(env or {}),
        }
        if display is None:
            gimp = [CONSOLE, "-i"]
        else:
            variables["DISPLAY"] = display
            gimp = [GUI, "--no-splash"]
        command = ["env", "-i", *(f"{k}={v}" for k, v in variables.items())]
        command += [*gimp, "--quit", "--batch-interpreter=python-fu-eval", "-b", "-"]
        if self.gimp.chroot is not None:
            command = ["chroot", str(self.gimp.chroot), *command]
        return command

    def run_batch(
        self, driver: Path, config: dict, env: dict | None = None, timeout: float = 420
    ) -> tuple[dict, str]:
        """Runs `driver` in gimp-console's python-fu-eval; (the JSON it wrote, the log)."""
        result = self.path / "result.json"
        command = self._batch_command(dict(config, result=self.gimp.inside(result)), env, None)
        with open(driver, "rb") as stdin:
            done = subprocess.run(
                command,
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        log = done.stdout.decode("utf-8", "replace")
        if not result.is_file():
            raise AssertionError(f"GIMP wrote no result (exit {done.returncode}):\n{log}")
        return json.loads(result.read_text()), log

    def start_gui_batch(
        self, driver: Path, config: dict, display: str, env: dict | None = None
    ) -> subprocess.Popen[bytes]:
        """Starts GIMP's GUI on `display` running `driver` in python-fu-eval; it writes its
        JSON to self.path / "result.json" and GIMP's output goes to self.path / "gimp.log"."""
        config = dict(config, result=self.gimp.inside(self.path / "result.json"))
        command = self._batch_command(config, env, display)
        with open(driver, "rb") as stdin, open(self.path / "gimp.log", "wb") as log:
            return subprocess.Popen(command, stdin=stdin, stdout=log, stderr=subprocess.STDOUT)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def kill_when_job_runs(server: LiveServer, model: str, after: float, done: dict) -> None:
    """SIGKILLs `server` `after` s once it has loaded `model` (the job's model: it loads it for
    the job, then runs the job's steps); records when in `done` (monotonic and wall clock), or
    "error". Run it in a thread beside the host run."""
    client = Client(server.url, server.token, timeout=5, token_source=None)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if client.health().get("model") == model:
                break
        except PaintbridgeError:
            pass
        time.sleep(0.1)
    else:
        done["error"] = f"the server never loaded {model}"
        return
    time.sleep(after)
    server.process.kill()
    done["killed_at"], done["killed_at_wall"] = time.monotonic(), time.time()
