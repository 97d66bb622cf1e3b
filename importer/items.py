"""Item work: fetch one show, or one show's episodes, and record the outcome.

Every row an item is given ends with an outcome for the run: imported,
not found, invalid, or failed once its transient errors are spent.
Only a successful response writes data; a failure records its reason
and leaves whatever the row already holds.  Each outcome is written
with a condition on the row's state, so a redelivered item changes
nothing and counts nothing twice.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Sequence
from typing import Any, NoReturn

import dramatiq
import httpx
from dramatiq.middleware import CurrentMessage
from sqlalchemy import (
    BigInteger,
    Connection,
    Integer,
    Select,
    Table,
    Update,
    bindparam,
    case,
    or_,
    select,
    update,
)

from . import metrics
from .budget import ApiBudget
from .catalogue import insert_ignoring_duplicates
from .database import autocommit, get_engine, transaction
from .errors import (
    ApiError,
    BudgetFullError,
    InvalidPayloadError,
    NotFoundError,
    RateLimitedError,
    TransientApiError,
)
from .logs import RedactingFilter
from .payloads import Row, embedded_episodes, episode_list, parse_episode, parse_show
from .schema import (
    FAILED,
    IMPORTED,
    INVALID,
    NOT_FOUND,
    PARKED,
    episodes,
    import_runs,
    series,
    utcnow,
)
from .settings import get_settings
from .tvmaze import DEFAULT_RATE_LIMIT_WAIT, TvmazeClient

logger = logging.getLogger(__name__)


_client: TvmazeClient | None = None
_client_lock = threading.Lock()
_REDACTING = RedactingFilter()


def get_client() -> TvmazeClient:
    """The API client of this process, sharing the database's API budget."""
    global _client

    with _client_lock:
        if _client is None:
            settings = get_settings()
            budget = ApiBudget(get_engine(), calls=settings.api_calls,
                               period=settings.api_period)
            base_url, _, query = settings.api_url.partition("?")
            _client = TvmazeClient(base_url, connect_timeout=settings.connect_timeout,
                                   read_timeout=settings.read_timeout, budget=budget)
            # NOTE: httpx drops the path of every call whose base URL has
            # a query (an access token, say), so the query goes with each
            # call instead.  A ``params`` argument of TvmazeClient would
            # be the better home for this.
            _client.http.params = httpx.QueryParams(query)
            # NOTE: httpx logs each call's full URL at INFO, query included.
            logging.getLogger("httpx").addFilter(_REDACTING)
        return _client


def reset_client() -> None:
    """Close and forget this process's client (after the settings change)."""
    global _client

    with _client_lock:
        if _client is not None:
            _client.close()
        _client = None


def import_series(run_id: int, series_id: int) -> None:
    """Fetch one show, store it and register its regular episodes."""
    with autocommit() as connection:
        row = _load(connection, series, series_id)
    if row is None or not _still_open(row, run_id):
        return

    try:
        payload = get_client().show(row["tvmaze_id"], embed_episodes=True)
        data = parse_show(payload, row["tvmaze_id"])
        check_storable(series, data)
    except ApiError as error:
        _handle_failure(series, run_id, [series_id], error, what=f"series {row['tvmaze_id']}")
        return

    listed = _listed_episodes(payload)
    with transaction() as connection:
        imported = _store(connection, series, [(series_id, data)])
        registered = _register_episodes(connection, series_id, listed)
        _count(connection, "series", run_id, imported=imported)
    logger.debug("Imported series %d and registered %d episodes.", row["tvmaze_id"], registered,
                 extra={"tvmaze_id": row["tvmaze_id"], "registered": registered})


def import_episodes(run_id: int, series_id: int, episode_ids: Sequence[int]) -> None:
    """Fill the given episodes of one show from one call for its episode list.

    Episodes in the list that the catalogue lacks (specials, new ones)
    are registered and filled too.  An episode the list lacks is
    recorded as not found; one that does not parse, as invalid: each
    row fails alone.
    """
    with autocommit() as connection:
        show = _load(connection, series, series_id)
        rows = [r for r in _load_many(connection, episodes, episode_ids)
                if _still_open(r, run_id)]
    if show is None or not rows:
        return

    try:
        payload = episode_list(get_client().episodes(show["tvmaze_id"]))
    except ApiError as error:
        _handle_failure(episodes, run_id, [r["id"] for r in rows], error,
                        what=f"episodes of series {show['tvmaze_id']}")
        return

    parsed, invalid = _parse_each(payload)
    _store_episodes(run_id, series_id, rows, parsed, invalid)


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


def _store_episodes(run_id: int, series_id: int, rows: list[Any], parsed: dict[int, Row],
                    invalid: dict[int, str]) -> None:
    known = {r["tvmaze_id"]: r["id"] for r in rows}
    filled = [(known[t], data) for t, data in parsed.items() if t in known]
    bad = {known[t]: reason for t, reason in invalid.items() if t in known}
    gone = [r["id"] for r in rows
            if r["tvmaze_id"] not in parsed and r["tvmaze_id"] not in invalid]

    with transaction() as connection:
        imported = _store(connection, episodes, filled)
        # NOTE: the rows this item was given exist: only the rest of the
        # list can be new, and a short insert is much cheaper than a long one.
        discovered = _discover(connection, series_id,
                               {t: data for t, data in parsed.items() if t not in known})
        invalid_rows = sum(_record_outcome(connection, episodes, run_id, [row_id], INVALID, reason)
                           for row_id, reason in bad.items())
        not_found = _record_outcome(connection, episodes, run_id, gone, NOT_FOUND,
                                    "not in the show's episode list")
        _count(connection, "episodes", run_id, imported=imported, invalid=invalid_rows,
               not_found=not_found, discovered=discovered)

    for row_id, reason in bad.items():
        logger.warning("Episode row %d has an invalid payload: %s.", row_id, reason,
                       extra={"row_id": row_id, "outcome": INVALID, "reason": reason})


def _discover(connection: Connection, series_id: int, parsed: dict[int, Row]) -> int:
    """Register and fill the listed episodes the catalogue does not have yet."""
    if not parsed:
        return 0
    now = utcnow()
    rows = [{"tvmaze_id": t, "series_id": series_id, "created_at": now,
             "data_last_updated_at": now, "outcome": IMPORTED, "checked_at": now, **data}
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
        if not isinstance(entry, dict) or not _is_int(entry.get("id")):
            continue
        season, number = entry.get("season"), entry.get("number")
        listed.append((entry["id"], season if _is_int(season) else None,
                       number if _is_int(number) else None))
    return listed


#: The bounds of the schema's integer columns on PostgreSQL (SQLite's are wider).
INTEGER_LIMIT = 2**31
BIG_INTEGER_LIMIT = 2**63


def _is_int(value: Any) -> bool:
    """An integer that an ``Integer`` column can hold."""
    return (isinstance(value, int) and not isinstance(value, bool)
            and -INTEGER_LIMIT <= value < INTEGER_LIMIT)


def check_storable(table: Table, values: Row) -> None:
    """Raise :class:`InvalidPayloadError` for a value that ``table`` cannot hold.

    NOTE: the parsers check types, but the database refuses more: text
    with a NUL character or a lone surrogate, text longer than its
    column, an integer beyond its column's range.  Left to the database,
    such a value fails its item on every retry, and its row never gets
    an outcome.
    """
    for name, value in values.items():
        column_type = table.c[name].type
        if isinstance(value, str):
            _check_text(name, value, getattr(column_type, "length", None))
        elif isinstance(value, int) and isinstance(column_type, Integer):
            limit = BIG_INTEGER_LIMIT if isinstance(column_type, BigInteger) else INTEGER_LIMIT
            if not -limit <= value < limit:
                raise InvalidPayloadError(f"{name} is out of range")


def _check_text(name: str, value: str, length: int | None) -> None:
    if "\x00" in value:
        raise InvalidPayloadError(f"{name} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPayloadError(f"{name} is not valid Unicode") from None
    if length is not None and len(value) > length:
        raise InvalidPayloadError(f"{name} is longer than {length} characters")


def _store(connection: Connection, table: Table, rows: list[tuple[int, Row]]) -> int:
    """Write fetched data to rows that still miss it; return how many were written."""
    if not rows:
        return 0

    now = utcnow()
    params = [{"row_id": row_id, **data, "data_last_updated_at": now, "outcome": IMPORTED,
               "attempts": 0, "failed_runs": 0, "last_error": None, "checked_at": now}
              for row_id, data in rows]
    statement = _store_statement(table, tuple(key for key in params[0] if key != "row_id"))
    return int(connection.execute(statement, params).rowcount)


@functools.cache
def _store_statement(table: Table, columns: tuple[str, ...]) -> Update:
    # NOTE: the condition is checked again once each row is locked, so
    # of two deliveries of one item writing at once, one writes and counts.
    return (update(table)
            .where(table.c.id == bindparam("row_id"), table.c.data_last_updated_at.is_(None))
            .values({key: bindparam(key) for key in columns}))


def _handle_failure(table: Table, run_id: int, row_ids: list[int], error: ApiError,
                    what: str) -> None:
    """Record a failed call's outcome, or raise to have the message retried."""
    if isinstance(error, RateLimitedError):
        _retry_later(error, table.name, what)

    outcome = {NotFoundError: NOT_FOUND, InvalidPayloadError: INVALID}.get(type(error), FAILED)
    attempt = transient_attempts() + 1
    if isinstance(error, TransientApiError) and attempt <= get_settings().max_item_retries:
        _record_attempt(table, row_ids, str(error))
        logger.warning("Attempt %d for %s failed: %s; retrying.", attempt, what, error,
                       extra={"rows": row_ids, "attempt": attempt, "reason": str(error)})
        raise error

    record_failure(table, run_id, row_ids, outcome, str(error))
    level = logging.INFO if outcome == NOT_FOUND else logging.WARNING
    logger.log(level, "No data for %s: %s (%s).", what, outcome, error, extra={
        "rows": row_ids, "outcome": outcome, "reason": str(error), "attempt": attempt})


def record_failure(table: Table, run_id: int, row_ids: list[int], outcome: str,
                   reason: str) -> int:
    """Give rows a failure outcome for the run and count it; return how many changed."""
    with transaction() as connection:
        recorded = _record_outcome(connection, table, run_id, row_ids, outcome, reason)
        _count(connection, table.name, run_id, **{outcome: recorded})
    return recorded


def give_up(actor_name: str, args: Sequence[Any], reason: str) -> None:
    """Record the rows of an item message whose retries are spent as failed.

    NOTE: a message fails for good after its retries (the database was
    away for too long, a bug); without this its rows would have no
    outcome, and their run would wait for them until its drain timeout.
    """
    run_id, series_id, *rest = args
    if actor_name == "import_series":
        table, row_ids = series, [series_id]
    else:
        table, row_ids = episodes, list(rest[0])

    recorded = record_failure(table, run_id, row_ids, FAILED, reason)
    logger.warning("Gave up on %s for rows %s: %s.", actor_name, row_ids, reason, extra={
        "run_id": run_id, "rows": row_ids, "outcome": FAILED, "reason": reason,
        "recorded": recorded})


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
    raise dramatiq.Retry(delay=int(seconds * 1000))


def transient_attempts() -> int:
    """Retries of the current message that were not caused by a 429."""
    message = CurrentMessage.get_current_message()
    if message is None:
        return 0
    retries = int(message.options.get("retries", 0))
    return max(retries - int(message.options.get("rate_limited", 0)), 0)


def _record_attempt(table: Table, row_ids: list[int], reason: str) -> None:
    with transaction() as connection:
        connection.execute(update(table).where(table.c.id.in_(row_ids)).values(
            attempts=table.c.attempts + 1, last_error=reason[:1000], checked_at=utcnow()))


def _record_outcome(connection: Connection, table: Table, run_id: int, row_ids: list[int],
                    outcome: str, reason: str) -> int:
    """Give rows their failure outcome for this run, once; return how many changed."""
    if not row_ids:
        return 0

    counts_as_failed = outcome in (FAILED, INVALID)
    park_after = get_settings().park_after_runs
    failed_runs = table.c.failed_runs + (1 if counts_as_failed else 0)
    new_outcome = case((failed_runs >= park_after, PARKED), else_=outcome) \
        if counts_as_failed else outcome

    result = connection.execute(update(table).where(
        table.c.id.in_(row_ids),
        table.c.data_last_updated_at.is_(None),
        or_(table.c.last_run_id.is_(None), table.c.last_run_id != run_id),
    ).values(outcome=new_outcome, failed_runs=failed_runs, last_error=reason[:1000],
             last_run_id=run_id, checked_at=utcnow()))
    return int(result.rowcount)


#: The run's counts of row outcomes, which items add to.
COUNTS = ("imported", "not_found", "invalid", "failed", "discovered")

# NOTE: the statements every item runs are built once: building one
# costs a worker thread about as much as the database takes to run it.
_COUNT = (update(import_runs).where(import_runs.c.id == bindparam("run_id"))
          .values({name: import_runs.c[name] + bindparam(name) for name in COUNTS}))


def _count(connection: Connection, kind: str, run_id: int, **increments: int) -> None:
    """Add row outcomes to the run's counts (and to the metrics)."""
    if not any(increments.values()):
        return

    connection.execute(_COUNT, {"run_id": run_id, **dict.fromkeys(COUNTS, 0), **increments})
    for outcome, count in increments.items():
        metrics.rows(kind, outcome, count)


@functools.cache
def _state_query(table: Table, many: bool) -> Select[Any]:
    """What an item reads of its rows before its call: the key and whether each is open."""
    query = select(table.c.id, table.c.tvmaze_id, table.c.data_last_updated_at,
                   table.c.last_run_id)
    if many:
        return (query.where(table.c.id.in_(bindparam("row_ids", expanding=True)))
                .order_by(table.c.id))
    return query.where(table.c.id == bindparam("row_id"))


def _load(connection: Connection, table: Table, row_id: int) -> Any:
    return connection.execute(_state_query(table, False), {"row_id": row_id}).mappings().first()


def _load_many(connection: Connection, table: Table, row_ids: Sequence[int]) -> list[Any]:
    query = _state_query(table, True)
    return list(connection.execute(query, {"row_ids": list(row_ids)}).mappings())


def _still_open(row: Any, run_id: int) -> bool:
    """False when the row already has data or its outcome for this run."""
    if row["data_last_updated_at"] is not None:
        return False
    return bool(row["last_run_id"] != run_id)


__all__ = ["give_up", "import_episodes", "import_series"]
