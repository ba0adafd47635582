"""The panel's built bundle (web/dist) at `/`: its hashed assets, its other
files, and index.html for every client route, never in the way of /api or
/ws. Without a bundle, `/` says how to build one."""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI, HTTPException, status
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

# Where `npm run build` puts the bundle in a source checkout.
DEFAULT_DIST = Path(__file__).resolve().parents[3] / "web" / "dist"
# The path prefixes that belong to the server, never to the panel.
SERVER_PREFIXES = ("api", "ws")
# The page loads only its own scripts and talks only to its own server
# (the event stream and SIP over WebSocket included).
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; "
        "img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self' 'unsafe-inline'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>callbridge: panel not built</title></head>
<body style="font-family: sans-serif; max-width: 40rem; margin: 3rem auto">
<h1>The panel is not built yet</h1>
<p>callbridge is running (the API is at <a href="/api/docs">/api/docs</a>), but it found
no built web panel in <code>{dist}</code>.</p>
<p>Build it from the source checkout with <code>make web</code> (it runs
<code>npm ci &amp;&amp; npm run build</code> in <code>web/</code>; <code>make run</code> does it
too), then reload this page.</p>
</body></html>
"""


def mount_web(app: FastAPI, dist: Path) -> None:
    """Serve the bundle in `dist` (looked at on each request: a build made
    while the server runs is served at once). Call after every API route."""
    dist = dist.resolve()
    assets = dist / "assets"
    # StaticFiles checks its directory only when asked to at start.
    app.mount("/assets", StaticFiles(directory=assets, check_dir=False), name="web-assets")

    def index() -> Response:
        page = dist / "index.html"
        if not page.is_file():
            return HTMLResponse(
                NOT_BUILT.format(dist=html.escape(str(dist))),
                status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                headers={"Cache-Control": "no-cache"},
            )
        return FileResponse(page, media_type="text/html", headers=PAGE_HEADERS)

    # Plain functions: FastAPI runs them in its thread pool, so the file
    # system is never touched on the event loop.
    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return index()

    @app.get("/{path:path}", include_in_schema=False)
    def panel(path: str) -> Response:
        first = path.split("/", 1)[0]
        if first in SERVER_PREFIXES:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
        if path and "/" not in path and not path.startswith("."):
            # A file at the bundle's top (favicon, icons), never a path outside it.
            candidate = dist / path
            if candidate.is_file() and candidate.resolve().parent == dist:
                return FileResponse(candidate, headers={"X-Content-Type-Options": "nosniff"})
        last = path.rsplit("/", 1)[-1]
        if "." in last:
            # A file that is not there: a 404, not the page in its place.
            raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
        return index()
