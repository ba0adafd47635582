"""baresip as a headless phone on loopback, driven over its `ctrl_tcp` socket.

Each `Baresip` writes a config directory of its own (config, accounts,
contacts), plays a 16-bit WAV as its microphone (`aufile`), records what it
sends and receives with `sndfile` (`*-enc.wav`, `*-dec.wav` in its directory)
and has no sound card (`aubridge` as the speaker). Nothing leaves loopback:
SIP and RTP bind 127.0.0.1 and no NAT, STUN or ICE module is loaded.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

MODULES = Path("/usr/lib/baresip/modules")
_RTP_FROM_RE = re.compile(r"incoming rtp for 'audio' established, receiving from ([\d.]+):(\d+)")
Message = dict[str, Any]


def free_port() -> int:
    """A loopback port free for both UDP and TCP (baresip's `sip_listen` binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no loopback port free for both UDP and TCP")


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BaresipError(AssertionError):
    pass


class Baresip:
    """One baresip user agent with one account.

    `account` is the accounts-file line, e.g.
    `<sip:alice@127.0.0.1:5060;transport=udp>;auth_pass=secret;regint=60`;
    the harness appends the codecs (`codecs`: PCMU and PCMA unless told).
    `source` is the WAV it sends (16-bit mono, 8 kHz); it must last longer
    than the call, since `aufile` ends the call when the file ends.
    """

    def __init__(
        self,
        directory: Path,
        *,
        account: str,
        source: Path,
        rtp_ports: tuple[int, int],
        auto_answer: bool = False,
        host: str = "127.0.0.1",
        codecs: str = "PCMU,PCMA",
    ) -> None:
        self.directory = directory
        self.host = host  # a loopback address of its own: a phone the proxy tells apart
        self.account = account
        self.source = source
        self.rtp_ports = rtp_ports
        self.auto_answer = auto_answer
        self.codecs = codecs  # the account's `audio_codecs`, in order of preference
        self.sip_port = free_port()
        self.ctrl_port = free_tcp_port()
        self.log_path = directory / "baresip.log"
        self.messages: list[Message] = []  # every event and response seen, in order
        self._unclaimed: list[Message] = []  # those no wait_for has returned yet
        self._process: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._token = 0

    # -- configuration ---------------------------------------------------

    def write_config(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        low, high = self.rtp_ports
        config = {
            "poll_method": "epoll",
            "sip_listen": f"{self.host}:{self.sip_port}",
            "net_interface": self.host,  # an address, not "lo" (docs: PEERS.md)
            "dns_server": "127.0.0.1:53",  # never ask the machine's resolver
            "call_local_timeout": "20",
            "call_max_calls": "1",
            "audio_source": f"aufile,{self.source}",
            "audio_player": "aubridge,speaker",  # no sound card; sndfile records
            "audio_alert": "aubridge,alert",
            "audio_level": "no",
            "ausrc_format": "s16",
            "auplay_format": "s16",
            "auenc_format": "s16",
            "audec_format": "s16",
            "audio_buffer": "20-160",
            # The WAV and the speaker stay 8 kHz mono whatever the codec's rate:
            # baresip resamples (Opus runs at 48 kHz).
            "ausrc_srate": "8000",
            "ausrc_channels": "1",
            "auplay_srate": "8000",
            "auplay_channels": "1",
            "rtp_ports": f"{low}-{high}",
            "rtcp_mux": "no",
            "jitter_buffer_delay": "1-10",
            "rtp_stats": "no",
            "module_path": str(MODULES),
            "ringback_disabled": "yes",
            "statmode_default": "off",
            "ctrl_tcp_listen": f"127.0.0.1:{self.ctrl_port}",
            "snd_path": str(self.directory),
        }
        lines = [f"{key}\t{value}" for key, value in config.items()]
        codec_modules = ["g711"] + (["opus"] if "opus" in self.codecs.lower() else [])
        modules = [*codec_modules, "aufile", "aubridge", "sndfile"]
        lines += [f"module\t{name}.so" for name in modules]
        lines += [f"module_app\t{name}.so" for name in ("account", "menu", "ctrl_tcp")]
        (self.directory / "config").write_text("\n".join(lines) + "\n")
        account = f"{self.account};audio_codecs={self.codecs}"
        if self.auto_answer:
            account += ";answermode=auto"
        (self.directory / "accounts").write_text(account + "\n")
        (self.directory / "contacts").write_text("")

    # -- process ---------------------------------------------------------

    def start(self, timeout: float = 5) -> None:
        binary = shutil.which("baresip")
        if binary is None:
            pytest.fail("baresip is not installed: `make test` installs Debian's baresip-core")
        self.write_config()
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                # -s: SIP trace in the log, for when a call fails
                [binary, "-f", str(self.directory), "-s"],
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1)
                break
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise BaresipError("baresip did not start:\n" + self.log()) from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Quit (hanging up any call), then make sure the process is gone."""
        process, self._process = self._process, None
        if process is None:
            return
        if self._sock is not None and process.poll() is None:
            with contextlib.suppress(OSError, BaresipError):
                self._send("quit")
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def kill(self) -> None:
        """Die without a word (no BYE, no un-REGISTER): a phone that lost power,
        or one whose server is gone, where `quit` would wait on transactions
        nobody answers."""
        process, self._process = self._process, None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if process is not None:
            process.kill()
            process.wait()

    def __enter__(self) -> Baresip:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- ctrl_tcp: netstring-framed JSON ---------------------------------

    def _send(self, command: str, params: str = "") -> str:
        assert self._sock is not None, "baresip is not running"
        self._token += 1
        token = str(self._token)
        body: Message = {"command": command, "token": token}
        if params:
            body["params"] = params
        data = json.dumps(body).encode()
        self._sock.sendall(b"%d:%s," % (len(data), data))
        return token

    def _read_message(self, deadline: float) -> Message | None:
        assert self._sock is not None, "baresip is not running"
        while True:
            head, colon, rest = self._buffer.partition(b":")
            if colon:
                size = int(head)
                if len(rest) > size:  # the body and its trailing comma
                    self._buffer = rest[size + 1 :]
                    message: Message = json.loads(rest[:size])
                    self.messages.append(message)
                    self._unclaimed.append(message)
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                return None
            if not chunk:
                raise BaresipError("baresip closed its control socket:\n" + self.log())
            self._buffer += chunk

    def wait_for(self, matches: Callable[[Message], bool], timeout: float, what: str) -> Message:
        """The first message, already read or still to come, that `matches`
        and that no earlier wait returned."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self._unclaimed:
                if matches(message):
                    self._unclaimed.remove(message)
                    return message
            if self._read_message(deadline) is None:
                break
        raise BaresipError(
            f"baresip: no {what} within {timeout} s; messages: {self.messages}\n{self.log()}"
        )

    def command(self, command: str, params: str = "", timeout: float = 5) -> str:
        """Run a command (`dial`, `hangup`, `reginfo`...) and return its output."""
        token = self._send(command, params)
        response = self.wait_for(
            lambda m: bool(m.get("response")) and m.get("token") == token,
            timeout,
            f"answer to {command!r}",
        )
        if not response.get("ok"):
            raise BaresipError(f"baresip: {command} {params} failed: {response}")
        return str(response.get("data", ""))

    def wait_event(self, event_type: str, timeout: float = 5) -> Message:
        return self.wait_for(
            lambda m: bool(m.get("event")) and m.get("type") == event_type,
            timeout,
            f"{event_type} event",
        )

    def events(self) -> Iterator[str]:
        for message in self.messages:
            if message.get("event"):
                yield str(message.get("type"))

    # -- phone actions ---------------------------------------------------

    def wait_registered(self, timeout: float = 5) -> None:
        """Poll `reginfo` (events are not replayed to a late client) until the
        account is registered."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.command("reginfo")
            if "OK" in info:
                return
            if time.monotonic() > deadline:
                raise BaresipError(f"baresip did not register: {info!r}\n{self.log()}")
            time.sleep(0.1)

    def dial(self, uri: str) -> None:
        self.command("dial", uri)

    def hangup(self) -> None:
        self.command("hangup")

    def rtp_sources(self) -> list[tuple[str, int]]:
        """Where the RTP of each call came from (baresip logs the first packet's source)."""
        return [(host, int(port)) for host, port in _RTP_FROM_RE.findall(self.log())]

    def recordings(self, suffix: str) -> list[Path]:
        """sndfile's recordings: `dec` is what was received, `enc` what was sent."""
        return sorted(self.directory.glob(f"*-{suffix}.wav"))
