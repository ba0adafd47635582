"""The built panel at `/`: its files, index.html for client routes, never
in place of /api or /ws, and a page that says how to build it when there
is no bundle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from callbridge.api import create_app
from callbridge.settings import Settings
from callbridge.store import Database

INDEX = '<!doctype html><div id="root"></div><script type="module" src="/assets/a1.js"></script>'


async def _client(database: Database, tmp_path: Path, dist: Path) -> httpx.AsyncClient:
    app = create_app(Settings(data_dir=tmp_path, web_dir=dist), database)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture
async def built(database: Database, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text(INDEX)
    (dist / "assets" / "a1.js").write_text("console.log(1)")
    (dist / "favicon.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("outside the bundle")
    async with await _client(database, tmp_path, dist) as client:
        yield client


async def test_the_page_and_its_assets_are_served(built: httpx.AsyncClient) -> None:
    page = await built.get("/")
    assert page.status_code == 200
    assert page.text == INDEX
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    script = await built.get("/assets/a1.js")
    assert script.status_code == 200
    assert script.text == "console.log(1)"
    assert (await built.get("/favicon.svg")).text == "<svg/>"


async def test_client_routes_get_the_page(built: httpx.AsyncClient) -> None:
    for path in ("/history", "/setup", "/calls/abc"):
        answer = await built.get(path)
        assert answer.status_code == 200, path
        assert answer.text == INDEX


async def test_the_api_and_sockets_are_never_shadowed(built: httpx.AsyncClient) -> None:
    unknown = await built.get("/api/v1/no-such-thing")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/json"
    assert (await built.get("/api/v1/calls")).status_code == 401
    assert (await built.get("/ws/nothing")).status_code == 404
    assert (await built.get("/api/openapi.json")).status_code == 200


async def test_missing_files_and_paths_outside_are_404(built: httpx.AsyncClient) -> None:
    for path in (
        "/assets/nope.js",
        "/nope.png",
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/assets/..%2f..%2fsecret.txt",
        "/.hidden",
    ):
        answer = await built.get(path)
        assert "outside the bundle" not in answer.text, path
        assert answer.status_code == 404 or answer.text == INDEX, path


async def test_without_a_bundle_the_page_says_how_to_build_it(
    database: Database, tmp_path: Path
) -> None:
    async with await _client(database, tmp_path, tmp_path / "not-built") as client:
        answer = await client.get("/")
        assert answer.status_code == 503
        assert "make web" in answer.text
        assert "npm ci" in answer.text
        assert (await client.get("/api/v1/setup")).status_code == 200
