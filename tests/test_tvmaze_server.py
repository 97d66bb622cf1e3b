"""The local TVmaze server answers like TVmaze, and fails on request."""

from __future__ import annotations

import json
import os
import socket
import time
import tracemalloc
from collections.abc import Callable, Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import httpx
import pytest

from importer import tvmaze_server
from importer.exitcodes import EXIT_CONFIG, EXIT_UNAVAILABLE, EXIT_USAGE
from importer.tvmaze_server import (
    Catalogue,
    Fault,
    GeneratedCatalogue,
    RecordedCatalogue,
    TvmazeServer,
)

from .conftest import DATA
from .services import run_cli

NOT_FOUND_FILE = "other/flexget/shows_13_episodebynumber_season=100_number=100__HTTP404.json"

Serve = Callable[..., TvmazeServer]


def read(relative: str) -> Any:
    return json.loads((DATA / relative).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    # One client for every test: building one costs more than a request.
    with httpx.Client(timeout=2.0) as client:
        yield client


@pytest.fixture
def serve() -> Iterator[Serve]:
    started: list[TvmazeServer] = []

    def start(catalogue: Catalogue | None = None, **options: Any) -> TvmazeServer:
        server = TvmazeServer(catalogue or GeneratedCatalogue(5), **options).start()
        started.append(server)
        return server

    yield start

    for server in started:
        server.stop()


@pytest.fixture
def with_specials(tmp_path: Path) -> RecordedCatalogue:
    """A recorded show whose list holds specials of both eras."""
    episodes = [
        {"id": 11, "season": 1, "number": 1, "type": "regular", "name": "Pilot"},
        {"id": 12, "season": 1, "number": None, "type": "significant_special", "name": "Extra"},
        {"id": 13, "season": 1, "number": 2, "type": "regular", "name": "Second"},
        {"id": 14, "season": 1, "number": None, "name": "Old-style special"},
        {"id": 15, "season": 2, "number": 0, "type": "regular", "name": "Prologue"},
        {"id": 16, "season": 2, "number": None, "type": "insignificant_special", "name": "Clip"},
        {"id": 17, "season": 2, "number": 1, "type": "significant_special", "name": "Numbered"},
    ]
    (tmp_path / "shows").mkdir()
    (tmp_path / "episodes").mkdir()
    (tmp_path / "shows" / "7.json").write_text(json.dumps({"id": 7, "name": "Seven"}))
    (tmp_path / "shows" / "8.json").write_text(json.dumps({"id": 8, "name": "Eight"}))
    (tmp_path / "episodes" / "7.json").write_text(json.dumps(episodes))
    (tmp_path / "episodes" / "9.json").write_text(json.dumps(episodes[:1]))
    return RecordedCatalogue(tmp_path)


def ids(episodes: list[dict[str, Any]]) -> list[int]:
    return [episode["id"] for episode in episodes]


# -- Recorded data --------------------------------------------------------------------


@pytest.mark.parametrize("show_id", [82, 15824])
def test_a_recorded_show_equals_its_file(
    serve: Serve, http: httpx.Client, recorded: RecordedCatalogue, show_id: int
) -> None:
    server = serve(recorded)

    response = http.get(f"{server.url}/shows/{show_id}")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    assert response.json() == read(f"shows/{show_id}.json")


def test_a_recorded_episode_list_equals_its_file(
    serve: Serve, http: httpx.Client, recorded: RecordedCatalogue
) -> None:
    server = serve(recorded)

    response = http.get(f"{server.url}/shows/83/episodes", params={"specials": "1"})

    assert response.json() == read("episodes/83.json")


def test_a_known_show_without_an_episode_file_has_no_episodes(
    serve: Serve, http: httpx.Client, recorded: RecordedCatalogue
) -> None:
    server = serve(recorded)

    response = http.get(f"{server.url}/shows/1/episodes")

    assert (response.status_code, response.json()) == (200, [])


def test_an_episode_list_without_its_show_is_not_served(
    serve: Serve, http: httpx.Client, with_specials: RecordedCatalogue
) -> None:
    server = serve(with_specials)

    response = http.get(f"{server.url}/shows/9/episodes")

    assert response.status_code == 404
    assert with_specials.show_ids() == [7, 8]


def test_episodes_leave_specials_out_unless_asked_for(
    serve: Serve, http: httpx.Client, with_specials: RecordedCatalogue
) -> None:
    server = serve(with_specials)

    regular = http.get(f"{server.url}/shows/7/episodes").json()
    everything = http.get(f"{server.url}/shows/7/episodes?specials=1").json()

    assert ids(regular) == [11, 13, 15]
    assert ids(everything) == [11, 12, 13, 14, 15, 16, 17]


@pytest.mark.parametrize(
    "embed", ["embed=episodes", "embed[]=episodes", "embed[]=cast&embed[]=episodes"]
)
def test_a_show_with_embed_leaves_specials_out(
    serve: Serve, http: httpx.Client, with_specials: RecordedCatalogue, embed: str
) -> None:
    server = serve(with_specials)

    show = http.get(f"{server.url}/shows/7?{embed}").json()

    assert show["name"] == "Seven"
    assert ids(show["_embedded"]["episodes"]) == [11, 13, 15]


def test_a_show_without_embed_has_nothing_embedded(
    serve: Serve, http: httpx.Client, with_specials: RecordedCatalogue
) -> None:
    server = serve(with_specials)

    show = http.get(f"{server.url}/shows/7?embed=cast&unknown=1").json()

    assert show == {"id": 7, "name": "Seven"}


def test_an_episode_is_found_by_id_with_its_show_embedded(
    serve: Serve, http: httpx.Client, recorded: RecordedCatalogue
) -> None:
    server = serve(recorded)
    expected = next(e for e in read("episodes/169.json") if e["id"] == 12192)

    plain = http.get(f"{server.url}/episodes/12192").json()
    embedded = http.get(f"{server.url}/episodes/12192", params={"embed": "show"}).json()

    assert plain == expected
    assert embedded.pop("_embedded") == {"show": read("shows/169.json")}
    assert embedded == expected


@pytest.mark.parametrize(
    "path", ["/shows/999999999", "/shows/999999999/episodes", "/shows/abc", "/people/1", "/"]
)
def test_unknown_paths_answer_with_tvmaze_404_body(
    serve: Serve, http: httpx.Client, recorded: RecordedCatalogue, path: str
) -> None:
    server = serve(recorded)

    response = http.get(f"{server.url}{path}")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    body = response.json()
    assert list(body) == list(read(NOT_FOUND_FILE))
    assert (body["name"], body["code"], body["status"]) == ("Not Found", 0, 404)


def test_an_unknown_episode_answers_exactly_as_tvmaze_does(
    serve: Serve, http: httpx.Client, recorded: RecordedCatalogue
) -> None:
    server = serve(recorded)

    response = http.get(f"{server.url}/episodes/1")

    assert (response.status_code, response.json()) == (404, read(NOT_FOUND_FILE))


def test_a_broken_recorded_file_answers_500_instead_of_dropping_the_connection(
    serve: Serve, http: httpx.Client, tmp_path: Path
) -> None:
    (tmp_path / "shows").mkdir()
    (tmp_path / "shows" / "5.json").write_text('{"id": 5, "na')
    server = serve(RecordedCatalogue(tmp_path))

    response = http.get(f"{server.url}/shows/5")

    assert (response.status_code, response.json()["status"]) == (500, 500)


# -- Generated data -------------------------------------------------------------------


@pytest.mark.usefixtures("recorded")
def test_a_generated_show_has_the_keys_of_a_current_real_show() -> None:
    show = GeneratedCatalogue(3).show(2)

    assert show is not None
    assert list(show) == list(read("shows/82.json"))
    assert show["summary"].startswith("<p>") and show["summary"].endswith("</p>")
    assert (show["network"] is None) != (show["webChannel"] is None)


@pytest.mark.usefixtures("recorded")
def test_generated_episodes_put_specials_last_with_unique_ids() -> None:
    catalogue = GeneratedCatalogue(3, episodes_per_show=12, specials_per_show=2, first_id=10)

    lists = [catalogue.episodes(show_id) or [] for show_id in catalogue.show_ids()]

    episodes = lists[0]
    assert catalogue.show_ids() == [10, 11, 12]
    assert list(episodes[0]) == list(read("episodes/82.json")[0])
    tail = [(1, 10), (2, 1), (2, 2), (2, None), (2, None)]
    assert [(e["season"], e["number"]) for e in episodes[9:]] == tail
    assert {e["type"] for e in episodes[12:]} == {"significant_special"}
    all_ids = [episode["id"] for episodes in lists for episode in episodes]
    assert len(set(all_ids)) == len(all_ids) == 42


def test_a_generated_catalogue_is_deterministic() -> None:
    first, second = GeneratedCatalogue(50), GeneratedCatalogue(50)

    assert [first.show(i) for i in first.show_ids()] == [second.show(i) for i in second.show_ids()]
    assert first.episodes(17) == second.episodes(17)
    assert first.show(51) is None and first.episodes(0) is None


def test_a_hundred_thousand_generated_shows_cost_nothing_up_front() -> None:
    tracing_already = tracemalloc.is_tracing()
    tracemalloc.start()
    tracemalloc.reset_peak()
    before, _ = tracemalloc.get_traced_memory()

    catalogue = GeneratedCatalogue(100_000, episodes_per_show=50)

    _, peak = tracemalloc.get_traced_memory()
    if not tracing_already:
        tracemalloc.stop()
    assert peak - before < 10_000
    last = catalogue.show(100_000)
    assert last is not None and last["id"] == 100_000
    assert catalogue.show(100_001) is None


def test_a_generated_episode_is_found_by_id_over_http(serve: Serve, http: httpx.Client) -> None:
    catalogue = GeneratedCatalogue(5)
    server = serve(catalogue)
    special = (catalogue.episodes(4) or [])[-1]

    response = http.get(f"{server.url}/episodes/{special['id']}?embed=show")

    episode = response.json()
    assert episode.pop("_embedded") == {"show": catalogue.show(4)}
    assert episode == special
    assert http.get(f"{server.url}/episodes/{special['id'] + 1}").status_code == 404


# -- Latency and limit ----------------------------------------------------------------


def test_latency_is_applied_before_every_answer(serve: Serve, http: httpx.Client) -> None:
    server = serve(latency=0.15)

    for path in ("/shows/1", "/shows/99"):
        started = time.monotonic()
        http.get(f"{server.url}{path}")
        assert time.monotonic() - started >= 0.15


def test_the_limit_answers_429_beyond_its_calls_and_counts_them(
    serve: Serve, http: httpx.Client
) -> None:
    server = serve(limit=(3, 60.0))

    responses = [http.get(f"{server.url}/shows/{n}") for n in range(1, 6)]

    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429]
    assert responses[-1].json() == {
        "name": "Too Many Requests",
        "message": "Rate limit exceeded.",
        "code": 0,
        "status": 429,
    }
    assert "retry-after" not in responses[-1].headers
    assert (server.requests, server.rate_limited) == (5, 2)
    assert [status for _, _, status in server.request_log()] == [200, 200, 200, 429, 429]


def test_the_limit_window_slides(serve: Serve, http: httpx.Client) -> None:
    server = serve(limit=(2, 0.3))
    http.get(f"{server.url}/shows/1")
    http.get(f"{server.url}/shows/2")

    # Refused requests do not use up the window, so asking again and
    # again gets through once the first request leaves it.
    deadline = time.monotonic() + 2.0
    while http.get(f"{server.url}/shows/3").status_code == 429:
        assert time.monotonic() < deadline, "the window never moved on"

    log = server.request_log()
    assert log[-1][2] == 200
    assert log[-1][0] - log[0][0] >= 0.3
    assert server.rate_limited == len(log) - 3 > 0


def test_reset_counters_starts_counting_afresh(serve: Serve, http: httpx.Client) -> None:
    server = serve(limit=(1, 60.0))
    http.get(f"{server.url}/shows/1")
    http.get(f"{server.url}/shows/1")

    server.reset_counters()
    http.get(f"{server.url}/shows/2?x=1")

    assert (server.requests, server.rate_limited) == (1, 1)
    assert [entry[1:] for entry in server.request_log()] == [("/shows/2?x=1", 429)]


# -- Faults ---------------------------------------------------------------------------


def test_a_status_fault_with_times_fails_that_often_then_serves_normally(
    serve: Serve, http: httpx.Client
) -> None:
    server = serve()
    server.add_fault("/shows/1", Fault("status", status=503, times=1))

    failed = http.get(f"{server.url}/shows/1")
    served = http.get(f"{server.url}/shows/1")

    assert failed.status_code == 503
    assert failed.json()["status"] == 503
    assert served.status_code == 200
    assert served.json()["id"] == 1


def test_a_fault_matches_the_path_without_its_query(serve: Serve, http: httpx.Client) -> None:
    server = serve()
    server.add_fault("/shows/2/episodes", Fault("status", status=500))

    faulted = http.get(f"{server.url}/shows/2/episodes", params={"specials": "1"})
    others = http.get(f"{server.url}/shows/2"), http.get(f"{server.url}/shows/3/episodes")

    assert faulted.status_code == 500
    assert [response.status_code for response in others] == [200, 200]


def test_a_status_fault_can_carry_retry_after(serve: Serve, http: httpx.Client) -> None:
    server = serve()
    server.add_fault("/shows/1", Fault("status", status=429, retry_after=7))

    response = http.get(f"{server.url}/shows/1")

    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert server.rate_limited == 0


def test_a_hanging_request_ends_when_the_server_stops(serve: Serve, http: httpx.Client) -> None:
    server = serve()
    server.add_fault("/shows/1", Fault("hang"))

    with pytest.raises(httpx.ReadTimeout):
        http.get(f"{server.url}/shows/1", timeout=0.2)

    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.0
    assert server.request_log()[-1][1:] == ("/shows/1", 0)


def test_a_hang_answers_normally_once_it_has_lasted(
    serve: Serve, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tvmaze_server, "HANG_SECONDS", 0.1)
    server = serve()
    server.add_fault("/shows/1", Fault("hang"))

    started = time.monotonic()
    response = http.get(f"{server.url}/shows/1")

    assert time.monotonic() - started >= 0.1
    assert response.json()["id"] == 1


def test_stopping_closes_idle_keep_alive_connections(serve: Serve) -> None:
    server = serve()
    connection = HTTPConnection(server.url.removeprefix("http://"), timeout=1.0)
    connection.request("GET", "/shows/1")
    assert connection.getresponse().read()

    server.stop()

    assert connection.sock is not None
    assert connection.sock.recv(1) == b""
    connection.close()


@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"id": 1, "na', b""])
def test_a_body_fault_serves_a_broken_body_with_status_200(
    serve: Serve, http: httpx.Client, body: bytes
) -> None:
    server = serve()
    server.add_fault("/shows/1", Fault("body", body=body))

    response = http.get(f"{server.url}/shows/1")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.content == body
    with pytest.raises(ValueError):
        response.json()


def test_a_reset_fault_closes_the_connection_without_a_response(
    serve: Serve, http: httpx.Client
) -> None:
    server = serve()
    server.add_fault("/shows/1", Fault("reset"))

    # A reset, not a clean close: that would be a RemoteProtocolError.
    with pytest.raises(httpx.ReadError):
        http.get(f"{server.url}/shows/1")

    server.clear_faults()
    assert http.get(f"{server.url}/shows/1").status_code == 200
    assert [status for _, _, status in server.request_log()] == [0, 200]


def test_an_unknown_fault_kind_is_refused() -> None:
    with pytest.raises(ValueError):
        Fault("explode")  # type: ignore[arg-type]


# -- Command line ---------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["20", "x/10", "0/10", "20/0"])
def test_the_command_refuses_a_malformed_limit(limit: str) -> None:
    refused = run_cli(["serve-api", "--generate", "1", "--limit", limit], dict(os.environ))

    assert refused.returncode == EXIT_USAGE
    assert "--limit" in refused.stderr


def test_the_command_reports_a_directory_without_recorded_shows(tmp_path: Path) -> None:
    refused = run_cli(["serve-api", "--data", str(tmp_path), "--port", "0"], dict(os.environ))

    assert refused.returncode == EXIT_CONFIG
    assert "no shows directory" in refused.stderr


def test_the_command_reports_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        refused = run_cli(["serve-api", "--generate", "1", "--port", str(port)],
                          dict(os.environ))

    assert refused.returncode == EXIT_UNAVAILABLE
    assert f"cannot listen on 127.0.0.1:{port}" in refused.stderr
