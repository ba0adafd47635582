"""The sans-IO SIP core: messages, URIs, SDP, digest, transactions, dialogs.

Nothing here opens a socket, starts a task or reads a clock: bytes come in,
bytes and events go out, and `now` is always passed in.
"""

from .errors import ParseError
from .headers import CSeq, Via
from .message import (
    DEFAULT_LIMITS,
    Headers,
    Limits,
    Message,
    Request,
    Response,
    make_response,
    parse,
    status_reason,
)
from .uri import (
    URI,
    AbsoluteURI,
    NameAddr,
    SipURI,
    TelURI,
    display_text,
    escape_user,
    name_addr,
    parse_name_addr,
    parse_uri,
    sip_uri,
)

__all__ = [
    "DEFAULT_LIMITS",
    "URI",
    "AbsoluteURI",
    "CSeq",
    "Headers",
    "Limits",
    "Message",
    "NameAddr",
    "ParseError",
    "Request",
    "Response",
    "SipURI",
    "TelURI",
    "Via",
    "display_text",
    "escape_user",
    "make_response",
    "name_addr",
    "parse",
    "parse_name_addr",
    "parse_uri",
    "sip_uri",
    "status_reason",
]
