"""The GIMP 3 plug-in inside real GIMP 3 (gimp-console, batch mode) against a real server.

One GIMP run per module (GIMP's start costs ~10 s): the plug-in bundle is built and installed
into a fresh profile, driver_gimp3.py runs every case through GIMP's PDB as a script would,
and the tests below judge the facts it recorded. The plug-in finds the live server through the
server.json the server wrote (copied where GIMP can read it), as a user's plug-in would.
"""

from __future__ import annotations

import shutil
import socket

import pytest
from tests.hosts.conftest import require_host
from tests.hosts.gimp.gimphost import HERE, Workspace, find_gimp3

from paintbridge.hostkit.geometry import Box, context_box

pytestmark = [
    pytest.mark.host,
    pytest.mark.slow,
]

MENU = "<Image>/Filters/Paintbridge"
PROCEDURES = ("paintbridge-fill-selection", "paintbridge-generate", "paintbridge-img2img")


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def gimp_run(live_server):
    gimp, why = find_gimp3()
    require_host(gimp is not None, why)
    work = Workspace(gimp)
    try:
        work.install_bundle()
        config_dir = work.path / "pbconfig"
        config_dir.mkdir()
        shutil.copy(live_server.config_dir / "server.json", config_dir / "server.json")
        results, log = work.run_batch(
            HERE / "driver_gimp3.py",
            {"down_url": closed_port_url()},
            env={"PAINTBRIDGE_CONFIG_DIR": work.gimp.inside(config_dir)},
        )
        assert results.get("finished"), f"the driver stopped early:\n{log}"
        yield results
    finally:
        work.remove()


def facts(gimp_run, name):
    entry = gimp_run[name]
    assert entry["ok"], entry.get("error")
    return entry


def test_procedures_registered_under_filters_paintbridge(gimp_run):
    registered = facts(gimp_run, "registered")
    labels = {}
    for name in PROCEDURES:
        proc = registered[name]
        assert proc["found"], f"{name} is not registered"
        assert MENU in proc["menu_paths"]
        assert "<Layers>/Paintbridge" in proc["menu_paths"]
        assert {"prompt", "negative-prompt", "model", "steps", "guidance", "seed"} <= set(
            proc["arguments"]
        )
        labels[name] = proc["menu_label"].replace("_", "")
    assert labels == {
        "paintbridge-fill-selection": "Fill Selection...",
        "paintbridge-generate": "Generate...",
        "paintbridge-img2img": "Image to Image...",
    }
    assert "strength" in registered["paintbridge-img2img"]["arguments"]
    assert {"width", "height"} <= set(registered["paintbridge-generate"]["arguments"])
    assert {"source", "whole-layer"} <= set(registered["paintbridge-fill-selection"]["arguments"])


def expected_box(entry) -> Box:
    canvas = Box(0, 0, *entry["canvas"])
    limit = canvas.intersect(Box(*entry["layer_box"]))
    selection = Box(*entry["selection_bounds"]).intersect(limit)
    return context_box(selection, limit)


@pytest.mark.parametrize(
    "case",
    [
        "fill_rectangle",
        "fill_ellipse_corner",
        "fill_feathered_gray_offset_layer",
        "fill_visible_source",
    ],
)
def test_fill_selection_changes_only_the_selection(gimp_run, case):
    entry = facts(gimp_run, case)
    assert entry["status"] == "success", entry["error"]
    # one new layer, directly above the active one, in the same group
    assert entry["layers_after"] == entry["layers_before"] + 1
    new = entry["new_layer"]
    assert new["position"] == entry["active_position_before"]
    assert entry["new_layer_parent_is_active_parent"]
    assert new["name"].startswith("Paintbridge fill: a red door")
    assert new["has_alpha"]
    # at the context box around the selection: its offset and size
    assert Box(*new["box"]) == expected_box(entry)
    # the flattened image: every pixel outside the selection as before, the inside regenerated
    counts = entry["compare"]
    assert counts["outside"] > 0 and counts["outside_changed"] == 0
    assert counts["inside"] > 0
    assert counts["inside_changed"] >= 0.9 * counts["inside"], counts
    assert entry["selection_unchanged"]
    assert entry["undo_enabled"] and entry["dirty"]


def test_fill_selection_at_the_canvas_corner_is_clipped_to_the_canvas(gimp_run):
    entry = facts(gimp_run, "fill_ellipse_corner")
    sel = Box(*entry["selection_bounds"])
    canvas = Box(0, 0, *entry["canvas"])
    assert (sel.right, sel.bottom) == (canvas.right, canvas.bottom)  # touches the corner
    assert canvas.contains(Box(*entry["new_layer"]["box"]))


def test_fill_selection_on_an_offset_layer_stays_on_the_layer(gimp_run):
    entry = facts(gimp_run, "fill_feathered_gray_offset_layer")
    layer = Box(*entry["layer_box"])
    assert layer.contains(Box(*entry["new_layer"]["box"]))


def test_fill_selection_without_selection_says_so_and_adds_nothing(gimp_run):
    entry = facts(gimp_run, "fill_no_selection")
    assert entry["status"] == "execution-error"
    assert "Nothing is selected" in entry["error"]
    assert entry["layers_after"] == entry["layers_before"]
    assert not entry["dirty"]  # nothing pushed on the undo stack
    assert entry["compare"]["inside_changed"] == entry["compare"]["outside_changed"] == 0


def test_fill_selection_without_selection_can_take_the_whole_layer(gimp_run):
    entry = facts(gimp_run, "fill_no_selection_whole_layer")
    assert entry["status"] == "success", entry["error"]
    assert entry["new_layer"]["box"] == [0, 0, *entry["canvas"]]


@pytest.mark.parametrize("case", ["fill_server_down", "img2img_server_down"])
def test_server_down_is_a_clean_error_and_no_new_layer(gimp_run, case):
    entry = facts(gimp_run, case)
    assert entry["status"] == "execution-error"
    assert "Could not reach the paintbridge server" in entry["error"]
    assert "Traceback" not in entry["error"]
    assert entry["layers_after"] == entry["layers_before"]
    assert not entry["dirty"]  # the image was not touched: nothing on the undo stack


def test_generate_makes_a_layer_of_the_image_size(gimp_run):
    entry = facts(gimp_run, "generate_image_size")
    assert entry["status"] == "success", entry["error"]
    assert [n["box"] for n in entry["new"]] == [[0, 0, 200, 150]]
    assert entry["new"][0]["position"] == 0  # above the active (top) layer


def test_generate_makes_a_layer_of_a_chosen_size_on_a_gray_image(gimp_run):
    entry = facts(gimp_run, "generate_chosen_size")
    assert entry["status"] == "success", entry["error"]
    assert [n["box"] for n in entry["new"]] == [[0, 0, 96, 64]]


def test_generate_without_an_image_makes_a_new_image(gimp_run):
    entry = facts(gimp_run, "generate_no_image")
    assert entry["status"] == "success", entry["error"]
    assert len(entry["new_images"]) == 1
    image = entry["new_images"][0]
    assert image["size"] == [80, 48]
    assert [n["box"] for n in image["layers"]] == [[0, 0, 80, 48]]


def test_img2img_takes_the_part_of_the_layer_on_the_canvas(gimp_run):
    entry = facts(gimp_run, "img2img_layer")
    assert entry["status"] == "success", entry["error"]
    # layer at (-20, 30) 100x120 on a 160x120 canvas: x 0..80, y 30..120
    assert [n["box"] for n in entry["new"]] == [[0, 30, 80, 90]]
    assert entry["new"][0]["name"].startswith("Paintbridge img2img: a lighthouse")


def test_img2img_with_a_selection_changes_only_the_selection(gimp_run):
    entry = facts(gimp_run, "img2img_selection")
    assert entry["status"] == "success", entry["error"]
    assert [n["box"] for n in entry["new"]] == [[20, 30, 64, 40]]
    counts = entry["compare"]
    assert counts["outside_changed"] == 0
    assert counts["inside_changed"] >= 0.9 * counts["inside"]
