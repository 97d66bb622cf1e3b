"""Turning TVmaze JSON into rows: the quirks of real data."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from importer.errors import InvalidPayloadError
from importer.payloads import html_to_text, parse_episode, parse_show
from importer.tvmaze_server import RecordedCatalogue


def show(**changes: Any) -> dict[str, Any]:
    base = {"id": 1, "name": "Under the Dome", "type": "Scripted", "language": "English",
            "genres": ["Drama"], "status": "Ended", "runtime": 60, "premiered": "2013-06-24",
            "ended": "2015-09-10", "officialSite": "http://x", "network": {"name": "CBS"},
            "webChannel": None, "summary": "<p><b>Under the Dome</b> is a story.</p>",
            "updated": 1631010933}
    return base | changes


def test_a_show_summary_is_stored_as_plain_text() -> None:
    assert parse_show(show(), 1)["summary"] == "Under the Dome is a story."


def test_html_entities_and_paragraphs_become_text_lines() -> None:
    assert html_to_text("<p>Tom &amp; Jerry</p><p>Part&nbsp;2</p>") == "Tom & Jerry\nPart\xa02"


def test_an_empty_date_is_stored_as_null() -> None:
    assert parse_show(show(premiered="", ended=None), 1)["premiered"] is None


def test_a_web_channel_stands_in_for_a_missing_network() -> None:
    row = parse_show(show(network=None, webChannel={"name": "Netflix"}), 1)
    assert row["network"] == "Netflix"


def test_a_show_with_neither_network_nor_web_channel_has_none() -> None:
    assert parse_show(show(network=None, webChannel=None), 1)["network"] is None


@pytest.mark.parametrize("changes, reason", [
    ({"id": 2}, "asked for show 1"),
    ({"name": None}, "name is missing"),
    ({"runtime": "60"}, "runtime is str"),
    ({"premiered": "24/06/2013"}, "premiered is not a date"),
    ({"genres": "Drama"}, "genres"),
    ({"network": ["CBS"]}, "expected a network object"),
])
def test_a_show_of_the_wrong_shape_is_invalid_with_a_reason(changes: dict[str, Any],
                                                             reason: str) -> None:
    with pytest.raises(InvalidPayloadError, match=reason):
        parse_show(show(**changes), 1)


@pytest.mark.parametrize("payload", [None, [], "html", 3])
def test_a_payload_that_is_not_an_object_is_invalid(payload: Any) -> None:
    with pytest.raises(InvalidPayloadError):
        parse_show(payload, 1)


def test_a_special_keeps_a_null_number_and_episode_zero_stays_zero() -> None:
    special = {"id": 9, "season": 1, "number": None, "airdate": "", "airtime": ""}
    zero = {"id": 10, "season": 1, "number": 0, "airdate": "2020-01-01", "airtime": "21:00"}

    assert parse_episode(special)[1]["number"] is None
    assert parse_episode(special)[1]["airdate"] is None
    assert parse_episode(zero)[1]["number"] == 0
    assert parse_episode(zero)[1]["airdate"] == date(2020, 1, 1)


def test_every_recorded_show_and_episode_parses(recorded: RecordedCatalogue) -> None:
    show_ids = recorded.show_ids()
    shows = [parse_show(recorded.show(i), i) for i in show_ids]
    episodes = [parse_episode(e) for i in show_ids for e in recorded.episodes(i) or []]

    assert len(shows) == len(show_ids) >= 20
    assert all(show["name"] for show in shows)
    assert len(episodes) > 1000
    assert len({tvmaze_id for tvmaze_id, _ in episodes}) == len(episodes)
