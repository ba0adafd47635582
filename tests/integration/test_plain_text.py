"""Text the store cannot keep never reaches it: every string a client can
send (read from the running server's own OpenAPI document, so a route added
later is covered too), holding a NUL, another control character or a lone
surrogate, gets a 4xx, never a 500 — a 422 naming the field for a body.
PostgreSQL refuses NUL in text and both drivers refuse a surrogate, so on
PostgreSQL these were 500s (found by `make fuzz`). Over real HTTP to a
`callbridge serve` on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import re
from urllib.parse import quote

import httpx

from .conftest import Server
from .test_calls import fresh_postgres  # noqa: F401 - a fixture
from .test_int_bounds import (  # live: a fixture
    ADMIN_PASSWORD,
    body_fields,
    live,  # noqa: F401
    url_parameters,
)

# What no text may hold: NUL, another C0 control, DEL, a lone surrogate.
# (A surrogate cannot be put in a URL, so paths and queries get the others.)
BODY_TEXTS = ["a\x00b", "a\x1bb", "a\x7fb", "a\ud800b"]
URL_TEXTS = ["a\x00b", "a\x1bb"]
JSON = {"Content-Type": "application/json"}


def _signed_in(server: Server) -> httpx.Client:
    http = httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=10)
    token = http.post(
        "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    ).json()["token"]
    http.headers["Authorization"] = f"Bearer {token}"
    return http


def test_every_body_text_field_refuses_what_no_text_may_hold_with_a_422_naming_it(
    live: Server,  # noqa: F811
) -> None:
    with contextlib.closing(_signed_in(live)) as http:
        fields = body_fields(http.get("/api/openapi.json").json(), "string")
        assert len(fields) >= 30, fields  # the spec lists them all
        wrong = []
        for method, path, field in fields:
            url = re.sub(r"\{[^}]+\}", "1", path)
            for text in BODY_TEXTS:
                # json.dumps escapes the surrogate as JSON may; httpx would not.
                body = json.dumps({field: text})
                answer = http.request(method.upper(), url, content=body, headers=JSON)
                named = answer.status_code == 422 and any(
                    detail["loc"][-1] == field for detail in answer.json()["detail"]
                )
                if not named:
                    wrong.append(f"{method.upper()} {path} {field}={text!r}: {answer.status_code}")
        assert not wrong, "\n".join(wrong)
        # Tabs and line breaks are text: a note or a comment may hold them.
        created = http.post(
            "/api/v1/contacts", json={"name": "Ivan Petrov", "comment": "first\n\tsecond\r\n"}
        )
        assert created.status_code == 201, created.text


def test_every_url_text_parameter_refuses_control_characters_without_a_server_error(
    live: Server,  # noqa: F811
) -> None:
    with contextlib.closing(_signed_in(live)) as http:
        parameters = url_parameters(http.get("/api/openapi.json").json(), "string")
        assert len(parameters) >= 5, parameters
        wrong = []
        for method, path, _, where, name in parameters:
            for text in URL_TEXTS:
                url = path.replace("{" + name + "}", quote(text, safe=""))
                url = re.sub(r"\{[^}]+\}", "1", url)
                params = {name: text} if where == "query" else {}
                answer = http.request(method.upper(), url, params=params, json={})
                if not 400 <= answer.status_code < 500:
                    wrong.append(f"{method.upper()} {path} {name}={text!r}: {answer.status_code}")
        assert not wrong, "\n".join(wrong)
