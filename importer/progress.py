"""Following a run on the terminal: a live bar, or plain lines when piped."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import RowMapping

from .errors import RunAbandonedError
from .runs import ABANDONED, RUNNING, items_done


class RunProgress:
    """Shows a run's rows done out of its total until it finishes."""

    def __init__(self, stream: TextIO | None = None, *, plain_every: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.plain_every = plain_every
        self._last_plain = 0.0
        self._bar: Progress | None = None
        self._task: int | None = None
        if self.stream.isatty():
            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"), TimeRemainingColumn(),
                console=Console(file=self.stream), transient=False)

    def __call__(self, run: RowMapping) -> None:
        done = items_done(run)
        total = max(run["total"], run["selected"])
        not_imported = run["not_found"] + run["invalid"] + run["failed"]
        detail = f"batches {run['batches']}, not imported {not_imported}"
        if self._bar is not None:
            self._update_bar(run, done, max(total, 1), detail)
        elif time.monotonic() - self._last_plain >= self.plain_every or run["status"] != RUNNING:
            self._last_plain = time.monotonic()
            print(f"run {run['id']} {run['kind']}: {run['status']}, {done}/{total} rows, {detail}",
                  file=self.stream, flush=True)

    def _update_bar(self, run: RowMapping, done: int, total: int, detail: str) -> None:
        assert self._bar is not None
        if self._task is None:
            self._bar.start()
            self._task = self._bar.add_task(f"{run['kind']} run {run['id']}", total=total,
                                            detail=detail)
        self._bar.update(self._task, completed=done, total=total, detail=detail)  # type: ignore[arg-type]
        if run["status"] != RUNNING:
            self._bar.stop()


def print_run(run: RowMapping) -> None:
    """Print a finished run's counts; an abandoned run is an error (exit code 7)."""
    print(f"run {run['id']} ({run['kind']}) {run['status']}: {run['batches']} batches, "
          f"{run['selected']} rows, {run['imported']} imported, {run['not_found']} not found, "
          f"{run['invalid']} invalid, {run['failed']} failed, {run['discovered']} discovered"
          + (f", {run['skipped']} filled by an earlier run" if run["skipped"] else ""),
          flush=True)
    if run["status"] == ABANDONED:
        raise RunAbandonedError(
            f"run {run['id']} was abandoned (another start took over); see `importer status`")
