"""Digest choices with a real baresip 1.0 (which answers only the first
challenge and knows only MD5), and the log lines a person reads when a
phone fails to authenticate or a source is blocked."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .baresip import Baresip, BaresipError
from .conftest import Server, free_port, start_server, stop_server
from .test_register import (
    ADMIN_PASSWORD,
    LINE_PASSWORD,
    STRANGER,
    _options_answered,
    admin,
    create_line,
    register,
)
from .tones import write_tone

pytestmark = pytest.mark.integration

# baresip's log line when the first challenge is one it cannot answer.
NOT_IMPLEMENTED = "Function not implemented"


@contextmanager
def pbx(tmp_path: Path, **env: str) -> Iterator[Server]:
    server = start_server(tmp_path, CALLBRIDGE_ADMIN_PASSWORD=ADMIN_PASSWORD, **env)
    try:
        yield server
    finally:
        stop_server(server.process)
    assert server.process.returncode == 0, server.log()


def add_line(
    server: Server,
    number: str,
    username: str,
    *,
    digest_algorithms: str | None = None,
    apply: bool = True,
) -> None:
    with admin(server) as api:
        body = {"number": number, "username": username, "password": LINE_PASSWORD}
        if digest_algorithms is not None:
            body["digest_algorithms"] = digest_algorithms
        api.post("/api/v1/internal-lines", json=body).raise_for_status()
        if apply:
            api.post("/api/v1/config/apply").raise_for_status()


def devices(server: Server, number: str) -> int:
    with admin(server) as api:
        lines = api.get("/api/v1/internal-lines").json()["items"]
        [line] = [line for line in lines if line["number"] == number]
        answer = api.get(f"/api/v1/internal-lines/{line['id']}/registrations")
    return int(answer.json()["total"])


@contextmanager
def phone(
    tmp_path: Path, server: Server, username: str, password: str = LINE_PASSWORD
) -> Iterator[Baresip]:
    directory = tmp_path / username
    directory.mkdir()
    account = (
        f"<sip:{username}@{server.host}:{server.port};transport=udp>"
        f";auth_pass={password};regint=600"
    )
    source = write_tone(tmp_path / f"{username}.wav", 440.0, seconds=1.0)
    with Baresip(directory, account=account, source=source, rtp_ports=(0, 0)) as baresip:
        yield baresip


def wait_for_log(server: Server, pattern: str, timeout: float = 5) -> list[str]:
    """The lines of the server's log that match `pattern`, once there is one."""
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in server.log().splitlines() if re.search(pattern, line)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_baresip_registers_with_the_default_settings(tmp_path: Path) -> None:
    with pbx(tmp_path) as server:
        add_line(server, "101", "alice")
        with phone(tmp_path, server, "alice") as alice:
            alice.wait_registered()
            assert NOT_IMPLEMENTED not in alice.log()
            assert devices(server, "101") == 1


def test_with_sha256_first_baresip_registers_only_on_a_line_that_chose_md5(
    tmp_path: Path,
) -> None:
    with pbx(tmp_path, CALLBRIDGE_SIP_DIGEST_ALGORITHMS="sha-256, md5") as server:
        add_line(server, "101", "alice")
        add_line(server, "102", "bob", digest_algorithms="md5")
        with phone(tmp_path, server, "alice") as alice, phone(tmp_path, server, "bob") as bob:
            bob.wait_registered()
            with pytest.raises(BaresipError, match="did not register"):
                alice.wait_registered(timeout=2)
            assert NOT_IMPLEMENTED in alice.log()
            assert (devices(server, "101"), devices(server, "102")) == (0, 1)


def test_a_wrong_password_and_a_line_not_applied_are_logged_with_their_reason(
    tmp_path: Path,
) -> None:
    # baresip answers every fresh challenge at once: with a wrong password it
    # fails eleven times in a few milliseconds. Each account is refused after
    # three here, long before its source (and the other phone) would be.
    env = {"CALLBRIDGE_GUARD_MAX_FAILURES": "100", "CALLBRIDGE_GUARD_ACCOUNT_MAX_FAILURES": "2"}
    with pbx(tmp_path, **env) as server:
        add_line(server, "101", "alice")
        add_line(server, "102", "bob", apply=False)  # created, but the PBX does not know it yet
        with (
            phone(tmp_path, server, "alice", password="not-the-password"),
            phone(tmp_path, server, "bob"),
        ):
            for account in ("alice", "bob"):
                assert wait_for_log(server, rf"guard\.blocked kind=account account={account} ")
    log = server.log()
    failed = re.findall(r" INFO callbridge\.pbx auth\.failed (.*)", log)
    assert set(failed) == {
        'account=alice src=127.0.0.1 method=REGISTER reason="wrong password"',
        'account=bob src=127.0.0.1 method=REGISTER reason="unknown user"',
    }, log
    blocked = re.findall(r" WARNING callbridge\.pbx guard\.blocked (.*) until=", log)
    assert sorted(blocked) == [
        f'kind=account account={name} reason="3 failed authentications in 60 s" seconds=300'
        for name in ("alice", "bob")
    ]
    assert "not-the-password" not in log and LINE_PASSWORD not in log


def test_a_block_is_logged_with_why_and_until_when_and_its_drops_counted(
    tmp_path: Path,
) -> None:
    with pbx(tmp_path, CALLBRIDGE_GUARD_MAX_FAILURES="3") as server:
        create_line(server)
        # Five guesses: more than the three failures a minute this PBX allows.
        register(server, tmp_path, password="guess", calls=5, local_ip=STRANGER)
        assert not _options_answered(server, STRANGER)  # dropped, not answered
        assert _options_answered(server, "127.0.0.1")
    log = server.log()
    failed = re.findall(r" INFO \S+ auth\.failed account=alice src=127\.0\.0\.2 .*", log)
    assert len(failed) == 4, log  # the fifth guess is not heard: it is dropped
    assert all(line.endswith('reason="wrong password"') for line in failed)
    [blocked] = re.findall(r" WARNING \S+ guard\.blocked .*", log)
    assert re.fullmatch(
        r" WARNING callbridge\.pbx guard\.blocked kind=source source=127\.0\.0\.2 "
        r'reason="4 failed authentications in 60 s" seconds=3600 '
        r"until=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
        blocked,
    ), blocked
    [stats] = re.findall(r"guard\.stats .*", log)
    dropped = int(re.search(r"dropped_blocked=(\d+)", stats).group(1))  # type: ignore[union-attr]
    assert dropped >= 2  # the fifth guess (and its retransmissions) and the OPTIONS


# --- linphone: the first challenge it supports --------------------------------


@contextmanager
def linphone(tmp_path: Path, server: Server, username: str) -> Iterator[subprocess.Popen[bytes]]:
    """linphonec registering `username` over UDP, with a fresh rc that keeps no
    HA1 (it would keep the algorithm it first used), killed on exit."""
    binary = shutil.which("linphonec")
    if binary is None:
        pytest.fail("linphonec is not installed: `make test` installs Debian's linphone-cli")
    home = tmp_path / f"linphone-{username}"
    (home / ".local/share/linphone").mkdir(parents=True)  # else it opens no SIP socket
    rc, rtp = home / "linphone.rc", free_port()  # no call: one port is enough
    rc.write_text(
        f"[sip]\nsip_port={free_port()}\nsip_tcp_port=-1\nsip_tls_port=-1\nipv6=0\n"
        "store_ha1_passwd=0\ndefault_proxy=0\n"
        f"[rtp]\naudio_rtp_port={rtp}-{rtp}\n"
        f"[proxy_0]\nreg_proxy=<sip:{server.host}:{server.port};transport=udp>\n"
        f"reg_identity=sip:{username}@{server.host}:{server.port}\n"
        "reg_expires=600\nreg_sendregister=1\n"
        f"[auth_info_0]\nusername={username}\npasswd={LINE_PASSWORD}\n"
    )
    process = subprocess.Popen(
        [binary, "-c", str(rc)],
        env={**os.environ, "HOME": str(home)},
        cwd=home,
        stdin=subprocess.PIPE,
        stdout=(home / "linphonec.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize(
    ("offered", "answered"),
    [("MD5,SHA-256", "MD5"), ("SHA-256,MD5", "SHA-256"), ("SHA-256", "SHA-256")],
)
def test_linphone_answers_the_first_challenge_it_supports(
    tmp_path: Path, offered: str, answered: str
) -> None:
    with pbx(tmp_path, CALLBRIDGE_LOG_SIP_MESSAGES="true") as server:
        add_line(server, "101", "alice", digest_algorithms=offered)
        with linphone(tmp_path, server, "alice"):
            assert wait_for_log(server, r"sip\.send .*status=200 .*CSeq: \d+ REGISTER", 10)
    # The log shows each message JSON-escaped on one line: a header ends at "\r\n".
    header = r"Authorization: Digest (?:(?!\\r\\n).)*?algorithm=([\w-]+)"
    algorithms = re.findall(header, server.log())
    assert algorithms and set(algorithms) == {answered}, server.log()
