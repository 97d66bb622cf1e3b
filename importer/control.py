"""Starting runs and following them: what the CLI and Python callers share.

``start_run("episodes", batch_size=200, delay=5)`` is exactly what
``python -m importer episodes --batch-size=200 --delay=5`` does with a
broker configured: it records the run and enqueues its first batch.
Without a broker, runs are started inside an embedded worker, which
carries them out::

    with embedded_worker():
        run = wait_for_run(start_run("episodes"))
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from sqlalchemy import RowMapping, update

from . import embedded
from .broker import connect, is_embedded
from .database import check_schema, get_engine
from .errors import ConfigurationError, RunNotFoundError, RunTimeoutError, UnavailableError
from .runs import abandon_run, check_options, create_run, get_run, is_finished
from .schema import import_runs
from .settings import get_settings

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[RowMapping], None]


def start_run(kind: str, batch_size: int | None = None, delay: float | None = None, *,
              takeover: bool = False) -> int:
    """Start a run of ``kind`` ("series" or "episodes") and return its id.

    Defaults: 50 series or 100 episodes per batch, 10 s between batches.
    Raises :class:`~importer.errors.RunActiveError` when a run of the
    same kind is active (unless it is stale or ``takeover`` is set).
    """
    checked_kind, size, seconds = check_options(kind, batch_size, delay)
    check_schema()

    from .actors import BATCH_ACTORS, broker

    check_broker(broker)
    run_id = create_run(checked_kind, size, seconds, takeover=takeover)
    try:
        BATCH_ACTORS[checked_kind].send(run_id, 0)
    except Exception as error:  # noqa: BLE001 -- any failure to enqueue
        abandon_run(run_id)
        raise UnavailableError(
            f"could not enqueue the first batch: {type(error).__name__}") from None

    with get_engine().begin() as connection:
        # NOTE: only while step 0 is still to come: once it is done, the
        # flag speaks of step 1, which step 0 sends.
        connection.execute(update(import_runs)
                           .where(import_runs.c.id == run_id, import_runs.c.step == 0)
                           .values(successor_sent=True))
    return run_id


def check_broker(broker: dramatiq.Broker) -> None:
    """Fail with one clear error when no worker could ever take the run's messages.

    That is: RabbitMQ cannot be reached, or no broker is configured and
    no embedded worker runs in this process (the message would stay in
    this process's memory and be lost with it).
    """
    url = get_settings().broker_url
    if isinstance(broker, RabbitmqBroker) and url is not None:
        connect(url).close()
    elif is_embedded(broker) and not embedded.is_running():
        raise ConfigurationError(
            "IMPORTER_BROKER_URL is not set: set it to start runs for a worker, or start "
            "them inside `with importer.embedded.embedded_worker():` (as the commands do)")


def wait_for_run(run_id: int, *, poll: float = 0.5, timeout: float | None = None,
                 on_progress: ProgressCallback | None = None) -> RowMapping:
    """Poll the run's row until it is finished; return its final state."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        with get_engine().connect() as connection:
            run = get_run(connection, run_id)
        if run is None:
            raise RunNotFoundError(f"run {run_id} does not exist")

        if on_progress is not None:
            on_progress(run)
        if is_finished(run):
            return run

        if deadline is not None and time.monotonic() > deadline:
            raise RunTimeoutError(f"run {run_id} did not finish within {timeout} s")

        time.sleep(poll)
