"""Ratio 5: how much the worker's resident memory grows over a long run.

One series run of ``memory_items`` shows (an item each, no episodes, no
limit) goes through a fresh worker.  Its ``VmRSS`` is read once the
first ``memory_first`` rows have their data, and again once the run has
logged its completion record; the figure is the difference.
"""

from __future__ import annotations

import logging
import time

from .config import Bench, Sizes
from .pipeline import imported, importer, register_shows
from .report import Result
from .services import ApiServer, BenchmarkError, CatalogueSpec, Database, Worker
from .throughput import UNLIMITED_CALLS

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
KIB_PER_MIB = 1024


def measure(bench: Bench, sizes: Sizes) -> list[Result]:
    spec = CatalogueSpec(shows=sizes.memory_items, episodes=0, specials=0)
    with ApiServer(spec) as api, Database(bench.postgres, "memory") as database:
        register_shows(database, spec.shows)
        with importer(bench, database, api, calls=UNLIMITED_CALLS, label="memory") as worker:
            booted = worker.rss_kib()
            first, at_first, last, seconds = _run(database, worker, sizes)

    growth = (last - first) / KIB_PER_MIB
    return [Result(
        number=5,
        name=f"worker RSS after {sizes.memory_items} items - after {at_first}",
        value=growth,
        target=50,
        direction="at most",
        unit=" MiB",
        digits=1,
        beside=f"{first / KIB_PER_MIB:.1f} → {last / KIB_PER_MIB:.1f} MiB",
        details=[
            f"one series run of {sizes.memory_items} items, batches of {BATCH_SIZE}, no delay, "
            f"{bench.threads} threads, in {seconds:.1f} s",
            f"VmRSS of the worker process: {booted / KIB_PER_MIB:.1f} MiB booted, "
            f"{first / KIB_PER_MIB:.1f} MiB after {at_first} items, "
            f"{last / KIB_PER_MIB:.1f} MiB after {sizes.memory_items}",
        ],
    )]


def _run(database: Database, worker: Worker, sizes: Sizes) -> tuple[int, int, int, float]:
    """RSS after the first items, how many there were, RSS at the end, and seconds."""
    from importer.control import start_run, wait_for_run

    started = time.perf_counter()
    run_id = start_run("series", BATCH_SIZE, 0)
    while (done := imported(database).series) < sizes.memory_first:
        _check_alive(worker)
        time.sleep(0.01)
    first = worker.rss_kib()

    run = wait_for_run(run_id, poll=0.1)
    seconds = time.perf_counter() - started
    if run["imported"] != sizes.memory_items:
        raise BenchmarkError(f"the memory run imported {run['imported']} of "
                             f"{sizes.memory_items} items")
    return first, done, worker.rss_kib(), seconds


def _check_alive(worker: Worker) -> None:
    if worker.process is None or worker.process.poll() is not None:
        raise BenchmarkError(f"the worker died:\n{worker.tail()}")
