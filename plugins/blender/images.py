"""Reading and writing Blender images and wiring a texture into a material (bpy, pixel API only:
Blender's own image operators crash in background mode)."""

import os
import shutil
import tempfile
from collections import namedtuple

import bpy
import numpy as np

from . import convert
from .hostkit.transport import Later
from .params import RECORD_KEY

TEXTURE_NODE_TAG = "paintbridge_texture"  # marks the Image Texture node Generate Texture made


# An image's pixels read on Blender's thread: `rgba` a hostkit Later of the RGBA8 bytes (rows
# top to bottom, sRGB), whose conversion from Blender's floats (712 ms for a 4096 px float image,
# bench/results/blender_convert-*) the job's thread makes as it sends the job; `alpha` a Later
# of the 8-bit alpha alone (an inpaint mask is planned from it on Blender's thread); `values`
# Blender's floats as read (None for a Render Result), which a FloatSource shares.
Read = namedtuple("Read", ("width", "height", "rgba", "alpha", "values"))


def read_later(image):
    """The Read of a Blender image that holds its pixels (see read_source for a Render Result):
    only Blender's floats are copied here."""
    width, height = image.size[0], image.size[1]
    if width == 0 or height == 0:
        raise ValueError(no_pixels_message(image))
    values = np.empty(width * height * 4, dtype=np.float32)
    image.pixels.foreach_get(values)
    linear = image.is_float and not image.colorspace_settings.is_data
    straight = premultiplied(image)
    to_rec709 = working_space_to_rec709() if linear else None
    return Read(
        width,
        height,
        Later(lambda: convert.pixels_to_rgba8(values, width, height, linear, straight, to_rec709)),
        Later(lambda: convert.alpha_bytes(values, width, height)),
        values,
    )


def working_space_to_rec709():
    """The TO_REC709 matrix of the .blend's working colour space (Blender 5.0+; None for
    Linear Rec.709, and before 5.0, which has no other). ValueError for a space not known here."""
    colorspace = getattr(bpy.data, "colorspace", None)
    interop = getattr(colorspace, "working_space_interop_id", "") or "lin_rec709_scene"
    if interop not in convert.TO_REC709:
        raise ValueError(
            'Paintbridge does not know the working colour space "%s" of this file; float images '
            "need Linear Rec.709, Linear Rec.2020 or ACEScg (Render Properties > Color Management)."
            % colorspace.working_space
        )
    return convert.TO_REC709[interop]


def read_rgba8(image):
    """(width, height, RGBA8 bytes rows top to bottom, sRGB) of a Blender image that holds its
    pixels, converted now."""
    read = read_later(image)
    return read.width, read.height, read.rgba.get()


def no_pixels_message(image):
    """Why an image has no pixels to read, and what to do: a missing file is named only when it
    is missing."""
    if image.source in ("SEQUENCE", "MOVIE"):
        return (
            'The image "%s" is %s: Paintbridge works on one picture. Save the frame you want as '
            "an image (Image > Save As, or render it) and open that one."
            % (image.name, "an image sequence" if image.source == "SEQUENCE" else "a movie")
        )
    if image.source == "TILED":
        return 'The image "%s" is a UDIM tiled image: save one tile as an image first.' % image.name
    if image.source == "FILE" and image.packed_file is None and image.filepath:
        path = bpy.path.abspath(image.filepath, library=image.library)
        if not os.path.isfile(path):
            return 'The file of the image "%s" is missing: %s. Find it (Image > Replace) first.' % (
                image.name,
                path,
            )
        return 'Blender could not read the image "%s" from %s.' % (image.name, path)
    return 'The image "%s" has no pixels; open or paint one first.' % image.name


RENDERED = ("RENDER_RESULT", "COMPOSITING")  # Render Result and Viewer Node: no `pixels`


def read_source(image, scene):
    """The Read (read_later) of any image a user can open: a Render Result, Viewer Node or
    multilayer EXR (none of which has `pixels`) is saved to a temporary PNG as Blender shows it
    (the scene's view transform) and read from there, now; an image sequence, movie or UDIM
    image is refused with what to do (ValueError)."""
    if image.type not in RENDERED:
        image.size[0]  # loads the file: only then does a multilayer EXR say it is one
    if image.type in RENDERED or image.type == "MULTILAYER":
        width, height, rgba = read_render(image, scene)
        return Read(width, height, Later(lambda: rgba), Later(lambda: rgba[3::4]), None)
    if image.source in ("SEQUENCE", "MOVIE", "TILED"):
        raise ValueError(no_pixels_message(image))
    return read_later(image)


def _values(struct):
    """A struct's own settable values (no pointers, no collections), arrays as tuples."""
    values = {}
    for prop in struct.bl_rna.properties:
        if prop.is_readonly or prop.type in ("POINTER", "COLLECTION"):
            continue
        value = getattr(struct, prop.identifier)
        values[prop.identifier] = tuple(value) if getattr(prop, "array_length", 0) else value
    return values


def _put(struct, values, first=()):
    """Sets saved _values back where they changed: the keys in `first` in that order (setting
    them resets others: the kind of file its depth, a view transform its look), then the rest."""
    keys = [key for key in first if key in values]
    for key in keys + [key for key in values if key not in keys]:
        now = getattr(struct, key)
        if (tuple(now) if isinstance(values[key], tuple) else now) != values[key]:
            setattr(struct, key, values[key])


def _output_override(settings):
    """The output's own colour management when it overrides the scene's, else None. Setting
    `color_management` back to OVERRIDE copies the scene's settings over it, so read_render
    keeps it to put back."""
    if settings.color_management != "OVERRIDE":
        return None
    curves = settings.view_settings.curve_mapping
    return {
        "display": _values(settings.display_settings),
        "view": _values(settings.view_settings),
        "linear": _values(settings.linear_colorspace_settings),
        "curve": _values(curves),
        "points": [[(tuple(p.location), p.handle_type) for p in c.points] for c in curves.curves],
    }


def _put_override(settings, saved):
    _put(settings.display_settings, saved["display"])
    _put(settings.view_settings, saved["view"], first=("view_transform", "look"))
    _put(settings.linear_colorspace_settings, saved["linear"], first=("name",))
    curves = settings.view_settings.curve_mapping
    _put(curves, saved["curve"])
    for curve, points in zip(curves.curves, saved["points"]):
        while len(curve.points) > max(len(points), 2):  # a curve keeps at least two
            curve.points.remove(curve.points[len(curve.points) - 1])
        while len(curve.points) < len(points):
            curve.points.new(0.0, 0.0)  # placed below
        for point, (location, handle) in zip(curve.points, points):
            point.location, point.handle_type = location, handle
    curves.update()


def read_render(image, scene):
    """The pixels of a Render Result, Viewer Node or multilayer EXR as the Image Editor shows
    them at first (the compositor's result, else the first view layer: save_render reads no
    layer or pass chosen in the editor's header): Blender keeps no `pixels` for them, so
    `save_render` writes an 8-bit RGBA PNG with the scene's colour management, which is read
    back. The scene's output settings are changed for that moment only and put back as they
    were (an output colour management override included); the file and its datablock are
    removed."""
    settings = scene.render.image_settings
    saved, override = _values(settings), _output_override(settings)
    folder = tempfile.mkdtemp(prefix="paintbridge-")
    path = os.path.join(folder, "render.png")
    try:
        try:
            if "media_type" in saved:
                settings.media_type = "IMAGE"
            settings.file_format = "PNG"
            settings.color_mode = "RGBA"
            settings.color_depth = "8"
            settings.color_management = "FOLLOW_SCENE"
            image.save_render(path, scene=scene)
        except RuntimeError as exc:
            raise ValueError(
                'The image "%s" holds no render of the scene "%s" (%s). Render first (F12), or '
                "save the render as an image (Image > Save As) and use that."
                % (image.name, scene.name, str(exc).strip())
            ) from None
        finally:
            _put(settings, saved, first=("media_type", "file_format"))
            if override is not None:
                _put_override(settings, override)
        copy = bpy.data.images.load(path, check_existing=False)
        try:
            return read_rgba8(copy)
        finally:
            bpy.data.images.remove(copy)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def premultiplied(image):
    """True when Blender holds the image's pixels with alpha multiplied into RGB: every float
    buffer (16-bit PNG and TIFF, EXR, float images made in Blender: Blender premultiplies a
    straight file on load, and displays and saves float buffers as premultiplied), except where
    Blender leaves alpha alone: Channel Packed, and data (Non-Color) images. Byte images are
    always straight. (Alpha None loads opaque: dividing by 1 changes nothing.)"""
    return (
        image.is_float
        and image.alpha_mode != "CHANNEL_PACKED"
        and not image.colorspace_settings.is_data
    )


def result_colorspace(image):
    """The colour space a PNG result made from `image` is tagged with: None (sRGB) for a float
    colour image, a render or a multilayer EXR (whose is_float is False), which are sent
    converted to sRGB; else the image's own. A byte
    image's bytes are sent as they are, so its result's bytes are in its space too: a data
    image's (Non-Color: normal, roughness and height maps; tagged sRGB, Blender would decode
    them as colours), or another space's (tagged sRGB, a Linear Rec.709 byte image's result
    would show darker than the image, even where an inpaint left it alone)."""
    if image.type in RENDERED or image.type == "MULTILAYER":
        return None
    settings = image.colorspace_settings
    return settings.name if settings.is_data or not image.is_float else None


class FloatSource(object):
    """A float image's own pixels, read once when a job is planned: an inpaint result of it is
    a float image too, keeping them wherever the inpaint left a pixel alone."""

    def __init__(self, image, values=None):
        if values is None:
            values = np.empty(len(image.pixels), dtype=np.float32)
            image.pixels.foreach_get(values)
        self.values = values
        self.colorspace = image.colorspace_settings.name
        self.alpha_mode = image.alpha_mode
        self.linear = not image.colorspace_settings.is_data
        self.to_rec709 = working_space_to_rec709() if self.linear else None
        self.premultiplied = premultiplied(image)

    @classmethod
    def of(cls, image, values=None):
        """A FloatSource for a float image with pixels of its own, else None; `values`: its
        pixels as already read (a Read's), not read again (a second copy of 268 MB at 4096 px
        while the job is sent)."""
        if not image.is_float or image.type in RENDERED or image.type == "MULTILAYER":
            return None
        return cls(image, values)


def new_float_result(name, width, height, values, record, source):
    """new_result_image's float twin for an inpaint of a float image (`source`, a FloatSource):
    `values` its pixels (results.float_values). Packed as OpenEXR: as a PNG, the floats would
    be cut to 8 bits. The EXR holds Blender's buffer as it is, so the image is tagged for what
    the buffer holds, not with the source file's tags, or reopening the .blend would convert
    the values a second time: a data image's colour space and alpha mode; else the scene-linear
    space a new float image has, premultiplied where the source's buffer was (a 16-bit PNG
    tagged sRGB would be decoded again, a straight float image multiplied by its alpha again)."""
    image = bpy.data.images.new(name, width, height, alpha=True, float_buffer=True)

    def fill():
        if not source.linear:
            image.colorspace_settings.name = source.colorspace
        else:  # Blender 5.0: the file's working space, which a new image is not tagged with
            working = getattr(getattr(bpy.data, "colorspace", None), "working_space", None)
            if working:
                image.colorspace_settings.name = working
        image.alpha_mode = "PREMUL" if source.premultiplied else source.alpha_mode
        image.pixels.foreach_set(values)
        image.file_format = "OPEN_EXR"
        image.update()
        image.pack()

    return _kept(image, fill, record)


def new_result_image(name, png, record, colorspace=None):
    """A new image from a result's PNG file (results.png; sRGB, or `colorspace` for a data
    image's result), packed into the .blend as it is (Blender reads its pixels from there), kept
    by a fake user (so saving keeps it even when nothing shows it), its parameters as custom
    properties."""
    image = bpy.data.images.new(name, 1, 1, alpha=True)  # its size comes from the file

    def fill():
        image.pack(data=png, data_len=len(png))
        image.source = "FILE"
        if colorspace is not None:
            image.colorspace_settings.name = colorspace

    return _kept(image, fill, record)


def _kept(image, fill, record):
    """The new `image` after fill() (which gives it its pixels and packs it), with its record
    and a fake user; removed if any of that fails: nothing half-written."""
    try:
        fill()
        image[RECORD_KEY] = record
        image.use_fake_user = True
    except Exception:
        bpy.data.images.remove(image)
        raise
    return image


COLOR_INPUTS = ("Base Color", "Color")  # what a shader's own colour input is called
NOT_A_SURFACE_COLOR = {"BSDF_TRANSPARENT"}  # its Color tints what shows through, not the surface


def material_output(tree):
    """The Material Output node that renders (the active one for all engines, else the first),
    None if the tree has none."""
    output = tree.get_output_node("ALL")
    if output is None:  # only outputs for one engine (Cycles, EEVEE)
        output = next((n for n in tree.nodes if n.type == "OUTPUT_MATERIAL"), None)
    return output


def upstream_shaders(socket):
    """The shader nodes that feed a shader socket, nearest first, in input order: through Mix
    and Add Shader nodes (and any node's shader inputs), each node once."""
    found, queue = [], [socket]
    while queue:
        for link in queue.pop(0).links:
            node = link.from_node
            if node not in found and link.is_valid and not link.is_muted:
                found.append(node)
                queue.extend(i for i in node.inputs if i.type == "SHADER" and i.is_linked)
    return found


def color_socket(node):
    """A shader node's own colour input (Base Color, Color), None if it has none."""
    if node.type in NOT_A_SURFACE_COLOR:
        return None
    for name in COLOR_INPUTS:
        socket = node.inputs.get(name)
        if socket is not None and socket.type == "RGBA":
            return socket
    return None


def texture_socket(material):
    """Where a texture shows the surface's colour: the Base Color (else the Color) of the
    nearest shader that feeds the material output, through Mix and Add Shader nodes. None when
    the output is fed only by shaders without one (a group, Holdout, Volume...). When nothing
    feeds the output (or there is none), a Principled BSDF is linked to it: the one the tree has
    unconnected, else a new one; its Base Color is returned. Makes the node tree if the material
    has none."""
    if not material.use_nodes:
        material.use_nodes = True
    tree = material.node_tree
    output = material_output(tree)
    if output is not None and output.inputs["Surface"].is_linked:
        shaders = upstream_shaders(output.inputs["Surface"])
        for name in COLOR_INPUTS:  # a Principled BSDF first, wherever it is in a mix
            for node in shaders:
                socket = color_socket(node)
                if socket is not None and socket.name == name:
                    return socket
        return None
    principled = next(
        (n for n in tree.nodes if n.type == "BSDF_PRINCIPLED" and not n.outputs["BSDF"].is_linked),
        None,
    )
    if principled is None:
        principled = tree.nodes.new("ShaderNodeBsdfPrincipled")
    if output is None:
        output = tree.nodes.new("ShaderNodeOutputMaterial")
        output.location = (principled.location.x + 300, principled.location.y)
    tree.links.new(principled.outputs["BSDF"], output.inputs["Surface"])
    return principled.inputs["Base Color"]


def _made_here(node):
    return node.type == "TEX_IMAGE" and bool(node.get(TEXTURE_NODE_TAG))


def wire_texture(material, image):
    """Shows `image` through an Image Texture node linked to the surface colour of the material
    (texture_socket). Returns (node, socket): socket None when the material has no such input,
    the node then stands unconnected beside the output, for the artist to link.

    Reuses the node an earlier Generate Texture made when it still feeds that socket (or, with
    no socket, when it is still unconnected); otherwise adds one to the left of the shader. Only
    the colour input's link is replaced (the node that fed it stays in the tree); every other
    link is left as it was."""
    socket = texture_socket(material)
    tree = material.node_tree
    node = None
    if socket is None:
        node = next(
            (n for n in tree.nodes if _made_here(n) and not n.outputs["Color"].is_linked), None
        )
    elif socket.is_linked and _made_here(socket.links[0].from_node):
        node = socket.links[0].from_node
    if node is None:
        node = tree.nodes.new("ShaderNodeTexImage")
        node[TEXTURE_NODE_TAG] = True
        anchor = socket.node if socket is not None else material_output(tree)
        if anchor is not None:
            node.location = (anchor.location.x - 320, anchor.location.y)
        if socket is not None:
            tree.links.new(node.outputs["Color"], socket)
    node.image = image
    node.label = "Paintbridge"
    tree.nodes.active = node
    return node, socket
