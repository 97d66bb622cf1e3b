"""Fixtures: a local TVmaze-compatible API, databases, and workers.

Tests marked ``rabbitmq`` or ``postgres`` need those services; they skip
when the service is not reachable, except under ``CI=true``, where a
missing service is a failure.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from importer.database import get_engine
from importer.settings import get_settings
from importer.tvmaze import reset_client
from importer.tvmaze_server import GeneratedCatalogue, RecordedCatalogue, TvmazeServer

DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tvmaze").resolve()
POSTGRES_URL = os.environ.get("IMPORTER_TEST_POSTGRES", "postgresql+psycopg://root@127.0.0.1:5432")
RABBITMQ_URL = os.environ.get("IMPORTER_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672/%2F")
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_service(name: str, host: str, port: int) -> None:
    """Skip (locally) or fail (in CI) when a service is not listening."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        if IN_CI:
            pytest.fail(f"{name} is not reachable on {host}:{port}, and CI needs it")
        pytest.skip(f"{name} is not reachable on {host}:{port}")


@pytest.fixture(scope="session")
def recorded() -> RecordedCatalogue:
    if not DATA.is_dir():
        if IN_CI:
            pytest.fail(f"recorded TVmaze data not found at {DATA}, and CI needs it")
        pytest.skip(f"recorded TVmaze data not found at {DATA}")
    return RecordedCatalogue(DATA)


@pytest.fixture
def api(recorded: RecordedCatalogue) -> Iterator[TvmazeServer]:
    """A local API serving the recorded TVmaze responses."""
    with TvmazeServer(recorded) as server:
        yield server


@pytest.fixture
def generated_api() -> Iterator[TvmazeServer]:
    with TvmazeServer(GeneratedCatalogue(40, episodes_per_show=5)) as server:
        yield server


def configure(monkeypatch: pytest.MonkeyPatch, **settings: Any) -> None:
    """Set IMPORTER_* variables for this test and forget cached settings."""
    for name, value in settings.items():
        variable = f"IMPORTER_{name.upper()}"
        if value is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, str(value))
    get_settings.cache_clear()
    reset_client()


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for variable in [v for v in os.environ if v.startswith("IMPORTER_") and "_TEST_" not in v]:
        monkeypatch.delenv(variable)
    configure(monkeypatch, broker_url=None)
    yield
    get_settings.cache_clear()
    reset_client()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'importer.db'}"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    name = f"importer_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield f"{postgres_server}/{name}"

    get_engine().dispose()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """Each test using it runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return sqlite_url
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch, database_url: str,
             api: TvmazeServer) -> Iterator[Engine]:
    """The migrated database of this test, with the API pointing at ``api``."""
    from importer.joblog import flush_job_logs, install_job_log_handler
    from importer.migrate import upgrade

    configure(monkeypatch, database_url=database_url, api_url=api.url, api_calls=1000,
              api_period=1, read_timeout=2, connect_timeout=2)
    engine = get_engine()
    upgrade(engine)
    install_job_log_handler(engine)
    yield engine
    flush_job_logs()


@pytest.fixture
def worker(database: Engine) -> Iterator[Any]:
    """An in-process worker on the stub broker, as embedded mode runs it."""
    from importer.actors import broker
    from importer.embedded import embedded_worker

    broker.flush_all()
    with embedded_worker(threads=4, poll_ms=50) as worker:
        yield worker
    broker.flush_all()


@pytest.fixture
def queued_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs start on the in-process broker with no worker taking their messages."""
    monkeypatch.setattr("importer.embedded.is_running", lambda: True)


def run_to_end(kind: str, batch_size: int | None = None, delay: float = 0.0,
               timeout: float = 60.0) -> Any:
    """Start a run and wait for its completion record; return the run."""
    from importer.control import start_run, wait_for_run
    from importer.joblog import flush_job_logs

    run = wait_for_run(start_run(kind, batch_size, delay), poll=0.05, timeout=timeout)
    flush_job_logs()
    return run


@pytest.fixture
def rabbitmq() -> Iterator[str]:
    """The machine's RabbitMQ, the importer's queues empty before and after the test."""
    from .services import purge_queues

    require_service("RabbitMQ", "127.0.0.1", 5672)
    purge_queues(RABBITMQ_URL)
    yield RABBITMQ_URL
    purge_queues(RABBITMQ_URL)


@pytest.fixture
def broker_env(rabbitmq: str, postgres_url: str, api: TvmazeServer) -> dict[str, str]:
    """The environment a user sets for the worker and the CLI: RabbitMQ and PostgreSQL."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("IMPORTER_")},
        "IMPORTER_BROKER_URL": rabbitmq,
        "IMPORTER_DATABASE_URL": postgres_url,
        "IMPORTER_API_URL": api.url,
        "IMPORTER_API_CALLS": "200",
        "IMPORTER_API_PERIOD": "1",
    }


@pytest.fixture
def broker_engine(broker_env: dict[str, str]) -> Iterator[Engine]:
    """The database of ``broker_env``, migrated by ``init-db``."""
    from .services import run_cli

    assert run_cli(["init-db"], broker_env).returncode == 0
    engine = create_engine(broker_env["IMPORTER_DATABASE_URL"])
    yield engine
    engine.dispose()


@pytest.fixture
def worker_process(broker_env: dict[str, str], broker_engine: Engine,
                   tmp_path: Path) -> Iterator[Any]:
    """``dramatiq importer.actors`` on ``broker_env``, stopped after the test."""
    from .services import WorkerProcess

    process = WorkerProcess(broker_env, tmp_path / "worker.log", threads=8).start()
    yield process
    process.stop()
