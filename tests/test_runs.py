"""One run of a kind at a time: refused, raced, taken over when stale, forced."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from importer.catalogue import add_series
from importer.control import start_run
from importer.errors import RunActiveError
from importer.exitcodes import EXIT_RUN_ACTIVE
from importer.joblog import flush_job_logs
from importer.runs import create_run, stale_after
from importer.schema import import_runs, series, utcnow
from importer.tvmaze_server import GeneratedCatalogue, TvmazeServer

from .conftest import configure
from .services import run_cli
from .test_faults import in_process_worker, paths, records

# NOTE: most runs here are only started, to test the guard: their
# messages stay queued in this process.
pytestmark = pytest.mark.usefixtures("queued_only")


@pytest.fixture
def local_api(monkeypatch: pytest.MonkeyPatch, database: Engine) -> Iterator[TvmazeServer]:
    with TvmazeServer(GeneratedCatalogue(10)) as server:
        configure(monkeypatch, api_url=server.url)
        yield server


@pytest.fixture
def takeovers() -> Iterator[list[logging.LogRecord]]:
    """The warnings ``importer.runs`` logs, whatever the logging set-up."""
    caught: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = caught.append  # type: ignore[method-assign]
    logger = logging.getLogger("importer.runs")
    logger.addHandler(handler)
    yield caught
    logger.removeHandler(handler)


def runs(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        query = select(import_runs).order_by(import_runs.c.id)
        return [dict(r) for r in connection.execute(query).mappings()]


def register(engine: Engine, ids: list[int]) -> None:
    with engine.begin() as connection:
        add_series(connection, ids)


def mark_imported(engine: Engine, ids: list[int]) -> None:
    """As if an earlier run had imported these rows before it died."""
    with engine.begin() as connection:
        connection.execute(update(series).where(series.c.tvmaze_id.in_(ids)).values(
            name="Imported earlier", outcome="imported", data_last_updated_at=utcnow()))


def age_heartbeat(engine: Engine, run_id: int, by: timedelta) -> None:
    with engine.begin() as connection:
        connection.execute(update(import_runs).where(import_runs.c.id == run_id)
                           .values(heartbeat_at=utcnow() - by))


def test_a_second_start_of_a_kind_while_its_run_is_active_raises_run_active_error(
        database: Engine, local_api: TvmazeServer) -> None:
    register(database, [1, 2, 3])
    first = start_run("series", batch_size=2, delay=5)

    with pytest.raises(RunActiveError) as refused:
        start_run("series", batch_size=2, delay=5)
    other_kind = start_run("episodes", delay=5)

    error = refused.value
    assert (error.run_id, error.kind, error.selected, error.total) == (first, "series", 0, 3)
    assert f"run {first}" in str(error) and "0 of 3 rows selected" in str(error)
    assert [(r["id"], r["kind"], r["status"]) for r in runs(database)] == [
        (first, "series", "running"), (other_kind, "episodes", "running")]


def test_the_cli_refuses_a_second_run_with_exit_code_6_and_one_line_naming_the_run(
        database: Engine, local_api: TvmazeServer) -> None:
    register(database, [1, 2, 3])
    first = start_run("series", batch_size=2, delay=5)

    # The settings of this test, the database's among them, are in os.environ.
    result = run_cli(["series", "--delay", "0"], dict(os.environ))

    assert result.returncode == EXIT_RUN_ACTIVE, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("importer: error: "), result.stderr
    assert f"run {first}" in lines[0]
    assert "started " in lines[0] and "UTC" in lines[0]
    assert "counts as dead if it makes no progress until" in lines[0]
    assert "--takeover" in lines[0]
    assert "0 of 3 rows selected" in lines[0]
    assert [r["status"] for r in runs(database)] == ["running"]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_of_eight_starts_at_the_same_instant_exactly_one_runs(
        database: Engine, local_api: TvmazeServer) -> None:
    register(database, [1, 2, 3])
    barrier = threading.Barrier(8)
    started: list[int] = []
    refused: list[RunActiveError] = []

    def start() -> None:
        barrier.wait()
        try:
            started.append(start_run("series", batch_size=2, delay=5))
        except RunActiveError as error:
            refused.append(error)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(started) == 1 and len(refused) == 7
    assert {error.run_id for error in refused} == set(started)
    assert [(r["id"], r["status"]) for r in runs(database)] == [(started[0], "running")]


def test_a_run_with_a_stale_heartbeat_is_taken_over_and_the_new_run_imports_what_is_missing(
        database: Engine, local_api: TvmazeServer,
        takeovers: list[logging.LogRecord]) -> None:
    from importer.actors import import_missing_series

    register(database, [1, 2, 3, 4, 5, 6])
    dead = start_run("series", batch_size=2, delay=0.5)
    mark_imported(database, [1, 2, 3])
    age_heartbeat(database, dead, stale_after(0.5) + timedelta(seconds=1))

    with in_process_worker(threads=2):
        new = start_run("series", batch_size=2, delay=0.5)
        # The dead run's first message, late: it must do nothing.
        import_missing_series.send(dead, 0)
        run = _wait(new)

    old, current = runs(database)
    assert (old["id"], old["status"]) == (dead, "abandoned") and old["finished_at"]
    assert (current["id"], current["status"], current["total"]) == (new, "completed", 3)
    assert (current["imported"], current["failed"]) == (3, 0)
    assert sorted(paths(local_api)) == ["/shows/4", "/shows/5", "/shows/6"]
    assert [r.getMessage() for r in takeovers] == [
        f"Took over series run {dead} (stale heartbeat, last heartbeat "
        f"{old['heartbeat_at'].isoformat()})."]
    logged = [r for r in records(database, dead) if r["level"] == "WARNING"]
    assert [r["context"]["reason"] for r in logged] == ["stale heartbeat"]
    assert any("not running; batch message ignored" in r["message"]
               for r in records(database, dead))
    assert run["id"] == new


def test_a_live_run_is_not_taken_over_unless_takeover_forces_it(
        database: Engine, local_api: TvmazeServer,
        takeovers: list[logging.LogRecord]) -> None:
    register(database, [1, 2])
    alive = start_run("series", batch_size=2, delay=5)
    age_heartbeat(database, alive, stale_after(5) - timedelta(seconds=30))

    with pytest.raises(RunActiveError):
        start_run("series", batch_size=2, delay=5)
    forced = start_run("series", batch_size=2, delay=5, takeover=True)

    assert [(r["id"], r["status"]) for r in runs(database)] == [
        (alive, "abandoned"), (forced, "running")]
    assert len(takeovers) == 1 and "(forced," in takeovers[0].getMessage()


def _wait(run_id: int) -> Any:
    from importer.control import wait_for_run

    run = wait_for_run(run_id, poll=0.05, timeout=30)
    flush_job_logs()
    return run


class Recording:
    """A dispatcher that keeps a step's item messages instead of sending them."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int]] = []

    def send_items(self, kind: Any, run_id: int, rows: Any) -> int:
        self.rows.extend((row["id"], row["tvmaze_id"]) for row in rows)
        return len(rows)

    def send_step(self, kind: Any, run_id: int, step: int, delay_seconds: float) -> None:
        pass


def test_a_run_that_took_over_ends_once_the_abandoned_runs_items_filled_its_rows(
        database: Engine, api: TvmazeServer) -> None:
    from importer import batches, items

    register(database, [1, 2, 3])
    abandoned = create_run("series", 50, 0.0)
    taking_over = create_run("series", 50, 0.0, takeover=True)
    selected = Recording()
    batches.run_step("series", taking_over, 0, selected)

    for row_id, tvmaze_id in selected.rows:
        items.import_series(abandoned, row_id, tvmaze_id)   # still queued at the takeover
    for row_id, tvmaze_id in selected.rows:
        items.import_series(taking_over, row_id, tvmaze_id)
        items.import_series(taking_over, row_id, tvmaze_id)   # and delivered twice
    batches.run_step("series", taking_over, 1, selected)

    run = runs(database)[-1]
    # Each delivery calls the API; only the first of each row writes.
    assert len(selected.rows) == 3 and api.requests == 9
    assert run["status"] == "completed"
    assert (run["selected"], run["imported"], run["skipped"]) == (3, 0, 3)
