"""Properties of the parser: generated messages survive a round trip, mangled
real messages fail only with ParseError, and parsing time grows linearly."""

from __future__ import annotations

import contextlib
import string
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callbridge.sip import Limits, Message, ParseError, parse, parse_name_addr, parse_uri
from callbridge.sip.grammar import quote
from callbridge.sip.headers import Via, _parse_via_slowly, parse_via
from callbridge.sip.uri import (
    _BAD_URI_CHAR_RE,
    AbsoluteURI,
    SipURI,
    TelURI,
    _parse_sip_uri_slowly,
)

FIXTURES = sorted((Path(__file__).parent.parent / "fixtures").glob("rfc*/*.sip"))
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Strategies for the pieces of a message (RFC 3261 §25.1).

TOKEN = string.ascii_letters + string.digits + "-.!%*_+`'~"
tokens = st.text(TOKEN, min_size=1, max_size=10)
methods = st.sampled_from(["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER"]) | tokens
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
toplabel = st.from_regex(r"[a-z]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
hostnames = st.builds(lambda ls, top: ".".join([*ls, top]), st.lists(label, max_size=3), toplabel)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
hosts = st.one_of(hostnames, ipv4, ipv6.map(lambda a: f"[{a}]"))
ports = st.none() | st.integers(0, 65535)
users = st.from_regex(r"([A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-F]{2}){1,12}", fullmatch=True)
param_values = st.none() | tokens | ipv4 | ipv6.map(lambda a: f"[{a}]")
params = st.lists(
    st.tuples(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), param_values), max_size=4
)
uri_headers = st.lists(
    st.tuples(
        st.from_regex(r"[A-Za-z-]{1,8}", fullmatch=True),
        st.from_regex(r"[a-z0-9]{0,8}", fullmatch=True),
    ),
    max_size=2,
)


def render_params(items: list[tuple[str, str | None]]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in items)


@st.composite
def sip_uris(draw: st.DrawFn, *, with_headers: bool = True) -> str:
    scheme = draw(st.sampled_from(["sip", "sips", "SIP"]))
    user = draw(st.none() | users)
    password = draw(st.none() | st.from_regex(r"[A-Za-z0-9&=+$,]{0,6}", fullmatch=True))
    userinfo = "" if user is None else user + ("" if password is None else ":" + password) + "@"
    port = draw(ports)
    hostport = draw(hosts) + ("" if port is None else f":{port}")
    text = f"{scheme}:{userinfo}{hostport}{render_params(draw(params))}"
    headers = draw(uri_headers) if with_headers else []
    if headers:
        text += "?" + "&".join(f"{k}={v}" for k, v in headers)
    return text


uris = st.one_of(
    sip_uris(),
    st.from_regex(r"tel:\+?[0-9][0-9.()-]{0,12}", fullmatch=True),
    st.from_regex(r"(urn|mailto|im):[a-z0-9@.:]{1,12}", fullmatch=True),
)
display_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("\täöü大停電"),
    max_size=20,
)
displays = st.one_of(
    st.just(""),
    display_text.map(lambda t: quote(t) + " "),
    display_text.map(quote),
    st.lists(tokens, min_size=1, max_size=3).map(lambda ts: " ".join(ts) + " "),
)


@st.composite
def name_addrs(draw: st.DrawFn, tag: str | None = None) -> str:
    header_params = draw(params)
    if tag is not None:
        header_params.append(("tag", tag))
    return f"{draw(displays)}<{draw(sip_uris())}>{render_params(header_params)}"


@st.composite
def vias(draw: st.DrawFn) -> tuple[str, str]:
    branch = "z9hG4bK" + draw(tokens)
    extra: list[tuple[str, str | None]] = draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("rport"), st.none() | st.integers(1, 65535).map(str)),
                st.tuples(st.just("received"), ipv4 | ipv6),
                st.tuples(st.just("ttl"), st.integers(0, 255).map(str)),
            ),
            max_size=2,
            unique_by=lambda p: p[0],
        )
    )
    port = draw(ports)
    transport = draw(st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS", "wss"]))
    sent_by = draw(hosts) + ("" if port is None else f":{port}")
    return f"SIP/2.0/{transport} {sent_by}" + render_params([("branch", branch), *extra]), branch


@st.composite
def messages(draw: st.DrawFn) -> tuple[bytes, dict[str, object]]:
    """A valid message in raw form, and what parsing it must find."""
    method = draw(methods)
    via_list = draw(st.lists(vias(), min_size=1, max_size=4))
    from_tag, call_id = (
        draw(tokens),
        draw(st.from_regex(r"[A-Za-z0-9.!%*_+~-]{1,16}(@[a-z.]{1,8})?", fullmatch=True)),
    )
    seq, body = draw(st.integers(0, 2**31 - 1)), draw(st.binary(max_size=120))
    names = {name: draw(st.sampled_from(spellings)) for name, spellings in NAMES.items()}
    sep = draw(st.sampled_from([": ", ":", " : ", ":\t", ":\r\n  "]))
    via_lines = (
        [", ".join(v for v, _ in via_list)] if draw(st.booleans()) else [v for v, _ in via_list]
    )
    lines = [
        "\r\n".join(f"{names['via']}{sep}{v}" for v in via_lines),
        f"{names['from']}{sep}{draw(name_addrs(from_tag))}",
        f"{names['to']}{sep}{draw(name_addrs())}",
        f"{names['call-id']}{sep}{call_id}",
        f"{names['cseq']}{sep}{seq} {method}",
        f"Max-Forwards{sep}{draw(st.integers(0, 255))}",
        f"{names['contact']}{sep}{', '.join(draw(st.lists(name_addrs(), max_size=3)))}",
        f"{names['supported']}{sep}{', '.join(draw(st.lists(tokens, max_size=4)))}",
        f"Route{sep}{', '.join(draw(st.lists(name_addrs(), max_size=3)))}",
    ]
    lines = draw(st.permutations(lines))
    uri = draw(uris.filter(lambda u: "?" not in u))
    head = "\r\n".join(
        [f"{method} {uri} SIP/2.0", *lines, f"{names['content-length']}: {len(body)}"]
    )
    expected = {
        "method": method,
        "branches": [b for _, b in via_list],
        "from_tag": from_tag,
        "call_id": call_id,
        "cseq": seq,
        "body": body,
    }
    return head.encode() + b"\r\n\r\n" + body, expected


NAMES = {
    "via": ["Via", "v", "VIA", "via"],
    "from": ["From", "f", "FROM"],
    "to": ["To", "t", "tO"],
    "call-id": ["Call-ID", "i", "call-id"],
    "cseq": ["CSeq", "cseq"],
    "contact": ["Contact", "m"],
    "supported": ["Supported", "k"],
    "content-length": ["Content-Length", "l", "content-LENGTH"],
}


# Round trips


@SETTINGS
@given(messages())
def test_generated_message_is_stable_after_one_normalization(
    case: tuple[bytes, dict[str, object]],
) -> None:
    raw, expected = case
    message = parse(raw)
    normalized = message.to_bytes()
    again = parse(normalized)
    assert again.to_bytes() == normalized
    for m in (message, again):
        assert getattr(m, "method", None) == expected["method"]
        assert [via.branch for via in m.vias] == expected["branches"]
        assert m.from_.tag == expected["from_tag"]
        assert m.call_id == expected["call_id"]
        assert m.cseq.seq == expected["cseq"]
        assert m.body == expected["body"]


@SETTINGS
@given(uris)
def test_uri_is_stable_after_one_normalization(text: str) -> None:
    uri = parse_uri(text)
    written = str(uri)
    assert str(parse_uri(written)) == written
    assert parse_uri(written) == uri


@SETTINGS
@given(name_addrs(tag="x"))
def test_name_addr_survives_writing_back(text: str) -> None:
    address = parse_name_addr(text)
    again = parse_name_addr(str(address))
    assert again.display_name == address.display_name
    assert again.uri == address.uri
    assert again.tag == "x"


# Fast paths agree with slow paths

URI_PIECES = ["a", "b.c", "1.2.3.4", "999.0.0.1", "[::1]", "[2001:db8::1]", "@", ":", ":5060"]
URI_PIECES += [":99999", ";", ";lr", ";a=b", "?", "?h=v", "%41", "%4", "-", ".", "[", "]", " "]
URI_PIECES += ["a;", "a?", ";@", "?@", "@b_c", "@[", "b_c", "a:b@"]
uri_rests = st.lists(st.sampled_from(URI_PIECES), min_size=1, max_size=6).map("".join)


def outcome(parse_it: Callable[[], SipURI | TelURI | AbsoluteURI | Via]) -> object:
    """Every part the parser read, so two readings of one string compare."""
    try:
        parsed = parse_it()
    except ParseError:
        return "refused"
    if isinstance(parsed, SipURI):
        parts = (parsed.user, parsed.password, parsed.host, parsed.port, parsed.headers)
        return (*parts, list(parsed.params.items()))
    if isinstance(parsed, Via):
        return (parsed.transport, parsed.host, parsed.port, list(parsed.params.items()))
    return repr(parsed)


@SETTINGS
@given(uri_rests)
def test_fast_and_slow_uri_parsers_agree(rest: str) -> None:
    fast = outcome(lambda: parse_uri("sip:" + rest))
    slow = outcome(lambda: _parse_sip_uri_slowly("sip", rest))
    assert fast == slow or (fast == "refused" and _BAD_URI_CHAR_RE.search(rest))


@SETTINGS
@given(uri_rests)
def test_fast_and_slow_via_parsers_agree(rest: str) -> None:
    text = "SIP/2.0/UDP " + rest
    assert outcome(lambda: parse_via(text)) == outcome(lambda: _parse_via_slowly(text))


# Mangled real messages

SPECIAL = [b'"', b"\\", b"<", b">", b";", b",", b":", b"=", b"@", b"%", b"[", b"]", b"\x00"]
SPECIAL += [b"\r\n", b"\r\n ", b"\r", b"\n", b"\r\n\r\n", b"\xff", b"\xd9\xa3", b"9" * 30]
originals = st.sampled_from([path.read_bytes() for path in FIXTURES])


@st.composite
def mutations(draw: st.DrawFn) -> bytes:
    data = draw(originals)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        lines = data.split(b"\r\n")
        line = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["flip", "insert", "truncate", "dup", "drop", "swap"]))
        if kind == "flip" and at < len(data):
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
        elif kind == "insert":
            piece = draw(st.sampled_from(SPECIAL) | st.binary(min_size=1, max_size=6))
            data = data[:at] + piece + data[at:]
        elif kind == "truncate":
            data = data[:at]
        elif kind == "dup":
            data = b"\r\n".join([*lines[: line + 1], lines[line], *lines[line + 1 :]])
        elif kind == "drop":
            data = b"\r\n".join(lines[:line] + lines[line + 1 :])
        elif kind == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[line], lines[other] = lines[other], lines[line]
            data = b"\r\n".join(lines)
    return data


def read_everything(message: Message) -> None:
    """Touch every structured accessor; each may fail only with ParseError."""
    for accessor in ("top_via", "vias", "from_", "to", "contacts", "cseq", "call_id"):
        with contextlib.suppress(ParseError):
            getattr(message, accessor)


@SETTINGS
@given(mutations(), st.booleans())
def test_mangled_message_fails_only_with_parse_error(data: bytes, stream: bool) -> None:
    try:
        message = parse(data, stream=stream)
    except ParseError as error:
        assert error.status in (400, 414, 505, 513)
        return
    read_everything(message)
    written = message.to_bytes()
    assert parse(written).to_bytes() == written


# Linear time

PAD = Limits(max_message_size=10**8, max_headers=10**6, max_header_length=10**8)
HEAD = (
    "OPTIONS sip:bob@biloxi.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
    "To: <sip:bob@biloxi.example.com>\r\n"
    "Call-ID: a84b4c76e66710\r\n"
    "CSeq: 1 OPTIONS\r\n"
)
FROM = "From: <sip:alice@atlanta.example.com>;tag=1\r\n"


def padded(shape: Callable[[int], str], n: int) -> bytes:
    return (shape(n) + "Content-Length: 0\r\n\r\n").encode()


SHAPES: dict[str, Callable[[int], str]] = {
    "many headers": lambda n: HEAD + FROM + "X-Pad: value\r\n" * n,
    "many vias": lambda n: HEAD + FROM + "Via: SIP/2.0/TCP h.example.com;branch=z9hG4bKx\r\n" * n,
    "long header value": lambda n: HEAD + FROM + "Subject: " + "x" * (40 * n) + "\r\n",
    "many folded lines": lambda n: HEAD + FROM + "Subject: a" + "\r\n b" * n + "\r\n",
    "many params": lambda n: HEAD + FROM.replace(";tag=1", ";tag=1" + ";a=b" * n),
    "repeated semicolons": lambda n: HEAD + FROM.replace(";tag=1", ";tag=1" + ";" * (20 * n)),
    "huge quoted string": lambda n: HEAD + f'From: "{"q " * (20 * n)}" <sip:a@b.com>;tag=1\r\n',
    "huge escaped quote": lambda n: HEAD + f'From: "{chr(92) * (40 * n)}" <sip:a@b.com>;tag=1\r\n',
    "unterminated quote": lambda n: HEAD + f'From: "{"q" * (40 * n)} <sip:a@b.com>;tag=1\r\n',
    "many display tokens": lambda n: HEAD + f"From: {'tok ' * (10 * n)}<sip:a@b.com>;tag=1\r\n",
    "display tokens no uri": lambda n: HEAD + f"From: {'tok ' * (10 * n)};tag=1\r\n",
    "many commas": lambda n: (
        HEAD + FROM + "Contact: <sip:a@b.com>" + ", <sip:c@d.com>" * n + "\r\n"
    ),
    "bare commas": lambda n: HEAD + FROM + "Contact: <sip:a@b.com>" + "," * (20 * n) + "\r\n",
    "long user no at": lambda n: HEAD + f"From: <sip:{'a;b?' * (10 * n)}>;tag=1\r\n",
    "long host labels": lambda n: HEAD + f"From: <sip:u@{'a-' * (20 * n)}!>;tag=1\r\n",
    "many dotted labels": lambda n: HEAD + f"From: <sip:u@{'a.' * (20 * n)}9>;tag=1\r\n",
    "long via sent-by": lambda n: HEAD.replace("pc33.atlanta", "a-" * (20 * n)) + FROM,
    "long via protocol": lambda n: HEAD + FROM + f"Via: SIP / 2.0 / {'U' * (40 * n)}\r\n",
    "long escapes in user": lambda n: HEAD + f"From: <sip:{'%41' * (10 * n)}%4@b.com>;tag=1\r\n",
}


def best_times(small: bytes, large: bytes, runs: int = 7) -> tuple[float, float]:
    """Best CPU time of each, measured in turns so a busy moment hits both
    alike. The thread's CPU time, not the wall clock: on a shared machine a
    preemption in the middle of one parse would otherwise count as its work."""
    best = [float("inf"), float("inf")]
    for _ in range(runs):
        for i, data in enumerate((small, large)):
            start = time.thread_time()
            with contextlib.suppress(ParseError):
                parse(data, PAD)
            best[i] = min(best[i], time.thread_time() - start)
    return best[0], best[1]


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_parsing_time_grows_linearly(shape: str) -> None:
    # Parse a message padded to n and to 8n units: linear code takes ~8x as
    # long, quadratic code 64x. Best of several runs, plus slack for noise.
    # A loaded machine still evicts caches mid-run, so a shape gets three
    # tries: noise does not repeat, quadratic time does.
    n = 400
    small, large = padded(SHAPES[shape], n), padded(SHAPES[shape], 8 * n)
    ratios = []
    for _ in range(3):
        t_small, t_large = best_times(small, large)
        ratios.append(t_large / max(t_small, 1e-5))
        if ratios[-1] < 8 * 2.5:
            return
    pytest.fail(f"{shape}: 8x the input took {min(ratios):.1f}x the time (best of 3 tries)")
