"""paintbridge's benchmarks: `./dev bench [--quick] [--repeats N] [--only SECTION]`.

Each section is a module in bench/ with `run(report)`; add one by writing the module and
listing it in SECTIONS. Results go to bench/results/latest.json and latest.md, with the machine.
Full-size cases that did not fit one run can be run alone and merged, marked with their run:
`./dev bench --quick --include OTHER/latest.json`, or without running anything:
`./dev bench --base ONE/latest.json --include OTHER/latest.json`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # sections import their helpers by plain module name

from report import Report, finish, machine  # noqa: E402

SECTIONS = (
    "overhead",
    "server_overhead",
    "selection",
    "large_selection",
    "gui_thread",
    "blender_convert",
    "blender_result",
    "blender_start",
    "result_alpha",
    "png_encode",
    "switching",
    "coldstart",
    "memory",
    "floor",
    "cpu_speed",
    "bf16",
    "cpu_dtypes",
    "gpu",
)


class LoadSampler:
    """The 1-minute load average every 10 s while the sections run (others share the CPU)."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            try:
                self.samples.append(os.getloadavg()[0])
            except (OSError, AttributeError):
                return
            if self._stop.wait(self.interval):
                return

    def summary(self) -> str:
        if not self.samples:
            return "-"
        mean = sum(self.samples) / len(self.samples)
        return f"min {min(self.samples):.2f}, mean {mean:.2f}, max {max(self.samples):.2f}"


def include(report: Report, path: Path) -> None:
    """Adds rows from another run's latest.json for cases this run does not have."""
    other = json.loads(path.read_text(encoding="utf-8"))
    when = other.get("machine", {}).get("date")
    machine_ = other.get("machine", {})
    load = machine_.get("load_average_1min_during") or (
        f"{machine_.get('load_average_at_start')} at start, "
        f"{machine_.get('load_average_at_end')} at end"
    )
    for name, section in other.get("sections", {}).items():
        if name not in report.sections:
            continue
        have = {json.dumps(_key(row)) for row in report.sections[name].rows}
        added = 0
        for row in section["rows"]:
            if json.dumps(_key(row)) not in have:
                report.sections[name].rows.append({**row, "run": when})
                added += 1
        if added:
            if "run" not in report.sections[name].columns:
                report.sections[name].columns = [*report.sections[name].columns, "run"]
            report.note(
                f"{added} row(s) from a separate {other.get('mode')} run at {when} (load "
                f"{load}), marked with `run`: {path.name}",
                name,
            )


def _key(row: dict[str, object]) -> list[object]:
    keys = ("case", "what", "variant", "model", "selection", "size", "dtype", "task")
    return [row.get(k) for k in keys]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="skip full-size models")
    parser.add_argument("--repeats", type=int, help="repeats per case (default: per case)")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only this section")
    parser.add_argument(
        "--include",
        type=Path,
        action="append",
        default=[],
        help="a latest.json from another run: its rows for cases this run lacks are added, "
        "marked with that run's date (for full-size cases run separately)",
    )
    parser.add_argument(
        "--base",
        type=Path,
        help="run no section: start from this latest.json (then --include adds to it)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results folder")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("PAINTBRIDGE_CACHE_DIR", str(HERE / ".cache" / "paintbridge-cache"))

    if args.base is not None:
        report = Report.from_json(json.loads(args.base.read_text(encoding="utf-8")))
        for path in args.include:
            include(report, path)
    else:
        report = _run(args)
    report.print_tables()
    json_path, md_path = report.write(args.out)
    print(f"\nwrote {json_path} and {md_path}")
    return 0


def _run(args: argparse.Namespace) -> Report:
    report = Report(quick=args.quick, repeats=args.repeats, machine=machine())
    print(
        f"paintbridge bench ({'quick' if args.quick else 'full'}) on {report.machine['cpu']}, "
        f"{report.machine['usable_cores']} cores, torch {report.machine['torch']}, "
        f"diffusers {report.machine['diffusers']}"
    )
    load = report.machine.get("load_average_at_start")
    if load and report.machine["usable_cores"] and load[0] > 0.5 * report.machine["usable_cores"]:
        report.note(
            f"the machine was busy at the start (load {load[0]} on "
            f"{report.machine['usable_cores']} cores): absolute times are noisy; the "
            "alternating order keeps the ratios fair"
        )
    started = time.perf_counter()
    sampler = LoadSampler()
    sampler.start()
    try:
        for name in args.only or SECTIONS:
            section_start = time.perf_counter()
            try:
                importlib.import_module(name).run(report)
            except Exception:  # one broken section must not throw away the others' results
                report.note(f"section {name} FAILED:\n{traceback.format_exc()}")
                print(traceback.format_exc(), file=sys.stderr)
            report.note(f"section {name}: {time.perf_counter() - section_start:.0f} s")
            report.write(args.out / "partial")  # what is done so far, should the run be stopped
    finally:
        sampler.stop()
    for path in args.include:
        include(report, path)
    finish(report)
    report.machine["load_average_1min_during"] = sampler.summary()
    report.note(f"total run time {time.perf_counter() - started:.0f} s")
    return report


if __name__ == "__main__":
    sys.exit(main())
