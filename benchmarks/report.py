"""The results of the suite: one row per ratio, printed as a table."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Direction = Literal["at most", "at least"]


@dataclass
class Result:
    """One ratio, its target, and what was measured beside it."""

    number: int
    name: str
    value: float
    target: float
    direction: Direction
    beside: str
    unit: str = ""
    details: list[str] = field(default_factory=list)
    digits: int = 2

    @property
    def met(self) -> bool:
        if self.direction == "at most":
            return self.value <= self.target
        return self.value >= self.target

    def target_text(self) -> str:
        sign = "≤" if self.direction == "at most" else "≥"
        return f"{sign} {self.target:.{self.digits}f}{self.unit}"

    def value_text(self) -> str:
        return f"{self.value:.{self.digits}f}{self.unit}"


HEADERS = ("#", "ratio", "measured", "target", "met", "beside it")


def table(results: list[Result]) -> str:
    """The results as an aligned text table, one row per ratio."""
    rows = [HEADERS] + [
        (str(r.number), r.name, r.value_text(), r.target_text(), "yes" if r.met else "NO",
         r.beside)
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    right = {2}

    def line(row: tuple[str, ...]) -> str:
        cells = [cell.rjust(w) if i in right else cell.ljust(w)
                 for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(rows[0]), rule, *(line(row) for row in rows[1:])])


def details(results: list[Result]) -> str:
    lines = []
    for result in results:
        lines.append(f"{result.number}. {result.name}")
        lines.extend(f"   {detail}" for detail in result.details)
    return "\n".join(lines)


def machine() -> str:
    """One line about the machine the figures come from."""
    cpu = _cpu_model()
    memory = _memory_gib()
    return (f"{platform.system()} {platform.release()}, {cpu}, {_cores()} cores, "
            f"{memory:.0f} GiB RAM, Python {platform.python_version()}")


def write_json(path: Path, mode: str, results: list[Result]) -> None:
    document: dict[str, Any] = {
        "mode": mode,
        "machine": machine(),
        "results": [{**asdict(r), "met": r.met} for r in results],
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", "utf-8")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _cores() -> int:
    return os.cpu_count() or 1


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0
