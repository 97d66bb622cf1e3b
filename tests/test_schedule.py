"""The daily schedule: periodic actors that never start a second run of a kind."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from importer import actors
from importer.catalogue import add_series
from importer.runs import create_run
from importer.schema import import_runs


def test_the_schedule_runs_series_then_episodes_daily_at_their_configured_times() -> None:
    series_spec = actors.scheduled_series_import.options["periodic"]
    episodes_spec = actors.scheduled_episodes_import.options["periodic"]

    assert str(series_spec) == "0 3 * * *"
    assert str(episodes_spec) == "30 3 * * *"


def test_a_scheduled_start_while_a_run_is_active_starts_nothing(database: Engine,
                                                                worker: Any) -> None:
    with database.begin() as connection:
        add_series(connection, [1])
    active = create_run("series", 50, 10.0)

    actors.scheduled_series_import.fn()

    with database.connect() as connection:
        runs = connection.execute(select(import_runs.c.id, import_runs.c.status)).all()
    assert runs == [(active, "running")]


def test_a_scheduled_start_with_no_active_run_starts_one(database: Engine, worker: Any) -> None:
    actors.scheduled_episodes_import.fn()

    with database.connect() as connection:
        count = connection.execute(select(func.count()).select_from(import_runs)).scalar()
    assert count == 1
