"""The `callbridge serve` process: wires the transport to the transaction
layer and the transaction layer to the PBX, owns the one timer that drives
every transaction's timers, and serves the HTTP API in the same loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import re
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import uvicorn

from .api import create_app
from .api.hang_up import EndCall
from .api.hold import HoldCall
from .api.setup import SetupToken, admin_exists
from .backlog import Backlog, Queued
from .collector import CollectorPauses, PacedPasses
from .crm.identify import Identity, identify
from .events import EventBus
from .logs import log_event
from .media.engine import LocalMediaEngine
from .media.music import MusicOnHold
from .media.policy import AllowedNetworks, MediaPolicy
from .media.ports import RtpPortAllocator
from .pbx.auth import DROP, Authenticator, Drop
from .pbx.b2bua import B2bua, ResponseHandler
from .pbx.browser_credentials import BrowserCredentials, load_secret
from .pbx.browser_revocation import RevocationWatch
from .pbx.calls import CallRecorder
from .pbx.config import InvalidConfig, apply_staged, latest, read_live_state, running_config
from .pbx.dtmf import SendDigits
from .pbx.guard import FloodGuard, GuardPolicy
from .pbx.lines import Lines, disabled_line_ids
from .pbx.location import StoredLocation
from .pbx.originate import Originator
from .pbx.overload import LoadShedder, OverloadChange, OverloadPolicy
from .pbx.proxies import TrustedProxies
from .pbx.recordings import Recordings, keep_for, recover
from .pbx.registrar import Binding, Location, MemoryLocation, Registrar, RegistrarPolicy
from .pbx.staff import load_employees
from .pbx.trunks import Trunks
from .pbx.ua import UserAgent
from .settings import Settings
from .sip import Limits, Message, ParseError, Request, Response, make_response
from .sip.digest import DigestServer
from .sip.transaction import (
    ClientTransaction,
    Deliver,
    Effect,
    NewRequest,
    Send,
    ServerTransaction,
    StrayAck,
    StrayResponse,
    Terminated,
    TimedOut,
    TransactionError,
    TransactionLayer,
    TransportFailed,
    new_branch,
    new_tag,
)
from .sip.uri import URI, SipURI, format_hostport, name_addr
from .store import Database, create_database
from .store.accounts import ensure_admin
from .store.models import ConfigVersion
from .transport import Address, Transport, TransportError, TransportLayer, WsTransport
from .transport.addresses import interface_addresses, reachable_addresses

logger = logging.getLogger("callbridge.sip")
http_logger = logging.getLogger("callbridge.http")
# A browser's WebSocket carries its bearer token in the query (`?token=`),
# and uvicorn logs every request's path with its query.
_TOKEN_IN_QUERY = re.compile(r"((?:^|[?&])token=)[^&\s\"']*", re.IGNORECASE)
_MAX_PEERS = 4096
# Requests with a To tag that still are not a call's business.
_OUT_OF_DIALOG = frozenset({"ACK", "OPTIONS", "REGISTER"})
# How often the loop's lag is probed (a timer that should fire on time).
_LAG_PROBE_INTERVAL = 0.02
# 64*T1: a message that waited longer to be read is one its sender's
# transaction has given up on (Timers B, F, H): no work is done for it.
_GIVEN_UP_AFTER = 32.0


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a transaction's messages go: the address, and for a server
    transaction the transport its request came in on (its TCP connection)."""

    address: Address
    transport: Transport | None = None


class SipService:
    """The SIP side of the PBX in one asyncio loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.transactions = TransactionLayer()
        self.transport = TransportLayer(
            self._on_message,
            limits=Limits(max_message_size=settings.max_message_size),
            log_messages=settings.log_sip_messages,
            on_transport_error=self._on_transport_error,
            on_flow_closed=self._on_flow_closed,
            tcp_idle_timeout=settings.tcp_idle_timeout,
            max_tcp_connections=settings.tcp_max_connections,
            max_tcp_per_address=settings.tcp_max_connections_per_address,
            admits=self._admits,
            keep_idle=self._carries_a_binding,
        )
        self.guard = FloodGuard(
            GuardPolicy(
                max_failures=settings.guard_max_failures,
                window=settings.guard_window,
                block_for=settings.guard_block_for,
                scanner_block_for=settings.guard_scanner_block_for,
                account_max_failures=settings.guard_account_max_failures,
                account_block_for=settings.guard_account_block_for,
                max_blocks=settings.guard_max_blocks,
            )
        )
        # Browsers' SIP over WebSocket: the HTTP server hands its sockets over.
        self.websocket = self.transport.open_websocket(
            settings.http_host,
            settings.http_port,
            max_connections=settings.sip_ws_max_connections,
            max_per_address=settings.sip_ws_max_connections_per_address,
        )
        # Proxies in front: their requests are judged by the sender they report.
        self.proxies = TrustedProxies(settings.sip_proxy_networks())
        self.guard.trust(self.proxies.networks)
        self.authenticator = Authenticator(
            DigestServer(settings.sip_realm, algorithms=settings.sip_digest_algorithms.split(",")),
            self.guard,
            server_name=settings.user_agent,
        )
        self.ua = UserAgent(
            user_agent=settings.user_agent,
            authenticator=self.authenticator,
            registrar=Registrar(
                MemoryLocation(), self._registrar_policy(), flow_alive=self.flow_alive
            ),
        )
        # Calls need a store for their records: `use_b2bua` plugs them in.
        self.b2bua: B2bua | None = None
        self.host = settings.effective_public_address()
        self.port = settings.sip_port
        self._loop = asyncio.get_running_loop()
        # Overload control: new calls are shed while the SIP side runs behind.
        self.overload = LoadShedder(
            OverloadPolicy(
                target_delay=settings.overload_delay, retry_after=settings.overload_retry_after
            ),
            now=self._loop.time(),
        )
        self.given_up = 0  # messages read after their sender's transaction gave up
        # While behind, what is read waits here, and new calls the shedder
        # refuses are refused as they are read (backlog.py).
        self.backlog = Backlog(self._loop, self._handle)
        self.collector = CollectorPauses()
        self.paced_passes = PacedPasses(self._loop)
        self._probe: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._peers: dict[tuple[Address, int], Peer] = {}
        # Connections a REGISTER came over (only they can carry a binding),
        # and those that closed, by when their phone must have registered again.
        self._registering_flows: set[Address] = set()
        self._closed_flows: dict[Address, float] = {}
        self._flow_check: asyncio.TimerHandle | None = None
        # Who is waiting for the responses of each client transaction.
        self._owners: dict[ClientTransaction, ResponseHandler] = {}

    async def start(self) -> int:
        """Listen on the configured host and port; returns the port."""
        self.port = await self.transport.listen(self.settings.sip_host, self.settings.sip_port)
        return self.port

    def watch_load(self) -> None:
        """Start overload control afresh and probe the loop's lag: called once
        start-up's own work is done (its stalls are no overload)."""
        self.overload = LoadShedder(self.overload.policy, now=self._loop.time())
        self.collector.start()
        self.paced_passes.start()
        if self.overload.policy.enabled and self._probe is None:
            self._arm_probe()

    async def stop(self) -> None:
        self.backlog.close()
        self.collector.stop()
        self.paced_passes.stop()
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None
        if self._timer is not None:
            self._timer.cancel()
        await self.transport.close()
        if self._flow_check is not None:
            self._flow_check.cancel()

    def use_location(self, location: Location) -> None:
        """Keep bindings in `location` (before start: bindings are not moved)."""
        self.ua.registrar = Registrar(
            location, self._registrar_policy(), flow_alive=self.flow_alive
        )

    def flow_alive(self, source: object) -> bool:
        """Whether a binding's flow still reaches its device: a datagram one
        always; a connection only while it is open (one read back from the
        store never is: its connection went with the last run)."""
        if not isinstance(source, Peer) or not source.address.reliable:
            return True
        transport = source.transport
        return transport is not None and transport.flow(source.address) is not None

    def expect_reconnects(self, now: float) -> None:
        """The phones of every binding whose connection is gone (those read
        back from the store) get the grace to register again, as if their
        connections had closed now."""
        for aor in self.location.aors():
            for binding in self.location.bindings(aor, now):
                if not binding.path and not self.flow_alive(binding.source):
                    assert isinstance(binding.source, Peer)
                    self._flow_closed(binding.source.address, now)

    def use_b2bua(self, b2bua: B2bua) -> None:
        """Take calls: INVITEs and their dialogs go to `b2bua`."""
        self.b2bua = b2bua
        self.ua = UserAgent(
            user_agent=self.ua.user_agent,
            lines=self.ua.lines,
            authenticator=self.ua.authenticator,
            registrar=self.ua.registrar,
            calls=True,
            browser_credentials=self.ua.browser_credentials,
        )

    def use_browser_credentials(self, credentials: BrowserCredentials) -> None:
        """Let browsers register with the credentials `credentials` issues
        (over a WebSocket only)."""
        self.ua.browser_credentials = credentials
        if self.b2bua is not None:
            self.b2bua.browser_credentials = credentials

    @property
    def location(self) -> Location:
        assert self.ua.registrar is not None
        return self.ua.registrar.location

    # --- the SipPort the B2BUA drives -----------------------------------------

    def time(self) -> float:
        return self._loop.time()

    def call_later(
        self, delay: float, callback: Callable[..., object], *args: object
    ) -> asyncio.TimerHandle:
        return self._loop.call_later(delay, callback, *args)

    def send_request(self, request: Request, peer: object, on_response: ResponseHandler) -> None:
        assert isinstance(peer, Peer)
        now = self._loop.time()
        if "Via" not in request.headers:  # a CANCEL keeps its INVITE's
            request.headers.prepend("Via", self._via(peer))
        reliable = peer.address.transport != "udp"
        try:
            client, effects = self.transactions.send_request(request, peer, reliable, now)
        except TransactionError as error:
            log_event(logger, logging.WARNING, "sip.send_failed", error=str(error))
            return
        self._owners[client] = on_response
        self._apply(effects, now)
        self._rearm()

    def send_ack(self, ack: Request, peer: object) -> None:
        assert isinstance(peer, Peer)
        if "Via" not in ack.headers:  # sent again, it keeps the Via it went with
            ack.headers.prepend("Via", self._via(peer))
        self._send(ack, peer)

    def respond(self, transaction: ServerTransaction, response: Response) -> None:
        now = self._loop.time()
        try:
            effects = self.transactions.respond(transaction, response, now)
        except TransactionError:
            return  # the transaction ended: nobody waits for this answer any more
        self._apply(effects, now)
        self._rearm()

    def contact(self, user: str, peer: object) -> str:
        transport = peer.address.transport if isinstance(peer, Peer) else "udp"
        hostport = format_hostport(self.host, self._port_for(transport))
        return name_addr(user, hostport, transport=None if transport == "udp" else transport)

    def _port_for(self, transport: str) -> int:
        """Our port for `transport`: the HTTP port for WebSockets (RFC 7118 §5)."""
        return self.websocket.local_address.port if transport == "ws" else self.port

    def peer_for(self, binding: Binding) -> object:
        if binding.path:
            # RFC 3327: through the proxy the device registered through.
            return self.next_hop(binding.path[0].uri, binding.source)
        if isinstance(binding.source, Peer):
            return binding.source
        uri = binding.uri
        if isinstance(uri, SipURI):
            transport = (uri.params.get("transport") or "udp").lower()
            return self.peer_at(transport, uri.host.strip("[]"), uri.port or 5060)
        return self.peer_at("udp", "127.0.0.1", 0)  # unreachable on purpose: it fails

    def next_hop(self, uri: URI, flow: object) -> object:
        """Where a request whose first Route (or Path) is `uri` goes (RFC 3261
        §8.1.2): `flow`, the connection we already share with that hop, when
        it is the same address; otherwise the address `uri` names. A hop
        named by a host name rather than an address also takes `flow`: the
        SIP side resolves no names (it would wait on DNS)."""
        ip = _ip_of(uri.host) if isinstance(uri, SipURI) else None
        if ip is None:
            return flow
        assert isinstance(uri, SipURI)
        transport = (uri.transport or ("tls" if uri.scheme == "sips" else "udp")).lower()
        port = uri.port or (5061 if transport == "tls" else 5060)
        if isinstance(flow, Peer):
            address = flow.address
            same = (address.transport, address.port) == (transport, port)
            if same and _ip_of(address.host) == ip:
                return flow
        return self.peer_at(transport, str(ip), port)

    def _via(self, peer: Peer) -> str:
        transport = peer.address.transport.upper()
        sent_by = format_hostport(self.host, self._port_for(peer.address.transport))
        return f"SIP/2.0/{transport} {sent_by};branch={new_branch()};rport"

    def _registrar_policy(self) -> RegistrarPolicy:
        settings = self.settings
        return RegistrarPolicy(
            min_expires=settings.registrar_min_expires,
            max_expires=settings.registrar_max_expires,
            default_expires=settings.registrar_max_expires,
        )

    def peer_at(self, transport: str, host: str, port: int) -> object:
        """The Peer for a flow read back from the store (its connection, if it
        was TCP, is gone: a request to it would open a new one)."""
        try:
            endpoint: Transport | None = self.transport.transport_for(transport)
        except TransportError:
            endpoint = None
        return Peer(Address(transport, host, port), endpoint)

    @staticmethod
    def host_of(peer: object) -> str | None:
        return peer.address.host if isinstance(peer, Peer) else None

    @staticmethod
    def flow_of(source: object) -> tuple[str, str, int] | None:
        if not isinstance(source, Peer) or isinstance(source.transport, WsTransport):
            # A browser's socket does not outlive the process: nothing to keep.
            return None
        address = source.address
        return address.transport, address.host, address.port

    def use_lines(self, lines: Lines) -> None:
        """Swap in a new snapshot of the internal lines (calls in progress
        keep the lines they started with)."""
        self.ua.lines = lines
        log_event(logger, logging.INFO, "pbx.lines_loaded", count=len(lines))

    def _on_message(
        self, message: Message, source: Address, transport: Transport, waited: float
    ) -> None:
        if waited > _GIVEN_UP_AFTER:  # its sender's transaction gave up: nothing to do
            self.given_up += 1
            return
        now = self._loop.time()
        item = Queued(message, source, transport, arrived=now - waited)
        policy = self.overload.policy
        if not self.backlog and not (policy.enabled and waited > policy.target_delay):
            self._handle(item)  # not behind: at once
            return
        # Behind: a new call is judged at the door, the rest waits its turn.
        if isinstance(message, Request) and self._at_door(item, message, now):
            return
        self.backlog.add(item)

    def _at_door(self, item: Queued, request: Request, now: float) -> bool:
        """Refuse (or drop, for its sender's flood) a new INVITE as it is
        read; True when done with it. One whose first copy still waits in
        the backlog is that call's, and waits behind it."""
        if request.method != "INVITE" or request.to.tag is not None:
            return False
        if self.backlog.waiting(request):
            return False
        item.guarded = True
        if self.guard.drops(self.proxies.sender_of(request, item.source.host), now):
            return True
        if self._sheds(request, now):
            self._send(self._shed(request), self._peer(item.source, item.transport))
            return True
        return False

    def _handle(self, item: Queued) -> None:
        message, source, transport = item.message, item.source, item.transport
        now = self._loop.time()
        if not transport.reliable:  # a stream cannot tell how long its bytes waited
            waited = max(0.0, now - item.arrived)
            if waited > _GIVEN_UP_AFTER:
                self.given_up += 1
                return
            self._overload_changed(self.overload.waited(waited, now))
        if not item.guarded:
            sender = source.host
            if isinstance(message, Request):
                sender = self.proxies.sender_of(message, sender)
            if self.guard.drops(sender, now):
                return
        peer = self._peer(source, transport)
        if isinstance(message, Request) and self._sheds(message, now):
            # Stateless (RFC 3261 §8.2.7): no transaction, no timers, nothing
            # kept; its ACK is a stray that matches nothing, and a 503 lost
            # brings the INVITE back, to be judged again.
            self._send(self._shed(message), peer)
            return
        self._apply(self.transactions.receive(message, peer, now), now)
        self._rearm()

    # --- overload: the loop's lag, and new calls shed ---------------------------

    def _arm_probe(self) -> None:
        due = self._loop.time() + _LAG_PROBE_INTERVAL
        self._probe = self._loop.call_at(due, self._on_probe, due)

    def _on_probe(self, due: float) -> None:
        now = self._loop.time()
        self._overload_changed(self.overload.lag(max(0.0, now - due), now))
        self._arm_probe()

    def _overload_changed(self, change: OverloadChange | None) -> None:
        if change is None:
            return
        if change.overloaded:
            log_event(
                logger,
                logging.WARNING,
                "sip.overload_started",
                delay_ms=round(change.delay * 1000, 1),
                share=round(self.overload.share, 3),
            )
        else:
            log_event(
                logger,
                logging.WARNING,
                "sip.overload_ended",
                seconds=round(change.seconds, 1),
                refused=change.refused,
            )

    def _sheds(self, request: Request, now: float) -> bool:
        """Whether `request` is a new call the shedder refuses: decided before
        any transaction, digest, routing, store or media work, so a refusal
        costs a parse and a 503."""
        return (
            request.method == "INVITE"
            and request.to.tag is None
            and self.b2bua is not None
            and not self.transactions.knows(request)
            and not self.overload.admits_call(
                (request.call_id, request.from_.tag), now, queued=self.backlog.behind(now)
            )
        )

    def _shed(self, request: Request) -> Response:
        """503 with Retry-After: the answer to a new INVITE refused for overload."""
        retry = str(self.overload.policy.retry_after)
        return make_response(request, 503, to_tag=new_tag(), headers=[("Retry-After", retry)])

    def stats(self) -> dict[str, float | int]:
        """Counters for the log at shutdown and for benchmarks."""
        transport = self.transport.stats
        return {
            **self.overload.stats(),
            "given_up": self.given_up,
            "backlog_most": self.backlog.most,
            **self.collector.stats(),
            "parse_errors": transport.parse_errors,
            "answered_errors": transport.answered_errors,
            "dropped": transport.dropped,
            "ws_oversized": self.websocket.oversized,
        }

    def _admits(self, host: str) -> bool:
        """Whether `host` may open a TCP connection: not while it is blocked."""
        return not self.guard.is_blocked(host, self._loop.time())

    def _peer(self, source: Address, transport: Transport) -> Peer:
        # One Peer per busy source rather than one per message: completed
        # transactions hold theirs for 32 s. Bounded, as a flood of spoofed
        # sources must not grow it.
        key = (source, id(transport))
        peer = self._peers.get(key)
        if peer is None or peer.transport is not transport:
            if len(self._peers) >= _MAX_PEERS:
                self._peers.clear()
            peer = self._peers[key] = Peer(source, transport)
        return peer

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        now = self._loop.time()
        self._apply(self.transactions.handle_timers(now), now)
        self._rearm()

    def _rearm(self) -> None:
        deadline = self.transactions.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = None if deadline is None else self._loop.call_at(deadline, self._on_timer)

    def _apply(self, effects: list[Effect], now: float) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                self._send(effect.message, effect.peer)
            elif isinstance(effect, NewRequest):
                self._answer(effect.request, effect.transaction, now)
            elif isinstance(effect, Deliver):
                self._deliver(effect.message, effect.transaction)
            elif isinstance(effect, StrayAck):
                if self.b2bua is not None:
                    self.b2bua.ack(effect.request)
            elif isinstance(effect, StrayResponse):
                if self.b2bua is not None:
                    self.b2bua.stray_response(effect.response)
            elif isinstance(effect, TimedOut | TransportFailed):
                self._failed(effect.transaction, timed_out=isinstance(effect, TimedOut))
            elif isinstance(effect, Terminated):
                self._owners.pop(effect.transaction, None)  # type: ignore[call-overload]

    def _deliver(self, message: Message, transaction: object) -> None:
        if isinstance(message, Response) and isinstance(transaction, ClientTransaction):
            owner = self._owners.get(transaction)
            if owner is not None:
                owner(transaction, message)
        elif isinstance(message, Request) and self.b2bua is not None:
            self.b2bua.ack(message)  # an ACK that reused its INVITE's branch

    def _failed(self, transaction: object, *, timed_out: bool) -> None:
        request = getattr(transaction, "request", None)
        assert isinstance(request, Request)
        log_event(
            logger,
            logging.INFO,
            "sip.transaction_failed",
            cause="timeout" if timed_out else "transport",
            method=request.method,
            call_id=request.call_id,
        )
        if isinstance(transaction, ClientTransaction):
            owner = self._owners.pop(transaction, None)
            if owner is not None:
                # §8.1.3.1: the TU acts as on a 408, or a 503 for the transport.
                owner(transaction, make_response(request, 408 if timed_out else 503))

    def _answer(self, request: Request, transaction: ServerTransaction, now: float) -> None:
        log_event(
            logger, logging.DEBUG, "sip.new_request", method=request.method, call_id=request.call_id
        )
        peer = transaction.peer
        assert isinstance(peer, Peer)
        if request.method == "REGISTER" and peer.address.reliable:
            self._registering_flows.add(peer.address)
        try:
            response = self._dispatch(request, transaction, peer, now)
        except ParseError as error:
            # The parser checks only the headers every layer needs; one read
            # later (Require, Contact, Route, ...) can still be malformed, and
            # its sender gets the parser's answer all the same.
            log_event(
                logger,
                logging.DEBUG,
                "sip.request_malformed",
                src=peer.address,
                method=request.method,
                reason=error.reason,
            )
            ack = request.method == "ACK"  # never answered
            response = None if ack else make_response(request, error.status, error.reason)
        if response is DROP:
            log_event(logger, logging.INFO, "sip.dropped", src=peer.address, method=request.method)
            self.transactions.discard(transaction)
        elif isinstance(response, Response):
            self._apply(self.transactions.respond(transaction, response, now), now)

    def _dispatch(
        self, request: Request, transaction: ServerTransaction, peer: Peer, now: float
    ) -> Response | Drop | None:
        method, b2bua = request.method, self.b2bua
        # Who sent it: the phone behind a trusted proxy, not the proxy.
        source = self.proxies.sender_of(request, peer.address.host)
        if method == "CANCEL":
            return self._cancel(request, peer, source, now)
        new_call = b2bua is not None and method == "INVITE" and request.to.tag is None
        if b2bua and method not in _OUT_OF_DIALOG and (refusal := self.ua.refusal(request)):
            return refusal
        if new_call:
            assert b2bua is not None
            transport = peer.address.transport
            return b2bua.invite(request, transaction, source=source, peer=peer, transport=transport)
        if b2bua is not None and request.to.tag is not None and method not in _OUT_OF_DIALOG:
            return b2bua.in_dialog(request, transaction)
        return self.ua.answer(
            request, source=source, peer=peer, now=now, transport=peer.address.transport
        )

    def _cancel(
        self, cancel: Request, peer: Peer, source: str, now: float
    ) -> Response | Drop | None:
        invite = self.transactions.find_invite_for_cancel(cancel)
        if invite is None:
            return self.ua.answer(
                cancel, source=source, peer=peer, now=now, transport=peer.address.transport
            )
        to_tag = None if self.b2bua is None else self.b2bua.cancel(invite)
        if to_tag is not None:
            return make_response(cancel, 200, to_tag=to_tag)
        # An INVITE no call holds was answered at once: the CANCEL comes too
        # late to change anything; 200 for it, the INVITE keeps its answer.
        sent = invite.last_response
        return make_response(cancel, 200, to_tag=sent.to.tag if sent is not None else None)

    def _send(self, message: Message, peer: object) -> None:
        assert isinstance(peer, Peer)
        try:
            if isinstance(message, Request):
                self.transport.send_request(message, peer.address)
            elif peer.transport is not None:
                self.transport.send_response(message, peer.address, peer.transport)
        except TransportError as error:
            self._on_transport_error(error)

    def _on_transport_error(self, error: TransportError) -> None:
        log_event(logger, logging.INFO, "sip.transport_error", error=str(error))

    # --- bindings whose connection closed ------------------------------------

    def _carries_a_binding(self, remote: Address) -> bool:
        """Whether a phone is registered over the connection with `remote`:
        its only way in, so it stays open however long it is idle."""
        if remote not in self._registering_flows:
            return False
        now = self._loop.time()
        location = self.location
        return any(
            isinstance(binding.source, Peer) and binding.source.address == remote
            for aor in location.aors()
            for binding in location.bindings(aor, now)
        )

    def _on_flow_closed(self, remote: Address) -> None:
        if remote in self._registering_flows:
            self._registering_flows.discard(remote)
            if remote.transport == self.websocket.name:
                self._browser_gone(remote)
            else:
                self._flow_closed(remote, self._loop.time())

    def _browser_gone(self, remote: Address) -> None:
        """A browser's socket closed: nothing can reach it any more (it cannot
        be called back), so its bindings go at once; it registers anew
        when it reconnects."""
        registrar = self.ua.registrar
        assert registrar is not None
        dropped = registrar.forget(
            lambda b: isinstance(b.source, Peer) and b.source.address == remote,
            self._loop.time(),
        )
        if dropped:
            log_event(logger, logging.INFO, "pbx.browser_gone", remote=remote, bindings=dropped)

    def _flow_closed(self, remote: Address, now: float) -> None:
        self._closed_flows[remote] = now + self.settings.registrar_flow_grace
        if self._flow_check is None:
            self._flow_check = self._loop.call_at(self._closed_flows[remote], self._drop_dead_flows)

    def _drop_dead_flows(self) -> None:
        """Drop the bindings of flows closed a grace ago whose phone has not
        registered again (a new flow replaces the binding, so what is left
        on a closed flow is a phone gone)."""
        self._flow_check = None
        now = self._loop.time()
        due = {remote for remote, deadline in self._closed_flows.items() if deadline <= now}
        for remote in due:
            del self._closed_flows[remote]
        registrar = self.ua.registrar
        assert registrar is not None
        dropped = registrar.forget(
            lambda b: (
                isinstance(b.source, Peer)
                and b.source.address in due
                and not registrar.reachable(b)
            ),
            now,
        )
        if dropped:
            log_event(logger, logging.INFO, "pbx.dead_flows_dropped", bindings=dropped)
        if self._closed_flows:
            self._flow_check = self._loop.call_at(
                min(self._closed_flows.values()), self._drop_dead_flows
            )


def _ip_of(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class HideTokens(logging.Filter):
    """Masks `token=...` in the paths uvicorn logs (access lines, and its
    WebSocket accepted/refused lines), so no log holds a usable token."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_QUERY.sub(r"\1***", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        if isinstance(record.msg, str):
            record.msg = _TOKEN_IN_QUERY.sub(r"\1***", record.msg)
        return True


def hide_tokens_in_uvicorn_logs() -> None:
    for name in ("uvicorn.access", "uvicorn.error"):
        logger_ = logging.getLogger(name)
        if not any(isinstance(f, HideTokens) for f in logger_.filters):
            logger_.addFilter(HideTokens())


class HttpService:
    """uvicorn serving the API inside our loop: its startup, tick loop and
    shutdown are driven from here, so SIGTERM stops it together with SIP
    (uvicorn's own `serve()` would take over the signal handlers)."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        *,
        on_apply: Callable[[ConfigVersion], Awaitable[None]] | None = None,
        registration_state: Callable[[int], Mapping[str, str | None]] | None = None,
        guard: FloodGuard | None = None,
        location: Location | None = None,
        originator: Originator | None = None,
        event_bus: EventBus | None = None,
        on_employees_changed: Callable[[], Awaitable[None]] | None = None,
        hold_call: HoldCall | None = None,
        end_call: EndCall | None = None,
        send_digits: SendDigits | None = None,
        music: MusicOnHold | None = None,
        setup_token: SetupToken | None = None,
        sip_ws: WsTransport | None = None,
        browser_credentials: BrowserCredentials | None = None,
        sip_domain: str | None = None,
    ) -> None:
        hide_tokens_in_uvicorn_logs()
        config = uvicorn.Config(
            create_app(
                settings,
                database,
                on_apply=on_apply,
                registration_state=registration_state,
                guard=guard,
                location=location,
                sip_clock=asyncio.get_running_loop().time,
                originator=originator,
                event_bus=event_bus,
                on_employees_changed=on_employees_changed,
                hold_call=hold_call,
                end_call=end_call,
                send_digits=send_digits,
                music=music,
                setup_token=setup_token,
                sip_ws=sip_ws,
                browser_credentials=browser_credentials,
                sip_domain=sip_domain,
            ),
            host=settings.http_host,
            port=settings.http_port,
            # uvicorn believes X-Forwarded-For from loopback unless told:
            # behind no proxy, that lets any local process pick the address
            # the login guard counts. Only the proxies the settings name.
            proxy_headers=bool(settings.trusted_proxies()),
            forwarded_allow_ips=settings.trusted_proxies(),
            lifespan="on",
            log_config=None,
            # A WebSocket frame past this closes its socket (1009) before the
            # app reads it; /ws/sip counts those between it and the SIP limit.
            ws_max_size=2 * settings.max_message_size,
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self._ticks: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Listen; returns the port (the real one when 0 was asked)."""
        config = self.server.config
        config.load()
        self.server.lifespan = config.lifespan_class(config)
        try:
            await self.server.startup()
        except SystemExit as exit_:  # uvicorn exits when it cannot bind
            raise OSError(f"HTTP cannot listen on {config.host}:{config.port}") from exit_
        self._ticks = asyncio.create_task(self.server.main_loop())
        port: int = self.server.servers[0].sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._ticks is not None:
            await self._ticks
            await self.server.shutdown()


async def open_database(settings: Settings) -> Database:
    """The database, migrated to the newest schema, with the first admin
    created when `CALLBRIDGE_ADMIN_PASSWORD` asks for one."""
    database = create_database(settings)
    try:
        await database.migrate()
        password = settings.admin_password
        async with database.session() as session:
            admin = await ensure_admin(session, password.get_secret_value() if password else None)
        if admin is not None:
            log_event(http_logger, logging.INFO, "auth.admin_created", username=admin.username)
    except BaseException:
        await database.close()
        raise
    return database


async def current_version(database: Database) -> ConfigVersion:
    """The version to run: the last one applied; on the first start, the
    staged set applied as version 1 (an empty one if it cannot run)."""
    async with database.session() as session:
        version = await latest(session)
        if version is not None:
            return version
        try:
            return await apply_staged(session, by=None, source="start")
        except InvalidConfig as error:
            log_event(logger, logging.WARNING, "config.not_applied", problems=len(error.problems))
            await session.rollback()
            return ConfigVersion(id=0, source="empty", snapshot={})


def log_reachable(settings: Settings, advertised: str, port: int) -> None:
    """Say where phones can reach SIP (`sip.reachable_at`): the address to
    type into a phone is one of these, not the `0.0.0.0` SIP listens on."""
    addresses = reachable_addresses(settings.sip_host, interface_addresses())
    log_event(
        logger,
        logging.INFO,
        "sip.reachable_at",
        addresses=",".join(addresses),
        port=port,
        transports="udp,tcp",
        advertised=advertised,  # what Contact and SDP carry
    )


def tune_garbage_collector() -> None:
    """Every SIP message is a few dozen small objects that die young; the
    default thresholds would run the collector every few hundred messages and
    scan every live transaction each time. Collect less often, and move what
    start-up built (modules, settings) out of the collector's sight. Under
    load the passes run on a clock instead (`collector.PacedPasses`, started
    by `SipService.watch_load`); the threshold is for a burst between them.
    The full pass is theirs alone (every ten minutes): each paced pass counts
    one towards the automatic full pass's threshold, and with the default
    (100) a full pass (170 ms at 200 calls/s) came every ten seconds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 1_000_000)


def drop_bindings_of_disabled(lines: Lines, location: Location, now: float) -> None:
    """Let go of the devices of disabled lines (a leaver's phone stays
    registered no longer than the line stays enabled); a line with none
    costs no write."""
    for line in lines.by_number.values():
        if line.disabled and location.bindings(line.number, now):
            location.replace(line.number, [])


async def run(settings: Settings) -> int:
    """Serve until SIGINT or SIGTERM; returns the process exit status."""
    # Handlers first: a signal that arrives while we start still stops us cleanly.
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    database = await open_database(settings)
    interrupted = await CallRecorder(database).close_interrupted(datetime.now(UTC))
    log_event(logger, logging.INFO, "pbx.calls_interrupted", count=interrupted)
    recordings_dir = settings.effective_recordings_dir()
    recovered = await recover(database, recordings_dir)
    log_event(logger, logging.INFO, "pbx.recordings_recovered", count=recovered)
    service = SipService(settings)
    location = StoredLocation(
        database, flow_of=service.flow_of, source_of=service.peer_at, clock=loop.time
    )
    service.use_location(location)
    ports = RtpPortAllocator(settings.rtp_ports, host=settings.sip_host or "0.0.0.0")
    media_policy = MediaPolicy(AllowedNetworks.parse(settings.media_allowed_networks))
    # Sockets on 0.0.0.0 answer on every interface: an SDP naming any of
    # them with one of our ports is ours too.
    media_policy.set_local(interface_addresses())
    media_policy.add_own(service.host, range(ports.range.first, ports.range.last + 1))
    media = LocalMediaEngine(
        ports, rtp_timeout=settings.rtp_timeout or None, clock=loop.time, policy=media_policy
    )
    recorder = CallRecorder(database)
    recordings = Recordings(recordings_dir, recorder, enabled=settings.recording)
    event_bus = EventBus()
    # What held parties hear: the admin's upload, or the bundled melody.
    music = await asyncio.to_thread(MusicOnHold.load, settings.data_dir, clock=loop.time)
    log_event(
        logger,
        logging.INFO,
        "media.music_on_hold",
        source=music.info.source,
        seconds=round(music.info.seconds, 2),
    )

    async def identify_number(number: str, region: str) -> Identity:
        async with database.session() as session:
            return await identify(session, number, region)

    b2bua = B2bua(
        service,
        authenticator=service.authenticator,
        location=location,
        media=media,
        recorder=recorder,
        media_address=service.host,
        lines=lambda: service.ua.lines,
        user_agent=settings.user_agent,
        events=event_bus,
        identify=identify_number,
        latch_on_signalling_host=settings.media_latch_signalling_host,
        player=music.player if settings.music_on_hold else None,
        recordings=recordings,
    )
    service.use_b2bua(b2bua)
    secret = settings.browser_sip_secret
    browser_credentials = BrowserCredentials(
        await asyncio.to_thread(
            load_secret, secret.get_secret_value() if secret else None, settings.data_dir
        ),
        lines=lambda: service.ua.lines,
        ttl=settings.browser_sip_credential_ttl,
        clock=time.time,
    )
    service.use_browser_credentials(browser_credentials)

    # An apply and an employee's deletion each read the store, then swap
    # lines in: one at a time, or an apply that read before a deletion
    # would swap the leaver's line back in enabled after it.
    swapping = asyncio.Lock()

    async def reload_employees() -> None:
        """An employee changed: their telephony switch counts from the next
        call; a leaver's line stops at once (its devices are let go)."""
        async with swapping:
            async with database.session() as session:
                employees = await load_employees(session)
                disabled = await disabled_line_ids(session)
            b2bua.use_employees(employees)
            # Lines are only disabled here: enabling one again waits for the
            # apply that brings its new password.
            lines = service.ua.lines.disabling(disabled)
            if lines is not service.ua.lines:
                service.use_lines(lines)
            drop_bindings_of_disabled(lines, location, loop.time())

    trunks = Trunks(service)

    async def run_config(version: ConfigVersion) -> None:
        """Swap in an applied version with the current credentials: calls in
        progress keep what they began with."""
        async with swapping:
            async with database.session() as session:
                live = await read_live_state(session)
            config = await running_config(version, live)
            service.use_lines(config.lines)
            drop_bindings_of_disabled(config.lines, location, loop.time())
        b2bua.dialplan = config.dialplan
        trunks.use(config.trunks)
        # A provider's address is never blocked: a forged packet must not cut it off.
        # Nor is a trusted proxy's: it speaks for every phone behind it.
        service.guard.trust(
            [
                *(network for trunk in config.trunks for network in trunk.networks()),
                *service.proxies.networks,
            ]
        )
        log_event(logger, logging.INFO, "config.running", version=config.version)

    # No admin yet (and none asked for by CALLBRIDGE_ADMIN_PASSWORD): the
    # log gets a one-time link that lets the first one be created.
    async with database.session() as session:
        setup_token = None if await admin_exists(session) else SetupToken()
    http = HttpService(
        settings,
        database,
        on_apply=run_config,
        registration_state=trunks.state,
        guard=service.guard,
        location=location,
        originator=Originator(b2bua),
        event_bus=event_bus,
        on_employees_changed=reload_employees,
        hold_call=b2bua.hold,
        end_call=b2bua.end_call,
        send_digits=b2bua.send_digits,
        music=music,
        setup_token=setup_token,
        sip_ws=service.websocket,
        browser_credentials=browser_credentials,
        sip_domain=format_hostport(service.host),
    )
    reloads: set[asyncio.Task[None]] = set()
    retention: asyncio.Task[None] | None = None
    revocation = RevocationWatch(
        database, browser_credentials, lambda: service.ua.registrar, clock=loop.time
    )
    watching: asyncio.Task[None] | None = None

    def reload_on_hangup() -> None:
        # SIGHUP: the employees were changed behind the API's back (a script,
        # another node): read them again, as the API does after its changes.
        task = asyncio.create_task(reload_employees())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    try:
        sip_port = await service.start()
        log_reachable(settings, service.host, sip_port)
        # RTP sent to our own SIP socket would be read as SIP: never a media address.
        for host in {settings.sip_host or "0.0.0.0", service.host}:
            media_policy.add_own(host, sip_port)
        await run_config(await current_version(database))
        await reload_employees()
        loop.add_signal_handler(signal.SIGHUP, reload_on_hangup)
        restored = await location.load()
        drop_bindings_of_disabled(service.ua.lines, location, loop.time())
        service.expect_reconnects(loop.time())
        log_event(logger, logging.INFO, "pbx.bindings_restored", count=restored)
        location.start()
        recorder.start()
        watching = asyncio.create_task(revocation.run(), name="browser-revocations")
        if settings.recording_retention_days:
            retention = asyncio.create_task(
                keep_for(
                    database,
                    recordings_dir,
                    settings.recording_retention_days,
                    wallclock=lambda: datetime.now(UTC),
                ),
                name="recording-retention",
            )
        port = await http.start()
        service.websocket.serve_on(port)
        tune_garbage_collector()
        service.watch_load()
        log_event(http_logger, logging.INFO, "http.listening", host=settings.http_host, port=port)
        if setup_token is not None:
            log_event(
                http_logger,
                logging.WARNING,
                "http.setup_link",
                url=setup_token.link(settings.http_host, port),
                hint="no administrator yet: open this link once to create one",
            )
        await stopping.wait()
        log_event(logger, logging.INFO, "callbridge.stopping")
    finally:
        await http.stop()
        trunks.close()
        await b2bua.close()
        music.player.stop()
        for task in (retention, watching):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # The calls have ended: their files are completed and their records told.
        await recordings.close()
        log_event(logger, logging.INFO, "b2bua.stats", **b2bua.stats())
        log_event(logger, logging.INFO, "guard.stats", **service.guard.stats())
        log_event(logger, logging.INFO, "sip.stats", **service.stats())
        await recorder.stop()
        await media.close()
        await service.stop()
        await location.stop()
        log_event(
            logger,
            logging.INFO,
            "store.stats",
            call_changes_dropped=recorder.dropped,
            registrations_dropped=location.dropped,
        )
        await database.close()
    return 0
