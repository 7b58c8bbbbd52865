"""paintbridge's benchmarks: `./dev bench [--quick] [--repeats N] [--only SECTION]`.

Each section is a module in bench/ with `run(report)`; add one by writing the module and
listing it in SECTIONS. Results go to bench/results/latest.json and latest.md, with the machine.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # sections import their helpers by plain module name

from report import Report, finish, machine  # noqa: E402

SECTIONS = ("overhead",)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="skip full-size models")
    parser.add_argument("--repeats", type=int, help="repeats per case (default: per case)")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only this section")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results folder")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("PAINTBRIDGE_CACHE_DIR", str(HERE / ".cache" / "paintbridge-cache"))

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
    for name in args.only or SECTIONS:
        importlib.import_module(name).run(report)
    finish(report)
    report.note(f"total run time {time.perf_counter() - started:.0f} s")
    report.print_tables()
    json_path, md_path = report.write(args.out)
    print(f"\nwrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
