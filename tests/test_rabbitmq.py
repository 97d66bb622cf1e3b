"""The whole import on real parts: RabbitMQ, PostgreSQL, ``dramatiq importer.actors``.

Every recorded show is registered, ``series`` then ``episodes`` run
through a worker process, and every stored value is compared with what
TVmaze sent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select

from importer.schema import episodes, job_logs, series
from importer.tvmaze_server import RecordedCatalogue, TvmazeServer

from .conftest import RABBITMQ_URL, require_service
from .services import WorkerProcess, purge_queues, run_cli
from .test_chain import assert_episode_stored, assert_show_stored

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


@pytest.fixture
def rabbitmq() -> str:
    require_service("RabbitMQ", "127.0.0.1", 5672)
    purge_queues(RABBITMQ_URL)
    return RABBITMQ_URL


@pytest.fixture
def env(rabbitmq: str, postgres_url: str, api: TvmazeServer) -> dict[str, str]:
    """The environment a user would set for the worker and the CLI."""
    return {
        **os.environ,
        "IMPORTER_BROKER_URL": rabbitmq,
        "IMPORTER_DATABASE_URL": postgres_url,
        "IMPORTER_API_URL": api.url,
        "IMPORTER_API_CALLS": "200",
        "IMPORTER_API_PERIOD": "1",
    }


@pytest.fixture
def engine(env: dict[str, str]) -> Iterator[Engine]:
    assert run_cli(["init-db"], env).returncode == 0
    engine = create_engine(env["IMPORTER_DATABASE_URL"])
    yield engine
    engine.dispose()


@pytest.fixture
def worker(env: dict[str, str], engine: Engine, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(env, tmp_path / "worker.log", threads=8).start()
    yield process
    process.stop()


def test_every_recorded_show_and_episode_is_imported_through_a_real_worker(
        env: dict[str, str], engine: Engine, worker: WorkerProcess,
        recorded: RecordedCatalogue) -> None:
    show_ids = recorded.show_ids()
    added = run_cli(["add-series", "--from-file", "-"], env, stdin="\n".join(map(str, show_ids)))
    assert added.returncode == 0, added.stderr

    for kind in ("series", "episodes"):
        done = run_cli([kind, "--batch-size", "100", "--delay", "0.2", "--wait"], env)
        assert done.returncode == 0, done.stderr + worker.output()[-3000:]
        assert f"({kind}) completed" in done.stdout

    with engine.connect() as connection:
        stored_series = {r["tvmaze_id"]: r for r in connection.execute(select(series)).mappings()}
        stored_episodes = {r["tvmaze_id"]: r
                           for r in connection.execute(select(episodes)).mappings()}
        records = [dict(r) for r in connection.execute(
            select(job_logs).order_by(job_logs.c.id)).mappings()]

    assert set(stored_series) == set(show_ids)
    for tvmaze_id in show_ids:
        assert_show_stored(dict(stored_series[tvmaze_id]), recorded.show(tvmaze_id) or {})

    expected = {e["id"]: e for s in show_ids for e in recorded.episodes(s) or []}
    assert expected and set(stored_episodes) == set(expected)
    for tvmaze_id, episode in expected.items():
        assert_episode_stored(dict(stored_episodes[tvmaze_id]), episode)

    assert_batch_records(records, "series", len(show_ids))
    assert_batch_records(records, "episodes", len(expected))


def assert_batch_records(records: list[dict[str, Any]], kind: str, rows: int) -> None:
    """The batch results add up to ``rows``; one completion record says so too."""
    def events(name: str) -> list[dict[str, Any]]:
        return [r for r in records
                if (r["context"] or {}).get("event") == name
                and r["job_class"] == f"importer.actors.import_missing_{kind}"]

    results = events("batch_result")
    assert sum(r["context"]["processed"] for r in results) == rows
    assert results[-1]["context"]["continues"] is False
    assert all(r["context"]["continues"] for r in results[:-1])

    completed = events("run_completed")
    assert len(completed) == 1
    assert completed[0]["context"]["imported"] + completed[0]["context"]["discovered"] == rows
    assert completed[0]["context"]["failed"] == 0
