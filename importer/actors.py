"""The actors: the module the worker loads (``dramatiq importer.actors``).

Importing it builds the broker from the settings (RabbitMQ when
``IMPORTER_BROKER_URL`` is set, in-process otherwise) and declares:

* ``import_missing_series`` and ``import_missing_episodes``: the batch
  actors, one step of a run each (see :mod:`importer.batches`);
* ``import_series`` and ``import_episodes``: the item actors (see
  :mod:`importer.items`), and ``record_exhausted_item``, which gives the
  rows of an item whose retries are spent their failed outcome;
* ``scheduled_series_import``, ``scheduled_episodes_import`` and
  ``scheduled_prune_logs``: the daily schedule, run by
  ``periodiq importer.actors``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import dramatiq
from periodiq import cron
from sqlalchemy import RowMapping

from . import batches, items, outcomes
from .broker import EXHAUSTED_QUEUE, is_embedded, queue_name, send_together, setup_broker
from .catalogue import Kind
from .database import get_engine
from .errors import RunActiveError, TransientApiError
from .exitcodes import EXIT_CONFIG
from .limits import (
    BATCH_MAX_BACKOFF,
    BATCH_TIME_LIMIT,
    ITEM_MAX_BACKOFF,
    ITEM_TIME_LIMIT,
    MIN_BACKOFF,
)
from .logbook import prune_logs
from .redaction import redact
from .settings import get_settings

logger = logging.getLogger(__name__)

broker = setup_broker()

if is_embedded(broker) and Path(sys.argv[0]).name == "periodiq":
    # NOTE: the scheduler would send each daily start to an in-process
    # broker that no worker reads, and no run would ever begin.
    print("periodiq: IMPORTER_BROKER_URL is not set: the schedule needs RabbitMQ",
          file=sys.stderr)
    sys.exit(EXIT_CONFIG)

#: Retries of a message that failed for a reason of our own (the
#: database is away, a bug): enough to ride out a few minutes' outage.
MAX_RETRIES = 10

#: Upper bound on 429 and transient API retries of one message; the
#: item itself gives up on transient errors much earlier.
MAX_API_RETRIES = 100


def retry_when(retries: int, exception: BaseException) -> bool:
    """Retry policy shared by every actor."""
    if isinstance(exception, TypeError):
        # NOTE: e.g. a message queued by an earlier version, whose
        # arguments do not fit the actor: no retry ever will.
        return False

    if isinstance(exception, (dramatiq.Retry, TransientApiError)):
        return retries < MAX_API_RETRIES

    return retries < MAX_RETRIES


_batch_options: dict[str, Any] = {
    "time_limit": BATCH_TIME_LIMIT * 1000,
    "retry_when": retry_when,
    "min_backoff": MIN_BACKOFF * 1000,
    "max_backoff": BATCH_MAX_BACKOFF * 1000,
}
_item_options: dict[str, Any] = {
    "time_limit": ITEM_TIME_LIMIT * 1000,
    "retry_when": retry_when,
    "min_backoff": MIN_BACKOFF * 1000,
    "max_backoff": ITEM_MAX_BACKOFF * 1000,
    "on_retry_exhausted": "record_exhausted_item",
}


@dramatiq.actor(queue_name=queue_name("series", "batches"), **_batch_options)
def import_missing_series(run_id: int, step: int) -> None:
    """One batch step of a series run."""
    batches.run_step("series", run_id, step, DISPATCHER)


@dramatiq.actor(queue_name=queue_name("episodes", "batches"), **_batch_options)
def import_missing_episodes(run_id: int, step: int) -> None:
    """One batch step of an episodes run."""
    batches.run_step("episodes", run_id, step, DISPATCHER)


@dramatiq.actor(queue_name=queue_name("series", "items"), **_item_options)
def import_series(run_id: int, series_id: int, tvmaze_id: int) -> None:
    """Fetch and store one show."""
    items.import_series(run_id, series_id, tvmaze_id)


@dramatiq.actor(queue_name=queue_name("episodes", "items"), **_item_options)
def import_episodes(run_id: int, series_id: int, show_tvmaze_id: int,
                    rows: list[list[int]]) -> None:
    """Fetch one show's episode list and fill its episodes ``[row id, TVmaze id]``."""
    items.import_episodes(run_id, series_id, show_tvmaze_id, rows)


@dramatiq.actor(queue_name=EXHAUSTED_QUEUE, **_batch_options)
def record_exhausted_item(message: dict[str, Any], retries: dict[str, Any]) -> None:
    """Record the rows of an item message whose retries are spent as failed."""
    traceback = message.get("options", {}).get("traceback") or ""
    reason = traceback.strip().splitlines()[-1] if traceback.strip() else "retries exhausted"
    outcomes.give_up(message["actor_name"], message["args"],
                     redact(f"retries exhausted after {retries.get('retries')}: {reason}"))


BATCH_ACTORS: dict[Kind, dramatiq.Actor[Any, Any]] = {
    "series": import_missing_series,
    "episodes": import_missing_episodes,
}


class _Dispatcher:
    """Sends a run's messages through this module's actors."""

    def send_items(self, kind: Kind, run_id: int, rows: Sequence[RowMapping]) -> int:
        if kind == "series":
            messages = [import_series.message(run_id, row["id"], row["tvmaze_id"])
                        for row in rows]
        else:
            by_show: dict[tuple[int, int], list[list[int]]] = {}
            for row in rows:
                show = (row["series_id"], row["show_tvmaze_id"])
                by_show.setdefault(show, []).append([row["id"], row["tvmaze_id"]])
            messages = [import_episodes.message(run_id, series_id, show_tvmaze_id, episode_rows)
                        for (series_id, show_tvmaze_id), episode_rows in by_show.items()]
        send_together(broker, messages)
        return len(messages)

    def send_step(self, kind: Kind, run_id: int, step: int, delay_seconds: float) -> None:
        # NOTE: without a delay the step skips the delay queue's extra hop.
        delay = int(delay_seconds * 1000) or None
        BATCH_ACTORS[kind].send_with_options(args=(run_id, step), delay=delay)


DISPATCHER = _Dispatcher()


def _scheduled(kind: Kind) -> None:
    from .control import start_run

    try:
        # Batch size and delay: IMPORTER_*_BATCH_SIZE and IMPORTER_BATCH_DELAY.
        run_id = start_run(kind)
    except RunActiveError as error:
        logger.info("Scheduled %s import skipped: %s.", kind, error)
        return
    logger.info("Scheduled %s import started run %d.", kind, run_id, extra={"run_id": run_id})


@dramatiq.actor(periodic=cron(get_settings().series_schedule), max_retries=0)
def scheduled_series_import() -> None:
    """Start the daily series import, unless one is running."""
    _scheduled("series")


@dramatiq.actor(periodic=cron(get_settings().episodes_schedule), max_retries=0)
def scheduled_episodes_import() -> None:
    """Start the daily episodes import, unless one is running."""
    _scheduled("episodes")


@dramatiq.actor(periodic=cron(get_settings().prune_schedule), max_retries=0)
def scheduled_prune_logs() -> None:
    """Delete the ``job_logs`` records older than ``IMPORTER_LOG_RETENTION_DAYS``."""
    days = get_settings().log_retention_days
    if days > 0:
        prune_logs(get_engine(), timedelta(days=days))
