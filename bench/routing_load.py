"""Incoming calls per second from a SIPp provider through routing and
normalization: the same load against a callbridge with the default incoming
rule alone (the reference) and against one with 1,000 routing rules and 100
normalization rules on the line, none of which takes these calls.

    .venv/bin/python bench/routing_load.py [--rate 100] [--seconds 20]

Goal: the rule count changes the rate by no more than 10%.

A call: the provider (SIPp on 127.0.0.2, tests/integration/scenarios/
provider_uac_call.xml, no digest: callbridge knows the provider by its
address) sends an INVITE to the DID; the caller's number goes through the
line's incoming normalization rules, the routing rules are walked to the
default rule, which sends the call to line 102, whose SIPp callee answers;
ACK; BYE at once. No RTP. The 1,000 routing rules have destination masks
spread over every leading digit (so the first-character index cannot skip
them all), and the 100 normalization rules are regex rules on the From
number that do not match, so each one is tried.

Besides the achieved rate, callbridge's CPU per call shows what the rules
cost when the rate does not.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path
from typing import Any

import httpx

from call_load import (
    ADMIN_PASSWORD,
    LINE_PASSWORD,
    SETTINGS,
    register_callee,
    start_callee,
    stop_callee,
    stop_server,
)
from options_load import compare, free_port, measure, sipp_client, start_callbridge

HERE = Path(__file__).resolve().parent
PROVIDER_SCENARIO = str(
    HERE.parent / "tests" / "integration" / "scenarios" / "provider_uac_call.xml"
)
PROVIDER = "127.0.0.2"
CALLEE = "102"
ROUTING_RULES = 1000
NORMALIZATION_RULES = 100


def provision(http_port: int, provider_port: int, *, many: bool) -> None:
    """Line 102, the provider's external line, the default rule to 102, and
    with `many` the extra rules; then apply."""
    rng = random.Random(7)
    with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as api:
        token = api.post(
            "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        ).json()["token"]
        api.headers["Authorization"] = f"Bearer {token}"
        api.post(
            "/api/v1/internal-lines",
            json={
                "number": CALLEE,
                "username": f"callee{CALLEE}",
                "password": LINE_PASSWORD,
                "max_incoming_calls": 50,
            },
        ).raise_for_status()
        line = api.post(
            "/api/v1/external-lines",
            json={
                "code": "provider",
                "server": f"{PROVIDER}:{provider_port}",
                "total_lines": 200,
                "default_region": "RU",
            },
        )
        line.raise_for_status()
        line_id = line.json()["id"]
        [default] = [r for r in api.get("/api/v1/routing-rules").json()["items"] if r["is_default"]]
        api.patch(
            f"/api/v1/routing-rules/{default['id']}",
            json={"action": {"type": "internal_line", "target": CALLEE}},
        ).raise_for_status()
        if many:
            for n in range(ROUTING_RULES):
                # Masks over every leading digit; none matches the 12-digit DID.
                mask = f"{rng.randint(0, 9)}{rng.randint(0, 99):02d}XXXX"
                api.post(
                    "/api/v1/routing-rules",
                    json={
                        "name": f"rule {n}",
                        "direction": "incoming",
                        "priority": 10 + n,
                        "external_line_id": line_id,
                        "destination_mask": mask,
                        "action": {"type": "internal_line", "target": CALLEE},
                    },
                ).raise_for_status()
            for n in range(NORMALIZATION_RULES):
                api.post(
                    "/api/v1/normalization-rules",
                    json={
                        "name": f"normalization {n}",
                        "priority": n,
                        "direction": "incoming",
                        "external_line_id": line_id,
                        "fields": ["from"],
                        "method": "pattern",
                        "match": rf"^{900 + n}(\d+)$",
                        "replacement": r"+7\1",
                    },
                ).raise_for_status()
        api.post("/api/v1/config/apply").raise_for_status()


def run(rate: int, seconds: int, workdir: Path, *, many: bool) -> dict[str, Any]:
    workdir = workdir / ("many-rules" if many else "one-rule")  # a database each
    workdir.mkdir()
    server, sip_port, http_port = start_callbridge(workdir, **SETTINGS)
    provider_port = free_port(PROVIDER)
    callee_port = free_port()
    callee: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] = {}
    try:
        provision(http_port, provider_port, many=many)
        register_callee(sip_port, callee_port, CALLEE, workdir)
        callee = start_callee(callee_port, workdir)
        result = measure(
            server,
            lambda: sipp_client(
                sip_port,
                rate,
                seconds,
                workdir,
                scenario=PROVIDER_SCENARIO,
                local_ip=PROVIDER,
                local_port=provider_port,
                extra=("-s", "89161234567", "-key", "did", "380441234567", "-d", "0"),
            ),
        )
        result["server_cpu_ms_per_call"] = round(
            1000 * result["server_cpu_seconds"] / max(result["answered"], 1), 3
        )
    finally:
        if callee is not None:
            result.update(stop_callee(callee, callee_port, workdir))
        stop_server(server, result)
    return result


def main() -> None:
    compare(
        __doc__,
        rate=100,
        seconds=20,
        reference_name="default rule alone (reference)",
        reference=lambda rate, seconds, workdir: run(rate, seconds, workdir, many=False),
        callbridge=lambda rate, seconds, workdir: run(rate, seconds, workdir, many=True),
        ratio_of="answered_per_s",
    )


if __name__ == "__main__":
    main()
