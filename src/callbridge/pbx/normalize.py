"""Normalization rules: the numbers of messages to and from an external line
rewritten into one format (E.164, national, the provider's) or by a pattern.

Number formats come from `phonenumbers`, read in the external line's region.
Patterns run on RE2, whose matching time is linear in the input: an admin's
pattern cannot backtrack for seconds on the loop that carries SIP and audio.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, cast, get_args
from urllib.parse import quote, unquote

import re2

from callbridge.sip.errors import ParseError
from callbridge.sip.message import Request
from callbridge.sip.uri import URI, NameAddr, SipURI, TelURI, parse_name_addr_list

from ..numbers import (
    MAX_NUMBER_LENGTH,
    ProviderStyle,
    convert,
)

Field = Literal["request_uri", "from", "to", "pai", "display_name"]
# incoming: messages arriving from the external line; outgoing: sent to it.
Direction = Literal["incoming", "outgoing"]
Method = Literal["pattern", "e164", "e164_digits", "national"]

FIELDS: frozenset[str] = frozenset(get_args(Field))
DIRECTIONS: frozenset[str] = frozenset(get_args(Direction))
METHODS: frozenset[str] = frozenset(get_args(Method))

PAI = "P-Asserted-Identity"


class NormalizationError(ValueError):
    """A normalization rule that cannot be used; `field` names the rule's
    field at fault ("match", "replacement", "fields", ...), `problem` says why."""

    def __init__(self, field: str, problem: str, *, rule_id: int | None = None) -> None:
        where = f"normalization rule {rule_id}" if rule_id is not None else "normalization rule"
        super().__init__(f"{where}: {field}: {problem}")
        self.field = field
        self.problem = problem
        self.rule_id = rule_id


@dataclass(frozen=True, slots=True)
class NormalizationRule:
    """One rule: for messages of `direction` on `external_line_id` (None: on
    every external line), rewrite the numbers in `fields` by `method`.

    `pattern` rewrites a value that `match` (an RE2 regular expression: Python's
    syntax without backreferences or lookaround) matches in full into
    `replacement` (an `re.sub` template: `\\1`, `\\g<name>`); a value it does
    not match stays as it is. The other methods read the value
    as a phone number in the line's region and write it as E.164, E.164 digits
    or the national form; a value that is not a phone number (an internal
    number such as "101", a name) stays as it is.
    """

    id: int
    name: str
    priority: int
    direction: Direction
    external_line_id: int | None
    fields: frozenset[Field]
    method: Method
    match: str | None = None
    replacement: str | None = None


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """Why a rule cannot be used, naming the rule and its field."""

    rule_id: int
    field: str
    problem: str


@dataclass(frozen=True, slots=True)
class Originals:
    """The text a request had before normalization, for each field changed
    (None: unchanged). `from_` is the whole From value when its number or its
    display name changed; `display_name` is the display name alone."""

    request_uri: str | None = None
    from_: str | None = None
    to: str | None = None
    pai: str | None = None
    display_name: str | None = None

    @property
    def changed(self) -> bool:
        return any(value is not None for value in self.as_dict().values())

    def as_dict(self) -> dict[Field, str]:
        """The changed fields by their rule names, e.g. {"from": "<sip:8916...@host>"}."""
        values: dict[Field, str | None] = {
            "request_uri": self.request_uri,
            "from": self.from_,
            "to": self.to,
            "pai": self.pai,
            "display_name": self.display_name,
        }
        return {name: value for name, value in values.items() if value is not None}


# ---------------------------------------------------------------- rules

# One rule's rewrite: (value, region) -> value.
_Rewrite = Callable[[str, str], str]


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    rule: NormalizationRule
    rewrite: _Rewrite


def validate_rules(rules: Iterable[NormalizationRule]) -> list[RuleProblem]:
    """Every problem of every rule, each naming the rule and its field."""
    problems: list[RuleProblem] = []
    for rule in rules:
        problems.extend(_compile(rule)[1])
    return problems


def _compile(rule: NormalizationRule) -> tuple[_CompiledRule | None, list[RuleProblem]]:
    problems: list[RuleProblem] = []

    def problem(field: str, text: str) -> None:
        problems.append(RuleProblem(rule.id, field, text))

    if rule.direction not in DIRECTIONS:
        problem("direction", f"unknown direction {rule.direction!r}; one of {sorted(DIRECTIONS)}")
    if not rule.fields:
        problem("fields", "lists no field to change")
    for name in sorted(set(rule.fields) - FIELDS):
        problem("fields", f"unknown field {name!r}; one of {sorted(FIELDS)}")
    rewrite: _Rewrite | None = None
    if rule.method == "pattern":
        rewrite = _compile_pattern(rule, problem)
    elif rule.method in METHODS:
        rewrite = _format_rewrite(rule.method)
    else:
        problem("method", f"unknown method {rule.method!r}; one of {sorted(METHODS)}")
    if problems or rewrite is None:
        return None, problems
    return _CompiledRule(rule, rewrite), problems


class _Match(Protocol):
    def expand(self, template: str) -> str: ...


class _Regex(Protocol):
    """What is used of a compiled RE2 pattern (the binding has no types)."""

    @property
    def groups(self) -> int: ...

    @property
    def groupindex(self) -> Mapping[str, int]: ...

    def fullmatch(self, text: str) -> _Match | None: ...


def _re2_options() -> object:
    options = re2.Options()
    # A bad pattern is the admin's to fix, answered with a 422, not the log's.
    options.log_errors = False
    return options


_RE2_OPTIONS = _re2_options()


def compile_match(pattern: str) -> _Regex:
    """`pattern` compiled for RE2; NormalizationError("match", ...) when RE2
    refuses it (bad syntax, a backreference, lookaround, a repeat over 1000)."""
    try:
        return cast(_Regex, re2.compile(pattern, _RE2_OPTIONS))
    except re2.error as error:
        detail = error.args[0] if error.args else error
        text = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
        raise NormalizationError(
            "match",
            f"not a regular expression callbridge can run ({text}); the syntax is "
            "RE2's: Python's without backreferences or lookaround",
        ) from None


def check_replacement(regex: _Regex, template: str) -> None:
    """NormalizationError("replacement", ...) for a template `regex`'s matches
    cannot fill: a bad escape, a group the pattern lacks.

    Python's `re` reads the template against an empty stand-in with the same
    groups (names and numbers), so the mistake shows when the rule is saved
    rather than on a call."""
    names = {number: name for name, number in regex.groupindex.items()}
    stand_in = "".join(
        f"(?P<{names[number]}>)" if number in names else "()"
        for number in range(1, regex.groups + 1)
    )
    try:
        # sub() reads the whole template before it looks for a match.
        re.compile(stand_in).sub(template, "")
    except (re.error, IndexError) as error:
        raise NormalizationError(
            "replacement", f"not a replacement for this pattern: {error}"
        ) from None


def _compile_pattern(
    rule: NormalizationRule, problem: Callable[[str, str], None]
) -> _Rewrite | None:
    if not rule.match:
        problem("match", "a pattern rule needs a match pattern")
        return None
    try:
        regex = compile_match(rule.match)
    except NormalizationError as error:
        problem(error.field, error.problem)
        return None
    if rule.replacement is None:
        problem("replacement", "a pattern rule needs a replacement")
        return None
    template = rule.replacement
    try:
        check_replacement(regex, template)
    except NormalizationError as error:
        problem(error.field, error.problem)
        return None

    def rewrite(value: str, region: str) -> str:
        found = regex.fullmatch(value)
        return value if found is None else found.expand(template)

    return rewrite


def _format_rewrite(style: ProviderStyle) -> _Rewrite:
    def rewrite(value: str, region: str) -> str:
        converted = convert(value, region, style)
        return value if converted is None else converted

    return rewrite


class Normalizer:
    """The normalization rules of one applied configuration: an immutable
    snapshot, each rule compiled once, indexed by direction, line and field.

    `regions` gives each external line's region (ISO 3166 code), used to read
    national numbers; lines not listed use `default_region`. Raises
    NormalizationError for the first problem `validate_rules` would report.
    """

    __slots__ = ("_chains", "_default_region", "_regions", "_rules")

    def __init__(
        self,
        rules: Iterable[NormalizationRule],
        regions: Mapping[int, str],
        default_region: str,
    ) -> None:
        compiled: list[_CompiledRule] = []
        for rule in rules:
            one, problems = _compile(rule)
            if problems:
                first = problems[0]
                raise NormalizationError(first.field, first.problem, rule_id=first.rule_id)
            assert one is not None
            compiled.append(one)
        compiled.sort(key=lambda c: (c.rule.priority, c.rule.id))
        self._rules = tuple(c.rule for c in compiled)
        self._regions = {line: region.upper() for line, region in regions.items()}
        self._default_region = default_region.upper()
        # (direction, line or None, field) -> the rewrites in order; a line
        # with no rules of its own is looked up as None.
        lines = {c.rule.external_line_id for c in compiled} | {None}
        self._chains: dict[tuple[str, int | None, str], tuple[_Rewrite, ...]] = {}
        for direction in DIRECTIONS:
            for line in lines:
                for field in FIELDS:
                    chain = tuple(
                        c.rewrite
                        for c in compiled
                        if c.rule.direction == direction
                        and c.rule.external_line_id in (None, line)
                        and field in c.rule.fields
                    )
                    if chain:
                        self._chains[(direction, line, field)] = chain

    @property
    def rules(self) -> tuple[NormalizationRule, ...]:
        """The rules in the order they apply: by priority, then id."""
        return self._rules

    def region_of(self, external_line_id: int | None) -> str:
        if external_line_id is None:
            return self._default_region
        return self._regions.get(external_line_id, self._default_region)

    def normalize_number(
        self,
        number: str,
        *,
        direction: Direction,
        external_line_id: int | None,
        field: Field,
    ) -> str:
        """`number` through every rule of `direction` on the line (and on
        every line) that lists `field`, in order, each rule's output feeding
        the next. A value longer than MAX_NUMBER_LENGTH is no phone number
        and stays as it is: no rule sees it."""
        chain = self._chain(direction, external_line_id, field)
        if not chain:
            return number
        region = self.region_of(external_line_id)
        for rewrite in chain:
            # Checked before each rule: one rule's output may outgrow it.
            if len(number) > MAX_NUMBER_LENGTH:
                break
            number = rewrite(number, region)
        return number

    def normalize_request(
        self,
        request: Request,
        *,
        direction: Direction,
        external_line_id: int | None,
    ) -> Originals:
        """Rewrite, in place, the user part of the Request-URI, From, To and
        P-Asserted-Identity (sip:, sips: and tel: URIs) and the From display
        name, as the rules say; parameters, tags and display names otherwise
        stay as they were. Returns the original text of what changed."""

        def rewrite(value: str, field: Field) -> str:
            return self.normalize_number(
                value, direction=direction, external_line_id=external_line_id, field=field
            )

        def has_rules(field: Field) -> bool:
            return bool(self._chain(direction, external_line_id, field))

        original_uri = original_from = original_to = original_pai = original_display = None
        if has_rules("request_uri"):
            new_uri = _with_user(request.uri, lambda user: rewrite(user, "request_uri"))
            if new_uri is not None:
                original_uri = str(request.uri)
                request.uri = new_uri
        if has_rules("from") or has_rules("display_name"):
            new_from, original_display = self._normalized_from(request.from_, rewrite, has_rules)
            if new_from is not None:
                original_from = request.headers.get("From")
                request.headers.set("From", str(new_from))
        if has_rules("to"):
            new_to = _with_address_user(request.to, lambda user: rewrite(user, "to"))
            if new_to is not None:
                original_to = request.headers.get("To")
                request.headers.set("To", str(new_to))
        if has_rules("pai") and PAI in request.headers:
            original_pai = _normalize_pai(request, lambda user: rewrite(user, "pai"))
        return Originals(original_uri, original_from, original_to, original_pai, original_display)

    @staticmethod
    def _normalized_from(
        address: NameAddr,
        rewrite: Callable[[str, Field], str],
        has_rules: Callable[[Field], bool],
    ) -> tuple[NameAddr | None, str | None]:
        """The new From (None: unchanged) and the original display name if it changed."""
        new = _with_address_user(address, lambda user: rewrite(user, "from"))
        original_display = None
        display = address.display_name
        if display is not None and has_rules("display_name"):
            new_display = rewrite(display, "display_name")
            if new_display != display:
                original_display = display
                new = new if new is not None else address.copy()
                new.display_name = new_display
        return new, original_display

    def _chain(
        self, direction: str, external_line_id: int | None, field: str
    ) -> tuple[_Rewrite, ...]:
        chains = self._chains
        chain = chains.get((direction, external_line_id, field))
        if chain is None and external_line_id is not None:
            chain = chains.get((direction, None, field))
        return chain or ()


# ---------------------------------------------------------------- URIs

# What a SIP URI's user part may hold unescaped (RFC 3261 §25.1, user-unreserved).
_USER_SAFE = "-_.!~*'()&=+$,;?/"


def _with_user(uri: URI, rewrite: Callable[[str], str]) -> URI | None:
    """A copy of `uri` with its number rewritten; None when nothing changes
    (or the URI holds no number: no user part, an opaque scheme)."""
    if isinstance(uri, SipURI):
        if uri.user is None:
            return None
        user = unquote(uri.user)
        new_user = rewrite(user)
        if new_user == user:
            return None
        sip = uri.copy()
        sip.user = quote(new_user, safe=_USER_SAFE)
        return sip
    if isinstance(uri, TelURI):
        new_number = rewrite(uri.number)
        if new_number == uri.number:
            return None
        tel = uri.copy()
        tel.number = new_number
        return tel
    return None


def _with_address_user(address: NameAddr, rewrite: Callable[[str], str]) -> NameAddr | None:
    """A copy of `address` (display name and parameters kept) with its URI's
    number rewritten; None when nothing changes."""
    if address.wildcard:
        return None
    uri = _with_user(address.uri, rewrite)
    if uri is None:
        return None
    # NameAddr's copy() copies the URI too, which is about to be replaced.
    return NameAddr(uri, address.display_name, address.params.copy())


def _normalize_pai(request: Request, rewrite: Callable[[str], str]) -> str | None:
    """Rewrite every P-Asserted-Identity (RFC 3325: a sip and a tel one, on
    one line or two) into one line; the original text when it changed. A
    value that cannot be parsed is left alone."""
    values = request.headers.get_all(PAI)
    original = ", ".join(values)
    try:
        addresses = [a for value in values for a in parse_name_addr_list(value)]
    except ParseError:
        return None
    changed = False
    rewritten: list[NameAddr] = []
    for address in addresses:
        new = _with_address_user(address, rewrite)
        changed = changed or new is not None
        rewritten.append(new if new is not None else address)
    if not changed:
        return None
    request.headers.set(PAI, ", ".join(str(address) for address in rewritten))
    return original
