"""imageops: tables for the documented rules, hypothesis for the invariants the engine relies on."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

import paintbridge.imageops as imageops
from paintbridge.errors import InvalidRequest
from paintbridge.imageops import (
    BLEND_FEATHER,
    MAX_SIDE_FACTOR,
    blend_mask,
    composite_inpaint,
    feather_mask,
    flatten_layer,
    grow_mask,
    inpaint_mask,
    keep_alpha,
    mask_is_empty,
    model_size,
    resize,
    rgb_for_model,
    shrink,
    to_mask,
    to_mode,
)

FAST = settings(max_examples=60, deadline=None)

sides = st.integers(min_value=1, max_value=24)


@st.composite
def masks(draw: st.DrawFn) -> np.ndarray:
    """Small L masks: random noise, or a few rectangles (with partial values) on black."""
    h, w = draw(sides), draw(sides)
    if draw(st.booleans()):
        return draw(arrays(np.uint8, (h, w)))
    a = np.zeros((h, w), np.uint8)
    for _ in range(draw(st.integers(0, 3))):
        y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        y1, x1 = draw(st.integers(y0 + 1, h)), draw(st.integers(x0 + 1, w))
        a[y0:y1, x0:x1] = draw(st.sampled_from([255, 255, 128, 1]))
    return a


def L(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.asarray(a, np.uint8), "L")


def arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img)


def disk(size: int, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    return np.where(np.hypot(yy, xx) <= radius, 255, 0).astype(np.uint8)


def test_public_surface() -> None:
    for name in imageops.__all__:
        obj = getattr(imageops, name)
        if callable(obj):
            assert obj.__doc__, name


# --- model_size -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "native", "multiple", "expected"),
    [
        (512, 512, 512, 8, (512, 512)),
        (4000, 4000, 512, 8, (512, 512)),
        (300, 300, 512, 8, (512, 512)),
        (1024, 768, 1024, 8, (1184, 888)),
        (640, 480, 512, 8, (592, 440)),
        (4000, 3000, 512, 64, (576, 448)),
        (3, 4001, 512, 8, (128, 2048)),
        (4001, 3, 512, 8, (2048, 128)),
        (1, 1, 512, 8, (512, 512)),
        (100000, 1, 1024, 8, (4096, 256)),
        (7, 13, 1024, 8, (752, 1392)),
        (5, 5, 4, 8, (8, 8)),
    ],
)
def test_model_size_table(
    width: int, height: int, native: int, multiple: int, expected: tuple[int, int]
) -> None:
    assert model_size(width, height, native, multiple) == expected


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((0, 10, 512), "width"),
        ((10, -1, 512), "height"),
        ((10, 10, 0), "native"),
        ((10, 10, 512, 0), "multiple"),
    ],
)
def test_model_size_rejects_non_positive(args: tuple[int, ...], name: str) -> None:
    with pytest.raises(ValueError, match=f"`{name}`"):
        model_size(*args)


@FAST
@given(
    st.integers(1, 100_000),
    st.integers(1, 100_000),
    st.sampled_from([256, 512, 768, 1024]),
    st.sampled_from([8, 16, 64]),
)
def test_model_size_properties(width: int, height: int, native: int, multiple: int) -> None:
    w, h = model_size(width, height, native, multiple)
    for side in (w, h):
        assert side % multiple == 0
        assert multiple <= side <= MAX_SIDE_FACTOR * native
    if 1 / 4 <= width / height <= 4:
        # rounding each side moves it by at most multiple / 2
        slack = (1 + multiple / (2 * min(w, h))) ** 2
        assert 1 / slack <= (w / h) / (width / height) <= slack
        assert 1 / slack <= (w * h) / native**2 <= slack


@FAST
@given(st.integers(1, 100_000), st.integers(1, 100_000), st.sampled_from([512, 1024]))
def test_model_size_ignores_scale(width: int, height: int, native: int) -> None:
    """A crop and the same crop ten times bigger generate at the same size."""
    if math.gcd(width, height) == 1 and width * 10 <= 10**6 and height * 10 <= 10**6:
        assert model_size(width, height, native) == model_size(width * 10, height * 10, native)


# --- resize -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(7, 13), (4001, 3), (3, 4001), (1, 1), (2, 1)])
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_resize_round_trip_keeps_size(size: tuple[int, int], mode: str) -> None:
    img = Image.new(mode, size, 200 if mode == "L" else (10, 20, 30, 255)[: len(mode)])
    there = resize(img, model_size(*size, native=64))
    assert there.mode == mode
    back = resize(there, size)
    assert back.size == size
    assert back.mode == mode
    assert back.getextrema() == img.getextrema()  # a flat image stays flat


def test_resize_same_size_is_a_copy() -> None:
    img = Image.new("RGB", (5, 4), (1, 2, 3))
    out = resize(img, (5, 4))
    assert out is not img
    assert out.tobytes() == img.tobytes()


@pytest.mark.parametrize(
    ("mode", "filter_name"), [("L", "BILINEAR"), ("RGB", "LANCZOS"), ("RGBA", "LANCZOS")]
)
def test_resize_filter(mode: str, filter_name: str) -> None:
    rng = np.random.default_rng(0)
    shape = (9, 11) if mode == "L" else (9, 11, len(mode))
    img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
    expected = img.resize((24, 16), getattr(Image.Resampling, filter_name))
    assert resize(img, (24, 16)).tobytes() == expected.tobytes()


@pytest.mark.parametrize("size", [(0, 4), (4, -1)])
def test_resize_rejects_bad_size(size: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="size"):
        resize(Image.new("RGB", (4, 4)), size)


def test_resize_rejects_other_modes() -> None:
    with pytest.raises(ValueError, match="'P'"):
        resize(Image.new("P", (4, 4)), (8, 8))


# --- rgb_for_model / keep_alpha ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("pixel", "expected"),
    [
        ((200, 10, 50, 255), (200, 10, 50)),
        ((200, 10, 50, 0), (128, 128, 128)),
        ((0, 0, 0, 0), (128, 128, 128)),
        ((255, 255, 255, 128), (192, 192, 192)),
    ],
)
def test_rgb_for_model_fills_transparency_with_gray(
    pixel: tuple[int, int, int, int], expected: tuple[int, int, int]
) -> None:
    out = rgb_for_model(Image.new("RGBA", (3, 2), pixel))
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == expected


@pytest.mark.parametrize(
    ("img", "expected"),
    [
        (Image.new("RGB", (2, 2), (1, 2, 3)), (1, 2, 3)),
        (Image.new("L", (2, 2), 77), (77, 77, 77)),
        (Image.new("1", (2, 2), 1), (255, 255, 255)),
        (Image.new("LA", (2, 2), (50, 0)), (128, 128, 128)),
        (Image.new("I;16", (2, 2), 65535), (255, 255, 255)),
        (Image.new("CMYK", (2, 2), (0, 0, 0, 0)), (255, 255, 255)),
    ],
)
def test_rgb_for_model_modes(img: Image.Image, expected: tuple[int, int, int]) -> None:
    out = rgb_for_model(img)
    assert out.mode == "RGB"
    assert out.size == img.size
    assert out.getpixel((1, 1)) == expected


def test_rgb_for_model_palette_transparency() -> None:
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 255, 0])
    img.putpixel((1, 0), 1)
    img.info["transparency"] = 1
    out = rgb_for_model(img)
    assert [out.getpixel((x, 0)) for x in range(2)] == [(255, 0, 0), (128, 128, 128)]


@FAST
@given(sides, sides, st.data())
def test_keep_alpha_keeps_alpha_exactly(w: int, h: int, data: st.DataObject) -> None:
    original = Image.fromarray(data.draw(arrays(np.uint8, (h, w, 4))), "RGBA")
    generated = Image.fromarray(data.draw(arrays(np.uint8, (h, w, 3))), "RGB")
    out = keep_alpha(generated, original)
    assert out.mode == "RGBA"
    assert np.array_equal(arr(out)[..., 3], arr(original)[..., 3])
    assert np.array_equal(arr(out)[..., :3], arr(generated))


def test_keep_alpha_opaque_original() -> None:
    out = keep_alpha(Image.new("RGB", (2, 2), (9, 9, 9)), Image.new("RGB", (2, 2)))
    assert out.getpixel((0, 0)) == (9, 9, 9, 255)


def test_keep_alpha_size_mismatch() -> None:
    with pytest.raises(ValueError, match="4x3.*4x4"):
        keep_alpha(Image.new("RGB", (4, 3)), Image.new("RGBA", (4, 4)))


# --- to_mask ----------------------------------------------------------------------------------


def _palette_mask() -> Image.Image:
    img = Image.new("P", (3, 1))
    img.putpalette([0, 0, 0, 255, 255, 255, 255, 255, 255])
    img.putpixel((1, 0), 2)
    img.putpixel((2, 0), 1)
    img.info["transparency"] = bytes([255, 255, 0])  # index 2: white, transparent
    return img


@pytest.mark.parametrize(
    ("img", "expected"),
    [
        (Image.new("1", (3, 1), 1), [255, 255, 255]),
        (Image.new("L", (3, 1), 128), [128, 128, 128]),
        (Image.new("LA", (3, 1), (200, 255)), [200, 200, 200]),
        (Image.new("LA", (3, 1), (255, 0)), [0, 0, 0]),
        (Image.new("LA", (3, 1), (255, 128)), [128, 128, 128]),
        (Image.new("RGB", (3, 1), (255, 255, 255)), [255, 255, 255]),
        (Image.new("RGB", (3, 1), (255, 0, 0)), [76, 76, 76]),
        (Image.new("RGBA", (3, 1), (255, 255, 255, 255)), [255, 255, 255]),
        (Image.new("RGBA", (3, 1), (255, 255, 255, 0)), [0, 0, 0]),
        (Image.new("RGBA", (3, 1), (100, 100, 100, 255)), [100, 100, 100]),
        (Image.new("I;16", (3, 1), 65535), [255, 255, 255]),
        (Image.new("I;16", (3, 1), 32896), [128, 128, 128]),
        (Image.new("I;16B", (3, 1), 65535), [255, 255, 255]),
        (Image.new("I", (3, 1), 65535), [255, 255, 255]),
        (Image.new("I", (3, 1), 1 << 20), [255, 255, 255]),
        (Image.new("F", (3, 1), 300.0), [255, 255, 255]),
        (Image.new("F", (3, 1), 12.0), [12, 12, 12]),
        (Image.new("CMYK", (3, 1), (0, 0, 0, 0)), [255, 255, 255]),
        (Image.new("YCbCr", (3, 1), (255, 128, 128)), [255, 255, 255]),
        (Image.new("RGBa", (3, 1), (0, 0, 0, 0)), [0, 0, 0]),
        (Image.new("PA", (3, 1), (0, 0)), [0, 0, 0]),
        (_palette_mask(), [0, 0, 255]),
    ],
    ids=lambda v: v.mode if isinstance(v, Image.Image) else "",
)
def test_to_mask_modes(img: Image.Image, expected: list[int]) -> None:
    out = to_mask(img)
    assert out.mode == "L"
    assert out.size == img.size
    assert list(arr(out)[0]) == expected


def test_to_mask_rejects_unconvertible_mode() -> None:
    with pytest.raises(ValueError, match="LAB"):
        to_mask(Image.new("LAB", (2, 2)))


@FAST
@given(masks())
def test_to_mask_of_l_and_rgb_is_identity(a: np.ndarray) -> None:
    assert np.array_equal(arr(to_mask(L(a))), a)
    assert np.array_equal(arr(to_mask(L(a).convert("RGB"))), a)
    assert np.array_equal(arr(to_mask(L(a).convert("RGBA"))), a)


# --- to_mode ----------------------------------------------------------------------------------


def _wide(values: list[int], mode: str = "I;16") -> Image.Image:
    """One row of 16-bit gray; I;16B from its own bytes (Pillow's convert to it clips at 255)."""
    if mode == "I;16B":
        return Image.frombytes(mode, (len(values), 1), np.array(values, ">u2").tobytes())
    img = Image.fromarray(np.array([values], dtype=np.uint16))
    return img if mode == "I;16" else img.convert(mode)


@pytest.mark.parametrize("wide_mode", ["I;16", "I;16B", "I"])
@pytest.mark.parametrize("mode", ["RGBA", "RGB", "LA", "L"])
def test_to_mode_scales_16_bit_gray(wide_mode: str, mode: str) -> None:
    """Pillow's convert clips 16-bit gray at 255 (32768 becomes white); to_mode scales it."""
    img = _wide([0, 300, 32768, 65535], wide_mode)
    assert img.mode == wide_mode
    out = to_mode(img, mode)
    assert out.mode == mode and out.size == (4, 1)
    gray = arr(out.convert("L"))[0]
    assert list(gray) == [0, 1, 128, 255]
    if "A" in mode:
        assert list(arr(out.getchannel("A"))[0]) == [255] * 4


def test_to_mode_makes_the_transparent_16_bit_value_transparent() -> None:
    img = _wide([0, 300, 32768, 300])
    img.info["transparency"] = 300  # a PNG's tRNS chunk, as Pillow reads it
    assert list(arr(to_mode(img, "RGBA"))[0, :, 3]) == [255, 0, 255, 0]
    assert list(arr(to_mask(img))[0]) == [0, 0, 128, 0]
    assert rgb_for_model(img).getpixel((1, 0)) == (128, 128, 128)


def test_to_mode_is_pillows_convert_for_other_modes() -> None:
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 255, 0])
    img.putpixel((1, 0), 1)
    assert to_mode(img, "RGBA").tobytes() == img.convert("RGBA").tobytes()
    same = Image.new("RGBA", (2, 2), (1, 2, 3, 4))
    copy = to_mode(same, "RGBA")
    assert copy is not same and copy.tobytes() == same.tobytes()
    with pytest.raises(InvalidRequest, match="`mask` has mode 'LAB'"):
        to_mode(Image.new("LAB", (2, 2)), "L", "mask")


# --- grow / feather / inpaint_mask / blend_mask -----------------------------------------------


@pytest.mark.parametrize(("pixels", "expected_width"), [(0, 1), (1, 3), (2, 5), (5, 11)])
def test_grow_mask_extent(pixels: int, expected_width: int) -> None:
    a = np.zeros((21, 21), np.uint8)
    a[10, 10] = 255
    grown = arr(grow_mask(L(a), pixels))
    assert int((grown[10] == 255).sum()) == expected_width  # along an axis: exactly `pixels`
    assert int((grown[:, 10] == 255).sum()) == expected_width


def test_grow_mask_is_round_ish() -> None:
    a = np.zeros((41, 41), np.uint8)
    a[20, 20] = 255
    grown = arr(grow_mask(L(a), 12)) > 0
    yy, xx = np.mgrid[:41, :41] - 20
    r = np.hypot(yy, xx)
    assert grown[r <= 11.5].all()
    assert not grown[r >= 13.5].any()


def test_feather_mask_zero_radius_copies() -> None:
    a = disk(9, 3)
    assert np.array_equal(arr(feather_mask(L(a), 0)), a)


def test_feather_mask_blurs() -> None:
    out = arr(feather_mask(L(disk(31, 10)), 2.0))
    assert 0 < out[15, 5] < 255  # the edge is soft
    assert out[15, 15] == 255


@pytest.mark.parametrize(
    "call",
    [
        lambda m: grow_mask(m, -1),
        lambda m: feather_mask(m, -0.5),
        lambda m: blend_mask(m, -1.0),
        lambda m: inpaint_mask(m, grow=-2),
    ],
)
def test_negative_amounts_raise(call: Callable[[Image.Image], Image.Image]) -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        call(L(disk(5, 2)))


@pytest.mark.parametrize(
    "call", [grow_mask.__name__, feather_mask.__name__, blend_mask.__name__, "mask_is_empty"]
)
def test_masks_must_be_l(call: str) -> None:
    fn = getattr(imageops, call)
    args = (Image.new("RGB", (4, 4)),) + ((1,) if call in ("grow_mask", "feather_mask") else ())
    with pytest.raises(InvalidRequest, match="mode L"):
        fn(*args)


@FAST
@given(masks(), st.integers(0, 6), st.floats(0, 5))
def test_inpaint_mask_never_below_mask(a: np.ndarray, grow: int, feather: float) -> None:
    out = arr(inpaint_mask(L(a), grow, feather))
    assert (out >= a).all()
    assert (arr(grow_mask(L(a), grow)) >= a).all()


def test_inpaint_mask_reaches_beyond_selection() -> None:
    a = disk(41, 8)
    out = arr(inpaint_mask(L(a)))
    assert out[20, 20 + 8 + 4] > 128  # grown by INPAINT_GROW, then softened
    assert out[0, 0] == 0


@FAST
@given(masks(), st.floats(0, 10))
def test_blend_mask_within_mask(a: np.ndarray, feather: float) -> None:
    out = arr(blend_mask(L(a), feather))
    assert (out <= a).all()
    assert (out[a == 0] == 0).all()


@FAST
@given(masks(), st.floats(0, 10), st.data())
def test_composite_keeps_unselected_pixels_transparent(
    a: np.ndarray, feather: float, data: st.DataObject
) -> None:
    h, w = a.shape
    original = Image.fromarray(data.draw(arrays(np.uint8, (h, w, 4))), "RGBA")
    generated = Image.fromarray(data.draw(arrays(np.uint8, (h, w, 3))), "RGB")
    blend = blend_mask(L(a), feather)
    out = arr(composite_inpaint(original, generated, blend))
    b = arr(blend)
    assert (out[..., 3][a == 0] == 0).all()
    assert np.array_equal(out[..., 3], b)
    assert np.array_equal(out[..., :3][b == 0], arr(original)[..., :3][b == 0])
    assert np.array_equal(out[..., :3][b > 0], arr(generated)[b > 0])


@pytest.mark.parametrize("value", [0, 255])
@pytest.mark.parametrize("size", [(1, 1), (7, 13), (40, 30)])
def test_flat_masks(value: int, size: tuple[int, int]) -> None:
    m = Image.new("L", size, value)
    for out in (inpaint_mask(m), blend_mask(m), grow_mask(m, 3), feather_mask(m, 2.0)):
        assert out.size == size
        assert out.getextrema() == (value, value)  # the image border is not an edge
    assert mask_is_empty(m) is (value == 0)


def test_mask_is_empty_single_pixel() -> None:
    a = np.zeros((5, 6), np.uint8)
    a[4, 5] = 1
    assert not mask_is_empty(L(a))


def test_blend_mask_soft_edge_and_solid_inside() -> None:
    a = disk(61, 25)
    out = arr(blend_mask(L(a), 8.0))
    row = out[30]
    assert row[30 - 25] < 32  # edge pixel: faint
    inside = row[30 - 25 : 30 - 25 + 9]
    assert (np.diff(inside.astype(int)) >= 0).all()  # rises monotonically inward
    yy, xx = np.mgrid[:61, :61] - 30
    assert (out[np.hypot(yy, xx) <= 25 - 8 - 2] == 255).all()  # solid deep inside


@pytest.mark.parametrize("width", [1, 2, 3, 5])
def test_blend_mask_thin_strokes_reach_full_strength(width: int) -> None:
    a = np.zeros((30, 30), np.uint8)
    a[:, 10 : 10 + width] = 255
    out = arr(blend_mask(L(a), BLEND_FEATHER))
    assert out[15].max() == 255


def test_blend_mask_zero_feather_is_mask() -> None:
    a = disk(9, 3)
    assert np.array_equal(arr(blend_mask(L(a), 0)), a)


def test_blend_mask_keeps_partial_values_below() -> None:
    a = np.full((30, 30), 0, np.uint8)
    a[5:25, 5:25] = 100
    out = arr(blend_mask(L(a)))
    assert out.max() == 100


# --- composite_inpaint ------------------------------------------------------------------------


def test_composite_inpaint_table() -> None:
    original = Image.new("RGBA", (3, 1), (10, 20, 30, 200))
    generated = Image.new("RGB", (3, 1), (90, 80, 70))
    blend = L(np.array([[0, 1, 255]]))
    out = composite_inpaint(original, generated, blend)
    assert [out.getpixel((x, 0)) for x in range(3)] == [
        (10, 20, 30, 0),
        (90, 80, 70, 1),
        (90, 80, 70, 255),
    ]


@pytest.mark.parametrize(
    ("orig", "gen", "blend", "pattern"),
    [
        ((4, 4), (4, 5), (4, 4), "4x5.*4x4"),
        ((4, 4), (4, 4), (3, 4), "3x4.*4x4"),
    ],
)
def test_composite_inpaint_size_mismatch(
    orig: tuple[int, int], gen: tuple[int, int], blend: tuple[int, int], pattern: str
) -> None:
    with pytest.raises(ValueError, match=pattern):
        composite_inpaint(Image.new("RGBA", orig), Image.new("RGB", gen), Image.new("L", blend))


def test_inpaint_flow_on_an_odd_crop() -> None:
    """The engine's path: model size and back keeps the crop size; outside stays transparent."""
    crop = Image.new("RGBA", (37, 23), (50, 60, 70, 255))
    m = np.zeros((23, 37), np.uint8)
    m[5:18, 8:30] = 255
    mask = to_mask(L(m))
    size = model_size(*crop.size, native=64)
    image = resize(rgb_for_model(crop), size)
    pipe_mask = resize(inpaint_mask(mask), size)
    assert image.size == pipe_mask.size == size
    generated = resize(Image.new("RGB", size, (200, 0, 0)), crop.size)
    layer = composite_inpaint(crop, generated, blend_mask(mask))
    assert layer.size == crop.size
    assert (arr(layer)[..., 3][m == 0] == 0).all()
    assert arr(layer)[11, 19, 3] == 255


# --- flatten_layer ----------------------------------------------------------------------------


def test_flatten_layer_table() -> None:
    """Over an RGBA original: alpha 0 keeps the original exactly (a transparent pixel's colour
    too), 255 is the layer, between composites over; the result keeps the original's mode."""
    original = Image.fromarray(
        np.array([[(10, 20, 30, 0), (10, 20, 30, 100), (10, 20, 30, 255), (1, 2, 3, 0)]], np.uint8),
        "RGBA",
    )
    layer = Image.fromarray(
        np.array(
            [[(90, 80, 70, 0), (90, 80, 70, 0), (90, 80, 70, 128), (90, 80, 70, 255)]], np.uint8
        ),
        "RGBA",
    )
    out = flatten_layer(original, layer)
    assert out.mode == "RGBA"
    pixels = [out.getpixel((x, 0)) for x in range(4)]
    assert pixels[:2] == [(10, 20, 30, 0), (10, 20, 30, 100)]
    assert pixels[2] == Image.alpha_composite(original, layer).getpixel((2, 0))
    assert pixels[3] == (90, 80, 70, 255)
    assert flatten_layer(original.convert("RGB"), layer).mode == "RGB"


@FAST
@given(masks(), st.booleans())
def test_flatten_layer_of_an_inpaint_keeps_everything_outside_the_mask(
    m: np.ndarray, transparent: bool
) -> None:
    h, w = m.shape
    rng = np.random.default_rng(h * 31 + w)
    pixels = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    if not transparent:
        pixels[..., 3] = 255
    original = Image.fromarray(pixels, "RGBA")
    generated = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    blend = blend_mask(L(m))
    out = arr(flatten_layer(original, composite_inpaint(original, generated, blend)))
    keep = arr(blend) == 0
    assert np.array_equal(out[keep], pixels[keep])
    full = arr(blend) == 255
    assert np.array_equal(out[full][:, :3], arr(generated)[full])


def test_flatten_layer_at_a_place_and_out_of_bounds() -> None:
    original = Image.new("RGB", (6, 4), (0, 0, 255))
    layer = Image.new("RGBA", (2, 2), (255, 0, 0, 255))
    out = arr(flatten_layer(original, layer, at=(3, 1)))
    red = out[..., 0] == 255
    assert red.sum() == 4 and red[1:3, 3:5].all()
    with pytest.raises(InvalidRequest, match="does not fit"):
        flatten_layer(original, layer, at=(5, 0))


def test_blend_mask_in_bands_is_the_one_pass_result(monkeypatch: pytest.MonkeyPatch) -> None:
    a = disk(61, 25)
    a[40:50, 5:20] = 90  # partial values too
    whole = arr(blend_mask(L(a)))
    monkeypatch.setattr(imageops, "_BAND_PIXELS", 61 * 4)  # 4 rows a band, 61 rows: a short last
    assert np.array_equal(arr(blend_mask(L(a))), whole)


# --- shrink -----------------------------------------------------------------------------------


def test_shrink_scales_only_larger_rgb_and_rgba() -> None:
    for mode in ("RGB", "RGBA"):
        big = Image.new(mode, (300, 200))
        assert shrink(big, (96, 64)).size == (96, 64)
        assert shrink(big, (300, 200)) is big
        assert shrink(big, (600, 400)) is big
    gray = Image.new("L", (300, 200))
    assert shrink(gray, (96, 64)) is gray  # rgb_for_model converts other modes first


@pytest.mark.parametrize(
    ("alpha", "max_levels"), [("smooth", 3), ("random", 3), ("binary noise", 12)]
)
def test_shrinking_before_the_gray_composite_matches_compositing_first(
    alpha: str, max_levels: int
) -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (256, 256, 4), dtype=np.uint8)
    if alpha == "smooth":
        a[..., 3] = np.linspace(0, 255, 256).astype(np.uint8)[None, :]
    elif alpha == "binary noise":
        a[..., 3] = (rng.random((256, 256)) > 0.5) * 255
    img = Image.fromarray(a, "RGBA")
    for size in ((64, 64), (96, 40)):
        first = arr(resize(rgb_for_model(img), size)).astype(int)
        shrunk = arr(resize(rgb_for_model(shrink(img, size)), size)).astype(int)
        diff = np.abs(first - shrunk)
        assert diff.max() <= max_levels and diff.mean() < 1.0
