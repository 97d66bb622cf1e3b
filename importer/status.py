"""What ``status`` reports: rows per state, the active run, recent runs, queues."""

from __future__ import annotations

import logging
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Connection, RowMapping, func, select

from .broker import queue_depths
from .catalogue import (
    KINDS,
    Kind,
    count_needing_data,
    counts,
    needs_data,
    recheck_before,
    table_for,
)
from .database import get_engine
from .errors import ImporterError
from .runs import RUNNING, active_run, is_stale, items_done, recent_runs
from .schema import utcnow
from .settings import Settings, get_settings

logger = logging.getLogger(__name__)


def catalogue_report(connection: Connection, settings: Settings) -> dict[str, Any]:
    """Per kind: row counts by state, the active run with rate and ETA, recent runs."""
    report: dict[str, Any] = {}
    for kind in KINDS:
        rows = counts(connection, kind)
        active = active_run(connection, kind)
        calls_left = dry_run(connection, kind, settings.not_found_recheck_days)["api_calls"]
        report[kind] = {
            "missing": rows["missing"],
            "imported": rows["imported"],
            "failed": rows["failed_total"],
            "failed_by_reason": {k: rows[k] for k in ("not_found", "invalid", "failed")},
            "parked": rows["parked"],
            "total": rows["total"],
            "api_calls_needed": calls_left,
            "active_run": run_summary(active, settings, calls_left) if active else None,
            "recent_runs": [run_summary(r, settings, calls_left)
                            for r in recent_runs(connection, kind)],
        }
    return report


def run_summary(run: RowMapping, settings: Settings, calls_left: int) -> dict[str, Any]:
    """A run's row, with how far along it is, its rate and an ETA.

    The ETA comes from the API budget: the calls the rows still missing
    need, at the allowed rate, which no worker count can beat.
    """
    done = items_done(run)
    end = run["finished_at"] or utcnow()
    elapsed = max((end - run["started_at"]).total_seconds(), 1e-9)
    rate = done / elapsed

    running = run["status"] == RUNNING
    stale = running and is_stale(run)
    eta = calls_left * settings.api_interval if running and not stale else None
    return {
        **{k: v for k, v in dict(run).items() if k not in ("successor_sent",)},
        "done": done,
        "rate_per_second": round(rate, 2),
        "eta_seconds": round(eta, 1) if eta is not None else None,
        "stale": stale if running else None,
    }


def status_report() -> dict[str, Any]:
    """The status of the catalogue and its runs, with queue depths on RabbitMQ."""
    settings = get_settings()
    with get_engine().connect() as connection:
        report = catalogue_report(connection, settings)
    if settings.broker_url:
        try:
            report["queues"] = queue_depths(settings.broker_url)
        except ImporterError as error:
            # NOTE: the database's part of the status is still worth showing.
            logger.warning("Queue depths unavailable: %s.", error)
            report["queues"] = None
    return report


def dry_run(connection: Connection, kind: Kind, recheck_days: float) -> dict[str, int]:
    """What a run would import now, and the API calls it would take."""
    rows = count_needing_data(connection, kind, recheck_days)
    if kind == "series":
        calls = rows
    else:
        table = table_for(kind)
        wanted = needs_data(table, recheck_before(recheck_days))
        shows = select(func.count(func.distinct(table.c.series_id))).where(wanted)
        calls = connection.execute(shows).scalar_one()
    return {"rows": int(rows), "api_calls": int(calls)}


def render(report: dict[str, Any], console: Console) -> None:
    """``status`` as tables, for a terminal."""
    console.print(_catalogue_table(report))
    console.print(_runs_table(report))
    if report.get("queues"):
        console.print(_queues_table(report["queues"]))


def _catalogue_table(report: dict[str, Any]) -> Table:
    table = Table(title="Catalogue")
    for column in ("kind", "missing", "imported", "not found", "invalid", "failed", "parked"):
        table.add_column(column, justify="right" if column != "kind" else "left")

    for kind in KINDS:
        rows, reasons = report[kind], report[kind]["failed_by_reason"]
        table.add_row(kind, str(rows["missing"]), str(rows["imported"]),
                      str(reasons["not_found"]), str(reasons["invalid"]),
                      str(reasons["failed"]), str(rows["parked"]))
    return table


def _runs_table(report: dict[str, Any]) -> Table:
    table = Table(title="Runs (active and recent)")
    for column in ("run", "kind", "status", "batches", "done/total", "failed", "rate/s", "ETA",
                   "started"):
        table.add_column(column)

    for kind in KINDS:
        for run in report[kind]["recent_runs"]:
            failed = run["not_found"] + run["invalid"] + run["failed"]
            eta = "-" if run["eta_seconds"] is None else f"{run['eta_seconds']:.0f} s"
            status = f"{run['status']} (stale)" if run["stale"] else run["status"]
            table.add_row(str(run["id"]), kind, status, str(run["batches"]),
                          f"{run['done']}/{run['total']}", str(failed),
                          str(run["rate_per_second"]), eta,
                          f"{run['started_at']:%Y-%m-%d %H:%M:%S}")
    return table


def _queues_table(queues: dict[str, dict[str, int]]) -> Table:
    table = Table(title="RabbitMQ queues")
    for column in ("queue", "ready", "consumers"):
        table.add_column(column)

    for name, depth in queues.items():
        table.add_row(name, str(depth["ready"]), str(depth["consumers"]))
    return table
