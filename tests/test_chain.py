"""The import chain on the in-process worker, on SQLite and PostgreSQL.

The API is the local server with recorded TVmaze responses, so every
stored value is checked against what TVmaze really sent.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update

from importer import batches
from importer.catalogue import add_series
from importer.joblog import flush_job_logs
from importer.payloads import html_to_text
from importer.schema import episodes, import_runs, job_logs, series
from importer.tvmaze_server import Fault, RecordedCatalogue, TvmazeServer, is_special

from .conftest import (
    configure,
    run_to_end,
)

#: Shows with recorded episode lists (specials among them) and some without.
WITH_EPISODES = [82, 83, 169, 526, 670, 1369, 1371]
WITHOUT_EPISODES = [1, 2, 3, 4, 5, 6, 7, 8]


def register(engine: Engine, ids: list[int]) -> None:
    with engine.begin() as connection:
        add_series(connection, ids)


def rows(engine: Engine, table: Any) -> dict[int, dict[str, Any]]:
    with engine.connect() as connection:
        return {r["tvmaze_id"]: dict(r) for r in connection.execute(select(table)).mappings()}


def logs(engine: Engine, run_id: int) -> list[dict[str, Any]]:
    query = select(job_logs).where(job_logs.c.run_id == run_id).order_by(job_logs.c.id)
    with engine.connect() as connection:
        return [dict(r) for r in connection.execute(query).mappings()]


def as_date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def assert_show_stored(row: dict[str, Any], show: dict[str, Any]) -> None:
    channel = show.get("network") or show.get("webChannel")
    assert row["name"] == show["name"]
    assert row["type"] == show["type"]
    assert row["language"] == show["language"]
    assert row["genres"] == show["genres"]
    assert row["status"] == show["status"]
    assert row["runtime"] == show["runtime"]
    assert row["premiered"] == as_date(show["premiered"])
    assert row["ended"] == as_date(show.get("ended"))
    assert row["official_site"] == (show.get("officialSite") or None)
    assert row["network"] == (channel["name"] if channel else None)
    assert row["summary"] == html_to_text(show["summary"])
    assert row["tvmaze_updated"] == show["updated"]
    assert row["data_last_updated_at"].tzinfo is not None


def assert_episode_stored(row: dict[str, Any], episode: dict[str, Any]) -> None:
    assert row["season"] == episode["season"]
    assert row["number"] == episode["number"]
    assert row["name"] == episode["name"]
    assert row["type"] == episode.get("type")
    assert row["airdate"] == as_date(episode["airdate"])
    assert row["airtime"] == (episode["airtime"] or None)
    assert row["runtime"] == episode["runtime"]
    assert row["summary"] == html_to_text(episode["summary"])


def test_series_then_episodes_store_every_recorded_value(
        database: Engine, worker: Any, recorded: RecordedCatalogue) -> None:
    register(database, WITH_EPISODES + WITHOUT_EPISODES)

    series_run = run_to_end("series", batch_size=4)
    episodes_run = run_to_end("episodes", batch_size=100)

    stored_series = rows(database, series)
    for tvmaze_id in WITH_EPISODES + WITHOUT_EPISODES:
        assert_show_stored(stored_series[tvmaze_id], recorded.show(tvmaze_id) or {})

    stored_episodes = rows(database, episodes)
    expected = {e["id"]: e for s in WITH_EPISODES for e in recorded.episodes(s) or []}
    assert set(stored_episodes) == set(expected)
    for tvmaze_id, episode in expected.items():
        assert_episode_stored(stored_episodes[tvmaze_id], episode)

    assert series_run["status"] == "completed"
    assert series_run["imported"] == len(WITH_EPISODES + WITHOUT_EPISODES)
    assert episodes_run["status"] == "completed"
    assert episodes_run["imported"] + episodes_run["discovered"] == len(expected)


def test_each_batch_logs_its_start_what_it_found_its_result_and_the_run_its_completion(
        database: Engine, worker: Any) -> None:
    register(database, WITHOUT_EPISODES)

    run = run_to_end("series", batch_size=3, delay=0.1)
    records = logs(database, run["id"])

    def event(name: str) -> list[dict[str, Any]]:
        return [r for r in records if (r["context"] or {}).get("event") == name]

    started, found = event("batch_started"), event("batch_found")
    results, completed = event("batch_result"), event("run_completed")

    assert len(started) == len(found) == len(results) == 3
    assert started[0]["context"]["batch_size"] == 3
    assert started[0]["context"]["delay_seconds"] == 0.1
    assert found[0]["message"] == "Found 8 series without data, processing 3 in this batch."
    assert [r["context"]["processed"] for r in results] == [3, 3, 2]
    assert [r["context"]["remaining"] for r in results] == [5, 2, 0]
    assert [r["context"]["continues"] for r in results] == [True, True, False]
    assert all(r["job_class"] == "importer.actors.import_missing_series" for r in results)
    assert len(completed) == 1 and completed[0]["context"]["imported"] == 8


def test_a_last_batch_that_fills_up_to_its_size_ends_the_run_without_waiting_its_delay(
        database: Engine, worker: Any) -> None:
    register(database, WITHOUT_EPISODES)

    run = run_to_end("series", batch_size=len(WITHOUT_EPISODES), delay=600, timeout=30)

    assert (run["status"], run["batches"], run["imported"]) == ("completed", 1, 8)
    result, = [r for r in logs(database, run["id"])
               if (r["context"] or {}).get("event") == "batch_result"]
    assert result["message"].endswith("0 remain.")


def test_batches_walk_rows_by_key_and_dispatch_each_row_once(
        database: Engine, worker: Any) -> None:
    register(database, WITHOUT_EPISODES)

    run = run_to_end("series", batch_size=3)

    items = [r for r in logs(database, run["id"])
             if r["job_class"] == "importer.actors.import_series" and r["status"] == "success"]
    assert sorted(r["item_id"] for r in items) == sorted(rows(database, series)[i]["id"]
                                                         for i in WITHOUT_EPISODES)
    assert run["selected"] == run["dispatched"] == len(WITHOUT_EPISODES)


def test_a_show_that_answers_404_is_recorded_as_not_found_and_the_run_still_ends(
        database: Engine, worker: Any) -> None:
    register(database, [1, 2, 999_999])

    run = run_to_end("series", batch_size=2)

    stored = rows(database, series)
    assert stored[999_999]["outcome"] == "not_found"
    assert stored[999_999]["data_last_updated_at"] is None
    assert "404" in stored[999_999]["last_error"]
    assert stored[1]["outcome"] == stored[2]["outcome"] == "imported"
    assert (run["status"], run["imported"], run["not_found"]) == ("completed", 2, 1)


def test_an_item_delivered_again_after_its_row_got_an_outcome_neither_writes_nor_counts_it(
        database: Engine, api: TvmazeServer) -> None:
    from importer import items
    from importer.runs import create_run, get_run

    register(database, [1])
    row_id = rows(database, series)[1]["id"]
    run_id = create_run("series", 50, 0.0)
    api.add_fault("/shows/1", Fault("status", status=404, times=1))

    items.import_series(run_id, row_id, 1)
    items.import_series(run_id, row_id, 1)   # delivered again, and now the show answers

    stored = rows(database, series)[1]
    with database.connect() as connection:
        run = get_run(connection, run_id)
    assert (stored["outcome"], stored["data_last_updated_at"]) == ("not_found", None)
    assert run is not None and (run["not_found"], run["imported"]) == (1, 0)
    assert api.requests == 2


def test_an_unparseable_payload_is_recorded_as_invalid_with_its_reason(
        database: Engine, worker: Any, api: TvmazeServer) -> None:
    api.add_fault("/shows/2", Fault("body", body=b'{"id": 2, "na'))
    register(database, [1, 2, 3])

    run = run_to_end("series")

    stored = rows(database, series)
    assert stored[2]["outcome"] == "invalid"
    assert "not JSON" in stored[2]["last_error"]
    assert (run["imported"], run["invalid"]) == (2, 1)


def test_a_row_failing_after_its_retries_is_recorded_as_failed_and_not_retried_by_the_run(
        database: Engine, worker: Any, api: TvmazeServer, monkeypatch: Any) -> None:
    from .conftest import configure

    configure(monkeypatch, max_item_retries=1)
    api.add_fault("/shows/3", Fault("status", status=503))
    register(database, [1, 3])

    run = run_to_end("series")

    stored = rows(database, series)
    assert stored[3]["outcome"] == "failed"
    assert stored[3]["attempts"] == 1
    assert stored[3]["failed_runs"] == 1
    assert (run["imported"], run["failed"]) == (1, 1)
    assert [p for _, p, _ in api.request_log()].count("/shows/3?embed=episodes") == 2


def test_a_429_is_waited_out_without_failing_the_row(
        database: Engine, worker: Any, api: TvmazeServer) -> None:
    api.add_fault("/shows/4", Fault("status", status=429, times=1, retry_after=0))
    register(database, [4])

    run = run_to_end("series")

    assert rows(database, series)[4]["outcome"] == "imported"
    assert run["imported"] == 1


def test_a_failed_call_never_blanks_data_a_row_already_has(
        database: Engine, worker: Any, api: TvmazeServer) -> None:
    register(database, [1])
    run_to_end("series")
    with database.begin() as connection:
        connection.execute(update(series).values(data_last_updated_at=None, outcome=None))
    api.add_fault("/shows/1", Fault("status", status=404))

    run_to_end("series")

    row = rows(database, series)[1]
    assert row["name"] == "Under the Dome"
    assert row["summary"] and row["premiered"] is not None
    assert row["outcome"] == "not_found"


def test_a_run_with_nothing_to_do_completes_at_once(database: Engine, worker: Any) -> None:
    run = run_to_end("episodes")

    assert (run["status"], run["batches"], run["selected"]) == ("completed", 1, 0)
    with database.connect() as connection:
        assert connection.execute(select(func.count()).select_from(import_runs)).scalar() == 1


def test_specials_missing_from_the_embedded_list_are_found_by_the_episodes_run(
        database: Engine, worker: Any, generated_api: TvmazeServer, monkeypatch: Any) -> None:
    configure(monkeypatch, api_url=generated_api.url)
    register(database, [1, 2, 3])

    run_to_end("series")
    with database.connect() as connection:
        registered = connection.execute(select(func.count()).select_from(episodes)).scalar()
    episodes_run = run_to_end("episodes")

    stored = rows(database, episodes)
    listed = {e["id"]: e for s in (1, 2, 3) for e in generated_api.catalogue.episodes(s) or []}
    specials = [i for i, e in listed.items() if is_special(e)]
    assert specials and registered == len(listed) - len(specials)
    assert set(stored) == set(listed)
    assert all(stored[i]["number"] is None for i in specials)
    assert all(stored[i]["outcome"] == "imported" for i in specials)
    assert episodes_run["discovered"] == len(specials)
    for tvmaze_id, episode in listed.items():
        assert_episode_stored(stored[tvmaze_id], episode)


def test_episodes_of_one_show_cost_one_call_however_many_batches_they_span(
        database: Engine, worker: Any, api: TvmazeServer) -> None:
    register(database, [82])
    run_to_end("series")
    api.reset_counters()

    run = run_to_end("episodes", batch_size=10)

    assert [p for _, p, _ in api.request_log()] == ["/shows/82/episodes?specials=1"]
    assert run["imported"] == 73


def test_sqlite_never_reports_a_locked_database_under_many_worker_threads(
        monkeypatch: Any, sqlite_url: str, generated_api: TvmazeServer) -> None:
    from importer.actors import broker
    from importer.database import get_engine
    from importer.embedded import embedded_worker
    from importer.joblog import install_job_log_handler
    from importer.migrate import upgrade

    configure(monkeypatch, database_url=sqlite_url, api_url=generated_api.url, api_calls=5000,
              api_period=1)
    engine = get_engine()
    upgrade(engine)
    install_job_log_handler(engine)
    register(engine, list(range(1, 41)))
    broker.flush_all()
    with embedded_worker(threads=16, poll_ms=50):
        series_run = run_to_end("series", batch_size=40)
        episodes_run = run_to_end("episodes", batch_size=200)

    with engine.connect() as connection:
        failed_jobs = connection.execute(select(func.count()).select_from(job_logs).where(
            job_logs.c.status == "failed")).scalar()
    assert failed_jobs == 0
    assert series_run["imported"] == 40
    assert episodes_run["imported"] + episodes_run["discovered"] == 40 * 6


def test_a_broken_embedded_episode_does_not_cost_the_show_its_data(
        database: Engine, worker: Any, api: TvmazeServer, recorded: RecordedCatalogue) -> None:
    import json

    show = dict(recorded.show(1) or {})
    show["_embedded"] = {"episodes": [{"id": 11, "season": 1, "number": 1},
                                      {"id": "twelve"}, "junk", {"id": 13, "season": "x"}]}
    api.add_fault("/shows/1", Fault("body", body=json.dumps(show).encode()))
    register(database, [1])

    run_to_end("series")

    assert rows(database, series)[1]["outcome"] == "imported"
    stored = rows(database, episodes)
    assert sorted(stored) == [11, 13]
    assert (stored[11]["season"], stored[13]["season"]) == (1, None)


def test_rows_registered_after_a_run_started_are_imported_and_counted_in_its_total(
        database: Engine, worker: Any) -> None:
    from importer.actors import import_missing_series
    from importer.control import wait_for_run
    from importer.runs import create_run

    register(database, WITHOUT_EPISODES[:2])
    run_id = create_run("series", 3, 0.0)
    register(database, WITHOUT_EPISODES[2:])

    import_missing_series.send(run_id, 0)
    run = wait_for_run(run_id, poll=0.05, timeout=60)
    flush_job_logs()

    def event(name: str) -> list[dict[str, Any]]:
        return [r["context"] for r in logs(database, run_id)
                if (r["context"] or {}).get("event") == name]

    assert (run["total"], run["selected"], run["imported"]) == (8, 8, 8)
    assert [f["found"] for f in event("batch_found")] == [8, 5, 2]
    assert [r["remaining"] for r in event("batch_result")] == [5, 2, 0]


def test_a_draining_run_closes_when_its_last_item_ends_not_at_its_next_check(
        database: Engine, worker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    register(database, WITHOUT_EPISODES)
    monkeypatch.setattr(batches, "DRAIN_POLL_MIN_SECONDS", 600.0)
    monkeypatch.setattr(batches, "DRAIN_POLL_SECONDS", 600.0)

    run = run_to_end("series", batch_size=3, timeout=20)

    assert run["status"] == "completed"
    assert run["imported"] == len(WITHOUT_EPISODES)
