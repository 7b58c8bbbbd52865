"""8-bit pixel buffers: row order, channel order, PNG encode/decode, and the wire payloads.

A buffer is bytes (or bytearray), rows top to bottom, no padding: RGBA is width*height*4 bytes,
L (gray, or a mask) width*height bytes. Standard library only, Python 2.7 and 3.8+.
"""

from __future__ import absolute_import, division, print_function

import binascii
import struct
import zlib

from .transport import Base64, Later

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_CHANNELS = {"L": 1, "RGB": 3, "RGBA": 4}
_COLOR_TYPE = {"L": 0, "RGB": 2, "RGBA": 6}
# PNG color type -> samples per pixel
_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _as_bytes(data):
    if isinstance(data, bytes):
        return data
    if isinstance(data, memoryview):
        return data.tobytes()
    return bytes(data)


def _check_size(data, width, height, channels, what="data"):
    if width < 0 or height < 0:
        raise ValueError("width and height must be >= 0, got %r x %r" % (width, height))
    if len(data) != width * height * channels:
        raise ValueError(
            "%s has %d bytes, expected %d x %d x %d = %d"
            % (what, len(data), width, height, channels, width * height * channels)
        )


def flip_rows(data, width, height, channels=4):
    """The same image with its rows in reverse order (Blender keeps rows bottom to top)."""
    data = _as_bytes(data)
    _check_size(data, width, height, channels)
    stride = width * channels
    return b"".join(data[row * stride : (row + 1) * stride] for row in range(height - 1, -1, -1))


def bgra_to_rgba(data):
    """Swaps the 1st and 3rd byte of every 4 (Krita's 8-bit pixelData is B, G, R, A)."""
    data = _as_bytes(data)
    if len(data) % 4:
        raise ValueError("BGRA/RGBA data must be a multiple of 4 bytes, got %d" % len(data))
    out = bytearray(data)
    out[0::4] = data[2::4]
    out[2::4] = data[0::4]
    return bytes(out)


rgba_to_bgra = bgra_to_rgba  # the swap is its own inverse


def rgb_to_rgba(data):
    """RGB to RGBA with alpha 255."""
    data = _as_bytes(data)
    if len(data) % 3:
        raise ValueError("RGB data must be a multiple of 3 bytes, got %d" % len(data))
    n = len(data) // 3
    out = bytearray(b"\xff" * (n * 4))
    out[0::4] = data[0::3]
    out[1::4] = data[1::3]
    out[2::4] = data[2::3]
    return bytes(out)


def gray_to_rgba(data, alpha=None):
    """Gray (L) to RGBA: R = G = B = gray, alpha 255 or the given alpha bytes."""
    data = _as_bytes(data)
    out = bytearray(b"\xff" * (len(data) * 4))
    out[0::4] = data
    out[1::4] = data
    out[2::4] = data
    if alpha is not None:
        alpha = _as_bytes(alpha)
        if len(alpha) != len(data):
            raise ValueError("alpha has %d bytes, gray has %d" % (len(alpha), len(data)))
        out[3::4] = alpha
    return bytes(out)


def alpha_of(rgba):
    """The alpha bytes of RGBA data (one per pixel)."""
    return _as_bytes(rgba)[3::4]


def mask_alpha(rgba, mask):
    """RGBA with each pixel's alpha multiplied by its mask byte / 255 (mask: one byte per pixel,
    255 = keep), rounded to nearest: an img2img result shows only where the selection is."""
    rgba, mask = _as_bytes(rgba), _as_bytes(mask)
    if len(rgba) != 4 * len(mask):
        raise ValueError("mask has %d bytes for %d pixels" % (len(mask), len(rgba) // 4))
    if mask.count(b"\xff") == len(mask):  # a rectangle selection: nothing to do
        return rgba
    out = bytearray(rgba)
    alpha = rgba[3::4]
    if alpha.count(b"\xff") == len(alpha):  # an opaque result (all are): its alpha is the mask
        out[3::4] = mask
        return bytes(out)
    alpha, weights = bytearray(alpha), bytearray(mask)
    out[3::4] = bytearray((a * m + 127) // 255 for a, m in zip(alpha, weights))  # noqa: B905
    return bytes(out)


def rgba_to_gray(rgba):
    """RGBA or RGB-as-RGBA to L, ITU-R 601-2 luma like Pillow's convert("L"); alpha is dropped."""
    rgba = _as_bytes(rgba)
    red, green, blue = bytearray(rgba[0::4]), bytearray(rgba[1::4]), bytearray(rgba[2::4])
    return bytes(
        bytearray(
            (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16
            for r, g, b in zip(red, green, blue)  # noqa: B905
        )
    )


# --- PNG ------------------------------------------------------------------------------------


def _chunk(kind, payload):
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def encode_png(data, width, height, mode="RGBA", level=6):
    """A PNG file (bytes) of 8-bit `mode` data ("RGBA", "RGB" or "L"); filter 0 on every row."""
    if mode not in _CHANNELS:
        raise ValueError("mode must be one of %s, got %r" % (sorted(_CHANNELS), mode))
    data = _as_bytes(data)
    channels = _CHANNELS[mode]
    _check_size(data, width, height, channels)
    if width < 1 or height < 1:
        raise ValueError("a PNG needs at least 1 x 1 pixels, got %d x %d" % (width, height))
    stride = width * channels
    raw = b"".join(b"\x00" + data[row * stride : (row + 1) * stride] for row in range(height))
    return png_from_scanlines(raw, width, height, mode, level)


def png_from_scanlines(scanlines, width, height, mode="RGBA", level=6):
    """A PNG file (bytes) of 8-bit `mode` rows already filtered: each row its filter type byte,
    then its filtered bytes (for a host that filters faster than this module can)."""
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPE[mode], 0, 0, 0)
    return b"".join(
        [
            PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(scanlines, level)),
            _chunk(b"IEND", b""),
        ]
    )


def _read_chunks(png):
    if png[:8] != PNG_SIGNATURE:
        raise ValueError("not a PNG file (the first 8 bytes are not the PNG signature)")
    pos = 8
    while pos + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        payload = png[pos + 8 : pos + 8 + length]
        crc = png[pos + 8 + length : pos + 12 + length]
        if len(payload) != length or len(crc) != 4:
            raise ValueError("truncated PNG file (chunk %r is cut short)" % (kind,))
        if struct.unpack(">I", crc)[0] != zlib.crc32(kind + payload) & 0xFFFFFFFF:
            raise ValueError("corrupt PNG file (bad CRC in chunk %r)" % (kind,))
        yield kind, payload
        pos += 12 + length
        if kind == b"IEND":
            return
    raise ValueError("truncated PNG file (no IEND chunk)")


def _unfilter(raw, stride, height, bpp):
    """Undoes the per-row PNG filters; returns the raw sample bytes (stride * height)."""
    if len(raw) < (stride + 1) * height:
        raise ValueError("truncated PNG image data")
    out = bytearray(stride * height)
    prev = bytearray(stride)
    pos = 0
    for row in range(height):
        kind = raw[pos]
        line = raw[pos + 1 : pos + 1 + stride]
        pos += stride + 1
        if kind == 0:
            pass
        elif kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            line = bytearray([(a + b) & 0xFF for a, b in zip(line, prev)])  # noqa: B905
        elif kind == 3:
            for i in range(bpp):
                line[i] = (line[i] + (prev[i] >> 1)) & 0xFF
            for i in range(bpp, stride):
                line[i] = (line[i] + ((line[i - bpp] + prev[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(bpp):
                line[i] = (line[i] + prev[i]) & 0xFF
            for i in range(bpp, stride):
                a, b, c = line[i - bpp], prev[i], prev[i - bpp]
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                if pa <= pb and pa <= pc:
                    pred = a
                elif pb <= pc:
                    pred = b
                else:
                    pred = c
                line[i] = (line[i] + pred) & 0xFF
        else:
            raise ValueError("corrupt PNG file (unknown filter type %d in row %d)" % (kind, row))
        out[row * stride : (row + 1) * stride] = line
        prev = line
    return out


def _unpack_bits(samples, width, height, stride, depth):
    """Sub-byte samples (1, 2 or 4 bits, rows padded to a byte) to one byte per sample."""
    per_byte = 8 // depth
    mask = (1 << depth) - 1
    shifts = [8 - depth * (k + 1) for k in range(per_byte)]
    out = bytearray()
    for row in range(height):
        line = samples[row * stride : (row + 1) * stride]
        values = bytearray((byte >> s) & mask for byte in line for s in shifts)
        out += values[:width]
    return out


def decode_png(png, mode="RGBA"):
    """Decodes a non-interlaced PNG to (width, height, mode, data).

    Reads gray, gray+alpha, RGB, RGBA and palette images (with tRNS transparency), bit depths
    1-16 (16-bit is cut to its high byte; a tRNS colour key matches all 16 bits), all five
    filter types. `mode` is "RGBA" or "L" (Pillow's luma, alpha dropped), or None for "L" when
    the image is gray without transparency and "RGBA" otherwise. Raises ValueError with the
    reason for anything else.
    """
    if mode not in ("RGBA", "L", None):
        raise ValueError('mode must be "RGBA", "L" or None, got %r' % (mode,))
    png = _as_bytes(png)
    header = palette = trns = None
    idat = []
    for kind, payload in _read_chunks(png):
        if kind == b"IHDR":
            if len(payload) != 13:
                raise ValueError("corrupt PNG file (IHDR is %d bytes, not 13)" % len(payload))
            header = struct.unpack(">IIBBBBB", payload)
        elif kind == b"PLTE":
            palette = bytearray(payload)
        elif kind == b"tRNS":
            trns = bytearray(payload)
        elif kind == b"IDAT":
            idat.append(payload)
    if header is None:
        raise ValueError("corrupt PNG file (no IHDR chunk)")
    width, height, depth, color, _compression, _filter, interlace = header
    if interlace:
        raise ValueError(
            "interlaced (Adam7) PNG images are not supported; save it without interlacing"
        )
    if color not in _SAMPLES or depth not in (1, 2, 4, 8, 16):
        raise ValueError("unsupported PNG: color type %d, bit depth %d" % (color, depth))
    if depth < 8 and color not in (0, 3) or depth == 16 and color == 3:
        raise ValueError("invalid PNG: color type %d with bit depth %d" % (color, depth))
    if color == 3 and palette is None:
        raise ValueError("corrupt PNG file (palette image without a PLTE chunk)")
    if trns is not None and len(trns) < {0: 2, 2: 6}.get(color, 0):
        raise ValueError("corrupt PNG file (tRNS chunk of %d bytes is too short)" % len(trns))
    samples_per_pixel = _SAMPLES[color]
    bits_per_pixel = samples_per_pixel * depth
    stride = (width * bits_per_pixel + 7) // 8
    try:
        # at most what the header needs: a small zlib bomb cannot fill the host's memory
        inflater = zlib.decompressobj()
        raw = bytearray(inflater.decompress(b"".join(idat), (stride + 1) * height + 1))
    except zlib.error as exc:
        message = "corrupt PNG file (image data does not decompress: %s)" % exc
        raise ValueError(message)  # noqa: B904
    samples = _unfilter(raw, stride, height, max(1, bits_per_pixel // 8))
    key = key_alpha = None
    if depth == 16:
        if trns is not None and color in (0, 2):
            # the key matches all 16 bits: compared before the samples are cut to 8
            size = 2 * samples_per_pixel
            key_alpha = _key_alpha(bytes(samples), bytes(trns[:size]), size)
        samples = samples[0::2]
    elif depth < 8:
        samples = _unpack_bits(samples, width, height, stride, depth)
        if color == 0:
            scale = 255 // ((1 << depth) - 1)
            if trns is not None:
                key = bytes(bytearray([(trns[1] & ((1 << depth) - 1)) * scale]))
            samples = bytearray(bytearray(v * scale for v in samples))
    elif trns is not None and color in (0, 2):
        key = bytes(trns[1::2])
    samples = bytes(samples)

    if color == 0 and key is None and key_alpha is None and mode in ("L", None):
        return width, height, "L", samples
    if color == 0:
        alpha = key_alpha
        if key is not None:
            table = bytearray(b"\xff" * 256)
            table[bytearray(key)[0]] = 0
            alpha = samples.translate(bytes(table))
        rgba = gray_to_rgba(samples, alpha)
    elif color == 4:
        rgba = gray_to_rgba(samples[0::2], samples[1::2])
    elif color == 2:
        rgba = rgb_to_rgba(samples)
        if key_alpha is not None:
            rgba = bytearray(rgba)
            rgba[3::4] = key_alpha
            rgba = bytes(rgba)
        elif key is not None:
            rgba = _apply_rgb_key(rgba, key)
    elif color == 6:
        rgba = samples
    else:
        rgba = _apply_palette(samples, palette, trns)
    if mode == "L":
        return width, height, "L", rgba_to_gray(rgba)
    return width, height, "RGBA", rgba


def _apply_palette(indices, palette, trns):
    tables = [bytearray(256) for _ in range(4)]
    entries = len(palette) // 3
    for i in range(entries):
        tables[0][i], tables[1][i], tables[2][i] = palette[3 * i : 3 * i + 3]
    tables[3] = bytearray(b"\xff" * 256)
    if trns is not None:
        tables[3][: len(trns)] = trns[:256]
    out = bytearray(len(indices) * 4)
    for channel in range(4):
        out[channel::4] = indices.translate(bytes(tables[channel]))
    return bytes(out)


def _key_alpha(samples, key, size):
    """One alpha byte per pixel of `size` bytes: 0 where the pixel's bytes are `key`, else 255."""
    starts = range(0, len(samples), size)
    return bytes(bytearray(0 if samples[i : i + size] == key else 255 for i in starts))


def _apply_rgb_key(rgba, key):
    out = bytearray(rgba)
    for i in range(0, len(out), 4):
        if out[i : i + 3] == key:
            out[i + 3] = 0
    return bytes(out)


# --- wire payloads ---------------------------------------------------------------------------


def image_payload(data, width, height, format="rgba8"):
    """The wire form of an RGBA8 image: {width, height, format, data: Base64} (JSON: a base64
    string, written as the request is sent).

    format "rgba8" sends the bytes as they are; "png" compresses them (smaller over a network).
    `data` may be a Later (see transport.Later): its bytes are then made, checked and
    encoded when the job is sent, on the thread that sends it.
    """
    if format not in ("rgba8", "png"):
        raise ValueError('image format must be "rgba8" or "png", got %r' % (format,))

    def blob(data):
        data = _as_bytes(data)
        _check_size(data, width, height, 4, "image data")
        return Base64(data if format == "rgba8" else encode_png(data, width, height, "RGBA"))

    return _payload(blob, data, width, height, format)


def mask_payload(data, width, height, format="a8"):
    """The wire form of an 8-bit mask (255 = regenerate): format "a8" or "png"; `data` may be a
    Later, as in image_payload."""
    if format not in ("a8", "png"):
        raise ValueError('mask format must be "a8" or "png", got %r' % (format,))

    def blob(data):
        data = _as_bytes(data)
        _check_size(data, width, height, 1, "mask data")
        return Base64(data if format == "a8" else encode_png(data, width, height, "L"))

    return _payload(blob, data, width, height, format)


def _payload(blob, data, width, height, format):
    made = Later(lambda: blob(data.get())) if isinstance(data, Later) else blob(data)
    return {"width": width, "height": height, "format": format, "data": made}


def _payload_fields(payload):
    try:
        width, height = int(payload["width"]), int(payload["height"])
        fmt, data = payload["format"], payload["data"]
        data = data.get() if isinstance(data, Later) else data
        # what base64.b64decode does, less its copy of a str to bytes first (85 MB for a
        # 4096 x 4096 result): Python 3's a2b_base64 reads an ASCII str in place
        blob = data.data if isinstance(data, Base64) else binascii.a2b_base64(data)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        message = "not an image payload (%s: %s)" % (type(exc).__name__, exc)
        raise ValueError(message)  # noqa: B904
    return width, height, fmt, blob


def _decode_payload_png(blob, width, height, mode):
    """The PNG's pixels in `mode`, after checking it has the size the payload declares."""
    png_width, png_height, _mode, data = decode_png(blob, mode)
    if (png_width, png_height) != (width, height):
        raise ValueError(
            "payload says %dx%d but its PNG is %dx%d" % (width, height, png_width, png_height)
        )
    return data


def payload_to_rgba(payload):
    """(width, height, RGBA bytes) from an image payload of format "rgba8" or "png"."""
    width, height, fmt, blob = _payload_fields(payload)
    if fmt == "rgba8":
        _check_size(blob, width, height, 4, "rgba8 payload")
        return width, height, blob
    if fmt == "png":
        return width, height, _decode_payload_png(blob, width, height, "RGBA")
    raise ValueError('image payload format must be "rgba8" or "png", got %r' % (fmt,))


def payload_to_mask(payload):
    """(width, height, L bytes) from a mask payload of format "a8" or "png"."""
    width, height, fmt, blob = _payload_fields(payload)
    if fmt == "a8":
        _check_size(blob, width, height, 1, "a8 payload")
        return width, height, blob
    if fmt == "png":
        return width, height, _decode_payload_png(blob, width, height, "L")
    raise ValueError('mask payload format must be "a8" or "png", got %r' % (fmt,))
