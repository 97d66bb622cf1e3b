"""Create or upgrade the schema with the Alembic migrations."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from .database import get_engine

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    """An Alembic configuration that needs no ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine | None = None, revision: str = "head") -> None:
    """Bring the schema of ``engine``'s database up to ``revision``."""
    config = alembic_config()
    with (engine or get_engine()).connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.commit()
    logger.info("Database schema is at revision %s.", revision)
