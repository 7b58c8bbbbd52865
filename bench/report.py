"""The benchmark report: the machine, one table per section, notes; printed and written out.

A section is a module with `run(report: Report) -> None` that adds rows with `report.add`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOW_TO_READ = (
    "How to run: `./dev bench` runs every section in one process and rewrites this file and "
    "latest.json; `./dev bench --quick` skips the full-size SD 1.5 cases (random weights, "
    "built once into bench/.cache/, about 4.3 GB), except in `floor` and `bf16`, which only "
    "mean something on that architecture and run it with fewer steps or at a smaller size; "
    "`--only SECTION` (repeatable) runs some "
    "sections, `--repeats N` overrides the repeats, `--out DIR` writes elsewhere. Rows in a `run` "
    "column came from a separate run merged in with `--include OTHER/latest.json` (full-size "
    "cases that did not fit this run; `--base ONE/latest.json` merges without running).",
    "",
    "How to read: ratios (paintbridge / plain diffusers, measured in the same run, alternating "
    "order) are the headline; absolute seconds hold only for the machine below and the load "
    "noted with it (the machine is shared: compare ratios, not seconds across runs). Every "
    "section's module docstring in bench/ says exactly what is timed; latest.json also holds "
    "each repeat's raw times.",
)


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else platform's guess."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine() -> dict[str, Any]:
    """Everything a reader needs to compare these numbers with theirs."""
    import diffusers
    import torch
    import transformers

    flags = cpu_flags()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        usable = os.cpu_count() or 0
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory_gib = round(pages / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        memory_gib = None
    return {
        "cpu": cpu_model(),
        "cpu_features": sorted(f for f in flags if f.startswith(("avx", "amx", "fma"))),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "memory_gib": memory_gib,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "load_average_at_start": _load_average(),
    }


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


@dataclass
class Timing:
    """Seconds of each repeat; the median is the number reported."""

    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def best(self) -> float:
        return min(self.seconds)


def time_alternating(
    a: Callable[[], Any], b: Callable[[], Any], repeats: int
) -> tuple[Timing, Timing]:
    """Time `a` and `b` `repeats` times each, alternating which runs first (a b, b a, a b...),
    so a machine that speeds up or slows down during the run favours neither."""
    times: dict[str, list[float]] = {"a": [], "b": []}
    for i in range(repeats):
        order = (("a", a), ("b", b)) if i % 2 == 0 else (("b", b), ("a", a))
        for key, fn in order:
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return Timing(times["a"]), Timing(times["b"])


def old_vs_new(old: Timing, new: Timing) -> dict[str, float]:
    """A before/after row's numbers: the medians in ms and how many times faster new is."""
    return {
        "old_ms": round(old.median * 1000, 1),
        "new_ms": round(new.median * 1000, 1),
        "old_vs_new": round(old.median / new.median, 2),
    }


@dataclass
class Section:
    name: str
    title: str
    columns: Sequence[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    quick: bool = False
    repeats: int | None = None  # None: each section picks its own
    cache_dir: Path = Path(__file__).resolve().parent / ".cache"
    machine: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, Section] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def section(self, name: str, title: str, columns: Sequence[str]) -> Section:
        self.sections[name] = Section(name, title, list(columns))
        return self.sections[name]

    def add(self, section: str, row: dict[str, Any]) -> None:
        self.sections[section].rows.append(row)
        print(_format_table(self.sections[section].columns, [row], header=False), flush=True)

    def note(self, text: str, section: str | None = None) -> None:
        (self.sections[section].notes if section else self.notes).append(text)
        print(f"  note: {text}", flush=True)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": "quick" if self.quick else "full",
            "machine": self.machine,
            "notes": self.notes,
            "sections": {
                name: {
                    "title": s.title,
                    "columns": list(s.columns),
                    "rows": s.rows,
                    "notes": s.notes,
                }
                for name, s in self.sections.items()
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        """A report written by `to_json` (to merge runs without running them again)."""
        report = cls(quick=data.get("mode") == "quick", machine=dict(data.get("machine") or {}))
        report.notes = list(data.get("notes") or [])
        for name, s in (data.get("sections") or {}).items():
            columns = s.get("columns") or (list(s["rows"][0]) if s.get("rows") else [])
            section = report.section(name, s.get("title", name), columns)
            section.rows = list(s.get("rows") or [])
            section.notes = list(s.get("notes") or [])
        return report

    def markdown(self) -> str:
        m = self.machine
        lines = [
            "# paintbridge benchmarks",
            "",
            f"Run {m.get('date')} in {'quick' if self.quick else 'full'} mode "
            "(`./dev bench`; `./dev bench --quick` skips full-size models).",
            "",
            *HOW_TO_READ,
            "",
            "## Machine",
            "",
        ]
        for key in (
            "cpu",
            "cpu_features",
            "logical_cores",
            "usable_cores",
            "torch_threads",
            "memory_gib",
            "gpu",
            "os",
            "python",
            "torch",
            "diffusers",
            "transformers",
            "load_average_at_start",
            "load_average_at_end",
            "load_average_1min_during",
        ):
            value = m.get(key)
            if isinstance(value, list):
                value = ", ".join(str(v) for v in value)
            lines.append(f"- {key.replace('_', ' ')}: {value}")
        for note in self.notes:
            lines.append(f"- {note}")
        for s in self.sections.values():
            lines += ["", f"## {s.title}", "", _markdown_table(s.columns, s.rows)]
            if s.notes:
                lines.append("")
                lines += [f"- {note}" for note in s.notes]
        return "\n".join(lines) + "\n"

    def print_tables(self) -> None:
        for s in self.sections.values():
            print(f"\n{s.title}")
            print(_format_table(s.columns, s.rows, header=True))

    def write(self, folder: Path) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        json_path, md_path = folder / "latest.json", folder / "latest.md"
        _write_atomic(json_path, json.dumps(self.to_json(), indent=2) + "\n")
        _write_atomic(md_path, self.markdown())
        return json_path, md_path


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    if value is None:
        return "-"
    return str(value)


def _format_table(columns: Sequence[str], rows: list[dict[str, Any]], *, header: bool) -> str:
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = []
    if header:
        lines.append("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _markdown_table(columns: Sequence[str], rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def finish(report: Report) -> None:
    report.machine["load_average_at_end"] = _load_average()
