"""The whole import on real parts: RabbitMQ, PostgreSQL, ``dramatiq importer.actors``.

Every recorded show is registered, ``series`` then ``episodes`` run
through a worker process, and every stored value is compared with what
TVmaze sent.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select

from importer.schema import episodes, job_logs, series
from importer.tvmaze_server import RecordedCatalogue

from .services import WorkerProcess, run_cli
from .test_chain import assert_episode_stored, assert_show_stored

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def test_every_recorded_show_and_episode_is_imported_through_a_real_worker(
        broker_env: dict[str, str], broker_engine: Engine, worker_process: WorkerProcess,
        recorded: RecordedCatalogue) -> None:
    show_ids = recorded.show_ids()
    added = run_cli(["add-series", "--from-file", "-"], broker_env,
                    stdin="\n".join(map(str, show_ids)))
    assert added.returncode == 0, added.stderr

    for kind in ("series", "episodes"):
        done = run_cli([kind, "--batch-size", "100", "--delay", "0.2", "--wait"], broker_env)
        assert done.returncode == 0, done.stderr + worker_process.output()[-3000:]
        assert f"({kind}) completed" in done.stdout

    with broker_engine.connect() as connection:
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
