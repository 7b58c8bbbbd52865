"""Pure pixel conversions between Blender's image buffers and hostkit's RGBA8 bytes (numpy).

Blender keeps rows bottom to top as floats in [0, 1]: byte images hold sRGB-encoded values,
float images hold linear values (unless their colour space is data, "Non-Color"), and most float
images hold them premultiplied by alpha (images.premultiplied says which). hostkit and the wire
want 8-bit straight-alpha RGBA, rows top to bottom, sRGB-encoded. No bpy in here.
"""

import numpy as np


def linear_to_srgb(values):
    """The sRGB transfer function (IEC 61966-2-1) on linear values, clipped to [0, 1]."""
    x = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)


def srgb_to_linear(values):
    """The inverse of linear_to_srgb, on sRGB-encoded values in [0, 1]."""
    x = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4))


def to_bytes(values):
    """Floats in [0, 1] to uint8, rounded to nearest."""
    return (np.clip(values, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def premultiply(array):
    """Premultiplied alpha from straight: RGB times alpha (..., 4 floats)."""
    return np.concatenate([array[..., :3] * array[..., 3:], array[..., 3:]], axis=-1)


def unpremultiply(array):
    """Straight alpha from premultiplied: RGB divided by alpha (..., 4 floats), where alpha is
    above 0; a fully transparent pixel keeps its RGB."""
    rgb, alpha = array[..., :3], array[..., 3:]
    rgb = np.divide(rgb, alpha, out=rgb.copy(), where=alpha > 0)
    return np.concatenate([rgb, alpha], axis=-1)


def pixels_to_rgba8(pixels, width, height, linear=False, premultiplied=False):
    """Blender `Image.pixels` (flat floats, rows bottom to top) to RGBA8 bytes, rows top to
    bottom. `premultiplied`: RGB holds alpha multiplied in (as Blender holds most float images)
    and is divided by it first. `linear`: the values are linear (a float image) and are encoded
    to sRGB; alpha is never encoded."""
    array = np.asarray(pixels, dtype=np.float32)
    if array.size != width * height * 4:
        raise ValueError("pixels has %d values, expected %d x %d x 4" % (array.size, width, height))
    array = array.reshape(height, width, 4)[::-1]
    if premultiplied:
        array = unpremultiply(array)
    if linear:
        array = np.concatenate([linear_to_srgb(array[..., :3]), array[..., 3:]], axis=-1)
    return to_bytes(array).tobytes()


def rgba8_to_pixels(rgba, width, height, linear=False):
    """RGBA8 bytes (rows top to bottom) to flat float32 values for `Image.pixels` (rows
    bottom to top). `linear`: decode sRGB to linear, for a float image."""
    array = np.frombuffer(bytes(rgba), dtype=np.uint8)
    if array.size != width * height * 4:
        raise ValueError("rgba has %d bytes, expected %d x %d x 4" % (array.size, width, height))
    values = array.reshape(height, width, 4)[::-1].astype(np.float32) / 255.0
    if linear:
        values = np.concatenate([srgb_to_linear(values[..., :3]), values[..., 3:]], axis=-1)
    return np.ascontiguousarray(values, dtype=np.float32).ravel()


def keep_unchanged(values, source_values, source_rgba, rgba, width, height):
    """`values` (flat floats for `Image.pixels`, made from `rgba`) with every pixel whose
    RGBA8 is the same as in `source_rgba` taken from `source_values`, the float source's own:
    what an inpaint left alone keeps its exact float values (above 1.0 in an HDR image, more
    than 8 bits in a height map), not their 8-bit reading."""
    same = (
        (
            np.frombuffer(bytes(rgba), dtype=np.uint8).reshape(height, width, 4)
            == np.frombuffer(bytes(source_rgba), dtype=np.uint8).reshape(height, width, 4)
        )
        .all(axis=-1)[::-1]
        .ravel()
    )  # Blender's rows run bottom to top
    out = np.array(values, dtype=np.float32).reshape(-1, 4)
    out[same] = np.asarray(source_values, dtype=np.float32).reshape(-1, 4)[same]
    return out.ravel()


def transparency_mask(rgba):
    """The inpaint mask of "regenerate where the image is transparent": 255 - alpha, per pixel."""
    alpha = np.frombuffer(bytes(rgba), dtype=np.uint8)[3::4]
    return (255 - alpha).astype(np.uint8).tobytes()


def luma_mask(rgba):
    """The inpaint mask of a mask image: white (255) = regenerate. Luma of RGB (ITU-R 601-2,
    as Pillow), times alpha so transparent parts of the mask image keep the pixels."""
    array = np.frombuffer(bytes(rgba), dtype=np.uint8).reshape(-1, 4).astype(np.uint32)
    luma = (array[:, 0] * 19595 + array[:, 1] * 38470 + array[:, 2] * 7471 + 0x8000) >> 16
    return ((luma * array[:, 3] + 127) // 255).astype(np.uint8).tobytes()


def composite_over(source, result, mask=None):
    """`result` (an inpaint result, whose alpha is its blend mask) over `source`, both RGBA8 of
    the same size: a whole image where the unmasked pixels are the source's own bytes.

    `mask` (8-bit, 255 = regenerate) fills holes: where the source is transparent inside the
    mask, the result shows at full strength instead of as faintly as the blend mask's inner
    feather (weight max(blend, mask * (1 - source alpha))); over opaque source pixels the blend
    mask alone decides, so the feathered seam stays."""
    src = np.frombuffer(bytes(source), dtype=np.uint8).reshape(-1, 4).astype(np.float32) / 255
    top = np.frombuffer(bytes(result), dtype=np.uint8).reshape(-1, 4).astype(np.float32) / 255
    if src.shape != top.shape:
        raise ValueError(
            "source and result differ in size: %d and %d pixels" % (len(src), len(top))
        )
    a_top, a_src = top[:, 3:], src[:, 3:]
    if mask is not None:
        wanted = np.frombuffer(bytes(mask), dtype=np.uint8).astype(np.float32)[:, None] / 255
        a_top = np.maximum(a_top, wanted * (1.0 - a_src))
    alpha = a_top + a_src * (1.0 - a_top)
    safe = np.where(alpha > 0, alpha, 1.0)
    rgb = (top[:, :3] * a_top + src[:, :3] * a_src * (1.0 - a_top)) / safe
    out = to_bytes(np.concatenate([rgb, alpha], axis=1))
    untouched = a_top[:, 0] == 0  # outside the mask: the source's bytes, exactly
    out[untouched] = np.frombuffer(bytes(source), dtype=np.uint8).reshape(-1, 4)[untouched]
    return out.tobytes()


def has_any(mask):
    """True when an 8-bit mask asks to regenerate at least one pixel."""
    return bool(np.frombuffer(bytes(mask), dtype=np.uint8).any())


def crop(rgba, width, height, box):
    """The RGBA8 pixels of `box` (x, y, width, height; rows top to bottom) inside an image."""
    x, y, w, h = box
    array = np.frombuffer(bytes(rgba), dtype=np.uint8).reshape(height, width, 4)
    return np.ascontiguousarray(array[y : y + h, x : x + w]).tobytes()


def paste(rgba, width, height, box, patch):
    """A copy of the RGBA8 image with `patch` (box-sized RGBA8) written at box's place."""
    x, y, w, h = box
    array = np.frombuffer(bytes(rgba), dtype=np.uint8).reshape(height, width, 4).copy()
    array[y : y + h, x : x + w] = np.frombuffer(bytes(patch), dtype=np.uint8).reshape(h, w, 4)
    return array.tobytes()
