"""Lexical pieces shared by SIP headers and URIs: tokens, quoted strings,
comments, parameter lists and quote-aware splitting (RFC 3261 §25.1)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from .errors import ParseError

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_NEEDS_QUOTES_RE = re.compile(r"[^A-Za-z0-9\-.!%*_+`'~]")


def is_token(text: str) -> bool:
    return TOKEN_RE.fullmatch(text) is not None


# quoted-string = DQUOTE *(qdtext / quoted-pair) DQUOTE; the two branches
# share no first character, so matching is linear.
_QUOTED_RE = re.compile(r'"((?:[^"\\]++|\\.)*+)"', re.S)
# Split on quoted-pairs, keeping the escaped characters: joined back, the
# pieces are the unescaped text.
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.S)


def read_quoted(text: str, start: int) -> tuple[str, int]:
    """Read the quoted-string that opens at `text[start]`.

    Returns the unescaped content and the index just past the closing quote.
    """
    match = _QUOTED_RE.match(text, start)
    if match is None:
        raise ParseError(400, "Unterminated quoted string")
    content = match.group(1)
    if "\\" in content:
        content = "".join(_QUOTED_PAIR_RE.split(content))
    return content, match.end()


# Comments nest; a hostile value of nothing but "(" must not recurse.
MAX_COMMENT_DEPTH = 32


def read_comment(text: str, start: int) -> tuple[str, int]:
    """Read the comment that opens at `text[start]` (RFC 3261 §25.1:
    `( *(ctext / quoted-pair / comment) )`, nested comments included).

    Returns its unescaped content without the outer parentheses (inner ones
    kept) and the index just past the closing parenthesis.
    """
    out: list[str] = []
    depth = 0
    i = start
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            out.append(text[i + 1])
            i += 2
            continue
        if ch == "(":
            depth += 1
            if depth > MAX_COMMENT_DEPTH:
                raise ParseError(400, "Comment nested too deeply")
            if depth > 1:
                out.append(ch)
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return "".join(out), i + 1
            out.append(ch)
        else:
            out.append(ch)
        i += 1
    raise ParseError(400, "Unterminated comment")


def quote(text: str) -> str:
    """Render `text` as a quoted-string, escaping quotes and backslashes."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_if_needed(text: str) -> str:
    return text if text and not _NEEDS_QUOTES_RE.search(text) else quote(text)


def split_outside(text: str, sep: str, *, angles: bool = True) -> list[str]:
    """Split on `sep` where it is not inside a quoted string (or <...>)."""
    if sep not in text:
        return [text]
    if '"' not in text and not (angles and "<" in text):
        return text.split(sep)
    parts: list[str] = []
    depth = 0
    begin = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            _, i = read_quoted(text, i)
            continue
        if angles and ch == "<":
            depth += 1
        elif angles and ch == ">" and depth:
            depth -= 1
        elif ch == sep and not depth:
            parts.append(text[begin:i])
            begin = i + 1
        i += 1
    if depth:
        raise ParseError(400, "Unbalanced angle brackets")
    parts.append(text[begin:])
    return parts


# `;name=value` parameters without quotes or whitespace, read in one split.
# The name cannot hold "=" or ";", the value cannot hold ";": one way to match.
_PLAIN_PARAMS_RE = re.compile(r"(?:;[A-Za-z0-9\-.!%*_+`'~]++(?:=[^;\s\"]*+)?)++")


class Params:
    """An ordered, case-insensitive list of `;name=value` parameters.

    Values keep their original spelling (quoted values keep their quotes)
    so a message re-serializes exactly as it arrived.
    """

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[str, str | None]] | None = None) -> None:
        self._items: list[tuple[str, str | None]] = items if items is not None else []

    @classmethod
    def parse(cls, text: str) -> Params:
        """Parse `;a=1;b;c="x;y"` (the leading `;` is optional)."""
        items: list[tuple[str, str | None]] = []
        if _PLAIN_PARAMS_RE.fullmatch(text):
            for part in text[1:].split(";"):
                name, eq, value = part.partition("=")
                items.append((name, value if eq else None))
            return cls(items)
        text = text.strip()
        if not text:
            return cls(items)
        if text[0] == ";":
            text = text[1:]
        for part in split_outside(text, ";", angles=False):
            name, eq, value = part.partition("=")
            name = name.strip()
            if not name or not is_token(name):
                raise ParseError(400, f"Malformed parameter {part.strip()!r:.40}")
            if eq:
                value = value.strip()
                if value.startswith('"'):
                    _, end = read_quoted(value, 0)
                    if value[end:].strip():
                        raise ParseError(400, f"Malformed parameter {name!r:.40}")
                elif '"' in value:
                    # Split alone, the last value keeps a stray quote that
                    # would open a quoted string once another parameter
                    # follows it (the `received` a transport adds to a Via).
                    raise ParseError(400, f"Malformed parameter {name!r:.40}")
                items.append((name, value))
            else:
                items.append((name, None))
        return cls(items)

    def get(self, name: str, default: str | None = None) -> str | None:
        key = name.lower()
        for k, v in self._items:
            if k == key or k.lower() == key:
                if v is not None and v.startswith('"'):
                    return read_quoted(v, 0)[0]
                return v
        return default

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower()
        for k, _ in self._items:  # noqa: SIM110 - no generator on this hot path
            if k == key or k.lower() == key:
                return True
        return False

    def set(self, name: str, value: str | None) -> None:
        """Set `name` (replacing it in place if present); quotes when needed."""
        if value is not None and not is_token(value) and not _looks_like_host(value):
            value = quote(value)
        key = name.lower()
        for i, (k, _) in enumerate(self._items):
            if k.lower() == key:
                self._items[i] = (k, value)
                return
        self._items.append((name, value))

    def remove(self, name: str) -> None:
        key = name.lower()
        self._items = [(k, v) for k, v in self._items if k.lower() != key]

    def items(self) -> Iterator[tuple[str, str | None]]:
        return iter(self._items)

    def copy(self) -> Params:
        return Params(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Params):
            return NotImplemented
        return self._items == other._items

    def __str__(self) -> str:
        return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self._items)

    def __repr__(self) -> str:
        return f"Params({self._items!r})"


_HOSTISH_RE = re.compile(r"[A-Za-z0-9\-.:\[\]]+")


def _looks_like_host(value: str) -> bool:
    # received=, maddr= take hosts, including IPv6 addresses with colons.
    return _HOSTISH_RE.fullmatch(value) is not None
