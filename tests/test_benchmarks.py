"""The benchmark suite's quick mode runs end to end, so that it cannot rot.

The figures of a smoke run say nothing about speed; the test checks
that every ratio is measured and that each is a number in a sane range.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import POSTGRES_URL, require_service

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[1]

#: Bounds no working suite falls outside, however slow the machine.
SANE = {
    1: (0.5, 20.0),     # time over floor
    2: (1.0, 10.0),     # calls per show
    3: (0.01, 10.0),    # pipeline over plain loop
    4: (0.05, 20.0),    # large batch over small batch
    5: (-200.0, 500.0),  # MiB of growth
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    require_service("RabbitMQ", "127.0.0.1", 5672)
    report = tmp_path_factory.mktemp("bench") / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--postgres", POSTGRES_URL,
         "--json", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, json.loads(report.read_text("utf-8"))


def test_the_quick_run_prints_a_table_of_the_five_ratios_beside_their_targets(
        quick_run: tuple[str, dict[str, Any]]) -> None:
    table, _ = quick_run

    rows = [line for line in table.splitlines() if line[:1].isdigit() and "  " in line]
    assert [row.split()[0] for row in rows] == ["1", "2", "3", "4", "5"]
    assert all(("≤" in row) != ("≥" in row) for row in rows)
    assert "beside it" in table


def test_every_ratio_of_the_quick_run_is_a_sane_number(
        quick_run: tuple[str, dict[str, Any]]) -> None:
    _, document = quick_run

    results = {r["number"]: r for r in document["results"]}
    assert document["mode"] == "quick"
    assert sorted(results) == [1, 2, 3, 4, 5]
    for number, (low, high) in SANE.items():
        value = results[number]["value"]
        assert math.isfinite(value) and low <= value <= high, (number, value)
        assert results[number]["details"]


def test_the_importer_needs_two_calls_per_show_and_the_naive_design_more(
        quick_run: tuple[str, dict[str, Any]]) -> None:
    _, document = quick_run

    calls = next(r for r in document["results"] if r["number"] == 2)
    assert calls["value"] == pytest.approx(2.0, abs=0.2)
    assert "naive" in calls["beside"]
