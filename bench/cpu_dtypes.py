"""The CPU's number types: how long SD 1.5's two kinds of heavy work take in float32, bfloat16
and float16 on this CPU, and which of them it computes natively (its AMX / AVX512 flags).

Why the engine refuses float16 on a CPU that emulates it (engine/device.py): torch's float16
kernels there are tens of times slower than float32, so an image that takes a minute would take
most of an hour. Work, at SD 1.5's shapes (batch 2, as with guidance), at a 32x32 latent (a
256 px image) so that the emulated kinds finish: a UNet resnet's 3x3 convolution (320 -> 320
channels), a transformer block's feed-forward linear (1024 tokens, 320 -> 2560), and (not with
`--quick`) a whole forward of SD 1.5's UNet with random weights (bench/sd15_random.py's
configuration; at most 2 repeats: float16 takes minutes). Each is called once before its
repeats (oneDNN picks its kernels on the first call).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from report import Report, Timing, cpu_flags

SECTION = "cpu_dtypes"
COLUMNS = ("work", "dtype", "native", "repeats", "ms", "vs_float32")
DTYPES = ("float32", "bfloat16", "float16")
NATIVE_FLAGS = {"bfloat16": ("amx_bf16", "avx512_bf16"), "float16": ("amx_fp16", "avx512_fp16")}


def run(report: Report) -> None:
    import torch

    report.section(SECTION, "float32, bfloat16 and float16 on this CPU (SD 1.5 shapes)", COLUMNS)
    repeats = report.repeats or 3
    flags = cpu_flags()
    work_items = dict(WORK)
    if not report.quick:
        work_items["SD 1.5 UNet forward, 32x32 latent"] = _unet
    for work, make in work_items.items():
        float32_ms = None
        for name in DTYPES:
            dtype = getattr(torch, name)
            call = make(torch, dtype)
            timing = _time(call, min(repeats, 2) if make is _unet else repeats)
            ms = timing.median * 1000
            float32_ms = float32_ms or ms
            native = name == "float32" or any(f in flags for f in NATIVE_FLAGS[name])
            report.add(
                SECTION,
                {
                    "work": work,
                    "dtype": name,
                    "native": native,
                    "repeats": len(timing.seconds),
                    "ms": round(ms, 2),
                    "vs_float32": round(ms / float32_ms, 2),
                },
            )
    _UNET_CACHE.clear()
    report.note(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, capability "
        f"{torch.backends.cpu.get_cpu_capability()}; vs_float32: this row's median over the "
        "float32 row's",
        SECTION,
    )


def _conv(torch: Any, dtype: Any) -> Callable[[], Any]:
    layer = torch.nn.Conv2d(320, 320, 3, padding=1).to(dtype).eval()
    x = torch.randn(2, 320, 32, 32, dtype=dtype)
    return lambda: layer(x)


def _linear(torch: Any, dtype: Any) -> Callable[[], Any]:
    layer = torch.nn.Linear(320, 2560).to(dtype).eval()
    x = torch.randn(2, 1024, 320, dtype=dtype)
    return lambda: layer(x)


_UNET_CACHE: dict[str, Any] = {}


def _unet(torch: Any, dtype: Any) -> Callable[[], Any]:
    if "unet" not in _UNET_CACHE:
        from diffusers import UNet2DConditionModel

        from sd15_random import UNET

        torch.manual_seed(0)
        _UNET_CACHE["unet"] = UNet2DConditionModel(**UNET).eval()
    unet = _UNET_CACHE["unet"].to(dtype)  # in place: float32 first, then the others
    latents = torch.randn(2, 4, 32, 32, dtype=dtype)
    prompt = torch.randn(2, 77, 768, dtype=dtype)
    return lambda: unet(latents, 500, prompt)


WORK = {"resnet conv 3x3, 320 ch, 32x32": _conv, "feed-forward linear 320->2560": _linear}


def _time(call: Callable[[], Any], repeats: int) -> Timing:
    import torch

    seconds = []
    with torch.inference_mode():
        call()
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - start)
    return Timing(seconds)
