"""Number masks, destination rewrites, the router's order and its checks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callbridge.pbx.routing import (
    Action,
    Direction,
    MaskError,
    RewriteError,
    Router,
    RoutingRule,
    RuleProblem,
    Substring,
    parse_mask,
    parse_rewrite,
    validate_rules,
)

# Masks


@pytest.mark.parametrize("text", ["*", "", None])
@pytest.mark.parametrize("number", ["", "101", "+380501234567", "*72", "anything"])
def test_star_empty_and_none_masks_match_any_number(text: str | None, number: str) -> None:
    assert parse_mask(text).matches(number)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("1XX", "100"),
        ("1XX", "199"),
        ("Z", "1"),
        ("Z", "9"),
        ("N", "2"),
        ("N", "9"),
        ("[1-5]", "1"),
        ("[1-5]", "5"),
        ("[147]", "4"),
        ("[1-36-8]", "2"),
        ("[1-36-8]", "7"),
        ("9.", "91"),
        ("9.", "9123+#"),
        ("9!", "9"),
        ("9!", "9123"),
        (".", "1"),
        ("!", ""),
        ("101", "101"),
        ("+380X.", "+380501234567"),
        ("*72X", "*721"),
        ("#1", "#1"),
        ("**", "**"),
        ("1xx", "123"),
        ("z", "5"),
        ("n", "5"),
    ],
)
def test_mask_matches(text: str, number: str) -> None:
    assert parse_mask(text).matches(number)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("1XX", "1a0"),
        ("1XX", "10"),
        ("1XX", "1000"),
        ("1XX", "200"),
        ("Z", "0"),
        ("N", "1"),
        ("N", "0"),
        ("[1-5]", "0"),
        ("[1-5]", "6"),
        ("[147]", "5"),
        ("[1-36-8]", "4"),
        ("[1-36-8]", "5"),
        ("[1-36-8]", "9"),
        ("9.", "9"),
        ("9!", "8"),
        (".", ""),
        ("101", "1010"),
        ("101", "0101"),
        ("+380X.", "380501234567"),
        ("*72X", "172X"),
        ("#1", "1"),
        ("**", "12"),
        ("X", "\u0663"),  # an Arabic-Indic three: a digit to Python, not to a phone
    ],
)
def test_mask_refuses(text: str, number: str) -> None:
    assert not parse_mask(text).matches(number)


def test_mask_keeps_the_text_it_was_written_as() -> None:
    assert parse_mask("1xX").text == "1xX"
    assert parse_mask(None).text == ""


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("12[3", "unclosed [ at position 3"),
        ("1[]", "empty [] at position 2"),
        ("[1-]", "the range at position 2 needs a digit after '-'"),
        ("[1-a]", "the range at position 2 needs a digit after '-'"),
        ("1[5-1]", "the range 5-1 at position 3 runs backwards"),
        ("[1a]", "'a' at position 3 is not a digit"),
        ("[-1]", "'-' at position 2 is not a digit"),
        ("9.1", "'.' may only end a mask (found at position 2)"),
        ("9!X", "'!' may only end a mask (found at position 2)"),
        ("X.!", "'.' may only end a mask (found at position 2)"),
        ("1]", "unexpected ']' at position 2"),
        ("10 1", "unexpected ' ' at position 3"),
        ("1A", "unexpected 'A' at position 2"),
        ("_X.", "leave out Asterisk's leading '_'"),
    ],
)
def test_mask_errors_say_what_and_where(text: str, problem: str) -> None:
    with pytest.raises(MaskError) as caught:
        parse_mask(text)
    assert caught.value.problem.startswith(problem)
    assert isinstance(caught.value, ValueError)


# Rewrites


@pytest.mark.parametrize("text", [None, ""])
def test_empty_rewrite_leaves_the_number_as_it_is(text: str | None) -> None:
    assert parse_rewrite(text).apply("+380501234567") == "+380501234567"


@pytest.mark.parametrize(
    ("template", "number", "result"),
    [
        ("${number}", "0501234567", "0501234567"),
        ("${number:1}", "90501234567", "0501234567"),
        ("+38${number}", "0501234567", "+380501234567"),
        ("${number:-7}", "0501234567", "1234567"),
        ("${number:3:3}", "0501234567", "123"),
        ("${number:0:-4}", "0501234567", "050123"),
        ("${number:-4:2}", "0501234567", "45"),
        ("101", "0501234567", "101"),
        ("00${number:1}#", "+380501234567", "00380501234567#"),
        ("*${number}*${number}", "12", "*12*12"),
        ("${number:5}", "123", ""),
        ("${number:-9}", "123", "123"),
        ("${number:1:0}", "123", ""),
        ("${number:0:-9}", "123", ""),
    ],
)
def test_rewrite_forms(template: str, number: str, result: str) -> None:
    assert parse_rewrite(template).apply(number) == result


def asterisk_substring(value: str, offset: int, length: int | None) -> str:
    """substring() of Asterisk's main/pbx_variables.c, line by line."""
    length = 2**31 - 1 if length is None else length
    size = len(value)
    if offset == 0 and length >= size:
        return value
    if offset < 0:
        offset = max(size + offset, 0)
    if offset >= size:
        return ""
    rest = value[offset:]
    if 0 <= length < size - offset:
        return rest[:length]
    if length < 0:
        return rest[: size + length - offset] if size > offset - length else ""
    return rest


@given(
    st.text(alphabet="0123456789+", max_size=16),
    st.integers(-20, 20),
    st.none() | st.integers(-20, 20),
)
def test_substring_agrees_with_asterisk(number: str, offset: int, length: int | None) -> None:
    assert Substring(offset, length).of(number) == asterisk_substring(number, offset, length)


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("${number", "unclosed ${ at position 1"),
        ("9${foo}", "unknown variable 'foo' at position 2"),
        ("${}", "unknown variable '' at position 1"),
        ("${number:}", "bad substring '' at position 1"),
        ("1${number:a}", "bad substring 'a' at position 2"),
        ("${number:1:2:3}", "bad substring '1:2:3' at position 1"),
        ("$number", "unexpected '$' at position 1"),
        ("1 2", "unexpected ' ' at position 2"),
        ("12}", "unexpected '}' at position 3"),
        ("abc", "unexpected 'a' at position 1"),
    ],
)
def test_rewrite_errors_say_what_and_where(template: str, problem: str) -> None:
    with pytest.raises(RewriteError) as caught:
        parse_rewrite(template)
    assert caught.value.problem.startswith(problem)
    assert isinstance(caught.value, ValueError)


def test_rewrite_keeps_the_text_it_was_written_as() -> None:
    assert parse_rewrite("+7${number:1}").text == "+7${number:1}"


# The router

TO_101 = Action("internal_line", "101")


def rule(
    id: int,
    *,
    direction: Direction = "incoming",
    priority: int = 10,
    line: int | None = None,
    source: str = "*",
    destination: str = "*",
    rewrite: str | None = None,
    action: Action = TO_101,
    is_default: bool = False,
) -> RoutingRule:
    return RoutingRule(
        id=id,
        name=f"rule {id}",
        direction=direction,
        external_line_id=line,
        priority=priority,
        action=action,
        source_mask=parse_mask(source),
        destination_mask=parse_mask(destination),
        destination_rewrite=parse_rewrite(rewrite),
        is_default=is_default,
    )


DEFAULT = rule(1, priority=0, action=Action("internal_line", "100"), is_default=True)


def incoming(
    router: Router, *, line: int | None = 7, source: str = "+380501234567", to: str = "+3844"
) -> int | None:
    decision = router.route("incoming", external_line_id=line, source=source, destination=to)
    return None if decision is None else decision.rule.id


def outgoing(router: Router, to: str, *, source: str = "101") -> int | None:
    decision = router.route("outgoing", external_line_id=None, source=source, destination=to)
    return None if decision is None else decision.rule.id


def test_lower_priority_is_tried_first() -> None:
    router = Router([rule(2, priority=20), rule(3, priority=5), DEFAULT])
    assert incoming(router) == 3


def test_equal_priorities_go_to_the_lower_id() -> None:
    router = Router([rule(5, priority=10), rule(4, priority=10), DEFAULT])
    assert incoming(router) == 4


def test_a_call_never_takes_a_rule_of_the_other_direction() -> None:
    router = Router([rule(2, direction="outgoing", priority=0), rule(3, priority=50), DEFAULT])
    assert incoming(router) == 3
    assert outgoing(router, "0501234567") == 2


@pytest.mark.parametrize(("line", "taken"), [(7, 2), (8, 1), (None, 1)])
def test_a_rule_for_one_external_line_takes_only_its_calls(line: int | None, taken: int) -> None:
    router = Router([rule(2, line=7), DEFAULT])
    assert incoming(router, line=line) == taken


@pytest.mark.parametrize("line", [7, 8, None])
def test_a_rule_without_external_line_takes_calls_on_any(line: int | None) -> None:
    router = Router([rule(2), DEFAULT])
    assert incoming(router, line=line) == 2


@pytest.mark.parametrize(
    ("source", "to", "taken"),
    [
        ("+380501234567", "+3844", 2),
        ("+380501234567", "+3845", 1),
        ("+74951234567", "+3844", 1),
    ],
)
def test_a_rule_needs_both_masks_to_match(source: str, to: str, taken: int) -> None:
    router = Router([rule(2, source="+380.", destination="+3844"), DEFAULT])
    assert incoming(router, source=source, to=to) == taken


def test_the_default_incoming_rule_is_tried_last_whatever_its_priority() -> None:
    router = Router([DEFAULT, rule(2, priority=1000)])
    assert incoming(router) == 2


def test_the_default_incoming_rule_takes_what_its_own_line_and_masks_would_not() -> None:
    fussy_default = rule(
        1,
        line=99,
        source="000",
        destination="000",
        action=Action("internal_line", "100"),
        is_default=True,
    )
    router = Router([fussy_default, rule(2, line=7)])
    decision = router.route("incoming", external_line_id=8, source="123", destination="456")
    assert decision is not None
    assert (decision.rule.id, decision.destination) == (1, "100")


def test_an_outgoing_call_no_rule_takes_gets_no_decision() -> None:
    router = Router([rule(2, direction="outgoing", destination="9."), DEFAULT])
    assert outgoing(router, "0501234567") is None


def test_an_outgoing_rule_marked_default_is_not_a_catch_all() -> None:
    router = Router([rule(2, direction="outgoing", destination="9.", is_default=True), DEFAULT])
    assert outgoing(router, "0501234567") is None
    assert outgoing(router, "90501234567") == 2


def test_candidates_lists_every_rule_that_takes_the_call_in_order() -> None:
    router = Router(
        [
            DEFAULT,
            rule(4, direction="outgoing", priority=20, action=Action("external_line", "2")),
            rule(3, direction="outgoing", priority=10, action=Action("external_line", "1")),
            rule(5, direction="outgoing", priority=5, destination="112"),
            rule(6, direction="outgoing", priority=20, action=Action("external_line", "3")),
        ]
    )
    decisions = router.candidates(
        "outgoing", external_line_id=None, source="101", destination="0501234567"
    )
    assert [(d.rule.id, d.action.target) for d in decisions] == [(3, "1"), (4, "2"), (6, "3")]


def test_candidates_end_with_the_default_incoming_rule() -> None:
    router = Router([DEFAULT, rule(3, priority=10), rule(2, priority=20)])
    decisions = router.candidates("incoming", external_line_id=7, source="1", destination="2")
    assert [d.rule.id for d in decisions] == [3, 2, 1]


def test_the_rewrite_gives_an_outgoing_call_its_destination() -> None:
    strip_nine = rule(
        2,
        direction="outgoing",
        destination="9.",
        rewrite="${number:1}",
        action=Action("external_line", "1"),
    )
    decision = Router([strip_nine, DEFAULT]).route(
        "outgoing", external_line_id=None, source="101", destination="90501234567"
    )
    assert decision is not None
    assert decision.destination == "0501234567"
    assert decision.action == Action("external_line", "1")


def test_an_incoming_rewrite_names_the_internal_line() -> None:
    last_three = rule(2, rewrite="${number:-3}", action=Action("internal_line"))
    decision = Router([last_three, DEFAULT]).route(
        "incoming", external_line_id=7, source="+380501234567", destination="+380441234102"
    )
    assert decision is not None
    assert decision.destination == "102"


def test_an_internal_line_target_wins_over_the_rewritten_destination() -> None:
    decision = Router([rule(2, rewrite="${number:-3}"), DEFAULT]).route(
        "incoming", external_line_id=7, source="+380501234567", destination="+380441234102"
    )
    assert decision is not None
    assert decision.destination == "101"


def test_without_rewrite_the_destination_is_the_dialled_number() -> None:
    decision = Router([rule(2, action=Action("ivr", "4")), DEFAULT]).route(
        "incoming", external_line_id=7, source="+380501234567", destination="+380441234102"
    )
    assert decision is not None
    assert (decision.action, decision.destination) == (Action("ivr", "4"), "+380441234102")


def test_a_rule_whose_rewrite_leaves_nothing_does_not_take_the_call() -> None:
    too_short = rule(
        2, direction="outgoing", rewrite="${number:5}", action=Action("external_line", "1")
    )
    fallback = rule(3, direction="outgoing", priority=20, action=Action("external_line", "2"))
    router = Router([too_short, fallback, DEFAULT])
    assert outgoing(router, "123") == 3
    assert outgoing(router, "0501234567") == 2


def test_the_router_keeps_its_rules_when_the_list_it_was_given_changes() -> None:
    rules = [rule(2), DEFAULT]
    router = Router(rules)
    rules.insert(0, rule(0, priority=0))
    assert incoming(router) == 2


# Validation

VALID = [
    DEFAULT,
    rule(2, action=Action("ivr", "4")),
    rule(3, direction="outgoing", line=5, action=Action("external_line", "5")),
    rule(4, direction="outgoing", destination="112", action=Action("deny")),
]


def test_a_sound_set_has_no_problems() -> None:
    assert (
        validate_rules(
            VALID, internal_numbers={"100", "101"}, external_line_ids={5}, ivr_menu_ids={4}
        )
        == []
    )


def test_an_ivr_rule_needs_a_menu_that_exists() -> None:
    assert validate_rules(VALID, ivr_menu_ids={3}) == [
        RuleProblem(2, "action.target", "there is no IVR menu 4")
    ]


def test_a_set_without_a_default_incoming_rule_is_refused() -> None:
    assert validate_rules(VALID[1:]) == [
        RuleProblem(None, "is_default", "there must be one default incoming rule")
    ]


def test_two_default_incoming_rules_are_both_named() -> None:
    second = rule(9, action=Action("internal_line", "101"), is_default=True)
    problems = validate_rules([*VALID, second])
    assert [(p.rule_id, p.field) for p in problems] == [(1, "is_default"), (9, "is_default")]
    assert problems[0].problem == "only one incoming rule may be the default: 1, 9"


def test_an_outgoing_rule_cannot_be_the_default() -> None:
    outgoing_default = rule(
        9, direction="outgoing", action=Action("external_line", "5"), is_default=True
    )
    assert validate_rules([*VALID, outgoing_default]) == [
        RuleProblem(9, "is_default", "only an incoming rule can be the default")
    ]


@pytest.mark.parametrize(
    "action", [Action("deny"), Action("ivr", "4"), Action("external_line", "5")]
)
def test_the_default_rule_must_send_calls_to_an_internal_line(action: Action) -> None:
    default = rule(1, action=action, is_default=True)
    assert RuleProblem(
        1, "action", "the default incoming rule must send calls to an internal line"
    ) in validate_rules([default, *VALID[1:]])


def test_the_default_rule_needs_an_internal_line_as_its_target() -> None:
    default = rule(1, action=Action("internal_line"), is_default=True)
    assert validate_rules([default, *VALID[1:]]) == [
        RuleProblem(
            1,
            "action.target",
            "an internal_line action needs the internal line's number as its target",
        )
    ]


@pytest.mark.parametrize(
    ("action", "problem"),
    [
        (Action("internal_line"), "an internal_line action needs the internal line's number"),
        (Action("internal_line", ""), "an internal_line action needs the internal line's number"),
        (Action("external_line"), "an external_line action needs the external line's id"),
        (Action("external_line", "five"), "the target 'five' is not an external line's id"),
        (Action("external_line", "\u0665"), "the target '\u0665' is not an external line's id"),
        (Action("ivr"), "an ivr action needs the IVR menu's id as its target"),
        (Action("ivr", "first"), "the target 'first' is not an IVR menu's id"),
        (Action("ivr", "0"), "the target '0' is not an IVR menu's id"),
        (Action("deny", ""), "the action deny takes no target"),
    ],
)
def test_action_targets_are_checked(action: Action, problem: str) -> None:
    problems = validate_rules([*VALID, rule(9, action=action)])
    assert [(p.rule_id, p.field) for p in problems] == [(9, "action.target")]
    assert problems[0].problem.startswith(problem)


@pytest.mark.parametrize(
    ("priority", "problem"),
    [(-1, "the priority must be 0 or more"), (True, "the priority must be a whole number")],
)
def test_priorities_are_whole_numbers_from_zero(priority: int, problem: str) -> None:
    assert validate_rules([*VALID, rule(9, priority=priority)]) == [
        RuleProblem(9, "priority", problem)
    ]


def test_priority_zero_is_allowed() -> None:
    assert validate_rules([*VALID, rule(9, priority=0)]) == []


def test_unknown_targets_and_lines_are_named_when_the_lines_are_given() -> None:
    rules = [
        *VALID,
        rule(9, action=Action("internal_line", "555")),
        rule(10, direction="outgoing", line=6, action=Action("external_line", "8")),
    ]
    assert validate_rules(rules, internal_numbers={"100", "101"}, external_line_ids={5}) == [
        RuleProblem(9, "action.target", "there is no internal line 555"),
        RuleProblem(10, "external_line_id", "there is no external line 6"),
        RuleProblem(10, "action.target", "there is no external line 8"),
    ]
    assert validate_rules(rules) == []


def test_the_default_rule_target_is_checked_against_the_internal_lines() -> None:
    assert validate_rules(VALID, internal_numbers={"101"}) == [
        RuleProblem(1, "action.target", "there is no internal line 100")
    ]


_MASK_TOKENS = st.sampled_from(["X", "Z", "N", "0", "1", "7", "8", "+", "[1-3]", "[57]", "x"])


@st.composite
def _masks(draw: st.DrawFn) -> str:
    if draw(st.booleans()) and draw(st.booleans()):
        return "*"
    body = "".join(draw(st.lists(_MASK_TOKENS, min_size=1, max_size=4)))
    return body + draw(st.sampled_from(["", ".", "!"]))


@given(
    masks=st.lists(_masks(), min_size=1, max_size=30),
    number=st.text(alphabet="0123456789+#*a", min_size=1, max_size=6),
)
def test_the_first_character_index_decides_as_a_walk_of_every_rule_would(
    masks: list[str], number: str
) -> None:
    rules = [
        rule(i + 2, direction="outgoing", priority=i % 5, destination=mask)
        for i, mask in enumerate(masks)
    ]
    walked = [
        r.id
        for r in sorted(rules, key=lambda r: (r.priority, r.id))
        if r.destination_mask.matches(number)
    ]
    routed = Router(rules).candidates(
        "outgoing", external_line_id=None, source="101", destination=number
    )
    assert [decision.rule.id for decision in routed] == walked
