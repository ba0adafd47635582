"""A browser's softphone as the tests play it: SIP over a WebSocket
(`websockets`' client, subprotocol `sip`), one message per frame, with the
Via and Contact JsSIP sends (a `.invalid` host, `transport=ws`), and digest
MD5 computed here rather than by callbridge's own code."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import uuid

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

_AUTH_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,]+))')


def sip_websocket(http_port: int, *, subprotocols: tuple[str, ...] = ("sip",)) -> ClientConnection:
    """An open WebSocket to /ws/sip offering `subprotocols` (none: no header)."""
    connection = connect(
        f"ws://127.0.0.1:{http_port}/ws/sip",
        subprotocols=list(subprotocols) or None,  # type: ignore[arg-type]
        open_timeout=5,
        max_size=None,
    )
    return connection.__enter__()


def header(message: str, name: str) -> str | None:
    """The first value of header `name` in `message` (None if absent)."""
    head = message.split("\r\n\r\n", 1)[0]
    for line in head.split("\r\n")[1:]:
        field, _, value = line.partition(":")
        if field.strip().lower() == name.lower():
            return value.strip()
    return None


def status_of(message: str) -> int | None:
    first = message.split("\r\n", 1)[0]
    return int(first.split()[1]) if first.startswith("SIP/2.0 ") else None


class WsPhone:
    """One browser tab's softphone on the line `number`."""

    def __init__(self, http_port: int, number: str, username: str, password: str) -> None:
        self.ws = sip_websocket(http_port)
        self.number = number
        self.username = username
        self.password = password
        self.host = f"{secrets.token_hex(6)}.invalid"
        self.contact_user = secrets.token_hex(4)
        self.instance = f"<urn:uuid:{uuid.uuid4()}>"
        self.call_id = secrets.token_hex(10)
        self.from_tag = secrets.token_hex(5)
        self.cseq = 0
        self.received: list[str] = []

    def close(self) -> None:
        self.ws.close()

    def send(self, text: str) -> None:
        self.ws.send(text)

    def next(self, want: str, timeout: float = 10) -> str:
        """The next message whose first line starts with `want` (e.g.
        "INVITE " or "SIP/2.0 200"); others are kept in `received`."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {want!r} within {timeout} s; got {self.first_lines()}")
            try:
                frame = self.ws.recv(timeout=left)
            except TimeoutError:
                continue
            text = frame if isinstance(frame, str) else frame.decode()
            self.received.append(text)
            if text.startswith(want):
                return text

    def first_lines(self) -> list[str]:
        return [m.split("\r\n", 1)[0] for m in self.received]

    def register(self, *, to: str | None = None, expires: int = 300) -> str:
        """REGISTER (answering one digest challenge); the final response."""
        first = self._send_register(to, expires, authorization=None)
        if status_of(first) != 401:
            return first
        challenge = header(first, "WWW-Authenticate") or ""
        return self._send_register(to, expires, authorization=self._answer(challenge, to))

    def _send_register(self, to: str | None, expires: int, authorization: str | None) -> str:
        self.cseq += 1
        aor = f"sip:{to or self.number}@127.0.0.1"
        lines = [
            "REGISTER sip:127.0.0.1 SIP/2.0",
            f"Via: SIP/2.0/WSS {self.host};branch=z9hG4bK{secrets.token_hex(8)}",
            "Max-Forwards: 69",
            f"To: <{aor}>",
            f"From: <{aor}>;tag={self.from_tag}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            f"Contact: <sip:{self.contact_user}@{self.host};transport=ws>;+sip.ice;reg-id=1;"
            f'+sip.instance="{self.instance}";expires={expires}',
            f"Expires: {expires}",
            "Allow: INVITE,ACK,CANCEL,BYE,UPDATE,MESSAGE,OPTIONS,REFER,INFO,NOTIFY",
            "Supported: path,gruu,outbound",
            "User-Agent: JsSIP 3.10.1 (test)",
        ]
        if authorization is not None:
            lines.append(f"Authorization: {authorization}")
        self.send("\r\n".join([*lines, "Content-Length: 0", "", ""]))
        while True:
            response = self.next("SIP/2.0 ")
            if header(response, "CSeq") == f"{self.cseq} REGISTER" and status_of(response) != 100:
                return response

    def call(self, number: str, sdp: str) -> tuple[str, str, str]:
        """INVITE `number` (answering one 407 challenge) until its 200;
        the 200, the Call-ID and our From tag. The ACK is sent."""
        call_id, tag = secrets.token_hex(10), secrets.token_hex(5)
        uri = f"sip:{number}@127.0.0.1"
        self.cseq += 1
        first = self._invite(uri, call_id, tag, sdp, authorization=None)
        final = self._final(self.cseq, "INVITE")
        if status_of(final) == 407:
            self._ack(first, final)
            challenge = header(final, "Proxy-Authenticate") or ""
            self.cseq += 1
            self._invite(uri, call_id, tag, sdp, self._answer(challenge, uri, "INVITE"))
            final = self._final(self.cseq, "INVITE")
        assert status_of(final) == 200, final
        self._ack(None, final)
        return final, call_id, tag

    def hang_up(self, answer: str) -> str:
        """BYE the dialog `answer` (a 200 to our INVITE) confirmed; its final response."""
        self.cseq += 1
        target = (header(answer, "Contact") or "").strip("<>").split(">")[0]
        lines = [
            f"BYE {target} SIP/2.0",
            f"Via: SIP/2.0/WSS {self.host};branch=z9hG4bK{secrets.token_hex(8)}",
            "Max-Forwards: 69",
            f"To: {header(answer, 'To')}",
            f"From: {header(answer, 'From')}",
            f"Call-ID: {header(answer, 'Call-ID')}",
            f"CSeq: {self.cseq} BYE",
        ]
        self.send("\r\n".join([*lines, "Content-Length: 0", "", ""]))
        return self._final(self.cseq, "BYE")

    def _invite(self, uri: str, call_id: str, tag: str, sdp: str, authorization: str | None) -> str:
        lines = [
            f"INVITE {uri} SIP/2.0",
            f"Via: SIP/2.0/WSS {self.host};branch=z9hG4bK{secrets.token_hex(8)}",
            "Max-Forwards: 69",
            f"To: <{uri}>",
            f"From: <sip:{self.number}@127.0.0.1>;tag={tag}",
            f"Call-ID: {call_id}",
            f"CSeq: {self.cseq} INVITE",
            f"Contact: <sip:{self.contact_user}@{self.host};transport=ws;ob>",
            "Content-Type: application/sdp",
            "User-Agent: JsSIP 3.10.1 (test)",
        ]
        if authorization is not None:
            lines.append(f"Proxy-Authorization: {authorization}")
        message = "\r\n".join([*lines, f"Content-Length: {len(sdp)}", "", sdp])
        self.send(message)
        return message

    def _ack(self, invite: str | None, response: str) -> None:
        """ACK `response`: a non-2xx's in its INVITE's transaction, a 2xx's
        on its own, to the Contact it came with."""
        cseq = (header(response, "CSeq") or "").split()[0]
        if invite is not None:
            uri = invite.split(" ", 2)[1]
            via = header(invite, "Via")
        else:
            uri = (header(response, "Contact") or "").strip("<>").split(">")[0]
            via = f"SIP/2.0/WSS {self.host};branch=z9hG4bK{secrets.token_hex(8)}"
        lines = [
            f"ACK {uri} SIP/2.0",
            f"Via: {via}",
            "Max-Forwards: 69",
            f"To: {header(response, 'To')}",
            f"From: {header(response, 'From')}",
            f"Call-ID: {header(response, 'Call-ID')}",
            f"CSeq: {cseq} ACK",
        ]
        self.send("\r\n".join([*lines, "Content-Length: 0", "", ""]))

    def _final(self, cseq: int, method: str) -> str:
        while True:
            response = self.next("SIP/2.0 ")
            status = status_of(response) or 0
            if header(response, "CSeq") == f"{cseq} {method}" and status >= 200:
                return response

    def _answer(self, challenge: str, to: str | None, method: str = "REGISTER") -> str:
        params = {m[1]: m[2] or m[3] for m in _AUTH_PARAM.finditer(challenge)}
        realm, nonce = params["realm"], params["nonce"]
        uri = "sip:127.0.0.1" if method == "REGISTER" else str(to)
        cnonce, nc = secrets.token_hex(8), "00000001"

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        ha1 = md5(f"{self.username}:{realm}:{self.password}")
        ha2 = md5(f"{method}:{uri}")
        response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        value = (
            f'Digest algorithm=MD5, username="{self.username}", realm="{realm}", '
            f'nonce="{nonce}", uri="{uri}", response="{response}", qop=auth, '
            f'cnonce="{cnonce}", nc={nc}'
        )
        if "opaque" in params:
            value += f', opaque="{params["opaque"]}"'
        return value

    def respond(self, request: str, status: str, *, to_tag: str, body: str = "") -> None:
        """Answer `request` with `status` ("180 Ringing"): its Via, From,
        Call-ID and CSeq, its To with `to_tag`."""
        head = request.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
        kept = [h for h in head if h.split(":")[0].lower() in ("via", "from", "call-id", "cseq")]
        to = next(h for h in head if h.lower().startswith("to:"))
        if ";tag=" not in to:
            to += f";tag={to_tag}"
        extra = [f"Contact: <sip:{self.contact_user}@{self.host};transport=ws>"]
        if body:
            extra.append("Content-Type: application/sdp")
        lines = [f"SIP/2.0 {status}", *kept, to, *extra, f"Content-Length: {len(body)}", "", body]
        self.send("\r\n".join(lines))

    def closed(self, timeout: float = 5) -> int | None:
        """Wait until the server closes the socket; its close code."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.ws.recv(timeout=deadline - time.monotonic())
        except (ConnectionClosed, TimeoutError):
            pass
        return self.ws.close_code


def plain_sdp(port: int) -> str:
    """An answer a test can give: PCMU on loopback (WebRTC's SDP is the
    media side's business; signalling passes whatever comes)."""
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )
