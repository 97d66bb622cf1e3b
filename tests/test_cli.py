"""The command line as users meet it: exit codes, one-line errors, embedded runs."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from importer.exitcodes import (
    EXIT_CONFIG,
    EXIT_INTERRUPTED,
    EXIT_NO_SCHEMA,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)
from importer.schema import import_runs, series
from importer.tvmaze_server import TvmazeServer

from .services import poll, run_cli


@pytest.fixture
def env(tmp_path: Path, api: TvmazeServer) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IMPORTER_")}
    return clean | {
        "IMPORTER_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "IMPORTER_API_URL": api.url,
        "IMPORTER_API_CALLS": "500",
        "IMPORTER_API_PERIOD": "1",
    }


@pytest.fixture
def ready(env: dict[str, str]) -> dict[str, str]:
    """An environment whose database has the schema."""
    assert run_cli(["init-db"], env).returncode == EXIT_OK
    return env


def assert_one_line_error(result: object, code: int, text: str) -> None:
    assert result.returncode == code, result.stderr  # type: ignore[attr-defined]
    lines = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    assert lines[0].startswith("importer: error: ")
    assert text in lines[0]
    assert "Traceback" not in result.stderr  # type: ignore[attr-defined]


def count_rows(env: dict[str, str], table: object) -> int:
    engine = create_engine(env["IMPORTER_DATABASE_URL"])
    with engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(table)).scalar_one()  # type: ignore[arg-type]
    engine.dispose()
    return int(count)


def test_series_and_episodes_run_embedded_on_sqlite_from_the_cli(ready: dict[str, str]) -> None:
    assert run_cli(["add-series", "1", "82", "169"], ready).returncode == EXIT_OK

    series_run = run_cli(["series", "--delay", "0.1"], ready)
    episodes_run = run_cli(["episodes", "--batch-size", "50", "--delay", "0.1"], ready)

    assert series_run.returncode == EXIT_OK, series_run.stderr
    assert "run 1 (series) completed: 1 batches, 3 rows, 3 imported" in series_run.stdout
    assert episodes_run.returncode == EXIT_OK, episodes_run.stderr
    status = json.loads(run_cli(["status", "--json"], ready).stdout)
    assert (status["series"]["missing"], status["series"]["imported"]) == (0, 3)
    assert status["series"]["failed"] == 0
    assert status["episodes"]["imported"] == 73 + 62
    assert status["episodes"]["missing"] == 0


def test_add_series_reads_ids_from_stdin_and_counts_the_new_ones(ready: dict[str, str]) -> None:
    ids = "1\n# comment\n\n2\n5\n"

    result = run_cli(["add-series", "--from-file", "-", "5"], ready, stdin=ids)

    assert result.returncode == EXIT_OK
    assert "registered 3 new series" in result.stdout
    assert count_rows(ready, series) == 3


@pytest.mark.parametrize("args, text", [
    (["series", "--batch-size", "0"], "--batch-size"),
    (["series", "--batch-size", "-5"], "--batch-size"),
    (["series", "--batch-size", "ten"], "--batch-size"),
    (["series", "--batch-size", "99999999999"], "--batch-size"),
    (["episodes", "--delay", "-1"], "--delay"),
    (["episodes", "--delay", "86400"], "--delay"),
    (["episodes", "--delay", "soon"], "--delay"),
    (["episodes", "--delay", "nan"], "--delay"),
    (["add-series", "abc"], "abc"),
    (["retry-failed"], "Choose from: series, episodes"),
    (["add-series"], "at least one"),
    (["frobnicate"], "frobnicate"),
])
def test_bad_arguments_get_one_line_and_the_usage_exit_code(
        ready: dict[str, str], args: list[str], text: str) -> None:
    assert_one_line_error(run_cli(args, ready), EXIT_USAGE, text)
    assert count_rows(ready, import_runs) == 0


def test_a_bad_id_in_a_file_names_the_line_and_registers_nothing(ready: dict[str, str]) -> None:
    result = run_cli(["add-series", "--from-file", "-"], ready, stdin="1\n2\nx3\n")

    assert_one_line_error(result, EXIT_CONFIG, "line 3")
    assert count_rows(ready, series) == 0


@pytest.mark.parametrize("content, code, text", [
    (b"1\n\xff\xfe\n", EXIT_CONFIG, "is not UTF-8 text"),
    ("1\n\uff11\uff12\n".encode(), EXIT_CONFIG, "line 2"),
    (b"# none yet\n\n", EXIT_USAGE, "holds no TVmaze id"),
])
def test_an_unusable_id_file_gets_one_line_and_registers_nothing(
        ready: dict[str, str], tmp_path: Path, content: bytes, code: int, text: str) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_bytes(content)

    assert_one_line_error(run_cli(["add-series", "--from-file", str(ids)], ready), code, text)
    assert count_rows(ready, series) == 0


def test_an_id_file_saved_with_a_byte_order_mark_is_read(
        ready: dict[str, str], tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_bytes("\ufeff8\r\n82\r\n".encode())

    result = run_cli(["add-series", "--from-file", str(ids)], ready)

    assert result.returncode == EXIT_OK, result.stderr
    assert count_rows(ready, series) == 2


@pytest.mark.parametrize("args", [["logs", "--since", "99999999999d"],
                                  ["prune-logs", "--older-than", "999999d"]])
def test_an_age_beyond_a_century_gets_one_line(ready: dict[str, str], args: list[str]) -> None:
    assert_one_line_error(run_cli(args, ready), EXIT_CONFIG, "at most 36500d")


@pytest.mark.parametrize("variable, value, text", [
    ("IMPORTER_DATABASE_URL", "mysql://db/x", "IMPORTER_DATABASE_URL"),
    ("IMPORTER_DATABASE_URL", "postgresql://u:pw@db:abc/x", "IMPORTER_DATABASE_URL"),
    ("IMPORTER_BROKER_URL", "redis://localhost", "IMPORTER_BROKER_URL"),
    ("IMPORTER_BROKER_URL", "amqp://u:pw@mq:abc/x", "IMPORTER_BROKER_URL"),
    ("IMPORTER_API_URL", "ftp://api", "IMPORTER_API_URL"),
    ("IMPORTER_API_CALLS", "0", "IMPORTER_API_CALLS"),
    ("IMPORTER_WORKER_THREADS", "many", "IMPORTER_WORKER_THREADS"),
    ("IMPORTER_SERIES_SCHEDULE", "daily at 3", "cron spec"),
    ("IMPORTER_BATCH_DELAY", "3600", "IMPORTER_BATCH_DELAY"),
])
def test_a_bad_setting_gets_one_line_naming_it(ready: dict[str, str], variable: str, value: str,
                                                text: str) -> None:
    result = run_cli(["status"], ready | {variable: value})

    assert_one_line_error(result, EXIT_CONFIG, text)


def test_a_database_without_the_schema_says_to_run_init_db(env: dict[str, str]) -> None:
    assert_one_line_error(run_cli(["series"], env), EXIT_NO_SCHEMA, "init-db")


def test_a_command_on_a_missing_sqlite_file_creates_none(env: dict[str, str]) -> None:
    path = Path(env["IMPORTER_DATABASE_URL"].removeprefix("sqlite:///"))

    assert_one_line_error(run_cli(["status"], env), EXIT_NO_SCHEMA, "no database at")
    assert not path.exists()
    assert run_cli(["init-db"], env).stdout.startswith("created the database schema")


def test_an_unreachable_database_is_reported_without_its_password(env: dict[str, str]) -> None:
    url = "postgresql://importer:s3cret@127.0.0.1:1/catalogue"

    result = run_cli(["status"], env | {"IMPORTER_DATABASE_URL": url})

    assert_one_line_error(result, EXIT_UNAVAILABLE, "cannot reach the database")
    assert "s3cret" not in result.stderr


def test_an_unreachable_broker_enqueues_nothing_and_keeps_its_password(
        ready: dict[str, str]) -> None:
    broker = {"IMPORTER_BROKER_URL": "amqp://guest:hunter2@127.0.0.1:1/%2F"}

    result = run_cli(["series"], ready | broker)

    assert_one_line_error(result, EXIT_UNAVAILABLE, "cannot reach the broker")
    assert "hunter2" not in result.stderr
    assert count_rows(ready, import_runs) == 0


def test_every_command_has_help(ready: dict[str, str]) -> None:
    for command in ("init-db", "add-series", "add-episodes", "series", "episodes", "status",
                    "retry-failed", "serve-api", "demo"):
        result = run_cli([command, "--help"], ready)
        assert result.returncode == EXIT_OK and "Usage:" in result.stdout


def test_dry_run_counts_rows_and_api_calls_and_changes_nothing(ready: dict[str, str]) -> None:
    run_cli(["add-series", "1", "2", "3"], ready)

    result = run_cli(["series", "--dry-run", "--batch-size", "2"], ready)

    assert result.returncode == EXIT_OK, result.stderr
    assert "series: 3 rows need data; 3 API calls" in result.stdout
    assert "about 2 batches" in result.stdout
    assert count_rows(ready, import_runs) == 0


def test_status_prints_tables_and_json_with_the_last_runs(ready: dict[str, str]) -> None:
    run_cli(["add-series", "1", "999999"], ready)
    run_cli(["series", "--delay", "0"], ready)

    table = run_cli(["status"], ready)
    report = json.loads(run_cli(["status", "--json"], ready).stdout)

    assert table.returncode == EXIT_OK and "Catalogue" in table.stdout
    assert report["series"]["failed_by_reason"]["not_found"] == 1
    assert report["series"]["recent_runs"][0]["status"] == "completed"
    assert report["series"]["active_run"] is None


def test_logs_filters_by_run_and_prints_json_lines(ready: dict[str, str]) -> None:
    run_cli(["add-series", "1"], ready)
    run_cli(["series", "--delay", "0"], ready)
    run_cli(["series", "--delay", "0"], ready)

    result = run_cli(["logs", "--run", "2", "--json", "--limit", "1000"], ready)

    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records and {r["run_id"] for r in records} == {2}
    times = [r["created_at"] for r in records]
    assert times == sorted(times, reverse=True)


def test_logs_follow_prints_new_records_until_interrupted(ready: dict[str, str]) -> None:
    run_cli(["add-series", "1"], ready)
    follower = subprocess.Popen([sys.executable, "-m", "importer", "logs", "--follow", "--json"],
                                env=ready, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in follower.stdout or []],
                     daemon=True).start()

    run_cli(["series", "--delay", "0"], ready)
    events = []
    while "run_completed" not in events:
        record = json.loads(lines.get(timeout=30))
        events.append((record["context"] or {}).get("event"))
    follower.send_signal(signal.SIGINT)
    _, stderr = follower.communicate(timeout=30)

    assert events[0] != "run_completed"
    assert follower.returncode == EXIT_INTERRUPTED
    assert stderr.strip() == "importer: error: interrupted"


def test_prune_logs_deletes_only_records_older_than_the_age(ready: dict[str, str]) -> None:
    from importer.schema import job_logs

    run_cli(["add-series", "1"], ready)
    run_cli(["series", "--delay", "0"], ready)
    before = count_rows(ready, job_logs)

    kept = run_cli(["prune-logs", "--older-than", "1d"], ready)
    engine = create_engine(ready["IMPORTER_DATABASE_URL"])
    with engine.begin() as connection:
        connection.execute(job_logs.update().where(job_logs.c.id <= 3).values(
            created_at=datetime.now(UTC) - timedelta(days=100)))
    engine.dispose()
    pruned = run_cli(["prune-logs", "--older-than", "90d"], ready)

    assert before > 3
    assert "deleted 0" in kept.stdout
    assert "deleted 3" in pruned.stdout
    assert count_rows(ready, job_logs) == before - 3


def test_start_run_without_a_broker_or_an_embedded_worker_starts_nothing(
        ready: dict[str, str]) -> None:
    run_cli(["add-series", "1"], ready)
    script = ("from importer.control import start_run\n"
              "from importer.errors import ConfigurationError\n"
              "try:\n    start_run('series')\n"
              "except ConfigurationError as error:\n    print(error)\n")

    done = subprocess.run([sys.executable, "-c", script], env=ready, capture_output=True,
                          text=True, timeout=60, check=False)

    assert "IMPORTER_BROKER_URL is not set" in done.stdout, done.stderr
    assert count_rows(ready, import_runs) == 0


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_an_embedded_run_stopped_midway_is_abandoned_so_the_next_start_goes_ahead(
        ready: dict[str, str], stop: signal.Signals) -> None:
    run_cli(["add-series", "1", "2", "3"], ready)
    command = [sys.executable, "-m", "importer", "series", "--batch-size", "1", "--delay", "30"]
    importing = subprocess.Popen(command, env=ready, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
    poll(lambda: count_rows(ready, import_runs) == 1, timeout=30, message="the run started")

    importing.send_signal(stop)
    _, stderr = importing.communicate(timeout=60)
    again = run_cli(["series", "--delay", "0"], ready)

    assert importing.returncode == EXIT_INTERRUPTED
    assert stderr.strip().splitlines()[-1] == (
        "importer: error: interrupted: run 1 abandoned; the next start continues with the "
        "rows still missing")
    assert stderr.count("importer: error") == 1 and "Traceback" not in stderr
    assert again.returncode == EXIT_OK, again.stderr
    engine = create_engine(ready["IMPORTER_DATABASE_URL"])
    with engine.connect() as connection:
        statuses = connection.execute(select(import_runs.c.status).order_by(import_runs.c.id))
        assert list(statuses.scalars()) == ["abandoned", "completed"]
    engine.dispose()


def test_an_interrupt_while_a_run_starts_is_held_until_the_run_can_be_abandoned() -> None:
    from importer.cli import _interrupts_held

    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        with _interrupts_held() as held:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGINT, saved[0])
        signal.signal(signal.SIGTERM, saved[1])

    assert held == [signal.SIGINT, signal.SIGTERM]


@pytest.mark.parametrize("command", ["status", "init-db"])
def test_a_sqlite_file_in_a_missing_directory_is_reported_as_unreachable(
        env: dict[str, str], tmp_path: Path, command: str) -> None:
    url = f"sqlite:///{tmp_path / 'missing' / 'importer.db'}"

    result = run_cli([command], env | {"IMPORTER_DATABASE_URL": url})

    assert_one_line_error(result, EXIT_UNAVAILABLE, "does not exist")
    assert not (tmp_path / "missing").exists()
