"""What the suite measures with: sizes for the full run and the quick one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .services import CatalogueSpec


@dataclass(frozen=True)
class Sizes:
    """The sizes and options of one mode of the suite."""

    mode: str

    #: Ratios 1 and 2: the server's limit (calls per second), the
    #: catalogue, and the batch options both designs run with.
    limit_calls: int
    limited: CatalogueSpec
    limited_batch: dict[str, int]
    limited_delay: float
    naive_retry_wait: float

    #: Ratio 3: the catalogue imported with no limit, and the batch options.
    unlimited: CatalogueSpec
    unlimited_batch: dict[str, int]

    #: Ratio 4: rows missing data in the small and the large table.
    selection_rows: tuple[int, int]
    selection_steps: int

    #: Ratio 5: items of the long run, and after how many the first reading.
    memory_items: int
    memory_first: int


FULL = Sizes(
    mode="full",
    limit_calls=50,
    limited=CatalogueSpec(shows=1000, episodes=5, specials=1),
    limited_batch={"series": 100, "episodes": 600},
    limited_delay=1.0,
    naive_retry_wait=5.0,
    unlimited=CatalogueSpec(shows=2000, episodes=10, specials=1),
    unlimited_batch={"series": 200, "episodes": 1000},
    selection_rows=(10_000, 1_000_000),
    selection_steps=15,
    memory_items=100_000,
    memory_first=1_000,
)

QUICK = Sizes(
    mode="quick",
    limit_calls=50,
    limited=CatalogueSpec(shows=30, episodes=2, specials=1),
    limited_batch={"series": 100, "episodes": 600},
    limited_delay=1.0,
    naive_retry_wait=1.0,
    unlimited=CatalogueSpec(shows=100, episodes=4, specials=1),
    unlimited_batch={"series": 200, "episodes": 1000},
    selection_rows=(1_000, 10_000),
    selection_steps=5,
    memory_items=500,
    memory_first=100,
)


@dataclass(frozen=True)
class Bench:
    """Where the suite runs: the services and the worker's threads."""

    postgres: str
    broker: str
    threads: int
    workdir: Path
