"""The GIMP 3 plug-in inside real GIMP 3 (gimp-console, batch mode) against a real server.

One GIMP run per module (GIMP's start costs ~10 s): the plug-in bundle is built and installed
into a fresh profile, driver_gimp3.py runs every case through GIMP's PDB as a script would,
and the tests below judge the facts it recorded. The plug-in finds the live server through the
server.json the server wrote (copied where GIMP can read it), as a user's plug-in would.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import socket
import threading

import numpy as np
import pytest
from PIL import Image
from tests.hosts.conftest import require_host, start_server, stop_server
from tests.hosts.gimp.gimphost import HERE, Workspace, find_gimp3, kill_when_job_runs

from paintbridge import imageops
from paintbridge.hostkit.client import Client
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


def run_driver(live_server, **config):
    """Runs driver_gimp3.py in one GIMP session against `live_server`; yields (results, log)."""
    gimp, why = find_gimp3()
    require_host(gimp is not None, why)
    work = Workspace(gimp)
    try:
        work.install_bundle()
        config_dir = work.path / "pbconfig"
        config_dir.mkdir()
        shutil.copy(live_server.config_dir / "server.json", config_dir / "server.json")
        yield work.run_batch(
            HERE / "driver_gimp3.py",
            {"down_url": closed_port_url(), **config},
            env={"PAINTBRIDGE_CONFIG_DIR": work.gimp.inside(config_dir)},
        )
    finally:
        work.remove()


@pytest.fixture(scope="module")
def gimp_run_and_log(live_server):
    for results, log in run_driver(live_server):
        assert results.get("finished"), f"the driver stopped early:\n{log}"
        yield results, log


@pytest.fixture(scope="module")
def gimp_run(gimp_run_and_log):
    return gimp_run_and_log[0]


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


def test_random_seeds_in_layer_names_can_be_typed_into_the_seed_field(gimp_run):
    """GIMP's Seed argument is a 32-bit int; the server's random seeds go to 2**32 - 1, so the
    plug-in picks them (each layer here had seed -1: half would be out of the field's range)."""
    seeds = [int(seed) for seed in re.findall(r"\(seed (\d+)\)", json.dumps(gimp_run))]
    assert len(seeds) >= 8, seeds
    assert max(seeds) <= 2**31 - 1, seeds


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


def test_a_fill_of_the_visible_image_goes_on_top(gimp_run):
    """Read from the visible image, the result already shows the layers above the active one:
    it goes above them all (under a 50% red layer, the red showed twice)."""
    entry = facts(gimp_run, "identity_fill_visible_under_translucent")
    assert entry["status"] == "success", entry["error"]
    assert entry["top_layer"].startswith("Paintbridge fill")
    assert entry["largest_change"] <= 2, entry  # test:identity: the image looks as before


def test_generate_on_a_photo_sized_image_says_to_set_a_size(gimp_run):
    entry = facts(gimp_run, "generate_on_a_photo_sized_image")
    assert entry["status"] == "execution-error" and entry["layers_added"] == 0
    assert "6000x4000" in entry["error"] and "set Width and Height" in entry["error"]


def test_img2img_with_a_selection_missing_the_layer_says_so(gimp_run):
    entry = facts(gimp_run, "img2img_selection_off_layer")
    assert entry["status"] == "execution-error" and entry["layers_added"] == 0
    assert "does not touch the active layer" in entry["error"]


def test_fill_selection_missing_the_layer_is_refused_even_with_whole_layer(gimp_run):
    entry = facts(gimp_run, "fill_selection_off_layer_whole_layer")
    assert entry["status"] == "execution-error" and entry["layers_added"] == 0, entry
    assert "does not touch the active layer" in entry["error"]


def test_img2img_of_a_layer_off_the_canvas_offers_no_source(gimp_run):
    entry = facts(gimp_run, "img2img_layer_off_canvas")
    assert entry["status"] == "execution-error"
    assert "lies outside the canvas" in entry["error"] and "source" not in entry["error"]


def test_a_fill_of_the_visible_image_in_a_locked_group_goes_on_top(gimp_run):
    entry = facts(gimp_run, "locked_group")["fill-visible"]
    assert entry["status"] == "success", entry["error"]
    assert entry["on_top"] == 1


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


# case -> the box its new layer must have (from the case's geometry in driver_gimp3.py), or
# None for Fill Selection, whose box is the context box around the selection
IDENTITY_CASES = {
    "identity_fill_rgb": None,
    "identity_img2img_rgb": [0, 0, 64, 64],
    "identity_fill_rgba": None,
    "identity_img2img_rgba": [0, 0, 128, 32],
    "identity_fill_gray_feathered": None,
    "identity_img2img_gray_selection": [0, 0, 64, 64],
    "identity_fill_offset_layer": None,
    "identity_img2img_offset_layer": [0, 40, 64, 64],
}


def decoded(entry, name) -> np.ndarray:
    return np.frombuffer(base64.b64decode(entry[name]), dtype=np.uint8)


def expected_alpha(case: str, entry) -> np.ndarray:
    """Fill Selection: the engine's blend mask of the selection (its edge ramp, see
    imageops.blend_mask). Image to Image: the source's alpha, times the selection if any."""
    width, height = entry["new_layer"]["box"][2:]
    mask = decoded(entry, "mask")
    if "_fill_" in case:
        image = Image.frombytes("L", (width, height), mask.tobytes())
        return np.asarray(imageops.blend_mask(image)).ravel()
    source = decoded(entry, "source_alpha").astype(np.int32)
    if not entry["selection"][0]:
        return source.astype(np.uint8)
    return ((source * mask + 127) // 255).astype(np.uint8)


@pytest.mark.parametrize("case", sorted(IDENTITY_CASES))
def test_identity_model_gives_back_the_layers_own_pixels(gimp_run, case):
    """test:identity returns its input: the new layer must hold the source layer's pixels in
    its box (colour wherever the source is opaque; alpha as expected_alpha says). Proves the
    pixel packing, the offsets and the gray conversion both ways."""
    entry = facts(gimp_run, case)
    assert entry["status"] == "success", entry["error"]
    assert entry["layers_added"] == 1
    box = entry["new_layer"]["box"]
    if IDENTITY_CASES[case] is None:
        non_empty, x1, y1, x2, y2 = entry["selection"]
        assert non_empty
        bounds = [x1, y1, x2 - x1, y2 - y1]
        assert box == list(expected_box(dict(entry, selection_bounds=bounds)))
    else:
        assert box == IDENTITY_CASES[case]
    assert box[2] * box[3] == 64 * 64  # the sizes test:identity gives back unscaled
    assert entry["colour_checked"] >= 0.7 * box[2] * box[3]  # opaque source pixels
    assert entry["colour_diff"] == 0, entry["colour_mismatches"]
    got, want = decoded(entry, "result_alpha"), expected_alpha(case, entry)
    wrong = np.flatnonzero(got != want)
    assert wrong.size == 0, [(i % box[2], i // box[2], want[i], got[i]) for i in wrong[:8]]


def test_identity_round_trips_cover_partial_alpha_and_gray(gimp_run):
    for case in ("identity_fill_gray_feathered", "identity_img2img_rgba"):
        alpha = expected_alpha(case, facts(gimp_run, case))
        assert np.count_nonzero((alpha > 0) & (alpha < 255)) > 50, case
    assert facts(gimp_run, "identity_fill_gray_feathered")["gray_layer"]
    assert facts(gimp_run, "identity_img2img_gray_selection")["gray_layer"]


@pytest.fixture(scope="module")
def gimp_fault_run(tmp_path_factory):
    gimp, why = find_gimp3()
    require_host(gimp is not None, why)
    server = start_server(tmp_path_factory.mktemp("killed-server"))
    work = Workspace(gimp)
    killer_facts: dict = {}
    killer = threading.Thread(
        target=kill_when_job_runs, args=(server, "test:identity", 1.0, killer_facts)
    )
    try:
        work.install_bundle()
        killer.start()
        config = {
            "only": ["server_killed_mid_job"],
            "fault_url": server.url,
            "fault_token": server.token,
        }
        results, log = work.run_batch(HERE / "driver_gimp3.py", config)
        killer.join(timeout=30)
        assert results.get("finished"), f"the driver stopped early:\n{log}"
        yield results["server_killed_mid_job"], killer_facts
    finally:
        stop_server(server)
        work.remove()


def test_server_killed_mid_job_is_a_clean_error_and_leaves_the_image(gimp_fault_run):
    """A 150-step test:identity job (7.5 s of steps) inside Fill Selection; the server is
    SIGKILLed 1 s into it. GIMP gets an error for its message area, and no layer."""
    entry, killer = gimp_fault_run
    assert "error" not in killer, killer["error"]
    assert entry["ok"], entry.get("error")
    # the plug-in gave up at its next poll, long before the job could have ended
    assert 0 < entry["ended_at"] - killer["killed_at"] < 3.0
    assert entry["status"] == "execution-error"
    assert entry["error"].startswith(
        "Paintbridge: The paintbridge server stopped before the job finished; no image was made."
    )
    assert "paintbridge serve" in entry["error"] and "Traceback" not in entry["error"]
    assert entry["layers_after"] == entry["layers_before"]
    assert entry["pixels_unchanged"] and not entry["dirty"]


@pytest.mark.parametrize("name", PROCEDURES)
def test_indexed_image_says_to_convert_it_before_any_job(gimp_run, name):
    """Every command takes any image type; on an indexed one it says to convert it, before
    it contacts the server (which is down here: no "Could not reach")."""
    entry = facts(gimp_run, "indexed_image")[name]
    assert entry["indexed"] and entry["image_types"] == "*"
    assert entry["status"] == "execution-error"
    assert "indexed" in entry["error"] and "Image > Mode > RGB" in entry["error"]
    assert entry["layers_after"] == entry["layers_before"] and not entry["dirty"]


@pytest.mark.parametrize("name", ["paintbridge-fill-selection", "paintbridge-generate"])
def test_a_locked_group_is_named_before_any_job(gimp_run, name):
    """The new layer would go into a group whose pixels are locked (the layer's own group, or
    one above it): a message naming it, before the job (the server is down here), nothing
    added and nothing on the undo stack."""
    entry = facts(gimp_run, "locked_group")[name]
    assert entry["status"] == "execution-error"
    assert f'layer group "{entry["locked"]}", whose pixels are locked' in entry["error"]
    assert "Could not reach" not in entry["error"]
    assert entry["added_anywhere"] == 0 and not entry["dirty"]


LOOKS = {
    # case -> the new layer's opacity and mode
    "fill_40_percent": (40.0, "normal"),
    "img2img_multiply": (70.0, "multiply"),
    "img2img_overlay_spaces": (100.0, "overlay"),
    "fill_visible_40_percent": (100.0, "normal"),  # from what the image shows
}


@pytest.mark.parametrize("case", sorted(LOOKS))
def test_new_layer_takes_the_source_layers_look(gimp_run, case):
    """From the active layer, the new layer has its opacity, mode, blend and composite space
    and composite mode, so (test:identity) it shows as the source layer shows: the image with
    the new layer alone visible equals it with the source layer alone visible. From the
    visible image: Normal 100%."""
    entry = facts(gimp_run, "look_from_layer")[case]
    assert entry["status"] == "success", entry["error"]
    opacity, mode = LOOKS[case]
    new_look = entry["new_look"]
    assert (new_look["opacity"], new_look["mode"]) == (pytest.approx(opacity, abs=0.01), mode)
    if "visible" in case:
        return
    assert new_look == dict(entry["source_look"], opacity=pytest.approx(opacity, abs=0.01))
    assert entry["compared"] >= 30 * 30  # the opaque part of a fill (inside its edge ramp)
    assert entry["max_difference"] <= 1, entry


def test_overlay_case_sets_spaces_that_are_not_the_default(gimp_run):
    entry = facts(gimp_run, "look_from_layer")["img2img_overlay_spaces"]
    assert entry["source_look"]["blend_space"] == "rgb-perceptual"
    assert entry["source_look"]["composite_space"] == "rgb-linear"
    assert entry["source_look"]["composite_mode"] == "clip-to-backdrop"


def test_a_clipping_composite_mode_is_not_taken_by_the_new_layer(gimp_run):
    """Clip to layer / Intersection on the source: outside the selection the image is as it
    was (the new layer's transparent surroundings erased everything below)."""
    cases = {k: v for k, v in facts(gimp_run, "clipping_composite").items() if k != "ok"}
    assert len(cases) == 4, cases
    for name, entry in cases.items():
        assert entry["status"] == "success", (name, entry["error"])
        assert entry["new_look"]["composite_mode"] == "auto", (name, entry["new_look"])
        assert entry["outside_changed"] == 0, (name, entry["outside_changed"])


def test_img2img_reads_the_layer_through_its_mask(gimp_run):
    """A layer mask hides x < 16 and ramps over x 16..47: Image to Image (test:identity)
    gives a layer whose alpha is the mask, which shows as the masked layer did."""
    entry = facts(gimp_run, "layer_mask")["applied"]
    assert entry["status"] == "success", entry["error"]
    assert entry["alpha_rows_alike"]
    columns = entry["alpha_by_column"]
    assert columns[:16] == [0] * 16 and columns[48:] == [255] * 16
    assert all(abs(a - (x - 16) * 8) <= 1 for x, a in enumerate(columns) if 16 <= x < 48)
    # the hidden (x <= 16: alpha 0) and shown (x >= 48) parts look as before; not the ramp,
    # which the model saw over gray
    assert entry["compared"] == 33 * 64 and entry["max_difference"] <= 1, entry


def test_a_disabled_layer_mask_hides_nothing(gimp_run):
    entry = facts(gimp_run, "layer_mask")["disabled"]
    assert entry["status"] == "success", entry["error"]
    assert entry["alpha_by_column"] == [255] * 64 and entry["alpha_rows_alike"]


@pytest.fixture(scope="module")
def gimp_during_run(live_server):
    """The cases where the user changes the image while the job runs, in their own GIMP run:
    without add_layers' write-before-insert order, GIMP kills the driver in the last one."""
    only = [
        "image_closed_during_job",
        "layer_deleted_during_job",
        "group_locked_during_job",
        "canvas_cropped_during_job",
        "cancelled_during_job",
    ]
    yield from run_driver(live_server, only=only)


def during(gimp_during_run, name):
    results, log = gimp_during_run
    assert name in results, f"the driver stopped before {name}:\n{log}"
    entry = facts(results, name)
    assert entry["acted"]
    return entry


def test_image_closed_during_the_job_points_to_the_history(gimp_during_run):
    entry = during(gimp_during_run, "image_closed_during_job")
    assert entry["paintbridge_error"], entry  # a message in GIMP, not a traceback
    assert "closed while the job ran" in entry["error"]
    assert re.search(r"`paintbridge history export [0-9a-f-]{8,} --out DIR`", entry["error"])


def test_layer_deleted_during_the_job_puts_the_result_at_the_top(gimp_during_run):
    entry = during(gimp_during_run, "layer_deleted_during_job")
    assert "error" not in entry, entry
    # without asking GIMP about the deleted layer ("GIMP-Error: Calling error for procedure
    # 'gimp-image-get-item-position': Item 'paint' (3) cannot be used...")
    assert "Calling error" not in gimp_during_run[1], gimp_during_run[1]
    assert [n["position"] for n in entry["new"]] == [0] and entry["new_filled"] == [True]
    assert entry["top"] == [entry["new"][0]["name"], "background"]


def test_group_locked_during_the_job_still_gets_a_filled_layer(gimp_during_run):
    entry = during(gimp_during_run, "group_locked_during_job")
    assert "error" not in entry, entry
    assert entry["new_parents"] == ["inner"] and entry["new_locked_parent"] == [True]
    assert entry["new_filled"] == [True]


def test_canvas_cropped_during_the_job_places_the_result_and_says_so(gimp_during_run):
    """The user crops 64x64 to 40x40 at the first step: the result still lands where the job's
    area was (nothing lost), and GIMP's message area says the canvas changed and where."""
    entry = during(gimp_during_run, "canvas_cropped_during_job")
    assert "error" not in entry, entry
    assert entry["canvas"] == [40, 40]
    box = context_box(Box(8, 8, 48, 48), Box(0, 0, 64, 64))
    assert [n["box"] for n in entry["new"]] == [list(box)] and entry["new_filled"] == [True]
    assert entry["notices"] == [
        "The canvas changed size while the job ran (64x64, now 40x40): the result was placed "
        f"where the job's area was then (x {box.x}, y {box.y}, {box.width}x{box.height}); "
        "move it if the image moved."
    ]
    assert "The canvas changed size while the job ran" in gimp_during_run[1]  # GIMP showed it


def test_cancel_during_the_job_leaves_the_image_and_has_the_server_stop(
    gimp_during_run, live_server
):
    """Cancel in the progress window at the first step: Cancelled (the plug-in ends quietly),
    no layer, no pixel changed, and the cancel reached the server before the plug-in went on."""
    entry = during(gimp_during_run, "cancelled_during_job")
    assert entry["error_type"] == "Cancelled", entry
    assert entry["texts"][0].startswith("Sending"), entry["texts"]
    assert entry["layers_after"] == entry["layers_before"] and entry["pixels_unchanged"]
    assert not entry["dirty"]
    client = Client(live_server.url, live_server.token)
    status = client.status(entry["job_id"], image_format="none")
    assert status["state"] == "cancelled", status  # stopped long before its 150 steps


def test_the_cases_where_the_canvas_kept_its_size_say_nothing(gimp_during_run):
    for name in ("layer_deleted_during_job", "group_locked_during_job"):
        assert during(gimp_during_run, name)["notices"] == [], name


def test_several_layers_selected_fill_says_which_layer_it_used(gimp_run_and_log):
    """GIMP 3 passes every selected layer: Fill Selection works on the first ("paint", below
    "top") and says so in the message area; Generate, which reads no layer, says nothing."""
    results, log = gimp_run_and_log
    entry = facts(results, "several_layers_selected")
    fill = entry["paintbridge-fill-selection"]
    assert fill["status"] == "success", fill["error"]
    assert [n["position"] for n in fill["new"]] == [fill["paint_position"] - 1]
    assert entry["paintbridge-generate"]["status"] == "success"
    assert log.count('2 layers are selected: using "paint", the first.') == 1, log


def test_a_fill_of_a_pass_through_group_is_a_normal_layer(gimp_run_and_log):
    """A group's own mode (pass through) is not one a layer can have: the new layer is Normal,
    with the group's opacity, and GIMP is not asked for the impossible (it printed a CRITICAL)."""
    facts_by_case, log = gimp_run_and_log
    entry = facts(facts_by_case, "look_from_layer")["fill_group_pass_through"]
    assert entry["status"] == "success", entry["error"]
    assert entry["group_mode"] == "pass-through"
    new_look = entry["new_look"]
    assert (new_look["mode"], new_look["opacity"]) == ("normal", pytest.approx(60.0, abs=0.01))
    assert "gimp_layer_set_mode: assertion" not in log, log
