"""The GIMP 2.10 plug-in, run against a STAND-IN `gimpfu` (gimpfu_standin/: GIMP 2.10 with
Python cannot run on these machines) and a real paintbridge server, from the built bundle.

driver_gimp2.py runs the cases in a subprocess: under this Python 3 always, and under a real
Python 2.7 when one is installed (GIMP 2.10's Python), so the bundle is imported and run the
way GIMP 2.10 would. vermin checks the bundle parses on Python 2.7.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from tests.hosts.conftest import require_host, start_server, stop_server
from tests.hosts.gimp.gimphost import kill_when_job_runs

from paintbridge import bundles
from paintbridge.hostkit.geometry import Box, context_box

HERE = Path(__file__).resolve().parent
FILL = "python-fu-paintbridge-fill-selection"
IMG2IMG = "python-fu-paintbridge-img2img"
GENERATE = "python-fu-paintbridge-generate"
GENERATE_IMAGE = "python-fu-paintbridge-generate-image"

pytestmark = [
    pytest.mark.slow,
]


def python27() -> str | None:
    """A Python 2.7 interpreter, if this machine has one ($PAINTBRIDGE_PYTHON27, PATH, pyenv)."""
    candidates = [os.environ.get("PAINTBRIDGE_PYTHON27", ""), shutil.which("python2.7") or ""]
    candidates += sorted(glob.glob(str(Path.home() / ".pyenv/versions/2.7*/bin/python2.7")))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            check = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[0])"],
                                   capture_output=True, text=True, check=False)  # fmt: skip
            if check.stdout.strip() == "2":
                return candidate
    return None


PYTHONS = {"python3": sys.executable, "python2.7": python27()}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return bundles.build_gimp2(tmp_path_factory.mktemp("gimp2-bundle"))


def run_driver(python: str, bundle: Path, work: Path, **config) -> dict:
    """Runs driver_gimp2.py under `python` with CONFIG plus `config`; the facts it wrote."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        down_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = {
        "result": str(work / "result.json"),
        "bundle": str(bundle),
        "standin": str(HERE / "gimpfu_standin"),
        "down_url": down_url,
        **config,
    }
    (work / "config.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    done = subprocess.run(
        [python, str(HERE / "driver_gimp2.py"), str(work / "config.json")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    result = work / "result.json"
    assert result.is_file(), f"driver wrote nothing (exit {done.returncode}):\n{done.stderr}"
    facts = json.loads(result.read_text())
    assert facts.get("finished"), f"driver stopped early:\n{done.stderr}"
    return facts


@pytest.fixture(scope="module", params=sorted(PYTHONS))
def gimp2_run(request, bundle, live_server, tmp_path_factory):
    python = PYTHONS[request.param]
    if python is None:
        pytest.skip("no Python 2.7 on this machine (set PAINTBRIDGE_PYTHON27); ran on Python 3")
    work = tmp_path_factory.mktemp("gimp2-" + request.param)
    return run_driver(python, bundle, work, url=live_server.url, token=live_server.token)


def entry(run, name):
    facts = run[name]
    assert facts["ok"], facts.get("error")
    return facts


def test_bundle_parses_on_python_27(bundle):
    vermin = Path(sys.executable).parent / "vermin"
    files = [str(p) for p in bundle.rglob("*.py")]
    assert any(f.endswith("paintbridge_gimp2.py") for f in files)
    done = subprocess.run(
        [str(vermin), "-q", "--no-tips", "--violations", "-t=2.7-", *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


LONG_UTF8_PROMPT = r"""
import sys
sys.path.insert(0, sys.argv[1])
import paintbridge_gimpflow as flow
settings = flow.DEFAULTS._replace(prompt="xxxxx" + "caf\xc3\xa9 " * 20)  # Python-Fu's bytes
name = flow.layer_name("fill", settings, 7)
assert name.decode("utf-8").endswith(u"caf\xe9... (seed 7)"), repr(name)
print("ok")
"""


def test_a_long_utf8_prompt_makes_a_valid_layer_name_on_python_27(bundle, tmp_path):
    """Python-Fu passes text as UTF-8 bytes: cutting the prompt at 39 bytes split a character,
    and GIMP refuses a layer name that is not UTF-8 (after the job had run)."""
    python = PYTHONS["python2.7"]
    require_host(python is not None, "no Python 2.7 (GIMP 2.10's) on this machine")
    script = tmp_path / "name.py"
    script.write_text(LONG_UTF8_PROMPT)
    done = subprocess.run([python, str(script), str(bundle)], capture_output=True, text=True)
    assert done.returncode == 0 and "ok" in done.stdout, done.stdout + done.stderr


def test_gimp2_bundle_layout(bundle):
    names = sorted(p.name for p in bundle.iterdir())
    assert names == ["hostkit", "paintbridge_gimp2.py", "paintbridge_gimpflow.py"]
    assert os.access(bundle / "paintbridge_gimp2.py", os.X_OK)


def test_registered_under_filters_paintbridge(gimp2_run):
    registered = entry(gimp2_run, "registered")["procedures"]
    assert sorted(registered) == sorted([FILL, IMG2IMG, GENERATE, GENERATE_IMAGE])
    for name in (FILL, IMG2IMG, GENERATE):
        assert registered[name]["menu"] == "<Image>/Filters/Paintbridge"
        assert registered[name]["params"][:3] == ["image", "drawable", "prompt"]
    assert registered[GENERATE_IMAGE]["menu"] == "<Image>/File/Create/Paintbridge"
    labels = {registered[n]["label"].replace("_", "") for n in (FILL, IMG2IMG, GENERATE)}
    assert labels == {"Fill Selection...", "Image to Image...", "Generate..."}
    assert "strength" in registered[IMG2IMG]["params"]


@pytest.mark.parametrize("case", ["fill_rectangle", "fill_ellipse_corner_gray_offset"])
def test_fill_selection(gimp2_run, case):
    facts = entry(gimp2_run, case)
    assert facts["messages"] == []
    assert facts["layers_after"] == facts["layers_before"] + 1
    [new] = facts["new"]
    assert new["position"] == facts["active_position_before"]  # right above the active layer
    canvas = Box(0, 0, *facts["canvas"])
    limit = canvas.intersect(Box(*facts["layer_box"]))
    selection = Box(*facts["selection_bounds"]).intersect(limit)
    assert Box(*new["box"]) == context_box(selection, limit)
    counts = facts["compare"]
    assert counts["outside"] > 0 and counts["outside_changed"] == 0
    assert counts["inside"] > 0 and counts["inside_changed"] >= 0.9 * counts["inside"]
    # one undo step: one group, and every change to the image inside it
    assert facts["undo_groups"] == 1 and facts["undo_depth_after"] == 0
    assert facts["mutations"] and all(depth == 1 for _what, _name, depth in facts["mutations"])


@pytest.mark.parametrize("case", ["fill_rectangle", "fill_ellipse_corner_gray_offset"])
def test_fill_selection_reads_only_the_selected_part_of_the_mask(gimp2_run, case):
    """The selection channel is read only over GIMP's own selection bounds (cut to the layer
    and canvas), not over the whole canvas."""
    facts = entry(gimp2_run, case)
    canvas = Box(0, 0, *facts["canvas"])
    limit = canvas.intersect(Box(*facts["layer_box"]))
    selected = Box(*facts["selection_bounds"]).intersect(limit)
    assert facts["selection_reads"] == [list(selected)]
    assert selected.area < canvas.area


def test_fill_selection_gray_image_gets_a_gray_layer(gimp2_run):
    facts = entry(gimp2_run, "fill_ellipse_corner_gray_offset")
    assert facts["new"][0]["bpp"] == 2


def test_fill_from_the_visible_image(gimp2_run):
    facts = entry(gimp2_run, "fill_visible")
    assert facts["messages"] == []
    assert facts["compare"]["outside_changed"] == 0
    assert len(facts["new"]) == 1


def test_fill_from_visible_layers_that_do_not_cover_the_canvas(gimp2_run):
    """GIMP 2.10 merges the visible layers into a layer over their own bounds: the crop around
    the selection reaches past it, and reads as transparent there."""
    facts = entry(gimp2_run, "fill_visible_layers_short_of_the_canvas")
    assert facts["messages"] == []
    [new] = facts["new"]
    assert not Box(24, 16, 30, 28).contains(Box(*new["box"]))  # the crop reaches past the merge
    assert facts["compare"]["outside_changed"] == 0
    assert facts["compare"]["inside_changed"] >= 0.9 * facts["compare"]["inside"]


def test_generate_with_a_layer_mask_active_adds_the_layer_above_its_layer(gimp2_run):
    facts = entry(gimp2_run, "generate_on_a_layer_mask")
    assert facts["messages"] == []
    [new] = facts["new"]
    assert new["position"] == facts["active_position_before"]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("fill_no_selection", "Nothing is selected"),
        ("fill_server_down", "Could not reach the paintbridge server"),
        ("fill_visible_nothing_visible", "Nothing is visible"),
        ("fill_on_a_layer_mask", "Select a layer first (not a channel or a layer mask)"),
        ("fill_result_of_another_size", "result for a "),
    ],
)
def test_errors_go_to_the_message_area_and_change_nothing(gimp2_run, case, message):
    facts = entry(gimp2_run, case)
    assert len(facts["messages"]) == 1 and message in facts["messages"][0]
    assert facts["new"] == [] and facts["mutations"] == [] and facts["undo_groups"] == 0


def test_a_layer_gimp_refuses_says_where_the_result_is_kept(gimp2_run):
    facts = entry(gimp2_run, "fill_layer_refused")
    assert facts["ok"], facts.get("error")
    [message] = facts["messages"]
    assert "could not use its result: Procedure 'gimp-image-insert-layer'" in message, message
    assert re.search(r"`paintbridge history export [0-9a-f-]{8,} --out DIR`", message), message


def test_fill_selection_regenerates_the_selection_at_full_strength(gimp2_run):
    facts = entry(gimp2_run, "fill_strength")
    assert facts["messages"] == [] and len(facts["new"]) == 1
    assert facts["strengths"] == [1.0]


def test_a_result_that_cannot_be_placed_says_where_it_is_kept(gimp2_run):
    [message] = entry(gimp2_run, "fill_result_of_another_size")["messages"]
    assert "so it cannot be placed" in message, message
    assert re.search(r"`paintbridge history export [0-9a-f-]{8,} --out DIR`", message), message


def test_img2img_with_a_selection(gimp2_run):
    facts = entry(gimp2_run, "img2img_selection")
    assert facts["messages"] == []
    assert [n["box"] for n in facts["new"]] == [facts["selection_bounds"]]
    assert facts["compare"]["outside_changed"] == 0
    assert facts["compare"]["inside_changed"] >= 0.9 * facts["compare"]["inside"]


def test_generate_layer_and_new_image(gimp2_run):
    facts = entry(gimp2_run, "generate")
    assert facts["messages"] == []
    assert [n["box"] for n in facts["new"]] == [[0, 0, 72, 48]]
    assert entry(gimp2_run, "generate_image")["displays"] == [[80, 48]]


@pytest.mark.parametrize("proc", [FILL, IMG2IMG, GENERATE])
def test_indexed_image_says_to_convert_it_before_any_job(gimp2_run, proc):
    """The menu entries take any image; on an indexed one each says to convert it, before it
    contacts the server (which is down here: no "Could not reach")."""
    facts = entry(gimp2_run, "indexed_image")
    assert facts["imagetypes"][proc] == "*"
    case = facts[proc]
    assert len(case["messages"]) == 1, case["messages"]
    assert "indexed" in case["messages"][0] and "Image > Mode > RGB" in case["messages"][0]
    assert case["new"] == [] and case["mutations"] == [] and case["undo_groups"] == 0


def test_locked_group_is_named_before_any_job(gimp2_run):
    facts = entry(gimp2_run, "locked_group")
    assert len(facts["messages"]) == 1, facts["messages"]
    assert '"locked outer"' in facts["messages"][0] and "locked" in facts["messages"][0]
    assert "Could not reach" not in facts["messages"][0]
    assert facts["new"] == [] and facts["mutations"] == [] and facts["undo_groups"] == 0


@pytest.mark.parametrize(
    ("case", "look"),
    [
        ("look_fill_from_layer", [40.0, 3]),  # 3: MULTIPLY_MODE
        ("look_img2img_from_layer", [55.0, 3]),
        # from what the image shows: Normal 100% (28: LAYER_MODE_NORMAL, not the legacy 0)
        ("look_fill_from_visible", [100.0, 28]),
        ("look_fill_from_pass_through", [70.0, 28]),  # a group's pass-through: Normal
    ],
)
def test_new_layer_takes_the_source_layers_opacity_and_mode(gimp2_run, case, look):
    facts = entry(gimp2_run, case)
    assert facts["messages"] == []
    assert facts["look"] == [look]


def test_img2img_reads_the_layer_through_its_mask(gimp2_run):
    facts = entry(gimp2_run, "img2img_layer_mask")
    assert facts["messages"] == []
    assert facts["applied"] == {
        "new_alpha_is_mask": True,
        "new_alpha_opaque": False,
        "colour_kept": True,
    }
    # a disabled mask hides nothing
    assert facts["disabled"]["new_alpha_opaque"] and facts["disabled"]["colour_kept"]


def test_image_closed_during_the_job_points_to_the_history(gimp2_run):
    facts = entry(gimp2_run, "image_closed_during_job")
    assert facts["acted"]
    assert len(facts["messages"]) == 1, facts["messages"]
    message = facts["messages"][0]
    assert "closed while the job ran" in message
    assert re.search(r"`paintbridge history export [0-9a-f-]{8,} --out DIR`", message), message
    assert facts["new"] == []


def test_layer_deleted_during_the_job_puts_the_result_at_the_top(gimp2_run):
    facts = entry(gimp2_run, "layer_deleted_during_job")
    assert facts["acted"] and facts["messages"] == []
    assert facts["layers"][1:] == ["background"]  # "paint" is gone
    assert [n["position"] for n in facts["new"]] == [0]
    assert facts["undo_depth_after"] == 0


def test_canvas_cropped_during_the_job_places_the_result_and_says_so(gimp2_run):
    """The canvas (stand-in: its size and the layers' offsets) changes at the first step: the
    result still lands where the job's area was, and the message area says so."""
    facts = entry(gimp2_run, "canvas_cropped_during_job")
    assert facts["acted"] and facts["canvas"] == [40, 40]
    box = context_box(Box(8, 8, 24, 24), Box(0, 0, 64, 64))
    assert [n["box"] for n in facts["new"]] == [list(box)]
    assert facts["messages"] == [
        "Paintbridge: The canvas changed size while the job ran (64x64, now 40x40): the result "
        f"was placed where the job's area was then (x {box.x}, y {box.y}, "
        f"{box.width}x{box.height}); move it if the image moved."
    ]


def test_server_killed_mid_job_is_a_message_and_changes_nothing(tmp_path, bundle):
    """A 150-step test:identity job (7.5 s of steps) in Fill Selection, on a private server
    SIGKILLed 1 s into its steps: one message in GIMP's message area, nothing in the image."""
    (tmp_path / "server").mkdir()
    server = start_server(tmp_path / "server")
    killer: dict = {}
    thread = threading.Thread(
        target=kill_when_job_runs, args=(server, "test:identity", 1.0, killer)
    )
    try:
        thread.start()
        facts = run_driver(
            sys.executable,
            bundle,
            tmp_path,
            url="",
            token="",
            only=["server_killed_mid_job"],
            fault_url=server.url,
            fault_token=server.token,
        )["server_killed_mid_job"]
        thread.join(timeout=30)
    finally:
        stop_server(server)
    assert "error" not in killer, killer["error"]
    assert facts["ok"], facts.get("error")
    steps = [text for text in facts["progress"] if text.startswith("Step ")]
    assert steps and steps[-1] != "Step 150 of 150", facts["progress"]  # it was mid-job
    assert 0 < facts["ended_at"] - killer["killed_at_wall"] < 3.0
    assert len(facts["messages"]) == 1, facts["messages"]
    assert facts["messages"][0].startswith(
        "Paintbridge: The paintbridge server stopped before the job finished; no image was made."
    )
    assert "paintbridge serve" in facts["messages"][0]
    assert facts["new"] == [] and facts["mutations"] == [] and facts["undo_groups"] == 0
    assert facts["compare"]["inside_changed"] == facts["compare"]["outside_changed"] == 0
