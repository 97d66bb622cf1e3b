"""The broker: queues named for the management UI, and middleware chosen for the actors."""

from __future__ import annotations

from importer import actors
from importer.broker import queue_names


def test_queue_names_are_every_queue_the_actors_declare_with_delay_and_dead_letters() -> None:
    declared = {actor.queue_name for actor in actors.broker.actors.values()}

    expected = {name + suffix for name in declared for suffix in ("", ".DQ", ".XQ")}
    assert set(queue_names()) == expected


def test_the_importers_queues_are_named_by_kind_and_role() -> None:
    bases = {name for name in queue_names() if not name.endswith((".DQ", ".XQ"))}

    assert bases == {"importer.series.batches", "importer.series.items",
                     "importer.episodes.batches", "importer.episodes.items",
                     "importer.exhausted", "default"}
