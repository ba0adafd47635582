"""The one error the SIP parser raises: it carries the status to answer with."""

from __future__ import annotations


class ParseError(ValueError):
    """A SIP message (or part of one) that cannot be understood.

    `status` is the response a server should send when the message was a
    request it can still answer (400 Bad Request, 414 Request-URI Too Long,
    505 Version Not Supported, 513 Message Too Large); `reason` is a short,
    human-readable phrase safe to put on the wire.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
