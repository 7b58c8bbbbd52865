"""PNG files of 8-bit pictures, made fast: rows Up-filtered with numpy, deflated on several threads.

Pillow picks each row's filter by trying all five, then deflates on one thread. A job's result
waits for its history PNG before it is done, so on a GPU, where a 512 px image takes under a
second, that was a visible share of the job. Here a 1024 px picture at zlib level 1 takes 55 ms
where Pillow takes 160 ms, for a file as large (2 cores; bench/results/png_encode-2026-12-04-c).

The rows are cut into bands of about `BAND_BYTES`, and finer, down to `MIN_BAND_BYTES`, so
that each usable core gets one (a 512 px result is a single megabyte band otherwise, on one
thread). Each band is filtered and deflated on its own thread (numpy and zlib let go of the GIL)
as an independent run of deflate blocks ending on a byte boundary, as pigz does. Joined under one
zlib header and the Adler-32 of the whole data, they are one standard zlib stream: every decoder
reads the file. A band starts without its predecessor's last 32 KB to refer to: on bands of a
quarter megabyte that costs under 1% of the size (test_pngwrite).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["BAND_BYTES", "COLOR_TYPES", "MIN_BAND_BYTES", "png_file", "threads"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOR_TYPES = {"L": 0, "RGB": 2, "RGBA": 6}  # Pillow modes written here, 8 bits a sample
BAND_BYTES = 1 << 20
MIN_BAND_BYTES = 1 << 18
MAX_THREADS = 8
_UP = 2
_ZLIB_HEADER = b"\x78\x01"  # deflate, 32 KB window, no dictionary, "fastest" level
_ADLER_BASE = 65521


def png_file(
    pixels: np.ndarray, mode: str, chunks: Sequence[tuple[bytes, bytes]] = (), level: int = 1
) -> bytes:
    """The PNG file of `pixels` (uint8, height x width x channels, or height x width for "L"),
    with `chunks` ((type, payload) pairs, text for instance) between the header and the pixels.
    """
    channels = () if mode == "L" else (len(mode),)
    if pixels.ndim != 2 + len(channels) or pixels.shape[2:] != channels or 0 in pixels.shape:
        raise ValueError(f"{mode} pixels of shape {pixels.shape} cannot make a PNG")
    height, width = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels, dtype=np.uint8).reshape(height, -1)
    header = struct.pack(">IIBBBBB", width, height, 8, COLOR_TYPES[mode], 0, 0, 0)
    bands = _deflate_bands(rows, level)
    adler = 1
    for _, band_adler, length in bands:
        adler = _adler32_combine(adler, band_adler, length)
    pieces = [band for band, _, _ in bands]
    pieces[0] = _ZLIB_HEADER + pieces[0]
    pieces[-1] += struct.pack(">I", adler)
    parts = [SIGNATURE, *_chunk(b"IHDR", header)]
    for kind, payload in chunks:
        parts += _chunk(kind, payload)
    for piece in pieces:
        parts += _chunk(b"IDAT", piece)
    parts += _chunk(b"IEND", b"")
    return b"".join(parts)  # the deflated pixels' one copy (tens of MB for a large result)


def _deflate_bands(rows: np.ndarray, level: int) -> list[tuple[bytes, int, int]]:
    """Each band's deflate blocks, the Adler-32 of its filtered bytes and their length."""
    height, stride = rows.shape
    per_band = _band_rows(height, stride)
    starts = list(range(0, height, per_band))

    def band(index: int) -> tuple[bytes, int, int]:
        start = starts[index]
        stop = min(start + per_band, height)
        filtered = np.empty((stop - start, stride + 1), dtype=np.uint8)
        filtered[:, 0] = _UP
        first = start
        if start == 0:  # the first row has none above: filter None
            filtered[0, 0] = 0
            filtered[0, 1:] = rows[0]
            first = 1
        np.subtract(rows[first:stop], rows[first - 1 : stop - 1], out=filtered[first - start :, 1:])
        data = filtered.data
        last = stop == height
        deflate = zlib.compressobj(level, zlib.DEFLATED, -15)
        out = deflate.compress(data) + deflate.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
        return out, zlib.adler32(data), filtered.nbytes

    workers = threads(height, stride)
    if workers <= 1:
        return [band(i) for i in range(len(starts))]
    with ThreadPoolExecutor(workers, thread_name_prefix="png") as pool:
        return list(pool.map(band, range(len(starts))))


def threads(height: int, row_bytes: int) -> int:
    """How many threads deflate a picture of `height` rows of `row_bytes` bytes."""
    bands = -(-height // _band_rows(height, row_bytes))
    return min(bands, MAX_THREADS, _usable_cpus())


def _band_rows(height: int, row_bytes: int) -> int:
    """Rows a band: bands of about the same size, about MIN_BAND_BYTES to BAND_BYTES each, and
    as many as the threads or a multiple of them, so that none waits on another's last band."""
    total = height * (row_bytes + 1)  # + each row's filter type byte
    workers = min(MAX_THREADS, _usable_cpus())
    band_bytes = min(BAND_BYTES, max(MIN_BAND_BYTES, total // workers))
    bands = max(1, round(total / band_bytes))
    if bands > workers:
        bands = -(-bands // workers) * workers
    return -(-height // bands)


def _adler32_combine(first: int, second: int, second_length: int) -> int:
    """The Adler-32 of two byte strings joined, from each one's (zlib's adler32_combine)."""
    base = _ADLER_BASE
    rem = second_length % base
    low = first & 0xFFFF
    high = (rem * low) % base
    low = (low + (second & 0xFFFF) + base - 1) % base
    high = (high + (first >> 16) + (second >> 16) + base - rem) % base
    return (high << 16) | low


def _chunk(kind: bytes, payload: bytes) -> tuple[bytes, bytes, bytes]:
    """A chunk's length and type, its payload, its CRC: three parts, for one join."""
    crc = zlib.crc32(payload, zlib.crc32(kind))
    return struct.pack(">I", len(payload)) + kind, payload, struct.pack(">I", crc)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
