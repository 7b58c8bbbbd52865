"""Boxes in pixel coordinates and the context box around a selection.

Coordinates are integers, x to the right, y down, (x, y) the top-left pixel; a box covers
the pixels x <= px < x + width, y <= py < y + height. Standard library only, Python 2.7 and 3.8+.
"""

from __future__ import absolute_import, division, print_function

from collections import namedtuple


class Box(namedtuple("Box", "x y width height")):
    """An immutable rectangle of pixels: Box(x, y, width, height)."""

    __slots__ = ()

    @classmethod
    def from_edges(cls, left, top, right, bottom):
        """The box covering left <= x < right, top <= y < bottom (empty if right <= left)."""
        return cls(left, top, max(0, right - left), max(0, bottom - top))

    @property
    def right(self):
        """x + width: the first column after the box."""
        return self.x + self.width

    @property
    def bottom(self):
        """y + height: the first row after the box."""
        return self.y + self.height

    @property
    def is_empty(self):
        """True when the box covers no pixel (width or height <= 0)."""
        return self.width <= 0 or self.height <= 0

    @property
    def area(self):
        """width * height, 0 for an empty box."""
        return 0 if self.is_empty else self.width * self.height

    def contains(self, other):
        """True when every pixel of other is inside this box (an empty other is contained)."""
        if other.is_empty:
            return True
        return (
            self.x <= other.x
            and self.y <= other.y
            and other.right <= self.right
            and other.bottom <= self.bottom
        )

    def intersect(self, other):
        """The pixels in both boxes; width/height 0 (at the overlap's corner) when none."""
        left, top = max(self.x, other.x), max(self.y, other.y)
        return Box.from_edges(
            left,
            top,
            max(left, min(self.right, other.right)),
            max(top, min(self.bottom, other.bottom)),
        )

    def union(self, other):
        """The smallest box holding both; an empty box adds nothing."""
        if other.is_empty:
            return self
        if self.is_empty:
            return other
        return Box.from_edges(
            min(self.x, other.x),
            min(self.y, other.y),
            max(self.right, other.right),
            max(self.bottom, other.bottom),
        )

    def pad(self, n):
        """Grown by n pixels on every side (n < 0 shrinks, never below empty)."""
        return Box.from_edges(self.x - n, self.y - n, self.right + n, self.bottom + n)

    def clamp(self, bounds):
        """Moved (not resized) to lie inside bounds; clipped only where it is larger than bounds."""
        width, height = min(self.width, bounds.width), min(self.height, bounds.height)
        x = min(max(self.x, bounds.x), bounds.right - width)
        y = min(max(self.y, bounds.y), bounds.bottom - height)
        return Box(x, y, width, height)

    def translate(self, dx, dy):
        """Moved by (dx, dy), same size."""
        return Box(self.x + dx, self.y + dy, self.width, self.height)


def _snap(need, minimum, multiple, limit):
    """A length >= need (and >= minimum) that is a multiple of `multiple`, at most limit.

    Falls back to the largest multiple <= limit that still covers `minimum`, then to limit."""
    want = max(need, minimum)
    snapped = -(-want // multiple) * multiple
    if snapped <= limit:
        return snapped
    floor = (limit // multiple) * multiple
    return floor if floor >= minimum else limit


def _place(start, length, size, must_start, must_end, lo, hi):
    """Start of a span of `size` centred on [start, start+length), holding [must_start, must_end)
    and lying inside [lo, hi)."""
    pos = start + (length - size) // 2
    low = max(must_end - size, lo)
    high = min(must_start, hi - size)
    return min(max(pos, low), high)


def context_box(selection, canvas, padding=None, multiple=8, min_size=64, max_pixels=None):
    """The box to send to the model for `selection` (a Box) on `canvas` (a Box).

    The rule: clip the selection to the canvas; grow it by `padding` on every side (default
    max(32, 25% of the selection's longer side)) and clip that to the canvas; then make each
    side at least `min_size` and a multiple of `multiple`, keeping it centred, where the canvas
    allows (on a canvas too small it shrinks to the largest multiple that still holds the
    selection, else to the canvas). The result always holds the clipped selection and lies inside
    the canvas; its (x, y) is where the result layer goes. With `max_pixels`, the padding shrinks
    (to none at worst) until the box has at most that many pixels; if rounding the sides up
    still exceeds it, the box is the clipped selection itself when that fits. Raises ValueError
    if the selection misses the canvas.
    """
    if multiple < 1 or min_size < 0:
        raise ValueError(
            "multiple must be >= 1 and min_size >= 0, got %r and %r" % (multiple, min_size)
        )
    canvas = Box(*canvas)
    sel = Box(*selection).intersect(canvas)
    if sel.is_empty:
        raise ValueError("the selection %r does not overlap the canvas %r" % (selection, canvas))
    if padding is None:
        padding = max(32, (max(sel.width, sel.height) + 3) // 4)
    padding = max(0, padding)
    box = _padded(sel, canvas, padding, multiple, min_size)
    while max_pixels is not None and box.width * box.height > max_pixels and padding > 0:
        padding = padding // 2 if padding > multiple else 0
        box = _padded(sel, canvas, padding, multiple, min_size)
    if max_pixels is not None and box.width * box.height > max_pixels >= sel.area:
        box = sel  # rounding the sides up to `multiple` alone went over: the selection fits
    return box


def _padded(sel, canvas, padding, multiple, min_size):
    grown = sel.pad(padding).intersect(canvas)
    width = _snap(max(grown.width, min_size), sel.width, multiple, canvas.width)
    height = _snap(max(grown.height, min_size), sel.height, multiple, canvas.height)
    x = _place(grown.x, grown.width, width, sel.x, sel.right, canvas.x, canvas.right)
    y = _place(grown.y, grown.height, height, sel.y, sel.bottom, canvas.y, canvas.bottom)
    return Box(x, y, width, height)


def _as_bytes(data):
    if isinstance(data, bytes):
        return data
    if isinstance(data, memoryview):
        return data.tobytes()
    return bytes(data)


def selection_bounds(mask, width, height):
    """The tight Box around the non-zero bytes of an 8-bit mask (rows top to bottom), or None.

    Scans with bytes.strip at C speed: a 4096 x 4096 mask takes milliseconds."""
    mask = _as_bytes(mask)
    if len(mask) != width * height:
        raise ValueError(
            "mask has %d bytes, expected width * height = %d" % (len(mask), width * height)
        )
    zero = b"\x00"
    head = len(mask) - len(mask.lstrip(zero))
    if head == len(mask):
        return None
    tail = len(mask.rstrip(zero))
    top, bottom = head // width, (tail - 1) // width + 1
    left, right = width, 0
    for row in range(top, bottom):
        line = mask[row * width : (row + 1) * width]
        stripped = line.lstrip(zero)
        if not stripped:
            continue
        left = min(left, width - len(stripped))
        right = max(right, len(line.rstrip(zero)))
        if left == 0 and right == width:
            break
    return Box(left, top, right - left, bottom - top)


def crop_bytes(data, width, height, box, channels, fill=None):
    """The pixels of `box` from an image of width x height x channels bytes, rows top to bottom.

    The box must lie inside the image, unless `fill` (a byte value 0-255) is given: then the
    parts of the box outside the image are that value."""
    data = _as_bytes(data)
    if len(data) != width * height * channels:
        raise ValueError(
            "data has %d bytes, expected width * height * channels = %d"
            % (len(data), width * height * channels)
        )
    box = Box(*box)
    image = Box(0, 0, width, height)
    if box.is_empty:
        return b""
    if not image.contains(box):
        if fill is None:
            raise ValueError("box %r is not inside the %dx%d image" % (box, width, height))
        return _crop_filled(data, width, height, box, channels, fill)
    if box.x == 0 and box.width == width:
        return data[box.y * width * channels : box.bottom * width * channels]
    left, right = box.x * channels, box.right * channels
    stride = width * channels
    return b"".join(
        data[row * stride + left : row * stride + right] for row in range(box.y, box.bottom)
    )


def _crop_filled(data, width, height, box, channels, fill):
    out = bytearray(bytearray([fill]) * (box.width * box.height * channels))
    inside = box.intersect(Box(0, 0, width, height))
    if inside.is_empty:
        return bytes(out)
    part = crop_bytes(data, width, height, inside, channels)
    row_len = inside.width * channels
    out_stride = box.width * channels
    dx = (inside.x - box.x) * channels
    for i in range(inside.height):
        start = (inside.y - box.y + i) * out_stride + dx
        out[start : start + row_len] = part[i * row_len : (i + 1) * row_len]
    return bytes(out)
