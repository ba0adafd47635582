"""External lines (SIP trunks to providers) as the SIP side sees them, and
the registration of a line with its provider.

`Registration` is sans-IO, like the SIP core: it builds the REGISTERs,
reads the responses, and says when it next needs the clock (`deadline`);
`Trunks` drives one per line that asks for registration, through the SIP
service, with the loop's timers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from ..logs import log_event
from ..sip import Headers, ParseError, Request, Response
from ..sip.digest import DigestError, answer_challenge, parse_challenge, select_challenge
from ..sip.transaction import ClientTransaction, new_call_id, new_tag
from ..sip.uri import format_hostport, name_addr, parse_hostport, parse_uri, sip_uri
from ..store.models import ExternalLine

logger = logging.getLogger("callbridge.trunks")

DEFAULT_EXPIRES = 3600
RETRY_FIRST = 5.0
RETRY_MAX = 300.0
# Refresh when this share of the granted time has passed: early enough for a
# lost REGISTER to be retried before the binding lapses.
REFRESH_AT = 0.8


@dataclass(frozen=True, slots=True)
class Trunk:
    """An external line: where the provider is and how we sign in."""

    id: int
    code: str
    host: str
    port: int = 5060
    transport: str = "udp"
    active: bool = True
    register: bool = False
    username: str = ""
    login: str = ""
    password: str = field(default="", repr=False)
    total_lines: int = 1
    outgoing_lines: int = 1
    alt_addresses: tuple[str, ...] = ()
    default_region: str = "US"
    # Challenge the provider's INVITEs and check them with login and password.
    incoming_auth: bool = False
    # Listen for DTMF tones in the provider's audio (old gateways).
    inband_dtmf: bool = False
    # Whether its calls are recorded; None: as the global setting says.
    recording: bool | None = None
    # The server's IP address, resolved when the lines were loaded.
    address: str | None = None

    @classmethod
    def parse_server(cls, server: str) -> tuple[str, int]:
        """`host[:port]` (IPv6 in brackets) as (host, port), the host as the
        socket API writes it."""
        host, port = parse_hostport(server.strip())
        return host.strip("[]"), port or 5060

    def networks(self) -> tuple[IPNetwork, ...]:
        """Where this provider may send from: its server's address and the
        alternative addresses or networks (a host name is left out: the
        server is compared by its resolved address)."""
        found = []
        for allowed in (self.address or self.host, *self.alt_addresses):
            try:
                found.append(ipaddress.ip_network(allowed, strict=False))
            except ValueError:
                continue
        return tuple(found)

    @property
    def auth_username(self) -> str:
        """The digest username of the line, both ways."""
        return self.login or self.username

    def sends_from(self, address: str) -> bool:
        """Whether a request from `address` may be this provider's."""
        try:
            source = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(source in network for network in self.networks())


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class State(StrEnum):
    UNREGISTERED = "unregistered"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"


class Registration:
    """The registration of one external line with its provider (RFC 3261
    §10.2): REGISTER, answer a 401/407 once per nonce, honour 423's
    Min-Expires, refresh before expiry, back off after a failure."""

    def __init__(
        self,
        trunk: Trunk,
        *,
        local_host: str,
        local_port: int,
        expires: int = DEFAULT_EXPIRES,
        retry_first: float = RETRY_FIRST,
        retry_max: float = RETRY_MAX,
    ) -> None:
        self.trunk = trunk
        user = trunk.username or trunk.login
        self.contact = name_addr(user, format_hostport(local_host, local_port))
        self.expires = expires
        self.retry_first = retry_first
        self.retry_max = retry_max
        self.state = State.UNREGISTERED
        self.reason: str | None = None
        self.deadline: float | None = None
        self.granted: int | None = None
        self._call_id = new_call_id()
        self._tag = new_tag()
        self._cseq = 0
        self._retry = retry_first
        self._answered = False
        self._stopping = False

    # --- inputs ---------------------------------------------------------------

    def start(self, now: float) -> Request:
        """The first REGISTER."""
        self.state = State.REGISTERING
        self.deadline = None
        return self._register(self.expires)

    def timer(self, now: float) -> Request | None:
        """The deadline has come: refresh, or retry after a failure."""
        if self.deadline is None or now < self.deadline:
            return None
        self.deadline = None
        if self._stopping:
            return None
        if self.state is State.FAILED:
            self.state = State.REGISTERING
        return self._register(self.expires)

    def stop(self) -> Request | None:
        """Give the binding up (Expires: 0) if there is one."""
        registered = self.state is State.REGISTERED
        self._stopping = True
        self.state = State.UNREGISTERED
        self.deadline = None
        return self._register(0) if registered else None

    def response(self, response: Response, now: float) -> Request | None:
        """A response to our REGISTER; returns the next REGISTER, if one is due now."""
        status = response.status
        if status < 200 or self._stopping:
            return None
        if status in (401, 407):
            return self._challenged(response, now, proxy=status == 407)
        if status == 423:
            minimum = (response.headers.get("Min-Expires") or "").strip()
            if minimum.isdigit() and int(minimum) > self.expires:
                self.expires = int(minimum)
                return self._register(self.expires)
        if 200 <= status < 300:
            self._registered(response, now)
        elif status == 408:
            self._fail(now, "no answer from the server")
        else:
            self._fail(now, f"{status} {response.reason}")
        return None

    # --- helpers --------------------------------------------------------------

    def _registered(self, response: Response, now: float) -> None:
        granted = self._granted(response)
        self.state = State.REGISTERED
        self.reason = None
        self.granted = granted
        self._retry = self.retry_first
        self._answered = False
        self.deadline = now + max(1.0, granted * REFRESH_AT)
        log_event(logger, logging.INFO, "trunk.registered", trunk=self.trunk.code, expires=granted)

    def _granted(self, response: Response) -> int:
        ours = parse_uri(self.contact[1:-1])
        try:
            contacts = response.contacts
        except ParseError:
            contacts = []  # unreadable: the Expires header, or what we asked for
        for contact in contacts:
            if contact.wildcard or str(contact.uri) != str(ours):
                continue
            value = contact.params.get("expires")
            if value and value.isdigit():
                return int(value)
        header = (response.headers.get("Expires") or "").strip()
        return int(header) if header.isdigit() else self.expires

    def _challenged(self, response: Response, now: float, *, proxy: bool) -> Request | None:
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        try:
            challenge = select_challenge(
                [parse_challenge(value) for value in response.headers.get_all(name)]
            )
        except (DigestError, ValueError) as error:
            self._fail(now, f"cannot answer the challenge: {error}")
            return None
        if self._answered and not challenge.stale:
            # Providers challenge every REGISTER with a fresh nonce: a second
            # challenge to signed credentials means they were refused.
            self._fail(now, "wrong login or password")
            return None
        self._answered = True
        uri = f"sip:{format_hostport(self.trunk.host, self.trunk.port)}"
        credentials = answer_challenge(
            challenge,
            method="REGISTER",
            uri=uri,
            username=self.trunk.auth_username,
            password=self.trunk.password,
        )
        header = "Proxy-Authorization" if proxy else "Authorization"
        return self._register(self.expires, (header, credentials.to_header_value()))

    def _fail(self, now: float, reason: str) -> None:
        self.state = State.FAILED
        self.reason = reason
        self._answered = False
        self.deadline = now + self._retry
        log_event(
            logger,
            logging.WARNING,
            "trunk.registration_failed",
            trunk=self.trunk.code,
            reason=reason,
            retry_in=self._retry,
        )
        self._retry = min(self._retry * 2, self.retry_max)

    def _register(self, expires: int, credentials: tuple[str, str] | None = None) -> Request:
        if credentials is None:
            self._answered = False  # a new attempt
        trunk = self.trunk
        self._cseq += 1
        server = format_hostport(trunk.host, trunk.port)
        user = trunk.username or trunk.login
        headers = Headers.of(
            ("Max-Forwards", "70"),
            ("From", name_addr(user, server, tag=self._tag)),
            ("To", name_addr(user, server)),
            ("Call-ID", self._call_id),
            ("CSeq", f"{self._cseq} REGISTER"),
            ("Contact", self.contact),
            ("Expires", str(expires)),
        )
        if credentials is not None:
            headers.add(*credentials)
        return Request("REGISTER", sip_uri(None, server), headers)


class TrunkPort(Protocol):
    """What registrations need of the SIP service."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    def time(self) -> float: ...

    def send_request(
        self,
        request: Request,
        peer: object,
        on_response: Callable[[ClientTransaction, Response], None],
    ) -> None: ...

    def peer_at(self, transport: str, host: str, port: int) -> object: ...


class Trunks:
    """The registrations of the external lines that ask for one."""

    def __init__(self, sip: TrunkPort) -> None:
        self.sip = sip
        self.registrations: dict[int, Registration] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}

    def use(self, trunks: Iterable[Trunk]) -> None:
        """Apply a new set of external lines: lines that no longer register
        (or whose settings changed) unregister, new ones register."""
        wanted = {t.id: t for t in trunks if t.active and t.register}
        for line_id, registration in list(self.registrations.items()):
            if wanted.get(line_id) != registration.trunk:
                self._stop(line_id)
        for line_id, trunk in wanted.items():
            if line_id not in self.registrations:
                registration = Registration(
                    trunk, local_host=self.sip.host, local_port=self.sip.port
                )
                self.registrations[line_id] = registration
                if trunk.address is None:
                    # Shown in the API; the next apply resolves it again.
                    registration.state = State.FAILED
                    registration.reason = f"cannot resolve {trunk.host}"
                    continue
                self._send(registration, registration.start(self.sip.time()))

    def state(self, line_id: int) -> Mapping[str, str | None]:
        registration = self.registrations.get(line_id)
        if registration is None:
            return {"state": State.UNREGISTERED.value, "reason": None}
        return {"state": registration.state.value, "reason": registration.reason}

    def close(self) -> None:
        for line_id in list(self.registrations):
            self._stop(line_id)

    def _stop(self, line_id: int) -> None:
        registration = self.registrations.pop(line_id)
        timer = self._timers.pop(line_id, None)
        if timer is not None:
            timer.cancel()
        self._send(registration, registration.stop())

    def _send(self, registration: Registration, request: Request | None) -> None:
        if request is not None:
            trunk = registration.trunk
            peer = self.sip.peer_at(trunk.transport, trunk.address or trunk.host, trunk.port)

            def on_response(_: ClientTransaction, response: Response) -> None:
                self._send(registration, registration.response(response, self.sip.time()))

            self.sip.send_request(request, peer, on_response)
        self._arm(registration)

    def _arm(self, registration: Registration) -> None:
        line_id = registration.trunk.id
        timer = self._timers.pop(line_id, None)
        if timer is not None:
            timer.cancel()
        if registration.deadline is None or self.registrations.get(line_id) is not registration:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, registration.deadline - self.sip.time())
        self._timers[line_id] = loop.call_later(delay, self._fire, registration)

    def _fire(self, registration: Registration) -> None:
        self._timers.pop(registration.trunk.id, None)
        self._send(registration, registration.timer(self.sip.time()))


async def trunks_of(rows: Iterable[ExternalLine]) -> list[Trunk]:
    """The external lines `rows` hold, each server resolved (a name that
    does not resolve leaves `address` None: the line cannot register)."""
    loop = asyncio.get_running_loop()
    trunks = []
    for row in rows:
        host, port = Trunk.parse_server(row.server)
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            address: str | None = str(infos[0][4][0])
        except OSError as error:
            log_event(logger, logging.WARNING, "trunk.unresolved", trunk=row.code, error=str(error))
            address = None
        trunks.append(
            Trunk(
                id=row.id,
                code=row.code,
                host=host,
                port=port,
                transport=row.transport,
                active=row.active,
                register=row.register,
                username=row.username,
                login=row.login,
                password=row.password,
                total_lines=row.total_lines,
                outgoing_lines=row.outgoing_lines,
                alt_addresses=tuple(row.alt_addresses or ()),
                default_region=row.default_region,
                incoming_auth=bool(row.incoming_auth),  # absent from versions before it
                inband_dtmf=bool(row.inband_dtmf),
                recording=row.recording,
                address=address,
            )
        )
    return trunks
