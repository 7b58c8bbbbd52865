"""Reading and writing Blender images and wiring a texture into a material (bpy, pixel API only:
Blender's own image operators crash in background mode)."""

import bpy
import numpy as np

from . import convert
from .params import RECORD_KEY

TEXTURE_NODE_TAG = "paintbridge_texture"  # marks the Image Texture node Generate Texture made


def read_rgba8(image):
    """(width, height, RGBA8 bytes rows top to bottom, sRGB) of a Blender image."""
    width, height = image.size[0], image.size[1]
    if width == 0 or height == 0:
        raise ValueError(
            'The image "%s" has no pixels (is its file missing?); open or paint one first.'
            % image.name
        )
    values = np.empty(width * height * 4, dtype=np.float32)
    image.pixels.foreach_get(values)
    linear = image.is_float and not image.colorspace_settings.is_data
    return width, height, convert.pixels_to_rgba8(values, width, height, linear=linear)


def new_result_image(name, width, height, rgba, record):
    """A new byte (sRGB) image with these pixels, packed into the .blend, kept by a fake user
    (so saving keeps it even when nothing shows it), its parameters as custom properties."""
    image = bpy.data.images.new(name, width, height, alpha=True)
    try:
        image.pixels.foreach_set(convert.rgba8_to_pixels(rgba, width, height))
        image.update()
        image.pack()
        image[RECORD_KEY] = record
        image.use_fake_user = True
    except Exception:
        bpy.data.images.remove(image)  # nothing half-written
        raise
    return image


def base_color_socket(material):
    """The Base Color input of the material's Principled BSDF (the one wired to the output when
    there are several), creating the node tree if the material has none. None if no Principled
    BSDF is there."""
    if not material.use_nodes:
        material.use_nodes = True
    tree = material.node_tree
    principled = [node for node in tree.nodes if node.type == "BSDF_PRINCIPLED"]
    if not principled:
        return None
    output = tree.get_output_node("ALL") if hasattr(tree, "get_output_node") else None
    for node in principled:
        if output is not None and any(
            link.from_node == node and link.to_node == output for link in tree.links
        ):
            return node.inputs["Base Color"]
    return principled[0].inputs["Base Color"]


def wire_texture(material, image):
    """Shows `image` through an Image Texture node linked to the material's Base Color.

    Reuses the node an earlier Generate Texture made when it still feeds Base Color; otherwise
    adds one to the left of the shader. Only the Base Color link is replaced (the node that fed
    it stays in the tree); every other link is left as it was. Returns the node."""
    socket = base_color_socket(material)
    tree = material.node_tree
    if socket is None:
        principled = tree.nodes.new("ShaderNodeBsdfPrincipled")
        output = next((n for n in tree.nodes if n.type == "OUTPUT_MATERIAL"), None)
        if output is None:
            output = tree.nodes.new("ShaderNodeOutputMaterial")
            output.location = (principled.location.x + 300, principled.location.y)
        if not output.inputs["Surface"].is_linked:
            tree.links.new(principled.outputs["BSDF"], output.inputs["Surface"])
        socket = principled.inputs["Base Color"]
    node = None
    if socket.is_linked:
        source = socket.links[0].from_node
        if source.type == "TEX_IMAGE" and source.get(TEXTURE_NODE_TAG):
            node = source
    if node is None:
        node = tree.nodes.new("ShaderNodeTexImage")
        node[TEXTURE_NODE_TAG] = True
        shader = socket.node
        node.location = (shader.location.x - 320, shader.location.y)
        tree.links.new(node.outputs["Color"], socket)
    node.image = image
    node.label = "Paintbridge"
    tree.nodes.active = node
    return node
