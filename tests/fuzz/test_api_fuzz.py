"""The HTTP API of a live `callbridge serve`, fuzzed from its own OpenAPI
schema with schemathesis, on SQLite and on PostgreSQL: no request, valid by
the schema (positive) or breaking it (negative), may get a 5xx.

Every operation runs signed in as an operator and then as the admin.
FUZZ_API_EXAMPLES sets the examples per operation, role and mode (`make
fuzz` runs many more than `make test`); FUZZ_SEED replays a run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode

from ..integration.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("FUZZ_SEED", "4475"))
EXAMPLES = int(os.environ.get("FUZZ_API_EXAMPLES", "8"))
ADMIN_PASSWORD = "admin-pass-for-fuzzing"
OPERATOR = ("fuzz-operator", "operator-pass-for-fuzzing")
# Operations that would sign the fuzzer out and leave it testing nothing but 401.
SIGNING_OUT = ("/api/v1/auth/logout",)


@dataclass
class Session:
    """A signed-in user of the API under test; signs in again when its
    token stops working (an operation may revoke it)."""

    base: str
    username: str
    password: str
    http: requests.Session = field(default_factory=requests.Session)
    token: str = ""

    def headers(self) -> dict[str, str]:
        probe = self.http.get(f"{self.base}/api/v1/employees", headers=self._auth(), timeout=30)
        if not self.token or probe.status_code == 401:
            login = self.http.post(
                f"{self.base}/api/v1/auth/login",
                json={"username": self.username, "password": self.password},
                timeout=30,
            )
            assert login.status_code == 200, f"{self.username} cannot sign in: {login.text}"
            self.token = login.json()["token"]
        return self._auth()

    def _auth(self) -> dict[str, str]:
        # A connection of its own per request: one the server closed after a
        # malformed request must not fail the next, well-formed one.
        return {"Authorization": f"Bearer {self.token}", "Connection": "close"}


@dataclass(frozen=True)
class Finding:
    operation: str
    role: str
    mode: str
    status: int | None
    request: str
    answer: str

    def __str__(self) -> str:
        head = f"{self.operation} as {self.role} ({self.mode}): {self.status}"
        return f"{head}\n  {self.request}\n  {self.answer[:500]}"


def _sacrifice(admin: Session) -> int:
    """An employee of its own for the operations on /employees/{id}: with
    any id they could change the operator's password or delete it."""
    created = admin.http.post(
        f"{admin.base}/api/v1/employees",
        json={"name": "Sacrifice", "login": "sacrifice", "password": "sacrifice-pass-1"},
        headers=admin.headers(),
        timeout=30,
    )
    assert created.status_code == 201, created.text
    employee_id: int = created.json()["id"]
    return employee_id


def _operator(admin: Session) -> None:
    created = admin.http.post(
        f"{admin.base}/api/v1/employees",
        json={"name": "Operator", "login": OPERATOR[0], "password": OPERATOR[1]},
        headers=admin.headers(),
        timeout=30,
    )
    assert created.status_code == 201, created.text


def fuzz(server: Server) -> tuple[list[Finding], dict[str, int]]:
    """Run every operation of the schema: the 5xx found, and the counts."""
    base = f"http://127.0.0.1:{server.http_port}"
    schema = schemathesis.openapi.from_url(f"{base}/api/openapi.json")
    admin = Session(base, "admin", ADMIN_PASSWORD)
    _operator(admin)
    sacrifice = _sacrifice(admin)
    sessions = [("operator", Session(base, *OPERATOR)), ("admin", admin)]
    findings: list[Finding] = []
    counts = {"operations": 0, "requests": 0}
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith(SIGNING_OUT):
            continue
        counts["operations"] += 1
        pinned = {"employee_id": sacrifice} if "{employee_id}" in operation.path else None
        for role, session in sessions:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=pinned)
                _run(strategy, session, role, mode.value, findings, counts)
    return findings, counts


def _run(
    strategy: object,
    session: Session,
    role: str,
    mode: str,
    findings: list[Finding],
    counts: dict[str, int],
) -> None:
    headers = session.headers()

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.seed(SEED)
    @given(case=strategy)
    def run(case: Case) -> None:
        counts["requests"] += 1
        try:
            response = case.call(session=session.http, headers=headers, timeout=30)
        except requests.RequestException as error:
            findings.append(Finding(_name(case), role, mode, None, _curl(case), repr(error)))
            return
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except FailureGroup:
            findings.append(
                Finding(_name(case), role, mode, response.status_code, _curl(case), response.text)
            )

    # Unsatisfiable: nothing breaks the schema of an operation with no constraint.
    with contextlib.suppress(hypothesis.errors.Unsatisfiable):
        run()


def _name(case: Case) -> str:
    return f"{case.method} {case.operation.path}"


def _curl(case: Case) -> str:
    return case.as_curl_command(headers={"Authorization": "Bearer ..."})


def _reset_postgres(url: str) -> None:
    async def reset() -> None:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        finally:
            await connection.close()

    asyncio.run(reset())


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_no_request_from_the_schema_gets_a_server_error(
    database: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    env = {"CALLBRIDGE_ADMIN_PASSWORD": ADMIN_PASSWORD, "CALLBRIDGE_LOG_LEVEL": "info"}
    if database == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        _reset_postgres(url)
        env["CALLBRIDGE_DATABASE_URL"] = url
    server = start_server(tmp_path, **env)
    started = time.monotonic()
    try:
        found, counts = fuzz(server)
    finally:
        stop_server(server.process)
    print(
        f"API fuzz on {database}: seed {SEED}, {EXAMPLES} examples per operation, role and mode: "
        f"{counts['operations']} operations, {counts['requests']} requests, "
        f"{time.monotonic() - started:.1f} s"
    )
    assert not found, f"{len(found)} server errors:\n" + "\n".join(map(str, found[:10]))
