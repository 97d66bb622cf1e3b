"""The command line: ``python -m importer COMMAND`` (or ``importer COMMAND``).

Every failure the user can fix ends with one line on stderr and one of
the exit codes below; ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

import click

from . import __version__
from .catalogue import KINDS, MAX_TVMAZE_ID, Kind, add_episodes, add_series, retry_parked
from .database import check_reachable, check_schema, get_engine
from .errors import (
    ConfigurationError,
    ImporterError,
    RunAbandonedError,
    RunActiveError,
    RunInterruptedError,
    SchemaMissingError,
    UnavailableError,
)
from .exitcodes import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_NO_SCHEMA,
    EXIT_OK,
    EXIT_RUN_ABANDONED,
    EXIT_RUN_ACTIVE,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)
from .limits import MAX_BATCH_SIZE, MAX_DELAY_SECONDS
from .logs import configure_logging
from .redaction import redact
from .runs import active_run
from .settings import Settings, get_settings

logger = logging.getLogger(__name__)

#: Columns of the status tables when the output is not a terminal.
PIPED_WIDTH = 200

_EXIT_CODES: list[tuple[type[ImporterError], int]] = [
    (ConfigurationError, EXIT_CONFIG),
    (UnavailableError, EXIT_UNAVAILABLE),
    (SchemaMissingError, EXIT_NO_SCHEMA),
    (RunActiveError, EXIT_RUN_ACTIVE),
    (RunAbandonedError, EXIT_RUN_ABANDONED),
    (RunInterruptedError, EXIT_INTERRUPTED),
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code, never a traceback (unless --verbose)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=args, prog_name="importer", standalone_mode=False)
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except (click.Abort, KeyboardInterrupt):
        _fail("interrupted")
        return EXIT_INTERRUPTED
    except click.ClickException as error:
        _fail(error.format_message())
        return EXIT_USAGE
    except Exception as error:  # noqa: BLE001 -- the last line of defence
        return _report(error, verbose="--verbose" in args or "-v" in args)
    return EXIT_OK


def _report(error: Exception, *, verbose: bool) -> int:
    """One line for ``error`` on stderr (and its traceback if asked); return its exit code."""
    if verbose:
        traceback.print_exc()

    if not isinstance(error, ImporterError):
        _fail(f"unexpected {type(error).__name__}: {error} (run with --verbose for details)")
        return EXIT_FAILURE

    _fail(str(error))
    for kind, code in _EXIT_CODES:
        if isinstance(error, kind):
            return code
    return EXIT_FAILURE


def _fail(message: str) -> None:
    # NOTE: an unexpected error may quote a URL with its password; click
    # breaks its messages over lines and tabs.
    print(f"importer: error: {redact(' '.join(message.split()))}", file=sys.stderr)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="importer")
@click.option("-v", "--verbose", is_flag=True, help="Debug logs, and tracebacks on errors.")
@click.option("--json-logs/--text-logs", default=True, show_default=True,
              help="Log records as JSON lines or as text, on stderr.")
def cli(verbose: bool, json_logs: bool) -> None:
    """Import missing TV series and episode data from the TVmaze API."""
    configure_logging(level=logging.DEBUG if verbose else logging.WARNING, json=json_logs)
    get_settings()


@cli.command("init-db")
def init_db() -> None:
    """Create or upgrade the database schema."""
    from .migrate import head_revision, upgrade

    check_reachable()
    before, after = upgrade(), head_revision()
    if before is None:
        click.echo(f"created the database schema (revision {after})")
    elif before != after:
        click.echo(f"upgraded the database schema from revision {before} to {after}")
    else:
        click.echo(f"the database schema is up to date (revision {after})")


@cli.command("add-series")
@click.argument("ids", nargs=-1, type=click.IntRange(1, MAX_TVMAZE_ID))
@click.option("--from-file", "from_file", type=click.File("r", encoding="utf-8-sig"),
              help="Read ids from a file, one per line ('-' for stdin).")
def add_series_command(ids: tuple[int, ...], from_file: TextIO | None) -> None:
    """Register series by TVmaze id."""
    tvmaze_ids = list(ids) + read_ids(from_file)
    if not tvmaze_ids:
        raise _no_ids(from_file)

    check_schema()
    with get_engine().begin() as connection:
        added = add_series(connection, tvmaze_ids)
    click.echo(f"registered {added} new series ({len(set(tvmaze_ids)) - added} already known)")


@cli.command("add-episodes")
@click.argument("show_id", type=click.IntRange(1, MAX_TVMAZE_ID))
@click.argument("ids", nargs=-1, type=click.IntRange(1, MAX_TVMAZE_ID))
@click.option("--from-file", "from_file", type=click.File("r", encoding="utf-8-sig"),
              help="Read episode ids from a file, one per line ('-' for stdin).")
def add_episodes_command(show_id: int, ids: tuple[int, ...], from_file: TextIO | None) -> None:
    """Register episodes of the show SHOW_ID by TVmaze id."""
    tvmaze_ids = list(ids) + read_ids(from_file)
    if not tvmaze_ids:
        raise _no_ids(from_file)

    check_schema()
    with get_engine().begin() as connection:
        added = add_episodes(connection, show_id, tvmaze_ids)
    known = len(set(tvmaze_ids)) - added
    episodes = "episode" if added == 1 else "episodes"
    click.echo(f"registered {added} new {episodes} ({known} already known)")


def read_ids(source: TextIO | None) -> list[int]:
    """TVmaze ids from a file: one per line, blank lines and # comments skipped."""
    if source is None:
        return []

    try:
        return [_id_on_line(source.name, number, line)
                for number, line in enumerate(source, start=1)
                if line.split("#", 1)[0].strip()]
    except UnicodeDecodeError:
        raise ConfigurationError(f"{source.name} is not UTF-8 text") from None


def _id_on_line(name: str, number: int, line: str) -> int:
    text = line.split("#", 1)[0].strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_TVMAZE_ID:
        raise ConfigurationError(f"{name}, line {number}: {text[:40]!r} is not a TVmaze id")

    return int(text)


def _no_ids(source: TextIO | None) -> click.UsageError:
    if source is None:
        return click.UsageError("give at least one TVmaze id, or --from-file")

    return click.UsageError(f"{source.name} holds no TVmaze id")


def _a_number(context: click.Context, parameter: click.Parameter,
              value: float | None) -> float | None:
    if value is not None and math.isnan(value):
        raise click.BadParameter("nan is not a number of seconds")

    return value


def _run_command(kind: Kind) -> click.Command:
    default = Settings.model_fields[f"{kind}_batch_size"].default
    size_default = f"{default}, or IMPORTER_{kind.upper()}_BATCH_SIZE"

    @click.command(kind, help=f"Import every {kind} row that misses data, batch by batch.")
    @click.option("--batch-size", type=click.IntRange(1, MAX_BATCH_SIZE),
                  show_default=size_default,
                  help="Rows per batch (episodes come in whole shows).")
    @click.option("--delay", type=click.FloatRange(0, MAX_DELAY_SECONDS), callback=_a_number,
                  show_default="10, or IMPORTER_BATCH_DELAY",
                  help="Seconds between two batches.")
    @click.option("--wait", is_flag=True, help="With a broker: follow the run until it ends.")
    @click.option("--takeover", is_flag=True,
                  help="Abandon an active run of this kind and start anew.")
    @click.option("--dry-run", is_flag=True,
                  help="Count what would be imported and the API calls it takes; change nothing.")
    def command(batch_size: int | None, delay: float | None, wait: bool, takeover: bool,
                dry_run: bool) -> None:
        if dry_run:
            show_dry_run(kind, batch_size, delay)
            return
        run_import(kind, batch_size, delay, wait=wait, takeover=takeover)

    return command


def show_dry_run(kind: Kind, batch_size: int | None, delay: float | None) -> None:
    from .runs import check_options
    from .status import dry_run

    _, batch_size, delay = check_options(kind, batch_size, delay)
    check_schema()
    settings = get_settings()
    with get_engine().connect() as connection:
        plan = dry_run(connection, kind, settings.not_found_recheck_days)
    seconds = plan["api_calls"] * settings.api_interval
    batches = -(-plan["rows"] // batch_size)
    click.echo(f"{kind}: {plan['rows']} rows need data; {plan['api_calls']} API calls, "
               f"at least {math.ceil(seconds)} s at {settings.api_calls} calls per "
               f"{settings.api_period:g} s; about {batches} batch{'es' if batches != 1 else ''} "
               f"{delay:g} s apart")


def run_import(kind: Kind, batch_size: int | None, delay: float | None, *, wait: bool,
               takeover: bool) -> None:
    check_schema()
    broker_url = get_settings().broker_url
    if broker_url is None:
        _run_embedded(kind, batch_size, delay, takeover=takeover)
    else:
        _run_with_broker(broker_url, kind, batch_size, delay, wait=wait, takeover=takeover)


def _run_with_broker(broker_url: str, kind: Kind, batch_size: int | None, delay: float | None,
                     *, wait: bool, takeover: bool) -> None:
    from .broker import consumers, queue_name
    from .control import start_run, wait_for_run
    from .progress import RunProgress, print_run

    run_id = start_run(kind, batch_size, delay, takeover=takeover)
    click.echo(f"started {kind} run {run_id}")
    queue = queue_name(kind, "batches")
    if consumers(broker_url, queue) == 0:
        click.echo(f"importer: warning: no worker consumes {queue} yet; the run waits for "
                   "one (start `dramatiq importer.actors`)", err=True)
    if wait:
        print_run(wait_for_run(run_id, on_progress=RunProgress()))


def _run_embedded(kind: Kind, batch_size: int | None, delay: float | None, *,
                  takeover: bool) -> None:
    from .control import start_run, wait_for_run
    from .embedded import embedded_worker
    from .progress import RunProgress, print_run
    from .runs import abandon_run

    with embedded_worker():
        with _interrupts_held() as held:
            run_id = start_run(kind, batch_size, delay, takeover=takeover)
        click.echo(f"started {kind} run {run_id} (embedded worker)", err=True)
        try:
            if held:
                raise KeyboardInterrupt
            print_run(wait_for_run(run_id, on_progress=RunProgress(), poll=0.2))
        except KeyboardInterrupt:
            # NOTE: the run's worker stops with this process: left running,
            # the run would block its kind until its heartbeat went stale.
            abandon_run(run_id)
            raise RunInterruptedError(f"interrupted: run {run_id} abandoned; the next start "
                                      "continues with the rows still missing") from None


@contextlib.contextmanager
def _interrupts_held() -> Iterator[list[int]]:
    """Hold Ctrl-C and SIGTERM back while a run starts; yield the signals held.

    NOTE: interrupted between its row and its id's return, a run would
    stay running, and block its kind until its heartbeat went stale.
    Held, the interrupt ends the run as any later one does: abandoned.
    """
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    signal.signal(signal.SIGTERM, lambda signum, frame: held.append(signum))
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, previous)
        # A service manager stops with SIGTERM; it ends the run as Ctrl-C does.
        signal.signal(signal.SIGTERM, signal.default_int_handler)


for _kind in KINDS:
    cli.add_command(_run_command(_kind))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--follow", is_flag=True, help="Follow the active runs until they end.")
def status(as_json: bool, follow: bool) -> None:
    """Rows missing, imported and failed per kind; active and recent runs; queues."""
    from rich.console import Console

    from .status import render, status_report

    check_schema()
    if follow:
        follow_active_runs()
        return

    report = status_report()
    if as_json:
        click.echo(json.dumps(report, default=str))
    else:
        # NOTE: piped, the tables keep their width instead of a terminal's 80 columns.
        render(report, Console(width=None if sys.stdout.isatty() else PIPED_WIDTH))


def follow_active_runs() -> None:
    from .control import wait_for_run
    from .progress import RunProgress, print_run

    with get_engine().connect() as connection:
        runs = [run for kind in KINDS if (run := active_run(connection, kind))]
    if not runs:
        click.echo("no active run")
    for run in runs:
        print_run(wait_for_run(run["id"], on_progress=RunProgress()))


@cli.command()
@click.option("--kind", type=click.Choice(KINDS), help="Only records of this kind's actors.")
@click.option("--run", "run_id", type=click.IntRange(1), help="Only records of this run.")
@click.option("--status", "job_status", type=click.Choice(["success", "retried", "failed"]),
              help="Only execution records with this status.")
@click.option("--level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                                           case_sensitive=False), help="This level and above.")
@click.option("--since", "since_age", help="Only records younger than this age (90d, 12h, 30m).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--follow", is_flag=True, help="Keep printing new records.")
def logs(kind: Kind | None, run_id: int | None, job_status: str | None, level: str | None,
         since_age: str | None, limit: int, as_json: bool, follow: bool) -> None:
    """The job_logs records, newest first (oldest first with --follow)."""
    from .logbook import as_dict, format_record, parse_age, query_logs
    from .schema import utcnow

    since = utcnow() - parse_age(since_age) if since_age is not None else None
    check_schema()
    filters: dict[str, Any] = {"kind": kind, "run_id": run_id, "status": job_status,
                               "level": level.upper() if level else None, "since": since}

    def show(records: list[Any]) -> None:
        for record in records:
            click.echo(json.dumps(as_dict(record), default=str) if as_json
                       else format_record(record))

    with get_engine().connect() as connection:
        records = query_logs(connection, limit=limit, **filters)
    show(records if not follow else list(reversed(records)))

    last_id = max((r["id"] for r in records), default=0)
    while follow:
        time.sleep(1)
        with get_engine().connect() as connection:
            newer = list(reversed(query_logs(connection, after_id=last_id, limit=1000,
                                             **filters)))
        show(newer)
        last_id = max((r["id"] for r in newer), default=last_id)


@cli.command("prune-logs")
@click.option("--older-than", "older_than", default="90d", show_default=True,
              help="Delete records older than this age (90d, 12h, 30m).")
def prune_logs_command(older_than: str) -> None:
    """Delete old job_logs records, in chunks."""
    from .logbook import parse_age, prune_logs

    age = parse_age(older_than)
    check_schema()
    click.echo(f"deleted {prune_logs(get_engine(), age)} job log records")


@cli.command("retry-failed")
@click.argument("kind", type=click.Choice(KINDS))
def retry_failed(kind: Kind) -> None:
    """Make parked rows of KIND eligible for the next run again."""
    check_schema()
    with get_engine().begin() as connection:
        count = retry_parked(connection, kind)
    click.echo(f"{count} parked {kind} rows will be tried again")


def _limit(context: click.Context, parameter: click.Parameter,
           value: str | None) -> tuple[int, float] | None:
    from .tvmaze_server import parse_limit

    try:
        return parse_limit(value) if value is not None else None
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@cli.command("serve-api")
@click.option("--data", type=click.Path(exists=True, file_okay=False),
              help="Serve recorded responses from this directory.")
@click.option("--generate", type=click.IntRange(1, 10_000_000), default=100, show_default=True,
              help="Serve N generated shows (without --data).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8089, show_default=True)
@click.option("--latency", type=click.FloatRange(0, 60), default=0.0, help="Seconds per response.")
@click.option("--limit", callback=_limit, help="Answer 429 beyond CALLS/SECONDS, e.g. 20/10.")
def serve_api(data: str | None, generate: int, host: str, port: int, latency: float,
              limit: tuple[int, float] | None) -> None:
    """Serve a local TVmaze-compatible API (for trying things out)."""
    from .tvmaze_server import Catalogue, GeneratedCatalogue, RecordedCatalogue, serve

    try:
        catalogue: Catalogue = RecordedCatalogue(data) if data else GeneratedCatalogue(generate)
    except OSError as error:
        raise ConfigurationError(f"cannot serve {data}: {error}") from None
    try:
        serve(catalogue, host=host, port=port, latency=latency, limit=limit)
    except OSError as error:
        raise UnavailableError(f"cannot listen on {host}:{port}: {error.strerror or error}") \
            from None


@cli.command()
@click.option("--data", type=click.Path(exists=True, file_okay=False),
              help="Recorded TVmaze responses to import (default: a generated catalogue).")
@click.option("--shows", type=click.IntRange(1, 100_000), default=50, show_default=True,
              help="Shows in the generated catalogue.")
@click.option("--database", help="Database URL (default: a fresh SQLite file in a temp dir).")
def demo(data: str | None, shows: int, database: str | None) -> None:
    """Run the whole import offline against a local TVmaze-compatible server."""
    from .demo import run_demo

    run_demo(data=data, shows=shows, database_url=database)


def main_entry() -> None:
    """The ``importer`` console script."""
    sys.exit(main())
