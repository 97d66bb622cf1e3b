"""The API budget: one allowance shared by every worker process and thread.

TVmaze allows each IP a number of calls per period and answers 429
beyond it.  Firing a batch's calls at once spends the allowance in a
burst and then waits; instead, every call takes the next free *slot* on
a single timeline kept in the database, slots one interval apart, so
calls leave evenly and the allowance is spent fully with no 429s.

The timeline is one row of ``api_budget``: the time of the next free
slot.  Taking a slot is one short transaction on that row, so every
process that shares the database shares the budget, and the deployment
needs no extra service.

Every call of every item takes a slot, so on PostgreSQL that
transaction is a single statement, committed without waiting for the
disk, which holds the row's lock only for the statement's own length.
Slots are then told by the database's clock, one clock for every host
that shares the budget.

At a high allowance (a mirror, a paid plan) a round trip per call would
cost more than the call: a process then books the slots of a few
milliseconds at once and hands them to its threads.  A slot that passes
unused for longer than a few milliseconds is lost, never used late.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy.exc import IntegrityError

from .database import autocommit
from .errors import BudgetFullError
from .limits import BUDGET_MAX_WAIT
from .schema import api_budget

logger = logging.getLogger(__name__)

#: Slots are spread this much wider than the allowance, so that a call
#: leaving a little late never lets the next two land in one window.
SAFETY_MARGIN = 1.02

#: A caller that wakes this many seconds after its slot, or more, moves
#: the next slots back by as much.
LATE_SECONDS = 0.005

#: Seconds added to each window of the allowance, whatever its length:
#: calls leave and arrive a few milliseconds late (a busy host, the
#: network), which 2 % of a short window (50 calls a second) cannot absorb.
JITTER_SECONDS = 0.02

#: A process books at once the slots of this many seconds (at least
#: one, at most MAX_BLOCK): one at TVmaze's allowance, several only when
#: calls are milliseconds apart.
BLOCK_SECONDS = 0.01
MAX_BLOCK = 16

#: A slot booked ahead may still be taken this many seconds after its
#: time: half the room each window keeps for calls that leave late.
#: Far below a high allowance, a block's slots pass within microseconds;
#: without this, a process would book one per call.
HELD_SLOT_GRACE = JITTER_SECONDS / 2


class ApiBudget:
    """Hands out call slots a little over ``period / calls`` seconds apart.

    ``max_wait`` bounds how far ahead a caller may book: a caller that
    would wait longer gets :class:`BudgetFullError` instead, so that
    its message is retried later rather than holding a worker thread.
    """

    def __init__(self, engine: Engine, *, calls: int, period: float,
                 max_wait: float = BUDGET_MAX_WAIT, name: str = "tvmaze") -> None:
        self.engine = engine
        self.period = period
        self.interval = (period * SAFETY_MARGIN + JITTER_SECONDS) / calls
        self.max_wait = max_wait
        self.name = name
        self.block = max(1, min(MAX_BLOCK, int(BLOCK_SECONDS / self.interval)))
        self._postgres = engine.dialect.name == "postgresql"
        self._held: deque[float] = deque()
        self._held_lock = threading.Lock()
        self._clock_offset = 0.0

    def acquire(self) -> float:
        """Wait for the next free slot; return the seconds waited."""
        slot, now = self._next_slot()

        wait = slot - now
        if wait <= 0:
            return 0.0

        due = time.monotonic() + wait
        time.sleep(wait)
        late = time.monotonic() - due
        if late > LATE_SECONDS:
            self._push(late)
        return wait

    def defer(self, seconds: float) -> None:
        """Keep every caller away for ``seconds``, after the API said 429."""
        with self._held_lock:
            self._held.clear()
        with self.engine.begin() as connection:
            self._ensure_row(connection)
            until = self._clock(connection) + seconds
            connection.execute(
                update(api_budget)
                .where(api_budget.c.name == self.name, api_budget.c.next_slot < until)
                .values(next_slot=until)
            )
        logger.warning("API budget deferred by %.1f s after a 429.", seconds)

    def _push(self, late: float) -> None:
        """Move the slots not yet booked back by ``late`` seconds.

        NOTE: a caller that wakes late (its process was busy) calls
        closer to the calls booked after it; pushing the next slots back
        keeps every window of ``calls`` calls at least ``period`` long.
        """
        with self.engine.begin() as connection:
            connection.execute(
                update(api_budget).where(api_budget.c.name == self.name)
                .values(next_slot=api_budget.c.next_slot + late))
        logger.debug("API budget pushed back by %.3f s after a late call.", late)

    def _next_slot(self) -> tuple[float, float]:
        """A slot this process holds, or the first of a new block; and the time now."""
        if self.block == 1:
            return self._book(1)

        with self._held_lock:
            now = time.time() + self._clock_offset
            while self._held and self._held[0] < now - HELD_SLOT_GRACE:
                self._held.popleft()
            if not self._held:
                first, now = self._book(self.block)
                self._clock_offset = now - time.time()
                self._held.extend(first + i * self.interval for i in range(self.block))
            return self._held.popleft(), now

    def _book(self, slots: int) -> tuple[float, float]:
        """Take the next ``slots`` slots; return the first and the time they were taken."""
        if self._postgres:
            booked = self._book_at_once(slots)
            if booked is not None:
                return booked

        with self.engine.begin() as connection:
            next_slot = self._ensure_row(connection)
            # NOTE: read the clock only once the row is locked: a caller
            # that waited for the lock must not book a slot in its past.
            now = self._clock(connection)
            slot = max(next_slot, now)

            if slot - now > self.max_wait:
                raise BudgetFullError(retry_after=slot - now)

            connection.execute(
                update(api_budget)
                .where(api_budget.c.name == self.name)
                .values(next_slot=slot + slots * self.interval)
            )
        return slot, now

    def _book_at_once(self, slots: int) -> tuple[float, float] | None:
        """Take the next slot in one statement (PostgreSQL), or None to take the long way.

        None when the row does not exist yet or the next slot is more
        than ``max_wait`` away: the long way creates the row, or raises.
        """
        params = {"name": self.name, "length": slots * self.interval,
                  "max_wait": self.max_wait}
        with autocommit(self.engine) as connection:
            booked = connection.execute(_BOOK_AT_ONCE, params).first()
        if booked is None:
            return None

        next_slot, taken_at = booked
        return float(next_slot) - slots * self.interval, float(taken_at)

    def _clock(self, connection: Connection) -> float:
        """Now, on the clock the timeline is kept by: the database's, or this host's."""
        if self._postgres:
            return float(connection.execute(_CLOCK).scalar_one())

        return time.time()

    def _ensure_row(self, connection: Connection) -> float:
        query = select(api_budget.c.next_slot).where(api_budget.c.name == self.name)
        next_slot = connection.execute(query.with_for_update()).scalar()
        if next_slot is not None:
            return float(next_slot)

        try:
            with connection.begin_nested():
                connection.execute(api_budget.insert().values(name=self.name, next_slot=0.0))
        except IntegrityError:
            # Another process created the row first: lock theirs.
            pass
        return float(connection.execute(query.with_for_update()).scalar_one())


#: PostgreSQL's time in Unix seconds, read when evaluated (``now()`` is
#: the transaction's start).
_NOW = "extract(epoch FROM clock_timestamp())::float8"
_CLOCK = text(f"SELECT {_NOW}")

#: One booking on PostgreSQL, as plain SQL: it runs for every API call.
#: NOTE: the clock is read as the row is updated, so after its lock.
#: ``set_config`` commits the booking without waiting for the disk: a
#: booking lost in a database crash only moves the timeline back a few
#: slots, while waiting would hold the row's lock, and every caller.
_BOOK_AT_ONCE = text(
    f"UPDATE api_budget SET next_slot = GREATEST(next_slot, {_NOW}) + :length "
    "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS settings "
    f"WHERE name = :name AND next_slot <= {_NOW} + :max_wait "
    f"RETURNING next_slot, {_NOW}"
)
