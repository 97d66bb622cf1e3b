"""Prometheus metrics of the importer, beside Dramatiq's own."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

API_CALLS = Counter("importer_api_calls_total", "TVmaze API calls by HTTP status.", ["status"])
API_LATENCY = Histogram("importer_api_call_seconds", "TVmaze API call latency.")


def api_call(path: str, status: str, seconds: float) -> None:
    """Count one API call and its latency."""
    API_CALLS.labels(status=status).inc()
    API_LATENCY.observe(seconds)
