"""The documentation builds in strict mode and stays true to the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from importer import cli
from importer.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def page(name: str) -> str:
    return (DOCS / name).read_text()


def table_rows(text: str) -> dict[str, list[str]]:
    """Markdown table rows by the text of their first cell."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def documented_default(value: Any) -> str:
    """A setting's default as the configuration page writes it."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def test_the_documentation_builds_in_strict_mode(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")

    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
        capture_output=True, text=True, timeout=300, check=False)

    assert built.returncode == 0, built.stdout + built.stderr
    assert (tmp_path / "site" / "index.html").is_file()


def test_the_configuration_page_gives_every_setting_with_its_default() -> None:
    rows = table_rows(page("configuration.md"))

    for field, info in Settings.model_fields.items():
        name = f"`IMPORTER_{field.upper()}`"
        assert name in rows, name
        assert rows[name][0] == documented_default(info.default), name


def test_the_cli_page_documents_every_command() -> None:
    text = page("cli.md")

    for name in cli.cli.commands:
        assert re.search(rf"^### .*`{re.escape(name)}[ `]", text, re.M), name


def test_the_cli_page_gives_every_exit_code_with_its_name() -> None:
    rows = table_rows(page("cli.md"))
    codes = {name: value for name, value in vars(cli).items() if name.startswith("EXIT_")}

    assert codes
    for name, code in codes.items():
        assert rows.get(str(code), [None])[0] == f"`{name}`", name


def test_the_operations_page_names_every_queue_of_the_actors() -> None:
    from importer.actors import broker

    text = page("operations.md")
    queues = {actor.queue_name for actor in broker.actors.values()}

    assert "importer.series.items" in queues
    for queue in queues:
        assert f"`{queue}`" in text, queue


def test_every_deploy_file_the_docs_name_exists() -> None:
    written_by_the_user = {"deploy/.env"}

    for path in sorted(DOCS.glob("*.md")):
        for name in re.findall(r"`(deploy/[\w./-]+)`", path.read_text()):
            if name not in written_by_the_user:
                assert (ROOT / name).exists(), f"{path.name}: {name}"
