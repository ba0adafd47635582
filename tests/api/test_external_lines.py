"""`/api/v1/external-lines`: roles, the life of a line, validation naming the
field, line limits, conflicts, paging, rules that keep a line from being
deleted, and a provider password that never comes back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from callbridge.api import create_app, external_lines
from callbridge.store.models import ExternalLine

from .conftest import Api, json_keys

URL = "/api/v1/external-lines"
TRUNK_PASSWORD = "trunk-secret-9f3c"
NEW_PASSWORD = "other-trunk-secret-77"


def trunk(**fields: Any) -> dict[str, Any]:
    return {
        "code": "ringostat",
        "server": "sip.example.net:5060",
        "register": True,
        "login": "acc1234",
        "password": TRUNK_PASSWORD,
        **fields,
    }


async def create(api: Api, **fields: Any) -> dict[str, Any]:
    answer = await api.client.post(URL, json=trunk(**fields), headers=api.auth())
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def assert_names(answer: Any, status: int, *loc: str | int) -> None:
    assert answer.status_code == status, answer.text
    assert [e["loc"] for e in answer.json()["detail"]] == [["body", *loc]]


@pytest.fixture(autouse=True)
def no_password_in_any_response(api: Api) -> Any:
    """Every test here: no response body, of any status, carries the password."""
    yield
    for body in api.bodies:
        assert TRUNK_PASSWORD.encode() not in body
        assert NEW_PASSWORD.encode() not in body
        if body:
            assert "password" not in json_keys(json.loads(body))


async def test_a_line_is_created_read_updated_and_deleted(api: Api) -> None:
    created = await create(api, total_lines=4, alt_addresses=["203.0.113.7", "198.51.100.0/24"])
    assert {k: v for k, v in created.items() if k not in ("id", "created_at", "updated_at")} == {
        "code": "ringostat",
        "active": True,
        "server": "sip.example.net:5060",
        "username": "",
        "register": True,
        "login": "acc1234",
        "password_set": True,
        "total_lines": 4,
        "outgoing_lines": 4,
        "transport": "udp",
        "incoming_auth": False,
        "inband_dtmf": False,
        "alt_addresses": ["203.0.113.7", "198.51.100.0/24"],
        "default_region": "US",
        "recording": None,
        "comment": "",
        "registration_state": "unregistered",
        "registration_reason": None,
    }
    url = f"{URL}/{created['id']}"

    read = await api.client.get(url, headers=api.auth("supervisor"))
    assert read.status_code == 200 and read.json() == created

    updated = await api.client.patch(
        url,
        json={"outgoing_lines": 2, "default_region": "UA", "transport": "tcp", "active": False},
        headers=api.auth(),
    )
    assert updated.status_code == 200, updated.text
    changed = {k: updated.json()[k] for k in ("outgoing_lines", "default_region", "transport")}
    assert changed == {"outgoing_lines": 2, "default_region": "UA", "transport": "tcp"}
    assert updated.json()["active"] is False and updated.json()["total_lines"] == 4

    assert (await api.client.delete(url, headers=api.auth())).status_code == 204
    assert (await api.client.get(url, headers=api.auth())).status_code == 404
    assert (await api.client.delete(url, headers=api.auth())).status_code == 404


async def test_the_password_is_stored_as_given_and_only_said_to_be_set(api: Api) -> None:
    created = await create(api)
    url = f"{URL}/{created['id']}"
    answer = await api.client.patch(url, json={"password": NEW_PASSWORD}, headers=api.auth())
    assert answer.status_code == 200 and answer.json()["password_set"] is True
    async with api.database.session() as session:
        stored = await session.scalar(select(ExternalLine))
    assert stored is not None and stored.password == NEW_PASSWORD

    cleared = await api.client.patch(
        url, json={"register": False, "password": ""}, headers=api.auth()
    )
    assert cleared.status_code == 200 and cleared.json()["password_set"] is False


async def test_a_line_without_registration_needs_no_credentials(api: Api) -> None:
    answer = await api.client.post(
        URL, json={"code": "ip-trunk", "server": "192.0.2.10"}, headers=api.auth()
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["register"], body["login"], body["password_set"]) == (False, "", False)
    assert (body["total_lines"], body["outgoing_lines"]) == (1, 1)


@pytest.mark.parametrize("field", ["login", "password"])
async def test_registration_needs_a_login_and_a_password(api: Api, field: str) -> None:
    body = trunk()
    del body[field]
    assert_names(await api.client.post(URL, json=body, headers=api.auth()), 422, field)
    created = await create(api, register=False, **{field: ""})
    answer = await api.client.patch(
        f"{URL}/{created['id']}", json={"register": True}, headers=api.auth()
    )
    assert_names(answer, 422, field)


@pytest.mark.parametrize("field", ["login", "password"])
async def test_checking_the_providers_calls_needs_a_login_and_a_password(
    api: Api, field: str
) -> None:
    body = trunk(register=False, incoming_auth=True)
    del body[field]
    assert_names(await api.client.post(URL, json=body, headers=api.auth()), 422, field)
    created = await create(api, register=False)
    assert created["incoming_auth"] is False  # off unless asked for
    turned_on = await api.client.patch(
        f"{URL}/{created['id']}", json={"incoming_auth": True}, headers=api.auth()
    )
    assert turned_on.status_code == 200 and turned_on.json()["incoming_auth"] is True
    cleared = await api.client.patch(f"{URL}/{created['id']}", json={field: ""}, headers=api.auth())
    assert_names(cleared, 422, field)
    nulled = await api.client.patch(
        f"{URL}/{created['id']}", json={"incoming_auth": None}, headers=api.auth()
    )
    assert_names(nulled, 422, "incoming_auth")


async def test_more_outgoing_lines_than_lines_is_422_naming_outgoing_lines(api: Api) -> None:
    answer = await api.client.post(
        URL, json=trunk(total_lines=2, outgoing_lines=3), headers=api.auth()
    )
    assert_names(answer, 422, "outgoing_lines")
    created = await create(api, total_lines=4, outgoing_lines=2)
    url = f"{URL}/{created['id']}"
    # Against the stored total, and against a stored outgoing count.
    assert_names(
        await api.client.patch(url, json={"outgoing_lines": 5}, headers=api.auth()),
        422,
        "outgoing_lines",
    )
    assert_names(
        await api.client.patch(url, json={"total_lines": 1}, headers=api.auth()),
        422,
        "outgoing_lines",
    )
    both = await api.client.patch(
        url, json={"total_lines": 8, "outgoing_lines": 8}, headers=api.auth()
    )
    assert both.status_code == 200 and both.json()["outgoing_lines"] == 8
    assert (await api.client.get(url, headers=api.auth())).json()["total_lines"] == 8


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("code", ""),
        ("code", " padded"),
        ("code", "c" * 65),
        ("server", ""),
        ("server", "sip example.net"),
        ("server", "sip.example.net:0"),
        ("server", "sip.example.net:65536"),
        ("server", "sip.example.net:sip"),
        ("server", "2001:db8::1"),
        ("server", "[2001:db8::zz]:5060"),
        ("server", "300.1.1.1"),
        ("server", "-bad-.example.net"),
        ("server", "h" * 256),
        ("username", "a b"),
        ("username", "u" * 65),
        ("login", 'acc"1'),
        ("login", "l" * 129),
        ("password", "p" * 129),
        ("total_lines", 0),
        ("total_lines", 10_001),
        ("outgoing_lines", -1),
        ("transport", "tls"),
        ("alt_addresses", "203.0.113.7"),
        ("alt_addresses", ["203.0.113.7"] * 101),
        ("default_region", "ua"),
        ("default_region", "USA"),
        ("default_region", "XX"),
        ("active", "maybe"),
        ("register", "maybe"),
        ("comment", "c" * 2001),
        ("registration_state", "registered"),
        ("password_set", True),
        ("surprise", 1),
    ],
)
async def test_a_bad_field_is_422_naming_it(api: Api, field: str, value: Any) -> None:
    answer = await api.client.post(URL, json=trunk(**{field: value}), headers=api.auth())
    assert answer.status_code == 422, answer.text
    assert {tuple(e["loc"][:2]) for e in answer.json()["detail"]} == {("body", field)}
    if field == "password":
        assert str(value) not in answer.text


@pytest.mark.parametrize(
    "address", ["203.0.113", "203.0.113.0/33", "203.0.113.7/24", "example.net", ""]
)
async def test_a_bad_alternative_address_is_422_naming_its_place(api: Api, address: str) -> None:
    answer = await api.client.post(
        URL, json=trunk(alt_addresses=["192.0.2.1", address]), headers=api.auth()
    )
    assert_names(answer, 422, "alt_addresses", 1)


async def test_servers_and_addresses_in_every_form_are_accepted(api: Api) -> None:
    servers = ["sip.example.net", "192.0.2.10:5080", "[2001:db8::1]:5060", "[2001:db8::1]"]
    for n, server in enumerate(servers):
        await create(api, code=f"t{n}", server=server)
    created = await create(
        api, code="alts", alt_addresses=["2001:DB8::/32", "192.0.2.1", "192.0.2.1", "10.0.0.0/8"]
    )
    assert created["alt_addresses"] == ["2001:db8::/32", "192.0.2.1", "10.0.0.0/8"]


@pytest.mark.parametrize("field", ["code", "server"])
async def test_a_missing_required_field_is_422_naming_it(api: Api, field: str) -> None:
    body = trunk()
    del body[field]
    assert_names(await api.client.post(URL, json=body, headers=api.auth()), 422, field)


@pytest.mark.parametrize(
    "field",
    ["code", "server", "register", "login", "password", "total_lines", "alt_addresses", "active"],
)
async def test_null_for_a_field_that_cannot_be_empty_is_422(api: Api, field: str) -> None:
    created = await create(api)
    answer = await api.client.patch(
        f"{URL}/{created['id']}", json={field: None}, headers=api.auth()
    )
    assert_names(answer, 422, field)


async def test_a_duplicate_code_is_409_naming_it(api: Api) -> None:
    await create(api)
    assert_names(await api.client.post(URL, json=trunk(), headers=api.auth()), 409, "code")
    second = await create(api, code="backup")
    answer = await api.client.patch(
        f"{URL}/{second['id']}", json={"code": "ringostat"}, headers=api.auth()
    )
    assert_names(answer, 409, "code")
    same = await api.client.patch(
        f"{URL}/{second['id']}", json={"code": "backup"}, headers=api.auth()
    )
    assert same.status_code == 200


async def test_a_line_rules_refer_to_cannot_be_deleted(api: Api) -> None:
    line = await create(api)
    other = await create(api, code="backup")
    routing = await api.client.post(
        "/api/v1/routing-rules",
        json={
            "name": "from the trunk",
            "direction": "incoming",
            "external_line_id": line["id"],
            "action": {"type": "deny"},
        },
        headers=api.auth(),
    )
    via = await api.client.post(
        "/api/v1/routing-rules",
        json={
            "name": "out via the trunk",
            "direction": "outgoing",
            "action": {"type": "external_line", "target": line["id"]},
        },
        headers=api.auth(),
    )
    normalization = await api.client.post(
        "/api/v1/normalization-rules",
        json={
            "name": "to e164",
            "direction": "incoming",
            "external_line_id": line["id"],
            "fields": ["from"],
            "method": "e164",
        },
        headers=api.auth(),
    )
    assert (routing.status_code, via.status_code, normalization.status_code) == (201, 201, 201)

    answer = await api.client.delete(f"{URL}/{line['id']}", headers=api.auth())
    assert answer.status_code == 409
    detail = answer.json()["detail"]
    assert "from the trunk" in detail and "out via the trunk" in detail and "to e164" in detail
    assert str(routing.json()["id"]) in detail and str(normalization.json()["id"]) in detail
    assert (await api.client.get(f"{URL}/{line['id']}", headers=api.auth())).status_code == 200
    # A line no rule names goes.
    assert (await api.client.delete(f"{URL}/{other['id']}", headers=api.auth())).status_code == 204

    for path, rule in (
        ("routing-rules", routing),
        ("routing-rules", via),
        ("normalization-rules", normalization),
    ):
        gone = await api.client.delete(f"/api/v1/{path}/{rule.json()['id']}", headers=api.auth())
        assert gone.status_code == 204
    assert (await api.client.delete(f"{URL}/{line['id']}", headers=api.auth())).status_code == 204


async def test_the_list_pages_in_code_order(api: Api) -> None:
    for code in ("e", "d", "c", "b", "a"):
        await create(api, code=f"trunk-{code}")
    first = await api.client.get(URL, params={"limit": 2}, headers=api.auth())
    rest = await api.client.get(URL, params={"limit": 10, "offset": 2}, headers=api.auth())
    assert first.json()["total"] == rest.json()["total"] == 5
    codes = [i["code"] for i in first.json()["items"] + rest.json()["items"]]
    assert codes == ["trunk-a", "trunk-b", "trunk-c", "trunk-d", "trunk-e"]
    for params in ({"limit": 0}, {"limit": 501}, {"offset": -1}):
        bad = await api.client.get(URL, params=params, headers=api.auth())
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][0] == "query"


async def test_operators_may_not_see_lines_and_supervisors_may_not_change_them(api: Api) -> None:
    created = await create(api)
    url = f"{URL}/{created['id']}"
    operator, supervisor = api.auth("operator"), api.auth("supervisor")
    assert (await api.client.get(URL, headers=operator)).status_code == 403
    assert (await api.client.get(url, headers=operator)).status_code == 403
    assert (await api.client.get(URL, headers=supervisor)).status_code == 200
    for headers in (operator, supervisor):
        post = await api.client.post(URL, json=trunk(code="other"), headers=headers)
        patch = await api.client.patch(url, json={"comment": "x"}, headers=headers)
        delete = await api.client.delete(url, headers=headers)
        assert (post.status_code, patch.status_code, delete.status_code) == (403, 403, 403)
    assert (await api.client.get(URL)).status_code == 401


async def test_an_unknown_line_is_404(api: Api) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        answer = await api.client.request(method, f"{URL}/999", json={}, headers=api.auth())
        assert answer.status_code == 404


@pytest.fixture
async def hooked(api: Api) -> AsyncIterator[tuple[httpx.AsyncClient, list[str]]]:
    """The API with the SIP side's registration states: line 1 failed to register."""
    calls: list[str] = []

    def registration_state(line_id: int) -> Mapping[str, str | None]:
        if line_id == 1:
            return {"state": "failed", "reason": "403 Forbidden"}
        return {"state": "registered", "reason": None}

    app = create_app(
        api.settings,
        api.database,
        registration_state=registration_state,
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        yield client, calls


async def test_the_sip_side_tells_each_lines_registration_state(
    api: Api, hooked: tuple[httpx.AsyncClient, list[str]]
) -> None:
    client, _ = hooked
    first = await client.post(URL, json=trunk(), headers=api.auth())
    second = await client.post(URL, json=trunk(code="backup"), headers=api.auth())
    assert (first.json()["id"], first.json()["registration_state"]) == (1, "failed")
    assert first.json()["registration_reason"] == "403 Forbidden"
    assert second.json()["registration_state"] == "registered"
    await client.delete(f"{URL}/2", headers=api.auth())
    listed = (await client.get(URL, headers=api.auth())).json()["items"]
    assert [(i["id"], i["registration_state"]) for i in listed] == [(1, "failed")]


async def test_what_slips_past_the_checks_is_refused_without_the_password(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a concurrent write would: the database refuses, and neither the
    answer nor the error that would be logged carries the password."""

    async def unchecked(*_args: Any, **_kwargs: Any) -> None:
        return None

    await create(api)
    monkeypatch.setattr(external_lines, "_check_code", unchecked)
    monkeypatch.setattr(external_lines, "_check_consistent", lambda **_kwargs: None)
    assert_names(await api.client.post(URL, json=trunk(), headers=api.auth()), 409, "code")
    answer = await api.client.post(
        URL, json=trunk(code="other", total_lines=1, outgoing_lines=2), headers=api.auth()
    )
    assert answer.status_code == 409 and "concurrent" in answer.json()["detail"]
    assert (await api.client.get(URL, headers=api.auth())).json()["total"] == 1


async def test_inband_dtmf_is_off_unless_asked_for(api: Api) -> None:
    created = await create(api)
    assert created["inband_dtmf"] is False
    turned_on = await api.client.patch(
        f"{URL}/{created['id']}", json={"inband_dtmf": True}, headers=api.auth()
    )
    assert turned_on.status_code == 200 and turned_on.json()["inband_dtmf"] is True
    nulled = await api.client.patch(
        f"{URL}/{created['id']}", json={"inband_dtmf": None}, headers=api.auth()
    )
    assert_names(nulled, 422, "inband_dtmf")
