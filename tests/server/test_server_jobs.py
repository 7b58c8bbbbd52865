"""End to end: a real `paintbridge serve` subprocess with the tiny test models, driven by
hostkit's Client exactly as the plug-ins drive it."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file
from server_support import ServerProcess, assert_no_server_bugs, wait_for

from paintbridge import pngmeta
from paintbridge.engine.testmodel import ensure_test_model
from paintbridge.history import History
from paintbridge.hostkit import client as hk
from paintbridge.hostkit.pixels import image_payload, mask_payload, payload_to_rgba

pytestmark = pytest.mark.slow

LONG = {"steps": 150, "count": 8}  # minutes of work: only ever cancelled


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("server")
    models = root / "models"
    broken = models / "broken"  # readable files that do not hold a UNet: fails when loaded
    shutil.copytree(ensure_test_model("test:tiny"), broken)
    for weights in (broken / "unet").glob("*.safetensors"):
        save_file({"not.a.unet": np.zeros(1, np.float32)}, weights)
    cut = models / "cut-off"  # a download cut short: refused at submit, from the header
    shutil.copytree(ensure_test_model("test:tiny"), cut)
    for weights in (cut / "unet").glob("*.safetensors"):
        weights.write_bytes(weights.read_bytes()[:1000])
    process = ServerProcess(root, "--models-dir", str(models)).wait_ready()
    yield process
    process.stop()
    assert_no_server_bugs(process)


def txt2img(**fields: object) -> dict[str, object]:
    return {
        "task": "txt2img",
        "model": "test:tiny",
        "prompt": "a red door",
        "width": 64,
        "height": 64,
        "steps": 2,
        **fields,
    }


def rgba_image(width: int, height: int) -> bytes:
    """A gradient with a varying alpha, so alpha handling is visible."""
    return bytes(
        value
        for y in range(height)
        for x in range(width)
        for value in (x * 4 % 256, y * 4 % 256, 128, 255 if x < width // 2 else 200)
    )


def test_txt2img_returns_the_size_and_seed_asked(server: ServerProcess) -> None:
    client = server.client()
    results = client.run(txt2img(width=64, height=48, seed=1234, count=2), poll_interval=0.05)
    assert [(r.width, r.height) for r in results] == [(64, 48), (64, 48)]
    assert [r.seed for r in results] == [1234, 1235]
    assert all(len(r.rgba) == 64 * 48 * 4 for r in results)


def test_random_seed_is_returned_and_reproduces(server: ServerProcess) -> None:
    client = server.client()
    first = client.run(txt2img(), poll_interval=0.05)[0]
    assert isinstance(first.seed, int)
    again = client.run(txt2img(seed=first.seed), poll_interval=0.05)[0]
    assert again.rgba == first.rgba


def test_img2img_keeps_size_and_alpha(server: ServerProcess) -> None:
    rgba = rgba_image(48, 40)
    job = {"task": "img2img", "prompt": "x", "steps": 4, "strength": 0.5, "seed": 5}
    job["image"] = image_payload(rgba, 48, 40, "png")
    job.update(width=48, height=None)  # the image's own size is accepted
    (result,) = server.client().run(job, poll_interval=0.05)
    assert (result.width, result.height, result.seed) == (48, 40, 5)
    assert result.rgba[3::4] == rgba[3::4]  # the submitted alpha, unchanged


def test_inpaint_alpha_is_zero_outside_the_mask(server: ServerProcess) -> None:
    width, height = 40, 32
    mask = bytes(
        255 if 8 <= x < 24 and 8 <= y < 20 else 0 for y in range(height) for x in range(width)
    )
    job = {"task": "inpaint", "prompt": "x", "steps": 4, "seed": 9, "model": "test:tiny-inpaint"}
    job["image"] = image_payload(rgba_image(width, height), width, height)
    job["mask"] = mask_payload(mask, width, height)
    (result,) = server.client().run(job, poll_interval=0.05)
    assert (result.width, result.height) == (width, height)
    alpha = result.rgba[3::4]
    assert all(a == 0 for a, m in zip(alpha, mask, strict=True) if m == 0)
    assert all(a > 0 for a, m in zip(alpha, mask, strict=True) if m == 255)  # maybe feathered


def test_results_as_png_are_the_history_files(server: ServerProcess) -> None:
    client = server.client()
    job_id = client.submit(txt2img(seed=77))
    client.wait(job_id, poll_interval=0.05)
    answer = client.status(job_id, image_format="png")
    assert answer["state"] == "done" and answer["position"] is None
    (item,) = answer["results"]
    assert item["image"]["format"] == "png" and item["seed"] == 77
    width, height, _ = payload_to_rgba(item["image"])
    assert (width, height) == (64, 64)
    entry = History(server.history_dir).find(job_id)
    path = server.history_dir / entry.files[0]
    assert pngmeta.read_parameters(path)["seed"] == 77
    assert answer["parameters"]["prompt"] == "a red door"


def test_results_come_alone_as_bare_rgba8_or_the_history_png(server: ServerProcess) -> None:
    client = server.client()
    job_id = client.submit(txt2img(seed=78, count=2))
    client.wait(job_id, poll_interval=0.05)
    answer = client.status(job_id, image_format="none")
    assert [item["image"] for item in answer["results"]] == [None, None]
    inline = [payload_to_rgba(item["image"]) for item in client.status(job_id)["results"]]
    for index in (0, 1):
        bare = client.result(job_id, index)
        assert (bare.width, bare.height, bare.seed) == (64, 64, 78 + index)
        assert bare.rgba == inline[index][2]
        request = urllib.request.Request(
            f"{server.url}/v1/jobs/{job_id}/results/{index}?format=png",
            headers={"Authorization": f"Bearer {server.token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.headers["Content-Type"] == "image/png"
            png = response.read()
        entry = History(server.history_dir).find(job_id)
        assert png == (server.history_dir / entry.files[index]).read_bytes()
    with pytest.raises(hk.RequestRejected, match="has 2 result") as info:
        client.result(job_id, 2)
    assert info.value.status == 404


def test_a_job_not_done_has_no_results_to_fetch(server: ServerProcess) -> None:
    client = server.client()
    job_id = client.submit(txt2img(**LONG))
    try:
        with pytest.raises(hk.RequestRejected, match="only a done job has results"):
            client.result(job_id, 0)
    finally:
        client.cancel(job_id)
        with pytest.raises(hk.Cancelled):
            client.wait(job_id, poll_interval=0.05)


def test_a_status_request_may_wait_for_the_next_change(server: ServerProcess) -> None:
    client = server.client()
    job_id = client.submit(txt2img(**LONG))
    try:
        wait_for(lambda: client.status(job_id, "none")["progress"]["step"] >= 1)
        before = client.status(job_id, "none")["progress"]["step"]
        started = time.monotonic()
        after = client.status(job_id, "none", wait=5)["progress"]["step"]
        assert after > before and time.monotonic() - started < 4  # at the next step, not 5 s
    finally:
        client.cancel(job_id)
    started = time.monotonic()
    assert client.status(job_id, "none", wait=5)["state"] == "cancelled"  # soon after
    assert time.monotonic() - started < 4
    started = time.monotonic()
    client.status(job_id, "none", wait=5)  # finished: at once
    assert time.monotonic() - started < 1


def test_progress_increases_then_cancel_stops_a_running_job(server: ServerProcess) -> None:
    client = server.client()
    job_id = client.submit(txt2img(**LONG))
    seen: list[int] = []

    def two_steps_seen() -> bool:
        status = client.poll(job_id)
        if status.state == "running" and status.step:
            seen.append(status.step)
        return len(set(seen)) >= 2

    wait_for(two_steps_seen, timeout=120)
    assert seen == sorted(seen) and seen[-1] > seen[0]
    assert client.poll(job_id).steps == 150 * 8
    assert client.cancel(job_id)["id"] == job_id
    status = wait_for(lambda: (s := client.poll(job_id)).finished and s, timeout=60)
    assert status.state == "cancelled" and status.results is None
    assert status.step < 150 * 8
    with pytest.raises(hk.Cancelled):
        status.raise_for_state()
    assert job_id not in {e.job for e in History(server.history_dir).entries()}


def test_cancel_a_queued_job_at_once(server: ServerProcess) -> None:
    client = server.client()
    blocker = client.submit(txt2img(**LONG))
    queued = client.submit(txt2img())
    try:
        status = client.poll(queued)
        assert status.state == "queued" and status.position == 1
        assert client.cancel(queued)["state"] == "cancelled"
        assert client.poll(queued).state == "cancelled"
        assert client.poll(queued).position is None
    finally:
        client.cancel(blocker)
    wait_for(lambda: client.poll(blocker).finished, timeout=60)


def test_a_broken_model_fails_its_job_and_the_next_job_succeeds(server: ServerProcess) -> None:
    client = server.client()
    names = {model["name"] for model in client.models()["models"]}
    assert {"broken", "test:tiny", "sd15"} <= names
    bad = client.submit(txt2img(model="broken"))
    good = client.submit(txt2img(seed=3))
    with pytest.raises(hk.JobFailed) as failed:
        client.wait(bad, poll_interval=0.05)
    # diffusers leaves the weights its file lacks empty ("meta"); that failed mid-job saying
    # "Cannot copy out of meta tensor", naming neither the model nor what to do
    assert failed.value.code == "model_not_found", failed.value.message
    assert "'broken'" in failed.value.message and "unet weights lack" in failed.value.message
    assert [r.seed for r in client.wait(good, poll_interval=0.05)] == [3]
    assert client.health()["model"] == "test:tiny"


def test_a_cut_off_model_is_refused_at_submit(server: ServerProcess) -> None:
    with pytest.raises(hk.RequestRejected) as refused:
        server.client().submit(txt2img(model="cut-off"))
    assert refused.value.status == 404 and refused.value.code == "model_not_found"
    assert "a file cannot be read" in refused.value.message


def test_a_client_that_disappears_still_gets_its_result_in_history(
    server: ServerProcess,
) -> None:
    body = json.dumps(txt2img(seed=4242, prompt="left behind")).encode()
    request = urllib.request.Request(
        server.url + "/v1/jobs",
        data=body,
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # submit, never poll
        job_id = json.load(answer)["id"]
    history = History(server.history_dir)
    entry = wait_for(lambda: next((e for e in history.entries() if e.job == job_id), None))
    assert entry.prompt == "left behind" and entry.seeds == (4242,)
    path = server.history_dir / entry.files[0]
    with Image.open(path) as image:
        assert image.size == (64, 64)
    assert pngmeta.read_parameters(path)["seed"] == 4242


def test_a_burst_from_many_threads_completes_in_fifo_order(server: ServerProcess) -> None:
    client = server.client()
    blocker = client.submit(txt2img(**LONG))  # holds the worker while the burst arrives
    wait_for(lambda: client.poll(blocker).state == "running")
    accepted: list[tuple[int, str, int, int]] = []  # (position, id, seed, width)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def submit_some(thread: int) -> None:
        own = server.client()
        try:
            for i in range(3):
                seed, width = 1000 + thread * 10 + i, 32 + 8 * ((thread + i) % 3)
                answer = own.request("POST", "/v1/jobs", txt2img(seed=seed, width=width))
                with lock:
                    accepted.append((answer["position"], answer["id"], seed, width))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=submit_some, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    client.cancel(blocker)
    accepted.sort()
    assert [position for position, *_ in accepted] == list(range(1, 13))  # no two alike
    for _, job_id, seed, width in accepted:
        (result,) = client.wait(job_id, poll_interval=0.05, timeout=120)
        assert (result.seed, result.width, result.height) == (seed, width, 64)
    order = [e.job for e in History(server.history_dir).entries()]
    done = [job_id for _, job_id, *_ in accepted]
    assert [job for job in order if job in done] == done


def test_a_task_the_model_cannot_do_is_400_and_the_loaded_model_stays(
    server: ServerProcess,
) -> None:
    """The tasks of a model are known at submit (/v1/models lists them): a txt2img with an
    inpainting model must not be queued, and so must not replace the loaded model."""
    client = server.client()
    client.wait(client.submit(txt2img()), poll_interval=0.05)
    assert client.health()["model"] == "test:tiny"
    listed = {m["name"]: m["tasks"] for m in client.models()["models"]}
    assert listed["test:tiny-inpaint"] == ["inpaint"]
    with pytest.raises(hk.RequestRejected) as rejected:
        client.submit(txt2img(model="test:tiny-inpaint"))
    assert rejected.value.status == 400 and rejected.value.code == "invalid_request"
    assert "can only inpaint, got task 'txt2img'" in rejected.value.message
    health = client.health()
    assert health["model"] == "test:tiny" and health["queue"]["length"] == 0


def test_health_and_models(server: ServerProcess) -> None:
    health = server.client().health()
    assert health["version"] and health["device"] == "cpu" and health["dtype"]
    assert health["queue"]["max"] == 16 and health["queue"]["length"] >= 0
    models = server.client().models()
    assert models["default"] == "test:tiny"
    tiny = next(m for m in models["models"] if m["name"] == "test:tiny")
    assert tiny["kind"] == "test" and tiny["native"] == 64 and "txt2img" in tiny["tasks"]


def test_history_cli_lists_and_exports_server_results(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from paintbridge.cli import main

    client = server.client()
    job_id = client.submit(txt2img(prompt="for the cli", count=2, seed=8))
    client.wait(job_id, poll_interval=0.05)
    assert main(["history", "--history-dir", str(server.history_dir), "--limit", "50"]) == 0
    listed = capsys.readouterr().out
    assert job_id in listed and "for the cli" in listed
    out = tmp_path / "export"
    assert (
        main(
            [
                "history",
                "export",
                job_id[:8],
                "--out",
                str(out),
                "--history-dir",
                str(server.history_dir),
            ]
        )
        == 0
    )
    assert len(list(out.glob(f"*-{job_id}-*.png"))) == 2
