"""The catalogue: registering series and episodes, and which rows miss data."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, Table, and_, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import ReturningInsert

from .schema import FAILED, IMPORTED, INVALID, NOT_FOUND, PARKED, episodes, series, utcnow

logger = logging.getLogger(__name__)

Kind = Literal["series", "episodes"]
KINDS: tuple[Kind, ...] = ("series", "episodes")
TABLES: dict[Kind, Table] = {"series": series, "episodes": episodes}

#: The largest TVmaze id accepted; TVmaze's ids are far below it.
MAX_TVMAZE_ID = 2**31 - 1


def table_for(kind: Kind) -> Table:
    return TABLES[kind]


def kind_of(table: Table) -> Kind:
    return "series" if table is series else "episodes"


def needs_data(table: Table, recheck_before: datetime) -> ColumnElement[bool]:
    """Rows a run should select: missing data, not parked, 404s only after a while."""
    return and_(
        table.c.data_last_updated_at.is_(None),
        or_(
            table.c.outcome.is_(None),
            table.c.outcome.in_((FAILED, INVALID)),
            and_(table.c.outcome == NOT_FOUND, table.c.checked_at < recheck_before),
        ),
    )


def recheck_before(days: float) -> datetime:
    """Rows that answered 404 before this time are tried again."""
    return utcnow() - timedelta(days=days)


def count_needing_data(connection: Connection, kind: Kind, recheck_days: float) -> int:
    table = table_for(kind)
    query = select(func.count()).select_from(table).where(
        needs_data(table, recheck_before(recheck_days)))
    return int(connection.execute(query).scalar_one())


def insert_ignoring_duplicates(connection: Connection, table: Table,
                               rows: list[dict[str, Any]]) -> int:
    """Insert ``rows``, skipping those whose ``tvmaze_id`` exists; return the count added."""
    if not rows:
        return 0

    statement = _insert_ignoring_duplicates(connection.dialect.name, table)
    # NOTE: one row goes as a plain execute: a list, even of one, takes
    # the driver's slower executemany path.
    result = connection.execute(statement, rows if len(rows) > 1 else rows[0])
    return len(result.all())


@functools.cache
def _insert_ignoring_duplicates(dialect: str, table: Table) -> ReturningInsert[tuple[int]]:
    # NOTE: built once: items run it, and building a statement costs about
    # as much as running it.
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    return insert.on_conflict_do_nothing(index_elements=["tvmaze_id"]).returning(table.c.id)


def add_series(connection: Connection, tvmaze_ids: Iterable[int]) -> int:
    """Register shows by TVmaze id; return how many were new."""
    now = utcnow()
    rows = [{"tvmaze_id": i, "created_at": now} for i in sorted(set(tvmaze_ids))]
    added = insert_ignoring_duplicates(connection, series, rows)
    logger.info("Registered %d new series of %d given.", added, len(rows),
                extra={"added": added, "given": len(rows)})
    return added


def add_episodes(connection: Connection, show_tvmaze_id: int, tvmaze_ids: Iterable[int]) -> int:
    """Register episodes of one show (registered too if new); return how many were new."""
    add_series(connection, [show_tvmaze_id])
    series_id = connection.execute(
        select(series.c.id).where(series.c.tvmaze_id == show_tvmaze_id)).scalar_one()

    now = utcnow()
    rows = [{"tvmaze_id": i, "series_id": series_id, "created_at": now}
            for i in sorted(set(tvmaze_ids))]
    added = insert_ignoring_duplicates(connection, episodes, rows)
    logger.info("Registered %d new episodes of %d given.", added, len(rows),
                extra={"added": added, "given": len(rows)})
    return added


def retry_parked(connection: Connection, kind: Kind) -> int:
    """Make parked rows eligible again; return how many."""
    table = table_for(kind)
    result = connection.execute(
        table.update().where(table.c.outcome == PARKED)
        .values(outcome=None, failed_runs=0, attempts=0))
    return int(result.rowcount)


def counts(connection: Connection, kind: Kind) -> dict[str, int]:
    """Rows per state: missing, imported, failed (by reason) and parked."""
    table = table_for(kind)
    query = select(table.c.outcome, table.c.data_last_updated_at.is_(None), func.count()).group_by(
        table.c.outcome, table.c.data_last_updated_at.is_(None))

    result = {"total": 0, "missing": 0, IMPORTED: 0, NOT_FOUND: 0, INVALID: 0, FAILED: 0,
              PARKED: 0}
    for outcome, missing, count in connection.execute(query):
        result["total"] += count
        if missing:
            result["missing"] += count
            if outcome in result and outcome != IMPORTED:
                result[outcome] += count
        else:
            result[IMPORTED] += count
    result["failed_total"] = result[NOT_FOUND] + result[INVALID] + result[FAILED] + result[PARKED]
    return result
