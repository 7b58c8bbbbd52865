"""Three editors at once: each of three client threads submits 20 jobs as fast as it can
against a server whose queue holds 8. Past the bound: 429 with Retry-After, and nothing that
was accepted is lost; every job completes exactly once, with its own seed and size, and each
client's jobs run in the order the server accepted them."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_support import ServerProcess, assert_no_server_bugs, wait_for

from paintbridge import pngmeta
from paintbridge.history import History
from paintbridge.hostkit import QueueFull

pytestmark = pytest.mark.slow

CLIENTS, JOBS, QUEUE = 3, 20, 8


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("load"), "--queue-size", str(QUEUE))
    yield process.wait_ready()
    process.stop()
    assert_no_server_bugs(process)


def job(client: int, n: int) -> dict[str, object]:
    """Each job is told apart by its seed, and its size says which client sent it."""
    return {
        "task": "txt2img",
        "prompt": f"client {client} job {n}",
        "width": 32 + 8 * client,
        "height": 32,
        "steps": 1,
        "seed": 1000 * client + n,
    }


def test_three_clients_twenty_jobs_each(server: ServerProcess) -> None:
    blocker = server.client().submit({**job(9, 0), "steps": 150, "count": 8})
    wait_for(lambda: server.client().poll(blocker).state == "running")
    start = threading.Barrier(CLIENTS)
    accepted: dict[int, list[tuple[str, int]]] = {c: [] for c in range(CLIENTS)}  # (id, seed)
    first_rejections: Counter[int] = Counter()
    retries: Counter[int] = Counter()
    errors: list[BaseException] = []
    release = threading.Event()

    def editor(c: int) -> None:
        client = server.client()
        try:
            start.wait()
            pending = list(range(JOBS))
            # round 1: all at once while the worker is held, so the bound is exact
            for n in list(pending):
                try:
                    accepted[c].append((client.submit(job(c, n)), 1000 * c + n))
                    pending.remove(n)
                except QueueFull as full:
                    assert full.retry_after is not None and full.retry_after >= 1
                    first_rejections[c] += 1
                    break  # the queue keeps order: the rest wait for a free slot
            release.wait()
            # round 2: retry in order on 429 (faster than Retry-After says, to load the server)
            while pending:
                try:
                    accepted[c].append((client.submit(job(c, pending[0])), 1000 * c + pending[0]))
                    pending.pop(0)
                except QueueFull:
                    retries[c] += 1
                    time.sleep(0.02)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=editor, args=(c,)) for c in range(CLIENTS)]
    for thread in threads:
        thread.start()
    wait_for(lambda: sum(first_rejections.values()) == CLIENTS or errors, timeout=60)
    assert not errors, errors
    health = server.client().health()
    assert health["queue"] == {"length": QUEUE, "max": QUEUE}  # exactly the bound, no more
    assert sum(len(ids) for ids in accepted.values()) == QUEUE
    server.client().cancel(blocker)
    release.set()
    for thread in threads:
        thread.join(300)
    assert not errors, errors

    client = server.client()
    for c, ids in accepted.items():
        assert [seed for _, seed in ids] == [1000 * c + n for n in range(JOBS)]
        for job_id, seed in ids:
            (result,) = client.wait(job_id, poll_interval=0.05, timeout=300)
            assert (result.seed, result.width, result.height) == (seed, 32 + 8 * c, 32)

    entries = [e for e in History(server.history_dir).entries() if e.job != blocker]
    by_job = Counter(entry.job for entry in entries)
    every = {job_id: seed for ids in accepted.values() for job_id, seed in ids}
    assert set(by_job) == set(every) and set(by_job.values()) == {1}  # each once, none lost
    for entry in entries:
        assert entry.seeds == (every[entry.job],)
        recorded = pngmeta.read_parameters(Path(server.history_dir) / entry.files[0])
        assert recorded["seed"] == every[entry.job] and recorded["prompt"] == entry.prompt
    order = [entry.job for entry in entries]
    for ids in accepted.values():  # each client's jobs ran in the order they were accepted
        assert [job_id for job_id in order if job_id in dict(ids)] == [i for i, _ in ids]
    total_429 = sum(first_rejections.values()) + sum(retries.values())
    print(f"load: {len(every)} jobs done once each, {total_429} answers 429, 0 lost")
