"""Memory over time (issue 7, item 7): RSS of `paintbridge serve` over many tiny jobs.

A real server (test:tiny, preloaded) runs JOBS txt2img jobs (64 px, 2 steps, a new seed each)
one after another through hostkit; its RSS (from /proc) is read after the first job, after 20
and after all of them. Growth = RSS(last) / RSS(20) - 1; goal under 5% (nothing piles up in the
queue, the kept finished jobs, history or caches).
"""

from __future__ import annotations

import time

from report import Report
from serverproc import Server

SECTION = "memory"
COLUMNS = ("jobs", "seconds", "rss_after_1_mib", "rss_after_20_mib", "rss_after_all_mib", "growth")
JOBS = 200
QUICK_JOBS = 100  # a tiny job takes 1-3 s on a loaded 2-core machine
GOAL = 0.05


def run(report: Report) -> None:
    from paintbridge.hostkit import txt2img_job

    report.section(SECTION, "Memory over time: server RSS over many tiny jobs", COLUMNS)
    jobs = QUICK_JOBS if report.quick else JOBS
    if jobs != JOBS:
        report.note(f"quick mode: {jobs} jobs instead of {JOBS}", SECTION)
    rss: dict[int, float] = {}
    with Server("--model", "test:tiny", "--device", "cpu", "--dtype", "float32") as server:
        server.wait_ready()
        client, _ = server.client()
        start = time.perf_counter()
        for n in range(1, jobs + 1):
            job = txt2img_job("a cat", width=64, height=64, steps=2, seed=n)
            client.run(job, poll_interval=0.01)
            if n in (1, 20, jobs):
                rss[n] = server.rss_mib()
        seconds = time.perf_counter() - start
        kept = len(list(server.history_dir.glob("*.png")))
    growth = rss[jobs] / rss[20] - 1
    report.add(
        SECTION,
        {
            "jobs": jobs,
            "seconds": seconds,
            "rss_after_1_mib": round(rss[1], 1),
            "rss_after_20_mib": round(rss[20], 1),
            "rss_after_all_mib": round(rss[jobs], 1),
            "growth": growth,
            "history_pngs": kept,
        },
    )
    if growth > GOAL:
        report.note(f"RSS grew {100 * growth:.1f}% from job 20 to {jobs}: goal < 5%", SECTION)
