"""The command line of the suite: ``python -m benchmarks [--quick] [--only 1,3]``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from . import limited, memory, selection, throughput
from .config import FULL, QUICK, Bench, Sizes
from .report import Result, details, machine, table, write_json
from .services import (
    DEFAULT_BROKER,
    DEFAULT_POSTGRES,
    BenchmarkError,
    check_broker,
    check_postgres,
)

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_TARGET_MISSED = 1
EXIT_UNAVAILABLE = 4

Measure = Callable[[Bench, Sizes], list[Result]]

#: Each measurement, by the numbers of the ratios it yields.
MEASUREMENTS: list[tuple[frozenset[int], Measure]] = [
    (frozenset({1, 2}), limited.measure),
    (frozenset({3}), throughput.measure),
    (frozenset({4}), selection.measure),
    (frozenset({5}), memory.measure),
]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    if args.verbose:
        logging.getLogger("benchmarks").setLevel(logging.INFO)
    else:
        # NOTE: pika logs a traceback for a vhost not created yet, and for
        # an idle connection the broker resets; the suite says what failed.
        logging.getLogger("pika").setLevel(logging.CRITICAL)
    sizes = QUICK if args.quick else FULL

    try:
        check_postgres(args.postgres)
        check_broker(args.broker)
        results = _run(args, sizes)
    except BenchmarkError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE

    print(f"importer benchmarks ({sizes.mode}), {machine()}")
    print()
    print(table(results))
    print()
    print(details(results))
    if args.json is not None:
        write_json(args.json, sizes.mode, results)
    return EXIT_OK if all(r.met for r in results) or args.quick else EXIT_TARGET_MISSED


def _run(args: argparse.Namespace, sizes: Sizes) -> list[Result]:
    wanted = set(args.only or range(1, 6))
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="importer-bench-") as workdir:
        bench = Bench(args.postgres, args.broker, args.threads, Path(workdir))
        for numbers, measure in MEASUREMENTS:
            if not numbers & wanted:
                continue
            started = time.perf_counter()
            found = measure(bench, sizes)
            results.extend(r for r in found if r.number in wanted)
            print(f"measured ratio {', '.join(str(r.number) for r in found)} in "
                  f"{time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return sorted(results, key=lambda r: r.number)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure the importer's five performance ratios beside their targets.")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, in seconds: a smoke run, not a measurement")
    parser.add_argument("--only", type=_numbers, metavar="N[,N...]",
                        help="measure only these ratios (1 to 5)")
    parser.add_argument("--threads", type=int, default=8,
                        help="worker threads, and threads of the plain loop (default 8)")
    parser.add_argument("--postgres", metavar="URL",
                        default=os.environ.get("IMPORTER_BENCH_POSTGRES", DEFAULT_POSTGRES),
                        help="PostgreSQL server URL, without a database name")
    parser.add_argument("--broker", metavar="URL",
                        default=os.environ.get("IMPORTER_BENCH_BROKER", DEFAULT_BROKER),
                        help="RabbitMQ URL of a vhost the benchmarks may empty")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    return parser


def _numbers(text: str) -> list[int]:
    try:
        numbers = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,3, got {text!r}") from None
    if not all(1 <= n <= 5 for n in numbers):
        raise argparse.ArgumentTypeError("ratios are numbered 1 to 5")
    return numbers
