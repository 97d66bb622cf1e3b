"""The Dramatiq broker: RabbitMQ when configured, in-process otherwise.

Actors bind to the global broker when they are declared, so
:func:`setup_broker` runs before ``importer.actors`` declares anything.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import dramatiq
import pika
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage, Middleware, Retries, TimeLimit
from dramatiq.middleware.prometheus import Prometheus
from periodiq import PeriodiqMiddleware
from pika.adapters.blocking_connection import ReturnedMessage

from .catalogue import KINDS
from .errors import UnavailableError
from .joblog import JobLogMiddleware
from .limits import BATCH_MAX_BACKOFF, MIN_BACKOFF
from .redaction import redact
from .settings import Settings, get_settings

logger = logging.getLogger(__name__)

#: The two queues of each kind of import.
QUEUE_ROLES = ("batches", "items")

#: Item messages whose retries are spent, on their way to a failed outcome.
EXHAUSTED_QUEUE = "importer.exhausted"

#: Dramatiq's queue for actors that name none: the scheduled starts.
DEFAULT_QUEUE = "default"

#: Seconds to wait for RabbitMQ before a command says it is unreachable.
CONNECT_TIMEOUT = 5.0


def queue_name(kind: str, role: str) -> str:
    """``importer.<kind>.<role>``: names that explain themselves in the RabbitMQ UI."""
    return f"importer.{kind}.{role}"


def queue_names() -> Iterator[str]:
    """Every queue the importer uses, its delay and dead-letter queues included."""
    names = [queue_name(kind, role) for kind in KINDS for role in QUEUE_ROLES]
    for name in [*names, EXHAUSTED_QUEUE, DEFAULT_QUEUE]:
        for suffix in ("", ".DQ", ".XQ"):
            yield name + suffix


def connect(url: str, timeout: float = CONNECT_TIMEOUT) -> pika.BlockingConnection:
    """A connection to RabbitMQ, or :class:`UnavailableError` within ``timeout``."""
    parameters = pika.URLParameters(url)
    parameters.connection_attempts = 1
    parameters.socket_timeout = timeout
    parameters.stack_timeout = timeout
    try:
        return pika.BlockingConnection(parameters)
    except Exception as error:  # noqa: BLE001 -- pika raises many kinds
        raise UnavailableError(
            f"cannot reach the broker at {redact(url)}: {type(error).__name__}") from None


def queue_depths(url: str, names: Iterable[str] | None = None) -> dict[str, dict[str, int]]:
    """Ready messages and consumers of each queue (all the importer's by default) that exists."""
    depths: dict[str, dict[str, int]] = {}
    connection = connect(url)
    try:
        for name in queue_names() if names is None else names:
            # NOTE: a passive declare of a missing queue closes its channel.
            channel = connection.channel()
            try:
                declared = channel.queue_declare(name, passive=True)
            except pika.exceptions.ChannelClosedByBroker:
                continue

            depths[name] = {"ready": declared.method.message_count,
                            "consumers": declared.method.consumer_count}
            channel.close()
    finally:
        connection.close()
    return depths


def consumers(url: str, queue: str) -> int | None:
    """How many consumers ``queue`` has on RabbitMQ; None when it cannot be told."""
    try:
        depth = queue_depths(url, [queue]).get(queue)
    except UnavailableError:
        return None

    return None if depth is None else depth["consumers"]


#: Tries of a batch of messages that a closed connection interrupts.
SEND_ATTEMPTS = 6

_publishing = threading.local()


def send_together(broker: dramatiq.Broker, messages: Sequence[dramatiq.Message[Any]]) -> None:
    """Enqueue ``messages`` at once: when this returns, the broker holds every one.

    NOTE: a publisher confirm per message costs a round trip each, and a
    batch step waiting for hundreds of them, in a worker whose other
    threads keep the interpreter busy, paced the whole run.  On RabbitMQ
    the batch goes out in one AMQP transaction instead: one round trip
    for all of it.  A batch that fails is sent again whole, so some of
    its items may arrive twice; an item that finds its rows done writes
    and counts nothing.
    """
    if not isinstance(broker, RabbitmqBroker):
        for message in messages:
            broker.enqueue(message)
        return

    queues = {message.queue_name for message in messages}
    for attempt in range(1, SEND_ATTEMPTS + 1):
        try:
            for queue in queues:
                broker.declare_queue(queue, ensure=True)
            _publish_in_transaction(broker, messages)
            return
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as error:
            # As dramatiq does: drop this thread's connection, so that the
            # next try opens a new one, and declare the queues again when
            # one of them has gone.
            del broker.connection
            _publishing.__dict__.clear()
            if isinstance(error, pika.exceptions.UnroutableError):
                broker.queues_pending.update(queues)
            if attempt == SEND_ATTEMPTS:
                raise

            logger.debug("Sending %d messages failed (%s); try %d of %d.", len(messages),
                         type(error).__name__, attempt, SEND_ATTEMPTS)


def _publish_in_transaction(broker: RabbitmqBroker,
                            messages: Sequence[dramatiq.Message[Any]]) -> None:
    channel = _transaction_channel(broker)
    _publishing.returned = []
    for message in messages:
        broker.emit_before("enqueue", message, None)
        # NOTE: mandatory: a message no queue takes (one deleted by hand)
        # comes back before the commit is confirmed, and fails the batch.
        channel.basic_publish(exchange="", routing_key=message.queue_name,
                              body=message.encode(), mandatory=True,
                              properties=pika.BasicProperties(delivery_mode=2))
    channel.tx_commit()
    channel.connection.process_data_events(0)
    if _publishing.returned:
        raise pika.exceptions.UnroutableError(_publishing.returned)

    for message in messages:
        broker.emit_after("enqueue", message, None)


def _transaction_channel(broker: RabbitmqBroker) -> Any:
    """This thread's transactional channel, on this thread's connection to the broker."""
    connection = broker.connection
    channel = getattr(_publishing, "channel", None)
    if channel is None or not channel.is_open or channel.connection is not connection:
        channel = connection.channel()
        channel.tx_select()
        channel.add_on_return_callback(_keep_returned)
        _publishing.channel = channel
    return channel


def _keep_returned(channel: Any, method: Any, properties: Any, body: bytes) -> None:
    _publishing.returned.append(ReturnedMessage(method, properties, body))


def build_middleware(settings: Settings) -> list[Middleware]:
    """The Dramatiq middleware the actors use, plus the importer's own.

    NOTE: each middleware runs hooks around every message; the standard
    ones no actor here uses (age limits, callbacks, pipelines, shutdown
    notifications) are left out.
    """
    metrics: list[Middleware] = [Prometheus()] if settings.metrics else []
    return [
        TimeLimit(),
        # NOTE: the default backoff grows to 7 days, far past RabbitMQ's
        # consumer timeout; every actor here sets its own bounds.
        Retries(max_retries=5, min_backoff=MIN_BACKOFF * 1000,
                max_backoff=BATCH_MAX_BACKOFF * 1000),
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
