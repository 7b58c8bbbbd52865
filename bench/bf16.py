"""bfloat16 accuracy (issue 7, item 8): how far bf16 results are from float32 on the same seed.

Model: the random-weight, full-size SD 1.5 pipeline (bench/sd15_random.py), plain diffusers
txt2img with its own scheduler, guidance 7.5, one seed. Reference: everything in float32.
Relative error = ||x - ref|| / ||ref|| over the final latents, or over the decoded image (0..1);
the image also gets its largest difference in 8-bit levels and its PSNR.

Where the CPU computes bf16 natively (AMX / AVX512-BF16), bf16 runs for real: the bf16 side is
the engine's own loaded pipeline (`--dtype bfloat16`: every component in bf16, the UNet and the
VAE in channels_last, the UNet's weights packed for oneDNN: engine/prepack.py), and the VAE
variants decode its latents with the float32 VAE or decode the float32 latents with the bf16
VAE. Generation times (no decode) and decode times are given for both dtypes.

On a CPU without native bf16, torch's bf16 kernels are about a hundred times slower than
float32, so a whole bf16 generation cannot run. bf16 is therefore simulated on float32 kernels:
weights rounded to bf16, and every module's floating-point inputs and outputs rounded to bf16
(to bf16 and back), the latents rounded after each scheduler step as the pipeline keeps them in
bf16. Inside a module the arithmetic stays float32, as native bf16 kernels accumulate in
float32; the adds and scalings between modules are not rounded, so this can understate the
error slightly (on a native-bf16 CPU the real runs came within a level of the simulated ones).
To check the simulation, one UNet forward at a small size runs in real torch bf16 (emulated on
such a CPU: its time is reported, labelled so) and simulated, both against float32.

Variants, on the same seed: text encoder + UNet in bf16 with the VAE in float32; everything in
bf16 (what the engine does with dtype bfloat16, see the note); and the VAE decode alone in bf16
on the float32 latents (its own share of the image error). image_mean_diff_8bit and
image_max_diff_8bit compare the 8-bit images.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from report import Report

SECTION = "bf16"
COLUMNS = (
    "variant",
    "size",
    "steps",
    "latents_rel_err",
    "image_rel_err",
    "image_mean_diff_8bit",
    "image_max_diff_8bit",
    "image_psnr_db",
    "fp32_s",
    "bf16_s",
)
PROMPT = "a lighthouse on a cliff at sunset, oil painting"
SEED = 1234
GUIDANCE = 7.5
FULL = (512, 10)  # size, steps
QUICK = (128, 2)
CHECK_SIZE = 32  # the real-bf16 UNet forward: emulated bf16 is slow


def run(report: Report) -> None:
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    from paintbridge.engine.device import cpu_has_native_bf16
    from sd15_random import ensure_sd15_random

    diffusers_logging.disable_progress_bar()
    report.section(SECTION, "bf16 accuracy: bf16 vs float32 on the same seed (SD 1.5)", COLUMNS)
    report.note(engine_dtypes(), SECTION)
    size, steps = QUICK if report.quick else FULL
    if report.quick:
        report.note(
            f"quick mode: {size} px, {steps} steps (full mode: {FULL[0]} px, {FULL[1]})", SECTION
        )

    sd15 = ensure_sd15_random(report.cache_dir)
    pipe = StableDiffusionPipeline.from_pretrained(sd15, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    base = {"size": f"{size}x{size}", "steps": steps}
    if cpu_has_native_bf16():
        real_bf16(report, pipe, sd15, size, steps, base)
    else:
        simulated_bf16(report, pipe, size, steps, base)
    report.note(
        "random weights: a trained model's activations differ, so read these errors as the "
        "size of bf16 rounding through this architecture, not as a quality verdict",
        SECTION,
    )
    del pipe
    gc.collect()


def real_bf16(
    report: Report, pipe: Any, folder: Path, size: int, steps: int, base: dict[str, Any]
) -> None:
    """Native bf16: the engine's bf16 pipeline against float32 diffusers, for real."""
    import torch

    from paintbridge.engine import Engine
    from paintbridge.engine.types import EngineSettings

    engine = Engine(
        EngineSettings(
            device="cpu", dtype="bfloat16", allow_any_path=True, model_dirs=(folder.parent,)
        )
    )
    engine.load(str(folder))
    bf16 = engine._model.base  # noqa: SLF001 (a benchmark probe of the loaded pipeline)
    generate(bf16, 64, 1, round_latents=False)  # warm-ups: first calls are slower
    decode(bf16.vae, torch.zeros(1, 4, 8, 8))
    decode(pipe.vae, torch.zeros(1, 4, 8, 8))

    ref_latents, fp32_s = timed(generate, pipe, size, steps, round_latents=False)
    latents, bf16_s = timed(generate, bf16, size, steps, round_latents=False)
    ref_image, fp32_decode_s = timed(decode, pipe.vae, ref_latents)
    image_all, bf16_decode_s = timed(decode, bf16.vae, latents)
    image_vae32 = decode(pipe.vae, latents)
    vae_only = decode(bf16.vae, ref_latents)
    lat_err = rel_err(latents, ref_latents)
    report.add(
        SECTION,
        {
            "variant": "text encoder + UNet bf16, VAE float32",
            **base,
            "latents_rel_err": lat_err,
            **image_errors(image_vae32, ref_image),
            "fp32_s": fp32_s,
            "bf16_s": bf16_s,
        },
    )
    report.add(
        SECTION,
        {
            "variant": "all bf16: the engine's choice on this CPU",
            **base,
            "latents_rel_err": lat_err,
            **image_errors(image_all, ref_image),
            "fp32_s": fp32_s + fp32_decode_s,
            "bf16_s": bf16_s + bf16_decode_s,
        },
    )
    report.add(
        SECTION,
        {
            "variant": "VAE decode alone bf16, float32 latents",
            **base,
            **image_errors(vae_only, ref_image),
            "fp32_s": fp32_decode_s,
            "bf16_s": bf16_decode_s,
        },
    )
    report.note(
        "fp32_s / bf16_s: the generation without its decode (first row), with it (second), the "
        "decode alone (third); the bf16 side is the engine's pipeline (channels_last, UNet packed)",
        SECTION,
    )
    engine.unload()


def simulated_bf16(report: Report, pipe: Any, size: int, steps: int, base: dict[str, Any]) -> None:
    """No native bf16: bf16 simulated on float32 kernels, checked on one small UNet call."""
    check = UnetCheck(pipe.unet, CHECK_SIZE)
    report.add(SECTION, check.real_bf16())

    ref_latents = generate(pipe, size, steps, round_latents=False)
    ref_image = decode(pipe.vae, ref_latents)
    with bf16_rounding(pipe.text_encoder, pipe.unet):
        latents = generate(pipe, size, steps, round_latents=True)
    image_vae32 = decode(pipe.vae, latents)
    with bf16_rounding(pipe.vae):
        image_all = decode(pipe.vae, latents)
        vae_only = decode(pipe.vae, ref_latents)
    report.add(SECTION, check.simulated())  # after the run above: it rounds the UNet

    lat_err = rel_err(latents, ref_latents)
    report.add(
        SECTION,
        {
            "variant": "text encoder + UNet bf16 (simulated), VAE float32",
            **base,
            "latents_rel_err": lat_err,
            **image_errors(image_vae32, ref_image),
        },
    )
    report.add(
        SECTION,
        {
            "variant": "all bf16 (simulated): the engine's --dtype bfloat16",
            **base,
            "latents_rel_err": lat_err,
            **image_errors(image_all, ref_image),
        },
    )
    report.add(
        SECTION,
        {
            "variant": "VAE decode alone bf16 (simulated), float32 latents",
            **base,
            **image_errors(vae_only, ref_image),
        },
    )


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def engine_dtypes() -> str:
    """What the engine does today on this CPU: `auto`'s choice, and each component's dtype when
    bfloat16 is forced (test:tiny, loaded for real)."""
    from paintbridge.engine import Engine
    from paintbridge.engine.device import cpu_has_native_bf16
    from paintbridge.engine.types import EngineSettings

    auto = Engine(EngineSettings(device="cpu", dtype="auto")).dtype
    forced = Engine(EngineSettings(device="cpu", dtype="bfloat16"))
    forced.load("test:tiny")
    base = forced._model.base  # noqa: SLF001 (a benchmark probe of the loaded pipeline)
    parts = ", ".join(
        f"{name} {_dtype_and_layout(getattr(base, name))}"
        for name in ("text_encoder", "unet", "vae")
    )
    forced.unload()
    return (
        f"engine: dtype auto -> {auto} on this CPU (native bf16: {cpu_has_native_bf16()}); "
        f"with dtype bfloat16 it loads {parts}"
    )


def _dtype_and_layout(module: Any) -> str:
    import torch

    from paintbridge.engine.prepack import is_packed

    dtype = str(module.dtype).removeprefix("torch.")
    for sub in module.modules():
        if isinstance(sub, torch.nn.Conv2d) and sub.kernel_size != (1, 1):
            if is_packed(sub.weight):
                return f"{dtype} packed for oneDNN"
            if sub.weight.is_contiguous(memory_format=torch.channels_last):
                return f"{dtype} channels_last"
            break
    return dtype


class UnetCheck:
    """One UNet forward (batch 2) at a small size: float32, real torch bf16, and simulated."""

    def __init__(self, unet: Any, size: int) -> None:
        import torch

        generator = torch.Generator().manual_seed(0)
        self.unet = unet
        self.size = size
        self.latents = torch.randn(2, 4, size // 8, size // 8, generator=generator)
        self.text = torch.randn(2, 77, unet.config.cross_attention_dim, generator=generator)
        self.forward(unet, torch.float32)  # warm-up: the first call is several times slower
        self.ref, self.fp32_s = self.forward(unet, torch.float32)

    def forward(self, model: Any, dtype: Any) -> tuple[Any, float]:
        import torch

        start = time.perf_counter()
        with torch.inference_mode():
            out = model(
                self.latents.to(dtype), torch.tensor(500), encoder_hidden_states=self.text.to(dtype)
            ).sample
        return out.float(), time.perf_counter() - start

    def real_bf16(self) -> dict[str, Any]:
        """The UNet in torch bf16 (a bf16 copy: the float32 one is kept)."""
        import torch

        with torch.device("meta"):
            copy = type(self.unet).from_config(self.unet.config)
        copy = copy.to(torch.bfloat16).to_empty(device="cpu")
        copy.load_state_dict(self.unet.state_dict())
        self.forward(copy.eval(), torch.bfloat16)  # warm-up, as for float32
        out, seconds = self.forward(copy, torch.bfloat16)
        del copy
        gc.collect()
        return {
            "variant": "UNet forward, real torch bf16 (emulated on this CPU: slow)",
            **self._base(),
            "latents_rel_err": rel_err(out, self.ref),
            "fp32_s": self.fp32_s,
            "bf16_s": seconds,
        }

    def simulated(self) -> dict[str, Any]:
        """The float32 UNet under bf16_rounding (its weights are rounded for good)."""
        import torch

        with bf16_rounding(self.unet):
            out, _ = self.forward(self.unet, torch.float32)
        return {
            "variant": "UNet forward, bf16 simulated on float32 kernels",
            **self._base(),
            "latents_rel_err": rel_err(out, self.ref),
        }

    def _base(self) -> dict[str, Any]:
        return {"size": f"{self.size}x{self.size}", "steps": 1}


def generate(pipe: Any, size: int, steps: int, *, round_latents: bool) -> Any:
    """The final latents of a txt2img on the fixed seed (no VAE decode)."""
    import torch

    def on_step_end(pipe_: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict:
        return {"latents": to_bf16_and_back(kwargs["latents"])} if round_latents else kwargs

    with torch.inference_mode():
        return pipe(
            prompt=PROMPT,
            width=size,
            height=size,
            num_inference_steps=steps,
            guidance_scale=GUIDANCE,
            generator=torch.Generator("cpu").manual_seed(SEED),
            output_type="latent",
            callback_on_step_end=on_step_end,
        ).images.float()


def decode(vae: Any, latents: Any) -> Any:
    """The image (0..1, float32) the pipeline would make from `latents`."""
    import torch

    with torch.inference_mode():
        latents = latents.to(vae.dtype) / vae.config.scaling_factor
        image = vae.decode(latents).sample.float()
    return (image / 2 + 0.5).clamp(0, 1)


def rel_err(x: Any, ref: Any) -> float:
    return float((x - ref).norm() / ref.norm())


def image_errors(image: Any, ref: Any) -> dict[str, Any]:
    mse = float(((image - ref) ** 2).mean())
    levels = ((image * 255).round() - (ref * 255).round()).abs()
    return {
        "image_rel_err": rel_err(image, ref),
        "image_mean_diff_8bit": float(levels.mean()),
        "image_max_diff_8bit": int(levels.max()),
        "image_psnr_db": math.inf if mse == 0 else 10 * math.log10(1 / mse),
    }


def to_bf16_and_back(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor) and value.dtype == torch.float32:
        return value.to(torch.bfloat16).to(torch.float32)
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(to_bf16_and_back(v) for v in value)
    if isinstance(value, list):
        return [to_bf16_and_back(v) for v in value]
    return value  # model outputs (dataclasses): their tensors come from rounded submodules


@contextmanager
def bf16_rounding(*modules: Any) -> Iterator[None]:
    """Simulates bf16 in float32 modules: their weights are rounded to bf16 in place (for good),
    and while inside, every submodule's float inputs and outputs are rounded to bf16."""
    import torch

    handles = []
    with torch.no_grad():
        for module in modules:
            for tensor in (*module.parameters(), *module.buffers()):
                if tensor.dtype == torch.float32:
                    tensor.copy_(to_bf16_and_back(tensor))
    for module in modules:
        for sub in module.modules():
            handles.append(sub.register_forward_pre_hook(_round_inputs, with_kwargs=True))
            handles.append(sub.register_forward_hook(_round_output))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _round_inputs(
    module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return to_bf16_and_back(args), {k: to_bf16_and_back(v) for k, v in kwargs.items()}


def _round_output(module: Any, args: Any, output: Any) -> Any:
    return to_bf16_and_back(output)
