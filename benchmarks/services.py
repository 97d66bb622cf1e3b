"""What a measurement runs on: databases, the broker, a worker, the API.

Every measurement gets a PostgreSQL database of its own (created, then
dropped), a RabbitMQ vhost the benchmarks alone use (so that emptying
its queues disturbs nobody), a worker started the way users start it
(``dramatiq importer.actors``), and the TVmaze-compatible server in a
process of its own, so that the server and whatever is measured do not
share one interpreter lock.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from types import TracebackType
from typing import Self

import pika
from sqlalchemy import Engine, create_engine, text

from importer.broker import queue_depths, queue_names

logger = logging.getLogger(__name__)

DEFAULT_POSTGRES = "postgresql+psycopg://root@127.0.0.1:5432"
DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672/importer-bench"

#: Seconds a worker may take to boot.
WORKER_BOOT_TIMEOUT = 60.0

#: Seconds a worker may take to stop after SIGTERM.
WORKER_STOP_TIMEOUT = 30.0


class BenchmarkError(Exception):
    """Raised when a service the benchmarks need is missing or misbehaves."""


# -- PostgreSQL ---------------------------------------------------------------------


class Database:
    """A PostgreSQL database of one measurement, migrated on creation, then dropped."""

    def __init__(self, server_url: str, label: str) -> None:
        self.server_url = server_url.rstrip("/")
        self.name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
        self.url = f"{self.server_url}/{self.name}"
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(self.url, pool_size=4, max_overflow=8)
        return self._engine

    def __enter__(self) -> Self:
        from importer.migrate import upgrade

        self._admin(f'CREATE DATABASE "{self.name}"')
        upgrade(self.engine)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._engine is not None:
            self._engine.dispose()
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def scalar(self, sql: str, **params: object) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(text(sql), params).scalar_one())

    def _admin(self, sql: str) -> None:
        admin = create_engine(f"{self.server_url}/postgres", isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(text(sql))
        finally:
            admin.dispose()


def check_postgres(server_url: str) -> None:
    """Fail with one clear line when PostgreSQL cannot be reached."""
    engine = create_engine(f"{server_url.rstrip('/')}/postgres",
                           connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:  # noqa: BLE001 -- any driver error means the same
        raise BenchmarkError(f"cannot reach PostgreSQL at {server_url}: "
                             f"{type(error).__name__}") from None
    finally:
        engine.dispose()


# -- RabbitMQ -----------------------------------------------------------------------


def check_broker(broker_url: str) -> None:
    """Fail with one clear line when the benchmarks' vhost cannot be reached.

    A missing vhost is created with ``rabbitmqctl`` when the broker runs
    on this machine and the command is at hand.
    """
    try:
        pika.BlockingConnection(pika.URLParameters(broker_url)).close()
        return
    except Exception as error:  # noqa: BLE001 -- pika raises many kinds
        failure = type(error).__name__

    vhost = pika.URLParameters(broker_url).virtual_host
    if vhost != "/" and _create_vhost(vhost, pika.URLParameters(broker_url)):
        return

    raise BenchmarkError(
        f"cannot reach RabbitMQ at {broker_url} ({failure}); create the vhost with "
        f"`rabbitmqctl add_vhost {vhost}` and `rabbitmqctl set_permissions -p {vhost} "
        "guest '.*' '.*' '.*'`")


def _create_vhost(vhost: str, parameters: pika.URLParameters) -> bool:
    if parameters.host not in ("127.0.0.1", "localhost") or shutil.which("rabbitmqctl") is None:
        return False

    user = parameters.credentials.username
    commands = [["rabbitmqctl", "add_vhost", vhost],
                ["rabbitmqctl", "set_permissions", "-p", vhost, user, ".*", ".*", ".*"]]
    for command in commands:
        subprocess.run(command, capture_output=True, timeout=60, check=False)
    try:
        pika.BlockingConnection(parameters).close()
    except Exception:  # noqa: BLE001 -- still unreachable: the caller says so
        return False
    logger.info("Created the RabbitMQ vhost %r for the benchmarks.", vhost)
    return True


def empty_queues(broker_url: str) -> None:
    """Delete the importer's queues in the benchmarks' vhost.

    NOTE: the vhost is the benchmarks' own, so no one else's messages
    are lost; a message left by an earlier measurement would otherwise
    reach the next worker, whose database may hold a run of that id.
    """
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        for queue in queue_names():
            try:
                channel.queue_delete(queue)
            except pika.exceptions.ChannelClosedByBroker:
                channel = connection.channel()
    finally:
        connection.close()


# -- Settings of the importer in this process ---------------------------------------


@contextlib.contextmanager
def importer_settings(**values: str) -> Iterator[None]:
    """Set ``IMPORTER_*`` variables in this process for the block, then restore them."""
    from importer.settings import get_settings
    from importer.tvmaze import reset_client

    names = {f"IMPORTER_{name.upper()}": value for name, value in values.items()}
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    get_settings.cache_clear()
    reset_client()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()
        reset_client()


def importer_environment(**values: str) -> dict[str, str]:
    """This process's environment with ``IMPORTER_*`` replaced by ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMPORTER_")}
    env.update({f"IMPORTER_{name.upper()}": value for name, value in values.items()})
    return env


# -- The worker ---------------------------------------------------------------------


class Worker:
    """``dramatiq importer.actors --processes 1 --threads N`` in a subprocess."""

    def __init__(self, env: dict[str, str], threads: int, log: Path) -> None:
        self.env = env
        self.threads = threads
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        command = [sys.executable, "-m", "dramatiq", "importer.actors", "--processes", "1",
                   "--threads", str(self.threads)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=log,
                                            start_new_session=True)
        self._wait_until_ready()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return

        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=WORKER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=WORKER_STOP_TIMEOUT)

    def worker_pid(self) -> int:
        """The pid of the worker process (the child that runs the actors)."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = [int(pid) for pid in children.read_text().split()]
        if len(pids) != 1:
            raise BenchmarkError(f"expected one worker process, found {pids}")
        return pids[0]

    def rss_kib(self) -> int:
        """The worker process's resident memory (``VmRSS``), in KiB."""
        for line in Path(f"/proc/{self.worker_pid()}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise BenchmarkError("no VmRSS line in /proc/PID/status")

    def tail(self, lines: int = 20) -> str:
        text = self.log.read_text("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + WORKER_BOOT_TIMEOUT
        while b"ready for action" not in self.log.read_bytes():
            if self.process.poll() is not None:
                raise BenchmarkError(f"the worker exited while booting:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise BenchmarkError(f"the worker did not boot in {WORKER_BOOT_TIMEOUT:g} s")
            time.sleep(0.05)
        self._wait_for_consumers(deadline)

    def _wait_for_consumers(self, deadline: float) -> None:
        """Wait until the worker consumes every queue it reads.

        NOTE: Dramatiq says it is ready before its consumers have
        connected, which takes a while; a run started at once would
        count that time as its own.
        """
        url = self.env["IMPORTER_BROKER_URL"]
        wanted = [name for name in queue_names() if not name.endswith(".XQ")]
        while True:
            depths = queue_depths(url, wanted)
            if all(depths.get(name, {}).get("consumers", 0) > 0 for name in wanted):
                return
            if time.monotonic() > deadline:
                raise BenchmarkError(f"the worker did not consume its queues in "
                                     f"{WORKER_BOOT_TIMEOUT:g} s")
            time.sleep(0.05)


# -- The API ------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogueSpec:
    """A generated catalogue: ``shows`` shows of ``episodes`` regular episodes and ``specials``."""

    shows: int
    episodes: int
    specials: int

    @property
    def rows(self) -> int:
        """Episodes per show the importer ends up with, specials included."""
        return self.episodes + self.specials


class ApiServer:
    """The TVmaze-compatible server, serving a generated catalogue from a child process.

    ``limit`` is the server's own allowance, ``(calls, seconds)``;
    beyond it the server answers 429 as TVmaze does.
    """

    def __init__(self, catalogue: CatalogueSpec, limit: tuple[int, float] | None = None) -> None:
        self.catalogue = catalogue
        self.limit = limit
        self.url = ""
        self._pipe: Pipe | None = None
        self._process: multiprocessing.process.BaseProcess | None = None

    def __enter__(self) -> Self:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, self.catalogue, self.limit),
                                        name="tvmaze-server", daemon=True)
        self._process.start()
        if not self._pipe.poll(30):
            raise BenchmarkError("the API server did not start")
        self.url = self._pipe.recv()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._pipe is not None and self._process is not None:
            self._pipe.send("stop")
            self._process.join(timeout=30)
            if self._process.is_alive():
                self._process.kill()

    def counters(self) -> tuple[int, int]:
        """(requests, of which answered 429) since the start or the last reset."""
        assert self._pipe is not None
        self._pipe.send("counters")
        requests, rate_limited = self._pipe.recv()
        return int(requests), int(rate_limited)

    def arrivals(self) -> list[tuple[float, int]]:
        """(monotonic arrival time, status) of every request since the last reset."""
        assert self._pipe is not None
        self._pipe.send("log")
        return list(self._pipe.recv())

    def reset(self) -> None:
        assert self._pipe is not None
        self._pipe.send("reset")
        self._pipe.recv()


def _serve(pipe: Pipe, catalogue: CatalogueSpec, limit: tuple[int, float] | None) -> None:
    from importer.tvmaze_server import GeneratedCatalogue, TvmazeServer

    generated = GeneratedCatalogue(catalogue.shows, episodes_per_show=catalogue.episodes,
                                   specials_per_show=catalogue.specials)
    with TvmazeServer(generated, limit=limit) as server:
        pipe.send(server.url)
        while True:
            command = pipe.recv()
            if command == "counters":
                pipe.send((server.requests, server.rate_limited))
            elif command == "log":
                pipe.send([(arrived, status) for arrived, _, status in server.request_log()])
            elif command == "reset":
                server.reset_counters()
                pipe.send(None)
            else:
                break
