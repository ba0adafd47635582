"""Mutations of SIP messages for the live-server fuzzer: byte-level damage
(flips, inserts, deletes, splices) and SIP-aware damage (header lines
duplicated or dropped, over-long values, CR/LF and NUL injected into a value,
absurd Content-Length and other numbers). Every choice comes from the
`random.Random` it is given, so one seed replays one run exactly."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Mutation = Callable[[random.Random, bytes, Sequence[bytes]], bytes]

# Bytes a SIP parser treats specially, tried more often than chance would.
_SPECIAL = b"\x00\r\n\t :;,<>\"'\\@=%[]?&\x7f\xff"
_NUMBERS = (
    b"-1",
    b"0",
    b"00000000000000000000000000000001",
    b"4294967296",
    b"9223372036854775808",
    b"99999999999999999999999999999999999999",
    b"1e9",
    b"0x10",
    b"+5",
    b"",
    b"\xd9\xa3",  # ARABIC-INDIC DIGIT THREE: a digit to str.isdigit(), not to SIP
    b"NaN",
)
_CONTENT_LENGTHS = (b"2147483648", b"18446744073709551616", b"-1", b"999999999", b"1" * 40)
_OVERLONG = (256, 1024, 8192, 70_000)
_INJECTIONS = (
    b"\r\nX-Injected: 1",
    b"\r\n\r\n",
    b"\r\nVia: SIP/2.0/UDP 127.0.0.9;branch=z9hG4bKinjected",
    b"\x00",
    b"\n",
    b"\r",
    b"\x00\r\n",
)
_NUMBER_RE = re.compile(rb"\d+")
_TOKEN_RE = re.compile(rb"[A-Za-z0-9.!%*_+`'~\-]+")


@dataclass(frozen=True)
class Case:
    """One fuzz case: the bytes to send and how they were made (for a report)."""

    data: bytes
    origin: str
    mutations: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.origin} <- {' + '.join(self.mutations)}: {self.data[:200]!r}"


def _position(rng: random.Random, data: bytes) -> int:
    return rng.randrange(len(data) + 1)


def _split_head(data: bytes) -> tuple[list[bytes], bytes]:
    """The header lines (start line first) and the rest from the empty line on."""
    head, sep, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), sep + body


def _join_head(lines: list[bytes], rest: bytes) -> bytes:
    return b"\r\n".join(lines) + rest


def flip_bits(rng: random.Random, data: bytes, corpus: Sequence[bytes]) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def insert_bytes(rng: random.Random, data: bytes, corpus: Sequence[bytes]) -> bytes:
    count = rng.randint(1, 16)
    noise = bytes(
        rng.choice(_SPECIAL) if rng.random() < 0.6 else rng.randrange(256) for _ in range(count)
    )
    at = _position(rng, data)
    return data[:at] + noise + data[at:]


def delete_span(rng: random.Random, data: bytes, corpus: Sequence[bytes]) -> bytes:
    if not data:
        return data
    start = rng.randrange(len(data))
    end = min(len(data), start + rng.choice((1, 2, 8, 64, len(data))))
    return data[:start] + data[end:]


def truncate(rng: random.Random, data: bytes, corpus: Sequence[bytes]) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def duplicate_header(rng: random.Random, data: bytes, corpus: Sequence[bytes]) -> bytes:
    lines, rest = _split_head(data)
    if len(lines) < 2:
        return data
    line = lines[rng.randrange(1, len(lines))]
    for _ in range(rng.choice((1, 1, 2, 40))):
        lines.insert(rng.randrange(1, len(lines) + 1), line)
    return _join_head(lines, rest)


def drop_header(rng: random.Random, data: bytes, corpus: Sequence[bytes]) -> bytes:
    lines, rest = _split_head(data)
    if len(lines) < 2:
        return data
    del lines[rng.randrange(1, len(lines))]
    return _join_head(lines, rest)


def swap_lines(rng: random.Random, data: bytes, corpus: Sequence[bytes]) -> bytes:
    lines, rest = _split_head(data)
    if len(lines) < 2:
        return data
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return _join_head(lines, rest)


def splice(rng: random.Random, data: bytes, corpus: Sequence[bytes]) -> bytes:
    other = rng.choice(corpus)
    return data[: _position(rng, data)] + other[_position(rng, other) :]


def overlong_value(rng: random.Random, data: bytes, corpus: Sequence[bytes]) -> bytes:
    tokens = list(_TOKEN_RE.finditer(data))
    if not tokens:
        return data + b"A" * rng.choice(_OVERLONG)
    token = rng.choice(tokens)
    filler = rng.choice((b"A", b"9", b"%41", b";x", b",<sip:a@b>"))
    long = (filler * (rng.choice(_OVERLONG) // len(filler) + 1))[: rng.choice(_OVERLONG)]
    return data[: token.start()] + long + data[token.end() :]


def inject(rng: random.Random, data: bytes, corpus: Sequence[bytes]) -> bytes:
    """CR, LF or NUL inside a header value (header injection)."""
    lines, rest = _split_head(data)
    index = rng.randrange(len(lines))
    line = lines[index]
    at = rng.randrange(len(line) + 1)
    lines[index] = line[:at] + rng.choice(_INJECTIONS) + line[at:]
    return _join_head(lines, rest)


def content_length(rng: random.Random, data: bytes, corpus: Sequence[bytes]) -> bytes:
    value = rng.choice(_CONTENT_LENGTHS)
    replaced, count = re.subn(
        rb"(?im)^(Content-Length|l)[ \t]*:[^\r\n]*", rb"\1: " + value, data, count=1
    )
    if count:
        return replaced
    lines, rest = _split_head(data)
    lines.insert(len(lines), b"Content-Length: " + value)
    return _join_head(lines, rest)


def bad_number(rng: random.Random, data: bytes, corpus: Sequence[bytes]) -> bytes:
    numbers = list(_NUMBER_RE.finditer(data))
    if not numbers:
        return data
    number = rng.choice(numbers)
    return data[: number.start()] + rng.choice(_NUMBERS) + data[number.end() :]


def swap_token(rng: random.Random, data: bytes, corpus: Sequence[bytes]) -> bytes:
    """A token of this message replaced by a token of any corpus message."""
    tokens = list(_TOKEN_RE.finditer(data))
    donors = list(_TOKEN_RE.finditer(rng.choice(corpus)))
    if not tokens or not donors:
        return data
    token = rng.choice(tokens)
    return data[: token.start()] + rng.choice(donors).group() + data[token.end() :]


MUTATIONS: tuple[Mutation, ...] = (
    flip_bits,
    insert_bytes,
    delete_span,
    truncate,
    duplicate_header,
    drop_header,
    swap_lines,
    splice,
    overlong_value,
    inject,
    content_length,
    bad_number,
    swap_token,
)


def mutate(
    rng: random.Random, origin: str, data: bytes, corpus: Sequence[bytes], *, rounds: int = 3
) -> Case:
    """`data` with one to `rounds` mutations stacked."""
    applied = []
    for _ in range(rng.randint(1, rounds)):
        mutation = rng.choice(MUTATIONS)
        data = mutation(rng, data, corpus)
        applied.append(mutation.__name__)
    return Case(data, origin, tuple(applied))


def cases(
    seed: int, corpus: Sequence[tuple[str, bytes]], count: int, *, max_size: int | None = None
) -> list[Case]:
    """`count` cases from `corpus` (name, bytes): the same list for the same seed.
    About one in twenty is a corpus message unchanged, so that valid traffic
    keeps reaching the layers behind the parser between the damaged ones."""
    rng = random.Random(seed)
    messages = [data for _, data in corpus]
    out = []
    for _ in range(count):
        origin, data = rng.choice(corpus)
        if rng.random() < 0.05:
            case = Case(data, origin, ())
        else:
            case = mutate(rng, origin, data, messages)
        if max_size is not None and len(case.data) > max_size:
            case = Case(case.data[:max_size], case.origin, (*case.mutations, "clip"))
        out.append(case)
    return out
