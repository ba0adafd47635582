"""Registrations with digest authentication per second, under SIPp load
over UDP, against a reference run in the same command: SIPp playing a
registrar that challenges and accepts without checking (register_uas.xml).

    .venv/bin/python bench/register_load.py [--rate 1500] [--seconds 20]

Each SIPp call is one registration: REGISTER, 401, REGISTER with
credentials, 200. It counts as lost when it failed or needed a
retransmission. Against callbridge the line is created over the API first,
and the digest is MD5 (SIPp 3.6 knows no other).
"""

from __future__ import annotations

from pathlib import Path

import httpx

from options_load import (
    compare,
    measure,
    sipp_client,
    start_callbridge,
    stop_callbridge,
)
from options_load import reference as options_reference

ADMIN_PASSWORD = "bench-admin-password"
LINE_PASSWORD = "bench-line-password"
SIPP_ARGS = ("-s", "101", "-au", "alice", "-ap", LINE_PASSWORD)


def reference(rate: int, seconds: int, workdir: Path) -> dict[str, float]:
    return options_reference(
        rate,
        seconds,
        workdir,
        server_scenario="register_uas.xml",
        scenario="register.xml",
        extra=SIPP_ARGS,
    )


def callbridge(rate: int, seconds: int, workdir: Path) -> dict[str, float]:
    server, sip_port, http_port = start_callbridge(
        workdir,
        CALLBRIDGE_ADMIN_PASSWORD=ADMIN_PASSWORD,
        CALLBRIDGE_SIP_DIGEST_ALGORITHMS="MD5",
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=10) as api:
            token = api.post(
                "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
            ).json()["token"]
            api.post(
                "/api/v1/internal-lines",
                json={"number": "101", "username": "alice", "password": LINE_PASSWORD},
                headers={"Authorization": f"Bearer {token}"},
            ).raise_for_status()
            api.post(
                "/api/v1/config/apply", headers={"Authorization": f"Bearer {token}"}
            ).raise_for_status()
        return measure(
            server,
            lambda: sipp_client(
                sip_port, rate, seconds, workdir, scenario="register.xml", extra=SIPP_ARGS
            ),
        )
    finally:
        stop_callbridge(server)


def main() -> None:
    compare(
        __doc__,
        rate=1500,
        seconds=20,
        reference_name="sipp registrar (reference)",
        reference=reference,
        callbridge=callbridge,
    )


if __name__ == "__main__":
    main()
