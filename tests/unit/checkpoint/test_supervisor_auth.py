"""The supervisor's real HTTP server (ember_supervisor.main) acts only for the operator: every
POST route needs the service's bearer token; the read-only routes stay open for probes and scrapes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from ember_supervisor.config import SupervisorConfig
from ember_supervisor.main import Supervisor, _handler, authorized, post_routes

TOKEN = "k2V9-operator-only"


def serve(tmp_path: Path, token: str | None) -> Iterator[str]:
    cfg = SupervisorConfig(engine_argv=["true"], engine_port=1, identity={}, state_dir=tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(Supervisor(cfg), token))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    yield from serve(tmp_path, TOKEN)


def routes() -> list[str]:
    cfg = SupervisorConfig(engine_argv=["true"], engine_port=1, identity={}, state_dir=Path("/tmp"))
    return sorted(post_routes(Supervisor(cfg)))


@pytest.mark.parametrize("route", routes())
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["no-token", "wrong-token", "no-bearer-scheme", "basic-scheme"],
)
def test_every_mutating_route_refuses_a_caller_without_the_token(
    url: str, route: str, headers: dict[str, str]
) -> None:
    r = httpx.post(url + route, headers=headers)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert TOKEN not in r.text


def test_the_operators_token_reaches_the_route(url: str) -> None:
    # no engine runs here, so the checkpoint itself fails: but past the check, with the route's own answer
    r = httpx.post(url + "/checkpoint", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 500 and "no checkpoint_dir configured" in r.json()["error"]


def test_without_a_configured_token_nothing_acts(tmp_path: Path) -> None:
    for url in serve(tmp_path, None):
        assert httpx.post(url + "/checkpoint", headers={"Authorization": "Bearer x"}).status_code == 401
        assert httpx.post(url + "/checkpoint", headers={"Authorization": "Bearer None"}).status_code == 401


@pytest.mark.parametrize("path", ["/startup", "/metrics", "/healthz"])
def test_read_only_routes_stay_open_for_probes_and_scrapes(url: str, path: str) -> None:
    assert httpx.get(url + path).status_code in (200, 503)  # /healthz: 503, no engine here


def test_the_comparison_is_exact() -> None:
    assert authorized(f"Bearer {TOKEN}", TOKEN)
    assert not authorized(f"Bearer {TOKEN}x", TOKEN) and not authorized(f"Bearer {TOKEN[:-1]}", TOKEN)
    assert not authorized("Bearer ", "") and not authorized(None, TOKEN)


def test_the_version_of_a_source_tree_without_package_metadata_does_not_crash(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from importlib.metadata import PackageNotFoundError

    from ember_supervisor import main as sup_main

    def missing(name: str) -> str:
        raise PackageNotFoundError(name)

    monkeypatch.setattr(sup_main, "version", missing)
    assert sup_main._version().startswith("unknown")
