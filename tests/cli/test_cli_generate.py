"""`paintbridge generate | img2img | inpaint | models | demo` end to end with the tiny model."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from cli_support import RunCli, box_mask, noise_image, run_subprocess, subprocess_env
from PIL import Image

from paintbridge.engine import engine as engine_module
from paintbridge.pngmeta import read_parameters

TINY = ("--model", "test:tiny")
FAST = ("--steps", "2")


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGBA"))


def _seed_printed(out: str, path: Path) -> int:
    match = re.search(rf"wrote {re.escape(str(path))}\s+seed (\d+)", out)
    assert match, out
    return int(match.group(1))


def test_generate_writes_png_with_parameters(cli: RunCli, tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    result = cli("generate", "a red fox", *TINY, *FAST, "--width", "64", "--height", "48",
                 "--seed", "7", "--negative", "blurry", "-o", out)  # fmt: skip
    assert result.code == 0, result.err
    assert _seed_printed(result.out, out) == 7
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.size == (64, 48)
        assert image.mode == "RGBA"
        assert image.text["parameters"].startswith("a red fox\nNegative prompt: blurry\nSteps: 2")
    params = read_parameters(out)
    assert params["prompt"] == "a red fox"
    assert params["negative_prompt"] == "blurry"
    assert params["seed"] == 7
    assert params["steps"] == 2
    assert "noise" in result.err  # the test-model note
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_seed_reproduces_identical_pixels(cli: RunCli, tmp_path: Path) -> None:
    paths = [tmp_path / f"{name}.png" for name in ("a", "b", "c")]
    for path, seed in zip(paths, ("11", "11", "12"), strict=True):
        args = ("generate", "a red fox", *TINY, *FAST, "--width", "64", "--height", "64")
        assert cli(*args, "--seed", seed, "-o", path).code == 0
    a, b, c = (_pixels(p) for p in paths)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_random_seed_is_printed_and_reproduces(cli: RunCli, tmp_path: Path) -> None:
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    result = cli("generate", "x", *TINY, *FAST, "--width", "64", "--height", "64", "-o", first)
    assert result.code == 0, result.err
    seed = _seed_printed(result.out, first)
    assert read_parameters(first)["seed"] == seed
    again = cli("generate", "x", *TINY, *FAST, "--width", "64", "--height", "64",
                "--seed", str(seed), "-o", second)  # fmt: skip
    assert again.code == 0, again.err
    assert np.array_equal(_pixels(first), _pixels(second))


def test_count_numbers_the_outputs(cli: RunCli, tmp_path: Path) -> None:
    out = tmp_path / "many.png"
    result = cli("generate", "x", *TINY, *FAST, "--width", "64", "--height", "64",
                 "--count", "3", "--seed", "5", "-o", out)  # fmt: skip
    assert result.code == 0, result.err
    paths = [tmp_path / f"many-{i}.png" for i in (1, 2, 3)]
    assert sorted(tmp_path.iterdir()) == paths
    seeds = [_seed_printed(result.out, p) for p in paths]
    assert [read_parameters(p)["seed"] for p in paths] == seeds
    assert len(set(seeds)) == 3
    assert not np.array_equal(_pixels(paths[0]), _pixels(paths[1]))


def test_img2img_keeps_the_input_size(cli: RunCli, tmp_path: Path) -> None:
    source = tmp_path / "in.jpg"
    noise_image((72, 56)).save(source, quality=95)
    out = tmp_path / "out.png"
    result = cli("img2img", source, "a blue boat", *TINY, "--steps", "4", "--strength", "0.5",
                 "--seed", "3", "-o", out)  # fmt: skip
    assert result.code == 0, result.err
    with Image.open(out) as image:
        assert image.size == (72, 56)
    params = read_parameters(out)
    assert params["task"] == "img2img"
    assert params["strength"] == 0.5
    assert params["seed"] == 3


def test_inpaint_keeps_the_input_size(cli: RunCli, tmp_path: Path) -> None:
    source, mask, out = tmp_path / "in.png", tmp_path / "mask.png", tmp_path / "out.png"
    noise_image((64, 64)).save(source)
    box_mask((64, 64), (16, 16, 48, 48)).save(mask)
    result = cli("inpaint", source, mask, "a window", *TINY, *FAST, "--strength", "1",
                 "--seed", "4", "-o", out)  # fmt: skip
    assert result.code == 0, result.err
    with Image.open(out) as image:
        assert image.size == (64, 64)
    assert read_parameters(out)["task"] == "inpaint"


def test_inpaint_writes_the_whole_picture(cli: RunCli, tmp_path: Path) -> None:
    """The file is the input with the masked part regenerated, not the plug-ins' layer: every
    pixel outside the mask is the input's own, its alpha included."""
    source, mask, out = tmp_path / "in.png", tmp_path / "mask.png", tmp_path / "out.png"
    pixels = np.asarray(noise_image((64, 64)).convert("RGBA")).copy()
    pixels[:, :10, 3] = 0  # transparent, with colours underneath
    pixels[:, 10:20, 3] = 90
    Image.fromarray(pixels, "RGBA").save(source)
    box_mask((64, 64), (16, 16, 48, 48)).save(mask)
    result = cli("inpaint", source, mask, "a window", *TINY, *FAST, "--strength", "1",
                 "--seed", "4", "-o", out)  # fmt: skip
    assert result.code == 0, result.err
    written = _pixels(out)
    outside = np.asarray(Image.open(mask)) == 0
    assert np.array_equal(written[outside], pixels[outside])
    assert (written[28:36, 28:36, 3] == 255).all()  # deep inside: the generated pixels, opaque
    assert not np.array_equal(written[28:36, 28:36], pixels[28:36, 28:36])


def test_models_lists_presets(cli: RunCli) -> None:
    result = cli("models")
    assert result.code == 0, result.err
    for name in ("sd15", "sdxl", "sd-turbo"):
        assert re.search(rf"^{re.escape(name)}\s", result.out, re.MULTILINE), result.out
    assert cli("models", "--json").code == 0


def test_demo_writes_three_images(cli: RunCli, tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    result = cli("demo", "--out", folder, *FAST, "--seed", "9", "--width", "64", "--height", "64")
    assert result.code == 0, result.err
    for name in ("txt2img", "img2img", "inpaint"):
        path = folder / f"{name}.png"
        assert read_parameters(path)["task"] == name
        with Image.open(path) as image:
            assert image.size == (64, 64)
    # the inpaint is the whole picture: the txt2img image outside the mask
    outside = np.asarray(Image.open(folder / "inpaint-mask.png")) == 0
    inpaint, base = _pixels(folder / "inpaint.png"), _pixels(folder / "txt2img.png")
    assert np.array_equal(inpaint[outside], base[outside]) and (inpaint[..., 3] == 255).all()
    assert str(folder) in result.out
    assert "noise" in result.out  # says clearly that the test model's images are noise


def test_help_is_fast_and_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from paintbridge.cli import build_parser\n"
        "for cmd in ([], ['generate'], ['img2img'], ['inpaint'], ['models'], ['demo']):\n"
        "    build_parser().format_help()\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env()
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_real_subprocess_generate(tmp_path: Path) -> None:
    out = tmp_path / "sub.png"
    result = run_subprocess("generate", "a red fox", *TINY, *FAST, "--width", "64", "--height",
                            "64", "--seed", "21", "-o", out)  # fmt: skip
    assert result.code == 0, result.err
    assert "Traceback" not in result.err
    assert _seed_printed(result.out, out) == 21
    assert read_parameters(out)["seed"] == 21
    with Image.open(out) as image:
        assert image.size == (64, 64)


def test_the_engine_is_made_in_the_main_thread_and_generates_in_a_worker(
    cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # glibc's allocator settings (engine/allocator.py) reach only threads that have not yet
    # allocated: the generating worker must start after the Engine was made
    threads: dict[str, list[threading.Thread]] = {"made": [], "generated": []}
    Engine = engine_module.Engine
    make, generate = Engine.__init__, Engine.generate

    def recording_init(self: object, *args: object, **kwargs: object) -> None:
        threads["made"].append(threading.current_thread())
        make(self, *args, **kwargs)  # type: ignore[arg-type]

    def recording_generate(self: object, *args: object, **kwargs: object) -> object:
        threads["generated"].append(threading.current_thread())
        return generate(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Engine, "__init__", recording_init)
    monkeypatch.setattr(Engine, "generate", recording_generate)
    out = tmp_path / "out.png"
    size = ("--width", "64", "--height", "64")
    result = cli("generate", "a red fox", *TINY, *FAST, *size, "-o", out)
    assert result.code == 0, result.err
    assert threads["made"] == [threading.main_thread()]
    assert len(threads["generated"]) == 1
    assert threads["generated"][0] is not threading.main_thread()
