"""Every bad input gives a one-line message and a non-zero exit, never a traceback, and writes
nothing; Ctrl-C cancels cleanly with exit 130."""

from __future__ import annotations

import dataclasses
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cli_support import PAINTBRIDGE, RunCli, box_mask, noise_image, run_subprocess, subprocess_env

from paintbridge.cli import build_parser

LONG = "a" * 300
LONG_PNG, LONG_DIR = "{" + LONG + ".png}", "{" + LONG + "}"  # placeholders, as "{out}"
TINY = ("--model", "test:tiny", "--steps", "2")  # right after the subcommand: a case overrides


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Input files, good and bad, in `in/`; outputs go to `out/`, which must stay empty."""
    folder = tmp_path / "in"
    folder.mkdir()
    (tmp_path / "out").mkdir()
    paths = {name: folder / name for name in ("image.png", "mask.png", "small-mask.png")}
    noise_image((64, 64)).save(paths["image.png"])
    box_mask((64, 64), (8, 8, 40, 40)).save(paths["mask.png"])
    box_mask((32, 32), (8, 8, 24, 24)).save(paths["small-mask.png"])
    paths["empty-mask.png"] = folder / "empty-mask.png"
    box_mask((64, 64), None).save(paths["empty-mask.png"])
    paths["text.png"] = folder / "text.png"
    paths["text.png"].write_text("not an image")
    paths["truncated.png"] = folder / "truncated.png"
    paths["truncated.png"].write_bytes(paths["image.png"].read_bytes()[:200])
    paths["huge.png"] = folder / "huge.png"
    box_mask((9000, 8), None).save(paths["huge.png"])  # wider than any model may take
    paths["a-file"] = folder / "a-file"
    paths["a-file"].write_text("x")
    paths["out"] = tmp_path / "out" / "result.png"
    return paths


# (arguments, a regex the message must match); {name} is a path from `files`
CASES: list[tuple[list[str], str]] = [
    (["img2img", "{missing.png}", "p", "-o", "{out}"], r"does not exist"),
    (["img2img", "{text.png}", "p", "-o", "{out}"], r"not an image file"),
    (["img2img", "{truncated.png}", "p", "-o", "{out}"], r"cannot read image"),
    (["img2img", "{huge.png}", "p", "-o", "{out}"], r"error: image .*huge\.png' is too large"),
    (["img2img", "{in}", "p", "-o", "{out}"], r"is not a file"),
    (
        ["inpaint", "{image.png}", "{small-mask.png}", "p", "-o", "{out}"],
        r"`mask` must be the size",
    ),
    (["inpaint", "{image.png}", "{empty-mask.png}", "p", "-o", "{out}"], r"mask is empty"),
    (["inpaint", "{image.png}", "{text.png}", "p", "-o", "{out}"], r"mask .* not an image file"),
    (["generate", "p", "--width", "0", "-o", "{out}"], r"--width: must be at least 1"),
    (["generate", "p", "--height", "-64", "-o", "{out}"], r"--height: must be at least 1"),
    (["generate", "p", "--width", "abc", "-o", "{out}"], r"--width: must be a whole number"),
    (["generate", "p", "--width", "100000", "--height", "64", "-o", "{out}"], r"`width` must be"),
    (["generate", "p", "--width", "8000", "--height", "8000", "-o", "{out}"], r"pixels"),
    (["generate", "p", "--steps", "0", "-o", "{out}"], r"`steps` must be in \[1, 150\]"),
    (["generate", "p", "--steps", "1000", "-o", "{out}"], r"`steps` must be in \[1, 150\]"),
    (["generate", "p", "--count", "0", "-o", "{out}"], r"--count: must be at least 1"),
    (["generate", "p", "--count", "99", "-o", "{out}"], r"`count` must be in"),
    (["generate", "p", "--guidance", "nan", "-o", "{out}"], r"`guidance` must be a finite"),
    (["generate", "p", "--seed", "-1", "-o", "{out}"], r"`seed` must be in"),
    (["img2img", "{image.png}", "p", "--strength", "1.5", "-o", "{out}"], r"`strength` must be"),
    (["img2img", "{image.png}", "p", "--strength", "-0.1", "-o", "{out}"], r"`strength` must be"),
    (["img2img", "{image.png}", "p", "--strength", "0", "-o", "{out}"], r"`strength` must be"),
    (["generate", "p", "--scheduler", "warp9", "-o", "{out}"], r"scheduler.*'warp9'"),
    (["generate", "p", "--seamless", "z", "-o", "{out}"], r"invalid choice"),
    (["generate", "p", "--dtype", "int8", "-o", "{out}"], r"invalid choice"),
    (["generate", "p", "-o", "{out}.jpg"], r"must name a \.png file"),
    (["generate", "p", "-o", "{a-file}/x.png"], r"is a file, not a folder"),
    (["generate", "p", "--model-config", "{missing.png}", "-o", "{out}"], r"--model-config"),
    # a prompt typed in Latin-1 on a UTF-8 system: bytes Python keeps as lone surrogates
    (["generate", "caf\udce9", "-o", "{out}"], r"`prompt` is not valid Unicode text"),
    # names longer than the file system takes (255 bytes on Linux)
    (["generate", "p", "-o", LONG_PNG], r"File name too long"),
    (["img2img", LONG_PNG, "p", "-o", "{out}"], r"File name too long"),
    (["inpaint", "{image.png}", LONG_PNG, "p", "-o", "{out}"], r"File name too long"),
    (["generate", "p", "--models-dir", LONG_DIR, "-o", "{out}"], r"File name too long"),
    (["generate", "p", "--model-config", LONG_DIR, "-o", "{out}"], r"File name too long"),
    (["demo", "--out", LONG_DIR], r"File name too long"),
]
# model problems: the test-model arguments would override these, so they run without TINY
MODEL_CASES: list[tuple[list[str], str]] = [
    (["generate", "p", "--model", "no-such-model", "-o", "{out}"], r"unknown model"),
    (
        ["generate", "p", "--model", "{missing.png}.safetensors", "-o", "{out}"],
        r"no model (file )?at .*check the path",
    ),
    (["generate", "p", "--model", "sd15", "-o", "{out}"], r"offline"),
    (["generate", "p", "--model", "test:tiny", "--device", "cuda:7", "-o", "{out}"], r"device"),
]


def _fill(args: list[str], files: dict[str, Path]) -> list[str]:
    def path(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in files:
            return str(files[name])
        if name == "in":
            return str(files["image.png"].parent)
        return str(files["image.png"].parent / name)

    return [re.sub(r"\{([^}]+)\}", path, arg) for arg in args]


def _assert_clean_failure(code: int, err: str, pattern: str, files: dict[str, Path]) -> None:
    assert code != 0
    assert "Traceback" not in err
    assert re.search(pattern, err), err
    message = [line for line in err.splitlines() if "error:" in line]
    assert len(message) == 1, err  # one line that says what is wrong
    assert "usage:" not in err, err  # not argparse's whole usage before it
    assert list(files["out"].parent.iterdir()) == []  # nothing written


@pytest.mark.parametrize(
    ("args", "pattern"), CASES, ids=[" ".join(a).replace(LONG, "LONG") for a, _ in CASES]
)
def test_bad_input(cli: RunCli, files: dict[str, Path], args: list[str], pattern: str) -> None:
    command, *rest = _fill(args, files)
    result = cli(command, *TINY, *rest)
    _assert_clean_failure(result.code, result.err, pattern, files)


@pytest.mark.parametrize(
    ("args", "pattern"), MODEL_CASES, ids=[" ".join(a) for a, _ in MODEL_CASES]
)
def test_bad_model(cli: RunCli, files: dict[str, Path], args: list[str], pattern: str) -> None:
    command, *rest = _fill(args, files)
    result = cli(command, "--steps", "2", *rest)
    _assert_clean_failure(result.code, result.err, pattern, files)


# requests a server refuses at submit (400): the CLI says the same in one line
SUBMIT_CASES: list[tuple[list[str], str]] = [
    (
        ["img2img", "{image.png}", "p", "--strength", "0.001", "-o", "{out}"],
        r"`strength` 0\.001 is too low for the default steps: it needs 1000 steps",
    ),
    (
        ["generate", "p", "--model", "test:tiny-inpaint", "--steps", "2", "-o", "{out}"],
        r"'test:tiny-inpaint' is an inpainting model .* can only inpaint, got task 'txt2img'",
    ),
]


@pytest.mark.parametrize(
    ("args", "pattern"), SUBMIT_CASES, ids=[" ".join(a) for a, _ in SUBMIT_CASES]
)
def test_a_request_the_server_refuses_at_submit(
    cli: RunCli, files: dict[str, Path], args: list[str], pattern: str
) -> None:
    """Without --steps the model's default, raised for a low strength, must stay in range; a
    txt2img needs a model that does txt2img. Same message as the server's 400."""
    command, *rest = _fill(args, files)
    result = cli(command, "--model", "test:tiny", *rest)
    _assert_clean_failure(result.code, result.err, pattern, files)
    assert "loading" not in result.err  # refused before loading (the CLI loads, then generates)


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--device", "cuda:99"], r"`device` is 'cuda:99' but"),
        (["--device", "bogus"], r"`device` must be auto, cpu, cuda, cuda:N or mps, got 'bogus'"),
        # the README's remote URL typed where the proxy's host name goes: every request a 421
        (["--allow-host", "https://gpu.example.org"], r"a name alone.*'https://gpu.example.org'"),
        (["--allow-host", "gpu.example.org:8443"], r"without its port"),
    ],
)
def test_serve_refuses_a_device_before_serving(
    tmp_path: Path, args: list[str], pattern: str
) -> None:
    """Without --preload the engine is first made in the server's startup: a device it refuses
    must be the CLI's one-line error (exit 2), not "serving on" and then uvicorn's traceback."""
    result = run_subprocess("serve", "--port", "0", "--model", "test:tiny", *args, timeout=120)
    assert result.code == 2, result.err
    assert "Traceback" not in result.err and "serving on" not in result.err
    assert re.search(pattern, result.err), result.err
    assert len([line for line in result.err.splitlines() if "error:" in line]) == 1, result.err
    assert not (tmp_path / "config" / "server.json").exists()


def test_serve_refuses_a_config_folder_it_cannot_write_before_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """server.json is written in the app's startup: an unwritable folder was "serving on",
    then a traceback and exit 3."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("PAINTBRIDGE_CONFIG_DIR", str(blocker / "config"))
    result = run_subprocess("serve", "--port", "0", "--model", "test:tiny", timeout=120)
    assert result.code == 2, result.err
    assert "Traceback" not in result.err and "serving on" not in result.err
    assert "cannot write" in result.err and "PAINTBRIDGE_CONFIG_DIR" in result.err, result.err


def test_serve_refuses_a_model_it_cannot_serve(cli: RunCli, tmp_path: Path) -> None:
    """A typo in --model started a server whose every job then failed."""
    history = tmp_path / "new-history"
    result = cli("serve", "--port", "0", "--model", "test:tinny", "--history-dir", history)
    assert result.code == 2 and "serving on" not in result.err
    assert "--model 'test:tinny' cannot be served: " in result.err, result.err
    assert not (tmp_path.parent / "config" / "server.json").exists()
    assert not history.exists()  # refused before the folder was made


def test_serve_warns_when_its_built_in_default_model_cannot_be_used(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --model it still serves (jobs may name other models; a plug-in shows their
    failure): it says why jobs that name none will fail."""
    from paintbridge.cli.serve import _check_default_model, build_settings

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(["serve", "--models-dir", str(Path(__file__).parent)])
    settings = build_settings(args, 7860)
    settings = dataclasses.replace(
        settings, engine=dataclasses.replace(settings.engine, default_model="no-such-model")
    )
    _check_default_model(args, settings)
    err = capsys.readouterr().err
    assert "warning: the default model 'no-such-model' cannot be used" in err, err
    assert "Pass --model to serve another" in err


@pytest.mark.parametrize("token", ["pässwörd", "tab\there"])
def test_serve_refuses_a_token_that_is_not_printable_ascii(cli: RunCli, token: str) -> None:
    """Clients send a non-ASCII token as UTF-8 or Latin-1: it worked from some, not others."""
    result = cli("serve", "--port", "0", "--model", "test:tiny", "--token", token)
    assert result.code == 2
    assert "must be printable ASCII" in result.err, result.err


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1"])
def test_serve_refuses_a_body_limit_that_is_not_a_positive_number(cli: RunCli, value: str) -> None:
    result = cli("serve", "--port", "0", "--model", "test:tiny", f"--max-body-mb={value}")
    assert result.code == 2
    assert "--max-body-mb must be a finite number of MiB above 0" in result.err, result.err


def test_bad_input_in_a_real_subprocess(files: dict[str, Path]) -> None:
    for args, pattern in (CASES[1], CASES[5], CASES[-1], MODEL_CASES[2]):
        command, *rest = _fill(args, files)
        result = run_subprocess(command, "--steps", "2", *rest)
        _assert_clean_failure(result.code, result.err, pattern, files)


def test_ctrl_c_cancels_cleanly(tmp_path: Path) -> None:
    """SIGINT after the first progress output: exit 130, no output file, no traceback."""
    out = tmp_path / "never.png"
    proc = subprocess.Popen(
        [str(PAINTBRIDGE), "generate", "a slow one", "--model", "test:tiny", "--width", "128",
         "--height", "128", "--steps", "150", "--count", "8", "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(),
    )  # fmt: skip
    assert proc.stderr is not None and proc.stdout is not None
    err = bytearray()
    progressed = threading.Event()

    def read_stderr() -> None:
        assert proc.stderr is not None
        while chunk := proc.stderr.read1(4096):  # type: ignore[attr-defined]
            err.extend(chunk)
            if re.search(rb"\d+/1200", err):
                progressed.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert progressed.wait(120), f"no progress output: {err.decode(errors='replace')}"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    text = err.decode(errors="replace")
    stdout = proc.stdout.read().decode(errors="replace")
    proc.stdout.close()
    proc.stderr.close()
    assert code == 130, text
    assert "cancelled, nothing written" in text
    assert "Traceback" not in text
    assert "wrote" not in stdout
    assert list(tmp_path.iterdir()) == []  # no image, no temp file
    assert time.monotonic() - sent < 30  # stopped at a step, not at the end of 1200


def test_ctrl_c_while_the_subcommands_import_is_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C in the first moments (build_parser imports every subcommand) is the same clean
    "interrupted" as later, not a traceback."""
    import paintbridge.cli as cli

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["models"]) == 130
    assert capsys.readouterr().err == "paintbridge: interrupted\n"


def test_a_reader_that_goes_away_ends_the_output_quietly() -> None:
    """`paintbridge models | head`: the pipe closes before the list is written; that was a
    BrokenPipeError traceback."""
    proc = subprocess.Popen(
        [str(PAINTBRIDGE), "models", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the child has written anything
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_float16_on_a_cpu_that_emulates_it(
    cli: RunCli, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GPU's --dtype float16 where the CPU runs the model and emulates float16 (this machine
    may not): a one-line error that names what to use, before any model loads."""
    from paintbridge.engine import device

    monkeypatch.setattr(device, "cpu_emulates_fp16", lambda: True)
    args = ["generate", "p", "--device", "cpu", "--dtype", "float16", "-o", "{out}"]
    command, *rest = _fill(args, files)
    result = cli(command, *TINY, *rest)
    _assert_clean_failure(result.code, result.err, r"emulates float16.*dtype auto", files)
    assert "loading" not in result.err


def test_overwrite_never_replaces_a_folder(cli: RunCli, tmp_path: Path) -> None:
    """--overwrite replaces files: a folder at one of the names is refused before the model
    loads, not found after the first image was written."""
    (tmp_path / "dd-2.png").mkdir()
    args = ("generate", "p", *TINY, "--count", "2", "--overwrite", "-o", tmp_path / "dd.png")
    result = cli(*args)
    assert result.code == 2 and "loading" not in result.err, result.err
    assert re.search(r"error: '.*dd-2\.png' is a folder: choose another", result.err), result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dd-2.png"]


def test_plugins_without_an_action_is_a_usage_error(cli: RunCli) -> None:
    result = cli("plugins")
    assert result.code == 2 and result.out == ""
    assert "usage: paintbridge plugins" in result.err and "install" in result.err


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["history", "--history-dir", "{missing}"], r"--history-dir '.*missing' is not a folder"),
        (["history", "export", "ab12", "--out", "{x}", "--history-dir", "{missing}"], "not a f"),
        (["plugins", "build", "--out", "{a-file}"], r"--out takes a folder; '.*a-file' is a file"),
    ],
)
def test_folders_that_are_not_there(
    cli: RunCli, tmp_path: Path, args: list[str], pattern: str
) -> None:
    """A history folder that does not exist is not "no results yet" (exit 0); a file given as
    the bundles' folder is not "File exists"."""
    (tmp_path / "a-file").write_text("x")
    result = cli(*[a.format(**{n: tmp_path / n for n in ("missing", "x", "a-file")}) for a in args])
    assert result.code == 2 and re.search(pattern, result.err), result.err
    assert len(result.err.splitlines()) == 1, result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--model", "test:tiny-inpaint"], r"can only inpaint, got task 'txt2img'"),
        (["--model", "test:tiny", "--steps", "1"], r"demo's img2img \(strength 0\.6\): `steps`"),
        (["--model", "sd15"], r"offline"),  # found out as it loads: its folder goes again
    ],
)
def test_demo_refuses_before_it_makes_a_folder_or_loads(
    cli: RunCli, tmp_path: Path, args: list[str], pattern: str
) -> None:
    """What the demo's later steps would refuse is said before the first image (and before a
    model download): it wrote txt2img.png, then failed."""
    result = cli("demo", "--out", tmp_path / "new" / "demo", *args)
    assert result.code == 2 and re.search(pattern, result.err), result.err
    assert list(tmp_path.iterdir()) == []
    assert "loading" not in result.err or "offline" in pattern


def test_a_model_that_fails_to_load_leaves_no_new_folder(cli: RunCli, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text("{}")
    out = tmp_path / "new" / "sub" / "image.png"
    result = cli("generate", "p", "--model", broken, "--steps", "2", "-o", out)
    assert result.code == 2 and "cannot load model" in result.err, result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]
