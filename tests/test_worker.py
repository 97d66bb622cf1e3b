"""``dramatiq importer.actors``, the worker as users start it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from importer.exitcodes import EXIT_CONFIG, EXIT_NO_SCHEMA


def test_a_worker_without_a_broker_url_stops_at_once_and_says_why() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMPORTER_")}

    result = subprocess.run(
        [sys.executable, "-m", "dramatiq", "importer.actors", "--processes", "1",
         "--threads", "1"], env=env, capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == EXIT_CONFIG
    assert "IMPORTER_BROKER_URL is not set" in result.stderr


def test_a_scheduler_without_a_broker_url_stops_at_once_and_says_why() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMPORTER_")}
    scheduler = str(Path(sys.executable).parent / "periodiq")

    result = subprocess.run([scheduler, "importer.actors"], env=env, capture_output=True,
                            text=True, timeout=60, check=False)

    assert result.returncode == EXIT_CONFIG
    assert "IMPORTER_BROKER_URL is not set" in result.stderr


@pytest.mark.rabbitmq
def test_a_worker_on_a_database_without_the_schema_stops_at_once_and_says_why(
        rabbitmq: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMPORTER_")}
    env |= {"IMPORTER_BROKER_URL": rabbitmq,
            "IMPORTER_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}

    result = subprocess.run(
        [sys.executable, "-m", "dramatiq", "importer.actors", "--processes", "1",
         "--threads", "1"], env=env, capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == EXIT_NO_SCHEMA
    assert "The worker cannot start" in result.stderr and "init-db" in result.stderr
