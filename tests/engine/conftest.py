"""Engines loaded with the tiny random-weight test models, shared by the whole session.

Tests that change an engine's settings or loaded model make their own Engine.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from paintbridge.engine import EngineSettings


@pytest.fixture(scope="package", autouse=True)
def one_cpu_thread() -> Iterator[None]:
    """The tiny model is fastest on one thread, and on a shared CPU two threads spin against
    other processes (measured: 0.2 s vs 3-7 s per 64 px image under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def engine() -> Iterator[object]:
    from paintbridge.engine import Engine

    loaded = Engine(EngineSettings(default_model="test:tiny"))
    loaded.load("test:tiny")
    yield loaded
    loaded.unload()


@pytest.fixture(scope="session")
def inpaint_engine() -> Iterator[object]:
    from paintbridge.engine import Engine

    loaded = Engine(EngineSettings(default_model="test:tiny-inpaint"))
    loaded.load()
    yield loaded
    loaded.unload()
