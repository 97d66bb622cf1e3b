"""A small TVmaze API client: the calls the importer needs, and their outcomes.

Every call waits for a slot of the shared :class:`~importer.budget.ApiBudget`,
has explicit connect and read timeouts (shorter than the actors' time
limits, which cannot interrupt a blocked socket read), and turns each
kind of failure into one :class:`~importer.errors.ApiError` subclass.
"""

from __future__ import annotations

import logging
import threading
import time
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from . import metrics
from .budget import ApiBudget
from .database import get_engine
from .errors import InvalidPayloadError, NotFoundError, RateLimitedError, TransientApiError
from .limits import MAX_RATE_LIMIT_WAIT
from .settings import get_settings

logger = logging.getLogger(__name__)

USER_AGENT = "importer (TVmaze data importer)"


class TvmazeClient:
    """Fetches shows and episode lists from a TVmaze-compatible API."""

    def __init__(self, base_url: str, *, connect_timeout: float = 5.0, read_timeout: float = 15.0,
                 budget: ApiBudget | None = None) -> None:
        # NOTE: httpx drops the path of every call whose base URL has a
        # query (an access token, say), so the query goes with each call.
        base_url, _, query = base_url.partition("?")
        timeout = httpx.Timeout(read_timeout, connect=connect_timeout, pool=connect_timeout)
        self.http = httpx.Client(
            base_url=base_url,
            params=httpx.QueryParams(query),
            timeout=timeout,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )
        self.budget = budget

    def show(self, tvmaze_id: int, *, embed_episodes: bool = False) -> Any:
        """``GET /shows/:id``, with the regular episodes embedded if asked."""
        params = {"embed": "episodes"} if embed_episodes else {}
        return self.get(f"/shows/{tvmaze_id}", params)

    def episodes(self, tvmaze_id: int) -> Any:
        """``GET /shows/:id/episodes?specials=1``: every episode, specials included."""
        return self.get(f"/shows/{tvmaze_id}/episodes", {"specials": "1"})

    def get(self, path: str, params: dict[str, str]) -> Any:
        """One budgeted GET, returning the decoded JSON body."""
        if self.budget is not None:
            self.budget.acquire()

        started = time.perf_counter()
        try:
            response = self.http.get(path, params=params)
        except httpx.TimeoutException as error:
            metrics.api_call("timeout", time.perf_counter() - started)
            raise TransientApiError(f"timeout: {type(error).__name__}") from None
        except httpx.TransportError as error:
            metrics.api_call("error", time.perf_counter() - started)
            raise TransientApiError(f"connection error: {type(error).__name__}") from None

        metrics.api_call(str(response.status_code), time.perf_counter() - started)
        return self._decode(response)

    def close(self) -> None:
        self.http.close()

    def _pause(self) -> float:
        """Seconds to keep away after a 429 that names no Retry-After.

        NOTE: one window of the allowance is enough for the calls that
        filled it to leave it.  On a short window (50 calls a second)
        the default wait would idle the budget for 250 calls after one
        call too many.
        """
        if self.budget is None:
            return DEFAULT_RATE_LIMIT_WAIT

        return min(DEFAULT_RATE_LIMIT_WAIT, self.budget.period)

    def _decode(self, response: httpx.Response) -> Any:
        status = response.status_code
        if status == 404:
            raise NotFoundError(f"HTTP 404 for {response.request.url.path}")

        if status == 429:
            wait = retry_after_seconds(response.headers.get("Retry-After")) or self._pause()
            # NOTE: a retry waits unacked in the worker, where a wait past
            # RabbitMQ's consumer timeout would have it delivered again.
            wait = min(wait, MAX_RATE_LIMIT_WAIT)
            if self.budget is not None:
                self.budget.defer(wait)
            raise RateLimitedError(wait)
        if status >= 500:
            raise TransientApiError(f"HTTP {status}")

        if status != 200:
            raise InvalidPayloadError(f"unexpected HTTP {status}")

        try:
            return response.json()
        except ValueError:
            snippet = response.text[:60].replace("\n", " ")
            raise InvalidPayloadError(f"body is not JSON: {snippet!r}") from None


_client: TvmazeClient | None = None
_client_lock = threading.Lock()


def get_client() -> TvmazeClient:
    """The API client of this process, sharing the database's API budget."""
    global _client

    with _client_lock:
        if _client is None:
            settings = get_settings()
            budget = ApiBudget(get_engine(), calls=settings.api_calls,
                               period=settings.api_period)
            _client = TvmazeClient(settings.api_url, connect_timeout=settings.connect_timeout,
                                   read_timeout=settings.read_timeout, budget=budget)
        return _client


def reset_client() -> None:
    """Close and forget this process's client (after the settings change)."""
    global _client

    with _client_lock:
        if _client is not None:
            _client.close()
        _client = None


#: Seconds to wait after a 429 that names no Retry-After (TVmaze names none).
DEFAULT_RATE_LIMIT_WAIT = 5.0


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta or HTTP date), if usable."""
    if not value:
        return None

    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None
