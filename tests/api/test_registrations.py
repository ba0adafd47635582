"""GET /api/v1/internal-lines/{id}/registrations: the devices bound to a line."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from callbridge.api import create_app
from callbridge.pbx.registrar import Binding, MemoryLocation
from callbridge.sip import parse_name_addr
from callbridge.transport import Address

from .conftest import Api

NOW = 500.0


class Flow:
    def __init__(self, address: Address) -> None:
        self.address = address


@pytest.fixture
async def client(api: Api) -> AsyncIterator[tuple[httpx.AsyncClient, MemoryLocation]]:
    location = MemoryLocation()
    app = create_app(api.settings, api.database, location=location, sip_clock=lambda: NOW)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c, location


async def make_line(api: Api, client: httpx.AsyncClient, number: str) -> int:
    created = await client.post(
        "/api/v1/internal-lines",
        json={"number": number, "username": f"u{number}", "password": "line-password-1"},
        headers=api.auth(),
    )
    assert created.status_code == 201, created.text
    line_id: int = created.json()["id"]
    return line_id


async def test_a_line_shows_its_bound_devices(
    api: Api, client: tuple[httpx.AsyncClient, MemoryLocation]
) -> None:
    http, location = client
    line_id = await make_line(api, http, "101")
    location.replace(
        "101",
        [
            Binding(
                aor="101",
                contact=parse_name_addr("<sip:101@127.0.0.2:5062>"),
                expires_at=NOW + 90,
                call_id="c",
                cseq=1,
                source=Flow(Address("udp", "127.0.0.2", 5062)),
                user_agent="desk-phone/1.0",
            )
        ],
    )
    response = await http.get(
        f"/api/v1/internal-lines/{line_id}/registrations", headers=api.auth("supervisor")
    )
    assert response.status_code == 200
    [item] = response.json()["items"]
    assert item["contact"] == "<sip:101@127.0.0.2:5062>"
    assert item["expires_in"] == 90
    assert item["source"] == "udp:127.0.0.2:5062"
    assert item["user_agent"] == "desk-phone/1.0"


async def test_a_line_without_devices_shows_none_and_an_unknown_line_is_404(
    api: Api, client: tuple[httpx.AsyncClient, MemoryLocation]
) -> None:
    http, _ = client
    line_id = await make_line(api, http, "102")
    empty = await http.get(f"/api/v1/internal-lines/{line_id}/registrations", headers=api.auth())
    assert empty.json() == {"items": [], "total": 0}
    missing = await http.get("/api/v1/internal-lines/9999/registrations", headers=api.auth())
    assert missing.status_code == 404


async def test_operators_may_not_see_registrations(
    api: Api, client: tuple[httpx.AsyncClient, MemoryLocation]
) -> None:
    http, _ = client
    line_id = await make_line(api, http, "103")
    response = await http.get(
        f"/api/v1/internal-lines/{line_id}/registrations", headers=api.auth("operator")
    )
    assert response.status_code == 403
