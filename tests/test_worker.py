"""``dramatiq importer.actors``, the worker as users start it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from importer.exitcodes import EXIT_CONFIG


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
