"""One batch step of a run: select the next rows, dispatch items, continue.

A step:

1. checks that the message's step is the one the run expects;
2. selects the next rows that need data *after the run's cursor*, by key;
3. sends one item message per row (per show, for episodes);
4. takes the run's row lock, checks the step again, moves the cursor
   and the step on, and commits.

Items count their outcomes on the run's row, so the lock is taken only
once the items are sent; a delivery that finds the step done meanwhile
records nothing, and the items it sent twice find their rows done.

Only then is the successor sent, with the run's delay, and marked as
sent.  A redelivered message finds its step done and does nothing,
except re-sending a successor that was never marked as sent (the worker
died between commit and send).  Once no rows remain, the run *drains*:
the step repeats, without selecting, until every selected row has its
outcome, then logs the completion record and closes the run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import dramatiq
from sqlalchemy import (
    ColumnElement,
    Connection,
    RowMapping,
    Table,
    and_,
    func,
    or_,
    select,
    tuple_,
    update,
)

from . import metrics
from .catalogue import Kind, needs_data, recheck_before, table_for
from .database import transaction
from .joblog import log_in_transaction
from .limits import DRAIN_TIMEOUT, SUCCESSOR_GRACE
from .runs import COMPLETED, RUNNING, get_run, items_done, lock_run
from .schema import episodes, import_runs, series, utcnow
from .settings import get_settings

logger = logging.getLogger(__name__)

#: Longest and shortest wait between two checks of a draining run.
DRAIN_POLL_SECONDS = 2.0
DRAIN_POLL_MIN_SECONDS = 0.25


class Dispatcher(Protocol):
    """Sends the messages of a run: items and the next batch step."""

    def send_items(self, kind: Kind, run_id: int, rows: Sequence[RowMapping]) -> int:
        """Send the item messages for ``rows``; return how many were sent."""

    def send_step(self, kind: Kind, run_id: int, step: int, delay_seconds: float) -> None:
        """Send the batch message for ``step`` of the run."""


@dataclass(frozen=True)
class Selection:
    """The rows a batch selected, and where the cursor stops."""

    rows: list[RowMapping]
    cursor_series: int
    cursor_id: int
    continues: bool


@dataclass(frozen=True)
class Dispatched:
    """A batch step's items, sent before the step took its run's lock."""

    step: int
    selection: Selection
    sent: int


def run_step(kind: Kind, run_id: int, step: int, dispatcher: Dispatcher) -> None:
    """Carry out ``step`` of the run, once, however often it is delivered."""
    ahead = _dispatch_ahead(kind, run_id, step, dispatcher)
    with transaction() as connection:
        run = lock_run(connection, run_id)
        if run is None or run["status"] != RUNNING:
            # NOTE: a run closed by its last item still gets the check it
            # had scheduled: expected, and not worth a record of its own.
            closed = run is not None and run["status"] == COMPLETED
            level = logging.DEBUG if closed else logging.INFO
            logger.log(level, "Run %s is not running; batch message ignored.", run_id,
                       extra={"run_id": run_id, "step": step})
            return

        if step == run["step"]:
            successor = _carry_out(connection, run, dispatcher, ahead)
        elif step == run["step"] - 1 and not run["successor_sent"]:
            successor = _unsent_successor(run, step)
        else:
            logger.info("Step %d of run %d already done; duplicate message ignored.", step,
                        run_id, extra={"run_id": run_id, "step": step})
            return

    if successor is not None:
        _send_successor(kind, run_id, *successor, dispatcher=dispatcher)


def _unsent_successor(run: RowMapping, step: int) -> tuple[int, float]:
    """The successor of a done step that was never marked as sent, to send it now.

    NOTE: the delivery that did the step may still be sending it: a
    duplicate delivered at the same time finds the step done a moment
    after its commit.  Sending then would double every later step, so a
    recent step is checked again later, by retrying this message.
    """
    since_step = (utcnow() - run["heartbeat_at"]).total_seconds()
    if since_step < SUCCESSOR_GRACE:
        logger.info("Step %d of run %d is done and its successor not yet marked as sent; "
                    "checking again in %.0f s.", step, run["id"], SUCCESSOR_GRACE - since_step,
                    extra={"run_id": run["id"], "step": step})
        raise dramatiq.Retry(delay=int((SUCCESSOR_GRACE - since_step) * 1000) + 1000)

    logger.warning("Step %d of run %d was done but its successor was never sent; "
                   "sending it now.", step, run["id"], extra={"run_id": run["id"], "step": step})
    return run["step"], _next_delay(run)


def _dispatch_ahead(kind: Kind, run_id: int, step: int,
                    dispatcher: Dispatcher) -> Dispatched | None:
    """Select a batch step's rows and send their items, before the step locks its run.

    NOTE: a batch is sent only once the broker holds all of it, which
    takes a while, and every item that ends meanwhile would wait for the
    run's lock to count its outcome.  The step is still recorded only under the lock:
    a duplicate delivery racing this one at worst sends the same items
    twice, and an item that finds its rows done writes and counts nothing.
    """
    with transaction() as connection:
        run = get_run(connection, run_id)
        if (run is None or run["status"] != RUNNING or run["step"] != step
                or run["draining_since"] is not None):
            return None
        selection = select_next(connection, kind, run)
    return Dispatched(step, selection, dispatcher.send_items(kind, run_id, selection.rows))


def _carry_out(connection: Connection, run: RowMapping, dispatcher: Dispatcher,
               ahead: Dispatched | None) -> tuple[int, float] | None:
    """Do the run's current step; return the next step and its delay, if any."""
    if run["draining_since"] is None:
        if _batch(connection, run, dispatcher, ahead):
            return run["step"] + 1, run["delay_seconds"]

        # NOTE: counted with the rows this last batch selected, some of
        # which may have their outcome already.
        drained = get_run(connection, run["id"])
        return run["step"] + 1, _drain_poll(drained if drained is not None else run)

    if _drain(connection, run):
        return run["step"] + 1, _next_delay(run)

    return None


def _next_delay(run: RowMapping) -> float:
    if run["draining_since"] is None:
        return float(run["delay_seconds"])

    return _drain_poll(run)


def _drain_poll(run: RowMapping) -> float:
    """Seconds until a draining run is checked again: about when its items should be done.

    NOTE: not the run's delay: a run without one would check itself
    continuously, and every check takes the run's lock from its items.
    The item that ends the run's last row has it checked at once
    (:func:`~importer.outcomes.close_drained_run`); a run with no row
    outstanding is checked at once here.
    """
    outstanding = max(run["selected"] - items_done(run), 0)
    if outstanding == 0:
        return 0.0

    expected = outstanding * get_settings().api_interval
    return float(min(max(expected, DRAIN_POLL_MIN_SECONDS), DRAIN_POLL_SECONDS))


def _batch(connection: Connection, run: RowMapping, dispatcher: Dispatcher,
           ahead: Dispatched | None) -> bool:
    """Select and dispatch one batch (unless sent ahead); return True when more rows remain."""
    kind: Kind = run["kind"]
    _log_step(connection, run, "batch_started", "Batch %d of %s run %d started.",
              run["step"], kind, run["id"],
              batch_size=run["batch_size"], delay_seconds=run["delay_seconds"])

    if ahead is not None and ahead.step == run["step"]:
        selection, dispatched = ahead.selection, ahead.sent
    else:
        selection = select_next(connection, kind, run)
        dispatched = dispatcher.send_items(kind, run["id"], selection.rows)
    processed = len(selection.rows)
    total = _known_total(connection, run, selection)
    found = total - run["selected"]
    _log_step(connection, run, "batch_found",
              "Found %d %s without data, processing %d in this batch.", found, kind, processed,
              found=found, processing=processed)

    _record_batch(connection, run, selection, dispatched, total)

    remaining = total - run["selected"] - processed
    metrics.remaining(kind, remaining)
    next_batch = f", next batch in {run['delay_seconds']:g} s" if selection.continues else ""
    _log_step(connection, run, "batch_result",
              "Batch %d of %s run %d dispatched %d items for %d rows; %d remain%s.",
              run["step"], kind, run["id"], dispatched, processed, remaining, next_batch,
              dispatched=dispatched, processed=processed, remaining=remaining,
              continues=selection.continues)
    return selection.continues


def _log_step(connection: Connection, run: RowMapping, event: str, message: str,
              *args: Any, **fields: Any) -> None:
    """Log one of a batch step's records, with the run, the step and the event.

    NOTE: a step's records are written with the step itself: a worker
    killed after the commit cannot lose them, nor one killed before it
    double them when the step is done again.
    """
    extra = {"event": event, "run_id": run["id"], "step": run["step"], **fields}
    log_in_transaction(connection, logger, logging.INFO, message, *args, extra=extra)


def select_next(connection: Connection, kind: Kind, run: RowMapping) -> Selection:
    """The next rows after the run's cursor that need data, by key."""
    table = table_for(kind)
    wanted = _wanted(table, run)
    if kind == "series":
        return _select_series(connection, table, wanted, run)

    return _select_episodes(connection, table, wanted, run)


def _wanted(table: Table, run: RowMapping) -> ColumnElement[bool]:
    """The rows of ``table`` that the run still has to select."""
    # NOTE: a step retried after its items were sent must not select the
    # rows that those items already gave an outcome for this run.
    return and_(needs_data(table, recheck_before(get_settings().not_found_recheck_days)),
                or_(table.c.last_run_id.is_(None), table.c.last_run_id != run["id"]))


def _after(table: Table, cursor_series: int, cursor_id: int) -> ColumnElement[bool]:
    """The rows after a cursor, by key: ``id`` for series, ``(series_id, id)`` for episodes."""
    if table is series:
        return table.c.id > cursor_id

    return tuple_(table.c.series_id, table.c.id) > tuple_(cursor_series, cursor_id)


def _known_total(connection: Connection, run: RowMapping, selection: Selection) -> int:
    """The rows the run selects in all, as far as it is known after this batch.

    NOTE: from the count taken when the run started: a count per batch
    would scan the table.  The last batch makes it exact.  A batch that
    finds rows beyond it which that count left out (registered since the
    run started) counts the rows after it, once, to set it right.
    """
    selected = int(run["selected"]) + len(selection.rows)
    if not selection.continues:
        return selected

    if run["total"] > selected:
        return int(run["total"])

    table = table_for(run["kind"])
    after = _after(table, selection.cursor_series, selection.cursor_id)
    query = select(func.count()).select_from(table).where(_wanted(table, run), after)
    return selected + int(connection.execute(query).scalar_one())


def _select_series(connection: Connection, table: Table, wanted: Any,
                   run: RowMapping) -> Selection:
    # NOTE: one row beyond the batch tells whether another batch follows:
    # a batch that merely fills up to its size may have taken the last rows,
    # and the run then drains at once instead of waiting its delay for nothing.
    query = (select(table.c.id, table.c.tvmaze_id)
             .where(wanted, _after(table, 0, run["cursor_id"]))
             .order_by(table.c.id).limit(run["batch_size"] + 1))
    rows = list(connection.execute(query).mappings())
    continues = len(rows) > run["batch_size"]
    del rows[run["batch_size"]:]

    last = rows[-1]["id"] if rows else run["cursor_id"]
    return Selection(rows, 0, last, continues)


#: An episodes batch's rows, each with its show's TVmaze id: the item calls
#: for the show's episode list by it.
_EPISODES_WITH_SHOW = select(
    episodes.c.id, episodes.c.series_id, episodes.c.tvmaze_id,
    series.c.tvmaze_id.label("show_tvmaze_id"),
).join_from(episodes, series, series.c.id == episodes.c.series_id)


def _select_episodes(connection: Connection, table: Table, wanted: Any,
                     run: RowMapping) -> Selection:
    # NOTE: the key is (series_id, id) so that one show's episodes come
    # together; the batch then takes the rest of its last show, so that
    # no show is split over two batches and each costs one API call.
    query = (_EPISODES_WITH_SHOW
             .where(wanted, _after(table, run["cursor_series"], run["cursor_id"]))
             .order_by(table.c.series_id, table.c.id).limit(run["batch_size"] + 1))
    rows = list(connection.execute(query).mappings())
    if not rows:
        return Selection([], run["cursor_series"], run["cursor_id"], continues=False)

    if len(rows) <= run["batch_size"]:
        return Selection(rows, rows[-1]["series_id"], rows[-1]["id"], continues=False)

    # As for series, the row beyond the batch tells whether another follows.
    beyond = rows.pop()
    last_series = rows[-1]["series_id"]
    if beyond["series_id"] != last_series:
        return Selection(rows, last_series, rows[-1]["id"], continues=True)

    rows.extend(_rest_of_show(connection, wanted, last_series, rows[-1]["id"]))
    continues = _any_show_after(connection, wanted, last_series)
    return Selection(rows, last_series, rows[-1]["id"], continues)


def _rest_of_show(connection: Connection, wanted: Any, series_id: int,
                  after_id: int) -> list[RowMapping]:
    query = (_EPISODES_WITH_SHOW
             .where(wanted, episodes.c.series_id == series_id, episodes.c.id > after_id)
             .order_by(episodes.c.id))
    return list(connection.execute(query).mappings())


def _any_show_after(connection: Connection, wanted: Any, series_id: int) -> bool:
    query = (select(episodes.c.id)
             .where(wanted, episodes.c.series_id > series_id)
             .order_by(episodes.c.series_id, episodes.c.id).limit(1))
    return connection.execute(query).first() is not None


def _record_batch(connection: Connection, run: RowMapping, selection: Selection,
                  dispatched: int, total: int) -> None:
    """Move the run past this batch."""
    now = utcnow()
    selected = run["selected"] + len(selection.rows)
    connection.execute(update(import_runs).where(import_runs.c.id == run["id"]).values(
        step=run["step"] + 1,
        total=total,
        cursor_series=selection.cursor_series,
        cursor_id=selection.cursor_id,
        selected=selected,
        dispatched=run["dispatched"] + dispatched,
        batches=run["batches"] + 1,
        successor_sent=False,
        draining_since=None if selection.continues else now,
        heartbeat_at=now,
    ))


def _drain(connection: Connection, run: RowMapping) -> bool:
    """Close the run if its items are done; return True to check again later."""
    done = items_done(run)
    timed_out = utcnow() - run["draining_since"] > drain_timeout(run["selected"] - done)
    if done < run["selected"] and not timed_out:
        connection.execute(update(import_runs).where(import_runs.c.id == run["id"]).values(
            step=run["step"] + 1, successor_sent=False, heartbeat_at=utcnow()))
        return True

    _complete(connection, run, pending=run["selected"] - done)
    return False


def drain_timeout(outstanding: int) -> timedelta:
    """How long a draining run waits for its ``outstanding`` items before closing anyway.

    NOTE: the items may still be queued behind each other: they need the
    budget's time for their calls, and :data:`DRAIN_TIMEOUT` beyond it.
    A run whose items are stuck (given up, lost) closes that much later.
    """
    budget_time = max(outstanding, 0) * get_settings().api_interval
    return timedelta(seconds=DRAIN_TIMEOUT + budget_time)


def _complete(connection: Connection, run: RowMapping, pending: int) -> None:
    now = utcnow()
    connection.execute(update(import_runs).where(import_runs.c.id == run["id"]).values(
        status=COMPLETED, finished_at=now, heartbeat_at=now, step=run["step"] + 1))

    seconds = (now - run["started_at"]).total_seconds()
    fields = {name: run[name] for name in (
        "kind", "batches", "selected", "dispatched", "imported", "not_found", "invalid",
        "failed", "discovered", "skipped")}
    log_in_transaction(
        connection, logger, logging.INFO,
        "Run %d (%s) completed in %.1f s: %d batches, %d rows selected, %d imported, "
        "%d not found, %d invalid, %d failed, %d filled by an earlier run.",
        run["id"], run["kind"], seconds, run["batches"], run["selected"], run["imported"],
        run["not_found"], run["invalid"], run["failed"], run["skipped"],
        extra={"run_id": run["id"], "event": "run_completed", "duration_seconds": seconds,
               "pending": pending, **fields})
    if pending > 0:
        logger.warning("Run %d closed with %d items still pending.", run["id"], pending,
                       extra={"run_id": run["id"], "pending": pending})


def _send_successor(kind: Kind, run_id: int, step: int, delay: float, *,
                    dispatcher: Dispatcher) -> None:
    # NOTE: sent after the step's commit, so a step that failed never
    # has a successor; marked as sent afterwards, so a redelivery of
    # this step can tell whether the worker died in between.
    dispatcher.send_step(kind, run_id, step, delay)
    with transaction() as connection:
        connection.execute(
            update(import_runs)
            .where(import_runs.c.id == run_id, import_runs.c.step == step)
            .values(successor_sent=True))
