"""``python -m importer demo``: the whole import offline, on a database of its own."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, func, select

from importer.exitcodes import EXIT_CONFIG, EXIT_OK
from importer.schema import episodes, series

from .services import run_cli


def counts(url: str) -> tuple[int, int, int]:
    """Series, series with data, and episodes with data."""
    engine = create_engine(url)
    with engine.connect() as connection:
        found = (connection.execute(select(func.count()).select_from(series)).scalar_one(),
                 connection.execute(select(func.count()).select_from(series).where(
                     series.c.data_last_updated_at.is_not(None))).scalar_one(),
                 connection.execute(select(func.count()).select_from(episodes).where(
                     episodes.c.data_last_updated_at.is_not(None))).scalar_one())
    engine.dispose()
    return found


def test_the_demo_imports_a_generated_catalogue_and_sums_it_up(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"

    done = run_cli(["demo", "--shows", "6", "--database", url], dict(os.environ), timeout=120)

    assert done.returncode == EXIT_OK, done.stderr
    shows, imported, filled = counts(url)
    assert shows == imported == 6 and filled > 6
    assert "series: 6 imported, 0 not found, 0 failed; " in done.stdout
    assert f"episodes: {filled} imported, 0 not found, 0 failed; " in done.stdout
    assert "0 answered 429" in done.stdout
    assert "TVmaze" in done.stdout.splitlines()[-1]


def test_the_demo_refuses_a_database_that_holds_a_catalogue_and_leaves_it_alone(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mine.db'}"
    env = {**os.environ, "IMPORTER_DATABASE_URL": url}
    run_cli(["init-db"], env)
    run_cli(["add-series", "1", "2"], env)

    refused = run_cli(["demo", "--shows", "3", "--database", url], dict(os.environ))

    assert refused.returncode == EXIT_CONFIG
    assert "needs an empty database" in refused.stderr and "holds 2 series" in refused.stderr
    assert counts(url) == (2, 0, 0)
