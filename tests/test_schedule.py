"""The daily schedule: periodic actors that never start a second run of a kind."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from importer import actors
from importer.catalogue import add_series
from importer.runs import create_run
from importer.schema import import_runs, job_logs, utcnow

from .conftest import configure


def test_the_schedule_runs_series_then_episodes_daily_at_their_configured_times() -> None:
    series_spec = actors.scheduled_series_import.options["periodic"]
    episodes_spec = actors.scheduled_episodes_import.options["periodic"]

    assert str(series_spec) == "0 3 * * *"
    assert str(episodes_spec) == "30 3 * * *"


def test_the_schedule_prunes_job_logs_daily_after_the_imports() -> None:
    assert str(actors.scheduled_prune_logs.options["periodic"]) == "0 4 * * *"


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


def add_job_logs(engine: Engine, *ages_in_days: int) -> None:
    with engine.begin() as connection:
        connection.execute(job_logs.insert(), [
            {"created_at": utcnow() - timedelta(days=age), "level": "INFO",
             "message": f"{age} days old"} for age in ages_in_days])


def job_log_messages(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return sorted(connection.execute(select(job_logs.c.message)).scalars())


def test_the_scheduled_prune_deletes_only_records_older_than_the_retention(
        database: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, log_retention_days=30)
    add_job_logs(database, 1, 29, 31, 400)

    actors.scheduled_prune_logs.fn()

    assert [m for m in job_log_messages(database) if "days old" in m] == [
        "1 days old", "29 days old"]


def test_a_retention_of_zero_days_keeps_every_record(
        database: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, log_retention_days=0)
    add_job_logs(database, 1, 4000)

    actors.scheduled_prune_logs.fn()

    assert job_log_messages(database) == ["1 days old", "4000 days old"]
