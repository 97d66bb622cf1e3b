"""Embedded mode: the whole chain in this process, when no broker is configured.

The same actors run on Dramatiq's in-process ``StubBroker`` with a
``Worker`` of several threads, so a fresh machine can run an import
with nothing but the default SQLite database.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from dramatiq import Worker

from .joblog import flush_job_logs, install_job_log_handler
from .settings import get_settings

logger = logging.getLogger(__name__)

#: Milliseconds an idle worker thread waits for a message.
WORKER_POLL_MS = 100


@contextmanager
def embedded_worker() -> Iterator[Worker]:
    """A started in-process worker for the importer's actors."""
    from .actors import broker

    install_job_log_handler()
    worker = Worker(broker, worker_threads=get_settings().worker_threads,
                    worker_timeout=WORKER_POLL_MS)
    worker.start()
    logger.debug("Embedded worker started with %d threads.", get_settings().worker_threads)
    try:
        yield worker
    finally:
        worker.stop()
        flush_job_logs()
