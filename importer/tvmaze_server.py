"""A small local HTTP server that answers like the TVmaze API.

It serves the endpoints the importer calls (``/shows/:id``,
``/shows/:id/episodes`` and ``/episodes/:id``) from a *catalogue*:
either responses recorded from the real API (a directory of JSON files)
or a deterministic generated catalogue of any size. On top of that it
can add latency, enforce a request limit that answers 429 like TVmaze,
and inject faults on chosen paths, so tests and benchmarks can watch
the importer meet a slow, strict or broken API.

Recorded data is TVmaze's, licensed CC BY-SA 4.0
(https://www.tvmaze.com); credit TVmaze wherever it is shown.

Only the standard library is used, so the server starts anywhere the
package does.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NoReturn, Protocol, Self, runtime_checkable
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger(__name__)

JsonObject = dict[str, Any]
Query = dict[str, list[str]]

CONTENT_TYPE = "application/json; charset=UTF-8"
DEFAULT_PORT = 8089

#: How long a "hang" fault holds a request when nobody stops the server.
HANG_SECONDS = 3600.0

#: How often the serving thread looks for a stop request.
POLL_INTERVAL = 0.05

#: How long stop() waits for requests in flight to finish.
STOP_GRACE_SECONDS = 2.0

#: The credit TVmaze asks for wherever its data is shown.
ATTRIBUTION = "Data by TVmaze (https://www.tvmaze.com), CC BY-SA 4.0."


# -- Catalogues ---------------------------------------------------------------------


class Catalogue(Protocol):
    """The shows and episodes a server answers with.

    The server never changes the objects it gets, so a catalogue may
    hand out the same objects again.
    """

    def show(self, show_id: int) -> JsonObject | None:
        """Return the show object (without ``_embedded``), or None when unknown."""

    def episodes(self, show_id: int) -> list[JsonObject] | None:
        """Return every episode of the show, specials included, in air order.

        None means the show is unknown; a known show without episodes
        gives an empty list.
        """

    def show_ids(self) -> list[int]:
        """Return the ids of every show, sorted."""


@runtime_checkable
class EpisodeLookup(Protocol):
    """A catalogue that can find one episode by id without a full scan."""

    def episode(self, episode_id: int) -> tuple[int, JsonObject] | None:
        """Return (show id, episode), or None when no show has that episode."""


def is_special(episode: JsonObject) -> bool:
    """Tell whether an episode is a special, the way TVmaze marks them.

    Older records have no ``type``; there a special shows itself only by
    ``number`` being null (0 is a real episode number).
    """
    episode_type = episode.get("type") or ""
    return episode.get("number") is None or "special" in episode_type


def find_episode(catalogue: Catalogue, episode_id: int) -> tuple[int, JsonObject] | None:
    """Find an episode and its show id in any catalogue."""
    if isinstance(catalogue, EpisodeLookup):
        return catalogue.episode(episode_id)

    # A catalogue without an index can only be searched show by show.
    for show_id in catalogue.show_ids():
        for episode in catalogue.episodes(show_id) or []:
            if episode.get("id") == episode_id:
                return show_id, episode

    return None


class RecordedCatalogue:
    """Shows and episodes recorded from the real API, one JSON file each.

    The directory holds ``shows/<id>.json`` (a ``/shows/:id`` response)
    and ``episodes/<show id>.json`` (a ``/shows/:id/episodes?specials=1``
    response). Files are read on first use and kept as text; every call
    parses afresh, so callers never share (or corrupt) a cached object.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        if not (self.directory / "shows").is_dir():
            raise FileNotFoundError(f"no shows directory in {self.directory}")

        self._show_ids = _ids_in(self.directory / "shows")
        self._known = frozenset(self._show_ids)
        self._episode_files = set(_ids_in(self.directory / "episodes"))
        self._texts: dict[Path, str] = {}
        self._episode_index: dict[int, tuple[int, int]] | None = None
        self._index_lock = threading.Lock()

        # NOTE: a show is known only through its show object, so that
        # show_ids(), show() and episodes() always agree.
        orphans = sorted(self._episode_files - self._known)
        if orphans:
            logger.debug("Episode lists without a show object are not served: %r.", orphans)

    def show(self, show_id: int) -> JsonObject | None:
        if show_id not in self._known:
            return None

        show: JsonObject = self._load(self.directory / "shows" / f"{show_id}.json")
        return show

    def episodes(self, show_id: int) -> list[JsonObject] | None:
        if show_id not in self._known:
            return None

        if show_id not in self._episode_files:
            return []

        episodes: list[JsonObject] = self._load(self.directory / "episodes" / f"{show_id}.json")
        return episodes

    def show_ids(self) -> list[int]:
        return list(self._show_ids)

    def episode(self, episode_id: int) -> tuple[int, JsonObject] | None:
        found = self._index().get(episode_id)
        if found is None:
            return None

        show_id, position = found
        episodes = self.episodes(show_id) or []
        return show_id, episodes[position]

    def _load(self, path: Path) -> Any:
        text = self._texts.get(path)
        if text is None:
            # A byte-order mark would break json.loads; tolerate one.
            text = path.read_text(encoding="utf-8-sig")
            self._texts[path] = text

        return json.loads(text)

    def _index(self) -> dict[int, tuple[int, int]]:
        with self._index_lock:
            if self._episode_index is None:
                self._episode_index = self._build_index()

            return self._episode_index

    def _build_index(self) -> dict[int, tuple[int, int]]:
        index: dict[int, tuple[int, int]] = {}
        for show_id in self._show_ids:
            for position, episode in enumerate(self.episodes(show_id) or []):
                index[episode["id"]] = (show_id, position)

        logger.debug("Indexed %d recorded episodes.", len(index))
        return index


def _ids_in(directory: Path) -> list[int]:
    """Return the sorted ids of the ``<id>.json`` files in a directory."""
    if not directory.is_dir():
        return []

    names = (re.fullmatch(r"([0-9]+)\.json", entry.name) for entry in directory.iterdir())
    return sorted(int(match[1]) for match in names if match)


#: Episode ids are show_id * EPISODE_ID_FACTOR + ordinal, unique across shows.
EPISODE_ID_FACTOR = 1000
SEASON_LENGTH = 10

_ADJECTIVES = ("Silent", "Crimson", "Hidden", "Northern", "Last", "Golden", "Broken", "Wild")
_NOUNS = ("Harbour", "Detectives", "Kingdom", "Frontier", "Academy", "Files", "Café", "Garden")
_TYPES = ("Scripted", "Animation", "Reality", "Documentary", "Talk Show")
_LANGUAGES = ("English", "English", "English", "French", "German", "Japanese")
_GENRES: tuple[tuple[str, ...], ...] = (
    ("Drama",),
    ("Comedy",),
    ("Drama", "Crime"),
    (),
    ("Science-Fiction", "Thriller"),
    ("Comedy", "Family"),
)
_STATUSES = ("Ended", "Running", "To Be Determined")
_RUNTIMES = (60, 30, 45, 25)
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_AIRTIMES = ("21:00", "20:00", "22:30", "")
_FIRST_PREMIERE = datetime.date(1990, 1, 1)
_BASE_UPDATED = 1_700_000_000


class GeneratedCatalogue:
    """A deterministic catalogue of invented shows, built on demand.

    Shows have ids ``first_id`` to ``first_id + shows - 1`` and the same
    keys as current TVmaze show objects. Each show has
    ``episodes_per_show`` regular episodes in seasons of ten, followed by
    ``specials_per_show`` specials (``number`` null). Nothing is stored,
    so a catalogue of a hundred thousand shows costs nothing up front.
    """

    def __init__(
        self,
        shows: int,
        episodes_per_show: int = 10,
        specials_per_show: int = 1,
        first_id: int = 1,
    ) -> None:
        if min(shows, episodes_per_show, specials_per_show) < 0 or first_id < 1:
            raise ValueError("counts must not be negative and first_id must be positive")

        if episodes_per_show + specials_per_show >= EPISODE_ID_FACTOR:
            raise ValueError(f"a show holds fewer than {EPISODE_ID_FACTOR} episodes")

        self.shows = shows
        self.episodes_per_show = episodes_per_show
        self.specials_per_show = specials_per_show
        self.first_id = first_id

    def show(self, show_id: int) -> JsonObject | None:
        if not self._knows(show_id):
            return None

        return _generated_show(show_id, self._last_episode(show_id))

    def episodes(self, show_id: int) -> list[JsonObject] | None:
        if not self._knows(show_id):
            return None

        return [self._episode(show_id, ordinal) for ordinal in self._ordinals()]

    def show_ids(self) -> list[int]:
        return list(range(self.first_id, self.first_id + self.shows))

    def episode(self, episode_id: int) -> tuple[int, JsonObject] | None:
        show_id, ordinal = divmod(episode_id, EPISODE_ID_FACTOR)
        if not self._knows(show_id) or ordinal not in self._ordinals():
            return None

        return show_id, self._episode(show_id, ordinal)

    def _knows(self, show_id: int) -> bool:
        return self.first_id <= show_id < self.first_id + self.shows

    def _ordinals(self) -> range:
        return range(1, self.episodes_per_show + self.specials_per_show + 1)

    def _episode(self, show_id: int, ordinal: int) -> JsonObject:
        special = ordinal - self.episodes_per_show
        if special <= 0:
            season, number = divmod(ordinal - 1, SEASON_LENGTH)
            return _generated_episode(show_id, ordinal, season + 1, number + 1)

        # Specials air after the regular episodes, within the last season.
        last_season = max(self.episodes_per_show - 1, 0) // SEASON_LENGTH + 1
        return _generated_episode(show_id, ordinal, last_season, None, special)

    def _last_episode(self, show_id: int) -> JsonObject | None:
        ordinals = self._ordinals()
        return self._episode(show_id, ordinals[-1]) if ordinals else None


def _pick(choices: tuple[Any, ...], seed: int) -> Any:
    return choices[seed % len(choices)]


def _show_name(show_id: int) -> str:
    return f"{_pick(_ADJECTIVES, show_id)} {_pick(_NOUNS, show_id // len(_ADJECTIVES))}"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _premiered(show_id: int) -> datetime.date:
    return _FIRST_PREMIERE + datetime.timedelta(days=show_id * 97 % 12_000)


def _airdate(show_id: int, ordinal: int) -> datetime.date:
    return _premiered(show_id) + datetime.timedelta(weeks=ordinal - 1)


def _broadcaster(show_id: int) -> tuple[JsonObject | None, JsonObject | None]:
    """Return (network, webChannel): one of them is set, as on TVmaze."""
    if show_id % 5 == 0:
        channel = {
            "id": 1 + show_id % 3,
            "name": "Streamline",
            "country": None,
            "officialSite": "https://streamline.example/",
        }
        return None, channel

    network = {
        "id": 1 + show_id % 7,
        "name": "Channel North",
        "country": {"name": "United Kingdom", "code": "GB", "timezone": "Europe/London"},
        "officialSite": "https://channel-north.example/",
    }
    return network, None


def _generated_show(show_id: int, last_episode: JsonObject | None) -> JsonObject:
    name = _show_name(show_id)
    status = _pick(_STATUSES, show_id)
    runtime = _pick(_RUNTIMES, show_id)
    ended = last_episode["airdate"] if status == "Ended" and last_episode else None
    network, web_channel = _broadcaster(show_id)
    links: JsonObject = {"self": {"href": f"https://api.tvmaze.com/shows/{show_id}"}}
    if last_episode is not None:
        links["previousepisode"] = {
            "href": last_episode["_links"]["self"]["href"],
            "name": last_episode["name"],
        }

    return {
        "id": show_id,
        "url": f"https://www.tvmaze.com/shows/{show_id}/{_slug(name)}",
        "name": name,
        "type": _pick(_TYPES, show_id),
        "language": _pick(_LANGUAGES, show_id),
        "genres": list(_pick(_GENRES, show_id)),
        "status": status,
        "runtime": runtime,
        "averageRuntime": runtime,
        "premiered": _premiered(show_id).isoformat(),
        "ended": ended,
        "officialSite": f"https://{_slug(name)}.example/" if show_id % 3 else None,
        "schedule": {"time": _pick(_AIRTIMES, show_id), "days": [_pick(_DAYS, show_id)]},
        "rating": {"average": round(5 + show_id % 50 / 10, 1) if show_id % 9 else None},
        "weight": show_id % 101,
        "network": network,
        "webChannel": web_channel,
        "dvdCountry": None,
        "externals": {
            "tvrage": None,
            "thetvdb": 300_000 + show_id,
            "imdb": f"tt{1_000_000 + show_id:07d}",
        },
        "image": _image(show_id, "portrait"),
        "summary": f"<p><b>{name}</b> is a generated show, number {show_id}.</p>",
        "updated": _BASE_UPDATED + show_id,
        "_links": links,
    }


def _generated_episode(
    show_id: int, ordinal: int, season: int, number: int | None, special: int = 0
) -> JsonObject:
    episode_id = show_id * EPISODE_ID_FACTOR + ordinal
    show_name = _show_name(show_id)
    if number is None:
        name = f"Special {special}"
        slug = _slug(f"{show_name} {name}")
    else:
        name = f"Chapter {number}"
        slug = _slug(f"{show_name} {season}x{number:02d} {name}")

    airdate = _airdate(show_id, ordinal).isoformat()
    airtime = _pick(_AIRTIMES, show_id)
    clock = airtime or "12:00"
    rating = round(6 + ordinal % 40 / 10, 1)
    return {
        "id": episode_id,
        "url": f"https://www.tvmaze.com/episodes/{episode_id}/{slug}",
        "name": name,
        "season": season,
        "number": number,
        "type": "regular" if number is not None else "significant_special",
        "airdate": airdate,
        "airtime": airtime,
        "airstamp": f"{airdate}T{clock}:00+00:00",
        "runtime": _pick(_RUNTIMES, show_id),
        "rating": {"average": rating},
        # Some episodes lack an image or a summary, as many real ones do.
        "image": _image(episode_id, "landscape") if ordinal % 7 else None,
        "summary": f"<p>{name} of <i>{show_name}</i>.</p>" if ordinal % 11 else "",
        "_links": {
            "self": {"href": f"https://api.tvmaze.com/episodes/{episode_id}"},
            "show": {"href": f"https://api.tvmaze.com/shows/{show_id}"},
        },
    }


def _image(image_id: int, shape: str) -> JsonObject:
    where = f"{image_id % 1000}/{image_id}.jpg"
    return {
        "medium": f"https://static.tvmaze.com/uploads/images/medium_{shape}/{where}",
        "original": f"https://static.tvmaze.com/uploads/images/original_untouched/{where}",
    }


# -- Endpoints ----------------------------------------------------------------------


def error_body(status: int, message: str = "") -> JsonObject:
    """Return the JSON error body TVmaze sends with a failed request."""
    try:
        name = HTTPStatus(status).phrase
    except ValueError:
        name = "Error"  # A made-up status, injected by a fault.

    return {"name": name, "message": message, "code": 0, "status": status}


#: TVmaze documents the 429 answer but no Retry-After header.
RATE_LIMITED_BODY = error_body(429, "Rate limit exceeded.")

Endpoint = Callable[[Catalogue, int, Query], tuple[int, Any]]


def route(catalogue: Catalogue, path: str, query: Query) -> tuple[int, Any]:
    """Answer one GET request: return (status, JSON payload)."""
    for pattern, endpoint in _ROUTES:
        match = pattern.fullmatch(path)
        if match:
            return endpoint(catalogue, int(match[1]), query)

    return 404, error_body(404, "Page not found.")


def _embeds(query: Query) -> set[str]:
    # TVmaze accepts both embed=x and embed[]=x (repeatable).
    return set(query.get("embed", []) + query.get("embed[]", []))


def _show_endpoint(catalogue: Catalogue, show_id: int, query: Query) -> tuple[int, Any]:
    show = catalogue.show(show_id)
    if show is None:
        return 404, error_body(404, "Unknown show")

    if "episodes" not in _embeds(query):
        return 200, show

    # TVmaze leaves specials out of embed=episodes.
    episodes = catalogue.episodes(show_id) or []
    regular = [episode for episode in episodes if not is_special(episode)]
    return 200, {**show, "_embedded": {"episodes": regular}}


def _episodes_endpoint(catalogue: Catalogue, show_id: int, query: Query) -> tuple[int, Any]:
    episodes = catalogue.episodes(show_id)
    if episodes is None:
        return 404, error_body(404, "Unknown show")

    if "1" in query.get("specials", []):
        return 200, episodes

    return 200, [episode for episode in episodes if not is_special(episode)]


def _episode_endpoint(catalogue: Catalogue, episode_id: int, query: Query) -> tuple[int, Any]:
    found = find_episode(catalogue, episode_id)
    if found is None:
        # The message is the one TVmaze sends for an unknown episode.
        return 404, error_body(404, "Unknown episode")

    show_id, episode = found
    if "show" not in _embeds(query):
        return 200, episode

    return 200, {**episode, "_embedded": {"show": catalogue.show(show_id)}}


_ROUTES: tuple[tuple[re.Pattern[str], Endpoint], ...] = (
    (re.compile(r"/shows/([0-9]+)"), _show_endpoint),
    (re.compile(r"/shows/([0-9]+)/episodes"), _episodes_endpoint),
    (re.compile(r"/episodes/([0-9]+)"), _episode_endpoint),
)


# -- Server -------------------------------------------------------------------------


@dataclass
class Fault:
    """What to do instead of answering requests for one path.

    ``status`` answers with that status and a TVmaze error body,
    ``body`` answers 200 with ``body`` as the JSON payload (broken on
    purpose), ``hang`` holds the request until the server stops (or
    HANG_SECONDS pass) and ``reset`` closes the connection without a
    response. ``times`` limits the fault to the first N matching
    requests; ``retry_after`` adds a Retry-After header to the answer.
    """

    kind: Literal["status", "hang", "body", "reset"]
    status: int = 500
    body: bytes = b""
    times: int | None = None
    retry_after: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("status", "hang", "body", "reset"):
            raise ValueError(f"unknown fault kind {self.kind!r}")


@dataclass
class _ArmedFault:
    fault: Fault
    remaining: int | None


@dataclass
class _Answer:
    """A decided response; status 0 closes the connection without one."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False


_NO_ANSWER = _Answer(0)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: TvmazeServer) -> None:
        self.app = app
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            # Clients that time out and leave, and connections cut by
            # stop(), are part of the job.
            logger.debug("Client %r went away: %s.", client_address, error)
            return

        logger.exception("Request from %r failed.", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    # Headers and body go out in two writes; with Nagle's algorithm on,
    # the client's delayed ACK would add some 40 ms to every answer.
    disable_nagle_algorithm = True
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        self.server.app._connection_opened(self.connection)

    def finish(self) -> None:
        self.server.app._connection_closed(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self.server.app._serve(self)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("TVmaze server: " + format, *args)


class TvmazeServer:
    """A local TVmaze-compatible API, served from a background thread.

    ``limit=(calls, period)`` admits at most ``calls`` requests in any
    sliding window of ``period`` seconds, counted over every path; the
    rest are answered 429 and do not use up the window. ``latency``
    seconds pass before every answer.
    """

    def __init__(
        self,
        catalogue: Catalogue,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        limit: tuple[int, float] | None = None,
    ) -> None:
        self.catalogue = catalogue
        self.host = host
        self.port = port
        self.latency = latency
        self.limit = limit
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._stopping = threading.Event()
        self._faults: dict[str, list[_ArmedFault]] = {}
        self._admitted: deque[float] = deque()
        self._connections: set[socket.socket] = set()
        self._log: list[tuple[float, str, int]] = []
        self._requests = 0
        self._rate_limited = 0
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not started")

        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        if self._httpd is not None:
            raise RuntimeError("the server is already started")

        self._stopping.clear()
        self._httpd = _HttpServer((self.host, self.port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": POLL_INTERVAL},
            name="tvmaze-server",
            daemon=True,
        )
        self._thread.start()
        logger.info("TVmaze server listening at %s.", self.url)
        return self

    def stop(self) -> None:
        if self._httpd is None or self._thread is None:
            return

        # Wake hanging or sleeping requests first, then idle keep-alive
        # connections, so no handler outlives the server and the log is
        # complete when stop() returns.
        self._stopping.set()
        self._httpd.shutdown()
        self._close_connections()
        self._wait_until_idle()
        self._httpd.server_close()
        self._thread.join()
        logger.info("TVmaze server at %s stopped.", self.url)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def add_fault(self, path: str, fault: Fault) -> None:
        """Apply ``fault`` to requests whose path (without query) is ``path``."""
        with self._lock:
            self._faults.setdefault(path, []).append(_ArmedFault(fault, fault.times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def requests(self) -> int:
        """How many requests arrived, whatever their answer."""
        with self._lock:
            return self._requests

    @property
    def rate_limited(self) -> int:
        """How many requests the limit answered with 429."""
        with self._lock:
            return self._rate_limited

    def request_log(self) -> list[tuple[float, str, int]]:
        """Return (monotonic arrival time, path with query, status) per request.

        Status 0 means no response was sent (reset, or stopped while held).
        """
        with self._lock:
            return list(self._log)

    def reset_counters(self) -> None:
        with self._lock:
            self._requests = 0
            self._rate_limited = 0
            self._log.clear()

    def _serve(self, handler: _Handler) -> None:
        arrived = time.monotonic()
        with self._lock:
            self._requests += 1
            self._in_flight += 1

        try:
            answer = self._respond(handler.path, arrived)

            # NOTE: the log is written before the answer goes out, so a
            # client that has its answer always finds it in the log.
            with self._lock:
                self._log.append((arrived, handler.path, answer.status))

            _deliver(handler, answer)
        finally:
            with self._lock:
                self._in_flight -= 1
                self._idle.notify_all()

    def _wait_until_idle(self) -> None:
        with self._idle:
            if not self._idle.wait_for(lambda: self._in_flight == 0, STOP_GRACE_SECONDS):
                logger.warning("Stopped with %d requests still in flight.", self._in_flight)

    def _respond(self, target: str, arrived: float) -> _Answer:
        parts = urlsplit(target)
        admitted = self._admit(arrived)
        fault = self._take_fault(parts.path) if admitted else None
        if self._pause(self.latency):
            return _NO_ANSWER

        if not admitted:
            return _Answer(429, _json_bytes(RATE_LIMITED_BODY))

        query = parse_qs(parts.query, keep_blank_values=True)
        if fault is not None:
            return self._apply_fault(fault, parts.path, query)

        return self._answer(parts.path, query)

    def _pause(self, seconds: float) -> bool:
        """Wait at least ``seconds``; return True if the server is stopping."""
        deadline = time.monotonic() + seconds
        remaining = seconds
        while remaining > 0:
            if self._stopping.wait(remaining):
                return True

            remaining = deadline - time.monotonic()

        return self._stopping.is_set()

    def _answer(self, path: str, query: Query) -> _Answer:
        try:
            status, payload = route(self.catalogue, path, query)
        except Exception:
            # A broken catalogue must show up as a 500, not as a dropped
            # connection the client would take for a network fault.
            logger.exception("The catalogue failed to answer %s.", path)
            status, payload = 500, error_body(500)

        return _Answer(status, _json_bytes(payload))

    def _admit(self, arrived: float) -> bool:
        if self.limit is None:
            return True

        calls, period = self.limit
        with self._lock:
            while self._admitted and self._admitted[0] <= arrived - period:
                self._admitted.popleft()

            if len(self._admitted) < calls:
                self._admitted.append(arrived)
                return True

            self._rate_limited += 1
            return False

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for armed in self._faults.get(path, []):
                if armed.remaining is None:
                    return armed.fault

                if armed.remaining > 0:
                    armed.remaining -= 1
                    return armed.fault

        return None

    def _apply_fault(self, fault: Fault, path: str, query: Query) -> _Answer:
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        if fault.kind == "status":
            return _Answer(fault.status, _json_bytes(error_body(fault.status)), headers)

        if fault.kind == "body":
            return _Answer(200, fault.body, headers)

        if fault.kind == "reset":
            return _Answer(0, reset=True)

        if self._pause(HANG_SECONDS):
            return _NO_ANSWER

        return self._answer(path, query)

    def _connection_opened(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def _connection_closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def _close_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)

        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # Already closed by its handler.


def _json_bytes(payload: Any) -> bytes:
    # Non-ASCII text goes out as UTF-8, as TVmaze sends it.
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def _deliver(handler: _Handler, answer: _Answer) -> None:
    if answer.status == 0:
        _close(handler, reset=answer.reset)
        return

    handler.send_response(answer.status)
    handler.send_header("Content-Type", CONTENT_TYPE)
    handler.send_header("Content-Length", str(len(answer.body)))
    for name, value in answer.headers.items():
        handler.send_header(name, value)

    handler.end_headers()
    handler.wfile.write(answer.body)


def _close(handler: _Handler, *, reset: bool) -> None:
    """End the connection without a response: a clean close or a reset."""
    handler.close_connection = True
    if reset:
        # A zero linger time makes close() send RST instead of FIN.
        linger = struct.pack("ii", 1, 0)
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        handler.connection.close()


# -- Serving from the command line ------------------------------------------------


def serve(catalogue: Catalogue, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          latency: float = 0.0, limit: tuple[int, float] | None = None) -> None:
    """Serve ``catalogue`` until interrupted (the ``serve-api`` command).

    Raises :class:`OSError` when the port cannot be listened on.
    """
    server = TvmazeServer(catalogue, host=host, port=port, latency=latency, limit=limit)
    server.start()
    print(f"Serving the TVmaze API at {server.url} (Ctrl-C stops).", flush=True)
    if isinstance(catalogue, RecordedCatalogue):
        print(ATTRIBUTION, flush=True)

    try:
        _wait_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def parse_limit(text: str) -> tuple[int, float]:
    """``CALLS/SECONDS`` as a limit; :class:`ValueError` names what is wrong."""
    calls, _, seconds = text.partition("/")
    try:
        limit = int(calls), float(seconds)
    except ValueError:
        raise ValueError(f"expected CALLS/SECONDS, got {text!r}") from None

    if limit[0] < 1 or limit[1] <= 0:
        raise ValueError("CALLS and SECONDS must be positive")

    return limit


def _wait_forever() -> NoReturn:
    while True:
        time.sleep(3600)
