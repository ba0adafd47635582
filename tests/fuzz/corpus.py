"""The seed messages the SIP fuzzer mutates: the RFC 4475 torture messages
(tests/fixtures/rfc4475) and valid messages of callbridge's own traffic
(a provider's INVITE with SDP, a phone's REGISTER, a re-INVITE with SDP,
OPTIONS, BYE, CANCEL, ACK and a response) addressed to the server under test."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent.parent / "fixtures"

_SDP = (
    "v=0\r\n"
    "o=- 1 {version} IN IP4 {source}\r\n"
    "s=-\r\n"
    "c=IN IP4 {source}\r\n"
    "t=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=sendrecv\r\n"
)

_HEADERS = (
    "Via: SIP/2.0/{transport} {source}:{source_port};branch=z9hG4bK{branch};rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: {from_} <sip:{caller}@{source}>;tag=f{branch}\r\n"
    "To: <sip:{callee}@{server}>{to_tag}\r\n"
    "Call-ID: {branch}@{source}\r\n"
    "CSeq: {cseq} {method}\r\n"
    "Contact: <sip:{caller}@{source}:{source_port}>\r\n"
    "User-Agent: fuzz\r\n"
)


def _message(method: str, uri: str, *, body: str = "", extra: str = "", **fields: str) -> str:
    values = {
        "from_": '"Customer"',
        "caller": "+79161234567",
        "callee": "380441234567",
        "to_tag": "",
        "cseq": "1",
        "version": "1",
        **fields,
        "method": method,
    }
    headers = _HEADERS.format(**values) + extra.format(**values)
    if body:
        body = body.format(**values)
        headers += "Content-Type: application/sdp\r\n"
    headers += f"Content-Length: {len(body.encode())}\r\n"
    return f"{method} {uri} SIP/2.0\r\n{headers}\r\n{body}"


def own_messages(server: str, source: str, source_port: int, transport: str) -> dict[str, bytes]:
    """callbridge's everyday traffic, valid, from `source`:`source_port` to `server`."""
    common = {
        "server": server,
        "source": source,
        "source_port": str(source_port),
        "transport": transport.upper(),
    }
    messages = {
        "invite": _message(
            "INVITE", f"sip:380441234567@{server}", body=_SDP, branch="inv1", **common
        ),
        "register": _message(
            "REGISTER",
            f"sip:{server}",
            extra="Expires: 600\r\n",
            caller="alice",
            callee="alice",
            from_='"Alice"',
            branch="reg1",
            **common,
        ),
        "reinvite": _message(
            "INVITE",
            f"sip:380441234567@{server}",
            body=_SDP,
            to_tag=";tag=b2bua1",
            cseq="2",
            version="2",
            branch="reinv1",
            **common,
        ),
        "options": _message("OPTIONS", f"sip:{server}", branch="opt1", **common),
        "bye": _message(
            "BYE",
            f"sip:380441234567@{server}",
            to_tag=";tag=b2bua1",
            cseq="3",
            branch="bye1",
            **common,
        ),
        "cancel": _message("CANCEL", f"sip:380441234567@{server}", branch="inv1", **common),
        "ack": _message(
            "ACK", f"sip:380441234567@{server}", to_tag=";tag=b2bua1", branch="ack1", **common
        ),
    }
    response = (
        "SIP/2.0 200 OK\r\n"
        f"Via: SIP/2.0/{transport.upper()} {server};branch=z9hG4bKnone\r\n"
        f"From: <sip:101@{server}>;tag=x1\r\n"
        f"To: <sip:{source}>;tag=y1\r\n"
        f"Call-ID: stray@{server}\r\n"
        "CSeq: 1 INVITE\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    out = {name: text.encode() for name, text in messages.items()}
    out["response"] = response.encode()
    return out


def rfc4475() -> dict[str, bytes]:
    return {
        f"rfc4475/{path.stem}": path.read_bytes()
        for path in sorted((FIXTURES / "rfc4475").glob("*.sip"))
    }


def corpus(server: str, source: str, source_port: int, transport: str) -> list[tuple[str, bytes]]:
    """Every seed message as (name, bytes), in a fixed order."""
    own = own_messages(server, source, source_port, transport)
    return [*sorted(own.items()), *rfc4475().items()]
