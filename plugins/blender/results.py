"""A job's results made ready to become Blender images, off Blender's thread: the inpaint
composite, a float image's values and the PNG file a byte image is packed from. Run by
hostkit's JobWatch on its thread once the job is done (the UI), or right after the job
(background mode), so Blender's own thread only makes the datablocks (images.py). No bpy in here.
"""

from . import convert
from .hostkit import pixels, tasks

# zlib's fastest level: on a 4096 px result with the rows filtered as in convert.up_filtered,
# the file is about 4% larger than Blender's own packing makes it, in half the time
# (bench/results/blender_result-*)
PNG_LEVEL = 1


class Ready(object):
    """One result ready to become an image: its seed, and either `png` (the file a byte image
    is packed from; it holds the size) or `values` (a float image's pixels, as Blender holds
    them, at the size of the image inpainted)."""

    __slots__ = ("seed", "png", "values")

    def __init__(self, seed, png=None, values=None):
        self.seed, self.png, self.values = seed, png, values


def png(rgba, width, height):
    """The PNG file of RGBA8 bytes, rows top to bottom."""
    return pixels.png_from_scanlines(
        convert.up_filtered(rgba, width, height), width, height, "RGBA", PNG_LEVEL
    )


def as_png(results):
    """Each hostkit Result as it comes, a Ready with its PNG."""
    return [Ready(r.seed, png=png(r.rgba, r.width, r.height)) for r in results]


def inpainted(results, rgba, width, height, box, box_mask, float_source=None):
    """Each inpaint Result (the size of `box`, the crop sent) composited over the crop through
    its mask and pasted into the whole image (`rgba`, width x height), as a Ready: a PNG, or
    for a float source (images.FloatSource) its float values, the source's own wherever the
    inpaint left a pixel as it was. Raises ServerFault for a result of another size."""
    made = []
    placed = tasks.placements(box, results)  # checks every result has the crop's size
    crop = convert.crop(rgba, width, height, box)
    for placement, result in zip(placed, results):
        region = convert.composite_over(crop, placement.rgba, box_mask)
        whole = convert.paste(rgba, width, height, box, region)
        if float_source is None:
            made.append(Ready(result.seed, png=png(whole, width, height)))
        else:
            values = float_values(whole, width, height, float_source, rgba)
            made.append(Ready(result.seed, values=values))
    return made


def float_values(rgba, width, height, source, source_rgba):
    """A float image's pixels for an inpaint of `source` (a FloatSource; `source_rgba` the RGBA8
    reading of it that was sent): the changed pixels decoded from `rgba` as the source holds its
    values, the others the source's own floats."""
    array = convert.rgba8_to_pixels(rgba, width, height, source.linear, source.to_rec709)
    array = array.reshape(-1, 4)
    if source.premultiplied:
        array = convert.premultiply(array)
    return convert.keep_unchanged(array.ravel(), source.values, source_rgba, rgba, width, height)
