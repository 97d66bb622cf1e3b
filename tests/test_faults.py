"""A run started once finishes, whatever happens to its worker, broker, database or API.

The tests that need real services run ``dramatiq importer.actors`` in
a subprocess against a RabbitMQ node and a PostgreSQL cluster of their
own (see :mod:`tests.private_services`), so that they can kill, stop
and restart them without disturbing the machine's shared servers.
Every test ends by reading the database: the rows, their outcomes, the
``import_runs`` row and the ``job_logs`` records.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dramatiq
import pika
import pytest
from dramatiq import Worker
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from importer.embedded import embedded_worker
from importer.migrate import upgrade
from importer.schema import episodes, import_runs, job_logs, series
from importer.tvmaze_server import Fault, GeneratedCatalogue, TvmazeServer

from .conftest import IN_CI, configure, run_to_end
from .private_services import (
    PrivatePostgres,
    PrivateRabbitmq,
    ServiceError,
    make_directory,
)
from .services import WorkerProcess, poll, purge_queues, run_cli

#: Secrets the real-service tests put into their settings; none may leak.
DATABASE_PASSWORD = "pg-Secret-7f3a"
BROKER_PASSWORD = "mq-Secret-91c4"
API_TOKEN = "api-Secret-5d2e"
SECRETS = (DATABASE_PASSWORD, BROKER_PASSWORD, API_TOKEN)

#: Seeds the moments of the faults; set IMPORTER_TEST_SEED to try others.
SEED = int(os.environ.get("IMPORTER_TEST_SEED", "3"))

#: Seconds a run of the real-service tests may take, faults included.
RUN_TIMEOUT = 90

# -- Private services ---------------------------------------------------------------


def _unavailable(name: str, error: Exception) -> None:
    if IN_CI:
        pytest.fail(f"a private {name} could not be started, and CI needs it: {error}")
    pytest.skip(f"a private {name} could not be started: {error}")


@pytest.fixture(scope="session")
def private_rabbitmq() -> Iterator[PrivateRabbitmq]:
    directory = make_directory("importer-rabbitmq-")
    try:
        node = PrivateRabbitmq(directory)
        node.start()
        node.add_user("importer", BROKER_PASSWORD)
    except ServiceError as error:
        shutil.rmtree(directory, ignore_errors=True)
        _unavailable("RabbitMQ", error)
    yield node

    try:
        node.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    # NOTE: PostgreSQL refuses to run as root; root runs it as postgres.
    owner = "postgres" if os.geteuid() == 0 else None
    try:
        directory = make_directory("importer-postgres-", owner)
    except LookupError as error:  # no postgres user
        _unavailable("PostgreSQL", error)
    try:
        cluster = PrivatePostgres(directory)
        cluster.create()
        cluster.start()
    except ServiceError as error:
        shutil.rmtree(directory, ignore_errors=True)
        _unavailable("PostgreSQL", error)
    yield cluster

    try:
        cluster.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def broker_url(private_rabbitmq: PrivateRabbitmq) -> str:
    """The private broker, its queues emptied of any earlier test's messages."""
    url = private_rabbitmq.url("importer", BROKER_PASSWORD)
    purge_queues(url)
    return url


@pytest.fixture
def private_database_url(private_postgres: PrivatePostgres) -> Iterator[str]:
    """A fresh, migrated database on the private cluster, dropped afterwards."""
    name = f"faults_{uuid.uuid4().hex[:10]}"
    _administer(private_postgres, f'CREATE DATABASE "{name}"')
    url = private_postgres.url(name, password=DATABASE_PASSWORD)
    migrated = create_engine(url, poolclass=NullPool)
    upgrade(migrated)
    yield url

    _administer(private_postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _administer(cluster: PrivatePostgres, statement: str) -> None:
    # A fresh connection each time: the cluster may have restarted since.
    admin = create_engine(cluster.url(), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.execute(text(statement))


@pytest.fixture
def engine(private_database_url: str) -> Iterator[Engine]:
    engine = create_engine(private_database_url, pool_pre_ping=True,
                           connect_args={"connect_timeout": 2})
    yield engine
    engine.dispose()


@pytest.fixture
def serve() -> Iterator[Callable[..., TvmazeServer]]:
    """Starts local APIs of generated shows; stops them after the test."""
    started: list[TvmazeServer] = []

    def start(shows: int, latency: float = 0.05) -> TvmazeServer:
        server = TvmazeServer(GeneratedCatalogue(shows, episodes_per_show=2),
                              latency=latency).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class Deployment:
    """The settings a user would export, and the workers started with them."""

    def __init__(self, broker_url: str, database_url: str, logs: Path) -> None:
        self.logs = logs
        self.workers: list[WorkerProcess] = []
        clean = {k: v for k, v in os.environ.items() if not k.startswith("IMPORTER_")}
        self.env = clean | {
            "IMPORTER_BROKER_URL": broker_url,
            "IMPORTER_DATABASE_URL": database_url.replace("+psycopg", ""),
            "IMPORTER_API_CALLS": "500",
            "IMPORTER_API_PERIOD": "1",
        }

    def use_api(self, api: TvmazeServer) -> None:
        self.env["IMPORTER_API_URL"] = f"{api.url}/?token={API_TOKEN}"

    def configure(self, **settings: Any) -> None:
        for name, value in settings.items():
            self.env[f"IMPORTER_{name.upper()}"] = str(value)

    def start_worker(self, threads: int = 4) -> WorkerProcess:
        log = self.logs / f"worker-{len(self.workers)}.log"
        worker = WorkerProcess(self.env, log, threads=threads).start()
        self.workers.append(worker)
        return worker

    def start_run(self, kind: str, batch_size: int, delay: float) -> int:
        result = run_cli([kind, "--batch-size", str(batch_size), "--delay", str(delay)],
                         self.env, timeout=60)
        assert result.returncode == 0, result.stderr
        found = re.search(r"started \w+ run (\d+)", result.stdout)
        assert found, result.stdout
        return int(found[1])

    def output(self) -> str:
        """Everything the workers wrote on stdout and stderr."""
        return "".join(worker.output() for worker in self.workers)

    def stop(self) -> None:
        for worker in self.workers:
            worker.kill()


@pytest.fixture
def deployment(broker_url: str, private_database_url: str, engine: Engine,
               tmp_path: Path) -> Iterator[Deployment]:
    deployment = Deployment(broker_url, private_database_url, tmp_path)
    yield deployment
    deployment.stop()


# -- Reading the outcome ------------------------------------------------------------


def run_row(engine: Engine, run_id: int) -> dict[str, Any] | None:
    """The run's row, or None while the database cannot be reached."""
    try:
        with engine.connect() as connection:
            row = connection.execute(
                select(import_runs).where(import_runs.c.id == run_id)).mappings().one()
    except OperationalError:
        return None
    return dict(row)


def finished(engine: Engine, run_id: int, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
    """Wait for the run to finish; return its row."""
    def ended() -> dict[str, Any] | None:
        run = run_row(engine, run_id)
        return run if run and run["status"] != "running" else None

    run: dict[str, Any] = poll(ended, timeout, message=f"the end of run {run_id}")
    return run


def records(engine: Engine, run_id: int) -> list[dict[str, Any]]:
    query = select(job_logs).where(job_logs.c.run_id == run_id).order_by(job_logs.c.id)
    with engine.connect() as connection:
        return [dict(r) for r in connection.execute(query).mappings()]


def events(engine: Engine, run_id: int, name: str) -> list[dict[str, Any]]:
    return [r for r in records(engine, run_id) if (r["context"] or {}).get("event") == name]


def rows_by_tvmaze_id(engine: Engine, table: Any) -> dict[int, dict[str, Any]]:
    with engine.connect() as connection:
        return {r["tvmaze_id"]: dict(r) for r in connection.execute(select(table)).mappings()}


def series_rows(engine: Engine) -> dict[int, dict[str, Any]]:
    return rows_by_tvmaze_id(engine, series)


def register(engine: Engine, count: int) -> None:
    from importer.catalogue import add_series

    with engine.begin() as connection:
        add_series(connection, range(1, count + 1))


def assert_every_row_imported_once(engine: Engine, run: dict[str, Any], count: int) -> None:
    """Every row has its data; the run counted each once and logged each step once."""
    rows = series_rows(engine)
    assert len(rows) == count
    assert {r["outcome"] for r in rows.values()} == {"imported"}
    assert all(r["data_last_updated_at"] is not None for r in rows.values())

    assert run["status"] == "completed"
    assert (run["selected"], run["dispatched"], run["imported"]) == (count, count, count)
    assert run["failed"] == run["invalid"] == run["not_found"] == 0

    steps = [r["context"]["step"] for r in events(engine, run["id"], "batch_result")]
    assert sorted(steps) == list(range(run["batches"])), steps
    completed = events(engine, run["id"], "run_completed")
    assert len(completed) == 1 and completed[0]["context"]["imported"] == count


def assert_no_secret(engine: Engine, *outputs: str) -> None:
    with engine.connect() as connection:
        logged = [str(dict(r)) for r in connection.execute(select(job_logs)).mappings()]
    assert logged
    for secret in SECRETS:
        assert not [line for line in logged if secret in line]
        for output in outputs:
            assert secret not in output, output[max(output.index(secret) - 300, 0):][:600]


def send_batch_message(broker_url: str, kind: str, run_id: int, step: int) -> None:
    """Publish a batch message as the worker would, e.g. a redelivered one."""
    message = dramatiq.Message(queue_name=f"importer.{kind}.batches",
                               actor_name=f"import_missing_{kind}", args=(run_id, step),
                               kwargs={}, options={})
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        connection.channel().basic_publish(
            exchange="", routing_key=message.queue_name, body=message.encode(),
            properties=pika.BasicProperties(delivery_mode=2))
    finally:
        connection.close()


# -- The worker ---------------------------------------------------------------------


@pytest.mark.faults
@pytest.mark.rabbitmq
@pytest.mark.postgres
def test_a_worker_killed_three_times_mid_run_loses_nothing_and_repeats_no_step(
        deployment: Deployment, engine: Engine, serve: Callable[..., TvmazeServer]) -> None:
    shows, threads = 40, 4
    api = serve(shows, latency=0.2)
    deployment.use_api(api)
    register(engine, shows)
    chance = random.Random(SEED)

    worker = deployment.start_worker(threads)
    run_id = deployment.start_run("series", batch_size=4, delay=0.5)
    for kill in range(3):
        batches = 2 * kill + 2
        poll(lambda: (run_row(engine, run_id) or {}).get("batches", 0) >= batches,  # noqa: B023
             30, message="progress before a kill")
        time.sleep(chance.uniform(0.0, 1.0))  # a random moment, not a wait for anything
        worker.kill()
        if kill == 0:
            # As if RabbitMQ delivered the first batch message again.
            send_batch_message(deployment.env["IMPORTER_BROKER_URL"], "series", run_id, 0)
        worker = deployment.start_worker(threads)
    run = finished(engine, run_id)

    assert_every_row_imported_once(engine, run, shows)
    ignored = [r for r in records(engine, run_id) if "duplicate message ignored" in r["message"]]
    assert 0 in {r["context"]["step"] for r in ignored}
    # Only an item cut short by a kill is fetched again.
    fetches = Counter(path for _, path, _ in api.request_log())
    assert len(fetches) == shows
    assert sum(fetches.values()) - shows <= 3 * threads


@pytest.mark.faults
@pytest.mark.rabbitmq
@pytest.mark.postgres
def test_sigterm_lets_running_items_finish_and_the_restarted_worker_loses_nothing(
        deployment: Deployment, engine: Engine, serve: Callable[..., TvmazeServer]) -> None:
    shows = 12
    api = serve(shows, latency=1.0)
    deployment.use_api(api)
    register(engine, shows)
    worker = deployment.start_worker(threads=4)
    run_id = deployment.start_run("series", batch_size=shows, delay=0.5)
    poll(lambda: api.requests >= 4, 30, message="items in flight")

    # NOTE: to Dramatiq's main process alone, as the service managers in
    # deploy/ send it: a worker process given SIGTERM twice (by its parent,
    # and by a signal to the whole group) gives up its graceful stop.
    assert worker.process is not None
    os.kill(worker.process.pid, signal.SIGTERM)
    assert worker.process.wait(timeout=30) == 0
    answered = api.request_log()
    stored = [r for r in series_rows(engine).values() if r["outcome"] == "imported"]

    assert answered and all(status == 200 for _, _, status in answered)
    assert len(stored) == len(answered) < shows
    deployment.start_worker(threads=4)
    run = finished(engine, run_id)
    assert_every_row_imported_once(engine, run, shows)
    fetches = Counter(path for _, path, _ in api.request_log())
    assert len(fetches) == shows and set(fetches.values()) == {1}


# -- The broker and the database ----------------------------------------------------


@pytest.mark.faults
@pytest.mark.rabbitmq
@pytest.mark.postgres
def test_a_run_outlives_a_rabbitmq_restart_and_the_worker_reconnects(
        deployment: Deployment, engine: Engine, serve: Callable[..., TvmazeServer],
        private_rabbitmq: PrivateRabbitmq) -> None:
    shows = 24
    api = serve(shows, latency=1.0)
    deployment.use_api(api)
    register(engine, shows)
    worker = deployment.start_worker()
    run_id = deployment.start_run("series", batch_size=6, delay=0.5)
    poll(lambda: (run_row(engine, run_id) or {}).get("batches", 0) >= 2, 30,
         message="progress before the restart")
    poll(lambda: api.requests - len(api.request_log()) >= 2, 10, interval=0.02,
         message="items waiting for the API")

    # Items end while RabbitMQ is away: their acks are lost, and RabbitMQ
    # delivers them again once it is back.
    private_rabbitmq.stop()
    private_rabbitmq.start()
    run = finished(engine, run_id)

    assert_every_row_imported_once(engine, run, shows)
    # Only the items the worker held when the broker went away (Dramatiq
    # prefetches twice its threads) are fetched again.
    fetches = Counter(path for _, path, _ in api.request_log())
    assert len(fetches) == shows
    assert sum(fetches.values()) - shows <= 2 * worker.threads
    assert worker.process is not None and worker.process.poll() is None
    assert "connection error" in deployment.output()
    assert_no_secret(engine, deployment.output())


@pytest.mark.faults
@pytest.mark.rabbitmq
@pytest.mark.postgres
def test_a_run_outlives_ten_seconds_without_postgresql_retrying_its_batches_and_items(
        deployment: Deployment, engine: Engine, serve: Callable[..., TvmazeServer],
        private_postgres: PrivatePostgres) -> None:
    shows = 30
    api = serve(shows, latency=0.5)
    deployment.use_api(api)
    register(engine, shows)
    worker = deployment.start_worker()
    run_id = deployment.start_run("series", batch_size=6, delay=0.5)
    poll(lambda: (run_row(engine, run_id) or {}).get("batches", 0) >= 2, 30,
         message="progress before the outage")
    poll(lambda: api.requests - len(api.request_log()) >= 2, 10, interval=0.02,
         message="items waiting for the API")

    private_postgres.stop()
    time.sleep(10)  # the outage itself, not a wait for anything
    private_postgres.start()
    run = finished(engine, run_id)

    assert_every_row_imported_once(engine, run, shows)
    output = deployment.output()
    failed = [line for line in output.splitlines() if "Failed to process message" in line]
    assert any("import_missing_series(" in line for line in failed)
    assert any("import_series(" in line for line in failed)
    assert "Retrying message" in output
    assert worker.process is not None and worker.process.poll() is None
    assert_no_secret(engine, output)


# -- Secrets ------------------------------------------------------------------------


@pytest.mark.faults
@pytest.mark.rabbitmq
@pytest.mark.postgres
def test_no_password_or_token_reaches_job_logs_or_stderr_even_when_calls_fail(
        deployment: Deployment, engine: Engine, serve: Callable[..., TvmazeServer]) -> None:
    api = serve(8, latency=0.0)
    api.add_fault("/shows/2", Fault("status", status=404))
    api.add_fault("/shows/3", Fault("status", status=503))
    api.add_fault("/shows/4", Fault("body", body=b"<html><body>Bad Gateway</body></html>"))
    api.add_fault("/shows/5", Fault("hang"))
    deployment.use_api(api)
    deployment.configure(max_item_retries=1, read_timeout=1)
    register(engine, 8)
    deployment.start_worker()

    done = run_cli(["series", "--batch-size", "4", "--delay", "0.5", "--wait"],
                   deployment.env, timeout=RUN_TIMEOUT)
    status = run_cli(["status"], deployment.env)

    assert done.returncode == 0, done.stderr
    outcomes = {i: r["outcome"] for i, r in series_rows(engine).items()}
    assert outcomes == {1: "imported", 2: "not_found", 3: "failed", 4: "invalid",
                        5: "failed", 6: "imported", 7: "imported", 8: "imported"}
    assert_no_secret(engine, deployment.output(), done.stdout, done.stderr, status.stdout,
                     status.stderr)


# -- The API, with the in-process worker --------------------------------------------


@contextmanager
def in_process_worker(threads: int) -> Iterator[Worker]:
    """A worker on the stub broker, as embedded mode runs it, with ``threads``."""
    from importer.actors import broker

    broker.flush_all()
    try:
        with embedded_worker(threads=threads, poll_ms=50) as worker:
            yield worker
    finally:
        broker.flush_all()


@pytest.fixture
def local_api(monkeypatch: pytest.MonkeyPatch, database: Engine) -> Iterator[TvmazeServer]:
    """A local API of 20 generated shows, which the database's settings point at."""
    with TvmazeServer(GeneratedCatalogue(20, episodes_per_show=3)) as server:
        configure(monkeypatch, api_url=server.url)
        yield server


def paths(api: TvmazeServer) -> list[str]:
    return [path.partition("?")[0] for _, path, _ in api.request_log()]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_hung_api_call_ends_at_the_read_timeout_and_its_row_fails_without_holding_a_thread(
        database: Engine, local_api: TvmazeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, read_timeout=1, max_item_retries=1)
    for hung in (2, 3):
        local_api.add_fault(f"/shows/{hung}", Fault("hang"))
    register(database, 8)

    # Two threads, both taken by the hung calls: the later rows import
    # only if those calls give their threads back.
    with in_process_worker(threads=2):
        run = run_to_end("series", batch_size=4)

    rows = series_rows(database)
    assert {i: r["outcome"] for i, r in rows.items() if i in (2, 3)} == {2: "failed", 3: "failed"}
    assert all(rows[i]["outcome"] == "imported" for i in (1, 4, 5, 6, 7, 8))
    assert all("timeout" in rows[i]["last_error"] and rows[i]["attempts"] == 1 for i in (2, 3))
    assert (run["status"], run["imported"], run["failed"]) == ("completed", 6, 2)
    assert local_api.requests == 6 + 2 * 2

    hung_ids = {rows[2]["id"], rows[3]["id"]}
    durations = [r["duration_ms"] for r in records(database, run["id"])
                 if r["item_id"] in hung_ids and r["duration_ms"] is not None]
    assert len(durations) == 4
    assert all(900 <= d < 2_500 for d in durations), durations


def _show(show_id: int, **changes: Any) -> bytes:
    show = GeneratedCatalogue(20).show(show_id) or {}
    return json.dumps(show | changes, ensure_ascii=False).encode("utf-8")


LONG_TEXT = "Ünïcödé 名前 🎬 \u202eRTL\u202c e\u0301 \U0001f468\u200d\U0001f469 " * 2_000

#: Show id: (the body of /shows/:id, the reason it is invalid or None if it imports).
SHOW_PAYLOADS: dict[int, tuple[bytes, str | None]] = {
    1: (b"<html><body><h1>502 Bad Gateway</h1></body></html>", "not JSON"),
    2: (b'{"id": 2, "name": "Trunc', "not JSON"),
    3: (b"", "not JSON"),
    4: (b"[]", "expected a show object"),
    5: (b"null", "expected a show object"),
    6: (_show(6, name=123), "name is int"),
    7: (_show(7, runtime="60"), "runtime is str"),
    8: (_show(8, runtime=True), "runtime is bool"),
    9: (_show(9, genres="Drama"), "genres"),
    10: (_show(10, id=None), "asked for show 10"),
    11: (_show(11, premiered="2020-13-45"), "premiered is not a date"),
    12: (_show(12, network={"name": 5}), "name is int"),
    13: (_show(13, runtime=10**20), "runtime is out of range"),
    14: (_show(14, type="Scripted" * 30), "type is longer than 64"),
    15: (_show(15, name="Null\x00Byte"), "name contains a NUL"),
    16: (b'{"id": 16, "name": "Lone \\ud800 surrogate"}', "name is not valid Unicode"),
    17: (json.dumps({"id": 17, "name": "Bare minimum"}).encode(), None),
    18: (_show(18, premiered="", ended="", network=None, webChannel=None, genres=None,
               summary=None, runtime=None, officialSite=""), None),
    19: (_show(19, summary="<p>Tom &amp; Jerry <script>x()</script><b>bold</b></p>",
               name="<b>Tags</b> &amp; more"), None),
    20: (_show(20, name=LONG_TEXT, summary=f"<p>{LONG_TEXT * 5}</p>"), None),
}


def test_every_odd_show_payload_is_imported_right_or_recorded_invalid_with_its_reason(
        database: Engine, worker: Any, local_api: TvmazeServer) -> None:
    for show_id, (body, _) in SHOW_PAYLOADS.items():
        local_api.add_fault(f"/shows/{show_id}", Fault("body", body=body))
    register(database, len(SHOW_PAYLOADS))

    run = run_to_end("series", batch_size=8)

    rows = series_rows(database)
    for show_id, (_, reason) in SHOW_PAYLOADS.items():
        row = rows[show_id]
        if reason is None:
            assert row["outcome"] == "imported", (show_id, row["last_error"])
        else:
            assert row["outcome"] == "invalid", (show_id, row["outcome"], row["last_error"])
            assert reason in row["last_error"], (show_id, row["last_error"])
            assert row["name"] is None
    assert rows[17]["genres"] == [] and rows[17]["premiered"] is None
    assert (rows[18]["premiered"], rows[18]["ended"], rows[18]["network"]) == (None, None, None)
    assert rows[18]["official_site"] is None and rows[18]["summary"] is None
    # Names are text as sent; summaries are HTML, stored as their text.
    assert (rows[19]["name"], rows[19]["summary"]) == ("<b>Tags</b> &amp; more",
                                                       "Tom & Jerry x()bold")
    assert rows[20]["name"] == LONG_TEXT
    assert rows[20]["summary"] == (LONG_TEXT * 5).strip()
    invalid = sum(1 for _, reason in SHOW_PAYLOADS.values() if reason)
    assert (run["status"], run["invalid"]) == ("completed", invalid)
    assert run["imported"] == len(SHOW_PAYLOADS) - invalid


def _episodes(show_id: int, changes: dict[int, dict[str, Any]],
              extra: list[Any] | None = None) -> bytes:
    listed = GeneratedCatalogue(20, episodes_per_show=3).episodes(show_id) or []
    edited = [episode | changes.get(episode["id"], {}) for episode in listed]
    return json.dumps(edited + (extra or []), ensure_ascii=False).encode("utf-8")


def test_every_odd_episode_list_fails_only_its_own_rows_and_the_run_completes(
        database: Engine, worker: Any, local_api: TvmazeServer) -> None:
    register(database, 6)
    run_to_end("series")
    lists = {
        1: b"<!DOCTYPE html><html><title>Oops</title></html>",
        2: b'{"episodes": []}',
        3: _episodes(3, {3001: {"name": 5}, 3002: {"airdate": "", "airtime": "", "name": None},
                         3003: {"summary": "Nul\x00"}, 3004: {"season": 10**12}}),
        4: b"[]",
        5: _episodes(5, {}, extra=["stray", 5, None, {"name": "no id"}]),
        6: b'[{"id": 6001, "name": "Cut sh',
    }
    for show_id, body in lists.items():
        local_api.add_fault(f"/shows/{show_id}/episodes", Fault("body", body=body))

    run = run_to_end("episodes", batch_size=5)

    rows = rows_by_tvmaze_id(database, episodes)
    expected = {
        1001: ("invalid", "not JSON"), 2001: ("invalid", "expected a list"),
        3001: ("invalid", "name is int"), 3002: ("imported", None),
        3003: ("invalid", "summary contains a NUL"), 4001: ("not_found", "episode list"),
        5001: ("imported", None), 6001: ("invalid", "not JSON"),
    }
    for tvmaze_id, (outcome, reason) in expected.items():
        row = rows[tvmaze_id]
        assert row["outcome"] == outcome, (tvmaze_id, row["outcome"], row["last_error"])
        assert reason is None or reason in row["last_error"], (tvmaze_id, row["last_error"])
    assert (rows[3002]["airdate"], rows[3002]["airtime"], rows[3002]["name"]) == (None,) * 3
    assert 3004 not in rows  # a special whose season no column can hold
    assert run["status"] == "completed"
    assert run["imported"] + run["not_found"] + run["invalid"] == run["selected"]
    assert run["failed"] == 0


# -- Every row gets an outcome ------------------------------------------------------


def test_a_404_is_checked_once_per_run_and_again_only_after_the_recheck_days(
        database: Engine, worker: Any, local_api: TvmazeServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    register(database, 3)
    local_api.add_fault("/shows/3", Fault("status", status=404))

    first = run_to_end("series")
    checked = series_rows(database)[3]["checked_at"]
    second = run_to_end("series")
    configure(monkeypatch, not_found_recheck_days=0)
    third = run_to_end("series")

    row = series_rows(database)[3]
    assert (row["outcome"], row["failed_runs"], row["attempts"]) == ("not_found", 0, 0)
    assert row["checked_at"] > checked
    assert paths(local_api).count("/shows/3") == 2
    assert (first["not_found"], second["selected"], third["not_found"]) == (1, 0, 1)


def test_a_row_failing_in_as_many_runs_as_park_after_runs_is_parked_until_retry_failed(
        database: Engine, worker: Any, local_api: TvmazeServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, park_after_runs=2, max_item_retries=0)
    register(database, 2)
    local_api.add_fault("/shows/2", Fault("status", status=503))

    outcomes = []
    for _ in range(3):
        run_to_end("series")
        outcomes.append(series_rows(database)[2]["outcome"])
    calls_while_parked = paths(local_api).count("/shows/2")
    # The settings of this test, the database's among them, are in os.environ.
    retried = run_cli(["retry-failed", "series"], dict(os.environ))
    local_api.clear_faults()
    run = run_to_end("series")

    assert outcomes == ["failed", "parked", "parked"]
    assert calls_while_parked == 2
    assert retried.returncode == 0 and "1 parked series rows" in retried.stdout, retried.stderr
    assert series_rows(database)[2]["outcome"] == "imported"
    assert (run["selected"], run["imported"]) == (1, 1)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_429_waits_its_retry_after_and_spends_none_of_the_error_retries(
        database: Engine, worker: Any, local_api: TvmazeServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, max_item_retries=1)
    register(database, 1)
    local_api.add_fault("/shows/1", Fault("status", status=429, times=4, retry_after=1))

    run = run_to_end("series")

    row = series_rows(database)[1]
    assert (row["outcome"], row["attempts"], run["imported"], run["failed"]) == (
        "imported", 0, 1, 0)
    calls = local_api.request_log()
    assert [status for _, _, status in calls] == [429] * 4 + [200]
    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(calls)]
    assert all(gap >= 0.95 for gap in gaps), gaps
