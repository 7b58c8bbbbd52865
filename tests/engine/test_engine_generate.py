"""Engine.generate with real diffusers pipelines and tiny random weights."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from engine_support import box_mask, rgba_image

from paintbridge.engine import Engine, EngineSettings, GenerationRequest, Limits, check_request
from paintbridge.errors import Cancelled, GenerationFailed, InvalidRequest, ModelNotFound

TXT = GenerationRequest(task="txt2img", prompt="a red door", steps=2, seed=11)
IMAGE = rgba_image(70, 45, alpha=True)
MASK = box_mask(70, 45, (20, 10, 50, 35))
IMG = GenerationRequest(task="img2img", prompt="a red door", image=IMAGE, steps=4, seed=3)
INP = GenerationRequest(
    task="inpaint", prompt="a red door", image=IMAGE, mask=MASK, steps=4, seed=3
)


def pixels(result: Any, index: int = 0) -> bytes:
    return result.images[index].image.tobytes()


@pytest.mark.parametrize(
    ("request_", "size"),
    [
        (TXT, (64, 64)),  # the preset-less default: the model's native size
        (replace(TXT, width=100, height=37), (100, 37)),
        (replace(TXT, width=64, height=256), (64, 256)),
        (IMG, (70, 45)),
        (INP, (70, 45)),
    ],
)
def test_every_task_returns_rgba_of_the_size_asked(
    engine: Engine, request_: GenerationRequest, size: tuple[int, int]
) -> None:
    result = engine.generate(request_)
    assert len(result.images) == 1
    image = result.images[0].image
    assert (image.mode, image.size) == ("RGBA", size)
    assert result.images[0].seed == request_.seed
    params = result.parameters
    assert params["task"] == request_.task and params["model"] == "test:tiny"
    assert (params["width"], params["height"]) == size
    assert params["generated_width"] % 8 == 0 and params["generated_height"] % 8 == 0
    for key in ("prompt", "negative_prompt", "steps", "guidance", "strength", "scheduler"):
        assert key in params
    assert (params["device"], params["dtype"]) == (engine.device, engine.dtype)
    assert np.asarray(image)[..., :3].std() > 1  # not a blank image


def test_same_seed_same_pixels_other_seed_other_pixels(engine: Engine) -> None:
    first = engine.generate(TXT)
    assert pixels(engine.generate(TXT)) == pixels(first)
    assert pixels(engine.generate(replace(TXT, seed=12))) != pixels(first)


def test_seeds_count_up_and_a_random_seed_is_returned(engine: Engine) -> None:
    batch = engine.generate(replace(TXT, seed=41, count=2))
    assert [g.seed for g in batch.images] == [41, 42]
    assert pixels(batch, 0) != pixels(batch, 1)
    assert pixels(engine.generate(replace(TXT, seed=42))) == pixels(batch, 1)
    random = engine.generate(replace(TXT, seed=None))
    seed = random.images[0].seed
    assert 0 <= seed < 2**32
    assert pixels(engine.generate(replace(TXT, seed=seed))) == pixels(random)


def test_last_seed_wraps_around(engine: Engine) -> None:
    result = engine.generate(replace(TXT, seed=2**32 - 1, count=2))
    assert [g.seed for g in result.images] == [2**32 - 1, 0]


def test_progress_once_per_step_over_all_images(engine: Engine) -> None:
    calls: list[tuple[int, int]] = []
    engine.generate(replace(TXT, steps=3, count=2), progress=lambda s, n: calls.append((s, n)))
    assert calls == [(step, 6) for step in range(1, 7)]
    calls.clear()  # img2img runs int(steps * strength) steps: the real count is reported
    engine.generate(
        replace(IMG, steps=10, strength=0.5), progress=lambda s, n: calls.append((s, n))
    )
    assert calls == [(step, 5) for step in range(1, 6)]


def test_img2img_keeps_alpha_and_inpaint_alpha_is_zero_outside_the_mask(engine: Engine) -> None:
    edited = engine.generate(IMG).images[0].image
    assert edited.getchannel("A").tobytes() == IMAGE.getchannel("A").tobytes()
    layer = np.asarray(engine.generate(INP).images[0].image)
    mask = np.asarray(MASK)
    assert (layer[..., 3][mask == 0] == 0).all()
    assert (layer[..., 3][mask == 255] > 0).all()
    assert layer[..., 3].max() == 255
    # where the layer is transparent its colour is the original's, so any use of it is safe
    assert (layer[..., :3][mask == 0] == np.asarray(IMAGE)[..., :3][mask == 0]).all()


def test_img2img_and_inpaint_depend_on_the_image(engine: Engine) -> None:
    other = rgba_image(45, 70).rotate(90, expand=True)
    assert pixels(engine.generate(IMG)) != pixels(engine.generate(replace(IMG, image=other)))


def test_tasks_share_one_set_of_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers import DiffusionPipeline

    loads: list[Any] = []
    original = DiffusionPipeline.from_pretrained.__func__  # type: ignore[attr-defined]

    def counting(cls: Any, *args: Any, **kwargs: Any) -> Any:
        loads.append(args)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", classmethod(counting))
    engine = Engine(EngineSettings(default_model="test:tiny"))
    for request in (TXT, IMG, INP, TXT, IMG):
        engine.generate(replace(request, steps=2))
    assert len(loads) == 1
    model = engine._model
    assert model is not None
    pipes = [model.pipeline(task) for task in ("txt2img", "img2img", "inpaint")]
    assert len({type(pipe).__name__ for pipe in pipes}) == 3
    for name in ("unet", "vae", "text_encoder", "tokenizer"):
        assert len({id(getattr(pipe, name)) for pipe in pipes}) == 1, name
    assert model.pipeline("img2img") is pipes[1]  # cached, not derived again
    assert all(pipe._progress_bar_config.get("disable") for pipe in pipes)


def test_cancel_from_another_thread(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    model = engine._model
    assert model is not None
    decodes: list[int] = []
    decode = model.base.vae.decode
    monkeypatch.setattr(
        model.base.vae, "decode", lambda *a, **k: decodes.append(1) or decode(*a, **k)
    )
    cancel = threading.Event()
    started = threading.Event()
    steps: list[int] = []
    outcome: dict[str, Any] = {}

    def progress(step: int, total: int) -> None:
        steps.append(step)
        started.set()

    def run() -> None:
        try:
            outcome["result"] = engine.generate(
                replace(TXT, steps=150, count=2), progress=progress, cancel=cancel
            )
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    assert started.wait(60), outcome
    cancel.set()
    worker.join(60)
    assert not worker.is_alive()
    assert "result" not in outcome
    assert isinstance(outcome["error"], Cancelled)
    assert outcome["error"].code == "cancelled"
    assert 1 <= len(steps) < 150 and decodes == []
    # usable afterwards, and unaffected by the cancelled run
    assert pixels(engine.generate(TXT)) == pixels(engine.generate(TXT))


def test_a_set_cancel_event_stops_before_any_step(engine: Engine) -> None:
    cancel = threading.Event()
    cancel.set()
    calls: list[int] = []
    with pytest.raises(Cancelled):
        engine.generate(TXT, progress=lambda s, n: calls.append(s), cancel=cancel)
    assert calls == []


def test_failures_become_generation_failed_and_the_engine_recovers(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = engine._model
    assert model is not None

    def out_of_memory(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(model.base.unet, "forward", out_of_memory)
    with pytest.raises(GenerationFailed, match="out of memory on cpu generating 64x64") as caught:
        engine.generate(TXT)
    assert caught.value.code == "generation_failed" and "low_memory" in caught.value.message

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("shape '[1, 4, 8, 8]' is invalid")

    monkeypatch.setattr(model.base.unet, "forward", broken)
    with pytest.raises(GenerationFailed, match="RuntimeError: shape") as failed:
        engine.generate(TXT)
    assert failed.value.code == "generation_failed"
    monkeypatch.undo()
    assert engine.generate(TXT).images[0].image.size == (64, 64)


def test_scheduler_by_name(engine: Engine) -> None:
    ddim = engine.generate(replace(TXT, scheduler="ddim"))
    euler = engine.generate(replace(TXT, scheduler="euler_a"))
    assert euler.parameters["scheduler"] == "euler_a"
    assert pixels(ddim) != pixels(euler)
    calls: list[tuple[int, int]] = []  # one report per pipeline step, whatever the scheduler
    engine.generate(replace(TXT, scheduler="heun"), progress=lambda s, n: calls.append((s, n)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    with pytest.raises(InvalidRequest, match="`scheduler` must be one of .*dpm\\+\\+_karras"):
        engine.generate(replace(TXT, scheduler="k_lms_fancy"))


def test_lcm_runs_up_to_its_schedule_and_refuses_more_steps_up_front(engine: Engine) -> None:
    """LCM's schedule has 50 steps: 60 failed inside diffusers mid-job, blaming the model."""
    assert engine.generate(replace(TXT, scheduler="lcm", steps=50)).images
    inpaint = GenerationRequest("inpaint", "x", image=IMAGE, mask=MASK, scheduler="lcm", steps=150)
    for request in (replace(TXT, scheduler="lcm", steps=60), inpaint):
        with pytest.raises(InvalidRequest, match="`steps` must be at most 50 with the lcm"):
            check_request(request, Limits())


def test_unknown_model_leaves_the_loaded_one(engine: Engine) -> None:
    with pytest.raises(ModelNotFound, match="unknown model 'no-such-model'"):
        engine.generate(replace(TXT, model="no-such-model"))
    assert engine.loaded_model == "test:tiny"


def test_low_memory_on_slices_attention_and_tiles_the_vae() -> None:
    from diffusers.models.attention_processor import SlicedAttnProcessor

    engine = Engine(EngineSettings(default_model="test:tiny", low_memory="on"))
    engine.generate(TXT)
    model = engine._model
    assert model is not None and model.base.vae.use_tiling
    processors = model.base.unet.attn_processors.values()
    assert any(isinstance(p, SlicedAttnProcessor) for p in processors)
    assert model.set_low_memory("auto", 64 * 64) is False and not model.base.vae.use_tiling
    assert not any(
        isinstance(p, SlicedAttnProcessor) for p in model.base.unet.attn_processors.values()
    )
    # SDXL's native area, as model_size rounds it for 16:9, is not "above native"; 12% more is
    assert model.set_low_memory("auto", 1368 * 768) is False and not model.base.vae.use_tiling
    assert model.set_low_memory("auto", 1152 * 1024) is True and model.base.vae.use_tiling
    assert model.set_low_memory("off", 4096 * 4096) is False


def test_bfloat16_generates(engine: Engine) -> None:
    bf16 = Engine(EngineSettings(default_model="test:tiny", dtype="bfloat16"))
    result = bf16.generate(TXT)
    assert (bf16.dtype, result.parameters["dtype"]) == ("bfloat16", "bfloat16")
    assert result.images[0].image.size == (64, 64)
    assert np.asarray(result.images[0].image)[..., :3].std() > 1


def test_inpainting_model_inpaints_only(inpaint_engine: Engine) -> None:
    result = inpaint_engine.generate(INP)
    layer = np.asarray(result.images[0].image)
    assert layer.shape == (45, 70, 4)
    assert (layer[..., 3][np.asarray(MASK) == 0] == 0).all()
    assert inpaint_engine.generate(INP).images[0].image.tobytes() == layer.tobytes()
    for request in (TXT, IMG):
        with pytest.raises(InvalidRequest, match="inpainting model .* can only inpaint"):
            inpaint_engine.generate(request)


def test_engine_properties(engine: Engine) -> None:
    assert engine.device == "cpu"
    assert engine.dtype in ("float32", "bfloat16")
    assert engine.loaded_model == "test:tiny"
