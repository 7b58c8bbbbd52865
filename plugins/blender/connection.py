"""Which paintbridge server to talk to, from the add-on preferences (no bpy in here).

An empty URL means the local server that `paintbridge serve` announces in server.json (found
by hostkit). A remote URL needs Blender's "Allow Online Access"; loopback never does.
"""

from .hostkit import client as hk


class OfflineError(hk.PaintbridgeError):
    """A non-loopback server while Blender's online access is off."""

    default_code = "offline"


def is_loopback_url(url):
    host = (hk.urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def make_client(url="", token="", timeout=30, online_access=True, autostart=False):
    """A hostkit Client for the settings: `url` and `token` for a server named by hand, else
    the local one from server.json (starting it from hostkit.json when `autostart`)."""
    url = (url or "").strip()
    if url:
        client = hk.Client(url, token or None, timeout=timeout)  # no request; checks the URL
        if not is_loopback_url(client.url) and not online_access:
            raise OfflineError(
                "The paintbridge server %s is not on this computer and Blender's online access "
                "is off. Turn on Preferences > System > Network > Allow Online Access, or use a "
                "local server (leave the URL empty)." % url
            )
        return client
    return hk.Client.discover(autostart=autostart, timeout=timeout)


# Starting the server without freezing Blender: launch, then poll from a modal timer.
# (Client.discover(autostart=True) would block until the server answers, up to 2 min.)


def launch_server(config_dir=None):
    """Starts the server named in hostkit.json in the background and returns hostkit's
    ServerLaunch at once, for a timer to `check()`; raises NotRunning when no launcher is
    configured."""
    return hk.launch_server(config_dir)


def local_client_if_live(config_dir=None, timeout=5):
    """The local server's Client when it answers, else None (one short request; never raises)."""
    return hk.try_local_client(config_dir, timeout)
