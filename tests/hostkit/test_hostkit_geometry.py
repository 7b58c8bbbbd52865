"""hostkit.geometry: Box rules, the context box, selection bounds and crops."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paintbridge.hostkit.geometry import Box, context_box, crop_bytes, selection_bounds


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (Box(0, 0, 10, 10), Box(5, 5, 10, 10), Box(5, 5, 5, 5)),
        (Box(0, 0, 10, 10), Box(2, 3, 4, 5), Box(2, 3, 4, 5)),
        (Box(0, 0, 10, 10), Box(10, 0, 5, 5), Box(10, 0, 0, 5)),  # touching: empty
        (Box(0, 0, 10, 10), Box(20, 20, 5, 5), Box(20, 20, 0, 0)),
        (Box(-5, -5, 10, 10), Box(0, 0, 100, 100), Box(0, 0, 5, 5)),
    ],
)
def test_intersect(a: Box, b: Box, expected: Box) -> None:
    assert a.intersect(b) == expected
    assert b.intersect(a).area == expected.area


def test_box_properties() -> None:
    box = Box(2, 3, 4, 5)
    assert (box.right, box.bottom, box.area, box.is_empty) == (6, 8, 20, False)
    assert Box(0, 0, 0, 5).is_empty and Box(0, 0, 0, 5).area == 0
    assert Box(1, 1, -3, 2).area == 0
    assert box.translate(-2, 1) == Box(0, 4, 4, 5)
    assert box.pad(2) == Box(0, 1, 8, 9)
    assert box.pad(-2) == Box(4, 5, 0, 1)  # shrinks, never negative
    assert Box.from_edges(1, 2, 4, 8) == Box(1, 2, 3, 6)
    assert Box(0, 0, 10, 10).contains(Box(2, 2, 3, 3))
    assert not Box(0, 0, 10, 10).contains(Box(8, 8, 3, 3))


def test_union_ignores_empty() -> None:
    assert Box(0, 0, 2, 2).union(Box(5, 5, 1, 1)) == Box(0, 0, 6, 6)
    assert Box(0, 0, 2, 2).union(Box(50, 50, 0, 0)) == Box(0, 0, 2, 2)
    assert Box(9, 9, 0, 0).union(Box(1, 1, 2, 2)) == Box(1, 1, 2, 2)


@pytest.mark.parametrize(
    ("box", "bounds", "expected"),
    [
        (Box(-5, 2, 10, 10), Box(0, 0, 100, 100), Box(0, 2, 10, 10)),  # moved right
        (Box(95, 95, 10, 10), Box(0, 0, 100, 100), Box(90, 90, 10, 10)),  # moved up-left
        (Box(-5, -5, 200, 10), Box(0, 0, 100, 100), Box(0, 0, 100, 10)),  # clipped: too wide
        (Box(10, 10, 5, 5), Box(0, 0, 100, 100), Box(10, 10, 5, 5)),
    ],
)
def test_clamp(box: Box, bounds: Box, expected: Box) -> None:
    assert box.clamp(bounds) == expected


CANVAS = Box(0, 0, 1000, 800)


@pytest.mark.parametrize(
    ("selection", "canvas", "expected"),
    [
        # small selection in the middle: padding 32 -> 74, snapped to 80, centred
        (Box(500, 400, 10, 10), CANVAS, Box(465, 365, 80, 80)),
        # top-left corner: context comes from inside the canvas only
        (Box(0, 0, 10, 10), CANVAS, Box(0, 0, 64, 64)),
        # bottom-right corner
        (Box(990, 790, 10, 10), CANVAS, Box(936, 736, 64, 64)),
        # 400 px selection: padding 25% = 100 -> 600, already a multiple of 8
        (Box(300, 200, 400, 400), CANVAS, Box(200, 100, 600, 600)),
        # larger than the canvas: clipped to the canvas, which is not a multiple of 8 ...
        (Box(-50, -50, 2000, 2000), Box(0, 0, 100, 70), Box(0, 0, 100, 70)),
        # ... a canvas smaller than min_size
        (Box(10, 10, 5, 5), Box(0, 0, 30, 20), Box(3, 2, 24, 16)),
    ],
)
def test_context_box_table(selection: Box, canvas: Box, expected: Box) -> None:
    assert context_box(selection, canvas) == expected


def test_context_box_explicit_padding_and_snap() -> None:
    box = context_box(Box(100, 100, 50, 30), CANVAS, padding=0, min_size=0)
    assert box.width % 8 == 0 and box.height % 8 == 0
    assert box.contains(Box(100, 100, 50, 30))
    assert (box.width, box.height) == (56, 32)


def test_context_box_outside_canvas_raises() -> None:
    with pytest.raises(ValueError, match="does not overlap"):
        context_box(Box(2000, 2000, 5, 5), CANVAS)


boxes = st.builds(
    Box,
    st.integers(-50, 300),
    st.integers(-50, 300),
    st.integers(1, 400),
    st.integers(1, 400),
)
canvases = st.builds(
    Box, st.integers(-20, 20), st.integers(-20, 20), st.integers(1, 300), st.integers(1, 300)
)


@given(boxes, canvases, st.one_of(st.none(), st.integers(0, 80)), st.sampled_from([1, 8, 64]))
def test_context_box_invariants(sel: Box, canvas: Box, padding: int | None, multiple: int) -> None:
    clipped = sel.intersect(canvas)
    if clipped.is_empty:
        with pytest.raises(ValueError):
            context_box(sel, canvas, padding, multiple)
        return
    box = context_box(sel, canvas, padding, multiple)
    assert canvas.contains(box)
    assert box.contains(clipped)
    for side, limit in ((box.width, canvas.width), (box.height, canvas.height)):
        # a multiple where the canvas allows, else the canvas side
        assert side % multiple == 0 or side == limit
        assert side >= min(64, limit) or side % multiple == 0


def _mask(width: int, height: int, box: Box | None) -> bytes:
    data = bytearray(width * height)
    if box is not None:
        for y in range(box.y, box.bottom):
            for x in range(box.x, box.right):
                data[y * width + x] = 255
    return bytes(data)


@pytest.mark.parametrize(
    "box",
    [None, Box(0, 0, 1, 1), Box(3, 2, 4, 5), Box(0, 0, 17, 9), Box(16, 8, 1, 1), Box(5, 0, 2, 9)],
)
def test_selection_bounds(box: Box | None) -> None:
    assert selection_bounds(_mask(17, 9, box), 17, 9) == box


def test_selection_bounds_scattered_and_partial_values() -> None:
    mask = bytearray(20 * 10)
    mask[2 * 20 + 15] = 1
    mask[7 * 20 + 3] = 128
    assert selection_bounds(bytes(mask), 20, 10) == Box(3, 2, 13, 6)
    assert selection_bounds(mask, 20, 10) == Box(3, 2, 13, 6)  # bytearray too
    assert selection_bounds(memoryview(bytes(mask)), 20, 10) == Box(3, 2, 13, 6)


def test_selection_bounds_size_check() -> None:
    with pytest.raises(ValueError, match="expected width"):
        selection_bounds(b"\0" * 10, 4, 4)


def test_selection_bounds_4k_is_fast() -> None:
    import time

    size = 4096
    mask = bytearray(size * size)
    for y in range(1000, 3000):
        mask[y * size + 500 : y * size + 3500] = b"\xff" * 3000
    data = bytes(mask)
    started = time.perf_counter()
    assert selection_bounds(data, size, size) == Box(500, 1000, 3000, 2000)
    assert time.perf_counter() - started < 1.0


def test_crop_bytes_matches_naive() -> None:
    rng = random.Random(1)
    width, height, channels = 13, 7, 4
    data = bytes(rng.randrange(256) for _ in range(width * height * channels))
    box = Box(2, 1, 5, 4)
    naive = b"".join(
        data[(y * width + x) * channels : (y * width + x + 1) * channels]
        for y in range(box.y, box.bottom)
        for x in range(box.x, box.right)
    )
    assert crop_bytes(data, width, height, box, channels) == naive
    assert (
        crop_bytes(data, width, height, Box(0, 2, width, 3), channels)
        == data[2 * width * channels : 5 * width * channels]
    )


def test_crop_bytes_outside() -> None:
    data = bytes(range(16))  # 4x4, 1 channel
    with pytest.raises(ValueError, match="not inside"):
        crop_bytes(data, 4, 4, Box(2, 2, 4, 4), 1)
    out = crop_bytes(data, 4, 4, Box(2, 2, 3, 3), 1, fill=0)
    assert out == bytes([10, 11, 0, 14, 15, 0, 0, 0, 0])
    assert crop_bytes(data, 4, 4, Box(10, 10, 2, 1), 1, fill=7) == b"\x07\x07"


@given(boxes, canvases, st.integers(64 * 64, 400 * 400), st.sampled_from([1, 8]))
def test_context_box_gives_up_context_to_stay_under_max_pixels(
    sel: Box, canvas: Box, max_pixels: int, multiple: int
) -> None:
    """Less padding, never less selection: under the cap whenever the selection alone fits."""
    if sel.intersect(canvas).is_empty:
        return
    box = context_box(sel, canvas, None, multiple, max_pixels=max_pixels)
    assert box.contains(sel.intersect(canvas)) and canvas.contains(box)
    unpadded = context_box(sel, canvas, 0, multiple)
    if unpadded.width * unpadded.height <= max_pixels:
        assert box.width * box.height <= max_pixels
    if (
        context_box(sel, canvas, None, multiple).width
        * context_box(sel, canvas, None, multiple).height
        <= max_pixels
    ):
        assert box == context_box(sel, canvas, None, multiple)  # no cap needed: no change


def test_context_box_for_a_4096_selection_on_a_larger_canvas() -> None:
    box = context_box(Box(128, 128, 4096, 4096), Box(0, 0, 4352, 4352), max_pixels=4096 * 4096)
    assert box == Box(128, 128, 4096, 4096)
    roomy = context_box(Box(128, 128, 3000, 3000), Box(0, 0, 4352, 4352), max_pixels=4096 * 4096)
    assert roomy.width * roomy.height <= 4096 * 4096 and roomy.contains(Box(128, 128, 3000, 3000))
    assert roomy.width > 3000  # it kept some context
