"""Settings, read from ``IMPORTER_*`` environment variables.

Every setting is validated when it is read, so a bad value stops a
command before anything is enqueued or written.
"""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .errors import ConfigurationError
from .limits import (
    BUDGET_MAX_WAIT,
    ITEM_TIME_LIMIT,
    MAX_BATCH_SIZE,
    MAX_DELAY_SECONDS,
    max_call_seconds,
)

DATABASE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")
BROKER_SCHEMES = ("amqp", "amqps")


class Settings(BaseSettings):
    """The importer's configuration; see docs/configuration.md."""

    model_config = SettingsConfigDict(env_prefix="IMPORTER_", extra="ignore")

    database_url: str = "sqlite:///importer.db"
    broker_url: str | None = None
    api_url: str = "https://api.tvmaze.com"

    #: The API allowance shared by every worker: ``api_calls`` per ``api_period``.
    api_calls: int = Field(default=20, ge=1, le=100_000)
    api_period: float = Field(default=10.0, gt=0, le=3600)

    connect_timeout: float = Field(default=5.0, gt=0, le=60)
    read_timeout: float = Field(default=15.0, gt=0, le=60)

    #: Threads of the in-process worker used when no broker is configured.
    worker_threads: int = Field(default=8, ge=1, le=64)

    #: Transient failures of one row before it is recorded as failed for the run.
    max_item_retries: int = Field(default=3, ge=0, le=10)

    #: Failed runs after which a row is parked until ``retry-failed``.
    park_after_runs: int = Field(default=3, ge=1, le=100)

    #: Days before a run re-checks a row that answered 404.
    not_found_recheck_days: float = Field(default=7.0, ge=0, le=3650)

    #: Defaults of every entry point (CLI, Python, schedule).
    series_batch_size: int = Field(default=50, ge=1, le=MAX_BATCH_SIZE)
    episodes_batch_size: int = Field(default=100, ge=1, le=MAX_BATCH_SIZE)
    batch_delay: float = Field(default=10.0, ge=0, le=MAX_DELAY_SECONDS)

    #: Serve Prometheus metrics from the worker (port 9191).
    metrics: bool = False

    #: Cron specs of the daily schedule (``periodiq importer.actors``).
    series_schedule: str = "0 3 * * *"
    episodes_schedule: str = "30 3 * * *"

    #: Days the schedule keeps ``job_logs`` records (0: forever), and when it prunes them.
    log_retention_days: float = Field(default=90.0, ge=0, le=36_500)
    prune_schedule: str = "0 4 * * *"

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in DATABASE_SCHEMES:
            known = ", ".join(DATABASE_SCHEMES)
            raise ValueError(f"unknown scheme {scheme!r}; use one of {known}")

        try:
            make_url(value)
        except (ArgumentError, ValueError):
            raise ValueError("expected a URL like postgresql://user@host:5432/name "
                             "or sqlite:///path") from None
        if scheme == "postgresql":
            # NOTE: psycopg 3 is the driver this package installs.
            return "postgresql+psycopg" + value[len("postgresql"):]
        return value

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, value: str | None) -> str | None:
        if not value:
            return None

        parts = urlsplit(value)
        if parts.scheme not in BROKER_SCHEMES or not parts.hostname or not _has_valid_port(value):
            raise ValueError("expected a URL like amqp://user@host:5672/vhost")

        return value

    @field_validator("series_schedule", "episodes_schedule", "prune_schedule")
    @classmethod
    def _cron_spec(cls, value: str) -> str:
        from periodiq import cron

        try:
            cron(value)
        except Exception:  # noqa: BLE001 -- the parser raises several kinds
            raise ValueError(f"{value!r} is not a cron spec like '0 3 * * *'") from None
        return value

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL")

        return value.rstrip("/")

    @model_validator(mode="after")
    def _calls_end_within_the_item_time_limit(self) -> Settings:
        # NOTE: TimeLimit cannot interrupt a blocked socket read, so the
        # timeouts themselves must end a call before its actor's limit.
        if max_call_seconds(self.connect_timeout, self.read_timeout) >= ITEM_TIME_LIMIT:
            longest = ITEM_TIME_LIMIT - BUDGET_MAX_WAIT
            raise ValueError(
                f"IMPORTER_CONNECT_TIMEOUT and IMPORTER_READ_TIMEOUT: 2 * connect + read must "
                f"stay below {longest} s, so that a call ends within its item's time limit")
        return self

    @property
    def api_interval(self) -> float:
        """Seconds between two calls when the allowance is spent evenly."""
        return self.api_period / self.api_calls


def _has_valid_port(url: str) -> bool:
    try:
        _ = urlsplit(url).port
    except ValueError:
        return False

    return True


def load_settings() -> Settings:
    """Read the settings, turning a validation error into one clear line."""
    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if not first["loc"]:
            # NOTE: a check of several settings names them itself.
            raise ConfigurationError(message) from None
        raise ConfigurationError(f"IMPORTER_{str(first['loc'][0]).upper()}: {message}") from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once."""
    return load_settings()
