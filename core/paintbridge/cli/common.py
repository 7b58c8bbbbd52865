"""Pieces the generation subcommands share: engine options, safe image loading, output paths,
and running a generation in a worker thread with a progress bar and clean Ctrl-C.

Nothing here imports torch; the engine is imported inside the functions that need it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

from paintbridge.errors import Cancelled, InvalidRequest, PaintbridgeError

if TYPE_CHECKING:
    from PIL import Image
    from tqdm import tqdm

    from paintbridge.engine.types import EngineSettings, Limits, ProgressFn

T = TypeVar("T")

DTYPES = ("auto", "float32", "float16", "bfloat16")
EXIT_CANCELLED = 130  # the shell's code for "ended by SIGINT"


# ---------------------------------------------------------------------------------------------
# options


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (sizes, counts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


MODELS_DIR_HELP = (
    "another folder with local models, searched after paintbridge's models folder (repeatable)"
)


def add_engine_options(
    parser: argparse.ArgumentParser, default_model: str = "the default preset"
) -> None:
    """--model, --device, --dtype, --low-memory, --cpu-offload, --cpu-threads, --compile,
    --allow-pickle, --model-config, --models-dir."""
    group = parser.add_argument_group("model and device")
    group.add_argument(
        "--model",
        help="preset name (see `paintbridge models`), a diffusers folder or a .safetensors file; "
        f"default: {default_model}",
    )
    group.add_argument(
        "--models-dir",
        action="append",
        type=Path,
        metavar="DIR",
        help=MODELS_DIR_HELP,
    )
    group.add_argument(
        "--model-config",
        type=Path,
        metavar="DIR",
        help="diffusers folder whose configs describe a single-file checkpoint (offline loading)",
    )
    group.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow .ckpt/.bin/.pt checkpoints (they can run code: only for files you trust)",
    )
    group.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    group.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPES,
        help="weights' number type (auto: float16 on a GPU; on a CPU bfloat16 where it is "
        "native, AMX or AVX512-BF16, else float32; float16 not on an x86 CPU that emulates it)",
    )
    group.add_argument(
        "--low-memory",
        default="auto",
        choices=("auto", "on", "off"),
        help="attention slicing + VAE tiling (auto: above 1024x1024 generated pixels); on: also no "
        "reuse of freed memory on a CPU (slower, lower peak)",
    )
    group.add_argument(
        "--cpu-offload",
        action="store_true",
        help="keep the model in RAM and move each part to the GPU when used (CUDA; small GPUs)",
    )
    group.add_argument(
        "--cpu-threads",
        type=_thread_count,
        metavar="N",
        help="CPU threads for torch (default: torch's choice, one per core); fewer leaves cores "
        "to the editor and other programs",
    )
    group.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the UNet, with CUDA graphs on CUDA unless saving memory (SD 1.5 steps "
        "3.6x as fast on an H200; no gain measured on a CPU; the first image at each size waits "
        "about a minute for compilation)",
    )


def _thread_count(text: str) -> int:
    """--cpu-threads: 1 up to this machine's logical cores (more only wait for one another, and
    tens of thousands could not even be started)."""
    value = _positive_int(text)
    cores = os.cpu_count() or 1
    if value > cores:
        raise argparse.ArgumentTypeError(
            f"must be at most {cores}, this machine's logical cores, got {text!r}"
        )
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more, got {text!r}")
    return value


def engine_settings(args: argparse.Namespace) -> EngineSettings:
    """EngineSettings from the options of `add_engine_options`."""
    from paintbridge.engine.types import EngineSettings

    model_config: Path | None = getattr(args, "model_config", None)
    if model_config is not None and not model_config.is_dir():
        raise InvalidRequest(
            f"--model-config must be a diffusers folder (with model_index.json), "
            f"got {str(model_config)!r}"
        )
    return EngineSettings(
        device=args.device,
        dtype=args.dtype,
        model_dirs=models_dirs(getattr(args, "models_dir", None)),
        allow_pickle=bool(getattr(args, "allow_pickle", False)),
        allow_any_path=True,  # the user names files on their own command line
        single_file_config=model_config,
        low_memory=getattr(args, "low_memory", "auto"),
        cpu_offload=bool(getattr(args, "cpu_offload", False)),
        cpu_threads=getattr(args, "cpu_threads", None),
        compile=bool(getattr(args, "compile", False)),
    )


def models_dirs(added: list[Path] | None) -> tuple[Path, ...]:
    """paintbridge's models folder, then the --models-dir folders, each folder once."""
    from paintbridge import config

    for folder in added or ():
        if not folder.expanduser().is_dir():  # a typo would only show as "unknown model" later
            raise InvalidRequest(f"--models-dir must be a folder, got {str(folder)!r}")
    dirs: dict[str, Path] = {}
    for folder in (config.models_dir(), *(added or ())):
        folder = folder.expanduser()  # `--models-dir=~/m`: no shell expands that `~`
        dirs.setdefault(os.path.abspath(folder), folder)
    return tuple(dirs.values())


def is_test_model(name: str | None) -> bool:
    return bool(name) and str(name).startswith("test:")


_TEST_MODEL_NOTE = (
    "note: {name} is a test model with random weights: its images are noise, not pictures. "
    "Use a real model (see `paintbridge models`) for real images."
)
_IDENTITY_NOTE = (
    "note: {name} is a test model: it gives the input image back unchanged (txt2img: noise). "
    "Use a real model (see `paintbridge models`) for real images."
)


def test_model_note(name: str) -> str:
    """What the CLI says when a test model made the images."""
    return (_IDENTITY_NOTE if name == "test:identity" else _TEST_MODEL_NOTE).format(name=name)


# ---------------------------------------------------------------------------------------------
# input images


def _open_checked(path: Path, what: str, limits: Limits) -> Image.Image:
    """Open and decode an image file, refusing oversized ones before decoding any pixels."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.exists():
        raise InvalidRequest(f"{what} {str(path)!r} does not exist")
    if not path.is_file():
        raise InvalidRequest(f"{what} {str(path)!r} is not a file")
    too_big = (
        f"{what} {str(path)!r} is too large: at most {limits.max_side} px a side and "
        f"{limits.max_pixels} pixels"
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if max(width, height) > limits.max_side or width * height > limits.max_pixels:
                    raise InvalidRequest(f"{too_big}, got {width}x{height}")
                image.load()
                # photos store their rotation in EXIF: use the picture as the user sees it
                return ImageOps.exif_transpose(image)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise InvalidRequest(too_big) from None
    except UnidentifiedImageError:
        raise InvalidRequest(
            f"{what} {str(path)!r} is not an image file Pillow can read (PNG, JPEG, WebP...)"
        ) from None
    except InvalidRequest:  # a ValueError: already says what is wrong
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        # truncated or corrupt files, unreadable paths
        raise InvalidRequest(f"cannot read {what} {str(path)!r}: {exc}") from None


def load_image(path: Path, limits: Limits) -> Image.Image:
    """The image at `path` as RGBA, or InvalidRequest with a one-line reason."""
    from paintbridge.imageops import to_mode

    return to_mode(_open_checked(path, "image", limits), "RGBA", "image")


def load_mask(path: Path, limits: Limits) -> Image.Image:
    """The mask at `path` as an 8-bit L image (255 = regenerate), or InvalidRequest."""
    from paintbridge.imageops import to_mask

    return to_mask(_open_checked(path, "mask", limits))


# ---------------------------------------------------------------------------------------------
# outputs


def output_paths(output: Path, count: int, *, overwrite: bool = False) -> list[Path]:
    """`out.png` for one image; `out-1.png`, `out-2.png`... for several. A file already there is
    refused (before any model loads) unless `overwrite`."""
    if output.is_dir():
        raise InvalidRequest(
            f"-o/--output {str(output)!r} is a folder: name the file to write, "
            f"such as {str(output / 'image.png')!r}"
        )
    if output.suffix.lower() != ".png":
        raise InvalidRequest(
            f"-o/--output must name a .png file (paintbridge writes PNG, with the parameters "
            f"inside), got {str(output)!r}"
        )
    if count == 1:
        paths = [output]
    else:
        paths = [output.with_name(f"{output.stem}-{i}{output.suffix}") for i in range(1, count + 1)]
    folders = [str(p) for p in paths if p.is_dir()]
    if folders:  # --overwrite replaces files, never a folder
        verb = "is a folder" if len(folders) == 1 else "are folders"
        raise InvalidRequest(f"{', '.join(map(repr, folders))} {verb}: choose another -o/--output")
    existing = [str(p) for p in paths if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        raise InvalidRequest(
            f"{', '.join(map(repr, existing))} already "
            f"{'exists' if len(existing) == 1 else 'exist'}: pass --overwrite to replace "
            f"{'it' if len(existing) == 1 else 'them'}, or choose another -o/--output"
        )
    return paths


def prepare_output_folder(folder: Path) -> list[Path]:
    """Create `folder` if needed and prove it writable, before minutes of generation are spent.
    Returns the folders it made, innermost first (remove_empty_folders takes them back)."""
    folder = folder if str(folder) else Path(".")
    made = []
    for path in (folder, *folder.parents):
        if not path.exists():
            made.append(path)
        else:
            if not path.is_dir():
                raise PaintbridgeError(
                    f"cannot write into {str(folder)!r}: {str(path)!r} is a file, not a folder",
                    code="output_not_writable",
                )
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PaintbridgeError(
            f"cannot create output folder {str(folder)!r}: {exc.strerror or exc}",
            code="output_not_writable",
        ) from None
    probe = folder / f".paintbridge-write-test-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise PaintbridgeError(
            f"output folder {str(folder)!r} is not writable: {exc.strerror or exc}",
            code="output_not_writable",
        ) from None
    return made


def remove_empty_folders(made: list[Path]) -> None:
    """Removes the folders prepare_output_folder made that are still empty (a command that
    failed or was cancelled leaves nothing behind; one that wrote its images keeps them)."""
    for path in made:
        try:
            path.rmdir()
        except OSError:  # not empty (or gone): neither are the folders around it
            return


# ---------------------------------------------------------------------------------------------
# running a generation


class Progress:
    """Step progress on stderr, fed by the engine's `progress(step, steps)` from the worker thread:
    a tqdm bar on a terminal; elsewhere (a log file, a pipe) a plain line at the first step, then
    at most every LINE_INTERVAL seconds, and at the last step, instead of a bar redrawn in place."""

    LINE_INTERVAL = 5.0

    def __init__(self, label: str, *, tty: bool | None = None) -> None:
        self.label = label
        self.tty = stderr_is_a_terminal() if tty is None else tty
        self._bar: tqdm[Any] | None = None
        self._last_line: float | None = None
        self._lock = threading.Lock()

    def __call__(self, step: int, steps: int) -> None:
        with self._lock:
            if not self.tty:
                self._line(step, steps)
                return
            from tqdm import tqdm

            if self._bar is None:
                self._bar = tqdm(
                    total=steps, desc=self.label, unit="step", file=sys.stderr, dynamic_ncols=True
                )
            if self._bar.total != steps:
                self._bar.total = steps
            self._bar.update(step - self._bar.n)

    def _line(self, step: int, steps: int) -> None:
        now = time.monotonic()
        due = self._last_line is None or now - self._last_line >= self.LINE_INTERVAL
        if due or step >= steps:
            print(f"{self.label}: step {step}/{steps}", file=sys.stderr, flush=True)
            self._last_line = now

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None


def stderr_is_a_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def quiet_library_progress_bars() -> None:
    """When stderr is no terminal, turn off the progress bars diffusers, transformers and
    huggingface_hub draw while loading (each redraw would be another line in a log)."""
    if stderr_is_a_terminal():
        return
    with contextlib.suppress(ImportError):
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    with contextlib.suppress(ImportError):
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()


@contextlib.contextmanager
def _sigint_cancels(cancel: threading.Event) -> Iterator[None]:
    """First Ctrl-C sets `cancel` (the engine stops at the next step); a second one aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are only delivered to the main thread; nothing to install
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print("\npaintbridge: cancelling (Ctrl-C again to quit now)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_cancellable(work: Callable[[ProgressFn, threading.Event], T], *, label: str) -> T:
    """Run `work(progress, cancel)` in a worker thread while the main thread waits for Ctrl-C.

    Raises Cancelled when the user pressed Ctrl-C, even if the work finished meanwhile: the
    caller then writes nothing. Exceptions from the work are re-raised here.
    """
    cancel = threading.Event()
    progress = Progress(label)
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = work(progress, cancel)
        except BaseException as exc:  # handed to the main thread, which re-raises it
            outcome["error"] = exc

    # daemon: a second Ctrl-C exits at once instead of waiting for the step to finish
    thread = threading.Thread(target=target, name="paintbridge-generate", daemon=True)
    try:
        with _sigint_cancels(cancel):
            thread.start()
            while thread.is_alive():
                thread.join(0.1)
    finally:
        progress.close()
    error = outcome.get("error")
    if cancel.is_set():
        raise Cancelled("cancelled, nothing written")
    if error is not None:
        raise error
    return outcome["result"]


def print_cancelled(what: str = "nothing written") -> int:
    """Say so on stderr; return the exit code for a cancelled command (130, like SIGINT)."""
    print(f"paintbridge: cancelled, {what}", file=sys.stderr)
    return EXIT_CANCELLED
