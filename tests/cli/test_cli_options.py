"""Command-line options reach the engine's settings."""

from __future__ import annotations

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
