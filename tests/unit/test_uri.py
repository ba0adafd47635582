"""URIs and addresses: sip/sips/tel/other schemes, parameters, headers,
escapes, IPv6 references, ports, and RFC 3261 §19.1.4 equality."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callbridge.sip import Headers, ParseError, Request, parse
from callbridge.sip.grammar import Params
from callbridge.sip.headers import reason_value
from callbridge.sip.uri import (
    AbsoluteURI,
    NameAddr,
    SipURI,
    TelURI,
    display_text,
    format_hostport,
    name_addr,
    parse_host,
    parse_hostport,
    parse_name_addr,
    parse_name_addr_list,
    parse_uri,
    sip_uri,
)


def sip(text: str) -> SipURI:
    uri = parse_uri(text)
    assert isinstance(uri, SipURI)
    return uri


# Schemes


def test_sip_uri_splits_into_its_parts() -> None:
    uri = sip("sip:alice:secretword@atlanta.com:5061;transport=TCP;lr?subject=x&priority=urgent")
    assert (uri.scheme, uri.user, uri.password) == ("sip", "alice", "secretword")
    assert (uri.host, uri.port) == ("atlanta.com", 5061)
    assert uri.transport == "tcp"
    assert "lr" in uri.params
    assert uri.params.get("lr") is None
    assert uri.headers == "subject=x&priority=urgent"


def test_sips_and_scheme_case_are_normalized() -> None:
    assert sip("SIPS:bob@biloxi.com").scheme == "sips"
    assert str(sip("SIP:bob@biloxi.com")) == "sip:bob@biloxi.com"


def test_uri_without_user_is_a_host_only_uri() -> None:
    uri = sip("sip:biloxi.com;maddr=239.255.255.1;ttl=15")
    assert uri.user is None
    assert uri.params.get("maddr") == "239.255.255.1"


def test_telephone_subscriber_in_user_part() -> None:
    uri = sip("sip:+1-212-555-1212:1234@gateway.com;user=phone")
    assert (uri.user, uri.password) == ("+1-212-555-1212", "1234")
    assert uri.params.get("user") == "phone"


def test_tel_uri_keeps_number_and_params() -> None:
    uri = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert isinstance(uri, TelURI)
    assert uri.number == "+1-201-555-0123"
    assert uri.params.get("phone-context") == "example.com"
    assert uri == parse_uri("tel:+1.201.555.0123")


def test_other_schemes_stay_opaque() -> None:
    uri = parse_uri("urn:service:sos")
    assert uri == AbsoluteURI("urn", "service:sos")
    assert str(parse_uri("mailto:alice@atlanta.com")) == "mailto:alice@atlanta.com"


@pytest.mark.parametrize(
    "text",
    [
        "sip:",
        "atlanta.com",
        ":alice@atlanta.com",
        "1sip:alice@atlanta.com",
        "sip:alice@atlanta.com bob",
        "sip:alice@<atlanta.com>",
        'sip:"alice"@atlanta.com',
        "sip:alice\x00@atlanta.com",
        "sip:@atlanta.com",
        "sip:al%zzice@atlanta.com",
        "sip:alice@atl_anta.com",
        "sip:alice@-atlanta.com",
        "sip:alice@atlanta.123",
        "sip:alice@999.0.0.1",
        "tel:",
    ],
)
def test_malformed_uri_is_refused_with_400(text: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_uri(text)
    assert caught.value.status == 400


# Escapes


def test_user_keeps_escapes_and_unescapes_on_request() -> None:
    uri = sip("sip:I%20have%20spaces@example.net")
    assert uri.user == "I%20have%20spaces"
    assert uri.user_unescaped == "I have spaces"
    assert str(uri) == "sip:I%20have%20spaces@example.net"


def test_user_part_may_hold_semicolons_and_question_marks() -> None:
    uri = sip("sip:user;par=u%40example.net@example.com")
    assert uri.user == "user;par=u%40example.net"
    assert uri.host == "example.com"
    odd = sip("sip:a?b;c=d@example.com;lr")
    assert (odd.user, odd.host) == ("a?b;c=d", "example.com")
    assert "lr" in odd.params


def test_user_part_ending_in_semicolon_before_an_ipv6_host() -> None:
    # Found by fuzzing: the fast path once read this as host "A" with a
    # parameter "@[::]".
    uri = sip("sip:A;@[::]")
    assert (uri.user, uri.host) == ("A;", "[::]")


def test_headers_part_is_kept_as_received() -> None:
    uri = sip("sip:user@example.com?Route=%3Csip:example.com%3E")
    assert uri.headers == "Route=%3Csip:example.com%3E"
    assert str(uri) == "sip:user@example.com?Route=%3Csip:example.com%3E"


# Hosts and ports


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("atlanta.com", "atlanta.com", None),
        ("atlanta.com.", "atlanta.com.", None),
        ("host-1.example.com:0", "host-1.example.com", 0),
        ("192.0.2.4:65535", "192.0.2.4", 65535),
        ("[2001:db8::10]", "[2001:db8::10]", None),
        ("[2001:db8::10]:5070", "[2001:db8::10]", 5070),
        ("[2001:db8::10:5070]", "[2001:db8::10:5070]", None),
        ("[::ffff:192.0.2.2]:19823", "[::ffff:192.0.2.2]", 19823),
        ("[2001:db8:::192.0.2.1]", "[2001:db8:::192.0.2.1]", None),
    ],
)
def test_hostport_reads_names_ipv4_and_ipv6_references(
    text: str, host: str, port: int | None
) -> None:
    assert parse_hostport(text) == (host, port)


@pytest.mark.parametrize(
    "text",
    [
        "atlanta.com:65536",
        "atlanta.com:",
        "atlanta.com:5o60",
        "atlanta.com:\u0665\u0660",
        "atlanta.com:0000005060",
        "2001:db8::10",
        "[2001:db8::10",
        "[2001:db8::10]5060",
        "[2001:db8::zz]",
        "[2001:db8::::1]",
        "[]",
        "256.1.1.1",
    ],
)
def test_bad_hostport_is_refused(text: str) -> None:
    with pytest.raises(ParseError):
        parse_hostport(text)


def test_bare_ipv6_address_is_not_a_host() -> None:
    with pytest.raises(ParseError):
        parse_uri("sip:2001:db8::10")
    with pytest.raises(ParseError):
        parse_host("::1")


def test_ipv6_uri_with_user_params_and_port() -> None:
    uri = sip("sip:caller@[2001:db8::1]:5070;transport=udp;maddr=[2001:db8::2]")
    assert (uri.user, uri.host, uri.port) == ("caller", "[2001:db8::1]", 5070)
    assert uri.params.get("maddr") == "[2001:db8::2]"
    assert str(uri) == "sip:caller@[2001:db8::1]:5070;transport=udp;maddr=[2001:db8::2]"


# Parameters


def test_params_are_case_insensitive_and_keep_their_order() -> None:
    uri = sip("sip:a@b.com;Transport=UDP;LR;ttl=15")
    assert uri.params.get("transport") == "UDP"
    assert uri.transport == "udp"
    assert "lr" in uri.params
    assert [name for name, _ in uri.params.items()] == ["Transport", "LR", "ttl"]


@pytest.mark.parametrize(
    "text", ["sip:a@b.com;", "sip:a@b.com;;lr", "sip:a@b.com;=x", "sip:[::1];", "tel:+1;"]
)
def test_empty_param_names_are_refused(text: str) -> None:
    with pytest.raises(ParseError):
        parse_uri(text)


def test_params_set_and_remove_write_back() -> None:
    uri = sip("sip:a@b.com;lr")
    uri.params.set("received", "2001:db8::9:255")
    uri.params.set("note", "two words")
    uri.params.remove("lr")
    assert str(uri) == 'sip:a@b.com;received=2001:db8::9:255;note="two words"'
    assert uri.params.get("note") == "two words"


# Equality: RFC 3261 §19.1.4, its own examples.


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
        ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
        (
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
        ),
        (
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
        ),
        ("sip:caller@host5.example.net;%6C%72", "sip:caller@host5.example.net;lr"),
    ],
)
def test_equivalent_uris_compare_equal_and_hash_alike(left: str, right: str) -> None:
    assert sip(left) == sip(right)
    assert hash(sip(left)) == hash(sip(right))


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
        ("sip:bob@biloxi.com", "sips:bob@biloxi.com"),
        ("sip:a%3Bb@biloxi.com", "sip:a;b@biloxi.com"),
    ],
)
def test_different_uris_compare_unequal(left: str, right: str) -> None:
    assert sip(left) != sip(right)


def test_uri_kinds_do_not_compare_equal() -> None:
    assert parse_uri("sip:alice@atlanta.com") != parse_uri("tel:+12125551212")
    assert parse_uri("tel:+12125551212") != AbsoluteURI("tel", "+12125551212")


def test_copy_is_independent() -> None:
    uri = sip("sip:alice@atlanta.com;lr")
    twin = uri.copy()
    twin.params.set("transport", "tcp")
    assert "transport" not in uri.params


# Name-addr and addr-spec


def test_quoted_display_name_unescapes_quoted_pairs() -> None:
    address = parse_name_addr('"J Rosenberg \\\\\\"" <sip:jdrosen@example.com>;tag=98asjd8')
    assert address.display_name == 'J Rosenberg \\"'
    assert address.tag == "98asjd8"
    assert str(address) == '"J Rosenberg \\\\\\"" <sip:jdrosen@example.com>;tag=98asjd8'


def test_token_display_name_with_and_without_space() -> None:
    assert parse_name_addr("Bob  Smith <sip:bob@biloxi.com>").display_name == "Bob Smith"
    assert parse_name_addr("caller<sip:caller@example.com>").display_name == "caller"
    assert parse_name_addr("<sip:caller@example.com>").display_name is None


def test_addr_spec_params_belong_to_the_header() -> None:
    address = parse_name_addr("sip:+19725552222@gw1.example.net;unknownparam;tag=7")
    assert address.tag == "7"
    assert isinstance(address.uri, SipURI)
    assert len(address.uri.params) == 0


def test_name_addr_params_tolerate_whitespace() -> None:
    address = parse_name_addr('"Q" <sip:a@b.com> ; newparam = newvalue ;  second ; q = 0.33')
    assert address.params.get("newparam") == "newvalue"
    assert address.params.get("q") == "0.33"
    assert "second" in address.params


def test_wildcard_contact_only_where_allowed() -> None:
    assert parse_name_addr("*", allow_wildcard=True).wildcard
    with pytest.raises(ParseError):
        parse_name_addr("*")


@pytest.mark.parametrize(
    "text",
    [
        "",
        '"Mr. J. User <sip:j.user@example.com>',
        "Watson, Thomas <sip:t.watson@example.org>",
        "<sip:a@b.com",
        "<sip:a@b.com> junk",
        '"quoted" sip:a@b.com',
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
        "sip:a@b.com, sip:c@d.com",
        "<sip:a@b.com>;;",
    ],
)
def test_malformed_address_is_refused(text: str) -> None:
    with pytest.raises(ParseError):
        parse_name_addr(text)


def test_address_list_splits_outside_quotes_and_brackets() -> None:
    addresses = parse_name_addr_list(
        '"Watson, Thomas" <sip:t@example.org;a=b,c>, <sip:x@y.com>;q=0.5 , sip:z@w.com'
    )
    assert [str(a.uri) for a in addresses] == [
        "sip:t@example.org;a=b,c",
        "sip:x@y.com",
        "sip:z@w.com",
    ]
    assert addresses[0].display_name == "Watson, Thomas"
    assert addresses[1].params.get("q") == "0.5"


def test_name_addr_writes_back_with_quotes() -> None:
    address = NameAddr(sip("sip:alice@atlanta.com"), 'Alice "Al"')
    address.params.set("tag", "1928301774")
    assert str(address) == '"Alice \\"Al\\"" <sip:alice@atlanta.com>;tag=1928301774'
    assert parse_name_addr(str(address)).display_name == 'Alice "Al"'


# --- building addresses: the serializer, whatever the values hold -----------------

_HOSTPORTS = st.sampled_from(["127.0.0.1", "127.0.0.1:5060", "[::1]:5070", "pbx.example.com"])
# Any text but lone surrogates (bytes that were not UTF-8 go back as
# themselves and read back as U+FFFD: a user part is text, not bytes).
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
_HOSTILE = st.sampled_from(
    ["\r\nX-Injected: yes", "%0d%0a", 'a" <sip:boss@x>;tag=1', '<>;,@\\"', "\x00\x1b[31m", ""]
)


@given(
    user=st.one_of(_TEXT.filter(bool), _HOSTILE.filter(bool)),
    display=st.one_of(st.none(), _TEXT, _HOSTILE),
    hostport=_HOSTPORTS,
    tag=st.one_of(st.none(), st.text(string.ascii_letters + string.digits, min_size=1)),
)
@settings(max_examples=400, deadline=None)
def test_name_addr_reads_back_as_built_and_never_breaks_a_line(
    user: str, display: str | None, hostport: str, tag: str | None
) -> None:
    value = name_addr(user, hostport, display_name=display, tag=tag)
    assert not set(value) & {"\r", "\n", "\x00"}, value
    parsed = parse_name_addr(value)
    assert isinstance(parsed.uri, SipURI)
    assert parsed.uri.user_unescaped == user
    assert parsed.display_name == (None if display is None else display_text(display))
    assert parsed.tag == tag
    assert format_hostport(parsed.uri.host, parsed.uri.port) == hostport
    # In a message, the value stays one header line: nothing injected.
    request = Request(
        "INVITE",
        sip_uri("102", "127.0.0.1"),
        Headers.of(
            ("Via", "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1"),
            ("From", value),
            ("To", name_addr(user, hostport, display_name=display)),
            ("Call-ID", "c1"),
            ("CSeq", "1 INVITE"),
        ),
    )
    again = parse(request.to_bytes())
    assert [name for name, _ in again.headers] == [
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Content-Length",
    ]
    assert str(again.from_) == value


@given(text=st.one_of(_TEXT, _HOSTILE))
def test_a_display_name_keeps_no_control_character(text: str) -> None:
    shown = display_text(text)
    assert len(shown) == len(text)
    assert not any((ord(c) < 0x20 and c != "\t") or c == "\x7f" for c in shown)


@given(cause=st.integers(100, 699), text=st.one_of(_TEXT, _HOSTILE))
def test_a_reason_value_quotes_whatever_its_text_holds(cause: int, text: str) -> None:
    value = reason_value(cause, text)
    params = Params.parse(value.partition(";")[2])
    assert (params.get("cause"), params.get("text")) == (str(cause), display_text(text))
