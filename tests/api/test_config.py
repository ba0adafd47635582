"""`/api/v1/config`: edits are staged until an admin applies them; an apply
checks the whole set, names every problem and changes nothing when it finds
one; versions are listed and an earlier one can be applied again."""

from __future__ import annotations

from typing import Any

import httpx

from .conftest import Api
from .test_routing_rules import default_rule  # noqa: F401 - an autouse fixture

APPLY = "/api/v1/config/apply"
VERSIONS = "/api/v1/config/versions"


async def line(client: httpx.AsyncClient, api: Api, number: str) -> int:
    created = await client.post(
        "/api/v1/internal-lines",
        json={"number": number, "username": f"u{number}", "password": "a-long-sip-pass"},
        headers=api.auth(),
    )
    assert created.status_code == 201, created.text
    line_id: int = created.json()["id"]
    return line_id


def numbers(snapshot: dict[str, Any]) -> list[str]:
    return [row["number"] for row in snapshot["internal_lines"]]


async def test_edits_reach_the_pbx_only_when_applied(
    api: Api, pbx: tuple[httpx.AsyncClient, list[dict[str, Any]]]
) -> None:
    client, running = pbx
    await line(client, api, "101")
    assert running == []
    applied = await client.post(APPLY, headers=api.auth())
    assert applied.status_code == 200, applied.text
    assert applied.json()["counts"]["internal_lines"] == 1
    assert applied.json()["applied_by"] == "admin"
    assert [numbers(s) for s in running] == [["101"]]


async def test_a_set_that_cannot_run_is_refused_whole_naming_each_problem(
    api: Api, pbx: tuple[httpx.AsyncClient, list[dict[str, Any]]]
) -> None:
    client, running = pbx
    line_id = await line(client, api, "101")
    rules = (await client.get("/api/v1/routing-rules", headers=api.auth())).json()["items"]
    [default] = [r for r in rules if r["is_default"]]
    await client.patch(
        f"/api/v1/routing-rules/{default['id']}",
        json={"action": {"type": "internal_line", "target": "101"}},
        headers=api.auth(),
    )
    assert (await client.post(APPLY, headers=api.auth())).status_code == 200
    # The line the default rule sends calls to is deleted: the set cannot run.
    await client.delete(f"/api/v1/internal-lines/{line_id}", headers=api.auth())
    refused = await client.post(APPLY, headers=api.auth())
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"] == [
        {
            "object": "routing_rule",
            "id": default["id"],
            "field": "action.target",
            "problem": "there is no internal line 101",
        }
    ]
    listed = (await client.get(VERSIONS, headers=api.auth())).json()
    assert listed["total"] == 1 and len(running) == 1  # nothing changed


async def test_an_earlier_version_is_applied_again(
    api: Api, pbx: tuple[httpx.AsyncClient, list[dict[str, Any]]]
) -> None:
    client, running = pbx
    await line(client, api, "101")
    first = (await client.post(APPLY, headers=api.auth())).json()
    await line(client, api, "102")
    await client.post(APPLY, headers=api.auth())
    back = await client.post(f"{VERSIONS}/{first['id']}/apply", headers=api.auth())
    assert back.status_code == 200, back.text
    assert back.json()["source"] == f"rollback to {first['id']}"
    assert [numbers(s) for s in running] == [["101"], ["101", "102"], ["101"]]
    # The staged set is that version again.
    staged = (await client.get("/api/v1/internal-lines", headers=api.auth())).json()
    assert [item["number"] for item in staged["items"]] == ["101"]
    listed = (await client.get(VERSIONS, headers=api.auth())).json()
    assert [v["source"] for v in listed["items"]] == [
        f"rollback to {first['id']}",
        "apply",
        "apply",
    ]
    missing = await client.post(f"{VERSIONS}/9999/apply", headers=api.auth())
    assert missing.status_code == 404


async def test_only_an_admin_applies(
    api: Api, pbx: tuple[httpx.AsyncClient, list[dict[str, Any]]]
) -> None:
    client, running = pbx
    for role in ("supervisor", "operator"):
        assert (await client.post(APPLY, headers=api.auth(role))).status_code == 403
    assert (await client.get(VERSIONS, headers=api.auth("supervisor"))).status_code == 200
    assert (await client.get(VERSIONS, headers=api.auth("operator"))).status_code == 403
    assert running == []
