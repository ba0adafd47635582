"""linphone-cli (linphonec 5.1) as a headless phone on loopback.

Each `Linphone` runs in a home directory of its own (linphonec opens no SIP
socket until `~/.local/share/linphone/` exists), with an rc file written for
one account, files instead of a sound card, and commands on its stdin. Its
debug log (SIP included) goes to `linphone.log`. Facts about driving it:
docs/PEERS.md.
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
    """One linphonec with one account of `registrar` (`host:port`, also its
    identity's domain) that registers and calls through `proxy` (`host:port`;
    None: straight to the registrar; linphonec 5.1 sends to its `reg_proxy`
    and takes no other outbound route), over `transport` (it listens on that
    transport only, on a port of its choosing). It retries a failed
    registration after `retry` seconds (its own default is a minute) and
    answers calls by itself when `auto_answer`."""

    def __init__(
        self,
        directory: Path,
        *,
        username: str,
        password: str,
        registrar: str,
        proxy: str | None = None,
        transport: str = "udp",
        retry: float | None = None,
        rtp_ports: tuple[int, int] | None = None,
        auto_answer: bool = True,
        realm: str = "callbridge",
    ) -> None:
        self.directory = directory
        self.username, self.password, self.realm = username, password, realm
        self.registrar, self.proxy, self.transport = registrar, proxy, transport
        self.retry = retry
        self.rtp_ports = rtp_ports
        self.auto_answer = auto_answer
        self.rc_path = directory / "linphone.rc"
        self.log_path = directory / "linphone.log"
        self._process: subprocess.Popen[bytes] | None = None

    def write_config(self) -> Path:
        home = self.directory / "home"
        (home / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
        # -1: a port of its choosing; 0: not on that transport.
        ports = {"udp": "0", "tcp": "0", "tls": "0"}
        ports[self.transport] = "-1"
        sip = [
            "[sip]",
            f"sip_port={ports['udp']}",
            f"sip_tcp_port={ports['tcp']}",
            f"sip_tls_port={ports['tls']}",
            "ipv6=0",
            "default_proxy=0",
            "store_ha1_passwd=0",  # or it keeps the first algorithm it used (PEERS.md)
            "register_only_when_network_is_up=0",
        ]
        if self.retry is not None:
            sip.append(f"refresher_retry_after={int(self.retry * 1000)}")
        rtp = ["[rtp]"]
        if self.rtp_ports is not None:
            rtp.append("audio_rtp_port={}-{}".format(*self.rtp_ports))
        lines = [
            *sip,
            "[net]",
            "stun_server=",
            *rtp,
            "[sound]",
            "echocancellation=0",
            "[proxy_0]",
            f"reg_proxy=<sip:{self.proxy or self.registrar};transport={self.transport}>",
            f"reg_identity=sip:{self.username}@{self.registrar}",
            "reg_expires=600",
            "reg_sendregister=1",
            "publish=0",
            "[auth_info_0]",
            f"username={self.username}",
            f"passwd={self.password}",
            f"realm={self.realm}",
        ]
        self.rc_path.write_text("\n".join(lines) + "\n")
        return home

    def start(self) -> None:
        binary = shutil.which("linphonec")
        if binary is None:
            pytest.fail("linphonec is not installed: `make test` installs Debian's linphone-cli")
        self.directory.mkdir(parents=True, exist_ok=True)
        home = self.write_config()
        args = [binary, "-c", str(self.rc_path), "-d", "6"]
        if self.auto_answer:
            args.append("-a")
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                args,
                cwd=self.directory,
                env={**os.environ, "HOME": str(home)},
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.command("soundcard use files")

    def command(self, line: str) -> None:
        """Type `line` at linphonec's prompt."""
        process = self._process
        assert process is not None and process.stdin is not None, "linphonec is not running"
        process.stdin.write(line.encode() + b"\n")
        process.stdin.flush()

    def kill(self) -> None:
        """Die without a word (no un-REGISTER): a phone that lost power."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None and process.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
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
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"linphonec never logged {text!r}:\n{self.log()[-6000:]}")
            time.sleep(0.1)
