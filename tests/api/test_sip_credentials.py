"""`POST /api/v1/me/sip-credentials`: the browser softphone's SIP credential
for the signed-in employee's line, and every reason not to give one. The
credential at work is in tests/integration/test_sip_websocket.py."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from callbridge.pbx.browser_credentials import BrowserCredentials
from callbridge.pbx.lines import Line, Lines
from callbridge.settings import IceServer, Settings
from callbridge.store import User

from .conftest import Api
from .test_click_to_call import make_employee

URL = "/api/v1/me/sip-credentials"


async def with_line(api: Api, *, line: bool = True) -> int:
    """The operator as an employee, with line 101 in the running lines."""
    await make_employee(api, "operator", telephony=True)
    async with api.database.session() as session:
        employee_id = await session.scalar(
            select(User.employee_id).where(User.username == "operator")
        )
    assert employee_id is not None
    running = Lines.of(
        [Line(number="101", username="op", ha1={}, employee_id=employee_id)] if line else []
    )
    assert api.app is not None
    api.app.state.browser_credentials = BrowserCredentials(
        b"a secret for the API tests", lines=lambda: running, ttl=3600, clock=time.time
    )
    api.app.state.sip_domain = "198.51.100.7"
    return employee_id


async def test_an_employee_gets_a_credential_for_their_line(api: Api) -> None:
    employee_id = await with_line(api)
    answer = await api.client.post(URL, headers=api.auth("operator"))
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert set(body) == {"ws_url", "uri", "username", "password", "expires_at", "ice_servers"}
    assert body["ws_url"] == "/ws/sip" and body["ice_servers"] == []
    assert body["uri"] == "sip:101@198.51.100.7"
    assert body["username"].startswith(f"web/{employee_id}/101/")
    # The API token of these tests lives 600 s: the credential no longer.
    expires = datetime.fromisoformat(body["expires_at"]).timestamp()
    assert time.time() < expires <= time.time() + 601


async def test_the_ice_servers_setting_reaches_the_browser(api: Api) -> None:
    await with_line(api)
    assert api.app is not None
    api.app.state.settings = api.settings.model_copy(
        update={
            "ice_servers": [
                IceServer(urls=["turn:turn.example.com:3478"], username="u", credential="p"),
                IceServer(urls=["stun:stun.example.com"]),
            ]
        }
    )
    answer = await api.client.post(URL, headers=api.auth("operator"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["ice_servers"] == [
        {"urls": ["turn:turn.example.com:3478"], "username": "u", "credential": "p"},
        {"urls": ["stun:stun.example.com"]},
    ]


def test_an_ice_server_is_stun_or_turn_and_bounded() -> None:
    assert IceServer.model_validate({"urls": "stun:stun.example.com"}).urls == [
        "stun:stun.example.com"
    ]
    for bad in (
        {"urls": "https://turn.example.com"},
        {"urls": []},
        {"urls": ["stun:a.example"] * 5},
        {"urls": "turn:x.example", "credential": "p" * 257},
        {"urls": "turn:x.example", "secret": "p"},
        {"urls": "turn:x.example", "username": "u"},  # a browser would refuse every call
        {"urls": "stun:a.example\r\nX: y"},
    ):
        with pytest.raises(ValidationError):
            IceServer.model_validate(bad)
    with pytest.raises(ValidationError):
        Settings(ice_servers=[{"urls": "stun:a.example"}] * 9)
    secret = IceServer(urls=["turns:t.example"], username="u", credential="hidden-turn-pass")
    assert "hidden-turn-pass" not in repr(Settings(ice_servers=[secret]))


async def test_an_employee_without_a_running_line_is_409(api: Api) -> None:
    await with_line(api, line=False)
    answer = await api.client.post(URL, headers=api.auth("operator"))
    assert answer.status_code == 409, answer.text
    assert "no internal line" in answer.json()["detail"]


async def test_a_user_without_an_employee_is_409(api: Api) -> None:
    await with_line(api)
    answer = await api.client.post(URL, headers=api.auth("admin"))
    assert answer.status_code == 409 and "not an employee" in answer.json()["detail"]


async def test_an_employee_without_telephony_is_403(api: Api) -> None:
    await make_employee(api, "supervisor", telephony=False)
    answer = await api.client.post(URL, headers=api.auth("supervisor"))
    assert answer.status_code == 403, answer.text


async def test_without_a_pbx_in_the_process_it_is_503(api: Api) -> None:
    await make_employee(api, "operator", telephony=True)
    answer = await api.client.post(URL, headers=api.auth("operator"))
    assert answer.status_code == 503, answer.text


async def test_signing_in_is_required(api: Api) -> None:
    await with_line(api)
    assert (await api.client.post(URL)).status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    assert (await api.client.post(URL, headers=bad)).status_code == 401
