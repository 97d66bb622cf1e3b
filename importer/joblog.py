"""The ``job_logs`` table: every record logged while an actor runs.

:class:`JobLogMiddleware` tells each log record which job it belongs to
(actor, message, run, item) and, when the execution ends, logs its
status and duration.  :class:`JobLogHandler` writes the records to
``job_logs`` in bulk from a background thread, so that logging costs a
job almost nothing and never fails it: a record that cannot be written
is printed to stderr instead of being dropped.  The records that are
part of a batch step's state go in with the step's own transaction
instead (:func:`log_in_transaction`), so that a killed worker loses none.
"""

from __future__ import annotations

import contextvars
import json
import logging
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware
from psycopg.types.json import Json
from sqlalchemy import Connection, Engine

from .errors import SchemaMissingError, UnavailableError
from .exitcodes import EXIT_CONFIG, EXIT_NO_SCHEMA, EXIT_UNAVAILABLE
from .logs import RedactingFilter, configure_logging, structured_fields
from .redaction import redact
from .schema import job_logs

logger = logging.getLogger(__name__)

#: The package whose actors are logged.
ACTOR_MODULE = "importer.actors"


@dataclass
class Job:
    """What the records of one actor execution share."""

    job_class: str
    message_id: str
    run_id: int | None
    item_kind: str | None = None
    item_id: int | None = None
    started: float = field(default_factory=time.perf_counter)


_current_job: contextvars.ContextVar[Job | None] = contextvars.ContextVar("job", default=None)


def current_job() -> Job | None:
    """The job whose actor is running in this thread, if any."""
    return _current_job.get()


def job_from_message(message: MessageProxy | dramatiq.Message[Any]) -> Job:
    """The job described by a message of one of the importer's actors."""
    kwargs = dict(message.kwargs)
    args = list(message.args)
    run_id = kwargs.get("run_id", args[0] if args else None)

    item_kind = item_id = None
    # NOTE: an episodes item concerns one show's episodes: its series row.
    if message.actor_name in ("import_series", "import_episodes"):
        item_kind, item_id = "series", kwargs.get("series_id", args[1] if len(args) > 1 else None)

    return Job(
        job_class=f"{ACTOR_MODULE}.{message.actor_name}",
        message_id=message.message_id,
        run_id=run_id if isinstance(run_id, int) else None,
        item_kind=item_kind,
        item_id=item_id if isinstance(item_id, int) else None,
    )


class JobLogMiddleware(Middleware):
    """Ties log records to the running job and logs how each execution ended."""

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        # NOTE: a worker process is where its logging gets configured;
        # importing the actors module configures nothing.
        configure_logging()
        if isinstance(broker, StubBroker):
            # Only ``dramatiq importer.actors`` boots a process; without a
            # broker URL it would wait forever for messages nobody can send.
            logger.critical("IMPORTER_BROKER_URL is not set: a worker needs RabbitMQ "
                            "(without it, commands run their own embedded worker).")
            raise SystemExit(EXIT_CONFIG)

        _check_database()
        install_job_log_handler()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        flush_job_logs()

    def before_process_message(self, broker: dramatiq.Broker,
                               message: MessageProxy) -> None:
        job = job_from_message(message)
        _current_job.set(job)
        record_execution(job, "started", f"Job {job.job_class} started.")

    def after_process_message(self, broker: dramatiq.Broker, message: MessageProxy, *,
                              result: Any = None, exception: BaseException | None = None) -> None:
        job = _current_job.get()
        if job is None:
            return

        duration_ms = round((time.perf_counter() - job.started) * 1000, 1)
        if exception is None:
            record_execution(job, "success", f"Job {job.job_class} succeeded.",
                             duration_ms=duration_ms)
        elif isinstance(exception, dramatiq.Retry):
            # NOTE: asked for on purpose (a 429, a full budget, a step
            # still being sent): not a failure to alarm anyone.
            reason = f": {exception}" if str(exception) else ""
            record_execution(job, "retried",
                             redact(f"Job {job.job_class} will be retried{reason}."),
                             duration_ms=duration_ms)
        else:
            logger.warning("Job %s failed: %s.", job.job_class, exception, extra={
                "status": "failed", "duration_ms": duration_ms,
                "error": type(exception).__name__})
        _current_job.set(None)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        _current_job.set(None)


def _check_database() -> None:
    """Stop a worker process whose database is unreachable or has no schema, saying why.

    NOTE: otherwise it would take every message only to fail it.
    """
    from .database import check_schema

    try:
        check_schema()
    except (SchemaMissingError, UnavailableError) as error:
        logger.critical("The worker cannot start: %s.", error)
        code = EXIT_NO_SCHEMA if isinstance(error, SchemaMissingError) else EXIT_UNAVAILABLE
        raise SystemExit(code) from None


class JobLogHandler(logging.Handler):
    """Writes the records of running jobs to ``job_logs``, in bulk."""

    def __init__(self, engine: Engine, *, flush_interval: float = 0.25,
                 max_batch: int = 500) -> None:
        super().__init__(logging.INFO)
        self.engine = engine
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self.addFilter(RedactingFilter())
        self._writer = threading.Thread(target=self._write_forever, name="job-logs", daemon=True)
        self._writer.start()

    def put(self, row: dict[str, Any]) -> None:
        """Queue a ready-made row for the writer."""
        self.queue.put(row)

    def emit(self, record: logging.LogRecord) -> None:
        if _written_in_transaction.get():
            return

        try:
            row = job_log_row(record)
            if row is not None:
                self.queue.put(row)
        except Exception:  # noqa: BLE001 -- logging must never fail a job
            self.handleError(record)

    def flush(self) -> None:
        """Block until every queued record is written (or given up on)."""
        self.queue.join()

    def _write_forever(self) -> None:
        while True:
            rows = [self.queue.get()]
            deadline = time.monotonic() + self.flush_interval
            while len(rows) < self.max_batch:
                try:
                    rows.append(self.queue.get(timeout=max(deadline - time.monotonic(), 0)))
                except queue.Empty:
                    break
            self._write(rows)
            for _ in rows:
                self.queue.task_done()

    def _write(self, rows: list[dict[str, Any]]) -> None:
        for attempt in range(3):
            try:
                with self.engine.begin() as connection:
                    insert_rows(connection, rows)
                return
            except Exception:  # noqa: BLE001 -- e.g. the database is down
                time.sleep(0.5 * (attempt + 1))

        # NOTE: never drop a record silently: stderr still has it.
        for row in rows:
            print(json.dumps({"job_logs_unwritten": to_json(row)}, default=str),
                  file=sys.stderr)


#: The columns of a ``job_logs`` row, in the order COPY takes them.
_COLUMNS = ("created_at", "level", "job_class", "message_id", "run_id", "status",
            "duration_ms", "item_kind", "item_id", "message", "context")
_COPY = f"COPY job_logs ({', '.join(_COLUMNS)}) FROM STDIN"


def insert_rows(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert ``job_logs`` rows; on PostgreSQL by COPY.

    NOTE: every item execution writes two rows; COPY costs the worker a
    fraction of an INSERT's bound parameters per row.
    """
    if connection.dialect.name != "postgresql":
        connection.execute(job_logs.insert(), rows)
        return

    cursor = connection.connection.cursor()
    with cursor.copy(_COPY) as copy:
        for row in rows:
            copy.write_row([*(row[name] for name in _COLUMNS[:-1]), Json(row["context"])])


def job_log_row(record: logging.LogRecord) -> dict[str, Any] | None:
    """The ``job_logs`` row of a record, or None when no job or run owns it."""
    job = current_job()
    fields = structured_fields(record)
    run_id = fields.pop("run_id", None) or (job.run_id if job else None)
    if job is None and run_id is None:
        return None

    created_at = datetime.fromtimestamp(record.created, UTC)
    return _row(job, run_id, created_at, record.levelname, record.getMessage(), fields)


def _row(job: Job | None, run_id: Any, created_at: datetime, level: str, message: str,
         fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "created_at": created_at,
        "level": level,
        "job_class": job.job_class if job else fields.pop("job_class", None),
        "message_id": job.message_id if job else None,
        "run_id": run_id if isinstance(run_id, int) else None,
        "status": fields.pop("status", None),
        "duration_ms": fields.pop("duration_ms", None),
        "item_kind": job.item_kind if job else None,
        "item_id": job.item_id if job else None,
        "message": message,
        "context": to_json(fields),
    }


def record_execution(job: Job, status: str, message: str,
                     duration_ms: float | None = None) -> None:
    """Write the record of an execution's start or end to ``job_logs``.

    NOTE: every message has two of these.  Through the logging handlers
    (filters, the JSON formatter, the console) they cost an item almost
    as much as its own work, so they go to the ``job_logs`` writer as
    rows, and to the console only at DEBUG.  Failures are logged as
    warnings instead, through every handler.
    """
    fields = {"status": status, "duration_ms": duration_ms}
    logger.debug(message, extra=fields)
    if _handler is not None:
        _handler.put(_row(job, job.run_id, datetime.now(UTC), "INFO", message, fields))


_written_in_transaction: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "written_in_transaction", default=False)
_redacting = RedactingFilter()


def log_in_transaction(connection: Connection, log: logging.Logger, level: int, msg: str,
                       *args: Any, extra: dict[str, Any]) -> None:
    """Log a record and write its ``job_logs`` row in ``connection``'s transaction.

    For the records that are part of a step's state: they commit, or
    roll back, with the step.  The background writer would lose them to
    a worker killed before its next flush, and the step, never done
    again, would have no record.
    """
    if not log.isEnabledFor(level):
        return

    record = log.makeRecord(log.name, level, "(transaction)", 0, msg, args, None, extra=extra)
    _redacting.filter(record)
    row = job_log_row(record)
    if row is not None:
        connection.execute(job_logs.insert().values(row))

    token = _written_in_transaction.set(True)
    try:
        log.handle(record)
    finally:
        _written_in_transaction.reset(token)


def to_json(value: Any) -> Any:
    """``value`` as JSON-compatible data; what JSON cannot hold becomes text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value

    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}

    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(v) for v in value]

    return str(value)


_handler: JobLogHandler | None = None
_handler_lock = threading.Lock()


def install_job_log_handler(engine: Engine | None = None) -> JobLogHandler:
    """Attach the ``job_logs`` handler to the importer's loggers, once."""
    global _handler

    from .database import get_engine

    with _handler_lock:
        if _handler is None:
            _handler = JobLogHandler(engine or get_engine())
            logging.getLogger("importer").addHandler(_handler)
            if logging.getLogger("importer").level == logging.NOTSET:
                logging.getLogger("importer").setLevel(logging.INFO)
        elif engine is not None:
            _handler.flush()
            _handler.engine = engine
    return _handler


def flush_job_logs() -> None:
    """Write every pending ``job_logs`` record now."""
    if _handler is not None:
        _handler.flush()
