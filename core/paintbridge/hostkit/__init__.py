"""paintbridge.hostkit: what every editor plug-in shares (standard library only).

Runs on Python 2.7 (GIMP 2.10) and 3.8+ (Blender, Krita, GIMP 3). It imports nothing else
from paintbridge: `paintbridge plugins build` copies this package into every plug-in bundle,
where the adapter imports it relatively (`from . import hostkit`) or as `hostkit`.

Modules: errors (the PaintbridgeError family), transport (HTTP with urllib), discovery (find
or start the local server), client (Client), jobs (a job's state, JobHandle, JobWatch),
geometry, pixels, tasks.
"""

from __future__ import absolute_import, division, print_function

from .client import Client, JobHandle, JobStatus, JobWatch, Result
from .discovery import ServerLaunch, launch_server, try_local_client, user_config_dir
from .errors import (
    Cancelled,
    JobFailed,
    NotRunning,
    PaintbridgeError,
    QueueFull,
    RequestRejected,
    ServerFault,
    Timeout,
    Unauthorized,
)
from .geometry import Box, context_box, crop_bytes, selection_bounds
from .pixels import (
    alpha_of,
    bgra_to_rgba,
    decode_png,
    encode_png,
    flip_rows,
    gray_to_rgba,
    image_payload,
    mask_payload,
    payload_to_mask,
    payload_to_rgba,
    rgb_to_rgba,
    rgba_to_bgra,
    rgba_to_gray,
)
from .tasks import (
    FillPlan,
    Placement,
    img2img_job,
    inpaint_job,
    placements,
    plan_fill_selection,
    txt2img_job,
)
from .transport import Later, UrllibTransport

__version__ = "0.1.0"
PROTOCOL = "v1"

__all__ = [
    "PROTOCOL",
    "Box",
    "Cancelled",
    "Client",
    "FillPlan",
    "JobFailed",
    "JobHandle",
    "JobStatus",
    "JobWatch",
    "Later",
    "NotRunning",
    "PaintbridgeError",
    "Placement",
    "QueueFull",
    "RequestRejected",
    "Result",
    "ServerFault",
    "ServerLaunch",
    "Timeout",
    "Unauthorized",
    "UrllibTransport",
    "__version__",
    "alpha_of",
    "bgra_to_rgba",
    "context_box",
    "crop_bytes",
    "decode_png",
    "encode_png",
    "flip_rows",
    "gray_to_rgba",
    "image_payload",
    "img2img_job",
    "inpaint_job",
    "launch_server",
    "mask_payload",
    "payload_to_mask",
    "payload_to_rgba",
    "placements",
    "plan_fill_selection",
    "rgb_to_rgba",
    "rgba_to_bgra",
    "rgba_to_gray",
    "selection_bounds",
    "try_local_client",
    "txt2img_job",
    "user_config_dir",
]
