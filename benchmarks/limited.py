"""Ratios 1 and 2: a catalogue imported under an enforced limit, by both designs.

The server admits ``limit_calls`` requests in any one-second window and
answers 429 beyond; the importer is given the same allowance
(``IMPORTER_API_CALLS``/``IMPORTER_API_PERIOD``).  Each design imports
the same generated catalogue from scratch, series then episodes, on a
database of its own.  The *floor* of a design is the time its
successful calls need at the allowed rate; the ratio is its wall time
over that floor.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from .config import Bench, Sizes
from .naive import NaiveImport
from .pipeline import imported, importer, register_shows, run_to_end
from .report import Result
from .services import ApiServer, CatalogueSpec, Database

logger = logging.getLogger(__name__)

KINDS = ("series", "episodes")


@dataclass(frozen=True)
class Outcome:
    """One design's import of the catalogue."""

    seconds: float
    requests: int
    rate_limited: int
    series: int
    episodes: int

    def floor(self, calls_per_second: float) -> float:
        return (self.requests - self.rate_limited) / calls_per_second


def measure(bench: Bench, sizes: Sizes) -> list[Result]:
    spec = sizes.limited
    ours = _importer(bench, sizes, spec)
    logger.info("Importer under the limit: %s.", ours)
    naive = _naive(bench, sizes, spec)
    logger.info("Naive design under the limit: %s.", naive)
    return [_time_ratio(sizes, spec, ours, naive), _calls_ratio(spec, ours, naive)]


def _importer(bench: Bench, sizes: Sizes, spec: CatalogueSpec) -> Outcome:
    limit = (sizes.limit_calls, 1.0)
    with ApiServer(spec, limit) as api, Database(bench.postgres, "limited") as database:
        register_shows(database, spec.shows)
        with importer(bench, database, api, calls=sizes.limit_calls, label="limited") as worker:
            api.reset()
            started = time.perf_counter()
            for kind in KINDS:
                run_to_end(kind, sizes.limited_batch[kind], sizes.limited_delay, worker)
            seconds = time.perf_counter() - started
            requests, rate_limited = api.counters()
        done = imported(database)
    return Outcome(seconds, requests, rate_limited, done.series, done.episodes)


def _naive(bench: Bench, sizes: Sizes, spec: CatalogueSpec) -> Outcome:
    limit = (sizes.limit_calls, 1.0)
    with ApiServer(spec, limit) as api, Database(bench.postgres, "naive") as database:
        register_shows(database, spec.shows)
        naive = NaiveImport(database.engine, api.url, threads=bench.threads,
                            batch_size=sizes.limited_batch, pause=sizes.limited_delay,
                            retry_wait=sizes.naive_retry_wait)
        try:
            started = time.perf_counter()
            for kind in KINDS:
                naive.run(kind)
            seconds = time.perf_counter() - started
        finally:
            naive.close()
        requests, rate_limited = api.counters()
        done = imported(database)
    return Outcome(seconds, requests, rate_limited, done.series, done.episodes)


def _time_ratio(sizes: Sizes, spec: CatalogueSpec, ours: Outcome, naive: Outcome) -> Result:
    rate = float(sizes.limit_calls)
    ratio = ours.seconds / ours.floor(rate)
    naive_ratio = naive.seconds / naive.floor(rate)
    return Result(
        number=1,
        name=f"import time under {sizes.limit_calls} calls/s ÷ floor",
        value=ratio,
        target=1.10,
        direction="at most",
        beside=(f"{ours.rate_limited} answered 429; naive {naive_ratio:.2f} "
                f"with {naive.rate_limited} answered 429"),
        details=[
            f"catalogue: {spec.shows} shows of {spec.episodes} episodes and "
            f"{spec.specials} special; batches of {sizes.limited_batch['series']} series "
            f"and {sizes.limited_batch['episodes']} episodes, {sizes.limited_delay:g} s apart",
            f"importer: {ours.seconds:.1f} s for {ours.requests} calls "
            f"(floor {ours.floor(rate):.1f} s), {ours.rate_limited} answered 429; "
            f"stored {ours.series} series and {ours.episodes} episodes",
            f"naive: {naive.seconds:.1f} s for {naive.requests} calls "
            f"(floor {naive.floor(rate):.1f} s), {naive.rate_limited} answered 429, "
            f"retried after {sizes.naive_retry_wait:g} s; stored {naive.series} series and "
            f"{naive.episodes} episodes (specials are never found)",
            f"naive time ÷ importer floor: {naive.seconds / ours.floor(rate):.2f}",
        ],
    )


def _calls_ratio(spec: CatalogueSpec, ours: Outcome, naive: Outcome) -> Result:
    per_show = ours.requests / spec.shows
    naive_per_show = naive.requests / spec.shows
    return Result(
        number=2,
        name="API calls per show, episodes included",
        value=per_show,
        target=2.0,
        direction="at most",
        beside=f"naive {naive_per_show:.2f} (1 + {spec.episodes} episodes, 429s included)",
        details=[
            f"importer: {ours.requests} calls for {spec.shows} shows and "
            f"{spec.shows * spec.rows} episodes",
            f"naive: {naive.requests} calls, {naive.rate_limited} of them answered 429; "
            f"{(naive.requests - naive.rate_limited) / spec.shows:.2f} per show without them",
        ],
    )
