"""Real worker processes for the tests that use RabbitMQ."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pika

from importer.broker import queue_names


def purge_queues(url: str) -> None:
    """Empty the importer's queues, so no message of an earlier test is left."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for queue in queue_names():
            try:
                channel.queue_purge(queue)
            except pika.exceptions.ChannelClosedByBroker:
                channel = connection.channel()
    finally:
        connection.close()


class WorkerProcess:
    """``dramatiq importer.actors`` in a subprocess, as users run it."""

    def __init__(self, env: dict[str, str], log: Path, threads: int = 4) -> None:
        self.env = env
        self.log = log
        self.threads = threads
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        command = [sys.executable, "-m", "dramatiq", "importer.actors", "--processes", "1",
                   "--threads", str(self.threads)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=log,
                                            start_new_session=True)
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown, no acks."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM to the main process, as a service manager stops it; return its exit code.

        NOTE: the main process passes the signal on to its workers; sent
        to the whole group, a worker would get it twice and stop at once.
        """
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def output(self) -> str:
        return self.log.read_text("utf-8", errors="replace")


def run_cli(args: Sequence[str], env: dict[str, str], timeout: float = 600,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m importer ARGS`` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "importer", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=timeout, check=False)


def poll(condition: Callable[[], Any], timeout: float, interval: float = 0.2,
         message: str = "condition") -> Any:
    """Wait until ``condition()`` is truthy and return it; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not reached within {timeout} s")
        time.sleep(interval)
