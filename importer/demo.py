"""``python -m importer demo``: the whole import, offline, in a minute.

A local TVmaze-compatible server serves either recorded responses or a
generated catalogue; the demo registers its shows, runs the series and
the episodes import on the embedded worker and prints a summary.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Connection, func, select

from .errors import ConfigurationError
from .redaction import redact
from .settings import get_settings
from .tvmaze_server import ATTRIBUTION, GeneratedCatalogue, RecordedCatalogue, TvmazeServer

#: The demo's allowance: generous, so it ends quickly, and enforced by
#: the server, so that a 429 would show in the summary.
DEMO_CALLS_PER_SECOND = 40


def run_demo(*, data: str | None, shows: int, database_url: str | None) -> None:
    catalogue = RecordedCatalogue(data) if data else GeneratedCatalogue(shows)
    with tempfile.TemporaryDirectory(prefix="importer-demo-") as workdir, \
            TvmazeServer(catalogue, limit=(DEMO_CALLS_PER_SECOND, 1.0)) as server:
        _configure(server.url, database_url or f"sqlite:///{Path(workdir) / 'demo.db'}")
        _run(catalogue.show_ids(), server)


def _configure(api_url: str, database_url: str) -> None:
    # NOTE: the demo always runs embedded, against its own server and
    # database, whatever the environment says.
    os.environ.pop("IMPORTER_BROKER_URL", None)
    os.environ["IMPORTER_API_URL"] = api_url
    os.environ["IMPORTER_DATABASE_URL"] = database_url
    os.environ["IMPORTER_API_CALLS"] = str(int(DEMO_CALLS_PER_SECOND * 0.9))
    os.environ["IMPORTER_API_PERIOD"] = "1"
    get_settings.cache_clear()


def _run(show_ids: list[int], server: TvmazeServer) -> None:
    from .catalogue import add_series
    from .control import start_run, wait_for_run
    from .database import check_reachable, get_engine
    from .embedded import embedded_worker
    from .migrate import upgrade
    from .progress import RunProgress, print_run
    from .status import status_report

    check_reachable()
    upgrade()
    with get_engine().begin() as connection:
        _check_empty(connection)
        add_series(connection, show_ids)
    click.echo(f"registered {len(show_ids)} shows served by {server.url}")

    with embedded_worker():
        for kind in ("series", "episodes"):
            run_id = start_run(kind, delay=0.5)
            print_run(wait_for_run(run_id, poll=0.2, on_progress=RunProgress()))

    report = status_report()
    click.echo("; ".join(_summary(kind, report[kind]) for kind in ("series", "episodes"))
               + f"; {server.requests} API calls, {server.rate_limited} answered 429")
    click.echo(ATTRIBUTION)


def _summary(kind: str, rows: dict[str, Any]) -> str:
    reasons = rows["failed_by_reason"]
    return (f"{kind}: {rows['imported']} imported, {reasons['not_found']} not found, "
            f"{reasons['invalid'] + reasons['failed'] + rows['parked']} failed")


def _check_empty(connection: Connection) -> None:
    """Refuse a database that holds a catalogue: the demo would mix its own into it."""
    from .schema import series

    held = connection.execute(select(func.count()).select_from(series)).scalar_one()
    if held:
        raise ConfigurationError(
            f"the demo needs an empty database, and {redact(str(connection.engine.url))} "
            f"holds {held} series; leave out --database to use a temporary one")
