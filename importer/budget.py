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
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.exc import IntegrityError

from .errors import RateLimitedError
from .schema import api_budget

logger = logging.getLogger(__name__)

#: Slots are spread this much wider than the allowance, so that a call
#: leaving a little late never lets the next two land in one window.
SAFETY_MARGIN = 1.02


class ApiBudget:
    """Hands out call slots ``period / calls`` seconds apart.

    ``max_wait`` bounds how far ahead a caller may book: a caller that
    would wait longer gets :class:`RateLimitedError` instead, so that
    its message is retried later rather than holding a worker thread.
    """

    def __init__(self, engine: Engine, *, calls: int, period: float, max_wait: float = 20.0,
                 name: str = "tvmaze") -> None:
        self.engine = engine
        self.interval = period / calls * SAFETY_MARGIN
        self.max_wait = max_wait
        self.name = name

    def acquire(self) -> float:
        """Wait for the next free slot; return the seconds waited."""
        slot, now = self._book()

        wait = slot - now
        if wait > 0:
            time.sleep(wait)
        return max(wait, 0.0)

    def defer(self, seconds: float) -> None:
        """Keep every caller away for ``seconds``, after the API said 429."""
        until = time.time() + seconds
        with self.engine.begin() as connection:
            self._ensure_row(connection)
            connection.execute(
                update(api_budget)
                .where(api_budget.c.name == self.name, api_budget.c.next_slot < until)
                .values(next_slot=until)
            )
        logger.warning("API budget deferred by %.1f s after a 429.", seconds)

    def _book(self) -> tuple[float, float]:
        """Take the next slot; return it and the time it was taken."""
        with self.engine.begin() as connection:
            next_slot = self._ensure_row(connection)
            # NOTE: read the clock only once the row is locked: a caller
            # that waited for the lock must not book a slot in its past.
            now = time.time()
            slot = max(next_slot, now)

            if slot - now > self.max_wait:
                raise RateLimitedError(retry_after=slot - now)

            connection.execute(
                update(api_budget)
                .where(api_budget.c.name == self.name)
                .values(next_slot=slot + self.interval)
            )
        return slot, now

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

