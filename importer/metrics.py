"""Prometheus metrics of the importer, exported beside Dramatiq's own.

With ``IMPORTER_METRICS=true`` the worker adds Dramatiq's Prometheus
middleware, which serves every worker process's metrics on port 9191
(``dramatiq_prom_port``).  That middleware switches prometheus_client
to multiprocess mode when a worker process boots, so the importer's
metrics are created on first use, after that switch, never at import.

NOTE: prometheus_client picks its mode once, when it is first
imported; this module imports it only when the first metric is made.
An import at the top would fix the mode before the worker boots, and
the exposition server would find no metric of any process.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_metrics: dict[str, Any] = {}


def _get(name: str) -> Any:
    with _lock:
        if not _metrics:
            _metrics.update(_create())
        return _metrics[name]


def _create() -> dict[str, Any]:
    from prometheus_client import Counter, Gauge, Histogram

    return {
        "api_calls": Counter("importer_api_calls_total",
                             "TVmaze API calls, by HTTP status or error.", ["status"]),
        "api_latency": Histogram("importer_api_call_seconds", "TVmaze API call latency."),
        "rows": Counter("importer_rows_total",
                        "Rows given an outcome, by kind and outcome.", ["kind", "outcome"]),
        "rate_limited": Counter("importer_rate_limited_total",
                                "Item messages put back after a 429.", ["kind"]),
        "remaining": Gauge("importer_rows_remaining", "Rows still missing data, per kind.",
                           ["kind"], multiprocess_mode="mostrecent"),
    }


def api_call(status: str, seconds: float) -> None:
    """Count one API call and its latency."""
    _get("api_calls").labels(status=status).inc()
    _get("api_latency").observe(seconds)


def rows(kind: str, outcome: str, count: int) -> None:
    """Count rows that got an outcome."""
    if count:
        _get("rows").labels(kind=kind, outcome=outcome).inc(count)


def rate_limited(kind: str) -> None:
    _get("rate_limited").labels(kind=kind).inc()


def remaining(kind: str, count: int) -> None:
    """The rows a run still has to select, as of its last batch."""
    _get("remaining").labels(kind=kind).set(count)
