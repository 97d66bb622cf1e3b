"""Create or upgrade the schema with the Alembic migrations."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from .database import first_line, get_engine
from .errors import UnavailableError
from .redaction import redact

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    """An Alembic configuration that needs no ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@functools.cache
def head_revision() -> str | None:
    """The revision this version of the package needs."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The revision the database's schema is at (None without one)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine | None = None, revision: str = "head") -> str | None:
    """Bring the schema of ``engine``'s database up to ``revision``; return the one it had."""
    config = alembic_config()
    engine = engine or get_engine()
    try:
        with engine.connect() as connection:
            before = current_revision(connection)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            connection.commit()
    except OperationalError as error:
        raise UnavailableError(f"cannot write the schema to {redact(str(engine.url))}: "
                               f"{first_line(error.orig)}") from None
    logger.info("Database schema is at revision %s (was %s).", revision, before,
                extra={"revision": revision, "before": before})
    return before
