"""Device and dtype choice, scheduler names, and that importing the engine stays cheap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from paintbridge.engine import device as device_module
from paintbridge.engine import scheduler_names
from paintbridge.engine.device import (
    cpu_emulates_fp16,
    cpu_has_native_bf16,
    resolve_device,
    resolve_dtype,
)
from paintbridge.engine.schedulers import make_scheduler
from paintbridge.engine.testmodel import ensure_test_model
from paintbridge.errors import InvalidRequest


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ("fpu sse avx2 avx512f amx_bf16 amx_tile", True),
        ("fpu sse avx2 avx512f avx512_bf16", True),
        ("fpu sse avx2 avx512f", False),
    ],
)
def test_native_bf16_is_read_from_cpu_flags(tmp_path: Path, flags: str, native: bool) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t: {flags}\n")
    assert cpu_has_native_bf16(cpuinfo) is native


def test_auto_dtype_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_dtype("auto", "cuda") == "float16"
    assert resolve_dtype("auto", "cuda:1") == "float16"
    assert resolve_dtype("auto", "mps") == "float16"
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)
    assert resolve_dtype("auto", "cpu") == "bfloat16"
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: False)
    assert resolve_dtype("auto", "cpu") == "float32"
    monkeypatch.setattr(device_module, "cpu_emulates_fp16", lambda: False)
    for explicit in ("float32", "float16", "bfloat16"):  # settings override all
        assert resolve_dtype(explicit, "cpu") == explicit
        assert resolve_dtype(explicit, "cuda") == explicit


def test_float16_on_a_cpu_that_emulates_it_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's emulated float16 runs SD 1.5's UNet 33x slower than float32 (bench/cpu_dtypes):
    an image in most of an hour, which nobody asks for on purpose (a GPU setting on a machine
    whose GPU was not found)."""
    monkeypatch.setattr(device_module, "cpu_emulates_fp16", lambda: True)
    with pytest.raises(InvalidRequest, match=r"emulates float16.*dtype auto.*float16 with a GPU"):
        resolve_dtype("float16", "cpu")
    assert resolve_dtype("float16", "cuda") == "float16"
    assert resolve_dtype("float16", "mps") == "float16"
    assert resolve_dtype("bfloat16", "cpu") == "bfloat16"


@pytest.mark.parametrize(
    ("line", "emulates"),
    [
        ("flags\t\t: fpu avx2 avx512f avx512_fp16 amx_bf16", False),
        ("flags\t\t: fpu avx2 avx512f amx_bf16 amx_fp16 amx_tile", False),
        ("flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16", True),
        ("Features\t: fp asimd fphp asimdhp cpuid", False),  # ARM: not known to emulate it
    ],
)
def test_emulated_fp16_is_read_from_x86_cpu_flags(
    tmp_path: Path, line: str, emulates: bool
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\n{line}\n")
    assert cpu_emulates_fp16(cpuinfo) is emulates
    assert cpu_emulates_fp16(tmp_path / "missing") is False  # no /proc/cpuinfo: Windows, macOS


def test_device_and_dtype_settings_are_checked() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda", "mps")
    with pytest.raises(InvalidRequest, match="`device` must be auto, cpu, cuda, cuda:N or mps"):
        resolve_device("gpu")
    with pytest.raises(InvalidRequest, match="`dtype` must be auto, float32"):
        resolve_dtype("fp8", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidRequest, match="has no CUDA GPU"):
            resolve_device("cuda")
        assert resolve_device("auto") != "cuda"


def test_every_scheduler_builds_from_the_model_config() -> None:
    from diffusers import DDIMScheduler

    config = DDIMScheduler.from_pretrained(ensure_test_model("test:tiny") / "scheduler").config
    expected = {
        "default": "DDIMScheduler",
        "ddim": "DDIMScheduler",
        "euler": "EulerDiscreteScheduler",
        "euler_a": "EulerAncestralDiscreteScheduler",
        "dpm++": "DPMSolverMultistepScheduler",
        "dpm++_karras": "DPMSolverMultistepScheduler",
        "pndm": "PNDMScheduler",
        "unipc": "UniPCMultistepScheduler",
        "heun": "HeunDiscreteScheduler",
    }
    assert set(expected) <= set(scheduler_names())
    for name in scheduler_names():
        scheduler = make_scheduler(name, config)
        assert scheduler.config.num_train_timesteps == config.num_train_timesteps
        assert scheduler.config.beta_schedule == config.beta_schedule  # the model's training
        if name in expected:
            assert type(scheduler).__name__ == expected[name]
    assert make_scheduler("dpm++_karras", config).config.use_karras_sigmas is True
    assert make_scheduler("dpm++", config).config.use_karras_sigmas is False


def test_unknown_scheduler_lists_the_names() -> None:
    with pytest.raises(InvalidRequest, match="`scheduler` must be one of default, ddim, .*euler_a"):
        make_scheduler("k_fancy", {})


def test_importing_the_engine_does_not_import_torch() -> None:
    code = (
        "import sys, paintbridge.engine as e\n"
        "e.check_request, e.scheduler_names(), e.list_models(e.EngineSettings())\n"
        "from paintbridge.engine.models import resolve_model\n"
        "for name in ('test:tiny', 'sd15', 'org/name'):\n"
        "    resolve_model(name, e.EngineSettings())\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert e.Engine.__name__ == 'Engine'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
