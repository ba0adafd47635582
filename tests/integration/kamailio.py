"""Kamailio as the proxy in front of callbridge, on loopback, running the
configuration docs/PROXY.md gives (docs/kamailio/callbridge-front.cfg) with
its addresses filled in. Its log has one line per request it handled
(`front: METHOD R-URI from proto:host:port call-id ID`), which the tests
read to see that a call's requests passed it."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

CONFIG = Path(__file__).parents[2] / "docs" / "kamailio" / "callbridge-front.cfg"
_REQUEST_RE = re.compile(
    r"front: (?P<method>\S+) (?P<uri>\S+) from (?P<proto>\w+):(?P<host>[\d.]+):(?P<port>\d+)"
    r" call-id (?P<call_id>\S+)"
)


@dataclass(frozen=True)
class Passed:
    """One request the proxy handled."""

    method: str
    uri: str
    host: str
    port: int
    call_id: str


class Kamailio:
    """One Kamailio process listening on `host:port` (UDP and TCP) in front of
    callbridge at `callbridge_host:callbridge_port`."""

    def __init__(
        self,
        directory: Path,
        *,
        host: str,
        port: int,
        callbridge_host: str,
        callbridge_port: int,
    ) -> None:
        self.directory = directory
        self.host, self.port = host, port
        self.config_path = directory / "kamailio.cfg"
        self.log_path = directory / "kamailio.log"
        self._values = {
            "PROXY_ADDRESS": host,
            "PROXY_PORT": str(port),
            "CALLBRIDGE_ADDRESS": callbridge_host,
            "CALLBRIDGE_PORT": str(callbridge_port),
        }
        self._process: subprocess.Popen[bytes] | None = None

    def write_config(self) -> None:
        text = CONFIG.read_text()
        for name, value in self._values.items():
            text, count = re.subn(
                rf'^#!substdef "!{name}!.*!g"$', f'#!substdef "!{name}!{value}!g"', text, flags=re.M
            )
            assert count == 1, f"{CONFIG} has no substdef for {name}"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(text)

    def start(self, timeout: float = 10) -> None:
        binary = shutil.which("kamailio") or "/usr/sbin/kamailio"
        if not Path(binary).exists():
            pytest.fail("kamailio is not installed: `make test` installs Debian's kamailio")
        self.write_config()
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                # -DD: in the foreground; -E: log to stderr; small shared memory.
                [
                    binary,
                    "-f",
                    str(self.config_path),
                    "-DD",
                    "-E",
                    "-m",
                    "32",
                    "-M",
                    "4",
                    "-Y",
                    str(self.directory),
                ],
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while "processes (at least)" not in self.log():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("kamailio did not start:\n" + self.log())
            time.sleep(0.05)
        time.sleep(0.5)  # its workers start after the main process logs their number

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Kamailio:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def passed(self, call_id: str | None = None) -> list[Passed]:
        """The requests the proxy handled, in order (those of `call_id`)."""
        found = [
            Passed(m["method"], m["uri"], m["host"], int(m["port"]), m["call_id"])
            for m in _REQUEST_RE.finditer(self.log())
        ]
        return [p for p in found if call_id is None or p.call_id == call_id]
