"""Whole messages: header names and forms, folding, lists, framing by
Content-Length, mandatory headers, limits, and building responses."""

from __future__ import annotations

import pytest

from callbridge.sip import (
    DEFAULT_LIMITS,
    Headers,
    Limits,
    ParseError,
    Request,
    Response,
    make_response,
    parse,
)

INVITE_HEAD = (
    "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
    "Max-Forwards: 70\r\n"
    "To: Bob <sip:bob@biloxi.example.com>\r\n"
    'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
)
BODY = b"v=0\r\no=- 1 1 IN IP4 192.0.2.101\r\ns=-\r\nc=IN IP4 192.0.2.101\r\nt=0 0\r\n"


def invite(*extra: str, body: bytes = BODY, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    head = INVITE_HEAD + "".join(f"{line}\r\n" for line in extra)
    return f"{head}Content-Length: {size}\r\n\r\n".encode() + body


def request(data: bytes, limits: Limits = DEFAULT_LIMITS, *, stream: bool = False) -> Request:
    message = parse(data, limits, stream=stream)
    assert isinstance(message, Request)
    return message


def refused(data: bytes, limits: Limits = DEFAULT_LIMITS, *, stream: bool = False) -> ParseError:
    with pytest.raises(ParseError) as caught:
        parse(data, limits, stream=stream)
    return caught.value


# The typical message


def test_invite_parses_into_its_fields() -> None:
    message = request(invite())
    assert message.method == "INVITE"
    assert str(message.uri) == "sip:bob@biloxi.example.com"
    assert message.top_via.branch == "z9hG4bK776asdhds"
    assert message.top_via.sent_by == "pc33.atlanta.example.com"
    assert message.from_.display_name == "Alice"
    assert message.from_.tag == "1928301774"
    assert message.to.tag is None
    assert message.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert (message.cseq.seq, message.cseq.method) == (314159, "INVITE")
    assert [str(c.uri) for c in message.contacts] == ["sip:alice@pc33.atlanta.example.com"]
    assert message.body == BODY


def test_to_bytes_writes_back_what_came_in() -> None:
    data = invite()
    assert parse(data).to_bytes() == data
    assert bytes(parse(data)) == data


def test_to_bytes_rewrites_content_length_from_the_body() -> None:
    message = request(invite())
    message.body = b"hello"
    assert parse(message.to_bytes()).body == b"hello"
    assert b"Content-Length: 5\r\n" in message.to_bytes()


# Header names


def test_compact_forms_read_as_their_full_names_and_write_in_full() -> None:
    data = (
        b"OPTIONS sip:bob@biloxi.example.com SIP/2.0\r\n"
        b"v: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\n"
        b"t: <sip:bob@biloxi.example.com>\r\n"
        b"f: <sip:alice@atlanta.example.com>;tag=1\r\n"
        b"i: compact@h.example.com\r\n"
        b"CSeq: 1 OPTIONS\r\n"
        b"m: <sip:alice@h.example.com>\r\n"
        b"k: timer\r\n"
        b"s: hello\r\n"
        b"c: text/plain\r\n"
        b"l: 2\r\n\r\nhi"
    )
    message = request(data)
    assert message.call_id == "compact@h.example.com"
    assert message.headers.get("Supported") == "timer"
    assert message.headers.get("k") == "timer"
    assert message.headers.get("Subject") == "hello"
    assert message.headers.get("Content-Type") == "text/plain"
    assert message.body == b"hi"
    written = message.to_bytes().decode()
    for name in ("Via:", "To:", "From:", "Call-ID:", "Contact:", "Supported:", "Subject:"):
        assert f"\r\n{name} " in written


def test_header_names_are_case_insensitive() -> None:
    message = request(invite("sUbJeCt: mixed", "x-CUSTOM: kept"))
    assert message.headers.get("SUBJECT") == "mixed"
    assert message.headers.get("X-Custom") == "kept"
    assert "\r\nSubject: mixed\r\n" in message.to_bytes().decode()
    assert "\r\nx-CUSTOM: kept\r\n" in message.to_bytes().decode()


def test_whitespace_before_the_colon_is_allowed() -> None:
    message = request(invite("Subject   :  spaced  "))
    assert message.headers.get("Subject") == "spaced"


@pytest.mark.parametrize(
    "line", ["No colon here", "Bad Name: x", ": no name", "Bad@Name: x", "Sub\x00ject: x"]
)
def test_malformed_header_line_is_refused(line: str) -> None:
    assert refused(invite(line)).status == 400


def test_header_line_without_colon_is_refused_even_for_a_known_name() -> None:
    assert refused(invite("Subject")).status == 400


def test_bare_cr_inside_a_header_is_refused() -> None:
    assert refused(invite("Subject: a\rb")).status == 400


# Folding, lists and quoted strings


def test_folded_lines_join_with_one_space() -> None:
    message = request(invite("Subject: first\r\n  second\r\n\tthird"))
    assert message.headers.get("Subject") == "first second third"


def test_folded_via_parameters_parse() -> None:
    data = invite().replace(
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n",
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com\r\n ;branch=z9hG4bK776asdhds\r\n",
    )
    assert request(data).top_via.branch == "z9hG4bK776asdhds"


def test_list_header_values_come_from_lines_and_commas_alike() -> None:
    message = request(
        invite(
            "Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
            "Route: <sip:p3.example.com;lr>",
            "Subject: one, two",
        )
    )
    assert message.headers.get_all("Route") == [
        "<sip:p1.example.com;lr>",
        "<sip:p2.example.com;lr>",
        "<sip:p3.example.com;lr>",
    ]
    assert message.headers.get_all("Subject") == ["one, two"]


def test_multiple_vias_in_lines_and_commas_keep_their_order() -> None:
    data = invite().replace(
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n",
        b"Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com:5070"
        b";branch=z9hG4bK2\r\nv: SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bK3;rport=5061\r\n",
    )
    vias = request(data).vias
    assert [(v.transport, v.host, v.port, v.branch) for v in vias] == [
        ("UDP", "a.example.com", None, "z9hG4bK1"),
        ("TCP", "b.example.com", 5070, "z9hG4bK2"),
        ("TLS", "[2001:db8::1]", 5061, "z9hG4bK3"),
    ]
    assert vias[2].rport == 5061


def test_quoted_display_names_keep_commas_and_escaped_quotes() -> None:
    data = invite().replace(
        b'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
        b'From: "Smith, \\"Al\\" \\\\ Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
    )
    message = request(data)
    assert message.from_.display_name == 'Smith, "Al" \\ Alice'
    assert message.from_.tag == "1928301774"
    contacts = request(
        invite('Contact: "Doe, J" <sip:j@a.example.com>, "x,y" <sip:k@b.example.com>')
    ).contacts
    assert [c.display_name for c in contacts] == [None, "Doe, J", "x,y"]


def test_parameter_names_are_case_insensitive() -> None:
    data = invite().replace(b";branch=", b";BRANCH=").replace(b";tag=", b";TAG=")
    message = request(data)
    assert message.top_via.branch == "z9hG4bK776asdhds"
    assert message.from_.tag == "1928301774"


# Start lines


def test_response_status_line_reads_code_and_reason() -> None:
    data = (
        b"SIP/2.0 180 Ringing Loudly\r\n"
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
        b"From: <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        b"Call-ID: a84b4c76e66710\r\n"
        b"CSeq: 314159 INVITE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    message = parse(data)
    assert isinstance(message, Response)
    assert (message.status, message.reason) == (180, "Ringing Loudly")
    assert message.to.tag == "a6c85cf"


@pytest.mark.parametrize(
    ("start", "status"),
    [
        ("INVITE sip:bob@biloxi.example.com SIP/3.0", 505),
        ("INVITE sip:bob@biloxi.example.com SIP/2.1", 505),
        ("INVITE sip:bob@biloxi.example.com SIP/2", 400),
        ("INVITE sip:bob@biloxi.example.com HTTP/1.1", 400),
        ("INVITE sip:bob@biloxi.example.com", 400),
        ("INV ITE sip:bob@biloxi.example.com SIP/2.0", 400),
        ("INVITE sip:bob@biloxi.example.com?Subject=x SIP/2.0", 400),
        ("INVITE sip:" + "b" * 3000 + "@biloxi.example.com SIP/2.0", 414),
    ],
)
def test_bad_request_line_gets_its_status(start: str, status: int) -> None:
    data = invite().replace(b"INVITE sip:bob@biloxi.example.com SIP/2.0", start.encode())
    assert refused(data).status == status


def test_version_is_case_insensitive_and_written_upper_case() -> None:
    data = invite().replace(b" SIP/2.0\r\n", b" sip/2.0\r\n", 1)
    assert request(data).to_bytes().startswith(b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n")


@pytest.mark.parametrize("code", [b"99", b"700", b"1000", b"2OO", b"\xd9\xa2\xd9\xa0\xd9\xa0"])
def test_bad_status_code_is_refused(code: bytes) -> None:
    data = b"SIP/2.0 " + code + b" OK\r\n" + invite().split(b"\r\n", 1)[1]
    assert refused(data).status == 400


def test_keep_alive_crlfs_before_a_message_are_skipped() -> None:
    assert request(b"\r\n\r\n" + invite()).method == "INVITE"


def test_bare_lf_line_ends_are_accepted() -> None:
    head, body = invite().split(b"\r\n\r\n", 1)
    message = request(head.replace(b"\r\n", b"\n") + b"\n\n" + body)
    assert message.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert message.body == BODY


# Content-Length framing


def test_datagram_body_longer_than_content_length_is_cut() -> None:
    assert request(invite(length=10)).body == BODY[:10]


def test_datagram_body_shorter_than_content_length_is_refused() -> None:
    assert refused(invite(length=len(BODY) + 1)).status == 400


def test_datagram_without_content_length_takes_the_rest() -> None:
    data = INVITE_HEAD.encode() + b"\r\n" + BODY
    assert request(data).body == BODY
    assert request(data).to_bytes().count(b"Content-Length") == 1


def test_stream_message_must_carry_content_length() -> None:
    data = INVITE_HEAD.encode() + b"\r\n" + BODY
    assert refused(data, stream=True).status == 400
    assert request(invite(), stream=True).body == BODY


@pytest.mark.parametrize("value", ["-1", "1.5", "ten", "0x10", "\u0661", "99999999999"])
def test_malformed_content_length_is_refused(value: str) -> None:
    data = invite().replace(f"Content-Length: {len(BODY)}".encode(), f"l: {value}".encode())
    assert refused(data).status == 400


def test_conflicting_content_lengths_are_refused() -> None:
    assert refused(invite(f"l: {len(BODY) - 1}")).status == 400


# Mandatory and single headers


@pytest.mark.parametrize("name", ["Via", "To", "From", "Call-ID", "CSeq"])
def test_missing_mandatory_header_is_refused(name: str) -> None:
    lines = [line for line in INVITE_HEAD.split("\r\n") if not line.startswith(f"{name}:")]
    data = "\r\n".join(lines).encode() + b"Content-Length: 0\r\n\r\n"
    error = refused(data)
    assert (error.status, error.reason) == (400, f"Missing {name}")


@pytest.mark.parametrize("value", ["", " ", ",", " , ,\t"])
def test_via_field_holding_no_via_is_refused(value: str) -> None:
    lines = [
        f"Via:{value}" if line.startswith("Via:") else line for line in INVITE_HEAD.split("\r\n")
    ]
    data = "\r\n".join(lines).encode() + b"Content-Length: 0\r\n\r\n"
    error = refused(data)
    assert (error.status, error.reason) == (400, "Missing Via")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"branch=z9hG4bK776asdhds", b'branch=z9hG4bK"776asdhds'),
        (b"tag=1928301774", b'tag=19283"01774'),
        (b"<sip:bob@biloxi.example.com>", b'<sip:bob@biloxi.example.com>;x=y"'),
    ],
)
def test_stray_quote_in_a_last_parameter_value_is_refused(old: bytes, new: bytes) -> None:
    # Written back with another parameter after it, it would open a quoted string.
    assert "Malformed parameter" in refused(invite().replace(old, new, 1)).reason


@pytest.mark.parametrize(
    "line", ["Call-ID: other", "CSeq: 2 INVITE", "To: <sip:x@y.com>", "Max-Forwards: 9"]
)
def test_second_single_value_header_is_refused(line: str) -> None:
    assert "Duplicate" in refused(invite(line)).reason


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE"),
        (b"CSeq: 314159 INVITE", b"CSeq: 2147483648 INVITE"),
        (b"CSeq: 314159 INVITE", b"CSeq: INVITE"),
        (b"Max-Forwards: 70", b"Max-Forwards: 256"),
        (b"Max-Forwards: 70", b"Max-Forwards: -1"),
        (b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com", b"Call-ID: two words"),
        (b"To: Bob <sip:bob@biloxi.example.com>", b"To: *"),
        (b";branch=z9hG4bK776asdhds", b";branch=z9hG4bK776asdhds;rport=99999"),
    ],
)
def test_bad_core_header_value_is_refused(old: bytes, new: bytes) -> None:
    assert refused(invite().replace(old, new)).status == 400


def test_leading_zeros_in_numbers_are_read() -> None:
    data = invite().replace(b"CSeq: 314159", b"CSeq: 0009").replace(b"70", b"0070", 1)
    message = request(data)
    assert message.cseq.seq == 9


# Limits


def test_message_over_the_size_limit_gets_513() -> None:
    assert refused(invite(body=b"x" * 70_000)).status == 513
    assert refused(invite(), Limits(max_message_size=100)).status == 513


def test_largest_allowed_message_parses() -> None:
    body_size = 65_535 - len(invite(body=b"", length=10_000))
    big = invite(body=b"x" * body_size)
    assert len(big) == 65_535
    assert len(request(big).body) == body_size


def test_too_many_headers_are_refused() -> None:
    assert refused(invite(*[f"X-H{i}: {i}" for i in range(130)])).status == 400
    assert refused(invite(), Limits(max_headers=5)).reason == "Too Many Headers"


def test_overlong_header_is_refused() -> None:
    assert refused(invite("Subject: " + "x" * 9000)).reason == "Header Too Long"
    assert request(invite("Subject: " + "x" * 8000)).headers.get("Subject") == "x" * 8000


def test_overlong_request_uri_gets_414() -> None:
    data = invite().replace(b"sip:bob@biloxi.example.com SIP", b"sip:" + b"b" * 100 + b"@x SIP")
    assert refused(data, Limits(max_uri_length=64)).status == 414


# Headers


def test_headers_edit_in_place_and_drop_cached_values() -> None:
    message = request(invite())
    assert message.top_via.branch == "z9hG4bK776asdhds"
    message.headers.prepend("Via", "SIP/2.0/TCP proxy.example.com;branch=z9hG4bKp")
    assert message.top_via.branch == "z9hG4bKp"
    assert message.headers.pop_first("Via") == "SIP/2.0/TCP proxy.example.com;branch=z9hG4bKp"
    assert message.top_via.branch == "z9hG4bK776asdhds"
    message.headers.set("Subject", "new")
    message.headers.remove("Contact")
    assert "Contact" not in message.headers
    assert message.headers.get("subject") == "new"


def test_pop_first_takes_one_element_of_a_list_line() -> None:
    headers = Headers.of(("Route", "<sip:a.example.com;lr>, <sip:b.example.com;lr>"))
    assert headers.pop_first("Route") == "<sip:a.example.com;lr>"
    assert headers.get_all("Route") == ["<sip:b.example.com;lr>"]


# Responses


def test_make_response_copies_the_dialog_headers_and_adds_a_to_tag() -> None:
    data = invite().replace(
        b"Via: SIP/2.0/UDP pc33",
        b"Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp\r\nVia: SIP/2.0/UDP pc33",
    )
    inv = request(data)
    response = make_response(inv, 180, to_tag="a6c85cf", headers=[("Contact", "<sip:b@h>")])
    assert (response.status, response.reason) == (180, "Ringing")
    assert [v.branch for v in response.vias] == ["z9hG4bKp", "z9hG4bK776asdhds"]
    assert response.from_.tag == "1928301774"
    assert response.to.tag == "a6c85cf"
    assert response.call_id == inv.call_id
    assert response.cseq == inv.cseq
    assert response.headers.get("Contact") == "<sip:b@h>"
    assert "Max-Forwards" not in response.headers
    again = parse(response.to_bytes())
    assert isinstance(again, Response)
    assert again.to.tag == "a6c85cf"


def test_make_response_keeps_an_existing_to_tag_and_skips_it_on_100() -> None:
    inv = request(invite())
    assert make_response(inv, 100, to_tag="x").to.tag is None
    tagged = request(
        invite().replace(b"biloxi.example.com>\r\n", b"biloxi.example.com>;tag=t1\r\n")
    )
    assert make_response(tagged, 200, to_tag="x").to.tag == "t1"
    assert make_response(inv, 486, "Busy Now").reason == "Busy Now"


# --- Comments (RFC 3261 §25.1) in Server and User-Agent ----------------------


def test_user_agent_comments_nest_and_unescape() -> None:
    from callbridge.sip.headers import Product, parse_products

    value = r'Yealink SIP-T46U/108.86.0.45 (build 3; "lab") (a (b \) c) d) pbx/1'
    assert parse_products(value) == [
        Product("Yealink"),
        Product("SIP-T46U", "108.86.0.45"),
        'build 3; "lab"',
        "a (b ) c) d",
        Product("pbx", "1"),
    ]


@pytest.mark.parametrize("value", ["x (unterminated", "x (a (b)", "(" * 40 + ")" * 40])
def test_broken_or_too_deep_comments_are_parse_errors(value: str) -> None:
    from callbridge.sip.headers import parse_products

    with pytest.raises(ParseError):
        parse_products(value)


def test_a_message_with_comments_round_trips_as_received() -> None:
    data = (
        b"OPTIONS sip:pbx@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-c1\r\n"
        b"From: <sip:a@127.0.0.2>;tag=1\r\n"
        b"To: <sip:pbx@127.0.0.1>\r\n"
        b"Call-ID: comments@127.0.0.2\r\n"
        b"CSeq: 1 OPTIONS\r\n"
        b"User-Agent: softphone/2.1 (Linux; (nested, with comma)) \\(x\\)\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    message = parse(data)
    assert parse(message.to_bytes()).to_bytes() == message.to_bytes()
    assert message.headers.get("User-Agent") == (
        "softphone/2.1 (Linux; (nested, with comma)) \\(x\\)"
    )


def test_a_relayed_reason_phrase_goes_out_without_control_characters() -> None:
    response = Response(486, "Busy\x00\x1b[2J Here\udcff")
    assert response.to_bytes().split(b"\r\n")[0] == "SIP/2.0 486 Busy  [2J Here\ufffd".encode()


RECORD_ROUTED = b"Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>\r\n"


@pytest.mark.parametrize("status", [180, 183, 200])
def test_a_response_that_forms_a_dialog_copies_the_record_route(status: int) -> None:
    # RFC 3261 §12.1.1: the caller's later requests pass the proxies that asked.
    inv = request(invite().replace(b"Max-Forwards", RECORD_ROUTED + b"Max-Forwards"))
    response = make_response(inv, status, to_tag="t")
    assert response.headers.get_all("Record-Route") == [
        "<sip:p2.example.com;lr>",
        "<sip:p1.example.com;lr>",
    ]


@pytest.mark.parametrize("status", [100, 486])
def test_a_response_that_forms_no_dialog_leaves_record_route_out(status: int) -> None:
    inv = request(invite().replace(b"Max-Forwards", RECORD_ROUTED + b"Max-Forwards"))
    assert "Record-Route" not in make_response(inv, status, to_tag="t").headers
