"""The `callbridge serve` process: wires the transport to the transaction
layer and the transaction layer to the PBX, owns the one timer that drives
every transaction's timers, and serves the HTTP API in the same loop."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import uvicorn

from .api import create_app
from .logs import log_event
from .pbx.auth import DROP, Authenticator, Drop
from .pbx.calls import CallLog
from .pbx.guard import FloodGuard, GuardPolicy
from .pbx.lines import Lines, load_lines
from .pbx.location import StoredLocation
from .pbx.registrar import Location, MemoryLocation, Registrar, RegistrarPolicy
from .pbx.ua import UserAgent
from .settings import Settings
from .sip import Limits, Message, Request, Response, make_response
from .sip.digest import DigestServer
from .sip.transaction import (
    Deliver,
    Effect,
    NewRequest,
    Send,
    ServerTransaction,
    StrayAck,
    StrayResponse,
    Terminated,
    TimedOut,
    TransactionLayer,
    TransportFailed,
)
from .store import Database, create_database
from .store.accounts import ensure_admin
from .transport import Address, Transport, TransportError, TransportLayer

logger = logging.getLogger("callbridge.sip")
http_logger = logging.getLogger("callbridge.http")
_MAX_PEERS = 4096


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
            tcp_idle_timeout=settings.tcp_idle_timeout,
            max_tcp_connections=settings.tcp_max_connections,
        )
        self.guard = FloodGuard(
            GuardPolicy(
                max_failures=settings.guard_max_failures,
                window=settings.guard_window,
                block_for=settings.guard_block_for,
            )
        )
        self.ua = UserAgent(
            user_agent=settings.user_agent,
            authenticator=Authenticator(
                DigestServer(
                    settings.sip_realm, algorithms=settings.sip_digest_algorithms.split(",")
                ),
                self.guard,
                server_name=settings.user_agent,
            ),
            registrar=Registrar(MemoryLocation(), self._registrar_policy()),
        )
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._peers: dict[tuple[Address, int], Peer] = {}

    async def start(self) -> int:
        """Listen on the configured host and port; returns the port."""
        return await self.transport.listen(self.settings.sip_host, self.settings.sip_port)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        await self.transport.close()

    def use_location(self, location: Location) -> None:
        """Keep bindings in `location` (before start: bindings are not moved)."""
        self.ua.registrar = Registrar(location, self._registrar_policy())

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
    def flow_of(source: object) -> tuple[str, str, int] | None:
        if not isinstance(source, Peer):
            return None
        address = source.address
        return address.transport, address.host, address.port

    def use_lines(self, lines: Lines) -> None:
        """Swap in a new snapshot of the internal lines."""
        self.ua.lines = lines
        log_event(logger, logging.INFO, "pbx.lines_loaded", count=len(lines))

    def _on_message(self, message: Message, source: Address, transport: Transport) -> None:
        now = self._loop.time()
        if self.guard.is_blocked(source.host, now):
            self.transport.stats.dropped += 1
            return
        self._apply(self.transactions.receive(message, self._peer(source, transport), now), now)
        self._rearm()

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
            elif isinstance(effect, StrayAck):
                log_event(logger, logging.DEBUG, "sip.stray_ack", call_id=effect.request.call_id)
            elif isinstance(effect, StrayResponse):
                log_event(
                    logger,
                    logging.DEBUG,
                    "sip.stray_response",
                    status=effect.response.status,
                    call_id=effect.response.call_id,
                )
            elif isinstance(effect, TimedOut | TransportFailed):
                log_event(
                    logger,
                    logging.INFO,
                    "sip.transaction_failed",
                    cause="timeout" if isinstance(effect, TimedOut) else "transport",
                    method=effect.transaction.request.method,
                    call_id=effect.transaction.request.call_id,
                )
            elif isinstance(effect, Deliver | Terminated):
                pass  # nothing of ours starts client transactions yet

    def _answer(self, request: Request, transaction: ServerTransaction, now: float) -> None:
        log_event(
            logger, logging.DEBUG, "sip.new_request", method=request.method, call_id=request.call_id
        )
        peer = transaction.peer
        assert isinstance(peer, Peer)
        if request.method == "CANCEL":
            response = self._cancel(request, peer, now)
        else:
            response = self.ua.answer(request, source=peer.address.host, peer=peer, now=now)
        if response is DROP:
            log_event(logger, logging.INFO, "sip.dropped", src=peer.address, method=request.method)
            self.transactions.discard(transaction)
        elif isinstance(response, Response):
            self._apply(self.transactions.respond(transaction, response, now), now)

    def _cancel(self, cancel: Request, peer: Peer, now: float) -> Response | Drop | None:
        invite = self.transactions.find_invite_for_cancel(cancel)
        if invite is None:
            return self.ua.answer(cancel, source=peer.address.host, peer=peer, now=now)
        # Every INVITE is answered at once today, so the CANCEL comes too late
        # to change anything: 200 for the CANCEL, the INVITE keeps its answer.
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


class HttpService:
    """uvicorn serving the API inside our loop: its startup, tick loop and
    shutdown are driven from here, so SIGTERM stops it together with SIP
    (uvicorn's own `serve()` would take over the signal handlers)."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        *,
        on_lines_changed: Callable[[], Awaitable[None]] | None = None,
        guard: FloodGuard | None = None,
        location: Location | None = None,
    ) -> None:
        config = uvicorn.Config(
            create_app(
                settings,
                database,
                on_lines_changed=on_lines_changed,
                guard=guard,
                location=location,
                sip_clock=asyncio.get_running_loop().time,
            ),
            host=settings.http_host,
            port=settings.http_port,
            lifespan="on",
            log_config=None,
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


def tune_garbage_collector() -> None:
    """Every SIP message is a few dozen small objects that die young; the
    default thresholds would run the collector every few hundred messages and
    scan every live transaction each time. Collect less often, and move what
    start-up built (modules, settings) out of the collector's sight."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


async def run(settings: Settings) -> int:
    """Serve until SIGINT or SIGTERM; returns the process exit status."""
    # Handlers first: a signal that arrives while we start still stops us cleanly.
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    database = await open_database(settings)
    interrupted = await CallLog(database).close_interrupted(datetime.now(UTC))
    log_event(logger, logging.INFO, "pbx.calls_interrupted", count=interrupted)
    service = SipService(settings)
    location = StoredLocation(
        database, flow_of=service.flow_of, source_of=service.peer_at, clock=loop.time
    )
    service.use_location(location)

    async def reload_lines() -> None:
        service.use_lines(await load_lines(database))

    http = HttpService(
        settings,
        database,
        on_lines_changed=reload_lines,
        guard=service.guard,
        location=location,
    )
    try:
        await reload_lines()
        await service.start()
        restored = await location.load()
        log_event(logger, logging.INFO, "pbx.bindings_restored", count=restored)
        location.start()
        port = await http.start()
        log_event(http_logger, logging.INFO, "http.listening", host=settings.http_host, port=port)
        tune_garbage_collector()
        await stopping.wait()
        log_event(logger, logging.INFO, "callbridge.stopping")
    finally:
        await http.stop()
        await service.stop()
        await location.stop()
        await database.close()
    return 0
