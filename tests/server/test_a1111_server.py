"""`paintbridge serve --a1111` end to end: a real server subprocess with the tiny test models,
sent requests shaped like those of public AUTOMATIC1111 clients (editor plug-ins, scripts):
all their usual fields, most of which paintbridge ignores."""

from __future__ import annotations

import base64
import io
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from server_support import TOKEN, ServerProcess, assert_no_server_bugs, wait_for

from paintbridge.history import History

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("a1111"), "--a1111").wait_ready()
    yield process
    process.stop()
    assert_no_server_bugs(process)


def basic(user: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


AUTH = basic("webui", TOKEN)


def call(
    server: ServerProcess,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 120,
) -> tuple[int, Any, Any]:
    """(status, parsed JSON, the answer's headers); `headers` None: Basic auth with the token."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    for name, value in (AUTH if headers is None else headers).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read()), answer.headers
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read()), error.headers


def png_b64(image: Image.Image, data_url: bool = False) -> str:
    out = io.BytesIO()
    image.save(out, format="PNG")
    text = base64.b64encode(out.getvalue()).decode()
    return f"data:image/png;base64,{text}" if data_url else text


def decode(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text)), formats=["PNG"])
    image.load()
    return image


def gradient(width: int, height: int) -> Image.Image:
    x = np.arange(width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.arange(height, dtype=np.uint8)[:, None].repeat(width, 1)
    return Image.fromarray(np.dstack([x * 3, y * 3, x ^ y]).astype(np.uint8), "RGB")


def txt2img_body(**fields: Any) -> dict[str, Any]:
    """The body an A1111 plug-in sends for txt2img (its usual fields, A1111's names)."""
    return {
        "prompt": "a lighthouse at dusk",
        "negative_prompt": "blurry",
        "styles": [],
        "seed": -1,
        "subseed": -1,
        "subseed_strength": 0,
        "seed_resize_from_h": -1,
        "seed_resize_from_w": -1,
        "sampler_name": "Euler a",
        "batch_size": 1,
        "n_iter": 1,
        "steps": 2,
        "cfg_scale": 7,
        "width": 64,
        "height": 64,
        "restore_faces": False,
        "tiling": False,
        "do_not_save_samples": True,
        "do_not_save_grid": True,
        "enable_hr": False,
        "override_settings": {},
        "override_settings_restore_afterwards": True,
        "send_images": True,
        "save_images": False,
        "alwayson_scripts": {},
        **fields,
    }


def img2img_body(image: Image.Image, mask: Image.Image | None = None, **fields: Any) -> dict:
    """The body an A1111 editor plug-in sends for img2img and inpainting."""
    body = txt2img_body(
        **{
            "init_images": [png_b64(image)],
            "denoising_strength": 0.75,
            "resize_mode": 0,
            "image_cfg_scale": 1.5,
            "include_init_images": False,
            "width": image.width,
            "height": image.height,
            **fields,
        }
    )
    if mask is not None:
        body.update(
            mask=png_b64(mask),
            mask_blur=0,
            inpainting_fill=1,
            inpaint_full_res=False,
            inpaint_full_res_padding=32,
            inpainting_mask_invert=0,
        )
        body.update(fields)
    return body


def generate(server: ServerProcess, route: str, body: dict[str, Any]) -> tuple[list, dict]:
    status, answer, _ = call(server, "POST", f"/sdapi/v1/{route}", body)
    assert status == 200, answer
    assert set(answer) == {"images", "parameters", "info"}
    assert isinstance(answer["info"], str)
    return [decode(image) for image in answer["images"]], json.loads(answer["info"])


# --- generation ---------------------------------------------------------------------------------


def test_txt2img_batches_seeds_and_history(server: ServerProcess) -> None:
    images, info = generate(server, "txt2img", txt2img_body(batch_size=2, n_iter=2))
    assert len(images) == 4 and all(image.size == (64, 64) for image in images)
    first = info["seed"]
    assert 0 <= first < 2**32
    assert info["all_seeds"] == [(first + i) % 2**32 for i in range(4)]
    expected = {"prompt": "a lighthouse at dusk", "negative_prompt": "blurry", "steps": 2,
                "cfg_scale": 7.0, "width": 64, "height": 64, "sampler_name": "Euler a"}  # fmt: skip
    assert {key: info[key] for key in expected} == expected
    assert {"restore_faces", "styles", "alwayson_scripts", "enable_hr"} <= set(info["ignored"])
    assert len(info["infotexts"]) == 4 and f"Seed: {first}" in info["infotexts"][0]
    # The same job is in the v1 history, one PNG per image.
    entry = History(server.history_dir).find(info["paintbridge_job"])
    assert list(entry.seeds) == info["all_seeds"] and len(entry.files) == 4
    assert entry.parameters["scheduler"] == "euler_a"


def test_a_seed_reproduces_the_image(server: ServerProcess) -> None:
    body = txt2img_body(sampler_name="DPM++ 2M", scheduler="Karras")
    (random_image,), info = generate(server, "txt2img", body)
    assert info["sampler_name"] == "DPM++ 2M Karras" and info["paintbridge_scheduler"] == (
        "dpm++_karras"
    )
    (again,), info_again = generate(server, "txt2img", {**body, "seed": info["seed"]})
    assert info_again["all_seeds"] == [info["seed"]]
    assert again.tobytes() == random_image.tobytes()


def test_an_unknown_sampler_uses_the_default_and_says_so(server: ServerProcess) -> None:
    (image,), info = generate(server, "txt2img", txt2img_body(sampler_name="Restart", seed=5))
    assert image.size == (64, 64) and info["all_seeds"] == [5]
    assert info["sampler_name"] == "Default" and "Restart" in " ".join(info["notes"])


def test_img2img_without_mask_takes_a_data_url(server: ServerProcess) -> None:
    body = img2img_body(gradient(64, 48), seed=11)
    body["init_images"] = [png_b64(gradient(64, 48), data_url=True)]
    (image,), info = generate(server, "img2img", body)
    assert image.size == (64, 48)
    assert info["denoising_strength"] == 0.75 and info["all_seeds"] == [11]
    assert info["ignored"] and "image_cfg_scale" in info["ignored"]


def test_img2img_resizes_to_width_and_height(server: ServerProcess) -> None:
    (image,), _ = generate(server, "img2img", img2img_body(gradient(64, 48), width=32, height=24))
    assert image.size == (32, 24)


def test_inpaint_whole_picture_keeps_what_is_outside_the_mask(server: ServerProcess) -> None:
    picture = gradient(64, 64)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 40, 40))
    (image,), info = generate(server, "img2img", img2img_body(picture, mask, seed=3))
    assert image.size == (64, 64)
    out, before = np.asarray(image.convert("RGB")), np.asarray(picture)
    outside = np.asarray(mask) == 0
    assert (out[outside] == before[outside]).all()
    assert (out[20:36, 20:36] != before[20:36, 20:36]).any()
    assert info["notes"] == []  # inpainting_fill 1 (original) is what paintbridge does


def test_inpaint_only_masked_pastes_the_crop_back(server: ServerProcess) -> None:
    picture = gradient(160, 128)
    # A1111's other mask form: transparent where kept (alpha is the mask), inverted.
    mask = Image.new("RGBA", (160, 128), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (100, 80, 120, 100))
    body = img2img_body(picture, mask, inpaint_full_res=True, inpaint_full_res_padding=8,
                        inpainting_mask_invert=1, inpainting_fill=0, seed=4)  # fmt: skip
    (image,), info = generate(server, "img2img", body)
    assert image.size == (160, 128)
    out, before = np.asarray(image.convert("RGB")), np.asarray(picture)
    assert (out[:, :90] == before[:, :90]).all() and (out[:70] == before[:70]).all()
    assert (out[100:120, 80:100] == before[100:120, 80:100]).all()  # outside the mask
    assert (out[80:100, 100:120] != before[80:100, 100:120]).any()
    assert any("inpainting_fill" in note for note in info["notes"])
    # history keeps the crop the engine repainted: a context box around the mask
    (name,) = History(server.history_dir).find(info["paintbridge_job"]).files
    with Image.open(server.history_dir / name) as layer:
        assert layer.size[0] < 160 and layer.size[1] < 128


def test_send_images_false_answers_no_images(server: ServerProcess) -> None:
    """A1111 makes the images (kept in the history here) but sends none back."""
    status, answer, _ = call(
        server, "POST", "/sdapi/v1/txt2img", txt2img_body(send_images=False, seed=9)
    )
    assert status == 200 and answer["images"] == []
    info = json.loads(answer["info"])
    assert info["all_seeds"] == [9] and "send_images" not in info["ignored"]
    assert History(server.history_dir).find(info["paintbridge_job"]).files


def test_an_empty_mask_is_img2img(server: ServerProcess) -> None:
    """Plug-ins send `"mask": ""` for no mask; A1111 decodes the mask only when it is truthy."""
    (image,), info = generate(server, "img2img", img2img_body(gradient(64, 48)) | {"mask": ""})
    assert image.size == (64, 48) and info["notes"] == []


def test_bad_input_is_a_4xx_error(server: ServerProcess) -> None:
    for body, words in [
        (img2img_body(gradient(8, 8)) | {"init_images": ["not base64!"]}, "init_images[0]"),
        (img2img_body(gradient(8, 8)) | {"init_images": []}, "init_images"),
        (txt2img_body(batch_size=3, n_iter=3), "batch_size"),
        (txt2img_body(batch_size=-2, n_iter=-4), "batch_size"),  # a product in range
        (txt2img_body(cfg_scale=99), "cfg_scale"),
        (txt2img_body(steps="many"), "steps"),
        # fields an answer sends back: refused before the job runs (a 500 after it, before)
        (txt2img_body(sampler_name="\ud800"), "lone surrogate"),
        (txt2img_body(override_settings={"sd_vae": "\udfff"}), "lone surrogate"),
        (txt2img_body(override_settings={"a": json.loads("[" * 300 + "]" * 300)}), "too deep"),
    ]:
        route = "img2img" if "init_images" in body else "txt2img"
        status, answer, _ = call(server, "POST", f"/sdapi/v1/{route}", body)
        assert status == 400, answer
        assert words in answer["error"]["message"], answer


IDENTITY = {"override_settings": {"sd_model_checkpoint": "test:identity"}}


def test_transparency_is_flattened_onto_white_and_answers_are_rgb(server: ServerProcess) -> None:
    """A1111 flattens every init image onto white (AI Render sends RGBA renders with a
    transparent background, stable-gimpfusion GIMP layers with alpha) and answers RGB PNGs."""
    render = Image.new("RGBA", (32, 32), (200, 30, 30, 0))  # transparent, its colour red
    render.paste((20, 20, 200, 255), (0, 0, 16, 32))  # an opaque blue left half
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (0, 0, 8, 8))
    for body in (img2img_body(render, **IDENTITY), img2img_body(render, mask, **IDENTITY)):
        (image,), _ = generate(server, "img2img", body)
        assert image.mode == "RGB"
        assert min(image.getpixel((24, 16))) >= 250, image.getpixel((24, 16))  # white
        blue = image.getpixel((8, 24))
        assert blue[2] > 150 > blue[0], blue
    (image,), _ = generate(server, "txt2img", txt2img_body())
    assert image.mode == "RGB"


def test_a_strength_too_low_for_one_step_is_raised(server: ServerProcess) -> None:
    """A1111 always runs at least one step: 0 and 0.05 at 10 steps were a 400. Without `steps`
    the engine raises the default steps instead (0.02 runs 1 of 50; raising the strength to
    1/25 there made a 1-step model's 0.75 a 1.0, which ignores the picture): only a strength
    too low even for the most steps (150) is raised."""
    for strength, steps, used in [(0.0, 10, 0.1), (0.05, 10, 0.1), (0.0, None, 1 / 150)]:
        body = img2img_body(gradient(32, 32), denoising_strength=strength, steps=steps, seed=2)
        (image,), info = generate(server, "img2img", body)
        assert image.size == (32, 32)
        assert info["denoising_strength"] == pytest.approx(used, rel=1e-9), info
        assert any(f"denoising_strength {strength:g}" in note for note in info["notes"]), info
    for strength in (0.75, 0.02):
        body = img2img_body(gradient(32, 32), denoising_strength=strength, steps=None, seed=2)
        (_,), info = generate(server, "img2img", body)
        assert info["denoising_strength"] == strength and info["notes"] == [], info


def test_inpaint_answers_carry_parameters_and_the_whole_size(server: ServerProcess) -> None:
    """Auto-Photoshop reads the seed back with /png-info; an "only masked" inpaint's info
    gives the whole picture's size, not the crop's."""
    mask = Image.new("L", (160, 128), 0)
    mask.paste(255, (100, 80, 120, 100))
    body = img2img_body(gradient(160, 128), mask, inpaint_full_res=True, seed=21)
    status, answer, _ = call(server, "POST", "/sdapi/v1/img2img", body)
    assert status == 200, answer
    info = json.loads(answer["info"])
    assert (info["width"], info["height"]) == (160, 128)
    assert "Size: 160x128" in info["infotexts"][0]
    status, png, _ = call(server, "POST", "/sdapi/v1/png-info", {"image": answer["images"][0]})
    assert status == 200 and png["info"], png
    assert png["parameters"]["Seed"] == "21"
    assert (png["parameters"]["Size-1"], png["parameters"]["Size-2"]) == ("160", "128")


def test_an_all_black_mask_is_img2img_of_the_whole_image(server: ServerProcess) -> None:
    """A1111 falls back to img2img without a mask (it was a 400 "the mask is empty")."""
    body = img2img_body(gradient(32, 32), Image.new("L", (32, 32), 0), seed=6)
    (image,), info = generate(server, "img2img", body)
    assert image.size == (32, 32) and any("mask is empty" in note for note in info["notes"])
    assert History(server.history_dir).find(info["paintbridge_job"]).parameters["task"] == (
        "img2img"
    )
    # an inpainting model cannot img2img: it repaints the whole picture
    inpainting = {"override_settings": {"sd_model_checkpoint": "test:tiny-inpaint"}}
    (image,), info = generate(server, "img2img", body | inpainting)
    assert image.size == (32, 32) and any("mask is empty" in note for note in info["notes"])


def test_any_integer_seed_is_taken_modulo_2_32(server: ServerProcess) -> None:
    """A1111 accepts any integer seed; -1 stays random."""
    for seed, used in [(2**32, 0), (-2, 2**32 - 2), (2**40 + 5, 5)]:
        (_,), info = generate(server, "txt2img", txt2img_body(seed=seed))
        assert info["all_seeds"] == [used]
        assert any(f"seed {seed} is outside" in note for note in info["notes"]), info


def test_null_means_the_default(server: ServerProcess) -> None:
    """A1111 makes every field optional; its clients send null for "the default"."""
    nulls = dict.fromkeys(["prompt", "negative_prompt", "seed", "batch_size", "n_iter",
                           "sampler_name", "tiling", "override_settings", "styles"])  # fmt: skip
    (image,), info = generate(server, "txt2img", txt2img_body(**nulls))
    assert image.size == (64, 64) and info["prompt"] == "" and info["negative_prompt"] == ""
    assert len(info["all_seeds"]) == 1 and info["batch_size"] == 1 and info["n_iter"] == 1
    assert info["sd_model_name"] == "test:tiny"
    edit_nulls = dict.fromkeys(["denoising_strength", "resize_mode", "mask_blur", "inpainting_fill",
                                "inpaint_full_res", "inpaint_full_res_padding",
                                "inpainting_mask_invert"])  # fmt: skip
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (8, 8, 24, 24))
    (image,), info = generate(server, "img2img", img2img_body(gradient(32, 32), mask, **edit_nulls))
    assert image.size == (32, 32) and info["denoising_strength"] == 0.75
    body = img2img_body(gradient(32, 32), seed=None) | {"mask": None}
    (image,), info = generate(server, "img2img", body)
    assert image.size == (32, 32) and len(info["all_seeds"]) == 1
    status, answer, _ = call(server, "POST", "/sdapi/v1/img2img", {"init_images": None})
    assert status == 400 and "`init_images`" in answer["error"]["message"], answer


def test_mask_blur_must_be_finite_and_is_capped(server: ServerProcess) -> None:
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (8, 8, 24, 24))
    for blur in (float("inf"), float("-inf"), float("nan")):  # json.dumps sends Infinity, NaN
        body = img2img_body(gradient(32, 32), mask, mask_blur=blur)
        status, answer, _ = call(server, "POST", "/sdapi/v1/img2img", body)
        assert status == 400, answer
        assert "`mask_blur` must be a finite number" in answer["error"]["message"], answer
    (image,), info = generate(
        server, "img2img", img2img_body(gradient(32, 32), mask, mask_blur=1e20)
    )
    assert image.size == (32, 32)
    assert any("mask_blur 1e+20 was reduced to 32" in note for note in info["notes"]), info


def test_a_16_bit_gray_png_is_scaled_not_clipped(server: ServerProcess) -> None:
    """Pillow's own convert clips 16-bit gray at 255: 32768 would come back white."""
    wide = Image.fromarray(np.full((16, 16), 32768, dtype=np.uint16))
    (image,), _ = generate(server, "img2img", img2img_body(wide, **IDENTITY))
    assert image.convert("RGB").getpixel((5, 5)) == (128, 128, 128)
    # as a mask: 300/65535 is 1/255 strength, so the picture barely changes
    picture = gradient(32, 32)
    mask = Image.fromarray(np.full((32, 32), 300, dtype=np.uint16))
    (image,), _ = generate(server, "img2img", img2img_body(picture, mask, seed=8))
    change = np.abs(np.asarray(image.convert("RGB"), dtype=int) - np.asarray(picture, dtype=int))
    assert change.max() <= 1


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_init_images_are_turned_upright_by_their_exif(server: ServerProcess, fmt: str) -> None:
    """As A1111 does (and the CLI): a phone photo stored sideways is used as it is shown."""
    stored = Image.new("RGB", (16, 8), (220, 20, 20))
    stored.paste((20, 20, 220), (0, 0, 8, 8))  # blue left half; orientation 6 puts it on top
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    stored.save(out, format=fmt, exif=exif.tobytes())
    body = img2img_body(Image.new("RGB", (8, 16)), width=8, height=16, **IDENTITY)
    body["init_images"] = [base64.b64encode(out.getvalue()).decode()]
    (image,), _ = generate(server, "img2img", body)
    image = image.convert("RGB")
    top, bottom = image.getpixel((4, 2)), image.getpixel((4, 13))
    assert image.size == (8, 16)
    assert top[2] > 150 > top[0] and bottom[0] > 150 > bottom[2], (top, bottom)


# --- progress, interrupt, options ---------------------------------------------------------------


def test_progress_while_running_and_interrupt(server: ServerProcess) -> None:
    status, idle, _ = call(server, "GET", "/sdapi/v1/progress?skip_current_image=false")
    assert status == 200 and idle["progress"] == 0 and idle["state"]["job"] == ""
    assert idle["current_image"] is None
    result: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: result.update(
            answer=call(server, "POST", "/sdapi/v1/txt2img", txt2img_body(steps=150, batch_size=8))
        )
    )
    worker.start()
    try:

        def running() -> dict[str, Any] | None:
            answer = call(server, "GET", "/sdapi/v1/progress")[1]
            return answer if answer["state"]["sampling_step"] >= 2 else None

        progress = wait_for(running, timeout=120)
        assert 0 < progress["progress"] < 1 and progress["eta_relative"] > 0
        assert progress["state"]["sampling_steps"] == 150 * 8
        assert progress["state"]["job"] and progress["state"]["job_count"] == 1
        assert call(server, "POST", "/sdapi/v1/interrupt")[0] == 200
    finally:
        worker.join(120)
    status, answer, _ = result["answer"]
    assert status == 200 and answer["images"] == []
    info = json.loads(answer["info"])
    assert info["interrupted"] is True and info["all_seeds"] == []
    assert call(server, "GET", "/sdapi/v1/progress")[1]["state"]["job"] == ""


def test_progress_shows_a_job_submitted_through_v1(server: ServerProcess) -> None:
    client = server.client()
    job_id = client.submit(
        {"task": "txt2img", "prompt": "v1", "width": 64, "height": 64, "steps": 150, "count": 8}
    )
    try:

        def running() -> dict[str, Any] | None:
            answer = call(server, "GET", "/sdapi/v1/progress")[1]
            return answer if answer["state"]["sampling_step"] >= 2 else None

        progress = wait_for(running, timeout=120)
        assert progress["state"]["job"] == job_id and progress["state"]["job_count"] == 1
        assert progress["state"]["sampling_steps"] == 150 * 8
        assert 0 < progress["progress"] < 1 and progress["eta_relative"] > 0
    finally:
        client.cancel(job_id)
    wait_for(lambda: client.poll(job_id).finished, timeout=60)
    assert call(server, "GET", "/sdapi/v1/progress")[1]["state"]["job"] == ""


def test_options_switch_the_model(server: ServerProcess) -> None:
    status, options, _ = call(server, "GET", "/sdapi/v1/options")
    assert status == 200 and options["sd_model_checkpoint"] == "test:tiny"
    # what clients read besides (C# and Swift clients map them), as paintbridge works
    assert (options["sd_vae"], options["CLIP_stop_at_last_layers"]) == ("Automatic", 1)
    picture, mask = gradient(64, 64), Image.new("L", (64, 64), 0)
    mask.paste(255, (8, 8, 40, 40))
    try:
        status, answer, _ = call(
            server, "POST", "/sdapi/v1/options", {"sd_model_checkpoint": "test:tiny-inpaint"}
        )
        assert status == 200 and answer is None
        assert call(server, "GET", "/sdapi/v1/options")[1]["sd_model_checkpoint"] == (
            "test:tiny-inpaint"
        )
        (image,), info = generate(server, "img2img", img2img_body(picture, mask))
        assert info["sd_model_name"] == "test:tiny-inpaint" and image.size == (64, 64)
        status, answer, _ = call(server, "POST", "/sdapi/v1/txt2img", txt2img_body())
        assert status == 400 and "inpainting model" in answer["error"]["message"]
        # override_settings picks a model for one request only
        body = txt2img_body(override_settings={"sd_model_checkpoint": "test:tiny"})
        assert generate(server, "txt2img", body)[1]["sd_model_name"] == "test:tiny"
        # refused at submit: the inpainting model does not replace the loaded one
        body = txt2img_body(override_settings={"sd_model_checkpoint": "test:tiny-inpaint"})
        status, answer, _ = call(server, "POST", "/sdapi/v1/txt2img", body)
        assert status == 400 and "inpainting model" in answer["error"]["message"]
        assert server.client().health()["model"] == "test:tiny"
        status, answer, _ = call(server, "POST", "/sdapi/v1/options", {"sd_model_checkpoint": "x"})
        assert status == 404 and answer["error"]["code"] == "model_not_found"
        # offline (as the test server is), a hub repo that is not cached is refused up front
        uncached = {"sd_model_checkpoint": "nobody/not-in-the-cache"}
        status, answer, _ = call(server, "POST", "/sdapi/v1/options", uncached)
        assert status == 404 and "not in the local Hugging Face cache" in answer["error"]["message"]
        body = txt2img_body(override_settings=uncached)
        status, answer, _ = call(server, "POST", "/sdapi/v1/txt2img", body)
        assert status == 404 and "HF_HUB_OFFLINE=1" in answer["error"]["message"]
    finally:
        call(server, "POST", "/sdapi/v1/options", {"sd_model_checkpoint": "test:tiny"})
    assert generate(server, "txt2img", txt2img_body())[1]["sd_model_name"] == "test:tiny"


def test_the_lists_clients_read(server: ServerProcess) -> None:
    models = call(server, "GET", "/sdapi/v1/sd-models")[1]
    titles = {model["title"] for model in models}
    assert {"test:tiny", "test:tiny-inpaint"} <= titles
    assert all(set(model) >= {"title", "model_name", "filename", "hash"} for model in models)
    samplers = {item["name"] for item in call(server, "GET", "/sdapi/v1/samplers")[1]}
    assert {"Euler a", "Euler", "DDIM", "DPM++ 2M", "DPM++ 2M Karras"} <= samplers
    schedulers = call(server, "GET", "/sdapi/v1/schedulers")[1]
    assert {"automatic", "karras"} <= {item["name"] for item in schedulers}
    assert call(server, "GET", "/sdapi/v1/upscalers")[1][0]["name"] == "None"
    assert call(server, "GET", "/sdapi/v1/loras")[1] == []
    # SillyTavern lists upscalers from both routes and fails if either is missing
    assert call(server, "GET", "/sdapi/v1/latent-upscale-modes")[:2] == (200, [])
    # what front ends probe on connect: a 404 makes some of them give up
    for path in ("sd-vae", "sd-modules", "hypernetworks", "face-restorers", "realesrgan-models",
                 "prompt-styles", "extensions", "script-info"):  # fmt: skip
        assert call(server, "GET", f"/sdapi/v1/{path}")[:2] == (200, []), path
    assert call(server, "GET", "/sdapi/v1/scripts")[:2] == (200, {"txt2img": [], "img2img": []})
    assert call(server, "GET", "/sdapi/v1/embeddings")[1] == {"loaded": {}, "skipped": {}}
    flags = call(server, "GET", "/sdapi/v1/cmd-flags")[1]
    assert (
        flags["api"] is True
        and flags["listen"] is False
        and server.url.endswith(f":{flags['port']}")
    )
    memory = call(server, "GET", "/sdapi/v1/memory")[1]
    assert 0 < memory["ram"]["free"] <= memory["ram"]["total"]
    assert memory["ram"]["used"] == memory["ram"]["total"] - memory["ram"]["free"]
    assert "error" in memory["cuda"]  # no GPU here
    for path in ("refresh-checkpoints", "refresh-loras", "refresh-vae", "refresh-embeddings"):
        assert call(server, "POST", f"/sdapi/v1/{path}")[0] == 200, path


def test_png_info_reads_back_a_generated_image(server: ServerProcess) -> None:
    status, answer, _ = call(server, "POST", "/sdapi/v1/txt2img", txt2img_body(seed=1234))
    assert status == 200
    status, info, _ = call(server, "POST", "/sdapi/v1/png-info", {"image": answer["images"][0]})
    assert status == 200, info
    assert info["info"].startswith("a lighthouse at dusk\nNegative prompt: blurry\n")
    parameters = info["parameters"]
    assert parameters["Prompt"] == "a lighthouse at dusk"
    assert parameters["Negative prompt"] == "blurry"
    assert (parameters["Seed"], parameters["Steps"]) == ("1234", "2")
    assert parameters["Sampler"] == "Euler a"  # A1111's name, as the answer's infotexts say
    assert (parameters["Size-1"], parameters["Size-2"]) == ("64", "64")
    # A PNG without parameters; a data: URL; not an image; too large to read.
    plain = png_b64(Image.new("RGB", (8, 8)), data_url=True)
    assert call(server, "POST", "/sdapi/v1/png-info", {"image": plain})[1] == {
        "info": "", "items": {}, "parameters": {}
    }  # fmt: skip
    bad = base64.b64encode(b"not a png").decode()
    status, error, _ = call(server, "POST", "/sdapi/v1/png-info", {"image": bad})
    assert status == 400 and "`image` is not a readable image" in error["error"]["message"]
    assert "not an image file Pillow can read" in error["error"]["message"]
    assert "BytesIO" not in error["error"]["message"]
    assert call(server, "POST", "/sdapi/v1/png-info", {})[0] == 400
    huge = png_b64(Image.new("L", (8200, 16)))
    status, error, _ = call(server, "POST", "/sdapi/v1/png-info", {"image": huge})
    assert status == 413 and "8200x16" in error["error"]["message"]


# --- authentication -----------------------------------------------------------------------------


def test_basic_auth_any_user_with_the_token(server: ServerProcess) -> None:
    for headers in (
        basic("", TOKEN),
        basic("someone", TOKEN),
        {"Authorization": f"Bearer {TOKEN}"},
    ):
        assert call(server, "GET", "/sdapi/v1/options", headers=headers)[0] == 200
    for headers in ({}, basic("webui", "wrong"), {"Authorization": "Basic %%%"}):
        status, answer, reply_headers = call(server, "GET", "/sdapi/v1/options", headers=headers)
        assert status == 401 and answer["error"]["code"] == "unauthorized"
        assert reply_headers.get("WWW-Authenticate", "").startswith("Basic")
    # Basic is for the A1111 routes only; /v1 keeps its bearer token.
    assert call(server, "GET", "/v1/health", headers=AUTH)[0] == 401
    # ControlNet's routes (not here) answer 404 to the same login, not 401 (a wrong password)
    assert call(server, "GET", "/controlnet/version", headers=AUTH)[0] == 404


def test_loopback_opt_out(tmp_path_factory: pytest.TempPathFactory) -> None:
    process = ServerProcess(
        tmp_path_factory.mktemp("a1111-open"), "--a1111", "--a1111-no-auth"
    ).wait_ready()
    try:
        assert call(process, "GET", "/sdapi/v1/sd-models", headers={})[0] == 200
        assert call(process, "POST", "/sdapi/v1/interrupt", headers={})[0] == 200
        assert call(process, "GET", "/controlnet/model_list", headers={})[0] == 404
        # a web page (the browser adds Origin) still needs the token, and /v1 is unchanged
        origin = {"Origin": "https://example.org"}
        assert call(process, "POST", "/sdapi/v1/interrupt", headers=origin)[0] == 401
        assert call(process, "GET", "/v1/health", headers={})[0] == 401
    finally:
        process.stop()
    assert_no_server_bugs(process)


def test_opt_out_refused_off_loopback(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("a1111-refused")
    for extra in (["--host", "0.0.0.0"], ["--allow-host", "pb.example.org"], []):
        command = [sys.executable, "-m", "paintbridge", "serve", "--port", "0",
                   "--a1111-no-auth", *(["--a1111"] if extra else []), *extra]  # fmt: skip
        run = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=root)
        assert run.returncode != 0
        assert "a1111" in run.stderr.lower() and "Traceback" not in run.stderr, run.stderr


def test_routes_are_off_without_the_flag(tmp_path_factory: pytest.TempPathFactory) -> None:
    from fastapi.testclient import TestClient

    from paintbridge.server import ServerSettings, create_app

    app = create_app(ServerSettings(token=TOKEN), engine=object())  # type: ignore[arg-type]
    with TestClient(app, base_url="http://127.0.0.1") as client:
        answer = client.post("/sdapi/v1/txt2img", json={}, headers=AUTH)
        assert answer.status_code == 401  # Basic is not accepted either
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert client.post("/sdapi/v1/txt2img", json={}, headers=bearer).status_code == 404


def test_options_names_the_model_as_sd_models_lists_it(tmp_path: Path) -> None:
    """stable-gimpfusion looks /options' sd_model_checkpoint up in /sd-models' titles: `--model
    mymodel.safetensors` is listed as `mymodel`, and a model by its path was not listed."""
    from fastapi.testclient import TestClient
    from safetensors.numpy import save_file

    from paintbridge.engine.types import EngineSettings
    from paintbridge.server import ServerSettings, create_app

    models = tmp_path / "models"
    models.mkdir()
    sd1 = {
        "cond_stage_model.transformer.w": np.zeros(1, np.float32),
        "model.diffusion_model.input_blocks.0.0.weight": np.zeros((1, 4, 1, 1), np.float32),
    }
    for name in ("mymodel", "other"):
        save_file(sd1, models / f"{name}.safetensors")
    for default in ("mymodel.safetensors", str(models / "other.safetensors")):
        engine = EngineSettings(default_model=default, model_dirs=(models,))
        settings = ServerSettings(
            token=TOKEN, a1111=True, engine=engine, history_dir=tmp_path / "history"
        )
        app = create_app(settings, engine=object())  # type: ignore[arg-type]
        with TestClient(app, base_url="http://127.0.0.1") as client:
            checkpoint = client.get("/sdapi/v1/options", headers=AUTH).json()["sd_model_checkpoint"]
            titles = [
                model["title"] for model in client.get("/sdapi/v1/sd-models", headers=AUTH).json()
            ]
            assert checkpoint in titles, (checkpoint, titles)
            # sent back, it is the server's own model (not loaded again under another name)
            answer = client.post(
                "/sdapi/v1/options", json={"sd_model_checkpoint": checkpoint}, headers=AUTH
            )
            assert answer.status_code == 200, answer.text
            assert app.state.a1111.checkpoint == default


def test_a_result_the_history_cannot_keep_is_the_servers_fault(tmp_path: Path) -> None:
    """A full disk (here: the history folder became a file) is not the request's fault: an
    A1111 client reads a 4xx as "change the request"."""
    import shutil

    from fastapi.testclient import TestClient

    from paintbridge.engine.types import EngineSettings
    from paintbridge.server import ServerSettings, create_app

    history = tmp_path / "history"
    engine = EngineSettings(default_model="test:tiny", model_dirs=(tmp_path / "models",))
    settings = ServerSettings(token=TOKEN, a1111=True, engine=engine, history_dir=history)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        shutil.rmtree(history, ignore_errors=True)
        history.write_text("in the way")
        answer = client.post("/sdapi/v1/txt2img", json=txt2img_body(), headers=AUTH)
    assert answer.status_code == 507, answer.text
    assert answer.json()["error"]["code"] == "history_not_writable"


def test_a_stop_while_an_a1111_request_waits_answers_503_at_once(tmp_path: Path) -> None:
    """uvicorn waits for open requests before the app's shutdown, and an A1111 request waits
    for its job: the stop cancels the jobs at once, so the request answers 503 shutting_down
    (it held the stop for the 10 s grace, then got a bare 500 and a traceback in the log)."""
    stopping = ServerProcess(tmp_path, "--a1111").wait_ready()
    result: dict[str, Any] = {}
    body = txt2img_body(steps=150, batch_size=8)
    worker = threading.Thread(
        target=lambda: result.update(answer=call(stopping, "POST", "/sdapi/v1/txt2img", body))
    )
    worker.start()
    try:
        wait_for(lambda: call(stopping, "GET", "/sdapi/v1/progress")[1]["state"]["sampling_step"])
        queued = threading.Thread(  # and one that waits in the queue behind it
            target=lambda: result.update(queued=call(stopping, "POST", "/sdapi/v1/txt2img", body))
        )
        queued.start()
        wait_for(lambda: call(stopping, "GET", "/sdapi/v1/progress")[1]["state"]["job_count"] > 1)
        started = time.monotonic()
        stopping.process.send_signal(signal.SIGTERM)
        worker.join(30)
        queued.join(30)
        answered = time.monotonic() - started
    finally:
        code = stopping.stop()
    for key in ("answer", "queued"):
        status, answer, _ = result[key]
        assert status == 503 and answer["error"]["code"] == "shutting_down", (key, answer)
    assert answered < 8, answered  # not uvicorn's 10 s grace
    assert code in (0, -signal.SIGTERM), stopping.log
    assert_no_server_bugs(stopping)


def test_a1111_requests_waiting_in_a_long_queue_leave_threads_for_the_rest(
    tmp_path: Path,
) -> None:
    """Each waiting A1111 request holds a thread until its job ends: 45 of them (queue 50)
    must not take every thread the sync routes share, or /v1/live, polls and cancel hang."""
    busy = ServerProcess(tmp_path, "--a1111", "--queue-size", "50").wait_ready()
    body = txt2img_body(steps=150, batch_size=8)
    waiting = [
        threading.Thread(
            target=lambda: call(busy, "POST", "/sdapi/v1/txt2img", body, timeout=60), daemon=True
        )
        for _ in range(45)
    ]
    try:
        for thread in waiting:
            thread.start()
        wait_for(lambda: call(busy, "GET", "/sdapi/v1/progress")[1]["state"]["job_count"] >= 45)
        started = time.monotonic()
        request = urllib.request.Request(busy.url + "/v1/live")
        with urllib.request.urlopen(request, timeout=20) as answer:
            assert answer.status == 200
        assert busy.client().health()["queue"]["length"] >= 40
        assert time.monotonic() - started < 5
    finally:
        code = busy.stop()
    for thread in waiting:
        thread.join(30)
    assert code in (0, -signal.SIGTERM), busy.log
    assert_no_server_bugs(busy)
