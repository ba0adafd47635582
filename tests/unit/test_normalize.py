"""Number formats and normalization rules, on numbers and on parsed INVITEs."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callbridge.numbers import MAX_NUMBER_LENGTH, to_e164, to_national, to_provider
from callbridge.pbx.normalize import (
    Direction,
    Field,
    Method,
    NormalizationError,
    NormalizationRule,
    Normalizer,
    Originals,
    RuleProblem,
    validate_rules,
)
from callbridge.sip import Request, SipURI, TelURI, parse

ALL_FIELDS: frozenset[Field] = frozenset({"request_uri", "from", "to", "pai", "display_name"})


def rule(
    id: int = 1,
    *,
    priority: int = 10,
    direction: Direction = "incoming",
    line: int | None = None,
    fields: frozenset[Field] = ALL_FIELDS,
    method: Method = "e164",
    match: str | None = None,
    replacement: str | None = None,
) -> NormalizationRule:
    return NormalizationRule(
        id=id,
        name=f"rule {id}",
        priority=priority,
        direction=direction,
        external_line_id=line,
        fields=fields,
        method=method,
        match=match,
        replacement=replacement,
    )


def pattern(
    id: int,
    match: str,
    replacement: str,
    *,
    priority: int = 10,
    line: int | None = None,
    fields: frozenset[Field] = ALL_FIELDS,
) -> NormalizationRule:
    return rule(
        id,
        priority=priority,
        line=line,
        fields=fields,
        method="pattern",
        match=match,
        replacement=replacement,
    )


def normalizer(*rules: NormalizationRule, regions: dict[int, str] | None = None) -> Normalizer:
    return Normalizer(rules, regions or {1: "RU"}, "RU")


INVITE_HEAD = (
    "Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK-norm-1;rport\r\n"
    "Max-Forwards: 70\r\n"
    "{from_}"
    "To: <sip:89161234567@pbx.example.com>;x-kept=1\r\n"
    "Call-ID: norm-1@provider.example.net\r\n"
    "CSeq: 1 INVITE\r\n"
    "{pai}"
    "Contact: <sip:89167654321@203.0.113.5:5060>\r\n"
    "Content-Length: 0\r\n\r\n"
)
FROM = 'From: "8 916 765-43-21" <sip:89167654321@provider.example.net>;tag=from-tag-1\r\n'
PAI = (
    "P-Asserted-Identity: <sip:89167654321@provider.example.net;user=phone>,"
    " <tel:8-916-765-43-21>\r\n"
)


def invite(
    request_uri: str = "sip:89161234567@pbx.example.com;user=phone",
    *,
    from_: str = FROM,
    pai: str = PAI,
) -> Request:
    text = f"INVITE {request_uri} SIP/2.0\r\n" + INVITE_HEAD.format(from_=from_, pai=pai)
    message = parse(text.encode())
    assert isinstance(message, Request)
    return message


def reparsed(request: Request) -> Request:
    message = parse(request.to_bytes())
    assert isinstance(message, Request)
    return message


def sip_user(uri: object) -> str | None:
    assert isinstance(uri, SipURI)
    return uri.user


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize("text", ["+7 916 123-45-67", "8 (916) 1234567", "79161234567"])
def test_three_russian_formats_of_one_number_give_one_e164(text: str) -> None:
    assert to_e164(text, "RU") == "+79161234567"


@pytest.mark.parametrize(
    ("text", "region", "e164"),
    [
        ("0501234567", "UA", "+380501234567"),
        ("050 123 45 67", "UA", "+380501234567"),
        ("380501234567", "RU", "+380501234567"),
        ("+380 50 123 45 67", "RU", "+380501234567"),
        ("00380501234567", "RU", "+380501234567"),
        ("(202) 555-0123", "US", "+12025550123"),
        ("12025550123", "US", "+12025550123"),
        ("12025550123", "RU", "+12025550123"),
        ("89161234567", "ru", "+79161234567"),
    ],
)
def test_national_and_international_numbers_read_in_the_region(
    text: str, region: str, e164: str
) -> None:
    assert to_e164(text, region) == e164


@pytest.mark.parametrize(
    "text",
    [
        "101",
        "1001",
        "*72",
        "8916123",
        "",
        "+",
        "garbage",
        "alice",
        "1-800-FLOWERS",
        "0501234567",
        # A local number without its area code, not the Norwegian +47 03210.
        "470-32-10",
    ],
)
def test_internal_incomplete_and_non_numbers_are_not_e164(text: str) -> None:
    assert to_e164(text, "RU") is None


@pytest.mark.parametrize(
    ("e164", "national"),
    [
        ("+79161234567", "89161234567"),
        ("+380501234567", "0501234567"),
        ("+12025550123", "2025550123"),
    ],
)
def test_national_form_is_the_digits_dialled_inside_the_country(e164: str, national: str) -> None:
    assert to_national(e164) == national


def test_national_form_of_a_number_without_its_country_is_an_error() -> None:
    with pytest.raises(ValueError):
        to_national("89161234567")


@pytest.mark.parametrize(
    ("style", "written"),
    [("e164", "+79161234567"), ("e164_digits", "79161234567"), ("national", "89161234567")],
)
def test_provider_styles_write_one_number_three_ways(style: str, written: str) -> None:
    assert to_provider("+79161234567", style) == written  # type: ignore[arg-type]


def test_unknown_provider_style_is_an_error() -> None:
    with pytest.raises(ValueError, match="style"):
        to_provider("+79161234567", "international")  # type: ignore[arg-type]


# ---------------------------------------------------------------- rules on numbers


def test_rules_apply_in_priority_order_each_feeding_the_next() -> None:
    to_e164_first = rule(1, priority=10, fields=frozenset({"to"}))
    then_national = pattern(2, r"\+7(\d{10})", r"8\1", priority=20, fields=frozenset({"to"}))
    # Listed out of order: the priority, not the list, decides.
    rules = normalizer(then_national, to_e164_first)

    number = rules.normalize_number(
        "8 (916) 1234567", direction="incoming", external_line_id=1, field="to"
    )

    assert number == "89161234567"
    assert [r.id for r in rules.rules] == [1, 2]


def test_the_other_priority_order_gives_the_other_result() -> None:
    national_first = pattern(2, r"\+7(\d{10})", r"8\1", priority=5, fields=frozenset({"to"}))
    rules = normalizer(rule(1, priority=10, fields=frozenset({"to"})), national_first)

    number = rules.normalize_number(
        "8 (916) 1234567", direction="incoming", external_line_id=1, field="to"
    )

    assert number == "+79161234567"


def test_rules_of_equal_priority_apply_by_id() -> None:
    rules = normalizer(pattern(2, "(.*)", r"\1b"), pattern(1, "(.*)", r"\1a"))

    number = rules.normalize_number("x", direction="incoming", external_line_id=1, field="to")

    assert number == "xab"


def test_pattern_must_match_the_whole_value() -> None:
    rules = normalizer(pattern(1, r"\d{3}", "000"))

    def number(text: str) -> str:
        return rules.normalize_number(text, direction="incoming", external_line_id=1, field="to")

    assert number("1234") == "1234"
    assert number("123") == "000"


def test_pattern_replacement_uses_named_and_numbered_groups() -> None:
    rules = normalizer(pattern(1, r"9(?P<ext>\d{3})", r"7\g<ext>"))

    number = rules.normalize_number("9101", direction="incoming", external_line_id=1, field="to")

    assert number == "7101"


def test_rules_apply_only_in_their_direction() -> None:
    rules = normalizer(rule(1, direction="outgoing", method="national"))

    incoming = rules.normalize_number(
        "+79161234567", direction="incoming", external_line_id=1, field="to"
    )
    outgoing = rules.normalize_number(
        "+79161234567", direction="outgoing", external_line_id=1, field="to"
    )

    assert incoming == "+79161234567"
    assert outgoing == "89161234567"


def test_rules_of_a_line_apply_only_to_it_and_rules_without_a_line_to_every_line() -> None:
    rules = normalizer(
        pattern(1, "(.*)", r"\1-line1", line=1),
        pattern(2, "(.*)", r"\1-any", priority=20),
        regions={1: "RU", 2: "RU"},
    )

    def number(line: int) -> str:
        return rules.normalize_number("x", direction="incoming", external_line_id=line, field="to")

    assert number(1) == "x-line1-any"
    assert number(2) == "x-any"
    assert number(3) == "x-any"


def test_rules_apply_only_to_the_fields_they_list() -> None:
    rules = normalizer(rule(1, fields=frozenset({"to"})))

    to = rules.normalize_number("89161234567", direction="incoming", external_line_id=1, field="to")
    from_ = rules.normalize_number(
        "89161234567", direction="incoming", external_line_id=1, field="from"
    )

    assert to == "+79161234567"
    assert from_ == "89161234567"


def test_numbers_are_read_in_the_region_of_their_line() -> None:
    rules = Normalizer([rule(1)], {1: "RU", 2: "UA"}, "US")

    def number(text: str, line: int) -> str:
        return rules.normalize_number(text, direction="incoming", external_line_id=line, field="to")

    assert number("0501234567", 2) == "+380501234567"
    assert number("0501234567", 1) == "0501234567"  # not a Russian number: left alone
    assert number("(202) 555-0123", 9) == "+12025550123"  # no region of its own: the default


def test_internal_numbers_and_names_pass_format_rules_unchanged() -> None:
    rules = normalizer(rule(1))

    for text in ("101", "alice", "Ivan Petrov"):
        assert (
            rules.normalize_number(text, direction="incoming", external_line_id=1, field="to")
            == text
        )


# ---------------------------------------------------------------- rules on requests


def test_incoming_invite_gets_every_number_in_e164_with_tags_and_params_kept() -> None:
    request = invite()
    rules = normalizer(rule(1))

    originals = rules.normalize_request(request, direction="incoming", external_line_id=1)

    assert str(request.uri) == "sip:+79161234567@pbx.example.com;user=phone"
    assert request.headers.get("From") == (
        '"+79167654321" <sip:+79167654321@provider.example.net>;tag=from-tag-1'
    )
    assert request.from_.tag == "from-tag-1"
    assert request.headers.get("To") == "<sip:+79161234567@pbx.example.com>;x-kept=1"
    assert request.headers.get("P-Asserted-Identity") == (
        "<sip:+79167654321@provider.example.net;user=phone>, <tel:+79167654321>"
    )
    # What no rule names stays byte for byte.
    assert request.headers.get("Contact") == "<sip:89167654321@203.0.113.5:5060>"
    assert request.top_via.branch == "z9hG4bK-norm-1"
    assert originals == Originals(
        request_uri="sip:89161234567@pbx.example.com;user=phone",
        from_='"8 916 765-43-21" <sip:89167654321@provider.example.net>;tag=from-tag-1',
        to="<sip:89161234567@pbx.example.com>;x-kept=1",
        pai="<sip:89167654321@provider.example.net;user=phone>, <tel:8-916-765-43-21>",
        display_name="8 916 765-43-21",
    )


def test_normalized_invite_serializes_and_parses_back_the_same() -> None:
    request = invite()
    normalizer(rule(1)).normalize_request(request, direction="incoming", external_line_id=1)

    again = reparsed(request)

    assert str(again.uri) == "sip:+79161234567@pbx.example.com;user=phone"
    assert sip_user(again.from_.uri) == "+79167654321"
    assert again.from_.display_name == "+79167654321"
    assert again.from_.tag == "from-tag-1"
    assert sip_user(again.to.uri) == "+79161234567"
    assert again.to.params.get("x-kept") == "1"
    assert again.headers.get("P-Asserted-Identity") == request.headers.get("P-Asserted-Identity")
    assert again.to_bytes() == request.to_bytes()


@pytest.mark.parametrize(
    ("field", "original"),
    [
        ("request_uri", "sip:89161234567@pbx.example.com;user=phone"),
        ("from", '"8 916 765-43-21" <sip:89167654321@provider.example.net>;tag=from-tag-1'),
        ("to", "<sip:89161234567@pbx.example.com>;x-kept=1"),
        ("pai", "<sip:89167654321@provider.example.net;user=phone>, <tel:8-916-765-43-21>"),
    ],
)
def test_a_rule_for_one_field_rewrites_only_that_field(field: Field, original: str) -> None:
    untouched = invite()
    request = invite()

    originals = normalizer(rule(1, fields=frozenset({field}))).normalize_request(
        request, direction="incoming", external_line_id=1
    )

    assert originals.as_dict() == {field: original}
    changed = {
        "request_uri": str(request.uri) != str(untouched.uri),
        "from": request.headers.get("From") != untouched.headers.get("From"),
        "to": request.headers.get("To") != untouched.headers.get("To"),
        "pai": request.headers.get("P-Asserted-Identity")
        != untouched.headers.get("P-Asserted-Identity"),
    }
    assert changed == {name: name == field for name in changed}


def test_from_number_rule_keeps_the_display_name() -> None:
    request = invite()

    normalizer(rule(1, fields=frozenset({"from"}))).normalize_request(
        request, direction="incoming", external_line_id=1
    )

    assert request.from_.display_name == "8 916 765-43-21"
    assert sip_user(request.from_.uri) == "+79167654321"


def test_display_name_rule_rewrites_the_from_display_name_only() -> None:
    request = invite()

    originals = normalizer(rule(1, fields=frozenset({"display_name"}))).normalize_request(
        request, direction="incoming", external_line_id=1
    )

    assert request.from_.display_name == "+79167654321"
    assert sip_user(request.from_.uri) == "89167654321"
    assert request.from_.tag == "from-tag-1"
    assert originals.display_name == "8 916 765-43-21"
    assert originals.from_ == (
        '"8 916 765-43-21" <sip:89167654321@provider.example.net>;tag=from-tag-1'
    )


def test_display_name_pattern_rewrites_a_name() -> None:
    request = invite(from_="From: Support <sip:89167654321@provider.example.net>;tag=t9\r\n")
    rules = normalizer(
        pattern(1, "Support", "Acme support", fields=frozenset({"display_name"})),
    )

    rules.normalize_request(request, direction="incoming", external_line_id=1)

    assert reparsed(request).from_.display_name == "Acme support"


def test_parsed_headers_read_after_normalization_are_the_new_ones() -> None:
    request = invite()
    assert sip_user(request.from_.uri) == "89167654321"  # parsed and cached before

    normalizer(rule(1)).normalize_request(request, direction="incoming", external_line_id=1)

    assert sip_user(request.from_.uri) == "+79167654321"
    assert sip_user(request.to.uri) == "+79161234567"


def test_compact_addr_spec_from_keeps_its_tag() -> None:
    request = invite(from_="f: sip:89167654321@provider.example.net;tag=compact-1\r\n")

    originals = normalizer(rule(1, fields=frozenset({"from"}))).normalize_request(
        request, direction="incoming", external_line_id=1
    )

    again = reparsed(request)
    assert sip_user(again.from_.uri) == "+79167654321"
    assert again.from_.tag == "compact-1"
    assert originals.from_ == "sip:89167654321@provider.example.net;tag=compact-1"


def test_tel_request_uri_is_rewritten_with_its_params() -> None:
    request = invite("tel:8-916-123-45-67;phone-context=+7")

    originals = normalizer(rule(1, fields=frozenset({"request_uri"}))).normalize_request(
        request, direction="incoming", external_line_id=1
    )

    assert isinstance(request.uri, TelURI)
    assert str(request.uri) == "tel:+79161234567;phone-context=+7"
    assert originals.request_uri == "tel:8-916-123-45-67;phone-context=+7"
    assert str(reparsed(request).uri) == "tel:+79161234567;phone-context=+7"


def test_escaped_user_part_is_read_unescaped() -> None:
    request = invite("sip:%2B79161234567@pbx.example.com")

    normalizer(rule(1, method="national", fields=frozenset({"request_uri"}))).normalize_request(
        request, direction="incoming", external_line_id=1
    )

    assert str(request.uri) == "sip:89161234567@pbx.example.com"


def test_outgoing_invite_gets_the_providers_national_format() -> None:
    request = invite("sip:+79161234567@provider.example.net")
    rules = normalizer(
        rule(1, direction="outgoing", line=1, method="national", fields=frozenset({"request_uri"}))
    )

    incoming = rules.normalize_request(request, direction="incoming", external_line_id=1)
    assert not incoming.changed
    assert str(request.uri) == "sip:+79161234567@provider.example.net"

    outgoing = rules.normalize_request(request, direction="outgoing", external_line_id=1)
    assert str(request.uri) == "sip:89161234567@provider.example.net"
    assert outgoing.as_dict() == {"request_uri": "sip:+79161234567@provider.example.net"}


def test_request_no_rule_changes_stays_byte_for_byte() -> None:
    request = invite()
    before = request.to_bytes()
    rules = normalizer(
        rule(1, direction="outgoing"),
        pattern(2, "nothing-matches-this", "x"),
        rule(3, line=2),
    )

    originals = rules.normalize_request(request, direction="incoming", external_line_id=1)

    assert originals == Originals()
    assert not originals.changed
    assert originals.as_dict() == {}
    assert request.to_bytes() == before


def test_pai_on_two_lines_is_rewritten_into_one() -> None:
    request = invite(
        pai=(
            "P-Asserted-Identity: <sip:89167654321@provider.example.net>\r\n"
            "P-Asserted-Identity: <tel:89167654321>\r\n"
        )
    )

    originals = normalizer(rule(1, fields=frozenset({"pai"}))).normalize_request(
        request, direction="incoming", external_line_id=1
    )

    assert request.headers.get_all("P-Asserted-Identity") == [
        "<sip:+79167654321@provider.example.net>, <tel:+79167654321>"
    ]
    assert originals.pai == "<sip:89167654321@provider.example.net>, <tel:89167654321>"


def test_unparsable_pai_is_left_alone() -> None:
    request = invite(pai="P-Asserted-Identity: <sip:89167654321@\r\n")

    originals = normalizer(rule(1, fields=frozenset({"pai"}))).normalize_request(
        request, direction="incoming", external_line_id=1
    )

    assert originals.pai is None
    assert request.headers.get("P-Asserted-Identity") == "<sip:89167654321@"


def test_request_without_pai_gets_none() -> None:
    request = invite(pai="")

    normalizer(rule(1)).normalize_request(request, direction="incoming", external_line_id=1)

    assert "P-Asserted-Identity" not in request.headers


# ---------------------------------------------------------------- errors


def test_bad_match_regex_is_an_error_naming_match() -> None:
    with pytest.raises(NormalizationError) as caught:
        normalizer(pattern(7, "(89", r"\1"))

    assert caught.value.field == "match"
    assert caught.value.rule_id == 7
    assert "regular expression" in caught.value.problem
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("replacement", [r"\2", r"\g<missing>", "\\"])
def test_bad_replacement_is_an_error_naming_replacement(replacement: str) -> None:
    with pytest.raises(NormalizationError) as caught:
        normalizer(pattern(3, r"8(\d{10})", replacement))

    assert caught.value.field == "replacement"
    assert caught.value.rule_id == 3


def test_pattern_without_match_is_an_error_naming_match() -> None:
    with pytest.raises(NormalizationError) as caught:
        normalizer(rule(4, method="pattern", replacement="x"))

    assert caught.value.field == "match"


def test_validate_rules_names_every_problem_of_every_rule() -> None:
    rules = [
        rule(1),  # fine
        pattern(2, "[", "x"),
        rule(3, method="pattern", match=r"(\d+)"),
        rule(4, fields=frozenset()),
        rule(5, fields=frozenset({"to", "subject"})),  # type: ignore[arg-type]
        rule(6, method="reverse"),  # type: ignore[arg-type]
        pattern(7, r"(\d)", r"\3"),
    ]

    problems = validate_rules(rules)

    assert [(p.rule_id, p.field) for p in problems] == [
        (2, "match"),
        (3, "replacement"),
        (4, "fields"),
        (5, "fields"),
        (6, "method"),
        (7, "replacement"),
    ]
    assert all(isinstance(p, RuleProblem) and p.problem for p in problems)
    assert "subject" in problems[3].problem


def test_valid_rules_have_no_problems() -> None:
    assert validate_rules([rule(1), pattern(2, r"8(\d{10})", r"+7\1")]) == []


# ---------------------------------------------------------------- untrusted patterns

# Shapes that make a backtracking engine try every way of splitting the
# input: a repeated group whose body can match the same digits in more than
# one way, followed by something the input lacks. Python's `re` takes about a
# second on 25 digits for most of them, doubling with each digit more.
_ATOMS = [r"\d", "[0-9]", ".", r"\w", "1"]
_INNER = ["+", "*", "{1,30}", "+?"]
_OUTER = ["+", "*", "{2,}", "{1,30}"]
_TAILS = ["x", "$x", "[a-z]", r"\D"]


@given(
    atom=st.sampled_from(_ATOMS),
    inner=st.sampled_from(_INNER),
    outer=st.sampled_from(_OUTER),
    tail=st.sampled_from(_TAILS),
    alternation=st.booleans(),
)
def test_nested_quantifiers_match_a_long_number_in_linear_time(
    atom: str, inner: str, outer: str, tail: str, alternation: bool
) -> None:
    body = f"{atom}{inner}|{atom}" if alternation else f"{atom}{inner}"
    rules = normalizer(pattern(1, f"({body}){outer}{tail}", "X"))
    number = "1" * 25

    started = time.perf_counter()
    result = rules.normalize_number(number, direction="incoming", external_line_id=1, field="from")

    assert result == number  # no match: the value stays
    assert time.perf_counter() - started < 0.05


@pytest.mark.parametrize(
    "match",
    [
        r"(\d)\1",  # a backreference
        r"(?P<d>\d)(?P=d)",
        r"(?=8)\d+",  # lookahead
        r"(?!8)\d+",
        r"(?<=8)\d+",  # lookbehind
        r"(?<!8)\d+",
        r"(\d{1,100}){1,100}",  # a repeat over RE2's 1000
    ],
)
def test_a_pattern_re2_cannot_run_is_an_error_naming_match(match: str) -> None:
    with pytest.raises(NormalizationError) as caught:
        normalizer(pattern(5, match, "X"))

    assert caught.value.field == "match" and caught.value.rule_id == 5
    assert "RE2" in caught.value.problem and "lookaround" in caught.value.problem


@pytest.mark.parametrize("field", sorted(ALL_FIELDS))
def test_no_rule_sees_a_value_longer_than_the_bound(field: Field) -> None:
    rules = normalizer(pattern(1, r"(\d+)", r"+\1"))

    def normalized(value: str) -> str:
        return rules.normalize_number(value, direction="incoming", external_line_id=1, field=field)

    assert normalized("1" * MAX_NUMBER_LENGTH) == "+" + "1" * MAX_NUMBER_LENGTH
    assert normalized("1" * (MAX_NUMBER_LENGTH + 1)) == "1" * (MAX_NUMBER_LENGTH + 1)


def test_a_rule_does_not_see_what_an_earlier_rule_grew_past_the_bound() -> None:
    half = "1" * (MAX_NUMBER_LENGTH // 2 + 1)
    rules = normalizer(
        pattern(1, r"(\d+)", r"\1\1", priority=1),
        pattern(2, r"(\d+)", r"+\1", priority=2),
    )

    result = rules.normalize_number(half, direction="incoming", external_line_id=1, field="from")

    assert result == half * 2
