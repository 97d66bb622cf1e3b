"""Embedded mode: the whole chain in this process, when no broker is configured.

The same actors run on Dramatiq's in-process ``StubBroker`` with a
``Worker`` of several threads, so a fresh machine can run an import
with nothing but the default SQLite database.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from dramatiq import Worker

from .joblog import flush_job_logs, install_job_log_handler
from .settings import get_settings

logger = logging.getLogger(__name__)

#: Milliseconds an idle worker thread waits for a message.
WORKER_POLL_MS = 100

_workers = 0
_workers_lock = threading.Lock()


@contextmanager
def embedded_worker(threads: int | None = None,
                    poll_ms: int = WORKER_POLL_MS) -> Iterator[Worker]:
    """A started in-process worker for the importer's actors.

    ``threads`` defaults to ``IMPORTER_WORKER_THREADS``.  Runs started
    without a broker while it runs are carried out by it.
    """
    global _workers
    from .actors import broker

    threads = threads or get_settings().worker_threads
    install_job_log_handler()
    worker = Worker(broker, worker_threads=threads, worker_timeout=poll_ms)
    worker.start()
    with _workers_lock:
        _workers += 1
    logger.debug("Embedded worker started with %d threads.", threads)
    try:
        yield worker
    finally:
        with _workers_lock:
            _workers -= 1
        worker.stop()
        flush_job_logs()


def is_running() -> bool:
    """True while an embedded worker runs in this process."""
    return _workers > 0
