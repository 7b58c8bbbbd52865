"""Command-line options reach the engine's settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import RunCli

from paintbridge.cli import build_parser
from paintbridge.cli.common import engine_settings


def test_memory_switches_reach_the_engine_settings() -> None:
    args = build_parser().parse_args(
        ["generate", "p", "-o", "x.png", "--low-memory", "on", "--cpu-offload"]
    )
    settings = engine_settings(args)
    assert settings.low_memory == "on" and settings.cpu_offload is True


def test_memory_switches_default_to_automatic() -> None:
    settings = engine_settings(build_parser().parse_args(["generate", "p", "-o", "x.png"]))
    assert settings.low_memory == "auto" and settings.cpu_offload is False


def test_cpu_threads_reach_the_engine_settings() -> None:
    serve = build_parser().parse_args(["serve", "--cpu-threads", "1"])
    assert engine_settings(serve).cpu_threads == 1
    assert engine_settings(build_parser().parse_args(["serve"])).cpu_threads is None


def test_compile_is_opt_in_on_every_generating_command() -> None:
    out = ["-o", "out.png"]
    for command in (["serve"], ["generate", "x", *out], ["img2img", "in.png", "x", *out]):
        assert engine_settings(build_parser().parse_args(command)).compile is False
        assert engine_settings(build_parser().parse_args([*command, "--compile"])).compile is True


def test_zero_cpu_threads_is_refused_with_the_reason(capsys) -> None:
    import pytest

    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--cpu-threads", "0"])
    assert "--cpu-threads: must be a whole number of 1 or more, got '0'" in capsys.readouterr().err


def test_more_cpu_threads_than_cores_are_refused(capsys, monkeypatch) -> None:
    """100000 crashed serve (a segmentation fault) after "serving on"."""
    import pytest

    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert (
        engine_settings(build_parser().parse_args(["serve", "--cpu-threads", "4"])).cpu_threads == 4
    )
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--cpu-threads", "100000"])
    err = capsys.readouterr().err
    assert "--cpu-threads: must be at most 4, this machine's logical cores, got '100000'" in err


def test_keep_memory_seconds_reaches_the_server_settings() -> None:
    import pytest

    from paintbridge.cli.serve import build_settings
    from paintbridge.errors import InvalidRequest

    def settings(*extra: str):  # type: ignore[no-untyped-def]
        return build_settings(build_parser().parse_args(["serve", "--token", "t", *extra]), 7860)

    assert settings().idle_seconds == 60.0
    assert settings("--keep-memory-seconds", "0").idle_seconds == 0.0
    for bad in ("-1", "nan"):
        with pytest.raises(InvalidRequest, match="--keep-memory-seconds must be 0 or more"):
            settings("--keep-memory-seconds", bad)


def test_models_dir_adds_a_folder_after_the_default_one(cli: RunCli, tmp_path: Path) -> None:
    """--models-dir replaced paintbridge's models folder, though README and --help say it adds
    one: `paintbridge models --models-dir X` lost the models of the default folder."""
    import json

    from paintbridge import config

    default = config.models_dir()
    extra = tmp_path / "more"
    for folder, name in ((default, "in-default"), (extra, "in-extra")):
        (folder / name).mkdir(parents=True)
        (folder / name / "model_index.json").write_text("{}")
    added = ["--models-dir", str(extra), "--models-dir", str(default), "--models-dir", str(extra)]
    for command in (["serve"], ["generate", "x", "-o", "out.png"]):
        settings = engine_settings(build_parser().parse_args([*command, *added]))
        assert settings.model_dirs == (default, extra)
        assert engine_settings(build_parser().parse_args(command)).model_dirs == (default,)
    result = cli("models", "--json", *added)
    assert result.code == 0, result.err
    assert {"in-default", "in-extra"} <= {row["name"] for row in json.loads(result.out)}
    for command in ("serve", "models"):
        text = " ".join(cli(command, "--help").out.split())
        assert "searched after paintbridge's models folder" in text


def test_a_models_dir_with_a_tilde_no_shell_expanded_is_searched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--models-dir=~/m` reaches paintbridge with its `~`: it was checked expanded but kept
    as written, so the folder's models were never found."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m").mkdir()
    settings = engine_settings(build_parser().parse_args(["serve", "--models-dir=~/m"]))
    assert settings.model_dirs[-1] == tmp_path / "m"


def test_a_models_dir_that_is_not_a_folder_is_refused(cli: RunCli, tmp_path: Path) -> None:
    """A mistyped --models-dir was taken silently; its models were then 'unknown'."""
    (tmp_path / "a-file").write_text("")
    for bad in (tmp_path / "missing", tmp_path / "a-file"):
        for command in (("models",), ("generate", "x", "-o", str(tmp_path / "o.png"))):
            result = cli(*command, "--models-dir", str(bad))
            assert result.code == 2, (command, result.out, result.err)
            assert f"--models-dir must be a folder, got '{bad}'" in result.err
