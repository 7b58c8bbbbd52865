"""The add-on's settings: per scene (saved in the .blend), per session (server status, the
running job), and the preferences (which server)."""

import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from .params import MAX_SEED

SEAMLESS_ITEMS = [
    ("none", "None", "Not tileable"),
    ("x", "X", "Tiles left to right"),
    ("y", "Y", "Tiles top to bottom"),
    ("xy", "X and Y", "Tiles in both directions"),
]

SEED_ITEMS = [
    ("RANDOM", "Random", "A new random seed each time"),
    ("FIXED", "Fixed", "The seed below"),
    ("REUSE", "Reuse Last", "The seed of the last result"),
]


def _is_mask_candidate(_self, image):
    return image.size[0] > 0


class PaintbridgeSettings(bpy.types.PropertyGroup):
    prompt: StringProperty(name="Prompt", description="What to generate")
    negative_prompt: StringProperty(name="Negative", description="What to avoid")
    model: StringProperty(
        name="Model", description="Model preset or local model; empty: the server's default"
    )
    width: IntProperty(name="Width", default=512, min=64, max=4096, step=8, subtype="PIXEL")
    height: IntProperty(name="Height", default=512, min=64, max=4096, step=8, subtype="PIXEL")
    steps: IntProperty(
        name="Steps",
        description="Denoising steps; 0: the model's default",
        default=0,
        min=0,
        max=150,
    )
    guidance: FloatProperty(
        name="Guidance",
        description="How closely to follow the prompt; 0: the model's default; 1: none "
        "(a step does half the work: for turbo and LCM models)",
        default=0.0,
        min=0.0,
        max=50.0,
    )
    strength: FloatProperty(
        name="Strength",
        description="How much Image to Image, and Inpaint with a mask image, change the image "
        "(transparent areas are always made anew)",
        default=0.75,
        min=0.0,
        max=1.0,
        subtype="FACTOR",
    )
    seed_mode: EnumProperty(name="Seed", items=SEED_ITEMS, default="RANDOM")
    seed: IntProperty(name="Seed", default=0, min=0, max=MAX_SEED)
    last_seed: IntProperty(name="Last Seed", default=-1, min=-1, max=MAX_SEED)
    seamless: EnumProperty(
        name="Seamless", description="Tileable images", items=SEAMLESS_ITEMS, default="none"
    )
    texture_seamless: EnumProperty(
        name="Texture Seamless",
        description="Tiling of Generate Texture results",
        items=SEAMLESS_ITEMS,
        default="xy",
    )
    mask_image: PointerProperty(
        name="Mask",
        description="Inpaint where this image is white; empty: where the image is transparent",
        type=bpy.types.Image,
        poll=_is_mask_candidate,
    )

    def as_dict(self):
        """The plain values params.job_parameters reads."""
        keys = ("negative_prompt", "model", "steps", "guidance", "seed_mode", "seed", "last_seed")
        return {key: getattr(self, key) for key in keys}


class PaintbridgeSession(bpy.types.PropertyGroup):
    """Not saved: the server's status and the job in flight, for the panel and status bar."""

    server: StringProperty(name="Server", default="unknown")
    server_detail: StringProperty(name="Server Detail", default="")
    running: BoolProperty(name="Running", default=False)
    cancel_requested: BoolProperty(name="Cancel Requested", default=False)
    progress: FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    message: StringProperty(name="Message", default="")


class PaintbridgePreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    server_url: StringProperty(
        name="Server URL",
        description="Empty: the local server that `paintbridge serve` announces",
        default="",
    )
    token: StringProperty(name="Token", description="For a remote server", subtype="PASSWORD")
    timeout: IntProperty(name="Request Timeout", default=30, min=1, max=600, subtype="TIME")
    autostart: BoolProperty(
        name="Start Server When Needed",
        description="In background mode, start the local server from hostkit.json if it is "
        "not running",
        default=True,
    )

    def draw(self, _context):
        layout = self.layout
        layout.prop(self, "server_url")
        layout.prop(self, "token")
        layout.prop(self, "timeout")
        layout.prop(self, "autostart")


def preferences(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


CLASSES = (PaintbridgeSettings, PaintbridgeSession, PaintbridgePreferences)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.paintbridge = PointerProperty(type=PaintbridgeSettings)
    bpy.types.WindowManager.paintbridge = PointerProperty(type=PaintbridgeSession)


def unregister():
    del bpy.types.WindowManager.paintbridge
    del bpy.types.Scene.paintbridge
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
