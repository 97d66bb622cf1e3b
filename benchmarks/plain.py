"""An item's work with nothing around it: fetch, parse, write.

This is the yardstick of the throughput ratio: a loop over the rows
that miss data, on a pool of threads, doing the calls and the writes an
item does, with no queue, no run, no budget and no outcome bookkeeping.
The naive design (:mod:`benchmarks.naive`) writes the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from sqlalchemy import Engine, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert

from importer.payloads import Row, embedded_episodes, parse_episode, parse_show
from importer.schema import IMPORTED, episodes, series, utcnow

#: Seconds before a request gives up, as the importer's defaults.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 15.0


class HttpStatusError(Exception):
    """Raised when the API answers anything but 200."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class PlainImport:
    """Fetch-and-write functions for series and episodes, and a loop to run them."""

    def __init__(self, engine: Engine, api_url: str, threads: int) -> None:
        self.engine = engine
        self.threads = threads
        self.http = httpx.Client(
            base_url=api_url,
            timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        response = self.http.get(path, params=params)
        if response.status_code != 200:
            raise HttpStatusError(response.status_code)
        return response.json()

    def import_series(self, row_id: int, tvmaze_id: int) -> None:
        """One show, as the importer fetches it, and its regular episodes registered."""
        payload = self.get(f"/shows/{tvmaze_id}", {"embed": "episodes"})
        self.write_series(row_id, tvmaze_id, payload)

    def write_series(self, row_id: int, tvmaze_id: int, payload: Any) -> None:
        data = parse_show(payload, tvmaze_id)
        now = utcnow()
        listed = [parse_episode(e) for e in embedded_episodes(payload)]
        with self.engine.begin() as connection:
            connection.execute(update(series).where(series.c.id == row_id).values(
                **data, data_last_updated_at=now, outcome=IMPORTED, checked_at=now))
            if listed:
                connection.execute(insert(episodes).on_conflict_do_nothing(), [
                    {"tvmaze_id": t, "series_id": row_id, "season": e["season"],
                     "number": e["number"], "created_at": now} for t, e in listed])

    def import_episodes(self, series_id: int, show_tvmaze_id: int,
                        rows: dict[int, int]) -> None:
        """One show's episode list; ``rows`` maps TVmaze ids to the rows to fill."""
        payload = self.get(f"/shows/{show_tvmaze_id}/episodes", {"specials": "1"})
        parsed = dict(parse_episode(item) for item in payload)
        now = utcnow()
        filled = [{"row_id": rows[t], **data} for t, data in parsed.items() if t in rows]
        new = [{"tvmaze_id": t, "series_id": series_id, "created_at": now,
                "data_last_updated_at": now, "outcome": IMPORTED, "checked_at": now, **data}
               for t, data in parsed.items() if t not in rows]
        with self.engine.begin() as connection:
            if filled:
                self.write_episodes(connection, filled, now)
            if new:
                connection.execute(insert(episodes).on_conflict_do_nothing(), new)

    @staticmethod
    def write_episodes(connection: Any, filled: list[Row], now: Any) -> None:
        columns: dict[str, Any] = {key: bindparam(key) for key in filled[0] if key != "row_id"}
        columns.update(data_last_updated_at=now, outcome=IMPORTED, checked_at=now)
        connection.execute(
            update(episodes).where(episodes.c.id == bindparam("row_id")).values(columns),
            filled)

    def run(self, kind: str) -> tuple[int, float]:
        """Import every row of ``kind`` that misses data; return (items, seconds)."""
        work = self._series_work() if kind == "series" else self._episodes_work()
        started = time.perf_counter()
        with ThreadPoolExecutor(self.threads, thread_name_prefix="plain") as pool:
            for future in [pool.submit(item) for item in work]:
                future.result()
        return len(work), time.perf_counter() - started

    def _series_work(self) -> list[Callable[[], None]]:
        query = (select(series.c.id, series.c.tvmaze_id)
                 .where(series.c.data_last_updated_at.is_(None)).order_by(series.c.id))
        with self.engine.connect() as connection:
            rows = list(connection.execute(query))
        return [_bind(self.import_series, row_id, tvmaze_id) for row_id, tvmaze_id in rows]

    def _episodes_work(self) -> list[Callable[[], None]]:
        query = (select(episodes.c.series_id, series.c.tvmaze_id, episodes.c.tvmaze_id,
                        episodes.c.id)
                 .join(series, series.c.id == episodes.c.series_id)
                 .where(episodes.c.data_last_updated_at.is_(None))
                 .order_by(episodes.c.series_id, episodes.c.id))
        shows: dict[tuple[int, int], dict[int, int]] = {}
        with self.engine.connect() as connection:
            for series_id, show_id, tvmaze_id, row_id in connection.execute(query):
                shows.setdefault((series_id, show_id), {})[tvmaze_id] = row_id
        return [_bind(self.import_episodes, series_id, show_id, rows)
                for (series_id, show_id), rows in shows.items()]


def _bind(function: Callable[..., None], *args: Any) -> Callable[[], None]:
    return lambda: function(*args)
