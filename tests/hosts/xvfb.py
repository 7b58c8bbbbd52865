"""An Xvfb display for the GUI tests of Krita and GIMP 3."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator

XVFB = shutil.which("Xvfb")


@contextlib.contextmanager
def xvfb() -> Iterator[str]:
    """A running Xvfb; yields its display (":N").

    Xvfb picks a free display itself (-displayfd: no lock-file race with other X servers) and
    prints it once it accepts connections. -noreset matters: an X server resets when its last
    client leaves, and refuses connections while it does. Krita connects and leaves three times
    (its OpenGL probes) before it connects for good, and in a loaded CI run the fourth connection
    landed in a reset ("could not connect to display"). The display is an abstract socket as well,
    so GIMP inside its chroot reaches it too.
    """
    assert XVFB, "Xvfb not installed (apt-get install xvfb)"
    server = subprocess.Popen(
        [XVFB, "-displayfd", "1", "-noreset", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        number = server.stdout.readline().decode().strip()
        assert number, "Xvfb printed no display number"
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stdout.close()
