"""Phones over TCP whose connection goes away (RFC 5626 calls it a flow): a
restart of callbridge, a phone that dies. linphone-cli re-registers as soon as
its connection drops, from a new port and with a new Contact but the same
Call-ID and `+sip.instance`; a binding whose connection is gone is no device.
baresip does not notice a dropped connection: the one it registered over is
kept open however idle.
"""

from __future__ import annotations

import contextlib
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from .baresip import Baresip
from .conftest import Server, start_server, stop_server
from .linphone import Linphone

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "admin-pass-for-flow-tests"
LINE = ("101", "alice", "alice-sip-password-for-flows")
ENV = {"CALLBRIDGE_ADMIN_PASSWORD": ADMIN_PASSWORD}


@contextlib.contextmanager
def admin(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=10) as api:
        login = api.post(
            "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        login.raise_for_status()
        api.headers["Authorization"] = f"Bearer {login.json()['token']}"
        yield api


def create_line(server: Server) -> None:
    """Line 101 with the default of one device."""
    number, username, password = LINE
    with admin(server) as api:
        api.post(
            "/api/v1/internal-lines",
            json={"number": number, "username": username, "password": password},
        ).raise_for_status()
        api.post("/api/v1/config/apply").raise_for_status()


def devices(server: Server) -> list[dict[str, Any]]:
    with admin(server) as api:
        [line] = api.get("/api/v1/internal-lines").json()["items"]
        items: list[dict[str, Any]] = api.get(
            f"/api/v1/internal-lines/{line['id']}/registrations"
        ).json()["items"]
        return items


def wait_devices(
    server: Server, expected: Callable[[list[dict[str, Any]]], bool], timeout: float, why: str
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = devices(server)
        if expected(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{why}: devices {found}")
        time.sleep(0.2)


def registered_over_tcp(found: list[dict[str, Any]]) -> bool:
    return len(found) == 1 and str(found[0]["source"]).startswith("tcp:")


@dataclass
class Rig:
    """callbridge runs on one database and SIP port, and the phone under test."""

    tmp_path: Path
    runs: list[Server]
    phone: Linphone | Baresip | None = None

    @property
    def server(self) -> Server:
        return self.runs[-1]

    def restart(self, **env: str) -> Server:
        """Stop callbridge (SIGTERM) and start it again on the same database
        and SIP port; the log of the run before is kept beside."""
        before = self.server
        stop_server(before.process)
        assert before.process.returncode == 0, before.log()
        kept = self.tmp_path / f"callbridge-{len(self.runs)}.log"
        before.log_path = before.log_path.rename(kept)
        self.runs.append(
            start_server(self.tmp_path, **ENV, CALLBRIDGE_SIP_PORT=str(before.port), **env)
        )
        return self.server

    def register_linphone(self) -> dict[str, Any]:
        """linphone registered over TCP on line 101; returns its device."""
        _, username, password = LINE
        self.phone = Linphone(
            self.tmp_path / "linphone",
            username=username,
            password=password,
            registrar=f"{self.server.host}:{self.server.port}",
            transport="tcp",
            retry=1.0,
            auto_answer=False,
        )
        create_line(self.server)
        self.phone.start()
        [device] = wait_devices(self.server, registered_over_tcp, 10, "linphone did not register")
        return device

    def diagnostics(self) -> str:
        logs = [f"--- callbridge run {n} ---\n{run.log()}" for n, run in enumerate(self.runs, 1)]
        if self.phone is not None:
            logs.append(f"--- phone ---\n{self.phone.log()}")
        return "\n".join(logs)


@contextlib.contextmanager
def rig(tmp_path: Path, **env: str) -> Iterator[Rig]:
    """callbridge started with `env`; at the end the phone and every run are
    stopped, each run having exited cleanly. A failure carries every log."""
    setup = Rig(tmp_path, [start_server(tmp_path, **ENV, **env)])
    try:
        yield setup
    except Exception as error:
        raise AssertionError(f"{error}\n{setup.diagnostics()}") from error
    finally:
        if setup.phone is not None:
            setup.phone.stop()
        for server in setup.runs:
            stop_server(server.process)
    for server in setup.runs:
        assert server.process.returncode == 0, server.log()


def test_a_tcp_phone_registers_again_at_once_after_a_restart(tmp_path: Path) -> None:
    with rig(tmp_path) as setup:
        before = setup.register_linphone()
        # The same database and port: the binding comes back, its connection does not.
        server = setup.restart()
        assert "pbx.bindings_restored count=1" in server.log()
        # linphone reconnects from a new port, with a new Contact, to a line
        # of one device: the binding on the closed connection is that device.
        [after] = wait_devices(
            server,
            lambda found: registered_over_tcp(found) and found[0]["source"] != before["source"],
            10,
            "linphone was not let in again",
        )
        assert after["contact"] != before["contact"]
        assert "Too Many Devices" not in server.log()
        # It answered with the nonce of the run before: told to take a fresh
        # one (stale), not counted as a failure that eleven phones behind one
        # NAT would turn into a block.
        assert "auth.failed" not in server.log(), server.log()


def test_the_binding_of_a_phone_whose_connection_closed_goes_after_the_grace(
    tmp_path: Path,
) -> None:
    with rig(tmp_path, CALLBRIDGE_REGISTRAR_FLOW_GRACE="2") as setup:
        setup.register_linphone()
        assert isinstance(setup.phone, Linphone)
        setup.phone.kill()
        closed_at = time.monotonic()
        wait_devices(setup.server, lambda found: found == [], 10, "the dead phone is still bound")
        # Not at once: a phone that reconnects within the grace keeps its place.
        assert time.monotonic() - closed_at >= 1.5
        assert "pbx.dead_flows_dropped bindings=1" in setup.server.log()


def test_a_tcp_binding_read_back_at_start_goes_if_its_phone_does_not_return(
    tmp_path: Path,
) -> None:
    with rig(tmp_path) as setup:
        setup.register_linphone()
        assert isinstance(setup.phone, Linphone)
        setup.phone.kill()
        server = setup.restart(CALLBRIDGE_REGISTRAR_FLOW_GRACE="1")
        assert "pbx.bindings_restored count=1" in server.log()
        wait_devices(server, lambda found: found == [], 10, "a phone that is gone stayed bound")


def silence(path: Path, seconds: float = 60.0) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * int(seconds * 8000))
    return path


def test_the_connection_a_phone_registered_over_outlasts_the_idle_timeout(
    tmp_path: Path,
) -> None:
    idle = {"CALLBRIDGE_TCP_IDLE_TIMEOUT": "1", "CALLBRIDGE_REGISTRAR_FLOW_GRACE": "1"}
    # baresip 1.0 answers only the first challenge, and knows only MD5.
    with rig(tmp_path, **idle, CALLBRIDGE_SIP_DIGEST_ALGORITHMS="MD5") as setup:
        server = setup.server
        create_line(server)
        _, username, password = LINE
        setup.phone = phone = Baresip(
            tmp_path / "baresip",
            account=(
                f"<sip:{username}@{server.host}:{server.port};transport=tcp>"
                f";auth_pass={password};regint=600"
            ),
            source=silence(tmp_path / "silence.wav"),
            rtp_ports=(24600, 24699),
        )
        phone.start()
        phone.wait_registered()
        [before] = wait_devices(server, registered_over_tcp, 5, "baresip did not register")
        # Idle for four timeouts and a grace: its connection, and so its
        # binding, are still there.
        time.sleep(5)
        [after] = devices(server)
        assert (after["contact"], after["source"]) == (before["contact"], before["source"])
        assert "tcp.idle_timeout" not in server.log()
