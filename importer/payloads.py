"""Turn TVmaze JSON into catalogue rows, or say why it cannot be done.

TVmaze's data has quirks that are easy to get wrong: specials have
``number: null`` while 0 is a real number, dates may be ``""``,
summaries are HTML, a show has a network or a web channel or neither,
and fields appear and disappear between eras of the API.  Anything that
does not fit raises :class:`InvalidPayloadError` with the reason.
"""

from __future__ import annotations

import html
import re
from datetime import date
from html.parser import HTMLParser
from typing import Any

from .errors import InvalidPayloadError

Row = dict[str, Any]

_BLOCK_TAGS = {"p", "br", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "tr"}
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(markup: str | None) -> str | None:
    """Plain text of an HTML summary: tags dropped, entities decoded.

    Paragraphs become lines; runs of spaces collapse to one.
    """
    if markup is None:
        return None

    extractor = _TextExtractor()
    extractor.feed(markup)
    extractor.close()
    text = html.unescape("".join(extractor.parts))

    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    text = _BLANK_LINES.sub("\n", "\n".join(lines)).strip()
    return text or None


def parse_show(payload: Any, tvmaze_id: int) -> Row:
    """The ``series`` columns from a ``/shows/:id`` object."""
    show = _object(payload, "show")
    _check_id(show, tvmaze_id)
    channel = show.get("network") or show.get("webChannel")

    return {
        "name": _text(show, "name", required=True),
        "type": _text(show, "type"),
        "language": _text(show, "language"),
        "genres": _genres(show),
        "status": _text(show, "status"),
        "runtime": _integer(show, "runtime"),
        "premiered": _date(show, "premiered"),
        "ended": _date(show, "ended"),
        "official_site": _text(show, "officialSite"),
        "network": _text(_object(channel, "network"), "name") if channel else None,
        "summary": html_to_text(_text(show, "summary")),
        "tvmaze_updated": _integer(show, "updated"),
    }


def parse_episode(payload: Any) -> tuple[int, Row]:
    """The TVmaze id and the ``episodes`` columns of one episode object."""
    episode = _object(payload, "episode")
    tvmaze_id = _integer(episode, "id")
    if tvmaze_id is None:
        raise InvalidPayloadError("episode without an id")

    return tvmaze_id, {
        "season": _integer(episode, "season"),
        "number": _integer(episode, "number"),
        "name": _text(episode, "name"),
        "type": _text(episode, "type"),
        "airdate": _date(episode, "airdate"),
        "airtime": _airtime(episode),
        "runtime": _integer(episode, "runtime"),
        "summary": html_to_text(_text(episode, "summary")),
    }


def episode_list(payload: Any) -> list[Any]:
    """The entries of a ``/shows/:id/episodes`` array, each still to be parsed."""
    if not isinstance(payload, list):
        raise InvalidPayloadError(f"expected a list of episodes, got {_kind(payload)}")

    return payload


def embedded_episodes(payload: Any) -> list[Any]:
    """The ``_embedded.episodes`` array of a show, empty when absent."""
    embedded = _object(payload, "show").get("_embedded") or {}
    episodes = _object(embedded, "_embedded").get("episodes") or []
    if not isinstance(episodes, list):
        raise InvalidPayloadError(f"_embedded.episodes is {_kind(episodes)}, not a list")

    return episodes


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidPayloadError(f"expected a {what} object, got {_kind(value)}")

    return value


def _check_id(show: dict[str, Any], tvmaze_id: int) -> None:
    found = _integer(show, "id")
    if found != tvmaze_id:
        raise InvalidPayloadError(f"asked for show {tvmaze_id}, got id {found!r}")


def _text(obj: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None or (value == "" and not required):
        if required:
            raise InvalidPayloadError(f"{key} is missing")

        return None
    if not isinstance(value, str):
        raise InvalidPayloadError(f"{key} is {_kind(value)}, not a string")

    return value


def _integer(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    # NOTE: bool is an int in Python, and TVmaze never sends one here.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPayloadError(f"{key} is {_kind(value)}, not an integer")

    return value


def _date(obj: dict[str, Any], key: str) -> date | None:
    value = _text(obj, key)
    if value is None:
        return None

    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidPayloadError(f"{key} is not a date: {value[:40]!r}") from None


def _airtime(episode: dict[str, Any]) -> str | None:
    value = _text(episode, "airtime")
    if value is not None and not re.fullmatch(r"\d\d:\d\d", value):
        raise InvalidPayloadError(f"airtime is not HH:MM: {value[:40]!r}")

    return value


def _genres(show: dict[str, Any]) -> list[str]:
    genres = show.get("genres") or []
    if not isinstance(genres, list) or not all(isinstance(g, str) for g in genres):
        raise InvalidPayloadError("genres is not a list of strings")

    return genres


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
