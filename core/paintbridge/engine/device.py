"""Which device and number type the engine computes with.

`auto` device: CUDA, then Apple MPS, then the CPU.
`auto` dtype: float16 on CUDA and MPS; on the CPU bfloat16 where the CPU computes it natively
(Intel AMX or AVX512-BF16: about 4x faster than float32 there) and float32 elsewhere (emulated
bfloat16 is slower than float32). An explicit setting wins, except float16 on an x86 CPU
that emulates it: SD 1.5's UNet runs tens of times slower there than in float32
(bench/cpu_dtypes.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paintbridge.engine.allocator import give_back_freed_memory
from paintbridge.errors import InvalidRequest

DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16")
_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
_FP16_CPU_FLAGS = ("amx_fp16", "avx512_fp16")


@dataclass(frozen=True)
class Placement:
    device: str  # "cpu", "cuda", "cuda:1", "mps"
    dtype: str  # one of DTYPES

    @property
    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU has AMX-BF16 or AVX512-BF16 (Linux flags, else torch's capability)."""
    flags = _cpu_flags(cpuinfo)
    if flags is not None:
        return any(flag in flags for flag in _BF16_CPU_FLAGS)
    import torch

    capability = str(torch.backends.cpu.get_cpu_capability())
    return capability in ("AVX512_BF16", "AMX") or "AMX" in capability


def cpu_emulates_fp16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True only where it is known: an x86 CPU (Linux's `flags` line) without AMX-FP16 or
    AVX512-FP16. Not on ARM (a `Features` line; most compute FP16), nor where there is no
    /proc/cpuinfo (Windows, macOS)."""
    flags = _cpu_flags(cpuinfo)
    return flags is not None and not any(flag in flags for flag in _FP16_CPU_FLAGS)


def _cpu_flags(cpuinfo: Path) -> set[str] | None:
    """The CPU's feature flags from Linux's /proc/cpuinfo; None where there is no such file."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[-1].split())
    return None


def resolve_device(setting: str) -> str:
    """The device named by `setting` (auto | cpu | cuda | cuda:N | mps), checked to exist."""
    import torch

    if setting == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if setting == "cpu":
        return "cpu"
    if setting == "mps":
        if not torch.backends.mps.is_available():
            raise InvalidRequest(
                "`device` is 'mps' but this torch cannot use Apple's GPU: use 'auto' or 'cpu'"
            )
        return "mps"
    if setting == "cuda" or setting.startswith("cuda:"):
        index_text = setting.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise InvalidRequest(f"`device` must be cuda or cuda:N, got {setting!r}")
        if not torch.cuda.is_available():
            raise InvalidRequest(
                f"`device` is {setting!r} but this torch has no CUDA GPU (a CPU-only build, or "
                "no driver): use 'auto' or 'cpu', or install a CUDA build of torch"
            )
        if int(index_text) >= torch.cuda.device_count():
            raise InvalidRequest(
                f"`device` is {setting!r} but there are {torch.cuda.device_count()} CUDA GPUs"
            )
        return setting
    raise InvalidRequest(f"`device` must be auto, cpu, cuda, cuda:N or mps, got {setting!r}")


def resolve_dtype(setting: str, device: str) -> str:
    """The dtype named by `setting` (auto | float32 | float16 | bfloat16) for `device`."""
    if setting != "auto":
        if setting not in DTYPES:
            raise InvalidRequest(f"`dtype` must be auto, {', '.join(DTYPES)}, got {setting!r}")
        if setting == "float16" and device == "cpu" and cpu_emulates_fp16():
            raise InvalidRequest(
                "`dtype` float16 runs on the CPU here (no GPU was chosen or found), and this "
                "CPU emulates float16: an image would take tens of times as long as in float32. "
                "Use dtype auto (or float32, bfloat16) on the CPU, or float16 with a "
                "GPU (device cuda or mps)"
            )
        return setting
    if device.startswith("cuda") or device == "mps":
        return "float16"
    return "bfloat16" if cpu_has_native_bf16() else "float32"


def resolve_placement(device: str, dtype: str) -> Placement:
    """Device and dtype for the settings `device` and `dtype` (see the module docstring)."""
    chosen = resolve_device(device)
    return Placement(device=chosen, dtype=resolve_dtype(dtype, chosen))


def free_memory(device: str) -> None:
    """Give cached memory back (after a failure, an unload) so the next call can run."""
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device == "mps" and torch.backends.mps.is_available():
        torch.mps.empty_cache()
    elif device == "cpu":
        give_back_freed_memory()


def set_cpu_threads(threads: int) -> None:
    """Use `threads` CPU threads for torch in this process (a process-wide setting)."""
    import torch

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InvalidRequest(f"`cpu_threads` must be a positive integer, got {threads!r}")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
