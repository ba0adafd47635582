"""The user agent server at the edge of the PBX: what callbridge answers to
a request outside any dialog.

It decides, it does not send: `answer(request, ...)` returns the response,
None for ACK (never answered), or DROP when the source must get nothing.
REGISTER goes through digest authentication and the registrar when the UA
is given them; methods the PBX does not serve yet get the RFC's refusal.
"""

from __future__ import annotations

from ..sip import Request, Response, make_response
from ..sip.transaction import new_tag
from . import bounds
from .auth import Authenticated, Authenticator, Drop
from .browser_credentials import Accounts, BrowserCredentials, Refused
from .lines import Lines
from .registrar import Registrar

ACCEPTED_BODIES = ("application/sdp",)
# RFC 3327: a registrar that keeps the Path of a registration.
SUPPORTED_EXTENSIONS: tuple[str, ...] = ("path",)

# Methods that only make sense inside a dialog or transaction: without one
# the answer is 481, not "not implemented".
_NEED_A_DIALOG = frozenset({"BYE", "INFO", "UPDATE", "PRACK", "NOTIFY"})
_URI_SCHEMES = frozenset({"sip", "sips", "tel"})


class UserAgent:
    """Answers OPTIONS and REGISTER; refuses the rest with the RFC's status.
    `calls` says whether a B2BUA takes INVITEs (it only changes Allow)."""

    def __init__(
        self,
        *,
        user_agent: str = "callbridge",
        lines: Lines | None = None,
        authenticator: Authenticator | None = None,
        registrar: Registrar | None = None,
        calls: bool = False,
        browser_credentials: BrowserCredentials | None = None,
    ) -> None:
        self.user_agent = user_agent
        self.browser_credentials = browser_credentials
        # Swapped whole by whoever applies a new configuration.
        self.lines = lines or Lines()
        self.authenticator = authenticator
        self.registrar = registrar
        methods = ["OPTIONS", "ACK", "CANCEL", "BYE"]
        if calls:  # a B2BUA takes INVITE and what its dialogs carry
            methods[:0] = ["INVITE"]
            methods.append("INFO")
        if registrar is not None and authenticator is not None:
            methods.append("REGISTER")
        self._allow = ("Allow", ", ".join(methods))
        self._capabilities = [
            self._allow,
            ("Accept", ", ".join(ACCEPTED_BODIES)),
            ("Accept-Encoding", "identity"),
            ("Accept-Language", "en"),
            # Empty until an extension is implemented: the ABNF allows no option tag.
            ("Supported", ", ".join(SUPPORTED_EXTENSIONS)),
        ]

    def answer(
        self,
        request: Request,
        *,
        source: str = "",
        peer: object = None,
        now: float = 0.0,
        transport: str = "udp",
    ) -> Response | Drop | None:
        """The answer to `request` from host `source` (flow `peer`, over
        `transport`) at `now`."""
        method = request.method
        if method == "ACK":
            return None
        refusal = self.refusal(request)
        if refusal is not None:
            return refusal
        if method == "OPTIONS":
            return self._reply(request, 200, headers=self._capabilities)
        if method == "REGISTER" and self.registrar is not None:
            return self._register(request, source=source, peer=peer, now=now, transport=transport)
        if method == "CANCEL" or method in _NEED_A_DIALOG:
            # A CANCEL that reaches the UA matched no INVITE transaction.
            return self._reply(request, 481)
        return self._reply(request, 501, headers=[self._allow])

    def refusal(self, request: Request) -> Response | None:
        """The answer to a request no one may take: a Call-ID the store cannot
        keep (400), an unknown URI scheme (416) or an extension it requires
        that we lack (420); else None."""
        if not bounds.call_id_ok(request.call_id):
            # Echoed in every answer and kept in the store: one that does
            # not fit, or carries what no Call-ID may, is refused whole.
            return self._reply(request, 400, "Bad Call-ID")
        if request.uri.scheme not in _URI_SCHEMES:
            return self._reply(request, 416, headers=[("Accept", ", ".join(ACCEPTED_BODIES))])
        unsupported = self._unsupported_extensions(request)
        if unsupported and request.method != "CANCEL":
            return self._reply(request, 420, headers=[("Unsupported", ", ".join(unsupported))])
        return None

    def _register(
        self, request: Request, *, source: str, peer: object, now: float, transport: str
    ) -> Response | Drop:
        assert self.registrar is not None and self.authenticator is not None
        accounts = Accounts(
            self.lines,
            self.browser_credentials,
            transport=transport,
            realm=self.authenticator.digest.realm,
        )
        tag = new_tag()
        outcome = self.authenticator.check(
            request,
            source=source,
            ha1_of=accounts.ha1_of,
            algorithms_of=accounts.digest_algorithms_of,
            now=now,
            to_tag=tag,
        )
        if not isinstance(outcome, Authenticated):
            return outcome
        try:
            line = accounts.line_of(outcome.username)
        except Refused as refused:
            # The digest was right, so this is no guess: told, not counted.
            return self._reply(request, 403, refused.reason, to_tag=tag)
        if line.disabled:
            # Only to whoever knows the password: a leaver's phone.
            return self._reply(request, 403, "Line Disabled", to_tag=tag)
        aor = request.to.uri
        user = getattr(aor, "user_unescaped", None)
        if user not in (line.number, line.username):
            # Authenticated, but asking for someone else's line.
            return self._reply(request, 403, "Not Your Line", to_tag=tag)
        seconds_left = accounts.seconds_left(outcome.username)
        return self.registrar.register(
            request,
            aor=line.number,
            max_devices=line.max_devices,
            source=peer,
            now=now,
            to_tag=tag,
            # A browser's binding ends with its credential.
            max_expires=seconds_left,
            signed_by=None if seconds_left is None else outcome.username,
        )

    def _unsupported_extensions(self, request: Request) -> list[str]:
        required = request.headers.get_all("Require") + request.headers.get_all("Proxy-Require")
        return [tag for tag in required if tag.lower() not in SUPPORTED_EXTENSIONS]

    def _reply(
        self,
        request: Request,
        status: int,
        reason: str | None = None,
        *,
        headers: list[tuple[str, str]] | None = None,
        to_tag: str | None = None,
    ) -> Response:
        return make_response(
            request,
            status,
            reason,
            to_tag=to_tag or new_tag(),
            headers=[*(headers or []), ("Server", self.user_agent)],
        )
