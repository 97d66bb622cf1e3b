"""Ratio 3: items per second through the whole pipeline over a plain loop.

No limit and no latency: the server answers as fast as it can and the
importer's allowance is the largest the settings accept.  The pipeline
is one worker process (``dramatiq importer.actors --processes 1
--threads N``) on RabbitMQ and PostgreSQL, importing series then
episodes; each run is timed from its start to the last row it wrote.
The plain loop (:mod:`benchmarks.plain`) does the same fetches and
writes on N threads of this process, with no queue.
"""

from __future__ import annotations

import logging
import time

from .config import Bench, Sizes
from .pipeline import imported, importer, register_shows, run_to_end
from .plain import PlainImport
from .report import Result
from .services import ApiServer, BenchmarkError, Database

logger = logging.getLogger(__name__)

#: The largest allowance the settings accept: in effect, no budget wait.
UNLIMITED_CALLS = 100_000


def measure(bench: Bench, sizes: Sizes) -> list[Result]:
    spec = sizes.unlimited
    with ApiServer(spec) as api:
        items, seconds, completed = _pipeline(bench, sizes, api)
        plain_items, plain_seconds = _plain(bench, sizes, api)

    rate, plain_rate = items / seconds, plain_items / plain_seconds
    return [Result(
        number=3,
        name=f"items/s, pipeline ÷ plain loop ({bench.threads} threads)",
        value=rate / plain_rate,
        target=0.8,
        direction="at least",
        beside=f"{rate:.0f} vs {plain_rate:.0f} items/s",
        details=[
            f"catalogue: {spec.shows} shows of {spec.episodes} episodes and {spec.specials} "
            f"special; an item is one show, or one show's episode list",
            f"pipeline: {items} items in {seconds:.2f} s (start of each run to its last "
            f"write); {items / completed:.0f} items/s counting until each run's "
            f"completion record ({completed:.2f} s)",
            f"plain loop: {plain_items} items in {plain_seconds:.2f} s",
        ],
    )]


def _pipeline(bench: Bench, sizes: Sizes, api: ApiServer) -> tuple[int, float, float]:
    """Items, seconds to their last write, and seconds to the completion records."""
    spec = sizes.unlimited
    items, seconds, completed = 0, 0.0, 0.0
    with Database(bench.postgres, "pipeline") as database:
        register_shows(database, spec.shows)
        with importer(bench, database, api, calls=UNLIMITED_CALLS, label="throughput") as worker:
            for kind in ("series", "episodes"):
                started = time.time()
                run = run_to_end(kind, sizes.unlimited_batch[kind], 0, worker)
                completed += time.time() - started
                done = imported(database)
                seconds += done.last_write - started
                items += run["dispatched"]
        _check(done.series, done.episodes, spec.shows, spec.shows * spec.rows, "pipeline")
    return items, seconds, completed


def _plain(bench: Bench, sizes: Sizes, api: ApiServer) -> tuple[int, float]:
    spec = sizes.unlimited
    items, seconds = 0, 0.0
    with Database(bench.postgres, "plain") as database:
        register_shows(database, spec.shows)
        plain = PlainImport(database.engine, api.url, bench.threads)
        try:
            for kind in ("series", "episodes"):
                count, took = plain.run(kind)
                items += count
                seconds += took
        finally:
            plain.close()
        done = imported(database)
        _check(done.series, done.episodes, spec.shows, spec.shows * spec.rows, "plain loop")
    return items, seconds


def _check(series: int, episodes: int, want_series: int, want_episodes: int, who: str) -> None:
    if (series, episodes) != (want_series, want_episodes):
        raise BenchmarkError(f"the {who} stored {series} series and {episodes} episodes, "
                             f"not {want_series} and {want_episodes}")
