"""The tables: the catalogue, the runs and the job logs.

The schema is created and upgraded by the Alembic migrations in
``importer/migrations``; these definitions are what the code queries.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.types import TypeDecorator

from .errors import InvalidPayloadError

metadata = MetaData()

#: Row outcomes, kept on series and episodes.
IMPORTED = "imported"
NOT_FOUND = "not_found"
INVALID = "invalid"
FAILED = "failed"
PARKED = "parked"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so the
    value is stored as naive UTC and made aware again when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None

        if value.tzinfo is None:
            raise ValueError("naive datetime; use datetime.now(timezone.utc)")

        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None

        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)

        return value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def _outcome_columns() -> list[Column[Any]]:
    """Bookkeeping shared by series and episodes: the row's last outcome."""
    return [
        Column("data_last_updated_at", UTCDateTime()),
        Column("outcome", String(16)),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("failed_runs", Integer, nullable=False, server_default="0"),
        Column("last_error", Text),
        Column("last_run_id", Integer),
        Column("checked_at", UTCDateTime()),
        Column("created_at", UTCDateTime(), nullable=False),
    ]


series = Table(
    "series",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tvmaze_id", Integer, nullable=False, unique=True),
    Column("name", Text),
    Column("type", String(64)),
    Column("language", String(64)),
    Column("genres", JSON),
    Column("status", String(64)),
    Column("runtime", Integer),
    Column("premiered", Date),
    Column("ended", Date),
    Column("official_site", Text),
    Column("network", Text),
    Column("summary", Text),
    Column("tvmaze_updated", BigInteger),
    *_outcome_columns(),
)

episodes = Table(
    "episodes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), nullable=False),
    Column("tvmaze_id", Integer, nullable=False, unique=True),
    Column("season", Integer),
    Column("number", Integer),
    Column("name", Text),
    Column("type", String(64)),
    Column("airdate", Date),
    Column("airtime", String(5)),
    Column("runtime", Integer),
    Column("summary", Text),
    *_outcome_columns(),
)

# NOTE: the batch queries walk missing rows by key; these partial
# indexes hold only the rows that still miss data, so a batch costs
# the same whatever the size of the imported part of the table.
Index(
    "ix_series_missing",
    series.c.id,
    postgresql_where=text("data_last_updated_at IS NULL"),
    sqlite_where=text("data_last_updated_at IS NULL"),
)
Index(
    "ix_episodes_missing",
    episodes.c.series_id,
    episodes.c.id,
    postgresql_where=text("data_last_updated_at IS NULL"),
    sqlite_where=text("data_last_updated_at IS NULL"),
)

import_runs = Table(
    "import_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("batch_size", Integer, nullable=False),
    Column("delay_seconds", Float, nullable=False),
    Column("status", String(16), nullable=False),
    Column("step", Integer, nullable=False, server_default="0"),
    Column("cursor_series", Integer, nullable=False, server_default="0"),
    Column("cursor_id", Integer, nullable=False, server_default="0"),
    Column("successor_sent", Boolean, nullable=False, server_default="0"),
    Column("draining_since", UTCDateTime()),
    Column("total", Integer, nullable=False, server_default="0"),
    Column("selected", Integer, nullable=False, server_default="0"),
    Column("dispatched", Integer, nullable=False, server_default="0"),
    Column("batches", Integer, nullable=False, server_default="0"),
    Column("imported", Integer, nullable=False, server_default="0"),
    Column("not_found", Integer, nullable=False, server_default="0"),
    Column("invalid", Integer, nullable=False, server_default="0"),
    Column("failed", Integer, nullable=False, server_default="0"),
    Column("discovered", Integer, nullable=False, server_default="0"),
    # Rows that had data when their item came: filled by an earlier run's items.
    Column("skipped", Integer, nullable=False, server_default="0"),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("heartbeat_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
)

# NOTE: at most one active run per kind, enforced by the database so
# that two starts at the same instant, from two machines, cannot both win.
Index(
    "ux_import_runs_active",
    import_runs.c.kind,
    unique=True,
    postgresql_where=text("status = 'running'"),
    sqlite_where=text("status = 'running'"),
)

job_logs = Table(
    "job_logs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("level", String(10), nullable=False),
    Column("job_class", String(200)),
    Column("message_id", String(64)),
    Column("run_id", Integer),
    Column("status", String(16)),
    Column("duration_ms", Float),
    Column("item_kind", String(16)),
    Column("item_id", Integer),
    Column("message", Text, nullable=False),
    Column("context", JSON),
)
Index("ix_job_logs_run_id", job_logs.c.run_id, job_logs.c.id)
Index("ix_job_logs_created_at", job_logs.c.created_at)
Index("ix_job_logs_job_class", job_logs.c.job_class, job_logs.c.created_at)
Index("ix_job_logs_status", job_logs.c.status, job_logs.c.created_at)

#: The API budget shared by every worker: the next free call slot.
api_budget = Table(
    "api_budget",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("next_slot", Float, nullable=False),
)


#: The bounds of the integer columns on PostgreSQL (SQLite's are wider).
INTEGER_LIMIT = 2**31
BIG_INTEGER_LIMIT = 2**63


def fits_integer(value: Any) -> bool:
    """True for an integer that an ``Integer`` column can hold."""
    return (isinstance(value, int) and not isinstance(value, bool)
            and -INTEGER_LIMIT <= value < INTEGER_LIMIT)


def check_storable(table: Table, values: dict[str, Any]) -> None:
    """Raise :class:`InvalidPayloadError` for a value that ``table`` cannot hold.

    NOTE: the parsers check types, but the database refuses more: text
    with a NUL character or a lone surrogate, text longer than its
    column, an integer beyond its column's range.  Left to the database,
    such a value fails its item on every retry, and its row never gets
    an outcome.
    """
    lengths, limits = _column_bounds(table)
    for name, value in values.items():
        if isinstance(value, str):
            _check_text(name, value, lengths.get(name))
        elif isinstance(value, int) and name in limits:
            limit = limits[name]
            if not -limit <= value < limit:
                raise InvalidPayloadError(f"{name} is out of range")


@functools.cache
def _column_bounds(table: Table) -> tuple[dict[str, int], dict[str, int]]:
    """The text columns' lengths and the integer columns' limits.

    NOTE: looked up once: every value of every fetched row is checked.
    """
    lengths: dict[str, int] = {}
    limits: dict[str, int] = {}
    for column in table.c:
        length = getattr(column.type, "length", None)
        if isinstance(length, int):
            lengths[column.name] = length
        if isinstance(column.type, Integer):
            big = isinstance(column.type, BigInteger)
            limits[column.name] = BIG_INTEGER_LIMIT if big else INTEGER_LIMIT
    return lengths, limits


def _check_text(name: str, value: str, length: int | None) -> None:
    if "\x00" in value:
        raise InvalidPayloadError(f"{name} contains a NUL character")

    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPayloadError(f"{name} is not valid Unicode") from None

    if length is not None and len(value) > length:
        raise InvalidPayloadError(f"{name} is longer than {length} characters")
