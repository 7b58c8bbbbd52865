"""Pure image rules on Pillow images and numpy arrays: model size, masks, composites.

Nothing here touches torch, the disk or a device. Masks are 8-bit "L" images where 255 means
regenerate, 0 means keep and values between are partial strength. Every function returns a new
image and never changes its arguments. Impossible input raises `InvalidRequest` (a `ValueError`)
whose message names the argument and shows the value.

How the engine uses these for an inpaint job on a crop of size (w, h):

    size = model_size(w, h, native)
    image = resize(rgb_for_model(shrink(crop, size)), size)
    mask = to_mask(mask_image)
    pipeline(image=image, mask_image=resize(inpaint_mask(mask), size), ...)
    generated = resize(result, (w, h))
    layer = composite_inpaint(crop, generated, blend_mask(mask))
    picture = flatten_layer(whole_image, layer, at=crop_origin)  # CLI, A1111: the whole image

The grow/feather defaults are in pixels of the image they are applied to (the crop).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter, UnidentifiedImageError

from paintbridge.errors import InvalidRequest

__all__ = [
    "BLEND_FEATHER",
    "INPAINT_FEATHER",
    "INPAINT_GROW",
    "MAX_ASPECT",
    "MAX_SIDE_FACTOR",
    "blend_mask",
    "composite_inpaint",
    "feather_mask",
    "flatten_layer",
    "grow_mask",
    "inpaint_mask",
    "keep_alpha",
    "mask_is_empty",
    "model_size",
    "resize",
    "rgb_for_model",
    "shrink",
    "to_mask",
    "to_mode",
]

#: `inpaint_mask` grows the selection by this many pixels (one latent cell at 8x downsampling),
#: so the model also repaints the seam's surroundings and sees context for it.
INPAINT_GROW = 8
#: `inpaint_mask` then blurs it with a Gaussian of this radius (standard deviation, pixels).
INPAINT_FEATHER = 4.0
#: `blend_mask` fades in over this many pixels inside the selection's edge.
BLEND_FEATHER = 8.0
#: `model_size` treats any aspect ratio beyond MAX_ASPECT:1 (or 1:MAX_ASPECT) as MAX_ASPECT:1.
MAX_ASPECT = 16
#: `model_size` keeps each side at most MAX_SIDE_FACTOR * native (and MAX_ASPECT implies at least
#: native / 4 before rounding).
MAX_SIDE_FACTOR = 4

_GRAY = (128, 128, 128)
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_WIDE_GRAY = ("I;16", "I;16L", "I;16B", "I;16N", "I")


# --- checks -----------------------------------------------------------------------------------


def unreadable_reason(exc: Exception) -> str:
    """What went wrong reading an image, in words: Pillow's "cannot identify image file
    <_io.BytesIO object at 0x...>" names an object's address, not the problem."""
    if isinstance(exc, UnidentifiedImageError):
        return "not an image file Pillow can read"
    return str(exc) or type(exc).__name__


def _fmt(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _check_mode(img: Image.Image, name: str, modes: tuple[str, ...]) -> None:
    if img.mode not in modes:
        raise InvalidRequest(f"`{name}` must have mode {' or '.join(modes)}, got {img.mode!r}")


def _check_same_size(a: Image.Image, a_name: str, b: Image.Image, b_name: str) -> None:
    if a.size != b.size:
        raise InvalidRequest(
            f"`{a_name}` size {_fmt(a.size)} differs from `{b_name}` size {_fmt(b.size)}"
        )


def _check_mask(mask: Image.Image, name: str = "mask") -> None:
    _check_mode(mask, name, ("L",))


# --- sizes ------------------------------------------------------------------------------------


def model_size(width: int, height: int, native: int, multiple: int = 8) -> tuple[int, int]:
    """Size of area ~native**2 with the crop's aspect (clamped to 1:16..16:1), sides multiples
    of `multiple` in [multiple, 4 * native]."""
    for name, value in (("width", width), ("height", height), ("native", native)):
        if value <= 0:
            raise InvalidRequest(f"`{name}` must be positive, got {value}")
    if multiple <= 0:
        raise InvalidRequest(f"`multiple` must be positive, got {multiple}")
    aspect = min(max(width / height, 1 / MAX_ASPECT), MAX_ASPECT)
    top = max(multiple, (MAX_SIDE_FACTOR * native) // multiple * multiple)

    def snap(side: float) -> int:
        return min(top, max(multiple, math.floor(side / multiple + 0.5) * multiple))

    root = math.sqrt(aspect)
    return snap(native * root), snap(native / root)


def resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale to `size`: LANCZOS for RGB/RGBA, BILINEAR for L masks; a copy when same size."""
    _check_mode(img, "img", ("RGB", "RGBA", "L"))
    width, height = size
    if width <= 0 or height <= 0:
        raise InvalidRequest(f"`size` must be positive, got {_fmt(size)}")
    if img.size == (width, height):
        return img.copy()
    resample = Image.Resampling.BILINEAR if img.mode == "L" else Image.Resampling.LANCZOS
    return img.resize((width, height), resample)


def shrink(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`img` scaled to `size` if it is an RGB or RGBA image with more pixels, else `img` itself.

    For scaling a large crop down before anything else copies it at full size (an RGBA crop of
    4096 px is 64 MB a copy). Pillow scales RGBA with premultiplied alpha, so the colour of
    transparent pixels does not bleed, and compositing over gray afterwards gives the picture
    compositing first gives, to within 2-3 levels where alpha is smooth (up to ~10 on per-pixel
    alpha noise, where the filter's overshoot is clipped at different points; mean under 1).
    """
    if img.mode in ("RGB", "RGBA") and img.width * img.height > size[0] * size[1]:
        return resize(img, size)
    return img


# --- colour -----------------------------------------------------------------------------------


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in _ALPHA_MODES or "transparency" in img.info


def _convert(img: Image.Image, mode: str, name: str) -> Image.Image:
    if img.mode == "La":
        img = img.convert("LA")
    try:
        return img.convert(mode)
    except ValueError as err:
        raise InvalidRequest(f"`{name}` has mode {img.mode!r}, which cannot become {mode}") from err


def _wide_gray_to_l(img: Image.Image) -> Image.Image:
    """16-bit gray (I;16*, and I as PNG's 16 bits) -> L by v * 255 / 65535, rounded."""
    wide = np.clip(np.asarray(img).astype(np.int64), 0, 65535)
    return Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8), "L")


def to_mode(img: Image.Image, mode: str, name: str = "img") -> Image.Image:
    """`img` converted to `mode` as Pillow does, except 16-bit gray (I;16*, I): Pillow clips it
    at 255 (32768 becomes white), here it is scaled by 255/65535 and its transparent value (a
    PNG's tRNS) becomes alpha 0. What every decoder of client images uses."""
    if img.mode == mode:
        return img.copy()
    if img.mode not in _WIDE_GRAY:
        return _convert(img, mode, name)
    out = _convert(_wide_gray_to_l(img), mode, name)
    key = img.info.get("transparency")
    if isinstance(key, int) and "A" in out.getbands():
        out.putalpha(Image.fromarray(np.where(np.asarray(img) == key, 0, 255).astype(np.uint8)))
    return out


def rgb_for_model(img: Image.Image) -> Image.Image:
    """RGB for a pipeline: RGB as is, transparency composited over mid gray (128, 128, 128)."""
    if img.mode == "RGB":
        return img.copy()
    if img.mode in _WIDE_GRAY:
        img = to_mode(img, "LA")
    if _has_alpha(img) or img.mode == "P":
        rgba = _convert(img, "RGBA", "img")
        if rgba.getchannel("A").getextrema() == (255, 255):  # opaque: 10x quicker, same pixels
            return rgba.convert("RGB")
        gray = Image.new("RGBA", rgba.size, (*_GRAY, 255))
        return Image.alpha_composite(gray, rgba).convert("RGB")
    return _convert(img, "RGB", "img")


def keep_alpha(generated: Image.Image, original: Image.Image) -> Image.Image:
    """RGBA with the generated colours and exactly the original's alpha (255 if it has none)."""
    _check_mode(generated, "generated", ("RGB", "RGBA"))
    _check_same_size(generated, "generated", original, "original")
    opaque = generated if generated.mode == "RGB" else generated.convert("RGB")
    out = opaque.convert("RGBA")
    if original.mode == "RGBA" or original.mode == "LA":
        out.putalpha(original.getchannel("A"))
    elif _has_alpha(original):
        out.putalpha(_convert(original, "RGBA", "original").getchannel("A"))
    return out


# --- masks ------------------------------------------------------------------------------------


def to_mask(img: Image.Image) -> Image.Image:
    """Any mode -> L mask: the gray (luma) of the colour times alpha/255, so transparent = keep.

    1 gives 0/255; L is copied; 16-bit gray (I;16*, I) is scaled by 255/65535 (`to_mode`); F
    uses Pillow's own F -> L conversion (values 0..255, clipped); RGB, P, CMYK, YCbCr... use
    Pillow's luma; LA, RGBA, PA and P or 16-bit gray with transparency multiply that gray by
    alpha (compositing over black), so an all-white image whose alpha holds the selection, and
    a gray mask with alpha 255, both work.
    """
    if img.mode == "L":
        return img.copy()
    if img.mode in _WIDE_GRAY:
        img = to_mode(img, "LA")
    if not _has_alpha(img):
        return _convert(img, "L", "mask")
    rgba = _convert(img, "RGBA", "mask")
    gray = np.asarray(rgba.convert("L"), dtype=np.uint32)
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.uint32)
    return Image.fromarray(((gray * alpha + 127) // 255).astype(np.uint8), "L")


def mask_is_empty(mask: Image.Image) -> bool:
    """True when every pixel of the L mask is 0 (nothing to regenerate)."""
    _check_mask(mask)
    return mask.getbbox() is None


_Op = Callable[..., np.ndarray]


def _step(a: np.ndarray, k: int, op: _Op) -> np.ndarray:
    """One step of `op` (max/min) over the 4-neighbourhood (k even) or 3x3 (k odd).

    Pixels outside the image are ignored: a selection touching the edge is treated as going on.
    """
    out = a.copy()
    op(out[1:], a[:-1], out=out[1:])
    op(out[:-1], a[1:], out=out[:-1])
    src = out.copy() if k % 2 else a
    op(out[:, 1:], src[:, :-1], out=out[:, 1:])
    op(out[:, :-1], src[:, 1:], out=out[:, :-1])
    return out


def _morph(a: np.ndarray, pixels: int, op: _Op) -> np.ndarray:
    """`pixels` alternating cross / square steps: an octagon of radius `pixels` (near a disk)."""
    for k in range(pixels):
        a = _step(a, k, op)
    return a


def _check_pixels(pixels: int, name: str) -> None:
    if pixels < 0:
        raise InvalidRequest(f"`{name}` must be >= 0, got {pixels}")


def grow_mask(mask: Image.Image, pixels: int) -> Image.Image:
    """Dilate: each pixel becomes the max over an octagon (near-disk) of radius `pixels`."""
    _check_mask(mask)
    _check_pixels(pixels, "pixels")
    return Image.fromarray(_morph(np.asarray(mask), pixels, np.maximum), "L")


def feather_mask(mask: Image.Image, radius: float) -> Image.Image:
    """Gaussian blur with standard deviation `radius` pixels (edges repeat); radius 0 copies."""
    _check_mask(mask)
    if not radius >= 0:
        raise InvalidRequest(f"`radius` must be >= 0, got {radius}")
    if radius == 0:
        return mask.copy()
    return mask.filter(ImageFilter.GaussianBlur(radius))


def inpaint_mask(
    mask: Image.Image, grow: int = INPAINT_GROW, feather: float = INPAINT_FEATHER
) -> Image.Image:
    """What the pipeline sees: max(mask, blur(grow(mask, grow), feather)), so never below mask."""
    soft = feather_mask(grow_mask(mask, grow), feather)
    return Image.fromarray(np.maximum(np.asarray(soft), np.asarray(mask)), "L")


def blend_mask(mask: Image.Image, feather: float = BLEND_FEATHER) -> Image.Image:
    """Composite alpha: min(mask, 255 * smoothstep((d - 0.5) / L)), d = distance inside the edge.

    d is the octagonal distance in pixels from the nearest mask == 0 pixel (1 on the selection's
    edge pixels, 0 outside; the image border is not an edge). The ramp length L is `feather`, or
    shorter where the selection is thinner: L = min(feather, t - 0.5) with t the largest d within
    `feather` pixels, so a 2 px stroke still reaches full strength. Hence blend <= mask, blend is 0
    wherever mask is 0, and 255 where mask is 255 more than `feather` + 1 pixels inside.
    """
    _check_mask(mask)
    if not feather >= 0:
        raise InvalidRequest(f"`feather` must be >= 0, got {feather}")
    m = np.asarray(mask)
    if feather == 0:
        return mask.copy()
    reach = math.ceil(feather)
    inside = m > 0
    depth = np.zeros(m.shape, dtype=np.uint8 if reach < 255 else np.uint16)
    for k in range(reach + 1):
        depth += inside
        inside = _step(inside, k, np.minimum)
    thick = _morph(depth, reach, np.maximum)
    # ramp(depth, thick) for every pair of values, then one table look-up per pixel
    d, t = np.meshgrid(np.arange(reach + 2), np.arange(reach + 2), indexing="ij")
    length = np.clip(np.minimum(feather, t - 0.5), 0.5, None)
    x = np.clip((d - 0.5) / length, 0.0, 1.0)
    table = np.rint(255 * x * x * (3 - 2 * x)).astype(np.uint8)
    out = np.empty_like(m)
    # a band of rows at a time: the look-up's index arrays are 8 bytes a pixel, so a 4096 px
    # mask done at once would need 16 copies of itself
    rows = max(1, _BAND_PIXELS // m.shape[1])
    for top in range(0, m.shape[0], rows):
        band = slice(top, top + rows)
        np.minimum(m[band], table[depth[band], thick[band]], out=out[band])
    return Image.fromarray(out, "L")


_BAND_PIXELS = 1 << 20


# --- composites -------------------------------------------------------------------------------


def composite_inpaint(
    original: Image.Image, generated: Image.Image, blend: Image.Image
) -> Image.Image:
    """RGBA layer: generated RGB where blend > 0, original RGB where blend == 0; alpha = blend."""
    _check_mode(original, "original", ("RGB", "RGBA"))
    _check_mode(generated, "generated", ("RGB", "RGBA"))
    _check_mask(blend, "blend")
    _check_same_size(generated, "generated", original, "original")
    _check_same_size(blend, "blend", original, "original")
    # Pasting through a 0/255 mask picks pixels exactly (3x faster than numpy's where), into the
    # one RGBA copy that becomes the layer: a crop may be 4096 px, 64 MB a copy.
    layer = generated.convert("RGBA")
    kept = original if original.mode == "RGBA" else original.convert("RGBA")
    layer.paste(kept, (0, 0), blend.point(_ZERO_TO_255))
    layer.putalpha(blend)
    return layer


_ZERO_TO_255 = [255] + [0] * 255


def flatten_layer(
    original: Image.Image, layer: Image.Image, at: tuple[int, int] = (0, 0)
) -> Image.Image:
    """The whole picture: the RGBA `layer` (composite_inpaint's, alpha = blend) composited over
    `original` with its top-left corner at `at`. Where the layer's alpha is 0 the pixels are
    exactly the original's, alpha too (even fully transparent ones keep their colour). RGBA
    when `original` has transparency, else RGB."""
    _check_mode(layer, "layer", ("RGBA",))
    x, y = at
    if x < 0 or y < 0 or x + layer.width > original.width or y + layer.height > original.height:
        raise InvalidRequest(
            f"`layer` {_fmt(layer.size)} at {x},{y} does not fit in `original` "
            f"{_fmt(original.size)}"
        )
    base = to_mode(original, "RGBA", "original")
    box = (x, y, x + layer.width, y + layer.height)
    under = base.crop(box)
    over = Image.alpha_composite(under, layer)
    over.paste(under, (0, 0), layer.getchannel("A").point(_ZERO_TO_255))  # untouched: exact
    base.paste(over, box)
    return base if _has_alpha(original) else base.convert("RGB")
