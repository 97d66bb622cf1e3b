"""The Dramatiq broker: RabbitMQ when configured, in-process otherwise.

Actors bind to the global broker when they are declared, so
:func:`setup_broker` runs before ``importer.actors`` declares anything.
"""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)
from dramatiq.middleware.prometheus import Prometheus
from periodiq import PeriodiqMiddleware

from .joblog import JobLogMiddleware
from .settings import Settings, get_settings

logger = logging.getLogger(__name__)

#: Longest delivery RabbitMQ may leave unacked (``consumer_timeout``),
#: which is also the longest a delayed message may wait in a worker.
RABBITMQ_CONSUMER_TIMEOUT_MS = 30 * 60 * 1000


def build_middleware(settings: Settings) -> list[Middleware]:
    """Dramatiq's standard middleware plus the importer's own."""
    metrics: list[Middleware] = [Prometheus()] if settings.metrics else []
    return [
        AgeLimit(),
        TimeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        # NOTE: the default backoff grows to 7 days, far past RabbitMQ's
        # consumer timeout; every actor here sets its own bounds.
        Retries(max_retries=5, min_backoff=2_000, max_backoff=300_000),
        CurrentMessage(),
        PeriodiqMiddleware(skip_delay=300),
        # NOTE: after Prometheus, which sets up multiprocess metrics at boot.
        *metrics,
        JobLogMiddleware(),
    ]


def build_broker(settings: Settings) -> dramatiq.Broker:
    """A RabbitMQ broker for ``settings.broker_url``, else an in-process one."""
    middleware = build_middleware(settings)
    if settings.broker_url is None:
        return StubBroker(middleware=middleware)

    return RabbitmqBroker(
        url=settings.broker_url,
        middleware=middleware,
        # NOTE: publisher confirms: a send returns once RabbitMQ has the
        # message, so a batch never records a step whose messages were lost.
        confirm_delivery=True,
    )


def setup_broker(settings: Settings | None = None) -> dramatiq.Broker:
    """Build the broker for these settings and make it the global one."""
    broker = build_broker(settings or get_settings())
    dramatiq.set_broker(broker)
    return broker


def is_embedded(broker: dramatiq.Broker) -> bool:
    """True when messages stay in this process (no broker configured)."""
    return isinstance(broker, StubBroker)
