"""The API budget: calls spread evenly, shared by every process using the database."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from importer import budget as budget_module
from importer.budget import HELD_SLOT_GRACE, SAFETY_MARGIN, ApiBudget
from importer.database import create_database_engine
from importer.errors import RateLimitedError
from importer.migrate import upgrade


@pytest.fixture
def engines(database_url: str) -> Iterator[list[Engine]]:
    """Three engines on one migrated database, standing in for three processes."""
    engines = [create_database_engine(database_url) for _ in range(3)]
    upgrade(engines[0])
    yield engines
    for engine in engines:
        engine.dispose()


@pytest.fixture
def engine(engines: list[Engine]) -> Engine:
    return engines[0]


def book_all(budgets: list[ApiBudget], calls_each: int) -> list[float]:
    """Let each budget (one per thread) take ``calls_each`` slots; return the call times."""
    times: list[float] = []
    lock = threading.Lock()

    def caller(budget: ApiBudget) -> None:
        for _ in range(calls_each):
            budget.acquire()
            with lock:
                times.append(time.time())

    threads = [threading.Thread(target=caller, args=(b,)) for b in budgets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return sorted(times)


def test_calls_from_many_callers_leave_evenly_spaced_at_the_allowed_rate(
        engines: list[Engine]) -> None:
    budgets = [ApiBudget(e, calls=50, period=1.0) for e in engines for _ in range(2)]

    times = book_all(budgets, calls_each=5)

    gaps = [b - a for a, b in itertools.pairwise(times)]
    interval = 1.0 / 50 * SAFETY_MARGIN
    assert len(times) == 30
    assert times[-1] - times[0] >= 29 * interval * 0.95
    assert sum(gaps) / len(gaps) == pytest.approx(interval, rel=0.15)
    # Sleeps wake a little late, so allow one call more than the window's slots.
    assert max(sum(1 for t in times if start <= t < start + 0.5) for start in times) <= 26


def test_a_caller_that_would_wait_too_long_is_told_to_come_back_later(engine: Engine) -> None:
    budget = ApiBudget(engine, calls=1, period=10.0, max_wait=1.0)
    budget.acquire()

    with pytest.raises(RateLimitedError) as raised:
        budget.acquire()

    assert raised.value.retry_after == pytest.approx(10.0 * SAFETY_MARGIN, abs=1.0)


def test_a_429_keeps_every_caller_away_for_the_time_asked(engine: Engine) -> None:
    budget = ApiBudget(engine, calls=1000, period=1.0, max_wait=0.5)
    budget.defer(5.0)

    with pytest.raises(RateLimitedError):
        ApiBudget(engine, calls=1000, period=1.0, max_wait=0.5).acquire()


def test_at_a_high_allowance_a_process_books_several_slots_a_round_trip_and_keeps_the_rate(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    budget = ApiBudget(engine, calls=1000, period=1.0)
    bookings: list[int] = []
    book = budget._book
    monkeypatch.setattr(budget, "_book", lambda slots: bookings.append(slots) or book(slots))

    times = book_all([budget] * 4, calls_each=50)

    assert budget.block > 1 and set(bookings) == {budget.block}
    assert len(bookings) < len(times) / 2
    assert times[-1] - times[0] >= 199 * budget.interval * 0.9
    assert max(sum(1 for t in times if start <= t < start + 0.1) for start in times) <= 101


def test_a_429_drops_the_slots_a_process_holds(engine: Engine) -> None:
    budget = ApiBudget(engine, calls=1000, period=1.0, max_wait=0.5)
    budget.acquire()

    budget.defer(5.0)

    with pytest.raises(RateLimitedError):
        budget.acquire()


class Clock:
    """A clock for the budget that moves only when told to."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    monotonic = time

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def held_slot_bookings(engine: Engine, monkeypatch: pytest.MonkeyPatch, calls: int,
                       apart: float) -> int:
    """Blocks booked by a process calling ``calls`` times, ``apart`` seconds apart."""
    budget = ApiBudget(engine, calls=100_000, period=1.0)
    clock = Clock(1_000_000.0)
    monkeypatch.setattr(budget_module, "time", clock)
    bookings: list[int] = []

    def book(slots: int) -> tuple[float, float]:
        bookings.append(slots)
        return clock.now, clock.now

    monkeypatch.setattr(budget, "_book", book)
    for _ in range(calls):
        budget.acquire()
        clock.sleep(apart)
    return len(bookings)


def test_far_below_a_high_allowance_a_block_serves_the_calls_of_its_grace(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    bookings = held_slot_bookings(engine, monkeypatch, calls=12, apart=HELD_SLOT_GRACE / 5)

    assert bookings == 2


def test_a_held_slot_is_never_taken_later_than_its_grace(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    bookings = held_slot_bookings(engine, monkeypatch, calls=5, apart=HELD_SLOT_GRACE * 1.1)

    assert bookings == 5
