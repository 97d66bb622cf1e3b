"""Runs: one import of a kind, from its first batch to its completion record.

A run's progress lives in its ``import_runs`` row, not in its messages:
the batch *step* the run expects next, the key *cursor* it has reached,
and its counts.  A batch message carries ``(run_id, step)``; a message
whose step has already happened does nothing, which is what makes a
redelivered batch harmless.

At most one run per kind is ``running`` (a unique partial index).  A
run's heartbeat is refreshed by every step; once it is older than
:func:`stale_after` the run is taken to be dead and the next start
takes over, continuing with the rows still missing.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, select, update
from sqlalchemy.exc import IntegrityError

from .catalogue import KINDS, Kind, count_needing_data
from .database import get_engine
from .errors import ConfigurationError, ImporterError, RunActiveError
from .limits import BATCH_MAX_BACKOFF, BATCH_TIME_LIMIT, MAX_BATCH_SIZE, MAX_DELAY_SECONDS
from .schema import import_runs, utcnow
from .settings import get_settings

logger = logging.getLogger(__name__)

RUNNING = "running"
COMPLETED = "completed"
ABANDONED = "abandoned"


def check_options(kind: str, batch_size: int | None,
                  delay: float | None) -> tuple[Kind, int, float]:
    """Validate a run's options, filling in the defaults of its kind."""
    if kind not in KINDS:
        raise ConfigurationError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")

    checked_kind: Kind = "series" if kind == "series" else "episodes"

    settings = get_settings()
    default_size = settings.series_batch_size if checked_kind == "series" \
        else settings.episodes_batch_size
    size = default_size if batch_size is None else batch_size
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH_SIZE:
        raise ConfigurationError(f"batch size must be a whole number from 1 to {MAX_BATCH_SIZE}")

    seconds = settings.batch_delay if delay is None else delay
    if not isinstance(seconds, (int, float)) or not 0 <= seconds <= MAX_DELAY_SECONDS:
        raise ConfigurationError(
            f"delay must be from 0 to {MAX_DELAY_SECONDS} seconds "
            "(RabbitMQ requeues messages held longer)")
    # NOTE: + 0.0 turns a -0.0 into 0.0.
    return checked_kind, size, float(seconds) + 0.0


def stale_after(delay_seconds: float) -> timedelta:
    """How old a running run's heartbeat may get before the run counts as dead.

    A live run refreshes its heartbeat at every step: at most one delay
    plus one batch (or its retries, when the database or the broker is
    away) apart.
    """
    return timedelta(seconds=2 * (delay_seconds + BATCH_TIME_LIMIT + BATCH_MAX_BACKOFF))


def lock_run(connection: Connection, run_id: int) -> RowMapping | None:
    """The run's row, locked until the end of the transaction."""
    query = select(import_runs).where(import_runs.c.id == run_id).with_for_update()
    return connection.execute(query).mappings().one_or_none()


def get_run(connection: Connection, run_id: int) -> RowMapping | None:
    return connection.execute(
        select(import_runs).where(import_runs.c.id == run_id)).mappings().one_or_none()


def active_run(connection: Connection, kind: Kind) -> RowMapping | None:
    query = select(import_runs).where(import_runs.c.kind == kind, import_runs.c.status == RUNNING)
    return connection.execute(query).mappings().one_or_none()


def recent_runs(connection: Connection, kind: Kind, limit: int = 5) -> list[RowMapping]:
    query = (select(import_runs).where(import_runs.c.kind == kind)
             .order_by(import_runs.c.id.desc()).limit(limit))
    return list(connection.execute(query).mappings())


def is_stale(run: RowMapping) -> bool:
    return bool(utcnow() - run["heartbeat_at"] > stale_after(run["delay_seconds"]))


def create_run(kind: Kind, batch_size: int, delay: float, *, takeover: bool = False,
               engine: Engine | None = None) -> int:
    """Record a new running run and return its id.

    Raises :class:`RunActiveError` when a live run of the same kind exists,
    unless it is stale or ``takeover`` is set, in which case it is abandoned.
    """
    engine = engine or get_engine()
    try:
        with engine.begin() as connection:
            _take_over_if_allowed(connection, kind, takeover)
            return _insert_run(connection, kind, batch_size, delay)
    except IntegrityError:
        # Another start won the race for the unique index.
        with engine.connect() as connection:
            raise _run_active(active_run(connection, kind), kind) from None


def _take_over_if_allowed(connection: Connection, kind: Kind, takeover: bool) -> None:
    run = active_run(connection, kind)
    if run is None:
        return

    if not (takeover or is_stale(run)):
        raise _run_active(run, kind)

    connection.execute(update(import_runs).where(import_runs.c.id == run["id"])
                       .values(status=ABANDONED, finished_at=utcnow()))
    reason = "forced" if takeover else "stale heartbeat"
    logger.warning("Took over %s run %d (%s, last heartbeat %s).", kind, run["id"], reason,
                   run["heartbeat_at"].isoformat(), extra={"run_id": run["id"], "reason": reason})


def _insert_run(connection: Connection, kind: Kind, batch_size: int, delay: float) -> int:
    now = utcnow()
    total = count_needing_data(connection, kind, get_settings().not_found_recheck_days)
    values: dict[str, Any] = {
        "kind": kind, "batch_size": batch_size, "delay_seconds": delay, "status": RUNNING,
        "step": 0, "total": total, "started_at": now, "heartbeat_at": now,
    }
    inserted = connection.execute(import_runs.insert().values(values)).inserted_primary_key
    assert inserted is not None
    run_id = int(inserted[0])
    logger.info("Run %d (%s) created: %d rows need data, %d per batch, %.1f s apart.",
                run_id, kind, total, batch_size, delay,
                extra={"run_id": run_id, "kind": kind, "total": total, "batch_size": batch_size,
                       "delay_seconds": delay})
    return int(run_id)


def _run_active(run: RowMapping | None, kind: Kind) -> ImporterError:
    if run is None:
        return ImporterError(f"another {kind} run started and ended at this very moment; "
                             "start again to import what it left")

    return RunActiveError(run["id"], kind, run["started_at"], run["selected"], run["total"],
                          stale_at=run["heartbeat_at"] + stale_after(run["delay_seconds"]))


def abandon_run(run_id: int, engine: Engine | None = None) -> None:
    """Mark a run that could not be started as abandoned."""
    with (engine or get_engine()).begin() as connection:
        connection.execute(update(import_runs).where(import_runs.c.id == run_id)
                           .values(status=ABANDONED, finished_at=utcnow()))


def is_finished(run: RowMapping) -> bool:
    return bool(run["status"] != RUNNING)


def items_done(run: RowMapping) -> int:
    """Selected rows that have their outcome for this run."""
    return int(run["imported"] + run["not_found"] + run["invalid"] + run["failed"]
               + run["skipped"])
