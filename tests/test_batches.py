"""Batch steps delivered more than once, and items whose retries are spent."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import dramatiq
import pytest
from sqlalchemy import Engine, RowMapping, select, update

from importer import actors, batches
from importer.catalogue import Kind, add_episodes, add_series
from importer.runs import create_run, get_run
from importer.schema import episodes, import_runs, series, utcnow

from .conftest import run_to_end
from .services import poll


class HeldDispatcher:
    """Counts what a step sends, and holds its first successor until released."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.sending = threading.Event()
        self.release = threading.Event()

    def send_items(self, kind: Kind, run_id: int, rows: Sequence[RowMapping]) -> int:
        return len(rows)

    def send_step(self, kind: Kind, run_id: int, step: int, delay_seconds: float) -> None:
        self.steps.append(step)
        if len(self.steps) == 1:
            self.sending.set()
            assert self.release.wait(timeout=30)


def new_run(database: Engine, shows: int = 5, batch_size: int = 2) -> int:
    with database.begin() as connection:
        add_series(connection, list(range(1, shows + 1)))
    return create_run("series", batch_size, 0.0, engine=database)


def run_row(database: Engine, run_id: int) -> RowMapping:
    with database.connect() as connection:
        run = get_run(connection, run_id)
    assert run is not None
    return run


def test_a_duplicate_delivered_while_its_step_sends_the_successor_sends_none(
        database: Engine) -> None:
    run_id = new_run(database)
    dispatcher = HeldDispatcher()
    first = threading.Thread(target=batches.run_step, args=("series", run_id, 0, dispatcher))
    first.start()
    assert dispatcher.sending.wait(timeout=30)

    with pytest.raises(dramatiq.Retry):
        batches.run_step("series", run_id, 0, dispatcher)
    dispatcher.release.set()
    first.join(timeout=30)
    batches.run_step("series", run_id, 0, dispatcher)

    assert dispatcher.steps == [1]
    run = run_row(database, run_id)
    assert (run["step"], run["batches"], run["selected"], run["successor_sent"]) == \
        (1, 1, 2, True)


def test_a_step_whose_successor_was_never_sent_sends_it_once_the_grace_has_passed(
        database: Engine) -> None:
    run_id = new_run(database)
    dispatcher = HeldDispatcher()
    dispatcher.release.set()
    batches.run_step("series", run_id, 0, dispatcher)
    with database.begin() as connection:
        # As if the worker died between the step's commit and its send.
        connection.execute(update(import_runs).where(import_runs.c.id == run_id).values(
            successor_sent=False, heartbeat_at=utcnow() - timedelta(minutes=5)))

    batches.run_step("series", run_id, 0, dispatcher)
    batches.run_step("series", run_id, 0, dispatcher)

    assert dispatcher.steps == [1, 1]
    run = run_row(database, run_id)
    assert (run["step"], run["batches"], run["successor_sent"]) == (1, 1, True)


def test_a_retried_step_does_not_select_rows_that_already_have_their_outcome_in_the_run(
        database: Engine) -> None:
    run_id = new_run(database, shows=3, batch_size=3)
    with database.begin() as connection:
        # The items of a first try of step 0, whose own commit failed.
        connection.execute(update(series).where(series.c.tvmaze_id == 2).values(
            outcome="failed", last_run_id=run_id))

    with database.connect() as connection:
        selection = batches.select_next(connection, "series", run_row(database, run_id))

    assert [row["tvmaze_id"] for row in selection.rows] == [1, 3]


@pytest.mark.parametrize(("status", "recorded"), [("completed", False), ("abandoned", True)])
def test_a_step_of_a_closed_run_is_ignored_and_recorded_only_when_the_run_was_abandoned(
        database: Engine, caplog: pytest.LogCaptureFixture, status: str, recorded: bool) -> None:
    run_id = new_run(database)
    with database.begin() as connection:
        connection.execute(update(import_runs).where(import_runs.c.id == run_id)
                           .values(status=status))
    dispatcher = HeldDispatcher()
    caplog.set_level(logging.DEBUG, logger="importer.batches")

    batches.run_step("series", run_id, 0, dispatcher)

    ignored = [r for r in caplog.records if "batch message ignored" in r.getMessage()]
    assert [r.levelno >= logging.INFO for r in ignored] == [recorded]
    assert dispatcher.steps == [] and run_row(database, run_id)["batches"] == 0


@pytest.mark.parametrize(("batch_size", "selected", "continues"), [
    (2, 3, True),    # the rest of the first show is taken; the second follows
    (3, 3, True),    # the first show fills the batch; the second follows
    (4, 5, False),   # the rest of the second show is taken; nothing follows
    (5, 5, False),   # the batch fills up to its size with the last rows
    (6, 5, False),
])
def test_an_episodes_batch_takes_whole_shows_and_continues_only_when_rows_follow_it(
        database: Engine, batch_size: int, selected: int, continues: bool) -> None:
    with database.begin() as connection:
        add_episodes(connection, 1, [11, 12, 13])
        add_episodes(connection, 2, [21, 22])
    run_id = create_run("episodes", batch_size, 0.0, engine=database)

    with database.connect() as connection:
        selection = batches.select_next(connection, "episodes", run_row(database, run_id))

    assert len(selection.rows) == selected
    assert selection.continues is continues
    assert selection.cursor_id == selection.rows[-1]["id"]


@pytest.mark.parametrize(("shows", "continues"), [(4, True), (3, False), (2, False)])
def test_a_series_batch_continues_only_when_rows_follow_it(
        database: Engine, shows: int, continues: bool) -> None:
    run_id = new_run(database, shows=shows, batch_size=3)

    with database.connect() as connection:
        selection = batches.select_next(connection, "series", run_row(database, run_id))

    assert [row["tvmaze_id"] for row in selection.rows] == list(range(1, min(shows, 3) + 1))
    assert selection.continues is continues


def test_an_item_whose_retries_are_spent_gets_a_failed_outcome_and_its_run_ends(
        database: Engine, worker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def show(self, tvmaze_id: int, *, embed_episodes: bool = False) -> Any:
            raise RuntimeError("a bug in the item")

    with database.begin() as connection:
        add_series(connection, [1, 2])
    monkeypatch.setattr(actors, "MAX_RETRIES", 1)
    monkeypatch.setattr("importer.items.get_client", Broken)

    run = run_to_end("series", timeout=60)

    with database.connect() as connection:
        stored = list(connection.execute(select(series).order_by(series.c.id)).mappings())
    assert [row["outcome"] for row in stored] == ["failed", "failed"]
    assert all("RuntimeError: a bug in the item" in row["last_error"] for row in stored)
    assert all(row["failed_runs"] == 1 and row["data_last_updated_at"] is None
               for row in stored)
    assert (run["status"], run["failed"], run["imported"]) == ("completed", 2, 0)


def test_an_episodes_item_whose_retries_are_spent_gives_each_of_its_rows_a_failed_outcome(
        database: Engine, worker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def episodes(self, tvmaze_id: int) -> Any:
            raise RuntimeError("a bug in the item")

    with database.begin() as connection:
        add_episodes(connection, 1, [11, 12])
    monkeypatch.setattr(actors, "MAX_RETRIES", 1)
    monkeypatch.setattr("importer.items.get_client", Broken)

    run = run_to_end("episodes", timeout=60)

    assert [row["outcome"] for row in episode_rows(database)] == ["failed", "failed"]
    assert (run["status"], run["failed"], run["imported"]) == ("completed", 2, 0)


def test_an_item_message_of_an_earlier_version_is_not_retried_and_its_rows_fail(
        database: Engine, worker: Any) -> None:
    with database.begin() as connection:
        add_episodes(connection, 1, [11, 12])
    run_id = create_run("episodes", 100, 0.0, engine=database)
    row_ids = [row["id"] for row in episode_rows(database)]

    # Its rows were bare row ids, and no show TVmaze id came with them.
    actors.import_episodes.send_with_options(args=(run_id, 1, row_ids))

    stored = poll(lambda: [r for r in episode_rows(database) if r["outcome"] == "failed"],
                  30, message="failed outcomes")
    assert [row["id"] for row in stored] == row_ids
    assert all("TypeError" in row["last_error"] for row in stored)
    assert run_row(database, run_id)["failed"] == 2


def episode_rows(database: Engine) -> list[RowMapping]:
    with database.connect() as connection:
        return list(connection.execute(select(episodes).order_by(episodes.c.id)).mappings())
