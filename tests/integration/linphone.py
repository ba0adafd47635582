"""linphone-cli (linphonec 5.1) as a headless phone on loopback.

Each `Linphone` runs in a home directory of its own (linphonec opens no SIP
socket until `~/.local/share/linphone/` exists), with an rc file written for
one account, files instead of a sound card, and commands on its stdin. It
answers calls by itself (`-a`). Facts about driving it: docs/PEERS.md.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest


class Linphone:
    """One linphonec with one account of `registrar` (`host:port`, its
    identity's domain) that registers and calls through `proxy` (`host:port`;
    None: straight to the registrar). linphonec 5.1 sends to its `reg_proxy`
    and takes no other outbound route."""

    def __init__(
        self,
        directory: Path,
        *,
        username: str,
        password: str,
        registrar: str,
        proxy: str | None,
        sip_port: int,
        rtp_ports: tuple[int, int],
        realm: str = "callbridge",
    ) -> None:
        self.directory = directory
        self.username, self.password, self.realm = username, password, realm
        self.registrar, self.proxy = registrar, proxy
        self.sip_port = sip_port
        self.rtp_ports = rtp_ports
        self.rc_path = directory / "linphonerc"
        self.log_path = directory / "linphone.log"
        self._process: subprocess.Popen[bytes] | None = None

    def write_config(self) -> None:
        (self.directory / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
        low, high = self.rtp_ports
        proxy = [
            "[proxy_0]",
            f"reg_proxy=<sip:{self.proxy or self.registrar};transport=udp>",
            f"reg_identity=sip:{self.username}@{self.registrar}",
            "reg_expires=600",
            "reg_sendregister=1",
            "publish=0",
            "dial_escape_plus=0",
        ]
        lines = [
            "[sip]",
            f"sip_port={self.sip_port}",
            "sip_tcp_port=-1",
            "sip_tls_port=-1",
            "ipv6=0",
            "default_proxy=0",
            "store_ha1_passwd=0",
            "register_only_when_network_is_up=0",
            "[net]",
            "mtu=0",
            "stun_server=",
            "[rtp]",
            f"audio_rtp_port={low}-{high}",
            "[sound]",
            "echocancellation=0",
            *proxy,
            "[auth_info_0]",
            f"username={self.username}",
            f"passwd={self.password}",
            f"realm={self.realm}",
        ]
        self.rc_path.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        binary = shutil.which("linphonec")
        if binary is None:
            pytest.fail("linphonec is not installed: `make test` installs Debian's linphone-cli")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.write_config()
        environment = {**os.environ, "HOME": str(self.directory)}
        with (self.directory / "stdout.txt").open("wb") as out:
            self._process = subprocess.Popen(
                [binary, "-c", str(self.rc_path), "-a", "-d", "6", "-l", str(self.log_path)],
                cwd=self.directory,
                env=environment,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.command("soundcard use files")

    def command(self, line: str) -> None:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(line.encode() + b"\n")
        self._process.stdin.flush()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None and process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.write(b"quit\n")
                process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Linphone:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        text = ""
        for path in (self.directory / "stdout.txt", self.log_path):
            if path.exists():
                text += f"--- {path.name} ---\n" + path.read_text(errors="replace")
        return text

    def wait_for(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"linphonec never logged {text!r}:\n{self.log()[-6000:]}")
            time.sleep(0.1)
