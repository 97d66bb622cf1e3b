"""The importer itself, as the suite drives it: a worker, runs, and their figures."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import RowMapping, func, select

from importer.schema import episodes, series

from .config import Bench
from .services import (
    ApiServer,
    BenchmarkError,
    Database,
    Worker,
    empty_queues,
    importer_environment,
    importer_settings,
)

#: Seconds a run may take before the suite gives up on it.
RUN_TIMEOUT = 3600.0


def register_shows(database: Database, shows: int) -> None:
    """Register shows 1..``shows`` by TVmaze id, missing their data."""
    with database.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO series (tvmaze_id, created_at) "
            "SELECT g, now() FROM generate_series(1, %(shows)s) AS g", {"shows": shows})


@contextlib.contextmanager
def importer(bench: Bench, database: Database, api: ApiServer, *, calls: int,
             period: float = 1.0, label: str) -> Iterator[Worker]:
    """A worker on ``database`` and ``api``, with runs started from this process."""
    settings = {
        "broker_url": bench.broker,
        "database_url": database.url,
        "api_url": api.url,
        "api_calls": str(calls),
        "api_period": str(period),
    }
    empty_queues(bench.broker)
    log = bench.workdir / f"worker-{label}.log"
    with importer_settings(**settings), \
            Worker(importer_environment(**settings), bench.threads, log) as worker:
        yield worker


def run_to_end(kind: str, batch_size: int, delay: float, worker: Worker) -> RowMapping:
    """Start a run of ``kind`` and wait for its completion record."""
    from importer.control import start_run, wait_for_run
    from importer.errors import ImporterError

    run_id = start_run(kind, batch_size, delay)
    try:
        return wait_for_run(run_id, poll=0.02, timeout=RUN_TIMEOUT)
    except ImporterError as error:
        raise BenchmarkError(f"{error}; the worker said:\n{worker.tail()}") from None


@dataclass(frozen=True)
class Imported:
    """How much of the catalogue has data."""

    series: int
    episodes: int
    last_write: float


def imported(database: Database) -> Imported:
    """Rows with data, and when the last of them was written (Unix time)."""
    with database.engine.connect() as connection:
        counts = [connection.execute(
            select(func.count(), func.max(table.c.checked_at))
            .where(table.c.data_last_updated_at.is_not(None))).one()
            for table in (series, episodes)]
    writes = [last for _, last in counts if isinstance(last, datetime)]
    last_write = max(writes).timestamp() if writes else time.time()
    return Imported(counts[0][0], counts[1][0], last_write)
