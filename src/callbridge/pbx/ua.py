"""The user agent server at the edge of the PBX: what callbridge answers to
a request that is not part of anything it handles yet.

It decides, it does not send: `answer(request)` returns the response (or
None for ACK, which is never answered).
"""

from __future__ import annotations

from ..sip import Request, Response, make_response
from ..sip.transaction import new_tag

# What the PBX core implements today; each later feature adds its method.
ALLOWED_METHODS = ("OPTIONS", "ACK", "CANCEL", "BYE")
ACCEPTED_BODIES = ("application/sdp",)
SUPPORTED_EXTENSIONS: tuple[str, ...] = ()

# Methods that only make sense inside a dialog or transaction: without one
# the answer is 481, not "not implemented".
_NEED_A_DIALOG = frozenset({"BYE", "INFO", "UPDATE", "PRACK", "NOTIFY"})
_URI_SCHEMES = frozenset({"sip", "sips", "tel"})

_ALLOW = ("Allow", ", ".join(ALLOWED_METHODS))
# What OPTIONS advertises (RFC 3261 §11.2).
_CAPABILITIES = [
    _ALLOW,
    ("Accept", ", ".join(ACCEPTED_BODIES)),
    ("Accept-Encoding", "identity"),
    ("Accept-Language", "en"),
    # Empty until an extension is implemented: the ABNF allows no option tag.
    ("Supported", ", ".join(SUPPORTED_EXTENSIONS)),
]


class UserAgent:
    """Answers OPTIONS, refuses what it cannot do with the RFC's status."""

    def __init__(self, *, user_agent: str = "callbridge") -> None:
        self.user_agent = user_agent

    def answer(self, request: Request) -> Response | None:
        method = request.method
        if method == "ACK":
            return None
        if request.uri.scheme not in _URI_SCHEMES:
            return self._reply(request, 416, headers=[("Accept", ", ".join(ACCEPTED_BODIES))])
        unsupported = self._unsupported_extensions(request)
        if unsupported and method != "CANCEL":
            return self._reply(request, 420, headers=[("Unsupported", ", ".join(unsupported))])
        if method == "OPTIONS":
            return self._reply(request, 200, headers=_CAPABILITIES)
        if method == "CANCEL" or method in _NEED_A_DIALOG:
            # A CANCEL that reaches the UA matched no INVITE transaction.
            return self._reply(request, 481)
        return self._reply(request, 501, headers=[_ALLOW])

    def _unsupported_extensions(self, request: Request) -> list[str]:
        required = request.headers.get_all("Require") + request.headers.get_all("Proxy-Require")
        return [tag for tag in required if tag.lower() not in SUPPORTED_EXTENSIONS]

    def _reply(
        self, request: Request, status: int, *, headers: list[tuple[str, str]] | None = None
    ) -> Response:
        return make_response(
            request,
            status,
            to_tag=new_tag(),
            headers=[*(headers or []), ("Server", self.user_agent)],
        )
