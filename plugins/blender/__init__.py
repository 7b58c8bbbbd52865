"""Paintbridge for Blender: local AI image generation (txt2img, img2img, inpainting, tileable
textures) through the paintbridge service. Image Editor > Image menu and sidebar "Paintbridge";
Shader Editor > Add > Generate Texture; Properties > Material > Paintbridge Texture.

The bundle puts hostkit inside this package (`<package>/hostkit/`); everything here imports it
relatively, so the add-on works under any package name (legacy add-on or extension).
"""

bl_info = {
    "name": "Paintbridge",
    "author": "paintbridge developers",
    "version": (0, 1, 0),
    "blender": (4, 2, 0),
    "location": "Image Editor > Image menu and Sidebar > Paintbridge; Shader Editor > Add",
    "description": "Local AI image generation: textures, img2img and inpainting",
    "category": "Paint",
}

# each after the ones it imports
_SUBMODULES = (
    "convert",
    "params",
    "connection",
    "props",
    "images",
    "results",
    "plans",
    "operators",
    "ui",
)

if "operators" in locals():  # Reload Scripts: reload the submodules in dependency order
    import importlib

    for _name in _SUBMODULES:
        if _name in globals():  # one the copy loaded before had (an update may add some)
            importlib.reload(globals()[_name])

from . import (  # noqa: E402, F401
    connection,
    convert,
    images,
    operators,
    params,
    plans,
    props,
    results,
    ui,
)

_MODULES = (props, operators, ui)


def register():
    for module in _MODULES:
        module.register()


def unregister():
    for module in reversed(_MODULES):
        module.unregister()
