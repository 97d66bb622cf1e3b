"""Logging set-up for the CLI and the worker: JSON lines, secrets removed.

Nothing here runs at import time; :func:`configure_logging` is called
once by the CLI and once per worker process (see
:class:`importer.joblog.JobLogMiddleware`).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from .redaction import redact


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message and structured fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        record.msg = redact(str(record.msg))
        for key, value in list(vars(record).items()):
            if key not in STANDARD_ATTRIBUTES and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


#: Attributes every LogRecord has; everything else came in ``extra=``.
STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def structured_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record was given through ``extra=``."""
    return {k: v for k, v in vars(record).items() if k not in STANDARD_ATTRIBUTES}


def json_formatter() -> logging.Formatter:
    """One JSON object per line: time, level, logger, message, fields."""
    return JsonFormatter(
        "{asctime}{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "asctime": "time", "name": "logger"},
        json_default=str,
        json_ensure_ascii=False,
    )


def configure_logging(*, level: int = logging.INFO, json: bool = True,
                      stream: Any = None) -> None:
    """Send the ``importer`` loggers' records of ``level`` and above to
    ``stream`` (stderr), as JSON lines.

    Safe to call more than once: the previous handler is replaced.
    """
    logger = logging.getLogger("importer")
    for handler in [h for h in logger.handlers if getattr(h, "_importer_console", False)]:
        logger.removeHandler(handler)

    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter() if json else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    handler._importer_console = True  # type: ignore[attr-defined]

    handler.setLevel(level)
    logger.addHandler(handler)
    # NOTE: the logger lets INFO through whatever the console shows, so
    # that job_logs always receives the batch and run records.
    logger.setLevel(min(level, logging.INFO))
    logger.propagate = False

    # NOTE: Alembic announces its set-up at INFO whenever the schema is
    # checked.
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))

    # NOTE: httpx logs every request at INFO, its full URL (an access
    # token, say) included; the importer's own records already say what
    # each call did.
    httpx_logger = logging.getLogger("httpx")
    httpx_logger.setLevel(max(level, logging.WARNING))
    if not any(isinstance(f, RedactingFilter) for f in httpx_logger.filters):
        httpx_logger.addFilter(RedactingFilter())
