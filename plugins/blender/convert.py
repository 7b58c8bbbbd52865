"""Pure pixel conversions between Blender's image buffers and hostkit's RGBA8 bytes (numpy).

Blender keeps rows bottom to top as floats in [0, 1]: byte images hold sRGB-encoded values,
float images hold linear values (unless their colour space is data, "Non-Color"), and most float
images hold them premultiplied by alpha (images.premultiplied says which). hostkit and the wire
want 8-bit straight-alpha RGBA, rows top to bottom, sRGB-encoded. No bpy in here.
"""

import numpy as np

# Pixels per block: each conversion works through an image a block at a time, so that its
# float temporaries (a few MB) stay in the CPU's cache; whole-image ones (268 MB each at
# 4096 x 4096) made a 4K texture's conversions several times slower and held GBs.
BLOCK = 1 << 16
# Entries per unit of linear value in the linear -> sRGB byte tables. Neighbouring bytes are at
# least 1/3295 apart in linear (the curve's steepest part: 12.92 x 255 per unit), so one
# interval of 1/4096 holds at most one place where the byte goes up.
STEPS = 4096


# Blender 5.0 lets a .blend's linear values be in another working space than Rec.709 (the
# sRGB primaries): the 3x3 matrices from each to linear Rec.709, by the space's interoperability
# id. ACEScg's (AP1, white D60) adapts the white with Bradford, as ACES and Blender's config do.
TO_REC709 = {
    "lin_rec709_scene": None,
    "lin_rec2020_scene": np.array(
        [
            [1.660491, -0.587641, -0.072850],
            [-0.124550, 1.132900, -0.008349],
            [-0.018151, -0.100579, 1.118730],
        ],
        dtype=np.float32,
    ),
    "lin_ap1_scene": np.array(
        [
            [1.705051, -0.621792, -0.083259],
            [-0.130256, 1.140805, -0.010548],
            [-0.024003, -0.128969, 1.152972],
        ],
        dtype=np.float32,
    ),
}


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


def _srgb_byte(linear):
    """The sRGB byte of float linear values, rounded to nearest, worked out in float64."""
    x = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0)
    encoded = np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)
    return np.floor(encoded * 255.0 + 0.5)


def byte_thresholds():
    """For k = 1..255: the smallest float32 linear value whose sRGB byte is k or more (found by
    bisection over the float32 values in [0, 1], which order as their bits do)."""
    wanted = np.arange(1, 256)
    low = np.zeros(255, dtype=np.int64)
    high = np.full(255, np.float32(1.0).view(np.int32), dtype=np.int64)
    while np.any(low < high):
        middle = (low + high) // 2
        reached = _srgb_byte(middle.astype(np.int32).view(np.float32)) >= wanted
        high = np.where(reached, middle, high)
        low = np.where(reached, low, middle + 1)
    return low.astype(np.int32).view(np.float32)


_tables = {}


def _byte_tables():
    """(first, next_at): a linear value x in [i / STEPS, (i + 1) / STEPS) has the sRGB byte
    first[i], or first[i] + 1 when x >= next_at[i]; entry STEPS is for 1.0 and above."""
    if not _tables:
        thresholds = byte_thresholds()
        starts = np.arange(STEPS + 1, dtype=np.float32) / np.float32(STEPS)  # exact
        first = np.searchsorted(thresholds, starts, side="right")
        # after 255 comes nothing: NaN, which no value reaches (not even infinity)
        beyond = np.append(thresholds, np.float32(np.nan))
        _tables["bytes"] = (first.astype(np.uint8), beyond[first])
    return _tables["bytes"]


def linear_to_bytes(values):
    """Linear float values to sRGB-encoded bytes: linear_to_srgb rounded to nearest as
    float64 rounds it, through two table lookups instead of a power per value (to_bytes of the
    float32 linear_to_srgb gives 1 more or less for about 2 in 10 million values, a hair from
    a rounding boundary); below 0 and NaN give 0, above 1 give 255."""
    first, next_at = _byte_tables()
    x = np.asarray(values, dtype=np.float32)
    clipped = np.fmin(np.fmax(x, np.float32(0.0)), np.float32(1.0))  # NaN: fmax makes it 0
    index = (clipped * np.float32(STEPS)).astype(np.int32)  # exact: STEPS is a power of 2
    out = np.take(first, index)
    out += x >= np.take(next_at, index)
    return out


def _row_blocks(height, width):
    """(top, bottom) row ranges of about BLOCK pixels each."""
    step = max(1, BLOCK // max(width, 1))
    return [(top, min(top + step, height)) for top in range(0, height, step)]


def premultiply(array):
    """Premultiplied alpha from straight: RGB times alpha (..., 4 floats)."""
    out = np.array(array, dtype=np.float32)
    out[..., :3] *= out[..., 3:]
    return out


def unpremultiply(array):
    """Straight alpha from premultiplied: RGB divided by alpha (..., 4 floats), where alpha is
    above 0; a fully transparent pixel keeps its RGB."""
    out = np.array(array, dtype=np.float32)
    alpha = out[..., 3:]
    out[..., :3] /= np.where(alpha > 0, alpha, np.float32(1.0))
    return out


def _primaries(block, matrix):
    """RGB of (..., 4) floats through a 3x3 matrix, alpha as it is; a new array."""
    rgb = np.matmul(block[..., :3], matrix.T)
    return np.concatenate([rgb, block[..., 3:]], axis=-1).astype(np.float32)


def pixels_to_rgba8(pixels, width, height, linear=False, premultiplied=False, to_rec709=None):
    """Blender `Image.pixels` (flat floats, rows bottom to top) to RGBA8 bytes, rows top to
    bottom. `premultiplied`: RGB holds alpha multiplied in (as Blender holds most float images)
    and is divided by it first. `linear`: the values are linear (a float image) and are encoded
    to sRGB; alpha is never encoded. `to_rec709`: a TO_REC709 matrix for linear values in
    another working space."""
    array = np.asarray(pixels, dtype=np.float32)
    if array.size != width * height * 4:
        raise ValueError("pixels has %d values, expected %d x %d x 4" % (array.size, width, height))
    rows = array.reshape(height, width, 4)[::-1]
    out = np.empty((height, width, 4), dtype=np.uint8)
    for top, bottom in _row_blocks(height, width):
        block = rows[top:bottom]
        if premultiplied:
            block = unpremultiply(block)
        if linear and to_rec709 is not None:
            block = _primaries(block, to_rec709)
        if linear:  # all four channels at once (contiguous: faster), then alpha as it is
            out[top:bottom] = linear_to_bytes(block)
            out[top:bottom, :, 3] = to_bytes(block[..., 3])
        else:
            out[top:bottom] = to_bytes(block)
    return out.tobytes()


def rgba8_to_pixels(rgba, width, height, linear=False, to_rec709=None):
    """RGBA8 bytes (rows top to bottom) to flat float32 values for `Image.pixels` (rows
    bottom to top). `linear`: decode sRGB to linear, for a float image; in the working space
    whose TO_REC709 matrix `to_rec709` is, when given."""
    array = np.frombuffer(bytes(rgba), dtype=np.uint8)
    if array.size != width * height * 4:
        raise ValueError("rgba has %d bytes, expected %d x %d x 4" % (array.size, width, height))
    rows = array.reshape(height, width, 4)[::-1]
    if linear:  # each byte's linear value, worked out once
        decoded = srgb_to_linear(np.arange(256, dtype=np.float32) / np.float32(255.0))
        decoded = decoded.astype(np.float32)
    out = np.empty((height, width, 4), dtype=np.float32)
    for top, bottom in _row_blocks(height, width):
        block, values = rows[top:bottom], out[top:bottom]
        if linear:  # all four channels from the table, then alpha as it is
            np.take(decoded, block, out=values)
            np.divide(block[..., 3], np.float32(255.0), out=values[..., 3], dtype=np.float32)
        else:
            np.divide(block, np.float32(255.0), out=values, dtype=np.float32)
        if linear and to_rec709 is not None:
            values[...] = _primaries(values, np.linalg.inv(to_rec709))
    return out.ravel()


def keep_unchanged(values, source_values, source_rgba, rgba, width, height):
    """`values` (flat floats for `Image.pixels`, made from `rgba`) with every pixel whose
    RGBA8 is the same as in `source_rgba` taken from `source_values`, the float source's own:
    what an inpaint left alone keeps its exact float values (above 1.0 in an HDR image, more
    than 8 bits in a height map), not their 8-bit reading."""
    pixels = width * height
    rgba, source_rgba = bytes(rgba), bytes(source_rgba)
    if not len(rgba) == len(source_rgba) == pixels * 4:
        raise ValueError(
            "rgba and source_rgba have %d and %d bytes, expected %d x %d x 4"
            % (len(rgba), len(source_rgba), width, height)
        )
    # one 32-bit word per pixel: equal words, equal RGBA
    same = np.frombuffer(rgba, dtype=np.uint32) == np.frombuffer(source_rgba, dtype=np.uint32)
    same = same.reshape(height, width)[::-1].reshape(-1, 1)  # Blender's rows run bottom to top
    out = np.array(values, dtype=np.float32).reshape(-1, 4)
    source = np.ascontiguousarray(source_values, dtype=np.float32).reshape(-1, 4)
    pixel = np.dtype((np.void, 16))  # a pixel's four floats as one item: a faster copy
    np.copyto(out.view(pixel), source.view(pixel), where=same)
    return out.ravel()


def alpha_bytes(pixels, width, height):
    """The 8-bit alpha of Blender `Image.pixels`, rows top to bottom: pixels_to_rgba8's alpha
    (alpha is straight in every buffer, premultiplied or not, and never encoded)."""
    array = np.asarray(pixels, dtype=np.float32).reshape(height, width, 4)[::-1, :, 3]
    out = np.empty((height, width), dtype=np.uint8)
    for top, bottom in _row_blocks(height, width):
        out[top:bottom] = to_bytes(array[top:bottom])
    return out.tobytes()


def transparency_mask(alpha):
    """The inpaint mask of "regenerate where the image is transparent": 255 - alpha, per pixel
    (`alpha`: 8-bit, one byte a pixel)."""
    return (255 - np.frombuffer(bytes(alpha), dtype=np.uint8)).tobytes()


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
    src = np.frombuffer(bytes(source), dtype=np.uint8).reshape(-1, 4)
    top = np.frombuffer(bytes(result), dtype=np.uint8).reshape(-1, 4)
    if src.shape != top.shape:
        raise ValueError(
            "source and result differ in size: %d and %d pixels" % (len(src), len(top))
        )
    wanted = None if mask is None else np.frombuffer(bytes(mask), dtype=np.uint8)
    if wanted is not None and len(wanted) != len(src):
        raise ValueError("the mask has %d bytes for %d pixels" % (len(wanted), len(src)))
    out = np.empty_like(src)
    for start in range(0, len(src), BLOCK):
        part = slice(start, start + BLOCK)
        out[part] = _over(src[part], top[part], None if wanted is None else wanted[part])
    return out.tobytes()


def _over(source, result, mask):
    """composite_over on one block of pixels (uint8 arrays, (n, 4) and (n,))."""
    src = source.astype(np.float32) / 255
    top = result.astype(np.float32) / 255
    a_top, a_src = top[:, 3:], src[:, 3:]
    if mask is not None:
        wanted = mask.astype(np.float32)[:, None] / 255
        a_top = np.maximum(a_top, wanted * (1.0 - a_src))
    alpha = a_top + a_src * (1.0 - a_top)
    safe = np.where(alpha > 0, alpha, 1.0)
    rgb = (top[:, :3] * a_top + src[:, :3] * a_src * (1.0 - a_top)) / safe
    out = to_bytes(np.concatenate([rgb, alpha], axis=1))
    untouched = a_top[:, 0] == 0  # outside the mask: the source's bytes, exactly
    out[untouched] = source[untouched]
    return out


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


def up_filtered(rgba, width, height):
    """RGBA8 rows (top to bottom) as a PNG's scanlines with the Up filter: each row's filter
    type byte (2; 0, None, for the first), then its bytes less the row above's, modulo 256. For
    a picture, zlib then packs a fifth smaller, in half the time, as from unfiltered rows."""
    rows = np.frombuffer(bytes(rgba), dtype=np.uint8).reshape(height, width * 4)
    out = np.empty((height, 1 + width * 4), dtype=np.uint8)
    out[:, 0] = 2
    out[0, 0] = 0
    out[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=out[1:, 1:])
    return out.tobytes()
