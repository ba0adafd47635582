"""Routing rules: which rule decides a call, where it sends it and with what
destination number. Pure: the rules come in as values, a `Router` is an
immutable snapshot, and nothing here touches a socket, a clock or the store.

Number masks
------------
A mask is a pattern in the style of Asterisk's dialplan (without its leading
`_`), matched against the whole number:

- `*` any number, the recommended default (so is an empty mask);
- `X` any digit, `Z` a digit 1-9, `N` a digit 2-9;
- `[1-5]`, `[147]`, `[1-36-8]` one digit of the class;
- `.` one or more characters, `!` zero or more, both only at the end;
- digits, `+`, `#` and `*` stand for themselves (`*` is a literal star
  unless it is the whole mask).

Letters may be lower case. Examples: `1XX` is any three-digit number starting
with 1 (the internal lines 100-199); `9.` is anything dialled after a 9;
`+380.` is any Ukrainian number in E.164; `[2-4]XXX` is 2000-4999.

Destination rewrites
--------------------
A template that builds the destination from the matched one. Empty leaves the
number as it is; literal digits, `+`, `#` and `*` are kept; `${number}` is
the whole number, and `${number:offset}` / `${number:offset:length}` take a
part of it as Asterisk does (a negative offset counts from the end; a
negative length leaves that many characters off the end):

=========================  ==================  ==============
template                   `0501234567` gives  what for
=========================  ==================  ==============
`${number:1}`              `501234567`         strip a prefix
`+38${number}`             `+380501234567`     add a prefix
`${number:-7}`             `1234567`           keep the last 7
`${number:3:3}`            `123`               3 from offset 3
`${number:0:-4}`           `050123`            drop the last 4
`101`                      `101`               a fixed internal line
=========================  ==================  ==============

A template is checked when it is parsed; applied, it may still give an empty
number (`${number:5}` of `123`), and the router takes that as "this rule does
not match".
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

Direction = Literal["incoming", "outgoing"]
ActionType = Literal["internal_line", "external_line", "ivr", "deny"]

_DIGITS = "0123456789"


class MaskError(ValueError):
    """A number mask that cannot be parsed; `problem` says why, fit for a 422."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class RewriteError(ValueError):
    """A destination rewrite that cannot be parsed; `problem` says why, fit for a 422."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Mask:
    """A parsed number mask: the text the admin wrote and its regex."""

    text: str
    pattern: re.Pattern[str]

    def matches(self, number: str) -> bool:
        return self.pattern.fullmatch(number) is not None


_ANY = re.compile(".*", re.DOTALL)
_DIGIT_LETTERS = {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]"}
_MASK_LITERALS = _DIGITS + "+#*"
_TAILS = {".": ".+", "!": ".*"}


def parse_mask(text: str | None) -> Mask:
    """Compile a mask (syntax in the module docstring) or raise `MaskError`."""
    if not text or text == "*":
        return Mask(text or "", _ANY)
    regex: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        position = index + 1
        if char.upper() in _DIGIT_LETTERS:
            regex.append(_DIGIT_LETTERS[char.upper()])
        elif char in _MASK_LITERALS:
            regex.append(re.escape(char))
        elif char == "[":
            index = _digit_class(text, index, regex)
            continue
        elif char in _TAILS:
            if position != len(text):
                raise MaskError(f"'{char}' may only end a mask (found at position {position})")
            regex.append(_TAILS[char])
        elif char == "_" and index == 0:
            raise MaskError("leave out Asterisk's leading '_': the mask is a pattern already")
        else:
            raise MaskError(
                f"unexpected {char!r} at position {position}: a mask is made of digits,"
                " X, Z, N, [classes], '+', '#', '*', and '.' or '!' at the end"
            )
        index += 1
    return Mask(text, re.compile("".join(regex), re.DOTALL))


def _digit_class(text: str, start: int, regex: list[str]) -> int:
    """Check the class opened at `text[start]`, append it, return the index after it."""
    end = text.find("]", start)
    if end < 0:
        raise MaskError(f"unclosed [ at position {start + 1}")
    inside = text[start + 1 : end]
    if not inside:
        raise MaskError(f"empty [] at position {start + 1}")
    index = 0
    while index < len(inside):
        first = inside[index]
        position = start + index + 2
        if first not in _DIGITS:
            raise MaskError(
                f"{first!r} at position {position} is not a digit:"
                " a [class] holds digits and ranges such as [1-5]"
            )
        if inside[index + 1 : index + 2] != "-":
            index += 1
            continue
        last = inside[index + 2 : index + 3]
        if not last or last not in _DIGITS:
            raise MaskError(f"the range at position {position} needs a digit after '-'")
        if last < first:
            raise MaskError(f"the range {first}-{last} at position {position} runs backwards")
        index += 3
    # Only digits and ascending digit ranges are left, which a regex class reads as is.
    regex.append(f"[{inside}]")
    return end + 1


@dataclass(frozen=True, slots=True)
class Substring:
    """`${number:offset:length}`; `length` None is "to the end"."""

    offset: int = 0
    length: int | None = None

    def of(self, number: str) -> str:
        # Asterisk's substring(): offsets past either end clamp instead of wrapping.
        start = max(len(number) + self.offset, 0) if self.offset < 0 else self.offset
        if self.length is None:
            return number[start:]
        if self.length >= 0:
            return number[start : start + self.length]
        return number[start : max(len(number) + self.length, 0)]


@dataclass(frozen=True, slots=True)
class Rewrite:
    """A parsed destination rewrite: the template and its parts, literal
    text or a part of the matched number."""

    text: str
    parts: tuple[str | Substring, ...]

    def apply(self, number: str) -> str:
        return "".join(part if isinstance(part, str) else part.of(number) for part in self.parts)


_KEEP = (Substring(),)
_REWRITE_TOKEN = re.compile(r"([0-9+#*]+)|\$\{number(?::(-?[0-9]+)(?::(-?[0-9]+))?)?\}")


def parse_rewrite(text: str | None) -> Rewrite:
    """Parse a rewrite template (syntax in the module docstring) or raise `RewriteError`."""
    if not text:
        return Rewrite(text or "", _KEEP)
    parts: list[str | Substring] = []
    index = 0
    while index < len(text):
        token = _REWRITE_TOKEN.match(text, index)
        if token is None:
            raise RewriteError(_rewrite_problem(text, index))
        literal, offset, length = token.groups()
        if literal is not None:
            parts.append(literal)
        else:
            parts.append(Substring(int(offset or 0), None if length is None else int(length)))
        index = token.end()
    return Rewrite(text, tuple(parts))


def _rewrite_problem(text: str, index: int) -> str:
    """Say what is wrong with the template at `text[index]`, which nothing matched."""
    position = index + 1
    if not text.startswith("${", index):
        return (
            f"unexpected {text[index]!r} at position {position}: a rewrite is made of"
            " digits, '+', '#', '*' and ${number} (or ${number:offset:length})"
        )
    end = text.find("}", index)
    if end < 0:
        return f"unclosed ${{ at position {position}"
    name, _, substring = text[index + 2 : end].partition(":")
    if name != "number":
        return f"unknown variable {name!r} at position {position}: only ${{number}} is known"
    return (
        f"bad substring {substring!r} at position {position}: expected"
        " ${number:offset} or ${number:offset:length}, whole numbers"
    )


@dataclass(frozen=True, slots=True)
class Action:
    """What a matching rule does with the call. `target` is the internal
    line's number for `internal_line`, the external line's id (as text) for
    `external_line`, the IVR menu's id (as text) for `ivr`, and None for
    `deny`."""

    type: ActionType
    target: str | None = None


@dataclass(frozen=True, slots=True)
class RoutingRule:
    """One routing rule as the router reads it, masks and rewrite parsed.

    `external_line_id` None means calls on any external line. The default
    incoming rule (`is_default`) catches every incoming call no other rule
    takes, whatever its own line, masks and priority say.
    """

    id: int
    name: str
    direction: Direction
    external_line_id: int | None
    priority: int
    action: Action
    source_mask: Mask
    destination_mask: Mask
    destination_rewrite: Rewrite
    is_default: bool = False

    @property
    def catches_the_rest(self) -> bool:
        return self.is_default and self.direction == "incoming"


@dataclass(frozen=True, slots=True)
class Decision:
    """The rule that took a call, and the destination it goes to: the
    rewritten number, or the internal line an `internal_line` action names."""

    rule: RoutingRule
    action: Action
    destination: str


class Router:
    """An immutable snapshot of the routing rules, in the order they are tried:
    by priority (lower first), then id, with the default incoming rule last."""

    __slots__ = ("_incoming", "_outgoing")

    def __init__(self, rules: Iterable[RoutingRule]) -> None:
        ordered = sorted(rules, key=lambda rule: (rule.catches_the_rest, rule.priority, rule.id))
        # Split once by direction: a call only ever walks the rules of its own.
        self._incoming = _FirstCharIndex(r for r in ordered if r.direction == "incoming")
        self._outgoing = _FirstCharIndex(r for r in ordered if r.direction == "outgoing")

    def route(
        self, direction: Direction, *, external_line_id: int | None, source: str, destination: str
    ) -> Decision | None:
        """The first rule that takes the call, or None when none does."""
        return next(
            self.candidates(
                direction,
                external_line_id=external_line_id,
                source=source,
                destination=destination,
            ),
            None,
        )

    def candidates(
        self, direction: Direction, *, external_line_id: int | None, source: str, destination: str
    ) -> Iterator[Decision]:
        """Every rule that takes the call, in order: the caller moves on to the
        next when the one before cannot carry it (its external line is full)."""
        index = self._incoming if direction == "incoming" else self._outgoing
        for rule in index.rules_for(destination):
            if rule.catches_the_rest or _matches(rule, external_line_id, source, destination):
                routed = _destination(rule, destination)
                if routed:
                    yield Decision(rule, rule.action, routed)


class _FirstCharIndex:
    """The rules of one direction, in order, bucketed by the first character
    a destination must have for their mask to match: with a thousand rules a
    call walks only those that can start like its number (most masks begin
    with a digit), in the same order as the whole list."""

    __slots__ = ("_anything", "_buckets")

    def __init__(self, rules: Iterable[RoutingRule]) -> None:
        ordered = tuple(rules)
        starts = [None if r.catches_the_rest else _first_chars(r.destination_mask) for r in ordered]
        keys = set().union(*(s for s in starts if s is not None))
        self._buckets = {
            key: tuple(r for r, s in zip(ordered, starts, strict=True) if s is None or key in s)
            for key in keys
        }
        # A number that starts with no key's character can only meet these.
        self._anything = tuple(r for r, s in zip(ordered, starts, strict=True) if s is None)

    def rules_for(self, destination: str) -> tuple[RoutingRule, ...]:
        return self._buckets.get(destination[:1], self._anything)


def _first_chars(mask: Mask) -> frozenset[str] | None:
    """The characters a number matching `mask` can start with; None: any."""
    text = mask.text.strip()
    if text in ("", "*"):
        return None
    head = text[0].upper()
    if head in _DIGIT_RANGES:
        return _DIGIT_RANGES[head]
    if head == "[":
        return _class_digits(text[1 : text.index("]")])
    if head in _MASK_LITERALS:
        return frozenset(head)
    return None  # "." or "!": anything


_DIGIT_RANGES = {
    "X": frozenset("0123456789"),
    "Z": frozenset("123456789"),
    "N": frozenset("23456789"),
}


def _class_digits(body: str) -> frozenset[str]:
    """The digits of a mask's `[...]` class (parse_mask has checked it)."""
    digits: set[str] = set()
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            digits.update(str(d) for d in range(int(body[i]), int(body[i + 2]) + 1))
            i += 3
        else:
            digits.add(body[i])
            i += 1
    return frozenset(digits)


def _matches(
    rule: RoutingRule, external_line_id: int | None, source: str, destination: str
) -> bool:
    return (
        (rule.external_line_id is None or rule.external_line_id == external_line_id)
        and rule.source_mask.matches(source)
        and rule.destination_mask.matches(destination)
    )


def _destination(rule: RoutingRule, destination: str) -> str:
    if rule.action.type == "internal_line" and rule.action.target:
        return rule.action.target
    return rule.destination_rewrite.apply(destination)


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """Why a set of rules cannot be applied: the rule (None for the set as a
    whole), the field at fault, and a sentence to show."""

    rule_id: int | None
    field: str
    problem: str


_TARGETED: frozenset[ActionType] = frozenset({"internal_line", "external_line", "ivr"})
_TARGET_KINDS = {
    "internal_line": "internal line's number",
    "external_line": "external line's id",
    "ivr": "IVR menu's id",
}


def validate_rules(
    rules: Iterable[RoutingRule],
    *,
    internal_numbers: Collection[str] | None = None,
    external_line_ids: Collection[int] | None = None,
    ivr_menu_ids: Collection[int] | None = None,
) -> list[RuleProblem]:
    """Every problem of the set, empty when it can be applied. Targets and
    lines are checked against `internal_numbers`, `external_line_ids` and
    `ivr_menu_ids` only when those are given."""
    listed = list(rules)
    problems = _default_problems(listed)
    for rule in listed:
        problems += _rule_problems(rule, internal_numbers, external_line_ids, ivr_menu_ids)
    return problems


def _default_problems(rules: list[RoutingRule]) -> list[RuleProblem]:
    defaults = [rule for rule in rules if rule.catches_the_rest]
    if not defaults:
        return [RuleProblem(None, "is_default", "there must be one default incoming rule")]
    problems: list[RuleProblem] = []
    if len(defaults) > 1:
        ids = ", ".join(str(rule.id) for rule in defaults)
        problems += [
            RuleProblem(rule.id, "is_default", f"only one incoming rule may be the default: {ids}")
            for rule in defaults
        ]
    problems += [
        RuleProblem(
            rule.id, "action", "the default incoming rule must send calls to an internal line"
        )
        for rule in defaults
        if rule.action.type != "internal_line"
    ]
    return problems


def _rule_problems(
    rule: RoutingRule,
    internal_numbers: Collection[str] | None,
    external_line_ids: Collection[int] | None,
    ivr_menu_ids: Collection[int] | None,
) -> list[RuleProblem]:
    problems: list[RuleProblem] = []

    def problem(field: str, text: str) -> None:
        problems.append(RuleProblem(rule.id, field, text))

    # The API validates types, but a bool is an int to Python and means nothing here.
    if not isinstance(rule.priority, int) or isinstance(rule.priority, bool):
        problem("priority", "the priority must be a whole number")
    elif rule.priority < 0:
        problem("priority", "the priority must be 0 or more")
    if rule.is_default and rule.direction != "incoming":
        problem("is_default", "only an incoming rule can be the default")
    if (
        rule.external_line_id is not None
        and external_line_ids is not None
        and rule.external_line_id not in external_line_ids
    ):
        problem("external_line_id", f"there is no external line {rule.external_line_id}")

    action, target = rule.action.type, rule.action.target
    if action not in _TARGETED:
        if target is not None:
            problem("action.target", f"the action {action} takes no target")
    elif not target:
        kind = _TARGET_KINDS[action]
        problem("action.target", f"an {action} action needs the {kind} as its target")
    elif action == "internal_line":
        if internal_numbers is not None and target not in internal_numbers:
            problem("action.target", f"there is no internal line {target}")
    elif not target.isascii() or not target.isdigit() or int(target) < 1:
        problem("action.target", f"the target {target!r} is not an {_TARGET_KINDS[action]}")
    elif action == "external_line":
        if external_line_ids is not None and int(target) not in external_line_ids:
            problem("action.target", f"there is no external line {target}")
    elif ivr_menu_ids is not None and int(target) not in ivr_menu_ids:
        problem("action.target", f"there is no IVR menu {target}")
    return problems
