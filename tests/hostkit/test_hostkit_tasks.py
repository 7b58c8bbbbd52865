"""hostkit.tasks: job dicts, the fill-selection plan, placements; the package surface."""

from __future__ import annotations

import base64

import pytest

import paintbridge
from paintbridge import hostkit
from paintbridge.hostkit import Box, Result, tasks
from paintbridge.hostkit.pixels import mask_alpha
from paintbridge.hostkit.tasks import (
    Placement,
    img2img_job,
    inpaint_job,
    placements,
    plan_fill_selection,
    txt2img_job,
)


def test_txt2img_job() -> None:
    job = txt2img_job("a red door", 512, 384, steps=20, seed=None, negative_prompt="blurry")
    assert job == {
        "task": "txt2img",
        "prompt": "a red door",
        "width": 512,
        "height": 384,
        "steps": 20,
        "negative_prompt": "blurry",
    }
    assert txt2img_job("x") == {"task": "txt2img", "prompt": "x"}


def test_unknown_parameter_is_refused() -> None:
    with pytest.raises(ValueError, match="stepz"):
        txt2img_job("x", 8, 8, stepz=3)
    with pytest.raises(ValueError, match="seamless"):
        txt2img_job("x", 8, 8, seamless="both")


def test_img2img_job() -> None:
    rgba = bytes(range(16))
    job = img2img_job(rgba, 2, 2, 0.6, prompt="p", model="test:tiny")
    assert job["task"] == "img2img" and job["strength"] == 0.6 and job["model"] == "test:tiny"
    assert job["image"]["format"] == "rgba8"
    assert base64.b64decode(str(job["image"]["data"])) == rgba
    assert img2img_job(rgba, 2, 2, image_format="png")["image"]["format"] == "png"
    with pytest.raises(ValueError, match="strength"):
        img2img_job(rgba, 2, 2, 1.5)


def test_inpaint_job() -> None:
    job = inpaint_job(bytes(16), b"\xff\x00\x00\xff", 2, 2, prompt="door", seed=3)
    assert job["task"] == "inpaint" and job["seed"] == 3
    assert job["mask"]["format"] == "a8"
    assert (job["mask"]["width"], job["mask"]["height"]) == (2, 2)
    with pytest.raises(ValueError):
        inpaint_job(bytes(16), b"\xff", 2, 2)


def _mask(width: int, height: int, box: Box) -> bytes:
    data = bytearray(width * height)
    for y in range(box.y, box.bottom):
        data[y * width + box.x : y * width + box.right] = b"\xff" * box.width
    return bytes(data)


def test_plan_fill_selection_canvas_mask() -> None:
    canvas = Box(0, 0, 300, 200)
    sel = Box(100, 80, 20, 10)
    plan = plan_fill_selection(_mask(300, 200, sel), 300, 200, canvas)
    assert plan is not None
    assert plan.selection == sel
    assert plan.box.contains(sel) and canvas.contains(plan.box)
    assert plan.box.width % 8 == 0 and plan.box.height % 8 == 0
    assert len(plan.mask) == plan.box.area
    # the mask inside the crop is exactly the selection, moved
    local = sel.translate(-plan.box.x, -plan.box.y)
    assert plan.mask == _mask(plan.box.width, plan.box.height, local)


def test_plan_fill_selection_is_limited_to_the_layer() -> None:
    canvas = Box(0, 0, 300, 200)
    layer = Box(90, 70, 50, 40)  # a small layer: only its pixels can be read
    plan = plan_fill_selection(_mask(300, 200, Box(100, 80, 20, 10)), 300, 200, canvas, layer)
    assert plan is not None and layer.contains(plan.box)
    assert plan.box_in((layer.x, layer.y)) == plan.box.translate(-90, -70)
    # a selection outside the layer plans nothing
    assert plan_fill_selection(_mask(300, 200, Box(0, 0, 5, 5)), 300, 200, canvas, layer) is None
    assert plan_fill_selection(bytes(300 * 200), 300, 200, canvas) is None


def test_plan_fill_selection_with_offset_mask() -> None:
    """Krita hands the selection of a rectangle: the mask's origin is not the canvas's."""
    canvas = Box(0, 0, 400, 400)
    mask = _mask(30, 20, Box(5, 5, 10, 10))  # selection at canvas (205, 105)
    plan = plan_fill_selection(mask, 30, 20, canvas, mask_x=200, mask_y=100)
    assert plan is not None and plan.selection == Box(205, 105, 10, 10)
    local = Box(205, 105, 10, 10).translate(-plan.box.x, -plan.box.y)
    assert plan.mask == _mask(plan.box.width, plan.box.height, local)  # zero beyond the mask


def test_plan_fill_selection_keeps_a_large_crop_sendable() -> None:
    """A 4096 px selection on a larger canvas: its context would make the crop too big for the
    server, so the plan keeps the selection and gives up the context."""
    side, canvas = 4352, Box(0, 0, 4352, 4352)
    mask = _mask(side, side, Box(100, 100, 4096, 4096))
    plan = plan_fill_selection(mask, side, side, canvas)
    assert plan is not None and plan.box.contains(Box(100, 100, 4096, 4096))
    assert plan.box.width * plan.box.height <= tasks.MAX_PIXELS


def test_too_large_to_send_is_refused_before_sending() -> None:
    from paintbridge.hostkit import RequestRejected

    too_large = "at most 16.8 million pixels.*Select a smaller area"
    with pytest.raises(RequestRejected, match=too_large) as info:
        plan_fill_selection(
            _mask(4200, 4100, Box(0, 0, 4097, 4096)), 4200, 4100, Box(0, 0, 4200, 4100)
        )
    assert info.value.code == "too_large"
    with pytest.raises(RequestRejected, match="9000x10 px"):
        img2img_job(bytes(9000 * 10 * 4), 9000, 10)
    with pytest.raises(RequestRejected, match="5000x5000 px"):
        inpaint_job(b"", b"", 5000, 5000)  # refused before the pixels are even looked at
    # a canvas-sized Generate in the editors: the server's words named fields the user has not
    with pytest.raises(RequestRejected, match="The area to generate is 5000x4000 px"):
        tasks.txt2img_job("p", 5000, 4000)
    assert tasks.txt2img_job("p", 4096, 4096)["width"] == 4096


def test_placements() -> None:
    box = Box(10, 20, 2, 2)
    results = [Result(2, 2, bytes(16), 1), Result(2, 2, bytes(range(16)), 2)]
    assert placements(box, results) == [Placement(box, bytes(16)), Placement(box, bytes(range(16)))]
    # with a selection mask, each result's alpha is multiplied by it (hostkit's mask_alpha)
    mask = bytes([255, 0, 128, 255])
    masked = placements(box, results, mask)
    assert [p.rgba for p in masked] == [mask_alpha(r.rgba, mask) for r in results]
    assert masked[1].rgba[3::4] == bytes([3, 0, 6, 15])


def test_placements_of_a_result_of_another_size_is_a_server_fault() -> None:
    """A result of another size than sent (a server that rounds to multiples of 8) is the
    server breaking the protocol: a PaintbridgeError the adapters show, not a ValueError
    traceback (GIMP's flow catches only PaintbridgeError)."""
    with pytest.raises(hostkit.ServerFault, match="8x8 result for a 5x7 image") as info:
        placements(Box(0, 0, 5, 7), [Result(8, 8, bytes(256), 1)])
    assert "paintbridge server" in str(info.value)


def test_plan_fill_selection_without_selected_pixels_on_the_layer() -> None:
    """Two blobs either side of the layer: their bounds overlap it, no selected pixel does.
    No plan (the server refuses an all-zero mask as "empty mask")."""
    mask = bytearray(100 * 100)
    mask[0] = mask[99 * 100 + 99] = 255
    assert (
        plan_fill_selection(bytes(mask), 100, 100, Box(0, 0, 100, 100), Box(40, 40, 20, 20)) is None
    )
    assert plan_fill_selection(bytes(mask), 100, 100, Box(40, 40, 20, 20)) is None


def test_plan_fill_selection_bounds_only_what_is_selected_inside() -> None:
    """A selection partly off the canvas plus a pixel far away off it: the plan is around the
    selected pixels on the canvas, not the bounds of everything cut to the canvas."""
    mask = bytearray(100 * 100)
    for y in range(10, 20):
        mask[y * 100 : y * 100 + 10] = b"\xff" * 10
    mask[95 * 100 + 95] = 255
    plan = plan_fill_selection(bytes(mask), 100, 100, Box(0, 0, 60, 60), mask_x=-5)
    assert plan is not None and plan.selection == Box(0, 10, 5, 10)
    assert plan.box == Box(0, 0, 56, 56)  # the 64 px minimum, cut to multiples of 8 on 60
    assert max(plan.mask) == 255


def test_plan_fill_selection_sends_a_selection_that_fits_unrounded() -> None:
    """A 4095 x 4097 selection has fewer pixels than a server takes; rounding its sides up to
    multiples of 8 (4096 x 4104) would not: the crop is the selection itself."""
    side = 4200
    mask = _mask(side, side, Box(3, 5, 4095, 4097))
    plan = plan_fill_selection(mask, side, side, Box(0, 0, side, side))
    assert plan is not None and plan.box == Box(3, 5, 4095, 4097)


def test_random_seeds_fit_a_32_bit_signed_field() -> None:
    class Extremes:
        def randint(self, low: int, high: int) -> int:
            return high

    assert tasks.random_seed(Extremes()) == tasks.MAX_FIELD_SEED == 2**31 - 1
    assert all(0 <= tasks.random_seed() <= 2**31 - 1 for _ in range(1000))


def test_public_surface() -> None:
    assert hostkit.__version__ == paintbridge.__version__
    for name in hostkit.__all__:
        assert hasattr(hostkit, name), name
    assert set(tasks.JOB_PARAMETERS) <= {
        "negative_prompt", "model", "steps", "guidance", "strength", "seed", "count",
        "seamless", "scheduler",
    }  # fmt: skip
