"""The pure half of the A1111 API: sampler names, model titles, images, masks, crop and paste."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from paintbridge.engine.types import Limits
from paintbridge.errors import InvalidRequest
from paintbridge.hostkit.geometry import Box
from paintbridge.server import a1111_convert as conv
from paintbridge.server.a1111_schemas import Img2ImgBody, Txt2ImgBody
from paintbridge.server.payloads import TooLarge


@pytest.mark.parametrize(
    ("sampler", "schedule", "engine", "name"),
    [
        ("Euler a", None, "euler_a", "Euler a"),
        ("euler A", "Automatic", "euler_a", "Euler a"),
        ("k_euler", None, "euler", "Euler"),
        ("DDIM", None, "ddim", "DDIM"),
        ("DPM++ 2M", None, "dpm++", "DPM++ 2M"),
        ("DPM++ 2M", "Karras", "dpm++_karras", "DPM++ 2M Karras"),
        ("DPM++ 2M Karras", None, "dpm++_karras", "DPM++ 2M Karras"),
        ("DPM++ 2M Karras", "karras", "dpm++_karras", "DPM++ 2M Karras"),
        ("DPM++ SDE Karras", None, "dpm++_sde_karras", "DPM++ SDE Karras"),
        ("UniPC", None, "unipc", "UniPC"),
        ("PLMS", None, "pndm", "PLMS"),
        ("unipc", None, "unipc", "unipc"),  # an engine name as it is
        (None, None, None, "Default"),
        ("", "Karras", None, "Default"),
    ],
)
def test_resolve_sampler(sampler: str | None, schedule: str | None, engine, name) -> None:
    notes: list[str] = []
    assert conv.resolve_sampler(sampler, schedule, notes) == (engine, name)
    assert notes == []


def test_the_a1111_name_written_for_each_scheduler_reads_back_as_that_scheduler() -> None:
    """PNG parameters name the engine's scheduler as A1111 does (schedulers.A1111_NAMES):
    an A1111 client sending that name back gets the same scheduler."""
    from paintbridge.engine.schedulers import A1111_NAMES, DEFAULT, scheduler_names

    for engine, a1111 in A1111_NAMES.items():
        if engine != DEFAULT and engine in scheduler_names():
            assert conv.resolve_sampler(a1111, None, [])[0] == engine, a1111


@pytest.mark.parametrize(
    ("sampler", "schedule", "engine", "word"),
    [
        ("Restart", None, None, "Restart"),
        ("DPM adaptive", "Karras", None, "DPM adaptive"),
        ("Euler", "Exponential", "euler", "Exponential"),
    ],
)
def test_what_cannot_be_honoured_is_noted(sampler: str, schedule, engine, word: str) -> None:
    notes: list[str] = []
    assert conv.resolve_sampler(sampler, schedule, notes)[0] == engine
    assert len(notes) == 1 and word in notes[0]


@pytest.mark.parametrize(
    ("title", "name"),
    [
        ("test:tiny", "test:tiny"),
        ("v1-5-pruned-emaonly.safetensors [6ce0161689]", "v1-5-pruned-emaonly"),
        ("dreamshaper.safetensors", "dreamshaper"),
        ("  sd15 ", "sd15"),
        ("folder [with] words", "folder [with] words"),
    ],
)
def test_model_name(title: str, name: str) -> None:
    assert conv.model_name(title) == name


def encoded(image: Image.Image, fmt: str = "PNG") -> str:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return base64.b64encode(out.getvalue()).decode()


def test_decode_png_jpeg_and_data_urls() -> None:
    limits = Limits()
    png = conv.decode_a1111_image(encoded(Image.new("RGB", (5, 3), "red")), "x", limits)
    assert png.size == (5, 3) and png.getpixel((0, 0)) == (255, 0, 0)
    jpeg = encoded(Image.new("RGB", (8, 8), "white"), "JPEG")
    assert conv.decode_a1111_image(f"data:image/jpeg;base64,{jpeg}", "x", limits).size == (8, 8)
    # MIME base64 (76-character lines), as `base64 file.png` or Java's encoder write it
    out = io.BytesIO()
    Image.new("RGB", (40, 40), "blue").save(out, format="PNG", compress_level=0)
    mime = base64.encodebytes(out.getvalue()).decode()
    assert "\n" in mime and conv.decode_a1111_image(mime, "x", limits).size == (40, 40)
    assert conv.decode_a1111_image(mime.replace("\n", "\r\n"), "x", limits).size == (40, 40)


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [
        ("not base64!", InvalidRequest, "`init_images[0]` is not base64"),
        ("data:image/png,abc", InvalidRequest, "without base64"),
        (base64.b64encode(b"GIF89a....").decode(), InvalidRequest, "not a readable PNG"),
        # Pillow's own words name a BytesIO's address: the reason instead
        (
            base64.b64encode(b"a text file").decode(),
            InvalidRequest,
            "image: not an image file Pillow can read$",
        ),
    ],
)
def test_decode_errors_name_the_field(text: str, error: type, words: str) -> None:
    with pytest.raises(error, match=words.replace("[", r"\[").replace("]", r"\]")):
        conv.decode_a1111_image(text, "init_images[0]", Limits())


def test_an_image_over_the_limits_is_refused_before_decoding() -> None:
    big = encoded(Image.new("L", (300, 200)))
    with pytest.raises(TooLarge, match="300x200"):
        conv.decode_a1111_image(big, "mask", Limits(max_pixels=300 * 199))
    with pytest.raises(InvalidRequest, match="at most"):
        conv.check_size((100, 100), Limits(max_side=99))


def test_prepare_mask_uses_alpha_brightness_invert_and_blur() -> None:
    notes: list[str] = []
    gray = Image.new("RGB", (10, 10), "black")
    gray.paste((255, 255, 255), (2, 2, 5, 5))
    mask = conv.prepare_mask(gray, (10, 10), blur=0, invert=False, notes=notes)
    assert mask.mode == "L" and mask.getbbox() == (2, 2, 5, 5)
    # with transparency, the alpha is the mask (an eraser-painted layer)
    painted = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    painted.paste((10, 10, 10, 255), (6, 6, 9, 9))
    assert conv.prepare_mask(painted, (10, 10), blur=0, invert=False, notes=notes).getbbox() == (
        6, 6, 9, 9
    )  # fmt: skip
    inverted = conv.prepare_mask(gray, (10, 10), blur=0, invert=True, notes=notes)
    assert inverted.getpixel((0, 0)) == 255 and inverted.getpixel((3, 3)) == 0
    assert notes == []
    blurred = conv.prepare_mask(gray, (20, 20), blur=2, invert=False, notes=notes)
    assert blurred.size == (20, 20) and 0 < blurred.getpixel((3, 3)) < 255
    assert len(notes) == 1 and "resized" in notes[0]


def test_a_16_bit_gray_mask_is_scaled_not_clipped() -> None:
    """Pillow's own convert clips 16-bit values at 255: 300/65535 would become a full mask."""
    wide = Image.fromarray(np.array([[0, 300, 32768, 65535]], dtype=np.uint16))
    assert wide.mode == "I;16"
    mask = conv.prepare_mask(wide, (4, 1), blur=0, invert=False, notes=[])
    assert list(np.asarray(mask)[0]) == [0, 1, 128, 255]
    decoded = conv.decode_a1111_image(encoded(wide), "mask", Limits())
    mask = conv.prepare_mask(decoded, (4, 1), blur=0, invert=False, notes=[])
    assert list(np.asarray(mask)[0]) == [0, 1, 128, 255]


@pytest.mark.parametrize("blur", [float("inf"), float("-inf"), float("nan")])
def test_mask_blur_must_be_finite(blur: float) -> None:
    with pytest.raises(InvalidRequest, match="`mask_blur` must be a finite number"):
        conv.prepare_mask(Image.new("L", (8, 8), 255), (8, 8), blur=blur, invert=False, notes=[])


def test_a_huge_mask_blur_is_capped_at_the_larger_side() -> None:
    notes: list[str] = []
    mask = Image.new("L", (16, 8), 0)
    mask.paste(255, (0, 0, 4, 8))
    blurred = conv.prepare_mask(mask, (16, 8), blur=1e20, invert=False, notes=notes)
    capped = conv.prepare_mask(mask, (16, 8), blur=16, invert=False, notes=[])
    assert blurred.tobytes() == capped.tobytes()
    assert len(notes) == 1 and "mask_blur 1e+20 was reduced to 16" in notes[0]


def _exif_rotated(fmt: str) -> str:
    """16x8 stored, blue left half and red right, with EXIF orientation 6 (turn 90° clockwise
    to show it): shown 8x16, blue on top."""
    stored = Image.new("RGB", (16, 8), (220, 20, 20))
    stored.paste((20, 20, 220), (0, 0, 8, 8))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    stored.save(out, format=fmt, exif=exif.tobytes())
    return base64.b64encode(out.getvalue()).decode()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_decode_turns_the_image_upright_by_its_exif(fmt: str) -> None:
    image = conv.decode_a1111_image(_exif_rotated(fmt), "init_images[0]", Limits()).convert("RGB")
    assert image.size == (8, 16)
    top, bottom = image.getpixel((4, 2)), image.getpixel((4, 13))
    assert top[2] > 150 > top[0] and bottom[0] > 150 > bottom[2], (top, bottom)


def test_a_broken_exif_block_leaves_the_image_as_stored() -> None:
    out = io.BytesIO()
    Image.new("RGB", (6, 4), "red").save(out, format="PNG", exif=b"Exif\x00\x00MM\x00*garbage")
    text = base64.b64encode(out.getvalue()).decode()
    assert conv.decode_a1111_image(text, "mask", Limits()).size == (6, 4)


def test_crop_around_the_mask_and_paste_back() -> None:
    mask = Image.new("L", (200, 100), 0)
    assert conv.Crop.around(mask, 32) is None
    mask.paste(255, (150, 40, 160, 50))
    crop = conv.Crop.around(mask, 4)
    assert crop is not None
    assert crop.box.contains(Box(150, 40, 10, 10)) and Box(0, 0, 200, 100).contains(crop.box)
    assert crop.box.width % 8 == 0 and crop.box.width >= 64  # hostkit's context box rule
    original = Image.new("RGB", (200, 100), (0, 0, 255))
    layer = Image.new("RGBA", crop.box[2:], (255, 0, 0, 0))
    layer.paste(
        (255, 0, 0, 255), (150 - crop.box.x, 40 - crop.box.y, 160 - crop.box.x, 50 - crop.box.y)
    )
    out = conv.paste_back(original, layer, crop)
    assert out.mode == "RGB" and out.size == (200, 100)
    red = np.asarray(out)[..., 0] == 255
    assert red.sum() == 100 and red[40:50, 150:160].all()


def test_info_has_what_clients_parse() -> None:
    from paintbridge.jobs import JobView

    body = Img2ImgBody(init_images=["x"], prompt="p", seed=-1, batch_size=2)
    view = JobView(
        id="j", state="done", position=None, step=4, steps=4, error=None, seeds=(7, 8),
        files=(), parameters={"steps": 4, "guidance": 7.5, "width": 64, "height": 32,
                              "scheduler": "euler_a"},
    )  # fmt: skip
    info = conv.info_object(body, body, view, "Euler a", "test:tiny", notes=["n"], ignored=["k"])
    assert info["seed"] == 7 and info["all_seeds"] == [7, 8] and info["steps"] == 4
    assert (info["width"], info["height"], info["cfg_scale"]) == (64, 32, 7.5)
    assert (
        info["denoising_strength"] == 0.75 and info["notes"] == ["n"] and info["ignored"] == ["k"]
    )
    assert info["interrupted"] is False and len(info["infotexts"]) == 2
    # no sampler asked for: the one the model's preset gave is named, as A1111 names it
    info = conv.info_object(body, body, view, "Default", "test:tiny", notes=[], ignored=[])
    assert info["sampler_name"] == "Euler a" and "Sampler: Euler a," in info["infotexts"][0]
    lenient = Txt2ImgBody.model_validate({"seed": -1.0, "steps": "3", "tiling": 0, "x": [1]})
    assert (lenient.seed, lenient.steps, lenient.tiling) == (-1, 3, False)
    assert lenient.model_extra == {"x": [1]}


def test_infotexts_are_shaped_as_a1111_writes_them() -> None:
    """No "Negative prompt:" line without one (A1111's create_infotext)."""
    from paintbridge.jobs import JobView

    view = JobView(
        id="j", state="done", position=None, step=2, steps=2, error=None, seeds=(7,),
        files=(), parameters={"steps": 2, "guidance": 7.0, "width": 64, "height": 64},
    )  # fmt: skip
    for negative, text in [
        ("", "p\nSteps: 2, Sampler: Euler, CFG scale: 7.0, Seed: 7, Size: 64x64, Model: m"),
        ("bad", "p\nNegative prompt: bad\nSteps: 2, Sampler: Euler, CFG scale: 7.0, Seed: 7, "
                "Size: 64x64, Model: m"),
    ]:  # fmt: skip
        body = Txt2ImgBody(prompt="p", negative_prompt=negative)
        info = conv.info_object(body, None, view, "Euler", "m", notes=[], ignored=[])
        assert info["infotexts"] == [text]


def test_parse_infotext_reads_what_a1111_and_paintbridge_write() -> None:
    text = (
        "a lighthouse, at dusk\nsecond line\nNegative prompt: blurry, dark\nmore negative\n"
        "Steps: 20, Sampler: DPM++ 2M, CFG scale: 7.5, Seed: 42, Size: 512x768, "
        'Lora hashes: "a: 1, b: 2", Model: sd'
    )
    assert conv.parse_infotext(text) == {
        "Prompt": "a lighthouse, at dusk\nsecond line",
        "Negative prompt": "blurry, dark\nmore negative",
        "Steps": "20", "Sampler": "DPM++ 2M", "CFG scale": "7.5", "Seed": "42",
        "Size": "512x768", "Size-1": "512", "Size-2": "768", "Lora hashes": "a: 1, b: 2",
        "Model": "sd",
    }  # fmt: skip
    # A last line that is not settings is part of the prompt; no text, no parameters.
    assert conv.parse_infotext("just: a prompt") == {"Prompt": "just: a prompt",
                                                    "Negative prompt": ""}  # fmt: skip
    assert conv.parse_infotext("  \n") == {}


@pytest.mark.parametrize("line", [" " * 65_000, "a" * 65_000, "a " * 32_500])
def test_parse_infotext_is_linear_in_the_text(line: str) -> None:
    """A1111's own pattern is quadratic on a settings line without a colon: 20-60 s for each of
    these (measured), holding the GIL, so every route of the server stalled; now well under a
    second. The bound only tells quadratic from linear, it is no speed target."""
    import time

    started = time.monotonic()
    assert conv.parse_infotext("p\n" + line)["Prompt"] == ("p\n" + line).strip()
    assert time.monotonic() - started < 10


def test_send_images_and_an_empty_mask_read_as_a1111_reads_them() -> None:
    """`send_images`/`save_images` are A1111 fields (not "ignored"); `"mask": ""` is no mask."""
    body = Img2ImgBody.model_validate(
        {"init_images": ["x"], "mask": "", "send_images": False, "save_images": True}
    )
    assert body.mask is None and body.send_images is False and body.model_extra == {}
    assert Txt2ImgBody().send_images is True


@pytest.mark.parametrize(
    ("strength", "steps", "used"),
    [(0.0, 10, 0.1), (0.05, 10, 0.1), (0.01, 49, 1 / 49), (0.5, 10, 0.5), (0.1, 10, 0.1)],
)
def test_a_strength_that_runs_no_step_is_raised_to_one(strength, steps, used) -> None:
    notes: list[str] = []
    raised = conv.one_step_strength(strength, steps, notes)
    assert raised == pytest.approx(used, rel=1e-9) and int(steps * raised) >= 1
    assert bool(notes) == (strength != used)


@pytest.mark.parametrize("strength", [-0.5, 1.5, float("nan")])
def test_a_strength_out_of_range_is_left_for_check_request(strength: float) -> None:
    notes: list[str] = []
    assert conv.one_step_strength(strength, 10, notes) is strength and notes == []


@pytest.mark.parametrize(
    ("seed", "used"), [(-1, None), (0, 0), (2**32 - 1, 2**32 - 1), (2**32, 0), (-2, 2**32 - 2)]
)
def test_engine_seed_takes_any_integer_modulo_2_32(seed: int, used: int | None) -> None:
    notes: list[str] = []
    assert conv.engine_seed(seed, notes) == used
    assert bool(notes) == (seed not in (-1, used))


def test_flatten_puts_transparency_on_white() -> None:
    layer = Image.new("LA", (4, 2), (0, 0))
    layer.putpixel((0, 0), (10, 255))
    flat = conv.flatten(layer)
    assert flat.mode == "RGB" and flat.getpixel((0, 0)) == (10, 10, 10)
    assert flat.getpixel((3, 1)) == (255, 255, 255)


def test_model_name_strips_only_the_suffix_the_model_list_strips() -> None:
    """`x.SAFETENSORS` is listed by its whole name (models.list_models), so it stays whole."""
    assert conv.model_name("mymodel.safetensors [0123abcd]") == "mymodel"
    assert conv.model_name("Upper.SAFETENSORS") == "Upper.SAFETENSORS"
    assert conv.model_name("./sd15.safetensors") == "./sd15.safetensors"
