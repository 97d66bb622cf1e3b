"""``job_logs``: each actor execution as an operator reads it in an admin table."""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine

from importer import joblog
from importer.joblog import Job, record_execution, to_json
from importer.logs import configure_logging
from importer.schema import series
from importer.tvmaze import get_client
from importer.tvmaze_server import Fault, TvmazeServer

from .conftest import run_to_end
from .test_chain import logs, register, rows


def executions(records: list[dict[str, Any]], actor: str) -> list[dict[str, Any]]:
    return [r for r in records
            if r["job_class"] == f"importer.actors.{actor}" and r["status"] is not None]


def test_every_execution_has_a_started_and_a_success_record_with_its_duration(
        database: Engine, worker: Any) -> None:
    register(database, [1, 2, 3])

    run = run_to_end("series", batch_size=2)

    items = executions(logs(database, run["id"]), "import_series")
    by_message = Counter((r["message_id"], r["status"]) for r in items)
    assert len({r["message_id"] for r in items}) == 3
    assert all(by_message[(m, "started")] == by_message[(m, "success")] == 1
               for m, _ in by_message)
    assert all(r["duration_ms"] >= 0 for r in items if r["status"] == "success")
    assert all(r["duration_ms"] is None for r in items if r["status"] == "started")


def test_an_item_execution_names_the_series_row_it_concerns(
        database: Engine, worker: Any) -> None:
    register(database, [1, 2])

    run = run_to_end("series")

    items = executions(logs(database, run["id"]), "import_series")
    assert {(r["item_kind"], r["item_id"]) for r in items} == {
        ("series", row["id"]) for row in rows(database, series).values()}


def test_an_execution_retried_after_a_transient_api_error_is_recorded_as_retried(
        database: Engine, worker: Any, api: TvmazeServer) -> None:
    register(database, [1])
    api.add_fault("/shows/1", Fault("status", status=503, times=1))

    run = run_to_end("series")

    items = executions(logs(database, run["id"]), "import_series")
    assert [r["status"] for r in items] == ["started", "retried", "started", "success"]
    assert items[1]["message"] == "Job importer.actors.import_series will be retried: HTTP 503."


def test_a_failing_execution_is_recorded_as_failed_with_its_error(
        database: Engine, worker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    register(database, [1])
    calls = []

    def broken_once() -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return get_client()

    monkeypatch.setattr("importer.items.get_client", broken_once)

    run = run_to_end("series")

    items = executions(logs(database, run["id"]), "import_series")
    failed = [r for r in items if r["status"] == "failed"]
    assert [r["status"] for r in items] == ["started", "failed", "started", "success"]
    assert failed[0]["level"] == "WARNING"
    assert failed[0]["context"]["error"] == "RuntimeError"


@pytest.fixture
def console(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The importer's console log as a string, with no ``job_logs`` writer."""
    package = logging.getLogger("importer")
    saved = (list(package.handlers), package.level, package.propagate)
    monkeypatch.setattr(joblog, "_handler", None)
    yield io.StringIO()
    package.handlers[:], package.propagate = saved[0], saved[2]
    package.setLevel(saved[1])


def test_execution_records_stay_off_the_console_unless_it_shows_debug(
        console: io.StringIO) -> None:
    stream = console
    configure_logging(level=logging.INFO, stream=stream)
    job = Job("importer.actors.import_series", "m-1", run_id=1)
    record_execution(job, "started", "Job importer.actors.import_series started.")
    configure_logging(level=logging.DEBUG, stream=stream)
    record_execution(job, "success", "Job importer.actors.import_series succeeded.",
                     duration_ms=1.5)

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["status"] for line in lines] == ["success"]


def test_context_values_json_cannot_hold_are_stored_as_text() -> None:
    assert to_json({"when": Job, 3: {1, 2}, "ok": [1.5, None, True]}) == {
        "when": str(Job), "3": [1, 2], "ok": [1.5, None, True]}


def test_the_writer_stores_rows_as_they_were_given_whatever_their_text(
        database: Engine) -> None:
    awkward = 'tab\there, newline\nthere, back\\slash, "quotes", ünïcödé, \\N'
    written = [
        {"created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "level": "WARNING",
         "job_class": "importer.actors.import_series", "message_id": "m-1", "run_id": 7,
         "status": "failed", "duration_ms": 12.5, "item_kind": "series", "item_id": 42,
         "message": awkward, "context": {"reason": awkward, "nested": {"rows": [1, 2]}}},
        {"created_at": datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC), "level": "INFO",
         "job_class": None, "message_id": None, "run_id": 7, "status": None,
         "duration_ms": None, "item_kind": None, "item_id": None, "message": "plain",
         "context": {}},
    ]

    with database.begin() as connection:
        joblog.insert_rows(connection, written)

    stored = [{k: v for k, v in row.items() if k != "id"} for row in logs(database, 7)]
    assert stored == written


def test_records_are_listed_newest_first_by_time_whatever_order_they_were_written_in(
        database: Engine) -> None:
    from importer.logbook import query_logs

    def record(second: int, message: str) -> dict[str, Any]:
        return {"created_at": datetime(2026, 1, 2, 3, 4, second, tzinfo=UTC), "level": "INFO",
                "job_class": None, "message_id": None, "run_id": 7, "status": None,
                "duration_ms": None, "item_kind": None, "item_id": None, "message": message,
                "context": {}}

    with database.begin() as connection:
        # The background writer stores an item's record after a later step's.
        joblog.insert_rows(connection, [record(6, "step"), record(5, "item")])

    with database.connect() as connection:
        listed = [r["message"] for r in query_logs(connection, run_id=7)]
    assert listed == ["step", "item"]
