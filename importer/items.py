"""Item work: fetch one show, or one show's episodes, and record the outcome.

Every row an item is given ends with an outcome for the run: imported,
not found, invalid, or failed once its transient errors are spent (see
:mod:`importer.outcomes`).  Only a successful response writes data, and
only to a row that still misses it, so a redelivered item changes
nothing and counts nothing twice.

An item's message carries the TVmaze ids it calls for, so the item reads
nothing before its call: a read per item cost the worker as much time as
a tenth of the item's whole work.  The price is paid only after a fault:
an item delivered again once its rows are done (a worker killed before
its ack, a batch sent twice, a run's items still queued after a takeover)
spends one API call and then finds nothing to write.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any, NoReturn

import dramatiq
from dramatiq.middleware import CurrentMessage
from sqlalchemy import Connection, Table, Update, bindparam, or_, update

from . import metrics
from .catalogue import insert_ignoring_duplicates
from .database import transaction
from .errors import (
    ApiError,
    BudgetFullError,
    InvalidPayloadError,
    NotFoundError,
    RateLimitedError,
    TransientApiError,
)
from .outcomes import (
    close_drained_run,
    count_outcomes,
    record_attempt,
    record_failure,
    record_outcome,
    record_skipped,
)
from .payloads import Row, embedded_episodes, episode_list, parse_episode, parse_show
from .schema import (
    FAILED,
    IMPORTED,
    INVALID,
    NOT_FOUND,
    check_storable,
    episodes,
    fits_integer,
    series,
    utcnow,
)
from .settings import get_settings
from .tvmaze import DEFAULT_RATE_LIMIT_WAIT, get_client

logger = logging.getLogger(__name__)


def import_series(run_id: int, series_id: int, tvmaze_id: int) -> None:
    """Fetch one show, store it and register its regular episodes."""
    try:
        payload = get_client().show(tvmaze_id, embed_episodes=True)
        data = parse_show(payload, tvmaze_id)
        check_storable(series, data)
    except ApiError as error:
        _handle_failure(series, run_id, [series_id], error, what=f"series {tvmaze_id}")
        return

    listed = _listed_episodes(payload)
    with transaction() as connection:
        imported = _store(connection, series, run_id, [(series_id, data)])
        skipped = 0 if imported else record_skipped(connection, series, run_id, [series_id])
        registered = _register_episodes(connection, series_id, listed) if imported else 0
        closing = count_outcomes(connection, "series", run_id, imported=imported,
                                 skipped=skipped)
    close_drained_run("series", run_id, closing)
    if imported:
        logger.debug("Imported series %d and registered %d episodes.", tvmaze_id, registered,
                     extra={"tvmaze_id": tvmaze_id, "registered": registered})


def import_episodes(run_id: int, series_id: int, show_tvmaze_id: int,
                    rows: Sequence[Sequence[int]]) -> None:
    """Fill one show's episodes, ``[row id, TVmaze id]`` each, from one call for its list.

    Episodes in the list that the catalogue lacks (specials, new ones)
    are registered and filled too.  An episode the list lacks is
    recorded as not found; one that does not parse, as invalid: each
    row fails alone.
    """
    known = {tvmaze_id: row_id for row_id, tvmaze_id in rows}
    try:
        payload = episode_list(get_client().episodes(show_tvmaze_id))
    except ApiError as error:
        _handle_failure(episodes, run_id, list(known.values()), error,
                        what=f"episodes of series {show_tvmaze_id}")
        return

    parsed, invalid = _parse_each(payload)
    _store_episodes(run_id, series_id, known, parsed, invalid)


def _parse_each(payload: list[Any]) -> tuple[dict[int, Row], dict[int, str]]:
    parsed: dict[int, Row] = {}
    invalid: dict[int, str] = {}
    for item in payload:
        try:
            tvmaze_id, data = parse_episode(item)
            check_storable(episodes, {"tvmaze_id": tvmaze_id, **data})
            parsed[tvmaze_id] = data
        except InvalidPayloadError as error:
            found = item.get("id") if isinstance(item, dict) else None
            if isinstance(found, int):
                invalid[found] = str(error)
    return parsed, invalid


def _store_episodes(run_id: int, series_id: int, known: dict[int, int],
                    parsed: dict[int, Row], invalid: dict[int, str]) -> None:
    """Store a show's episode list: ``known`` maps the item's TVmaze ids to their rows."""
    filled = [(known[t], data) for t, data in parsed.items() if t in known]
    bad = {known[t]: reason for t, reason in invalid.items() if t in known}
    gone = [row_id for t, row_id in known.items() if t not in parsed and t not in invalid]

    with transaction() as connection:
        imported = _store(connection, episodes, run_id, filled)
        # NOTE: the rows this item was given exist: only the rest of the
        # list can be new, and a short insert is much cheaper than a long one.
        discovered = _discover(connection, series_id, run_id,
                               {t: data for t, data in parsed.items() if t not in known})
        invalid_rows = sum(record_outcome(connection, episodes, run_id, [row_id], INVALID, reason)
                           for row_id, reason in bad.items())
        not_found = record_outcome(connection, episodes, run_id, gone, NOT_FOUND,
                                   "not in the show's episode list")
        skipped = 0
        if imported + invalid_rows + not_found < len(known):
            skipped = record_skipped(connection, episodes, run_id, list(known.values()))
        closing = count_outcomes(connection, "episodes", run_id, imported=imported,
                                 invalid=invalid_rows, not_found=not_found,
                                 discovered=discovered, skipped=skipped)
    close_drained_run("episodes", run_id, closing)

    for row_id, reason in bad.items():
        logger.warning("Episode row %d has an invalid payload: %s.", row_id, reason,
                       extra={"row_id": row_id, "outcome": INVALID, "reason": reason})


def _discover(connection: Connection, series_id: int, run_id: int,
              parsed: dict[int, Row]) -> int:
    """Register and fill the listed episodes the catalogue does not have yet."""
    if not parsed:
        return 0

    now = utcnow()
    rows = [{"tvmaze_id": t, "series_id": series_id, "created_at": now,
             "data_last_updated_at": now, "outcome": IMPORTED, "checked_at": now,
             "last_run_id": run_id, **data}
            for t, data in parsed.items()]
    return insert_ignoring_duplicates(connection, episodes, rows)


def _register_episodes(connection: Connection, series_id: int,
                       listed: list[tuple[int, int | None, int | None]]) -> int:
    now = utcnow()
    rows = [{"tvmaze_id": t, "series_id": series_id, "season": s, "number": n, "created_at": now}
            for t, s, n in listed]
    return insert_ignoring_duplicates(connection, episodes, rows)


def _listed_episodes(payload: Any) -> list[tuple[int, int | None, int | None]]:
    """Id, season and number of each embedded episode that has an id.

    The show's data does not depend on them: an odd entry is skipped
    here and reported by the episodes run, which parses it in full.
    """
    try:
        entries = embedded_episodes(payload)
    except InvalidPayloadError as error:
        logger.warning("Embedded episodes ignored: %s.", error, extra={"reason": str(error)})
        return []

    listed = []
    for entry in entries:
        if not isinstance(entry, dict) or not fits_integer(entry.get("id")):
            continue

        season, number = entry.get("season"), entry.get("number")
        listed.append((entry["id"], season if fits_integer(season) else None,
                       number if fits_integer(number) else None))
    return listed


def _store(connection: Connection, table: Table, run_id: int,
           rows: list[tuple[int, Row]]) -> int:
    """Write fetched data to rows that still miss it; return how many were written."""
    if not rows:
        return 0

    now = utcnow()
    params = [{"row_id": row_id, "run_id": run_id, **data, "data_last_updated_at": now,
               "outcome": IMPORTED, "attempts": 0, "failed_runs": 0, "last_error": None,
               "checked_at": now, "last_run_id": run_id}
              for row_id, data in rows]
    statement = _store_statement(
        table, tuple(key for key in params[0] if key not in ("row_id", "run_id")))
    # NOTE: one row goes as a plain execute: a list, even of one, takes
    # the driver's executemany path, which costs a show's item more.
    return int(connection.execute(statement, params if len(params) > 1 else params[0]).rowcount)


@functools.cache
def _store_statement(table: Table, columns: tuple[str, ...]) -> Update:
    # NOTE: a row that has its outcome for this run (a first delivery
    # found it missing from the API) is not written, or it would count
    # twice.  The condition is checked again once each row is locked, so
    # of two deliveries of one item writing at once, one writes and counts.
    return (update(table)
            .where(table.c.id == bindparam("row_id"), table.c.data_last_updated_at.is_(None),
                   or_(table.c.last_run_id.is_(None), table.c.last_run_id != bindparam("run_id")))
            .values({key: bindparam(key) for key in columns}))


def _handle_failure(table: Table, run_id: int, row_ids: list[int], error: ApiError,
                    what: str) -> None:
    """Record a failed call's outcome, or raise to have the message retried."""
    if isinstance(error, RateLimitedError):
        _retry_later(error, table.name, what)

    outcome = {NotFoundError: NOT_FOUND, InvalidPayloadError: INVALID}.get(type(error), FAILED)
    attempt = transient_attempts() + 1
    if isinstance(error, TransientApiError) and attempt <= get_settings().max_item_retries:
        record_attempt(table, row_ids, str(error))
        logger.warning("Attempt %d for %s failed: %s; retrying.", attempt, what, error,
                       extra={"rows": row_ids, "attempt": attempt, "reason": str(error)})
        # NOTE: an expected failure, said in the line above: retried with
        # the actor's backoff, without a traceback in the worker's log.
        raise dramatiq.Retry(str(error)) from None

    record_failure(table, run_id, row_ids, outcome, str(error))
    level = logging.INFO if outcome == NOT_FOUND else logging.WARNING
    logger.log(level, "No data for %s: %s (%s).", what, outcome, error, extra={
        "rows": row_ids, "outcome": outcome, "reason": str(error), "attempt": attempt})


def _retry_later(error: RateLimitedError, kind: str, what: str) -> NoReturn:
    message = CurrentMessage.get_current_message()
    if message is not None:
        # NOTE: Retries counts every retry; 429s are counted apart so
        # that they do not spend the budget meant for real errors.
        message.options["rate_limited"] = message.options.get("rate_limited", 0) + 1

    seconds = error.retry_after if error.retry_after is not None else DEFAULT_RATE_LIMIT_WAIT
    if isinstance(error, BudgetFullError):
        # NOTE: no answer of the API: the allowance is booked ahead, which
        # is the budget doing its work, not a fault.
        logger.debug("API budget full for %s; retrying in %.1f s.", what, seconds,
                     extra={"retry_after": seconds})
    else:
        metrics.rate_limited(kind)
        logger.warning("Rate limited on %s; retrying in %.1f s.", what, seconds,
                       extra={"retry_after": seconds})
    raise dramatiq.Retry(str(error), delay=int(seconds * 1000))


def transient_attempts() -> int:
    """Retries of the current message that were not caused by a 429."""
    message = CurrentMessage.get_current_message()
    if message is None:
        return 0

    retries = int(message.options.get("retries", 0))
    return max(retries - int(message.options.get("rate_limited", 0)), 0)


__all__ = ["import_episodes", "import_series"]
