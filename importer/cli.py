"""The command line: ``python -m importer COMMAND`` (or ``importer COMMAND``).

Every failure the user can fix ends with one line on stderr and one of
the exit codes below; ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

import click

from . import __version__
from .catalogue import KINDS, Kind, add_episodes, add_series, counts, retry_parked
from .database import check_schema, get_engine
from .errors import (
    ConfigurationError,
    ImporterError,
    RunActiveError,
    SchemaMissingError,
    UnavailableError,
)
from .logs import configure_logging
from .runs import DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE, active_run, recent_runs
from .settings import MAX_DELAY_SECONDS, get_settings

logger = logging.getLogger(__name__)

#: Exit codes, documented in docs/cli.md.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_UNAVAILABLE = 4
EXIT_NO_SCHEMA = 5
EXIT_RUN_ACTIVE = 6
EXIT_INTERRUPTED = 130

_EXIT_CODES: list[tuple[type[ImporterError], int]] = [
    (ConfigurationError, EXIT_CONFIG),
    (UnavailableError, EXIT_UNAVAILABLE),
    (SchemaMissingError, EXIT_NO_SCHEMA),
    (RunActiveError, EXIT_RUN_ACTIVE),
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code, never a traceback (unless --verbose)."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in args or "-v" in args
    try:
        cli.main(args=args, prog_name="importer", standalone_mode=False)
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except click.Abort:
        _fail("interrupted")
        return EXIT_INTERRUPTED
    except click.ClickException as error:
        _fail(error.format_message().replace("\n", " "))
        return EXIT_USAGE
    except ImporterError as error:
        if verbose:
            traceback.print_exc()
        _fail(str(error))
        return _exit_code(error)
    except KeyboardInterrupt:
        _fail("interrupted")
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 -- the last line of defence
        if verbose:
            traceback.print_exc()
        _fail(f"unexpected {type(error).__name__}: {error} (run with --verbose for details)")
        return EXIT_FAILURE
    return EXIT_OK


def _exit_code(error: ImporterError) -> int:
    for kind, code in _EXIT_CODES:
        if isinstance(error, kind):
            return code
    return EXIT_FAILURE


def _fail(message: str) -> None:
    print(f"importer: error: {message}", file=sys.stderr)


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
    from .migrate import upgrade

    check_reachable()
    upgrade()
    click.echo("database schema is up to date")


@cli.command("add-series")
@click.argument("ids", nargs=-1, type=click.IntRange(1, 2**31 - 1))
@click.option("--from-file", "from_file", type=click.File("r"),
              help="Read ids from a file, one per line ('-' for stdin).")
def add_series_command(ids: tuple[int, ...], from_file: TextIO | None) -> None:
    """Register series by TVmaze id."""
    tvmaze_ids = list(ids) + read_ids(from_file)
    if not tvmaze_ids:
        raise click.UsageError("give at least one TVmaze id, or --from-file")

    check_schema()
    with get_engine().begin() as connection:
        added = add_series(connection, tvmaze_ids)
    click.echo(f"registered {added} new series ({len(set(tvmaze_ids)) - added} already known)")


@cli.command("add-episodes")
@click.argument("show_id", type=click.IntRange(1, 2**31 - 1))
@click.argument("ids", nargs=-1, type=click.IntRange(1, 2**31 - 1))
@click.option("--from-file", "from_file", type=click.File("r"),
              help="Read episode ids from a file, one per line ('-' for stdin).")
def add_episodes_command(show_id: int, ids: tuple[int, ...], from_file: TextIO | None) -> None:
    """Register episodes of the show SHOW_ID by TVmaze id."""
    tvmaze_ids = list(ids) + read_ids(from_file)
    if not tvmaze_ids:
        raise click.UsageError("give at least one episode id, or --from-file")

    check_schema()
    with get_engine().begin() as connection:
        added = add_episodes(connection, show_id, tvmaze_ids)
    click.echo(f"registered {added} new episodes ({len(set(tvmaze_ids)) - added} already known)")


def read_ids(source: TextIO | None) -> list[int]:
    """TVmaze ids from a file: one per line, blank lines and # comments skipped."""
    if source is None:
        return []
    ids = []
    for number, line in enumerate(source, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if not text.isdigit() or not 1 <= int(text) <= 2**31 - 1:
            raise ConfigurationError(
                f"{source.name}, line {number}: {text[:40]!r} is not a TVmaze id")
        ids.append(int(text))
    return ids


def _run_command(kind: Kind) -> click.Command:
    @click.command(kind, help=f"Import every {kind} row that misses data, batch by batch.")
    @click.option("--batch-size", type=click.IntRange(1, MAX_BATCH_SIZE),
                  default=DEFAULT_BATCH_SIZE[kind], show_default=True,
                  help="Rows per batch (episodes come in whole shows).")
    @click.option("--delay", type=click.FloatRange(0, MAX_DELAY_SECONDS), default=10.0,
                  show_default=True, help="Seconds between two batches.")
    @click.option("--wait", is_flag=True, help="With a broker: follow the run until it ends.")
    @click.option("--takeover", is_flag=True,
                  help="Abandon an active run of this kind and start anew.")
    def command(batch_size: int, delay: float, wait: bool, takeover: bool) -> None:
        run_import(kind, batch_size, delay, wait=wait, takeover=takeover)

    return command


def run_import(kind: Kind, batch_size: int, delay: float, *, wait: bool, takeover: bool) -> None:
    from .control import start_run, wait_for_run
    from .progress import RunProgress

    check_schema()
    embedded = get_settings().broker_url is None
    if not embedded:
        run_id = start_run(kind, batch_size, delay, takeover=takeover)
        click.echo(f"started {kind} run {run_id}")
        if wait:
            print_run(wait_for_run(run_id, on_progress=RunProgress()))
        return

    from .embedded import embedded_worker

    with embedded_worker():
        run_id = start_run(kind, batch_size, delay, takeover=takeover)
        click.echo(f"started {kind} run {run_id} (embedded worker)", err=True)
        print_run(wait_for_run(run_id, on_progress=RunProgress(), poll=0.2))


def print_run(run: Any) -> None:
    click.echo(
        f"run {run['id']} ({run['kind']}) {run['status']}: {run['batches']} batches, "
        f"{run['selected']} rows, {run['imported']} imported, {run['not_found']} not found, "
        f"{run['invalid']} invalid, {run['failed']} failed, {run['discovered']} discovered")


for _kind in KINDS:
    cli.add_command(_run_command(_kind))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(as_json: bool) -> None:
    """Rows missing, imported and failed per kind, and the active run."""
    check_schema()
    report = status_report()
    if as_json:
        click.echo(json.dumps(report, default=str))
        return
    for kind, data in report.items():
        click.echo(f"{kind}: {data['missing']} missing, {data['imported']} imported, "
                   f"{data['failed']} failed ({_reasons(data['failed_by_reason'])})")
        run = data["active_run"]
        if run:
            click.echo(f"  active run {run['id']}: {run['selected']}/{run['total']} selected, "
                       f"{run['batches']} batches, started {run['started_at']}")


def _reasons(reasons: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in reasons.items())


def status_report() -> dict[str, Any]:
    """Per kind: row counts and the active and recent runs."""
    report: dict[str, Any] = {}
    with get_engine().connect() as connection:
        for kind in KINDS:
            row_counts = counts(connection, kind)
            active = active_run(connection, kind)
            report[kind] = {
                "missing": row_counts["missing"],
                "imported": row_counts["imported"],
                "failed": row_counts["failed_total"],
                "failed_by_reason": {k: row_counts[k] for k in
                                     ("not_found", "invalid", "failed", "parked")},
                "parked": row_counts["parked"],
                "total": row_counts["total"],
                "active_run": dict(active) if active else None,
                "recent_runs": [dict(r) for r in recent_runs(connection, kind)],
            }
    return report


@cli.command("retry-failed")
@click.argument("kind", type=click.Choice(KINDS))
def retry_failed(kind: Kind) -> None:
    """Make parked rows of KIND eligible for the next run again."""
    check_schema()
    with get_engine().begin() as connection:
        count = retry_parked(connection, kind)
    click.echo(f"{count} parked {kind} rows will be tried again")


@cli.command("serve-api")
@click.option("--data", type=click.Path(exists=True, file_okay=False),
              help="Serve recorded responses from this directory.")
@click.option("--generate", type=click.IntRange(1, 10_000_000), help="Serve N generated shows.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8089, show_default=True)
@click.option("--latency", type=click.FloatRange(0, 60), default=0.0, help="Seconds per response.")
@click.option("--limit", help="Answer 429 beyond CALLS/SECONDS, e.g. 20/10.")
def serve_api(data: str | None, generate: int | None, host: str, port: int, latency: float,
              limit: str | None) -> None:
    """Serve a local TVmaze-compatible API (for trying things out)."""
    from .tvmaze_server import main as serve

    argv = ["--host", host, "--port", str(port), "--latency", str(latency)]
    argv += ["--data", data] if data else ["--generate", str(generate or 100)]
    argv += ["--limit", limit] if limit else []
    raise click.exceptions.Exit(serve(argv))


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


def check_reachable() -> None:
    """Fail early when the database cannot be reached at all."""
    try:
        check_schema()
    except SchemaMissingError:
        pass


def ids_text(ids: Iterable[int]) -> str:
    return " ".join(map(str, ids))


def main_entry() -> None:
    """The ``importer`` console script."""
    sys.exit(main())
