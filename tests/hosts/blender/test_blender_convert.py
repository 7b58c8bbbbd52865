"""The Blender add-on's pixel conversions (plugins/blender/convert.py, numpy only: no Blender
needed). They work a block at a time and encode sRGB through tables, for speed; here each is
held to the plain whole-image formula, byte for byte, on odd sizes, values out of range,
transparent pixels and rows longer than a block. The formula for sRGB encoding is float64
rounding (the float32 power used before differs by 1 on about 2 in 10 million values)."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

CONVERT = Path(__file__).resolve().parents[3] / "plugins" / "blender" / "convert.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("paintbridge_blender_convert", CONVERT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


convert = _load()
SIZES = [(1, 1), (300, 217), (convert.BLOCK + 3, 2), (5, 3 * convert.BLOCK // 5 + 1)]

# --- the plain formulas (whole images, no blocks, no tables) ------------------------------------


def plain_to_bytes(values: np.ndarray) -> np.ndarray:
    return (np.clip(values, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def plain_unpremultiply(array: np.ndarray) -> np.ndarray:
    rgb, alpha = array[..., :3], array[..., 3:]
    rgb = np.divide(rgb, alpha, out=rgb.copy(), where=alpha > 0)
    return np.concatenate([rgb, alpha], axis=-1)


def exact_srgb_bytes(linear: np.ndarray) -> np.ndarray:
    """Rounded to nearest in float64, the reference the tables are built to."""
    x = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0)
    encoded = np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)
    return np.floor(encoded * 255.0 + 0.5).astype(np.uint8)


def plain_pixels_to_rgba8(pixels, width, height, linear=False, premultiplied=False) -> bytes:
    array = np.asarray(pixels, dtype=np.float32).reshape(height, width, 4)[::-1]
    if premultiplied:
        array = plain_unpremultiply(array)
    out = plain_to_bytes(array)
    if linear:
        out[..., :3] = exact_srgb_bytes(array[..., :3])
    return out.tobytes()


def plain_rgba8_to_pixels(rgba, width, height, linear=False) -> np.ndarray:
    array = np.frombuffer(bytes(rgba), dtype=np.uint8).reshape(height, width, 4)[::-1]
    values = array.astype(np.float32) / 255.0
    if linear:
        values = np.concatenate([convert.srgb_to_linear(values[..., :3]), values[..., 3:]], axis=-1)
    return np.ascontiguousarray(values, dtype=np.float32).ravel()


def plain_composite_over(source, result, mask=None) -> bytes:
    src = np.frombuffer(bytes(source), dtype=np.uint8).reshape(-1, 4).astype(np.float32) / 255
    top = np.frombuffer(bytes(result), dtype=np.uint8).reshape(-1, 4).astype(np.float32) / 255
    a_top, a_src = top[:, 3:], src[:, 3:]
    if mask is not None:
        wanted = np.frombuffer(bytes(mask), dtype=np.uint8).astype(np.float32)[:, None] / 255
        a_top = np.maximum(a_top, wanted * (1.0 - a_src))
    alpha = a_top + a_src * (1.0 - a_top)
    safe = np.where(alpha > 0, alpha, 1.0)
    rgb = (top[:, :3] * a_top + src[:, :3] * a_src * (1.0 - a_top)) / safe
    out = plain_to_bytes(np.concatenate([rgb, alpha], axis=1))
    untouched = a_top[:, 0] == 0
    out[untouched] = np.frombuffer(bytes(source), dtype=np.uint8).reshape(-1, 4)[untouched]
    return out.tobytes()


# --- inputs -------------------------------------------------------------------------------------


def floats(width: int, height: int, seed: int) -> np.ndarray:
    """Blender pixels: mostly in [0, 1], some below 0 and above 1 (HDR), some alpha 0 or 1."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(-0.1, 1.3, width * height * 4).astype(np.float32)
    pixels = values.reshape(-1, 4)
    pixels[::7, 3] = 0.0
    pixels[::5, 3] = 1.0
    pixels[:, 3] = np.clip(pixels[:, 3], 0.0, 1.0)
    return values


def rgba8(width: int, height: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, width * height * 4, np.uint8).tobytes()


# --- tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("linear", [False, True])
@pytest.mark.parametrize("premultiplied", [False, True])
def test_reading_pixels_gives_the_plain_formulas_bytes(
    size: tuple[int, int], linear: bool, premultiplied: bool
) -> None:
    width, height = size
    values = floats(width, height, seed=width + height)
    got = convert.pixels_to_rgba8(values, width, height, linear, premultiplied)
    assert got == plain_pixels_to_rgba8(values, width, height, linear, premultiplied)


def test_linear_to_bytes_is_rounded_to_nearest_at_every_step() -> None:
    """Every float32 either side of each place the byte goes up, and random values: the
    tables give what float64 rounding gives; NaN and what is below 0 give 0, above 1 255."""
    thresholds = convert.byte_thresholds()
    assert np.all(np.diff(thresholds.astype(np.float64)) > 1.0 / convert.STEPS)
    near = np.concatenate(
        [thresholds, np.nextafter(thresholds, np.float32(0)), np.nextafter(thresholds, 2)]
    ).astype(np.float32)
    rng = np.random.default_rng(1)
    values = np.concatenate([near, rng.random(200_000, dtype=np.float32)])
    assert np.array_equal(convert.linear_to_bytes(values), exact_srgb_bytes(values))
    odd = np.array([np.nan, -np.inf, -1.0, 0.0, 1.0, 1.5, 1e35, np.inf], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow on the way
        assert convert.linear_to_bytes(odd).tolist() == [0, 0, 0, 0, 255, 255, 255, 255]
    # against the float32 power the add-on used before: the same but for a value a hair away
    # from a rounding boundary
    before = plain_to_bytes(convert.linear_to_srgb(values)).astype(int)
    assert np.abs(before - convert.linear_to_bytes(values)).max() <= 1
    random = values[len(near) :]
    before = plain_to_bytes(convert.linear_to_srgb(random))
    assert np.count_nonzero(before != convert.linear_to_bytes(random)) < 1e-4 * random.size


def test_bytes_to_linear_and_back_is_exact() -> None:
    every = np.arange(256, dtype=np.uint8).repeat(4).reshape(16, 16, 4).tobytes()
    linear = convert.rgba8_to_pixels(every, 16, 16, linear=True)
    assert convert.pixels_to_rgba8(linear, 16, 16, linear=True) == every


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("linear", [False, True])
def test_writing_pixels_gives_the_plain_formulas_floats(
    size: tuple[int, int], linear: bool
) -> None:
    width, height = size
    rgba = rgba8(width, height, seed=width)
    got = convert.rgba8_to_pixels(rgba, width, height, linear)
    want = plain_rgba8_to_pixels(rgba, width, height, linear)
    assert got.dtype == np.float32 and np.array_equal(got, want)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("with_mask", [False, True])
def test_composite_over_gives_the_plain_formulas_bytes(
    size: tuple[int, int], with_mask: bool
) -> None:
    width, height = size
    count = width * height
    source, result = rgba8(width, height, 2), bytearray(rgba8(width, height, 3))
    result[3::16] = bytes(len(result[3::16]))  # some results transparent: the source's bytes
    rng = np.random.default_rng(4)
    mask = rng.choice([0, 0, 128, 255], count).astype(np.uint8).tobytes() if with_mask else None
    got = convert.composite_over(source, bytes(result), mask)
    assert got == plain_composite_over(source, bytes(result), mask)
    with pytest.raises(ValueError, match="the mask has"):
        convert.composite_over(source, bytes(result), bytes(count + 1))


@pytest.mark.parametrize("size", SIZES)
def test_keep_unchanged_takes_the_source_floats_where_the_bytes_are_equal(
    size: tuple[int, int],
) -> None:
    width, height = size
    source_rgba = rgba8(width, height, 5)
    rgba = bytearray(rgba8(width, height, 6))
    rgba[: len(rgba) // 2] = source_rgba[: len(rgba) // 2]  # the top half unchanged
    rgba[-4:] = source_rgba[-4:]
    values = convert.rgba8_to_pixels(bytes(rgba), width, height)
    source_values = floats(width, height, 7)
    got = convert.keep_unchanged(values, source_values, source_rgba, bytes(rgba), width, height)

    same = (
        (
            np.frombuffer(bytes(rgba), np.uint8).reshape(height, width, 4)
            == np.frombuffer(source_rgba, np.uint8).reshape(height, width, 4)
        )
        .all(axis=-1)[::-1]
        .ravel()
    )
    want = values.reshape(-1, 4).copy()
    want[same] = source_values.reshape(-1, 4)[same]
    assert np.array_equal(got, want.ravel())
    assert np.array_equal(values, convert.rgba8_to_pixels(bytes(rgba), width, height))  # kept
    with pytest.raises(ValueError, match="bytes, expected"):
        convert.keep_unchanged(
            values, source_values, source_rgba, bytes(rgba) + b"more", width, height
        )


def test_premultiply_multiplies_rgb_by_alpha_and_leaves_its_input() -> None:
    values = floats(9, 4, 8).reshape(-1, 4)
    kept = values.copy()
    got = convert.premultiply(values)
    want = np.concatenate([values[:, :3] * values[:, 3:], values[:, 3:]], axis=-1)
    assert np.array_equal(got, want) and np.array_equal(values, kept)


@pytest.mark.parametrize(("width", "height"), [(1, 1), (300, 217), (7, 1)])
def test_up_filtered_rows_make_the_png_pillow_reads_back(width: int, height: int) -> None:
    """A result's PNG (rows filtered Up, then hostkit's writer) holds exactly its pixels."""
    import io

    from PIL import Image

    from paintbridge.hostkit import pixels

    rgba = np.random.default_rng(width).integers(0, 256, width * height * 4, np.uint8).tobytes()
    png = pixels.png_from_scanlines(convert.up_filtered(rgba, width, height), width, height)
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (width, height) and image.mode == "RGBA"
        assert image.tobytes() == rgba
