"""The exceptions this package raises, under one root.

    ImporterError
     ├── ConfigurationError     a setting or option is invalid
     ├── UnavailableError       the database or the broker cannot be reached
     ├── SchemaMissingError     the database has no (or an old) schema
     ├── RunActiveError         a run of the same kind is already active
     ├── RunAbandonedError      a followed run ended without completing
     ├── RunNotFoundError       no run has the given id
     ├── RunTimeoutError        a followed run did not finish in time
     └── ApiError               the TVmaze API did not give usable data
          ├── NotFoundError         404: the show or episode does not exist
          ├── InvalidPayloadError   the body is not the JSON we expect
          ├── TransientApiError     5xx, timeout, connection error
          └── RateLimitedError      429
               └── BudgetFullError      the shared budget has no slot soon enough
"""

from __future__ import annotations

from datetime import datetime


class ImporterError(Exception):
    """Base class of every error raised by this package."""


class ConfigurationError(ImporterError):
    """Raised when a setting or a command-line option has an invalid value."""


class UnavailableError(ImporterError):
    """Raised when the database or the broker cannot be reached."""


class SchemaMissingError(ImporterError):
    """Raised when the database lacks the schema this version needs."""


class RunActiveError(ImporterError):
    """Raised when a run is started while one of the same kind is active."""

    def __init__(self, run_id: int, kind: str, started_at: datetime, selected: int,
                 total: int, stale_at: datetime) -> None:
        self.run_id = run_id
        self.kind = kind
        self.started_at = started_at
        self.selected = selected
        self.total = total
        self.stale_at = stale_at
        article = "an" if kind[0] in "aeiou" else "a"
        super().__init__(
            f"{article} {kind} run is already active: run {run_id}, started "
            f"{started_at:%Y-%m-%d %H:%M:%S} UTC, {selected} of {total} rows selected; "
            f"it counts as dead if it makes no progress until {stale_at:%H:%M:%S} UTC, "
            "or --takeover abandons it now"
        )


class RunAbandonedError(ImporterError):
    """Raised when a run being followed is abandoned (taken over by another start)."""


class RunInterruptedError(ImporterError):
    """Raised when an embedded run is interrupted (Ctrl-C, SIGTERM) and so abandoned."""


class RunNotFoundError(ImporterError):
    """Raised when a run to follow does not exist."""


class RunTimeoutError(ImporterError):
    """Raised when a followed run is still going when its caller's timeout ends."""


class ApiError(ImporterError):
    """Raised (as one of its subclasses) when an API call gives no usable data."""


class NotFoundError(ApiError):
    """Raised when the API answers 404 for a show or an episode."""


class InvalidPayloadError(ApiError):
    """Raised when a response body is not JSON of the expected shape."""


class TransientApiError(ApiError):
    """Raised on a 5xx answer, a timeout or a connection error."""


class RateLimitedError(ApiError):
    """Raised when the API answers 429; carries how long to wait, in seconds."""

    def __init__(self, retry_after: float | None) -> None:
        self.retry_after = retry_after
        super().__init__(f"rate limited (Retry-After: {retry_after})")


class BudgetFullError(RateLimitedError):
    """Raised when the shared API budget has no free slot within a caller's wait.

    Not an answer of the API: the allowance is simply booked ahead, and
    the message is retried once the slots it would wait for have passed.
    """

    def __init__(self, retry_after: float) -> None:
        super().__init__(retry_after)
        self.args = (f"API budget booked {retry_after:.1f} s ahead",)
