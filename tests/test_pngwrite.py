from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from paintbridge import pngwrite

MODES = {"L": 1, "RGB": 3, "RGBA": 4}


def _pixels(mode: str, width: int, height: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (height, width) if mode == "L" else (height, width, MODES[mode])
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == pngwrite.SIGNATURE
    found, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind, payload = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        crc = int.from_bytes(data[pos + 8 + length : pos + 12 + length], "big")
        assert crc == zlib.crc32(kind + payload)
        found.append((kind, payload))
        pos += 12 + length
    return found


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize(("width", "height"), [(1, 1), (1, 7), (9, 1), (33, 21)])
def test_pixels_round_trip(mode: str, width: int, height: int) -> None:
    pixels = _pixels(mode, width, height)
    back = _decoded(pngwrite.png_file(pixels, mode))
    assert back.mode == mode and back.size == (width, height)
    assert np.array_equal(np.asarray(back), pixels)


@pytest.mark.parametrize("cpus", [1, 3])
def test_many_bands_make_one_valid_stream(monkeypatch: pytest.MonkeyPatch, cpus: int) -> None:
    # bands of a few rows each, on threads or not: the IDATs join into one zlib stream whose
    # Adler-32 (zlib.decompress checks it) is that of all the rows, filters included
    monkeypatch.setattr(pngwrite, "BAND_BYTES", 200)
    monkeypatch.setattr(pngwrite, "_usable_cpus", lambda: cpus)
    pixels = _pixels("RGBA", 17, 40, seed=1)
    data = pngwrite.png_file(pixels, "RGBA")
    idats = [payload for kind, payload in _chunks(data) if kind == b"IDAT"]
    assert len(idats) == 14  # 40 filtered rows of 69 bytes in bands of about 200: 3 rows each
    raw = np.frombuffer(zlib.decompress(b"".join(idats)), dtype=np.uint8).reshape(40, 69)
    assert raw[0, 0] == 0 and set(raw[1:, 0]) == {2}  # None for the first row, then Up
    assert np.array_equal(np.asarray(_decoded(data)), pixels)


def test_adler32_combine_matches_zlib() -> None:
    rng = np.random.default_rng(2)
    data = rng.integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    for cut in (0, 1, 65520, 65521, 65522, 200_000, len(data)):
        first, second = data[:cut], data[cut:]
        combined = pngwrite._adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second))
        assert combined == zlib.adler32(data)


def test_chunks_go_between_the_header_and_the_pixels() -> None:
    data = pngwrite.png_file(_pixels("RGB", 4, 4), "RGB", [(b"tEXt", b"key\0value")])
    kinds = [kind for kind, _ in _chunks(data)]
    assert kinds == [b"IHDR", b"tEXt", b"IDAT", b"IEND"]
    assert _decoded(data).text == {"key": "value"}


def test_a_picture_packs_as_small_as_pillow_packs_it() -> None:
    # the Up filter on every row, where Pillow tries five per row: within 2% on a picture
    # (a gradient with grain); with no filter at all the file would be a third larger
    y, x = np.mgrid[0:256, 0:256]
    grain = np.random.default_rng(3).normal(0, 4, (256, 256, 3))
    picture = np.clip(np.stack([x, y, (x + y) / 2], -1) + grain, 0, 255).astype(np.uint8)
    ours = len(pngwrite.png_file(picture, "RGB", level=1))
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, "PNG", compress_level=1)
    assert ours <= 1.02 * len(buffer.getvalue())


@pytest.mark.parametrize(
    ("shape", "mode"), [((4, 4, 3), "RGBA"), ((4, 4), "RGB"), ((0, 4, 3), "RGB")]
)
def test_pixels_that_do_not_fit_the_mode_are_refused(shape: tuple[int, ...], mode: str) -> None:
    with pytest.raises(ValueError, match="cannot make a PNG"):
        pngwrite.png_file(np.zeros(shape, dtype=np.uint8), mode)


@pytest.mark.parametrize(("cpus", "bands"), [(1, 1), (2, 2), (8, 3), (64, 3)])
def test_a_small_picture_is_cut_finer_for_the_cores_at_little_cost(
    monkeypatch: pytest.MonkeyPatch, cpus: int, bands: int
) -> None:
    # 512 px RGB is 768 KB: one band of about BAND_BYTES, cut in a band per core down to
    # about MIN_BAND_BYTES; the restarts cost well under 1% of the size
    picture = _pixels("RGB", 512, 512, seed=4) // 16 * 16  # fewer levels: it compresses
    monkeypatch.setattr(pngwrite, "_usable_cpus", lambda: 1)
    whole = len(pngwrite.png_file(picture, "RGB"))
    monkeypatch.setattr(pngwrite, "_usable_cpus", lambda: cpus)
    data = pngwrite.png_file(picture, "RGB")
    assert sum(kind == b"IDAT" for kind, _ in _chunks(data)) == bands
    assert pngwrite.threads(512, 3 * 512) == bands
    assert len(data) <= 1.01 * whole
    assert np.array_equal(np.asarray(_decoded(data)), picture)
