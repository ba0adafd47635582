"""Integers out of range never reach the database: every integer parameter
of every route (read from the running server's own OpenAPI document, so a
route added later is covered too), sent a number beyond what PostgreSQL's
columns hold, gets a 422 naming the parameter, never a 500. Over real HTTP
to a `callbridge serve` on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Server, start_server, stop_server
from .test_calls import fresh_postgres  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "admin-pass-for-bounds-tests"
# Past INTEGER, past BIGINT, past unsigned 64 bits, far past; and below.
OUT_OF_RANGE = [2**31, 2**63, 2**64, 10**30, -(2**63) - 1]


@pytest.fixture(params=["sqlite", "postgresql"])
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    env = {"CALLBRIDGE_ADMIN_PASSWORD": ADMIN_PASSWORD}
    if request.param == "postgresql":
        env["CALLBRIDGE_DATABASE_URL"] = request.getfixturevalue("fresh_postgres")
    server = start_server(tmp_path, **env)
    try:
        yield server
    finally:
        stop_server(server.process)
    assert server.process.returncode == 0, server.log()


def types_of(schema: dict[str, Any]) -> set[str | None]:
    """The JSON types a schema admits (an optional one is an anyOf with null)."""
    return {s.get("type") for s in [schema, *schema.get("anyOf", [])]}


def url_parameters(
    spec: dict[str, Any], kind: str
) -> list[tuple[str, str, dict[str, Any], str, str]]:
    """(method, path, the operation, where, parameter name) for every
    parameter of JSON type `kind` in a path or query."""
    found = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                where = parameter["in"]
                if kind in types_of(parameter["schema"]) and where in ("path", "query"):
                    found.append((method, path, operation, where, parameter["name"]))
    return found


def request_with(
    http: httpx.Client, method: str, path: str, operation: dict[str, Any], name: str, value: int
) -> httpx.Response:
    """The operation with `name` = `value` and every other path parameter 1."""
    url, params = path, {}
    for parameter in operation.get("parameters", []):
        if parameter["in"] != "path":
            continue
        url = url.replace(
            "{" + parameter["name"] + "}", str(value if parameter["name"] == name else 1)
        )
    if url == path or "{" + name + "}" not in path:
        params[name] = str(value)
    return http.request(method.upper(), url, params=params, json={})


def test_every_integer_parameter_refuses_numbers_out_of_range_with_a_422_naming_it(
    live: Server,
) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{live.http_port}", timeout=10) as http:
        token = http.post(
            "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        ).json()["token"]
        http.headers["Authorization"] = f"Bearer {token}"
        parameters = url_parameters(http.get("/api/openapi.json").json(), "integer")
        assert len(parameters) >= 40, parameters  # the spec lists them all
        wrong = []
        for method, path, operation, _, name in parameters:
            for value in OUT_OF_RANGE:
                answer = request_with(http, method, path, operation, name, value)
                named = answer.status_code == 422 and any(
                    detail["loc"][-1] == name for detail in answer.json()["detail"]
                )
                if not named:
                    wrong.append(f"{method.upper()} {path} {name}={value}: {answer.status_code}")
        assert not wrong, "\n".join(wrong)
        # Within range, the same routes still answer as before.
        assert http.get("/api/v1/calls", params={"offset": 2**31 - 1}).status_code == 200
        assert http.get("/api/v1/employees/2147483647").status_code == 404


def body_fields(spec: dict[str, Any], kind: str) -> list[tuple[str, str, str]]:
    """(method, path, field) for every field of JSON type `kind` of a JSON
    request body."""
    schemas = spec["components"]["schemas"]
    found = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            reference = content.get("application/json", {}).get("schema", {}).get("$ref")
            if reference is None:
                continue
            body = schemas[reference.rsplit("/", 1)[-1]]
            for field, schema in body.get("properties", {}).items():
                if kind in types_of(schema):
                    found.append((method, path, field))
    return found


def test_every_integer_body_field_refuses_numbers_out_of_range_with_a_422_naming_it(
    live: Server,
) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{live.http_port}", timeout=10) as http:
        token = http.post(
            "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        ).json()["token"]
        http.headers["Authorization"] = f"Bearer {token}"
        fields = body_fields(http.get("/api/openapi.json").json(), "integer")
        assert len(fields) >= 15, fields
        wrong = []
        for method, path, field in fields:
            url = re.sub(r"\{[^}]+\}", "1", path)
            for value in OUT_OF_RANGE:
                answer = http.request(method.upper(), url, json={field: value})
                named = answer.status_code == 422 and any(
                    detail["loc"][-1] == field for detail in answer.json()["detail"]
                )
                if not named:
                    wrong.append(f"{method.upper()} {path} {field}={value}: {answer.status_code}")
        assert not wrong, "\n".join(wrong)
