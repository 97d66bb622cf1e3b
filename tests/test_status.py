"""``status`` on real parts: queue depths from RabbitMQ, and following a run to its end."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine

from importer.exitcodes import EXIT_OK

from .services import WorkerProcess, run_cli

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def test_status_shows_the_first_batch_waiting_in_its_queue_until_a_worker_takes_it(
        broker_env: dict[str, str], broker_engine: Engine) -> None:
    run_cli(["add-series", "1", "82"], broker_env)
    started = run_cli(["series"], broker_env)

    report = json.loads(run_cli(["status", "--json"], broker_env).stdout)
    table = run_cli(["status"], broker_env)

    assert started.returncode == EXIT_OK and started.stdout.strip() == "started series run 1"
    assert "no worker consumes importer.series.batches yet" in started.stderr
    assert report["queues"]["importer.series.batches"] == {"ready": 1, "consumers": 0}
    assert report["series"]["active_run"]["id"] == 1
    assert report["series"]["active_run"]["total"] == 2
    assert "RabbitMQ queues" in table.stdout and "importer.series.batches" in table.stdout


def test_status_follow_prints_progress_until_the_active_run_ends(
        broker_env: dict[str, str], worker_process: WorkerProcess) -> None:
    run_cli(["add-series", "1", "82", "169"], broker_env)
    started = run_cli(["series", "--batch-size", "1", "--delay", "0.5"], broker_env)
    assert started.returncode == 0 and "warning" not in started.stderr

    followed = run_cli(["status", "--follow"], broker_env, timeout=120)

    assert followed.returncode == EXIT_OK, followed.stderr
    assert "run 1 (series) completed: " in followed.stdout
    assert "3 rows, 3 imported, 0 not found" in followed.stdout
    # Not a terminal: plain progress lines instead of a bar.
    assert "run 1 series: completed, 3/3 rows" in followed.stderr


def test_status_follow_without_an_active_run_says_so(
        broker_env: dict[str, str], broker_engine: Engine) -> None:
    followed = run_cli(["status", "--follow"], broker_env)

    assert followed.returncode == EXIT_OK
    assert followed.stdout.strip() == "no active run"
