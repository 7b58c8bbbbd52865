"""Which paintbridge server to talk to, from the add-on preferences (no bpy in here).

An empty URL means the local server that `paintbridge serve` announces in server.json (found
by hostkit). A remote URL needs Blender's "Allow Online Access"; loopback never does.
"""

import os

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
        if not is_loopback_url(url) and not online_access:
            raise OfflineError(
                "The paintbridge server %s is not on this computer and Blender's online access "
                "is off. Turn on Preferences > System > Network > Allow Online Access, or use a "
                "local server (leave the URL empty)." % url
            )
        return hk.Client(url, token or None, timeout=timeout)
    return hk.Client.discover(autostart=autostart, timeout=timeout)


# --- MOVE TO HOSTKIT: a non-blocking server start for GUI hosts --------------------------------
# hostkit.client.Client.discover(autostart=True) blocks until the server answers (up to 2 min),
# which would freeze a GUI. These two split it: start, then poll from a timer. They use hostkit
# internals (_read_json, _server_environment, _client_from_server_file) until hostkit has them.


def launch_server(config_dir=None):
    """Starts the server named in hostkit.json in the background and returns its Popen; raises
    NotRunning when no launcher is configured."""
    config_dir = config_dir or hk.user_config_dir()
    launcher = hk._read_json(os.path.join(config_dir, "hostkit.json")) or {}
    command = launcher.get("command")
    if not command:
        raise hk.NotRunning(
            "No way to start the paintbridge server is configured. Run `paintbridge plugins "
            "install` once, or start it yourself with `paintbridge serve`."
        )
    if not os.path.isdir(config_dir):
        os.makedirs(config_dir)
    log_path = os.path.join(config_dir, "server.log")
    try:
        return hk.spawn_detached(command, log_path, hk._server_environment(config_dir))
    except (OSError, ValueError) as exc:
        raise hk.NotRunning(  # noqa: B904
            "Could not start the paintbridge server with %s: %s." % (command, exc)
        )


def local_client_if_live(config_dir=None, timeout=5):
    """The local server's Client when it answers, else None (one short request; never raises)."""
    config_dir = config_dir or hk.user_config_dir()
    found = hk._client_from_server_file(config_dir, timeout)
    if found is not None and found.is_live():
        return found
    return None


# --- end MOVE TO HOSTKIT ---------------------------------------------------------------------
