"""Pixel helpers shared by the Krita drivers (logic_driver under kritarunner, the GUI driver):
test patterns and the checks of an identity model's round trip. Standard library only (they run
in Krita's Python)."""

import hashlib


def pattern_bgra(width, height, box=None):
    """An opaque gradient (BGRA) over the whole buffer, or only inside box (x, y, w, h)."""
    out = bytearray(width * height * 4)
    for y in range(height):
        for x in range(width):
            if box and not (box[0] <= x < box[0] + box[2] and box[1] <= y < box[1] + box[3]):
                continue
            i = (y * width + x) * 4
            out[i : i + 4] = bytes(((x * 5) % 256, (y * 7) % 256, (x + y) % 256, 255))
    return bytes(out)


def pattern_alpha_bgra(width, height, box):
    """BGRA with each channel its own function of (x, y), so a swapped channel, a flipped row or
    a shifted offset all show; inside box (x, y, w, h) only, its middle rows partly transparent
    (alpha 1..254) and its edges opaque, so the layer's bounds are exactly box."""
    bx, by, bw, bh = box
    out = bytearray(width * height * 4)
    for y in range(by, by + bh):
        for x in range(bx, bx + bw):
            partial = by + 8 <= y < by + bh - 8 and bx < x < bx + bw - 1
            alpha = 1 + (x * 7 + y * 3) % 254 if partial else 255
            i = (y * width + x) * 4
            out[i : i + 4] = bytes(((x * 3 + 11) % 256, (y * 5 + 2) % 256, (x * y) % 256, alpha))
    return bytes(out)


def over_gray(value, alpha):
    """A colour channel of a partly transparent pixel as a model sees it: over mid gray."""
    return (value * alpha + 128 * (255 - alpha) + 127) // 255


def compare_identity(source, result):
    """Differences between BGRA `source` and an identity model's img2img `result` of it:
    {"alpha": n, "opaque": n, "partial": n, "first": [...]}. Alpha must be exact, opaque pixels
    exact, partly transparent ones their colour over mid gray (within 1 for rounding)."""
    counts = {"alpha": 0, "opaque": 0, "partial": 0, "first": []}
    for i in range(0, len(source), 4):
        src, new = source[i : i + 4], result[i : i + 4]
        alpha = src[3]
        if new[3] != alpha:
            kind = "alpha"
        elif alpha == 255 and new[:3] != src[:3]:
            kind = "opaque"
        elif 0 < alpha < 255 and any(abs(new[c] - over_gray(src[c], alpha)) > 1 for c in range(3)):
            kind = "partial"
        else:
            continue
        counts[kind] += 1
        if len(counts["first"]) < 3:
            counts["first"].append([i // 4, kind, list(src), list(new)])
    return counts


def digest(data):
    return hashlib.sha256(bytes(data)).hexdigest()
