"""The broker: queues named for the management UI, and batches of messages sent at once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker

from importer import actors
from importer.broker import connect, queue_names, send_together


def test_queue_names_are_every_queue_the_actors_declare_with_delay_and_dead_letters() -> None:
    declared = {actor.queue_name for actor in actors.broker.actors.values()}

    expected = {name + suffix for name in declared for suffix in ("", ".DQ", ".XQ")}
    assert set(queue_names()) == expected


def test_the_importers_queues_are_named_by_kind_and_role() -> None:
    bases = {name for name in queue_names() if not name.endswith((".DQ", ".XQ"))}

    assert bases == {"importer.series.batches", "importer.series.items",
                     "importer.episodes.batches", "importer.episodes.items",
                     "importer.exhausted", "default"}


@pytest.fixture
def rabbitmq_broker(rabbitmq: str) -> Iterator[tuple[RabbitmqBroker, str]]:
    """A RabbitMQ broker as the actors use it, and a queue of the test's own."""
    broker = RabbitmqBroker(url=rabbitmq, confirm_delivery=True)
    queue = f"importer.test-{uuid.uuid4().hex[:8]}"
    yield broker, queue
    broker.close()
    with connect(rabbitmq) as connection:
        channel = connection.channel()
        for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
            channel.queue_delete(name)


def _messages(queue: str, count: int) -> list[dramatiq.Message[Any]]:
    return [dramatiq.Message(queue_name=queue, actor_name="import_series", args=(1, n, n),
                             kwargs={}, options={}) for n in range(count)]


def _queued(url: str, queue: str) -> list[tuple[Any, ...]]:
    """The args of every message in ``queue``, taken off it."""
    taken = []
    with connect(url) as connection:
        channel = connection.channel()
        while True:
            method, _, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return taken
            taken.append(tuple(dramatiq.Message.decode(body).args))


def test_messages_sent_together_all_reach_their_queue(
        rabbitmq: str, rabbitmq_broker: tuple[RabbitmqBroker, str]) -> None:
    broker, queue = rabbitmq_broker

    send_together(broker, _messages(queue, 250))

    assert sorted(_queued(rabbitmq, queue)) == [(1, n, n) for n in range(250)]


def test_a_batch_is_sent_on_a_new_connection_when_its_own_was_closed(
        rabbitmq: str, rabbitmq_broker: tuple[RabbitmqBroker, str]) -> None:
    broker, queue = rabbitmq_broker
    send_together(broker, _messages(queue, 1))

    broker.connection.close()
    send_together(broker, _messages(queue, 3))

    assert sorted(_queued(rabbitmq, queue)) == [(1, 0, 0), (1, 0, 0), (1, 1, 1), (1, 2, 2)]


def test_a_batch_whose_queue_was_deleted_declares_it_again_and_arrives(
        rabbitmq: str, rabbitmq_broker: tuple[RabbitmqBroker, str]) -> None:
    broker, queue = rabbitmq_broker
    send_together(broker, _messages(queue, 1))
    with connect(rabbitmq) as connection:
        connection.channel().queue_delete(queue)

    send_together(broker, _messages(queue, 5))

    assert sorted(_queued(rabbitmq, queue)) == [(1, n, n) for n in range(5)]


def test_without_rabbitmq_messages_sent_together_go_to_the_in_process_broker() -> None:
    broker = StubBroker()
    broker.declare_queue("importer.test")

    send_together(broker, _messages("importer.test", 3))

    assert broker.queues["importer.test"].qsize() == 3
