from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from paintbridge import pngmeta
from paintbridge.errors import InvalidRequest, PaintbridgeError

PARAMS = {
    "task": "img2img",
    "prompt": "a cat in a hat",
    "negative_prompt": "blurry, low quality",
    "model": "sd15",
    "steps": 20,
    "guidance": 7.5,
    "strength": 0.75,
    "scheduler": "euler_a",
    "seed": 42,
    "width": 512,
    "height": 512,
    "seamless": "none",
}


def _image(size: tuple[int, int] = (16, 12)) -> Image.Image:
    img = Image.new("RGBA", size)
    img.putdata([(x * 7 % 256, y * 11 % 256, (x + y) % 256, 255 - x) for y in range(size[1])
                 for x in range(size[0])])  # fmt: skip
    return img


def test_parameters_text_a1111_layout() -> None:
    text = pngmeta.parameters_text(PARAMS)
    lines = text.split("\n")
    assert lines[0] == "a cat in a hat"
    assert lines[1] == "Negative prompt: blurry, low quality"
    assert lines[2] == (
        "Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 512x512, Model: sd15, "
        "Denoising strength: 0.75, Task: img2img, Seamless: none"
    )
    assert len(lines) == 3


def test_parameters_text_txt2img_drops_strength_and_empty_negative() -> None:
    params = {**PARAMS, "task": "txt2img", "negative_prompt": ""}
    text = pngmeta.parameters_text(params)
    assert "Negative prompt" not in text
    assert "Denoising strength" not in text
    assert text.split("\n")[1].startswith("Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 42")


def test_parameters_text_quotes_values_with_commas_and_colons() -> None:
    text = pngmeta.parameters_text({"prompt": "p", "model": "C:/models/a,b.safetensors"})
    assert text.split("\n")[1] == 'Model: "C:/models/a,b.safetensors"'


def test_parameters_text_accepts_diffusers_names() -> None:
    text = pngmeta.parameters_text(
        {"prompt": "p", "num_inference_steps": 4, "guidance_scale": 3.0, "seed": 1}
    )
    assert text.split("\n")[1] == "Steps: 4, CFG scale: 3, Seed: 1"


def test_png_bytes_round_trip() -> None:
    img = _image()
    data = pngmeta.png_bytes(img, PARAMS)
    assert pngmeta.read_parameters(data) == PARAMS
    with Image.open(io.BytesIO(data)) as back:
        assert back.format == "PNG"
        assert back.mode == "RGBA"
        assert back.size == img.size
        assert list(back.getdata()) == list(img.getdata())
        assert back.text["parameters"] == pngmeta.parameters_text(PARAMS)


def test_unicode_prompt_round_trip(tmp_path: Path) -> None:
    params = {**PARAMS, "prompt": "猫が帽子をかぶっている — «chat» 🐱", "negative_prompt": "ぼやけ"}
    path = pngmeta.save_png(_image(), tmp_path / "u.png", params)
    assert pngmeta.read_parameters(path) == params
    with Image.open(path) as back:
        assert back.text["parameters"].startswith("猫が帽子をかぶっている — «chat» 🐱\n")
        assert "Negative prompt: ぼやけ" in back.text["parameters"]


def test_latin1_text_is_a_plain_text_chunk() -> None:
    data = pngmeta.png_bytes(_image(), PARAMS)
    # tEXt (not iTXt) for the A1111 chunk when it fits Latin-1: the widest-read form
    assert b"tEXtparameters\x00a cat in a hat" in data
    assert b"iTXtpaintbridge" in data


def test_read_parameters_absent_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    _image().save(path)
    assert pngmeta.read_parameters(path) == {}
    other = tmp_path / "other.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("paintbridge", "not json")
    _image().save(other, pnginfo=info)
    assert pngmeta.read_parameters(other) == {}


def test_read_parameters_not_an_image(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"hello")
    with pytest.raises(InvalidRequest, match="cannot read PNG parameters"):
        pngmeta.read_parameters(bad)
    with pytest.raises(InvalidRequest):
        pngmeta.read_parameters(b"\x89PNG\r\n\x1a\n truncated")


def test_save_png_replaces_existing_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    result = pngmeta.save_png(_image(), target, PARAMS)
    assert result == target
    assert pngmeta.read_parameters(target) == PARAMS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_save_png_atomic_on_write_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"old contents")

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pngmeta.os, "fsync", failing_fsync)
    with pytest.raises(PaintbridgeError, match="No space left on device") as info:
        pngmeta.save_png(_image(), target, PARAMS)
    assert info.value.code == "output_not_writable"
    assert target.read_bytes() == b"old contents"  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temp left


def test_save_png_atomic_on_interrupt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pngmeta.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pngmeta.save_png(_image(), tmp_path / "new.png", PARAMS)
    assert list(tmp_path.iterdir()) == []


def test_save_png_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(PaintbridgeError, match="does not exist"):
        pngmeta.save_png(_image(), tmp_path / "nope" / "out.png", PARAMS)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions")
def test_save_png_unwritable_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PaintbridgeError, match="cannot write to output folder") as info:
            pngmeta.save_png(_image(), folder / "out.png", PARAMS)
        assert info.value.code == "output_not_writable"
    finally:
        folder.chmod(0o700)


def test_save_png_file_mode_follows_umask(tmp_path: Path) -> None:
    path = pngmeta.save_png(_image(), tmp_path / "m.png", PARAMS)
    mask = os.umask(0)
    os.umask(mask)
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_the_sampler_is_named_as_a1111_names_it() -> None:
    for engine, a1111 in [("dpm++_karras", "DPM++ 2M Karras"), ("pndm", "PLMS"),
                          ("default", "Default"), ("something_new", "something_new")]:  # fmt: skip
        text = pngmeta.parameters_text({"prompt": "p", "scheduler": engine, "steps": 2})
        assert text.endswith(f"Sampler: {a1111}"), text


@pytest.mark.parametrize("mode", ["L", "RGB", "LA", "P", "I;16", "CMYK"])
def test_every_mode_keeps_its_pixels_and_parameters(mode: str) -> None:
    # RGB, RGBA and L through pngwrite, the other PNG modes through Pillow, others as RGBA
    img = _image().convert(mode)
    data = pngmeta.png_bytes(img, PARAMS)
    assert pngmeta.read_parameters(data) == PARAMS
    with Image.open(io.BytesIO(data)) as back:
        expected = img if mode != "CMYK" else img.convert("RGBA")
        assert back.mode == expected.mode
        assert list(back.getdata()) == list(expected.getdata())
        assert back.text["parameters"] == pngmeta.parameters_text(PARAMS)
