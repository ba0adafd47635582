"""The SIP torture tests of RFC 4475 and RFC 5118, replayed against the parser.

Each message is a byte fixture under tests/fixtures/ (see the README there).
A message the RFC calls valid must parse, show the right fields and survive a
round trip; an invalid one must be refused with the status a server answers.
Where the RFC leaves the answer to a later layer (an unknown URI scheme, an
unsupported extension), the parser accepts the message and the table names the
layer that answers it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

import pytest

from callbridge.sip import DEFAULT_LIMITS, ParseError, Request, Response, parse, parse_uri
from callbridge.sip.uri import AbsoluteURI, SipURI

FIXTURES = Path(__file__).parent.parent / "fixtures"


def fixture(rfc: str, name: str) -> bytes:
    return (FIXTURES / rfc / f"{name}.sip").read_bytes()


@dataclass(frozen=True)
class Parses:
    """A message the parser accepts, with the fields every layer relies on."""

    start: str  # request method, or status code of a response
    uri: str | None  # request-URI as written back, None for a response
    call_id: str
    cseq: tuple[int, str]
    from_tag: str | None
    to_tag: str | None
    branches: tuple[str | None, ...]
    body_length: int
    answered_by: str = ""  # who turns it away, when the parser is not the one


@dataclass(frozen=True)
class Rejected:
    """A message the parser refuses: `status` is the answer a server sends."""

    status: int
    reason: str  # a word of the reason phrase


NO_BRANCH_VIAS = (None,) * 33

RFC4475: dict[str, Parses | Rejected] = {
    # 3.1.1 Valid messages
    "wsinv": Parses(
        "INVITE",
        "sip:vivekg@chair-dnrc.example.com;unknownparam",
        "wsinv.ndaksdj@192.0.2.1",
        (9, "INVITE"),
        "98asjd8",
        "1918181833n",
        ("390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"),
        150,
    ),
    "intmeth": Parses(
        "!interesting-Method0123456789_*+`.%indeed'~",
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,"
        "weird!*pas$wo~d_too.(doesn't-it)@example.com",
        "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
        (139122385, "!interesting-Method0123456789_*+`.%indeed'~"),
        "_token~1'+`*%!-.",
        None,
        ("z9hG4bK-.!%66*_+`'~",),
        0,
        answered_by="proxy: 404 or forwards; UAS: 501 with Allow",
    ),
    "esc01": Parses(
        "INVITE",
        "sip:sips%3Auser%40example.com@example.net",
        "esc01.239409asdfakjkn23onasd0-3234",
        (234234, "INVITE"),
        "938",
        None,
        ("z9hG4bKkdjuw",),
        150,
    ),
    "escnull": Parses(
        "REGISTER",
        "sip:example.com",
        "escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd",
        (14398234, "REGISTER"),
        "839923423",
        None,
        ("z9hG4bKkdjuw",),
        0,
    ),
    "esc02": Parses(
        "RE%47IST%45R",
        "sip:registrar.example.com",
        "esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf",
        (29344, "RE%47IST%45R"),
        "f232jadfj23",
        None,
        ("z9hG4bK209%fzsnel234",),
        0,
        answered_by="UAS: 501, the method is not REGISTER",
    ),
    "lwsdisp": Parses(
        "OPTIONS",
        "sip:user@example.com",
        "lwsdisp.1234abcd@funky.example.com",
        (60, "OPTIONS"),
        "323",
        None,
        ("z9hG4bKkdjuw",),
        0,
    ),
    "longreq": Parses(
        "INVITE",
        "sip:user@example.com",
        "longreq.one" + "really" * 20 + "longcallid",
        (3882340, "INVITE"),
        "12" + "982" * 50 + "424",
        None,
        (*NO_BRANCH_VIAS, "very" + "long" * 50 + "branchvalue"),
        150,
    ),
    "dblreq": Parses(
        "REGISTER",
        "sip:example.com",
        "dblreq.0ha0isndaksdj99sdfafnl3lk233412",
        (8, "REGISTER"),
        "43251j3j324",
        None,
        ("z9hG4bKkdjuw23492",),
        0,
    ),
    "semiuri": Parses(
        "OPTIONS",
        "sip:user;par=u%40example.net@example.com",
        "semiuri.0ha0isndaksdj",
        (8, "OPTIONS"),
        "33242",
        None,
        ("z9hG4bKkdjuw",),
        0,
    ),
    "transports": Parses(
        "OPTIONS",
        "sip:user@example.com",
        "transports.kijh4akdnaqjkwendsasfdj",
        (60, "OPTIONS"),
        "323",
        None,
        (
            "z9hG4bKkdjuw",
            "z9hG4bKklasjdhf",
            "z9hG4bK2980unddj",
            "z9hG4bKasd0f3en",
            "z9hG4bK0a9idfnee",
        ),
        0,
    ),
    "mpart01": Parses(
        "MESSAGE",
        "sip:kumiko@example.org",
        "3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..",
        (1, "MESSAGE"),
        "2fb0dcc9",
        None,
        ("z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-",),
        553,
    ),
    "unreason": Parses(
        "200",
        None,
        "unreason.1234ksdfak3j2erwedfsASdf",
        (35, "INVITE"),
        "11141343",
        "2229",
        ("z9hG4bK1324923",),
        154,
    ),
    "noreason": Parses(
        "100",
        None,
        "noreason.asndj203insdf99223ndf",
        (35, "INVITE"),
        "39ansfi3",
        "902jndnke3",
        ("z9hG4bK2398ndaoe",),
        0,
    ),
    # 3.1.2 Invalid messages
    "badinv01": Rejected(400, "parameter"),
    "clerr": Rejected(400, "Content-Length"),
    "ncl": Rejected(400, "Content-Length"),
    "scalar02": Rejected(400, "CSeq"),
    # A response is never answered; the status only says why it was dropped.
    "scalarlg": Rejected(400, "CSeq"),
    "quotbal": Rejected(400, "quoted"),
    "ltgtruri": Rejected(400, "URI"),
    "lwsruri": Rejected(400, "request line"),
    "lwsstart": Rejected(400, "request line"),
    "trws": Rejected(400, "request line"),
    # §3.1.2.11 lets an element either refuse or drop the headers; refusing
    # keeps them from ever being forwarded.
    "escruri": Rejected(400, "headers"),
    "baddate": Parses(
        "INVITE",
        "sip:user@example.com",
        "baddate.239423mnsadf3j23lj42--sedfnm234",
        (1392934, "INVITE"),
        "2234923",
        None,
        ("z9hG4bKkdjuw",),
        150,
        answered_by="Date is kept as text; whoever reads it may answer 400",
    ),
    "regbadct": Rejected(400, "<>"),
    # §3.1.2.14 allows refusing or ignoring the spaces; the parser ignores them.
    "badaspec": Parses(
        "OPTIONS",
        "sip:user@example.org",
        "badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3",
        (3923239, "OPTIONS"),
        "433423",
        None,
        ("z9hG4bKkdju43234",),
        0,
    ),
    "baddn": Rejected(400, "display name"),
    "badvers": Rejected(505, "Version"),
    "mismatch01": Rejected(400, "CSeq"),
    "mismatch02": Rejected(400, "CSeq"),
    "bigcode": Rejected(400, "status code"),
    # 3.2 Transaction layer semantics
    "badbranch": Parses(
        "OPTIONS",
        "sip:user@example.com",
        "badbranch.sadonfo23i420jv0as0derf3j3n",
        (8, "OPTIONS"),
        "33242",
        None,
        ("z9hG4bK",),
        0,
        answered_by="transaction layer: 400, or RFC 2543 matching",
    ),
    # 3.3 Application layer semantics
    "insuf": Rejected(400, "Missing"),
    "unkscm": Parses(
        "OPTIONS",
        "nobodyknowsthisscheme:totallyopaquecontent",
        "unkscm.nasdfasser0q239nwsdfasdkl34",
        (3923423, "OPTIONS"),
        "384",
        None,
        ("z9hG4bKkdjuw39234",),
        0,
        answered_by="application: 416 Unsupported URI Scheme",
    ),
    "novelsc": Parses(
        "OPTIONS",
        "soap.beep://192.0.2.103:3002",
        "novelsc.asdfasser0q239nwsdfasdkl34",
        (3923423, "OPTIONS"),
        "384",
        None,
        ("z9hG4bKkdjuw39234",),
        0,
        answered_by="application: 416 Unsupported URI Scheme",
    ),
    "unksm2": Parses(
        "REGISTER",
        "sip:example.com",
        "unksm2.daksdj@hyphenated-host.example.com",
        (234902, "REGISTER"),
        "3234233",
        None,
        ("z9hG4bKkdjuw",),
        0,
        answered_by="registrar: 416 Unsupported URI Scheme",
    ),
    "bext01": Parses(
        "OPTIONS",
        "sip:user@example.com",
        "bext01.0ha0isndaksdj",
        (8, "OPTIONS"),
        "242etr",
        None,
        ("z9hG4bKkdjuw",),
        0,
        answered_by="proxy/UAS: 420 Bad Extension with Unsupported",
    ),
    "invut": Parses(
        "INVITE",
        "sip:user@example.com",
        "invut.0ha0isndaksdjadsfij34n23d",
        (235448, "INVITE"),
        "8392034",
        None,
        ("z9hG4bKkdjuw",),
        40,
        answered_by="UAS: 415 Unsupported Media Type with Accept",
    ),
    "regaut01": Parses(
        "REGISTER",
        "sip:example.com",
        "regaut01.0ha0isndaksdj",
        (9338, "REGISTER"),
        "87321hj23128",
        None,
        ("z9hG4bKkdjuw",),
        0,
        answered_by="registrar: 401 with a Digest challenge",
    ),
    "multi01": Rejected(400, "Duplicate"),
    "mcl01": Rejected(400, "Content-Length"),
    "bcast": Parses(
        "200",
        None,
        "bcast.0384840201234ksdfak3j2erwedfsASdf",
        (35, "INVITE"),
        "11141343",
        "2229",
        ("z9hG4bK1324923", "z9hG4bK1saber23"),
        154,
        answered_by="transaction layer: matched or dropped, never sent to the broadcast Via",
    ),
    "zeromf": Parses(
        "OPTIONS",
        "sip:user@example.com",
        "zeromf.jfasdlfnm2o2l43r5u0asdfas",
        (39234321, "OPTIONS"),
        "3ghsd41",
        None,
        ("z9hG4bKkdjuw2349i",),
        0,
        answered_by="proxy: 483 Too Many Hops; UAS: answers normally",
    ),
    "cparam01": Parses(
        "REGISTER",
        "sip:example.com",
        "cparam01.70710@saturn.example.com",
        (2, "REGISTER"),
        "DkfVgjkrtMwaerKKpe",
        None,
        ("z9hG4bKkdjuw",),
        0,
    ),
    "cparam02": Parses(
        "REGISTER",
        "sip:example.com",
        "cparam02.70710@saturn.example.com",
        (3, "REGISTER"),
        "838293",
        None,
        ("z9hG4bKkdjuw",),
        0,
    ),
    "regescrt": Parses(
        "REGISTER",
        "sip:example.com",
        "regescrt.k345asrl3fdbv@192.0.2.1",
        (14398234, "REGISTER"),
        "8",
        None,
        ("z9hG4bKkdjuw",),
        0,
    ),
    "sdp01": Parses(
        "INVITE",
        "sip:user@example.com",
        "sdp01.ndaksdj9342dasdd",
        (8, "INVITE"),
        "234",
        None,
        ("z9hG4bKkdjuw",),
        150,
        answered_by="UAS: 406 Not Acceptable",
    ),
    # 3.4 Backward compatibility
    "inv2543": Parses(
        "INVITE",
        "sip:UserB@example.com",
        "inv2543.1717@ift.client.example.com",
        (56, "INVITE"),
        None,
        None,
        (None,),
        105,
    ),
}

# RFC 5118 prints Content-Length 268, 181 and 236 for bodies of 251, 189 and
# 245 octets (see ipv6_sdp_bodies below); the table holds what the parser makes
# of the bytes as printed.
RFC5118: dict[str, Parses | Rejected] = {
    "ipv6-good": Parses(
        "REGISTER",
        "sip:[2001:db8::10]",
        "SSG9559905523997077@hlau_4100",
        (98176, "REGISTER"),
        "81x2",
        None,
        ("z9hG4bKas3-111",),
        0,
    ),
    "ipv6-bad": Rejected(400, "host"),
    "port-ambiguous": Parses(
        "REGISTER",
        "sip:[2001:db8::10:5070]",
        "SSG9559905523997077@hlau_4100",
        (98176, "REGISTER"),
        "81x2",
        None,
        ("z9hG4bKas3-111",),
        0,
    ),
    "port-unambiguous": Parses(
        "REGISTER",
        "sip:[2001:db8::10]:5070",
        "SSG9559905523997077@hlau_4100",
        (98176, "REGISTER"),
        "81x2",
        None,
        ("z9hG4bKas3-111",),
        0,
    ),
    "via-received-param-with-delim": Parses(
        "BYE",
        "sip:[2001:db8::10]",
        "SSG9559905523997077@hlau_4100",
        (321, "BYE"),
        "81x2",
        "bd76ya",
        ("z9hG4bKas3-111",),
        0,
    ),
    "via-received-param-no-delim": Parses(
        "OPTIONS",
        "sip:[2001:db8::10]",
        "SSG95523997077@hlau_4100",
        (921, "OPTIONS"),
        "81x2",
        None,
        ("z9hG4bKas3",),
        0,
    ),
    "ipv6-in-sdp": Rejected(400, "Content-Length"),
    "mult-ip-in-header": Parses(
        "BYE",
        "sip:user@host.example.net",
        "997077@lau_4100",
        (89187, "BYE"),
        "81x2",
        "9817--94",
        ("z9hG4bKas3-111", "z9hG4bKjhja8781hjuaij65144", "z9hG4bK451jj"),
        0,
    ),
    "mult-ip-in-sdp": Parses(
        "INVITE",
        "sip:user@[2001:db8::10]",
        "SSG9559905523997077@hlau_4100",
        (8912, "INVITE"),
        "81x2",
        None,
        ("z9hG4bKas3-111",),
        181,
    ),
    "ipv4-mapped-ipv6": Parses(
        "INVITE",
        "sip:user@example.com",
        "SSG9559905523997077@hlau_4100",
        (612, "INVITE"),
        "81x2",
        None,
        ("z9hG4bKbh19", "z9hG4bKas3-111"),
        236,
    ),
    # §4.10: RFC 3261's ABNF admits the third colon; a robust parser takes it.
    "ipv6-bug-abnf-3-colons": Parses(
        "OPTIONS",
        "sip:user@[2001:db8:::192.0.2.1]",
        "G9559905523997077@hlau_4100",
        (689, "OPTIONS"),
        "810x2",
        None,
        ("z9hG4bKas3-111",),
        0,
    ),
    "ipv6-correct-abnf-2-colons": Parses(
        "OPTIONS",
        "sip:user@[2001:db8::192.0.2.1]",
        "G9559905523997077@hlau_4100",
        (689, "OPTIONS"),
        "810x2",
        None,
        ("z9hG4bKas3-111",),
        0,
    ),
}

CASES = [("rfc4475", name, expected) for name, expected in RFC4475.items()] + [
    ("rfc5118", name, expected) for name, expected in RFC5118.items()
]
VALID = [(rfc, name, e) for rfc, name, e in CASES if isinstance(e, Parses)]
INVALID = [(rfc, name, e) for rfc, name, e in CASES if isinstance(e, Rejected)]


def test_every_fixture_has_an_expectation() -> None:
    on_disk = {(path.parent.name, path.stem) for path in FIXTURES.glob("rfc*/*.sip")}
    assert on_disk == {(rfc, name) for rfc, name, _ in CASES}
    assert len(RFC4475) == 49
    assert len(RFC5118) == 12


@pytest.mark.parametrize(("rfc", "name"), [(rfc, name) for rfc, name, _ in CASES])
def test_fixture_head_uses_crlf_line_ends(rfc: str, name: str) -> None:
    data = fixture(rfc, name)
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"\n" not in head.replace(b"\r\n", b"")
    assert len(data) < DEFAULT_LIMITS.max_message_size


@pytest.mark.parametrize(("rfc", "name", "expected"), VALID, ids=[n for _, n, _ in VALID])
def test_valid_message_parses_with_its_key_fields(rfc: str, name: str, expected: Parses) -> None:
    message = parse(fixture(rfc, name))
    if expected.uri is None:
        assert isinstance(message, Response)
        assert str(message.status) == expected.start
    else:
        assert isinstance(message, Request)
        assert message.method == expected.start
        assert str(message.uri) == expected.uri
    assert message.call_id == expected.call_id
    assert (message.cseq.seq, message.cseq.method) == expected.cseq
    assert message.from_.tag == expected.from_tag
    assert message.to.tag == expected.to_tag
    assert tuple(via.branch for via in message.vias) == expected.branches
    assert len(message.body) == expected.body_length


@pytest.mark.parametrize(("rfc", "name", "expected"), VALID, ids=[n for _, n, _ in VALID])
def test_valid_message_round_trips_stably(rfc: str, name: str, expected: Parses) -> None:
    once = parse(fixture(rfc, name)).to_bytes()
    again = parse(once)
    assert again.to_bytes() == once
    assert again.call_id == expected.call_id
    assert tuple(via.branch for via in again.vias) == expected.branches
    assert len(again.body) == expected.body_length


@pytest.mark.parametrize(("rfc", "name", "expected"), INVALID, ids=[n for _, n, _ in INVALID])
def test_invalid_message_is_refused_with_its_status(
    rfc: str, name: str, expected: Rejected
) -> None:
    with pytest.raises(ParseError) as caught:
        parse(fixture(rfc, name))
    assert caught.value.status == expected.status
    assert expected.reason.lower() in caught.value.reason.lower()


# RFC 4475 §3.1.1: details of the valid messages.


def test_wsinv_reads_through_folding_and_whitespace() -> None:
    message = parse(fixture("rfc4475", "wsinv"))
    assert message.headers.get("Max-Forwards") == "0068"
    assert message.headers.get("Subject") == ""
    assert message.headers.get("NewFangledHeader") == (
        "newfangled value continued newfangled value"
    )
    assert message.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert message.from_.display_name == 'J Rosenberg \\"'
    assert [(via.transport, via.host) for via in message.vias] == [
        ("UDP", "192.0.2.2"),
        ("TCP", "spindle.example.com"),
        ("UDP", "192.168.255.111"),
    ]
    (contact,) = message.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params.get("newparam") == "newvalue"
    assert "secondparam" in contact.params
    assert contact.params.get("q") == "0.33"


def test_intmeth_keeps_control_characters_and_utf8() -> None:
    message = parse(fixture("rfc4475", "intmeth"))
    assert message.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert message.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert message.from_.params.get("fromParam''~+*_!.-%") == "работающий"
    assert message.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    assert isinstance(message.uri, SipURI)
    assert message.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert message.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"


def test_esc01_unescapes_users_and_matches_escaped_params() -> None:
    message = parse(fixture("rfc4475", "esc01"))
    assert isinstance(message.uri, SipURI)
    assert message.uri.user_unescaped == "sips:user@example.com"
    assert isinstance(message.from_.uri, SipURI)
    assert message.from_.uri.user_unescaped == "I have spaces"
    assert message.to.uri == parse_sip("sip:user@example.com")
    (contact,) = message.contacts
    assert contact.uri == parse_sip("sip:caller@host5.example.net;lr;name=value%25%34%31")


def test_escnull_keeps_escaped_nulls_in_users() -> None:
    message = parse(fixture("rfc4475", "escnull"))
    assert isinstance(message.to.uri, SipURI)
    assert message.to.uri.user_unescaped == "null-\x00-null"
    users = [c.uri.user_unescaped for c in message.contacts if isinstance(c.uri, SipURI)]
    assert users == ["\x00", "\x00\x00"]


def test_esc02_percent_is_no_escape_in_method_or_header_names() -> None:
    message = parse(fixture("rfc4475", "esc02"))
    assert message.to.display_name == "%Z%45"
    assert len(message.contacts) == 2
    assert message.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp_takes_a_display_name_without_space() -> None:
    assert parse(fixture("rfc4475", "lwsdisp")).from_.display_name == "caller"


def test_longreq_keeps_every_long_value() -> None:
    message = parse(fixture("rfc4475", "longreq"))
    assert message.to.display_name == f"I have a user name of {'extreme' * 10} proportion"
    assert isinstance(message.to.uri, SipURI)
    assert message.to.uri.port == 6000
    assert len(message.vias) == 34
    assert message.vias[-1].received == "192.0.2.5"


def test_dblreq_reads_only_the_first_request_of_the_datagram() -> None:
    message = parse(fixture("rfc4475", "dblreq"))
    assert isinstance(message, Request)
    assert message.body == b""
    assert b"INVITE" not in message.to_bytes()


def test_semiuri_user_part_holds_semicolons() -> None:
    message = parse(fixture("rfc4475", "semiuri"))
    assert isinstance(message.uri, SipURI)
    assert message.uri.user_unescaped == "user;par=u@example.net"
    assert message.uri.host == "example.com"
    assert len(message.headers.get_all("Accept")) == 6


def test_transports_keeps_unknown_transport() -> None:
    message = parse(fixture("rfc4475", "transports"))
    assert [via.transport for via in message.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_mpart01_body_is_binary_and_exact() -> None:
    data = fixture("rfc4475", "mpart01")
    message = parse(data)
    assert message.body == data[-553:]
    assert b"\x00" in message.body
    assert message.to_bytes().endswith(data[-553:])


def test_unreason_and_noreason_keep_the_reason_phrase() -> None:
    unusual = parse(fixture("rfc4475", "unreason"))
    assert isinstance(unusual, Response)
    assert unusual.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    empty = parse(fixture("rfc4475", "noreason"))
    assert isinstance(empty, Response)
    assert empty.reason == ""


# RFC 4475 §3.1.2, §3.3, §3.4: what the parser hands on.


def test_clerr_is_refused_whether_it_came_by_datagram_or_stream() -> None:
    # Over a stream the framer would keep waiting for 9999 octets; handed the
    # whole message the parser still cannot take a body that is not there.
    with pytest.raises(ParseError) as caught:
        parse(fixture("rfc4475", "clerr"), stream=True)
    assert caught.value.status == 400


def test_badaspec_ignores_spaces_inside_angle_brackets() -> None:
    message = parse(fixture("rfc4475", "badaspec"))
    assert message.to.display_name == "Watson, Thomas"
    assert message.to.uri == parse_sip("sip:t.watson@example.org")


def test_unknown_schemes_reach_the_application_as_absolute_uris() -> None:
    unkscm = parse(fixture("rfc4475", "unkscm"))
    assert isinstance(unkscm, Request)
    assert isinstance(unkscm.uri, AbsoluteURI)
    unksm2 = parse(fixture("rfc4475", "unksm2"))
    assert [unksm2.to.uri.scheme, unksm2.from_.uri.scheme] == ["isbn", "http"]
    assert [c.uri.scheme for c in unksm2.contacts] == ["name"]


def test_cparam01_param_of_an_addr_spec_belongs_to_the_header() -> None:
    (contact,) = parse(fixture("rfc4475", "cparam01")).contacts
    assert "unknownparam" in contact.params
    assert isinstance(contact.uri, SipURI)
    assert "unknownparam" not in contact.uri.params


def test_cparam02_param_inside_brackets_belongs_to_the_uri() -> None:
    (contact,) = parse(fixture("rfc4475", "cparam02")).contacts
    assert "unknownparam" not in contact.params
    assert isinstance(contact.uri, SipURI)
    assert "unknownparam" in contact.uri.params


def test_regescrt_contact_keeps_its_escaped_route_header() -> None:
    (contact,) = parse(fixture("rfc4475", "regescrt")).contacts
    assert isinstance(contact.uri, SipURI)
    assert contact.uri.headers == "Route=%3Csip:sip.example.com%3E"


def test_zeromf_parses_max_forwards_zero() -> None:
    assert parse(fixture("rfc4475", "zeromf")).headers.get("Max-Forwards") == "0"


def test_inv2543_without_content_length_is_refused_on_a_stream() -> None:
    data = fixture("rfc4475", "inv2543")
    assert parse(data).headers.get("Max-Forwards") is None
    with pytest.raises(ParseError) as caught:
        parse(data, stream=True)
    assert caught.value.status == 400


def test_long_request_needs_no_larger_limits() -> None:
    data = fixture("rfc4475", "longreq")
    assert len(data) < DEFAULT_LIMITS.max_message_size
    assert max(len(line) for line in data.split(b"\r\n")) < DEFAULT_LIMITS.max_header_length


# RFC 5118: IPv6.


def test_ipv6_references_keep_brackets_and_ports() -> None:
    message = parse(fixture("rfc5118", "ipv6-good"))
    assert isinstance(message.uri, SipURI)
    assert (message.uri.host, message.uri.port) == ("[2001:db8::10]", None)
    assert message.top_via.host == "[2001:db8::9:1]"
    assert [c.uri.host for c in message.contacts if isinstance(c.uri, SipURI)] == ["[2001:db8::1]"]


def test_port_inside_brackets_is_part_of_the_address() -> None:
    ambiguous = parse(fixture("rfc5118", "port-ambiguous"))
    assert isinstance(ambiguous.uri, SipURI)
    assert (ambiguous.uri.host, ambiguous.uri.port) == ("[2001:db8::10:5070]", None)
    clear = parse(fixture("rfc5118", "port-unambiguous"))
    assert isinstance(clear.uri, SipURI)
    assert (clear.uri.host, clear.uri.port) == ("[2001:db8::10]", 5070)


def test_received_takes_an_ipv6_address_with_or_without_brackets() -> None:
    with_delim = parse(fixture("rfc5118", "via-received-param-with-delim"))
    assert with_delim.top_via.received == "[2001:db8::9:255]"
    bare = parse(fixture("rfc5118", "via-received-param-no-delim"))
    assert bare.top_via.received == "2001:db8::9:255"
    assert ipaddress.IPv6Address(bare.top_via.received)


def test_via_list_mixes_ipv4_and_ipv6() -> None:
    vias = parse(fixture("rfc5118", "mult-ip-in-header")).vias
    assert [(v.transport, v.host, v.port) for v in vias] == [
        ("UDP", "[2001:db8::9:1]", 6050),
        ("UDP", "192.0.2.1", None),
        ("TCP", "[2001:db8::9:255]", None),
    ]
    assert vias[2].received == "192.0.2.200"


def test_ipv4_mapped_ipv6_addresses_parse() -> None:
    message = parse(fixture("rfc5118", "ipv4-mapped-ipv6"))
    assert [(v.host, v.port) for v in message.vias] == [
        ("[::ffff:192.0.2.10]", 19823),
        ("[::ffff:192.0.2.2]", None),
    ]
    assert [c.uri.host for c in message.contacts if isinstance(c.uri, SipURI)] == [
        "[::ffff:192.0.2.2]"
    ]


@pytest.mark.parametrize(
    ("name", "printed", "actual"),
    [("ipv6-in-sdp", 268, 251), ("mult-ip-in-sdp", 181, 189), ("ipv4-mapped-ipv6", 236, 245)],
)
def test_ipv6_sdp_bodies_parse_once_content_length_is_corrected(
    name: str, printed: int, actual: int
) -> None:
    # RFC 5118's Content-Length values disagree with its own bodies. As
    # printed, a datagram must be refused (too long) or cut (too short), RFC
    # 3261 §18.3; with the length corrected the whole SDP comes through.
    data = fixture("rfc5118", name)
    head, body = data.split(b"\r\n\r\n", 1)
    assert len(body) == actual
    corrected = head.replace(b"Content-Length: %d" % printed, b"Content-Length: %d" % actual)
    message = parse(corrected + b"\r\n\r\n" + body)
    assert message.body == body
    assert b"IN IP6" in message.body


def parse_sip(text: str) -> SipURI:
    uri = parse_uri(text)
    assert isinstance(uri, SipURI)
    return uri
