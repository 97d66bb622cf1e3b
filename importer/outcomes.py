"""Row outcomes: what a run records of each row it could not fill, and its counts.

An outcome is written once per run, with a condition on the row's
state, so a redelivered item changes nothing and counts nothing twice.
Nothing here ever blanks or deletes a row's data.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table, bindparam, case, or_, update

from . import metrics
from .catalogue import Kind, kind_of
from .database import transaction
from .runs import RUNNING, items_done
from .schema import FAILED, INVALID, PARKED, episodes, import_runs, series, utcnow
from .settings import get_settings

logger = logging.getLogger(__name__)

#: The run's counts of row outcomes, which items add to.
COUNTS = ("imported", "not_found", "invalid", "failed", "discovered", "skipped")

#: The longest error text kept on a row.
MAX_ERROR_LENGTH = 1000

# NOTE: built once: every item runs it, and building a statement costs a
# worker thread about as much as the database takes to run it.
_COUNT = (update(import_runs).where(import_runs.c.id == bindparam("run_id"))
          .values({name: import_runs.c[name] + bindparam(name) for name in COUNTS})
          .returning(import_runs.c.status, import_runs.c.step, import_runs.c.draining_since,
                     import_runs.c.selected, *(import_runs.c[name] for name in COUNTS)))


def count_outcomes(connection: Connection, kind: str, run_id: int,
                   **increments: int) -> int | None:
    """Add row outcomes to the run's counts (and to the metrics).

    Return the run's step when these were the last rows it waited for,
    so that it can be closed once they are committed (:func:`close_drained_run`).
    """
    if not any(increments.values()):
        return None

    run = connection.execute(
        _COUNT, {"run_id": run_id, **dict.fromkeys(COUNTS, 0), **increments}).mappings().first()
    for outcome, count in increments.items():
        metrics.rows(kind, outcome, count)

    if (run is None or run["status"] != RUNNING or run["draining_since"] is None
            or items_done(run) < run["selected"]):
        return None
    return int(run["step"])


def close_drained_run(kind: Kind, run_id: int, step: int | None) -> None:
    """Send the step that closes a run whose last rows just got their outcome.

    NOTE: a draining run checks itself only every so often, and Dramatiq
    looks at delayed messages only about once a second: without this a
    run would end up to a few seconds after its last item.  The check
    the run had scheduled then finds it closed and does nothing.
    """
    if step is None:
        return

    from .actors import DISPATCHER

    DISPATCHER.send_step(kind, run_id, step, 0)


def record_outcome(connection: Connection, table: Table, run_id: int, row_ids: list[int],
                   outcome: str, reason: str) -> int:
    """Give rows their failure outcome for this run, once; return how many changed.

    A row that failed (or was invalid) in ``IMPORTER_PARK_AFTER_RUNS``
    runs is parked instead.
    """
    if not row_ids:
        return 0

    counts_as_failed = outcome in (FAILED, INVALID)
    failed_runs = table.c.failed_runs + (1 if counts_as_failed else 0)
    new_outcome: Any = outcome
    if counts_as_failed:
        new_outcome = case((failed_runs >= get_settings().park_after_runs, PARKED),
                           else_=outcome)

    result = connection.execute(update(table).where(
        table.c.id.in_(row_ids),
        table.c.data_last_updated_at.is_(None),
        or_(table.c.last_run_id.is_(None), table.c.last_run_id != run_id),
    ).values(outcome=new_outcome, failed_runs=failed_runs, last_error=reason[:MAX_ERROR_LENGTH],
             last_run_id=run_id, checked_at=utcnow()))
    return int(result.rowcount)


def record_skipped(connection: Connection, table: Table, run_id: int,
                   row_ids: list[int]) -> int:
    """Count, once for the run, the rows that another run's items filled; return how many.

    NOTE: after a takeover the abandoned run's items still in the queue
    fill rows that the new run selected too.  The new run's items find
    them filled, but the run must count them as done, or it would wait
    for them until its drain timeout.
    """
    if not row_ids:
        return 0

    result = connection.execute(update(table).where(
        table.c.id.in_(row_ids),
        table.c.data_last_updated_at.is_not(None),
        or_(table.c.last_run_id.is_(None), table.c.last_run_id != run_id),
    ).values(last_run_id=run_id))
    return int(result.rowcount)


def record_failure(table: Table, run_id: int, row_ids: list[int], outcome: str,
                   reason: str) -> int:
    """Give rows a failure outcome for the run and count it; return how many changed.

    A row filled meanwhile by another run's item counts as skipped.
    """
    with transaction() as connection:
        recorded = record_outcome(connection, table, run_id, row_ids, outcome, reason)
        skipped = 0
        if recorded < len(row_ids):
            skipped = record_skipped(connection, table, run_id, row_ids)
        closing = count_outcomes(connection, table.name, run_id,
                                 **{outcome: recorded, "skipped": skipped})
    close_drained_run(kind_of(table), run_id, closing)
    return recorded


def record_attempt(table: Table, row_ids: list[int], reason: str) -> None:
    """Note a transient failure on rows that will be tried again."""
    with transaction() as connection:
        connection.execute(update(table).where(
            table.c.id.in_(row_ids), table.c.data_last_updated_at.is_(None)).values(
            attempts=table.c.attempts + 1, last_error=reason[:MAX_ERROR_LENGTH],
            checked_at=utcnow()))


def give_up(actor_name: str, args: Sequence[Any], reason: str) -> None:
    """Record the rows of an item message whose retries are spent as failed.

    NOTE: a message fails for good after its retries (the database was
    away for too long, a bug); without this its rows would have no
    outcome, and their run would wait for them until its drain timeout.
    """
    run_id = args[0]
    table, row_ids = _item_rows(actor_name, args)
    recorded = record_failure(table, run_id, row_ids, FAILED, reason)
    logger.error("Gave up on %s for rows %s: %s.", actor_name, row_ids, reason, extra={
        "run_id": run_id, "rows": row_ids, "outcome": FAILED, "reason": reason,
        "recorded": recorded})


def _item_rows(actor_name: str, args: Sequence[Any]) -> tuple[Table, list[int]]:
    """The table and the row ids of an item message's arguments.

    NOTE: an episodes item lists its rows last: ``[row id, TVmaze id]``
    pairs, or bare row ids in a message queued by an earlier version.
    """
    if actor_name == "import_series":
        return series, [args[1]]

    return episodes, [row if isinstance(row, int) else row[0] for row in args[-1]]
