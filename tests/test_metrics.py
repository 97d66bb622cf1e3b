"""Prometheus metrics served by a real worker: Dramatiq's own and the importer's."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from .services import WorkerProcess, poll, run_cli

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def metrics_url(broker_env: dict[str, str], broker_engine: Engine,
                tmp_path: Path) -> Iterator[str]:
    """The metrics URL of a worker started with ``IMPORTER_METRICS=true``."""
    port = free_port()
    env = broker_env | {"IMPORTER_METRICS": "true", "dramatiq_prom_host": "127.0.0.1",
                        "dramatiq_prom_port": str(port),
                        "dramatiq_prom_db": str(tmp_path / "prometheus")}
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    yield f"http://127.0.0.1:{port}/metrics"
    worker.stop()


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample the worker serves, by name and labels."""
    text = httpx.get(url, timeout=5).text
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def served(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
    try:
        return samples(url)
    except httpx.TransportError:
        return None


def test_the_worker_serves_the_importers_metrics_beside_dramatiqs(
        broker_env: dict[str, str], metrics_url: str) -> None:
    poll(lambda: served(metrics_url) is not None, timeout=30, message="metrics served")
    run_cli(["add-series", "1", "82", "999999"], broker_env)

    done = run_cli(["series", "--delay", "0", "--wait"], broker_env)

    assert done.returncode == 0, done.stderr
    found = samples(metrics_url)
    series = frozenset({("kind", "series")})
    assert found[("importer_rows_total", series | {("outcome", "imported")})] == 2
    assert found[("importer_rows_total", series | {("outcome", "not_found")})] == 1
    assert found[("importer_api_calls_total", frozenset({("status", "200")}))] == 2
    assert found[("importer_api_calls_total", frozenset({("status", "404")}))] == 1
    assert found[("importer_api_call_seconds_count", frozenset())] == 3
    assert found[("importer_rows_remaining", series)] == 0
    assert any(name == "dramatiq_messages_total" and ("actor_name", "import_series") in labels
               for name, labels in found)
