"""The schema: created and upgraded by the migrations, checked before every command."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, func, select

from importer.catalogue import add_series
from importer.database import check_schema
from importer.errors import SchemaMissingError
from importer.exitcodes import EXIT_NO_SCHEMA, EXIT_OK
from importer.migrate import head_revision, upgrade
from importer.schema import metadata, series

from .services import run_cli


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def test_the_migrations_build_exactly_the_tables_the_code_queries(engine: Engine) -> None:
    upgrade(engine)

    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_a_schema_at_an_older_revision_is_refused_until_init_db_upgrades_it(
        engine: Engine, database_url: str) -> None:
    upgrade(engine, "0001")
    with engine.begin() as connection:
        add_series(connection, [1, 2])
    env = {**os.environ, "IMPORTER_DATABASE_URL": database_url}

    with pytest.raises(SchemaMissingError, match="revision 0001"):
        check_schema(engine)
    refused = run_cli(["status"], env)
    upgraded = run_cli(["init-db"], env)
    again = run_cli(["init-db"], env)

    assert refused.returncode == EXIT_NO_SCHEMA and "init-db" in refused.stderr
    assert upgraded.returncode == EXIT_OK
    assert upgraded.stdout.strip() == f"upgraded the database schema from revision 0001 to " \
        f"{head_revision()}"
    assert again.stdout.strip() == f"the database schema is up to date (revision " \
        f"{head_revision()})"
    check_schema(engine)
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(series)).scalar() == 2
