"""`paintbridge generate | img2img | inpaint | models | demo`: generation from the command line.

Every check that needs no model runs before the model loads, so a typo costs no waiting. The
engine (and torch) is imported only inside the handlers: `paintbridge --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paintbridge.cli.common import (
    MODELS_DIR_HELP,
    add_engine_options,
    engine_settings,
    is_test_model,
    load_image,
    load_mask,
    models_dirs,
    output_paths,
    positive_int,
    prepare_output_folder,
    print_cancelled,
    quiet_library_progress_bars,
    remove_empty_folders,
    run_cancellable,
    test_model_note,
)
from paintbridge.errors import Cancelled, InvalidRequest, PaintbridgeError

if TYPE_CHECKING:
    from PIL import Image

    from paintbridge.engine.types import (
        EngineSettings,
        GeneratedImage,
        GenerationRequest,
        GenerationResult,
        ProgressFn,
    )

SEAMLESS_CHOICES = ("none", "x", "y", "xy")
DEMO_MODEL = "test:tiny"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "generate", help="make an image from a prompt (txt2img)", description=_doc("txt2img")
    )
    p.add_argument("prompt", help="what to draw")
    _add_output(p)
    _add_sampling_options(p, size=True, strength=False)
    add_engine_options(p)
    p.set_defaults(func=_generate_handler, task="txt2img")

    p = subparsers.add_parser(
        "img2img", help="redraw an image guided by a prompt", description=_doc("img2img")
    )
    p.add_argument("image", type=Path, help="the image to start from (PNG, JPEG, WebP...)")
    p.add_argument("prompt", help="what the result should show")
    _add_output(p)
    _add_sampling_options(p, size=False, strength=True)
    add_engine_options(p)
    p.set_defaults(func=_generate_handler, task="img2img")

    p = subparsers.add_parser(
        "inpaint", help="regenerate the masked part of an image", description=_doc("inpaint")
    )
    p.add_argument("image", type=Path, help="the image to change")
    p.add_argument("mask", type=Path, help="same size as IMAGE; white = regenerate, black = keep")
    p.add_argument("prompt", help="what the masked area should show")
    _add_output(p)
    _add_sampling_options(p, size=False, strength=True)
    add_engine_options(p)
    p.set_defaults(func=_generate_handler, task="inpaint")

    p = subparsers.add_parser("models", help="list the models paintbridge can load")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--models-dir", action="append", type=Path, metavar="DIR", help=MODELS_DIR_HELP)
    p.set_defaults(func=_models_handler)

    p = subparsers.add_parser(
        "demo",
        help="write a txt2img, an img2img and an inpaint image into a folder",
        description="Write a txt2img image, an img2img of it and an inpaint of it (with a "
        "generated mask) into a folder. The default model is a tiny test model: it runs "
        "anywhere in seconds, and its images are noise.",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("out/demo"),
        help="folder (default out/demo); its txt2img, img2img, inpaint and inpaint-mask PNGs are "
        "replaced",
    )
    p.add_argument("--prompt", default="a lighthouse on a cliff at sunset, oil painting")
    _add_sampling_options(p, size=True, strength=False, count=False)
    add_engine_options(p, default_model=DEMO_MODEL)
    p.set_defaults(func=_demo_handler, model=DEMO_MODEL)


def _doc(task: str) -> str:
    return (
        f"{task}: writes PNG files that carry their generation parameters (AUTOMATIC1111's "
        "`parameters` text and paintbridge's JSON). Ctrl-C cancels and writes nothing."
    )


def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="OUT.png",
        help="the PNG file to write (missing folders are created); with --count N: OUT-1.png "
        "... OUT-N.png. A file already there is refused unless --overwrite",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace output files that already exist"
    )


def _add_sampling_options(
    parser: argparse.ArgumentParser, *, size: bool, strength: bool, count: bool = True
) -> None:
    group = parser.add_argument_group("generation")
    group.add_argument("--negative", default="", metavar="TEXT", help="negative prompt")
    if size:
        group.add_argument("--width", type=positive_int, help="default: the model's own size")
        group.add_argument("--height", type=positive_int, help="default: the model's own size")
    group.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    group.add_argument("--guidance", type=float, help="CFG scale (default: the model's)")
    if strength:
        group.add_argument(
            "--strength",
            type=float,
            default=0.75,
            help="how much to change, 0..1 (default 0.75); runs int(steps * strength) steps",
        )
    group.add_argument("--seed", type=int, help="default: random; the seed used is printed")
    group.add_argument("--scheduler", help="sampler name (default: the model's)")
    group.add_argument("--seamless", choices=SEAMLESS_CHOICES, default="none", help="tile on axes")
    if count:
        group.add_argument("--count", type=positive_int, default=1, help="images to make")


# ---------------------------------------------------------------------------------------------
# generate / img2img / inpaint


def _generate_handler(args: argparse.Namespace) -> int:
    from paintbridge.engine import check_request
    from paintbridge.engine.models import check_task, resolve_model
    from paintbridge.engine.types import GenerationRequest

    settings = engine_settings(args)
    outputs = output_paths(args.output, args.count, overwrite=args.overwrite)
    image = load_image(args.image, settings.limits) if args.task != "txt2img" else None
    mask = load_mask(args.mask, settings.limits) if args.task == "inpaint" else None
    request = GenerationRequest(
        task=args.task,
        prompt=args.prompt,
        negative_prompt=args.negative,
        model=args.model,
        width=getattr(args, "width", None),
        height=getattr(args, "height", None),
        steps=args.steps,
        guidance=args.guidance,
        strength=getattr(args, "strength", 0.75),
        seed=args.seed,
        count=args.count,
        seamless=args.seamless,
        scheduler=args.scheduler,
        image=image,
        mask=mask,
    )
    check_request(request, settings.limits)
    check_task(resolve_model(request.model or settings.default_model, settings), request.task)
    made = prepare_output_folder(outputs[0].parent)
    try:
        session = _Session(settings, request.model)
        try:
            result = session.run(request, label=args.task)
        except Cancelled:
            return print_cancelled()
        _save_all(result, outputs, request)
    finally:
        remove_empty_folders(made)
    if is_test_model(request.model):
        print(test_model_note(request.model), file=sys.stderr)
    return 0


class _Session:
    """One engine for the whole command, loaded on first use in the worker thread (so Ctrl-C
    cancels a long load too)."""

    def __init__(self, settings: EngineSettings, model: str | None) -> None:
        from paintbridge.engine import Engine

        # Made here, in the main thread: glibc's allocator settings (engine/allocator.py) reach
        # only threads that have not allocated yet, such as the worker that then generates.
        self.engine = Engine(settings)
        self.model = model

    def run(self, request: GenerationRequest, *, label: str) -> GenerationResult:
        def work(progress: ProgressFn, cancel: threading.Event) -> GenerationResult:
            self._load()
            if cancel.is_set():
                raise Cancelled("cancelled, nothing written")
            return self.engine.generate(request, progress=progress, cancel=cancel)

        return run_cancellable(work, label=label)

    def _load(self) -> None:
        if self.engine.loaded_model is not None:
            return
        name = self.model or "the default model"
        print(f"paintbridge: loading {name}...", file=sys.stderr, flush=True)
        quiet_library_progress_bars()
        self.engine.load(self.model)
        print(
            f"paintbridge: {self.engine.loaded_model} on {self.engine.device} "
            f"({self.engine.dtype})",
            file=sys.stderr,
            flush=True,
        )


def _parameters(result: GenerationResult, generated: GeneratedImage) -> dict[str, Any]:
    """What goes into the PNG: the request's parameters with this image's own seed."""
    return {**result.parameters, "seed": generated.seed}


def _picture(generated: GeneratedImage, request: GenerationRequest) -> Image.Image:
    """What a file gets: the whole picture. The engine's inpaint result is a layer (alpha =
    blend mask, the plug-ins' format); the file has it composited over the input image, so
    every pixel outside the mask is the input's own, alpha included."""
    if request.task != "inpaint":
        return generated.image
    from paintbridge.imageops import flatten_layer

    assert request.image is not None
    return flatten_layer(request.image, generated.image)


def _save_all(result: GenerationResult, outputs: list[Path], request: GenerationRequest) -> None:
    from paintbridge.pngmeta import save_png

    if len(result.images) != len(outputs):
        raise InvalidRequest(
            f"the engine returned {len(result.images)} images for {len(outputs)} outputs"
        )
    for generated, path in zip(result.images, outputs, strict=True):
        save_png(_picture(generated, request), path, _parameters(result, generated))
        print(f"wrote {path}  seed {generated.seed}")


# ---------------------------------------------------------------------------------------------
# models


def _models_handler(args: argparse.Namespace) -> int:
    from paintbridge.engine import list_models
    from paintbridge.engine.types import EngineSettings

    dirs = models_dirs(args.models_dir)
    models = list_models(EngineSettings(model_dirs=dirs))
    rows = [
        {
            "name": m.name,
            "kind": m.kind,
            "native": m.native,
            "tasks": list(m.tasks),
            "description": m.description,
            "available": m.available,
        }
        for m in models
    ]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    table = [("NAME", "KIND", "SIZE", "ON DISK", "TASKS", "DESCRIPTION")] + [
        (
            r["name"],
            r["kind"],
            str(r["native"]),
            "yes" if r["available"] else "no",
            ",".join(r["tasks"]),
            r["description"],
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[5]]).rstrip())
    if not rows:
        print("(no models)")
    print(f"\nlocal models are looked for in: {', '.join(str(d) for d in dirs)}")
    return 0


# ---------------------------------------------------------------------------------------------
# demo


def _demo_mask(size: tuple[int, int]) -> Image.Image:
    """An ellipse over the middle half of the picture: 255 inside (regenerate), 0 outside."""
    from PIL import Image, ImageDraw

    width, height = size
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).ellipse(
        (width // 4, height // 4, width - width // 4 - 1, height - height // 4 - 1), fill=255
    )
    return mask


def _demo_handler(args: argparse.Namespace) -> int:
    from PIL import Image

    from paintbridge.engine import check_request
    from paintbridge.engine.models import check_task, resolve_model
    from paintbridge.engine.types import GenerationRequest

    settings = engine_settings(args)
    folder: Path = args.out
    common: dict[str, Any] = {
        "prompt": args.prompt,
        "negative_prompt": args.negative,
        "model": args.model,
        "steps": args.steps,
        "guidance": args.guidance,
        "scheduler": args.scheduler,
        "seamless": args.seamless,
    }
    first = GenerationRequest(
        task="txt2img", width=args.width, height=args.height, seed=args.seed, **common
    )
    check_request(first, settings.limits)
    # the img2img's steps x strength too, and the model, before a folder or a download
    placeholder = Image.new("RGB", (64, 64))
    try:
        check_request(
            GenerationRequest(task="img2img", image=placeholder, strength=0.6, **common),
            settings.limits,
        )
    except InvalidRequest as exc:
        raise InvalidRequest(f"the demo's img2img (strength 0.6): {exc.message}") from None
    check_task(resolve_model(args.model or settings.default_model, settings), "txt2img")
    made = prepare_output_folder(folder)
    try:
        return _demo(args, settings, folder, first, common)
    finally:
        remove_empty_folders(made)


def _demo(
    args: argparse.Namespace,
    settings: EngineSettings,
    folder: Path,
    first: GenerationRequest,
    common: dict[str, Any],
) -> int:
    from paintbridge.engine import check_request
    from paintbridge.engine.types import GenerationRequest
    from paintbridge.pngmeta import save_png

    if is_test_model(args.model):
        print(test_model_note(args.model), file=sys.stderr)
    session = _Session(settings, args.model)
    written: list[tuple[str, Path, int]] = []
    try:
        result = session.run(first, label="txt2img")
        base = result.images[0]
        path = save_png(base.image, folder / "txt2img.png", _parameters(result, base))
        written.append(("txt2img", path, base.seed))

        second = GenerationRequest(
            task="img2img", image=base.image, strength=0.6, seed=base.seed, **common
        )
        check_request(second, settings.limits)
        result = session.run(second, label="img2img")
        out = result.images[0]
        path = save_png(out.image, folder / "img2img.png", _parameters(result, out))
        written.append(("img2img", path, out.seed))

        mask = _demo_mask(base.image.size)
        mask.save(folder / "inpaint-mask.png")
        third = GenerationRequest(
            task="inpaint", image=base.image, mask=mask, strength=1.0, seed=base.seed, **common
        )
        check_request(third, settings.limits)
        result = session.run(third, label="inpaint")
        out = result.images[0]
        path = save_png(_picture(out, third), folder / "inpaint.png", _parameters(result, out))
        written.append(("inpaint", path, out.seed))
    except Cancelled:
        _print_written(written)
        what = "the images listed above were written" if written else "nothing written"
        return print_cancelled(what)
    except PaintbridgeError:
        _print_written(written)  # what it made before the error stays, and says so
        raise

    _print_written(written)
    print(f"demo images are in {folder} (the inpaint mask is inpaint-mask.png)")
    if is_test_model(args.model):
        print(test_model_note(args.model))
    return 0


def _print_written(written: list[tuple[str, Path, int]]) -> None:
    for task, path, seed in written:
        print(f"{task:8} {path}  seed {seed}")
