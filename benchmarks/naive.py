"""The naive design, reproduced as plain code, to measure the importer beside it.

The design the importer replaced:

* a batch selects the next rows that miss data and hands all its items
  to the workers at once, with no shared budget of API calls;
* batches follow each other after a fixed pause, however the items fare;
* a show is one call (``/shows/:id?embed=episodes``, which registers its
  regular episodes) and each episode one more (``/episodes/:id``), so a
  show costs 1 + episodes calls, and specials are never found;
* an item that gets a 429 is retried after a fixed wait (TVmaze sends
  no Retry-After), without holding a worker thread meanwhile, as a
  broker's delayed retry would.

The workers are a pool of threads, as many as the importer's worker has.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import Engine, select

from importer.payloads import parse_episode
from importer.schema import episodes, series, utcnow

from .plain import HttpStatusError, PlainImport

logger = logging.getLogger(__name__)

#: Tries of one item before it is given up (429s included).
MAX_TRIES = 50


class NaiveImport:
    """Series and episodes imported the naive way; see the module's docstring."""

    def __init__(self, engine: Engine, api_url: str, *, threads: int,
                 batch_size: dict[str, int], pause: float, retry_wait: float) -> None:
        self.plain = PlainImport(engine, api_url, threads)
        self.engine = engine
        self.batch_size = batch_size
        self.pause = pause
        self.retry_wait = retry_wait
        self.failed = 0
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="naive")
        self._retries = _DelayedSubmitter(self._pool)
        self._pending = 0
        self._idle = threading.Condition()

    def close(self) -> None:
        self._retries.stop()
        self._pool.shutdown()
        self.plain.close()

    def run(self, kind: str) -> None:
        """Every batch of ``kind``, a fixed pause apart; return once every item has ended."""
        cursor = 0
        while True:
            rows = self._next_batch(kind, cursor)
            if not rows:
                break

            for row_id, tvmaze_id in rows:
                self._send(kind, row_id, tvmaze_id, tries=1)
            cursor = rows[-1][0]
            if len(rows) < self.batch_size[kind]:
                break
            time.sleep(self.pause)

        with self._idle:
            self._idle.wait_for(lambda: self._pending == 0)

    def _next_batch(self, kind: str, cursor: int) -> list[tuple[int, int]]:
        table = series if kind == "series" else episodes
        query = (select(table.c.id, table.c.tvmaze_id)
                 .where(table.c.data_last_updated_at.is_(None), table.c.id > cursor)
                 .order_by(table.c.id).limit(self.batch_size[kind]))
        with self.engine.connect() as connection:
            return [(row_id, tvmaze_id) for row_id, tvmaze_id in connection.execute(query)]

    def _send(self, kind: str, row_id: int, tvmaze_id: int, tries: int) -> None:
        with self._idle:
            self._pending += 1
        self._pool.submit(self._item, kind, row_id, tvmaze_id, tries)

    def _item(self, kind: str, row_id: int, tvmaze_id: int, tries: int) -> None:
        try:
            if kind == "series":
                self.plain.import_series(row_id, tvmaze_id)
            else:
                self._import_episode(row_id, tvmaze_id)
        except (HttpStatusError, httpx.TransportError) as error:
            if getattr(error, "status", 429) == 429 and tries < MAX_TRIES:
                self._retry_later(kind, row_id, tvmaze_id, tries + 1)
            else:
                self._give_up()
        except Exception:  # one failed row never stops the others
            logger.exception("Naive item %s %d failed.", kind, tvmaze_id)
            self._give_up()
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def _retry_later(self, kind: str, row_id: int, tvmaze_id: int, tries: int) -> None:
        # NOTE: counted as pending from now, so that the run cannot end
        # while the retry waits.
        with self._idle:
            self._pending += 1
        self._retries.submit_later(self.retry_wait, lambda: self._pool.submit(
            self._item, kind, row_id, tvmaze_id, tries))

    def _give_up(self) -> None:
        with self._idle:
            self.failed += 1

    def _import_episode(self, row_id: int, tvmaze_id: int) -> None:
        _, data = parse_episode(self.plain.get(f"/episodes/{tvmaze_id}"))
        with self.engine.begin() as connection:
            self.plain.write_episodes(connection, [{"row_id": row_id, **data}], utcnow())


class _DelayedSubmitter:
    """Runs callables after a delay from one timer thread, as a broker's delay queue does."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool
        self._heap: list[tuple[float, int, Callable[[], object]]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="naive-retries", daemon=True)
        self._thread.start()

    def submit_later(self, delay: float, function: Callable[[], object]) -> None:
        with self._changed:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), function))
            self._changed.notify()

    def stop(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify()
        self._thread.join()

    def _loop(self) -> None:
        with self._changed:
            while not self._stopping:
                if not self._heap:
                    self._changed.wait()
                    continue

                due, _, function = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._changed.wait(wait)
                    continue

                heapq.heappop(self._heap)
                function()
