"""Answering a request too malformed to parse: reading just enough of it (Via,
Call-ID, CSeq, From, To) to address the error response (RFC 3261 §8.2.6.2)."""

from __future__ import annotations

import re

from ..sip import Headers, ParseError, Response
from ..sip.grammar import is_token
from ..sip.headers import header_key, parse_cseq, parse_via_list
from ..sip.message import split_head

_FOLD_RE = re.compile(r"\r?\n[ \t]+")
# Echoed values must not smuggle line breaks or other controls onto the wire.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_ECHOED = ("via", "from", "to", "call-id", "cseq")
_MAX_REASON = 120


def salvage_error_response(data: bytes, error: ParseError) -> Response | None:
    """The `error.status` response to the request in `data`, or None.

    None when `data` is not a request (a malformed response is never
    answered, RFC 3261 §18.1.2 drops it), is an ACK (never answered), or lacks
    a parseable top Via, a Call-ID or a CSeq to address an answer with.
    """
    try:
        fields = _read_fields(data)
    except (ParseError, UnicodeError):
        return None
    if fields is None:
        return None
    method, values = fields
    if method == "ACK" or len(values["call-id"]) != 1 or len(values["cseq"]) != 1:
        return None
    call_id = values["call-id"][0]
    if not call_id or any(c in call_id for c in " \t"):
        return None
    try:
        if parse_cseq(values["cseq"][0]).method == "ACK":
            return None
        vias = _answerable_vias(values["via"])
    except ParseError:
        return None
    headers = Headers()
    for via in vias:
        headers.add("Via", via)
    for key, name in (("from", "From"), ("to", "To")):
        if values[key]:
            headers.add(name, values[key][0])
    headers.add("Call-ID", call_id)
    headers.add("CSeq", values["cseq"][0])
    reason = _CONTROL_RE.sub(" ", error.reason)[:_MAX_REASON] or "Bad Request"
    return Response(error.status, reason, headers)


def _read_fields(data: bytes) -> tuple[str, dict[str, list[str]]] | None:
    raw_head, _ = split_head(data.lstrip(b"\r\n"))
    head = _FOLD_RE.sub(" ", raw_head.decode("utf-8", "surrogateescape"))
    start, *lines = head.replace("\r\n", "\n").split("\n")
    method = start.split(" ", 1)[0]
    if not is_token(method) or method.upper().startswith("SIP/"):
        return None
    values: dict[str, list[str]] = {key: [] for key in _ECHOED}
    for line in lines:
        name, colon, value = line.partition(":")
        key = header_key(name.strip(" \t"))
        if not colon or key not in values:
            continue
        value = value.strip(" \t")
        # An unusable value stays as an empty one, so that a later field
        # cannot take its place (a second Via is not the top one).
        values[key].append("" if _CONTROL_RE.search(value) else value)
    return method, values


def _answerable_vias(lines: list[str]) -> list[str]:
    """Every Via value when all parse, else only the top one (which must).

    The response travels by the top Via; the others only matter to proxies on
    the way back, and one that cannot be read is better left out than echoed.
    """
    # A first field of only commas or blanks holds no Via at all.
    top = parse_via_list(lines[0]) if lines else []
    if not top:
        raise ParseError(400, "Missing Via")
    try:
        return [str(via) for line in lines for via in parse_via_list(line)]
    except ParseError:
        return [str(top[0])]
