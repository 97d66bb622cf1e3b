"""Database engines and transactions, for SQLite and PostgreSQL alike."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from .errors import SchemaMissingError, UnavailableError
from .redaction import redact
from .settings import get_settings

logger = logging.getLogger(__name__)

#: How long opening a PostgreSQL connection may take.
CONNECT_TIMEOUT_SECONDS = 5

#: How long a SQLite writer waits for another one before giving up.
SQLITE_BUSY_TIMEOUT_MS = 60_000


def create_database_engine(url: str) -> Engine:
    """Build an engine for ``url``, tuned for many worker threads."""
    if url.startswith("sqlite"):
        return _create_sqlite_engine(url)
    # NOTE: no pre-ping: it costs a round trip per checkout on the item
    # hot path.  A connection that died with its server fails its
    # statement instead, SQLAlchemy then discards the whole pool, and
    # the message is retried on a fresh connection.
    return create_engine(url, pool_size=10, max_overflow=20,
                         connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS})


def _create_sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # NOTE: the driver's own transaction handling is turned off so that
        # every transaction can start with BEGIN IMMEDIATE below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A deferred transaction that reads and then writes cannot wait
        # for the lock: SQLite fails it at once with "database is locked".
        # Taking the write lock up front makes writers queue instead.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@functools.lru_cache(maxsize=4)
def _engine_for(url: str) -> Engine:
    return create_database_engine(url)


def get_engine() -> Engine:
    """The engine for ``IMPORTER_DATABASE_URL``, shared by the process."""
    return _engine_for(get_settings().database_url)


@contextmanager
def transaction(engine: Engine | None = None) -> Iterator[Connection]:
    """A connection inside one transaction, committed on success."""
    with (engine or get_engine()).begin() as connection:
        yield connection


@contextmanager
def autocommit(engine: Engine | None = None) -> Iterator[Connection]:
    """A connection whose every statement commits on its own (PostgreSQL).

    For a single read or a single-statement write on a hot path: it
    saves the round trips of ``BEGIN`` and ``COMMIT``.  SQLite, whose
    transactions cost no round trip, gets a plain transaction.
    """
    engine = engine or get_engine()
    if engine.dialect.name != "postgresql":
        with transaction(engine) as connection:
            yield connection
        return

    with engine.connect() as connection:
        yield connection.execution_options(isolation_level="AUTOCOMMIT")


def check_schema(engine: Engine | None = None) -> None:
    """Fail with one clear error when the database is unreachable, empty or behind."""
    from .migrate import current_revision, head_revision

    engine = engine or get_engine()
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if path and path != ":memory:" and not Path(path).exists():
        if not Path(path).absolute().parent.is_dir():
            raise UnavailableError(f"cannot create a database at {path}: "
                                   f"the directory {Path(path).parent} does not exist")
        # NOTE: connecting would create an empty file where none was meant to be.
        raise SchemaMissingError(
            f"there is no database at {path}; run `python -m importer init-db` to create it")

    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
            revision = current_revision(connection) if "alembic_version" in tables else None
    except OperationalError as error:
        raise UnavailableError(
            f"cannot reach the database at {redact(str(engine.url))}: "
            f"{first_line(error.orig)}"
        ) from None
    except SQLAlchemyError as error:
        raise UnavailableError(f"database error: {first_line(error)}") from None

    if not {"series", "episodes", "import_runs", "job_logs"} <= tables:
        raise SchemaMissingError(
            f"the database at {redact(str(engine.url))} has no importer schema; "
            "run `python -m importer init-db` first"
        )

    if revision != head_revision():
        raise SchemaMissingError(
            f"the database at {redact(str(engine.url))} has schema revision {revision}, "
            f"this version needs {head_revision()}; run `python -m importer init-db` to upgrade"
        )


def check_reachable(engine: Engine | None = None) -> None:
    """Fail with one clear error when the database cannot be reached at all."""
    try:
        check_schema(engine)
    except SchemaMissingError:
        pass


def first_line(error: object) -> str:
    """The first line of an error's text: drivers add hints and links below it."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
