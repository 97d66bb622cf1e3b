"""Private RabbitMQ and PostgreSQL servers, for tests that stop and restart them.

The machine's shared servers (RabbitMQ on 5672, PostgreSQL on 5432)
serve every other test, so the fault tests leave them alone: they start
a node and a cluster of their own, on free ports, with their data, logs
and Erlang cookie in a temporary directory, and stop or restart those
at will.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

#: Seconds a service may take to start or to stop.
START_TIMEOUT = 90


class ServiceError(Exception):
    """Raised when a private service cannot be set up, started or stopped."""


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_directory(prefix: str, owner: str | None = None) -> Path:
    """A fresh directory under the system temp dir, owned by ``owner`` if given.

    NOTE: not under pytest's tmp_path, whose parents only root may
    enter: PostgreSQL runs as its own user and needs to reach it.
    """
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    if owner is not None:
        shutil.chown(directory, owner, owner)
    return directory


def _run(command: Sequence[str], env: dict[str, str] | None = None,
         timeout: float = START_TIMEOUT) -> str:
    try:
        done = subprocess.run(list(command), env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ServiceError(f"{command[0]}: {error}") from None
    if done.returncode != 0:
        raise ServiceError(f"{' '.join(command)} exited with {done.returncode}: "
                           f"{(done.stderr or done.stdout).strip()[-500:]}")
    return done.stdout


def _find(name: str, patterns: Sequence[str]) -> str:
    for pattern in patterns:
        found = sorted(glob.glob(pattern))
        if found:
            return found[-1]
    on_path = shutil.which(name)
    if on_path is None:
        raise ServiceError(f"{name} is not installed")
    return on_path


class PrivateRabbitmq:
    """A RabbitMQ node of its own: its name, ports, data, logs and cookie."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.node = f"importer-faults-{os.getpid()}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        # NOTE: the scripts in the package's own bin directory run the
        # node as the calling user; /usr/sbin's wrappers switch to the
        # rabbitmq user, which could not write to this directory.
        self.server = _find("rabbitmq-server", ["/usr/lib/rabbitmq/bin/rabbitmq-server"])
        self.ctl = _find("rabbitmqctl", ["/usr/lib/rabbitmq/bin/rabbitmqctl"])
        self._write_config()

    def url(self, user: str = "guest", password: str = "guest") -> str:
        return f"amqp://{quote(user)}:{quote(password)}@127.0.0.1:{self.port}/%2F"

    def start(self) -> None:
        _run([self.server, "-detached"], self._env())
        self._rabbitmqctl("wait", str(self.directory / "pid"), "--timeout", str(START_TIMEOUT))

    def stop(self) -> None:
        self._rabbitmqctl("stop", str(self.directory / "pid"))

    def add_user(self, user: str, password: str) -> None:
        self._rabbitmqctl("add_user", user, password)
        self._rabbitmqctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")

    def _rabbitmqctl(self, *args: str) -> str:
        return _run([self.ctl, "-n", self.node, *args], self._env())

    def _env(self) -> dict[str, str]:
        # NOTE: HOME is where Erlang keeps the cookie that rabbitmqctl
        # must share with the node; a private HOME gives both a private one.
        variables = {
            "HOME": self.directory,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": self.port,
            "RABBITMQ_DIST_PORT": self.dist_port,
            "RABBITMQ_MNESIA_BASE": self.directory / "mnesia",
            "RABBITMQ_LOG_BASE": self.directory / "log",
            "RABBITMQ_PID_FILE": self.directory / "pid",
            "RABBITMQ_ENABLED_PLUGINS_FILE": self.directory / "enabled_plugins",
            "RABBITMQ_CONFIG_FILE": self.directory / "rabbitmq.conf",
            "RABBITMQ_CONF_ENV_FILE": self.directory / "rabbitmq-env.conf",
        }
        return {**os.environ, **{name: str(value) for name, value in variables.items()}}

    def _write_config(self) -> None:
        # The machine's /etc/rabbitmq files name the shared node and its
        # port; these replace them.
        (self.directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\n", "utf-8")
        (self.directory / "rabbitmq-env.conf").write_text("", "utf-8")
        (self.directory / "enabled_plugins").write_text("[].\n", "utf-8")


class PrivatePostgres:
    """A PostgreSQL cluster of its own, trusting local connections.

    Run as root, the server runs as the ``postgres`` user, since
    PostgreSQL refuses to run as root.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()
        self.initdb = _find("initdb", ["/usr/lib/postgresql/*/bin/initdb"])
        self.pg_ctl = str(Path(self.initdb).with_name("pg_ctl"))
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        secret = f":{quote(password)}" if password else ""
        return f"postgresql+psycopg://postgres{secret}@127.0.0.1:{self.port}/{database}"

    def create(self) -> None:
        _run([*self.as_user, self.initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust",
              "-E", "UTF8", "--locale", "C", "--no-sync"])

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off -c synchronous_commit=off")
        _run([*self.as_user, self.pg_ctl, "-D", str(self.data), "-l",
              str(self.directory / "server.log"), "-o", options, "-w",
              "-t", str(START_TIMEOUT), "start"])

    def stop(self) -> None:
        _run([*self.as_user, self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w",
              "-t", str(START_TIMEOUT), "stop"])
