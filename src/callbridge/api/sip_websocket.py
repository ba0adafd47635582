"""`/ws/sip`: SIP over WebSocket (RFC 7118) on the HTTP port. The handshake
must offer the subprotocol `sip`; each accepted socket becomes a flow of the
SIP side's WebSocket transport, which gets every frame as one SIP message
and gives back what to send. Who the browser is, SIP's digest decides."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from ..transport import WsFlow, WsTransport

router = APIRouter(tags=["sip"])

PATH = "/ws/sip"
SUBPROTOCOL = "sip"
# What a flow that closed may still flush to the browser (its last answers).
_FLUSH_SECONDS = 1.0


@router.websocket(PATH)
async def sip_over_websocket(websocket: WebSocket) -> None:
    """Refused (HTTP 403) without the `sip` subprotocol, when no PBX runs in
    this process, or when a limit on connections is reached."""
    transport: WsTransport | None = getattr(websocket.app.state, "sip_ws", None)
    if SUBPROTOCOL not in websocket.scope.get("subprotocols", ()) or transport is None:
        await websocket.close(code=1002)  # before accept: the handshake is refused
        return
    client = websocket.client
    flow = transport.accept(client.host, client.port) if client else "no client address"
    if isinstance(flow, str):
        await websocket.close(code=1013)
        return
    await websocket.accept(subprotocol=SUBPROTOCOL)
    reader = asyncio.create_task(_read(websocket, flow))
    writer = asyncio.create_task(_write(websocket, flow))
    try:
        await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        flow.lost()
        reader.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(writer), _FLUSH_SECONDS)
        writer.cancel()
        await asyncio.gather(reader, writer, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(websocket.close(flow.close_code), _FLUSH_SECONDS)


async def _read(websocket: WebSocket, flow: WsFlow) -> None:
    """Hand each frame to the flow until the browser goes or the flow closes."""
    with contextlib.suppress(WebSocketDisconnect):
        while flow.is_open:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                data = (message.get("text") or "").encode("utf-8", "surrogatepass")
            flow.receive(data)


async def _write(websocket: WebSocket, flow: WsFlow) -> None:
    """Send what the flow gives, as text frames (binary if not UTF-8), until
    the socket is gone: closed by the browser, or by the server under us (a
    frame over the size limit makes uvicorn close it while answers to the
    frames before are still queued), after which nothing can be sent."""
    while (data := await flow.outgoing()) is not None:
        try:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                await websocket.send_bytes(data)
            else:
                await websocket.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return  # starlette's "after sending 'websocket.close'" is a RuntimeError
