"""Reading and pruning ``job_logs``: the ``logs`` and ``prune-logs`` commands."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, delete, select

from .errors import ConfigurationError
from .schema import job_logs, utcnow

logger = logging.getLogger(__name__)

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

#: The oldest age a filter or a prune may name: a century.
MAX_AGE = timedelta(days=36_500)

#: Rows deleted per transaction by ``prune-logs``, so that pruning never
#: holds a long lock on a table the workers write to.
PRUNE_CHUNK = 5_000


def parse_age(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``2w`` or ``45s`` as a timedelta."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ConfigurationError(f"{text!r} is not an age like 90d, 12h, 30m")

    try:
        age = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    except OverflowError:
        age = timedelta.max
    if age > MAX_AGE:
        raise ConfigurationError(f"{text!r} is older than records can be; at most 36500d")

    return age


def query_logs(connection: Connection, *, kind: str | None = None, run_id: int | None = None,
               status: str | None = None, level: str | None = None,
               since: datetime | None = None, after_id: int | None = None,
               limit: int = 50) -> list[RowMapping]:
    """Records matching every given filter, newest first."""
    # NOTE: by time, not id: the background writer stores an item's
    # records a moment after the batch records written with their step.
    query = (select(job_logs).order_by(job_logs.c.created_at.desc(), job_logs.c.id.desc())
             .limit(limit))
    if kind is not None:
        query = query.where(job_logs.c.job_class.like(f"%{kind}%"))
    if run_id is not None:
        query = query.where(job_logs.c.run_id == run_id)
    if status is not None:
        query = query.where(job_logs.c.status == status)
    if level is not None:
        query = query.where(job_logs.c.level.in_(LEVELS[LEVELS.index(level):]))
    if since is not None:
        query = query.where(job_logs.c.created_at >= since)
    if after_id is not None:
        query = query.where(job_logs.c.id > after_id)
    return list(connection.execute(query).mappings())


def format_record(record: RowMapping) -> str:
    """One record as one line of text."""
    where = f" run {record['run_id']}" if record["run_id"] is not None else ""
    status = f" [{record['status']}]" if record["status"] else ""
    return (f"{record['created_at']:%Y-%m-%d %H:%M:%S} {record['level']:<7} "
            f"{(record['job_class'] or '-').rsplit('.', 1)[-1]}{where}{status}: "
            f"{record['message']}")


def as_dict(record: RowMapping) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in record.items()}


def prune_logs(engine: Engine, older_than: timedelta, chunk: int = PRUNE_CHUNK) -> int:
    """Delete records older than ``older_than``, a chunk per transaction; return the count."""
    cutoff = utcnow() - older_than
    deleted = 0
    while True:
        with engine.begin() as connection:
            ids = select(job_logs.c.id).where(job_logs.c.created_at < cutoff).limit(chunk)
            result = connection.execute(delete(job_logs).where(
                job_logs.c.id.in_(ids.scalar_subquery())))
        deleted += int(result.rowcount)
        if result.rowcount < chunk:
            break
    logger.info("Pruned %d job log records older than %s.", deleted, cutoff.isoformat(),
                extra={"deleted": deleted, "cutoff": cutoff.isoformat()})
    return deleted
