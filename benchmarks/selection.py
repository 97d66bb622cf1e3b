"""Ratio 4: what a batch step costs with 10^6 rows missing data, over 10^4.

The tables are filled with ``generate_series`` (every row missing its
data, ten episodes per show), analysed, and a run walks them: each
step is :func:`importer.batches.run_step` with a dispatcher that sends
nothing, so what is timed is the step's own work: locking the run,
selecting the next rows by key (:func:`importer.batches.select_next`),
recording the batch and marking its successor sent.  The figure is the
median step after a few warm-up steps, for series and for episodes; the
ratio is the larger of the two.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence

from sqlalchemy import RowMapping

from .config import Bench, Sizes
from .report import Result
from .services import Database, importer_settings

logger = logging.getLogger(__name__)

KINDS = ("series", "episodes")
BATCH_SIZE = {"series": 50, "episodes": 100}
EPISODES_PER_SHOW = 10
WARM_UP_STEPS = 3


class NullDispatcher:
    """Counts what a batch would send, and sends nothing."""

    def send_items(self, kind: str, run_id: int, rows: Sequence[RowMapping]) -> int:
        if kind == "series":
            return len(rows)
        return len({row["series_id"] for row in rows})

    def send_step(self, kind: str, run_id: int, step: int, delay_seconds: float) -> None:
        pass


def measure(bench: Bench, sizes: Sizes) -> list[Result]:
    small, large = sizes.selection_rows
    with Database(bench.postgres, "select_small") as first, \
            Database(bench.postgres, "select_large") as second:
        for database, rows in ((first, small), (second, large)):
            started = time.perf_counter()
            _fill(database, rows)
            logger.info("Filled %d rows in %.1f s.", rows, time.perf_counter() - started)
        _settle(second)
        costs = {kind: _median_steps(kind, [first, second], sizes.selection_steps)
                 for kind in KINDS}

    ratios = {kind: costs[kind][1] / costs[kind][0] for kind in KINDS}
    worst = max(KINDS, key=lambda kind: ratios[kind])
    return [Result(
        number=4,
        name=f"batch cost, {_power(large)} ÷ {_power(small)} rows missing data",
        value=ratios[worst],
        target=1.5,
        direction="at most",
        beside=f"{worst}: {costs[worst][1] * 1000:.2f} vs {costs[worst][0] * 1000:.2f} ms",
        details=[
            f"{kind}: median step {costs[kind][0] * 1000:.2f} ms at {small} rows, "
            f"{costs[kind][1] * 1000:.2f} ms at {large} rows (ratio {ratios[kind]:.2f}); "
            f"batches of {BATCH_SIZE[kind]}, {sizes.selection_steps} steps each after "
            f"{WARM_UP_STEPS} warm-up steps, the two sizes taking turns"
            for kind in KINDS
        ],
    )]


def _fill(database: Database, rows: int) -> None:
    shows = max(rows, rows // EPISODES_PER_SHOW)
    with database.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO series (id, tvmaze_id, created_at) "
            "SELECT g, g, now() FROM generate_series(1, %(shows)s) AS g", {"shows": shows})
        connection.exec_driver_sql(
            "INSERT INTO episodes (id, series_id, tvmaze_id, created_at) "
            "SELECT g, (g - 1) / %(per)s + 1, g, now() FROM generate_series(1, %(rows)s) AS g",
            {"rows": rows, "per": EPISODES_PER_SHOW})
        for table in ("series", "episodes"):
            connection.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))")

    with database.engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.exec_driver_sql("VACUUM (ANALYZE) series, episodes")


def _settle(database: Database) -> None:
    """Write the fill out to disk now, so that no checkpoint runs during the timing.

    NOTE: a table that has just taken 10^6 rows keeps the disk busy for
    a while; a catalogue in service is past that point, and that is the
    state the ratio is about.
    """
    with database.engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.exec_driver_sql("CHECKPOINT")


def _median_steps(kind: str, databases: list[Database], steps: int) -> list[float]:
    """The median step of a run of ``kind`` in each database, the databases taking turns."""
    from importer.batches import run_step
    from importer.runs import create_run

    runs = []
    for database in databases:
        with importer_settings(database_url=database.url):
            runs.append(create_run(kind, BATCH_SIZE[kind], 0.0))  # type: ignore[arg-type]

    dispatcher = NullDispatcher()
    timings: list[list[float]] = [[] for _ in databases]
    for step in range(WARM_UP_STEPS + steps):
        for database, run_id, timing in zip(databases, runs, timings, strict=True):
            with importer_settings(database_url=database.url):
                started = time.perf_counter()
                run_step(kind, run_id, step, dispatcher)  # type: ignore[arg-type]
                timing.append(time.perf_counter() - started)

    _dispose_engines(databases)
    return [statistics.median(timing[WARM_UP_STEPS:]) for timing in timings]


def _dispose_engines(databases: list[Database]) -> None:
    """Close the importer's pooled connections, so that the databases can be dropped."""
    from importer.database import get_engine

    for database in databases:
        with importer_settings(database_url=database.url):
            engine = get_engine()
        engine.dispose()


def _power(rows: int) -> str:
    exponent = len(str(rows)) - 1
    if rows == 10**exponent:
        return f"10^{exponent}"
    return str(rows)
