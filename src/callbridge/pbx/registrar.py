"""The registrar's rules (RFC 3261 §10.3, with RFC 5626's device identity):
which bindings a REGISTER adds, refreshes, replaces or removes, what it
answers, and when a binding has expired.

It decides on a request that has already been authenticated and whose line
is known; it keeps bindings in a `Location` (in memory here; persisted and,
later, shared between nodes behind the same interface). No I/O, no clock:
`now` is passed in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Protocol

from ..sip import NameAddr, ParseError, Request, Response, make_response
from ..sip.uri import URI, parse_name_addr
from . import bounds

# RFC 5626 §4: the Contact parameters that name a device and its flow.
_INSTANCE = "+sip.instance"
_REG_ID = "reg-id"
# 1 to 2**31 - 1 (RFC 5626 §4.2): at most ten digits, no leading zero.
_REG_ID_RE = re.compile(r"[1-9][0-9]{0,9}")


@dataclass(frozen=True, slots=True)
class RegistrarPolicy:
    """Limits on binding lifetimes, in seconds."""

    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600


@dataclass(frozen=True, slots=True)
class Binding:
    """One device registered for a line: where to reach it and until when.

    `source` is where the REGISTER came from (the flow behind a NAT: requests
    to the device go back there, not to a private Contact address). `path`
    is the proxies the REGISTER came through that asked to stay on the way
    to the device (RFC 3327): requests to it are routed through them.
    """

    aor: str
    contact: NameAddr
    expires_at: float
    call_id: str
    cseq: int
    source: object = None
    user_agent: str | None = None
    path: tuple[NameAddr, ...] = ()
    # The credential a browser signed its REGISTER with: its binding goes
    # when that credential is revoked. None for a line's own account.
    signed_by: str | None = None

    @property
    def uri(self) -> URI:
        return self.contact.uri

    @property
    def instance(self) -> str | None:
        """The device's `+sip.instance` (RFC 5626 §4.1), if it sent one."""
        return self.contact.params.get(_INSTANCE)

    @property
    def reg_id(self) -> str | None:
        """Which of the device's flows this is (RFC 5626 §4.2); meaningless
        without an instance."""
        return self.contact.params.get(_REG_ID) if self.instance is not None else None

    def seconds_left(self, now: float) -> int:
        return max(0, round(self.expires_at - now))


class Location(Protocol):
    """Where bindings live: one AOR's bindings are read and replaced whole."""

    def bindings(self, aor: str, now: float) -> list[Binding]: ...

    def replace(self, aor: str, bindings: list[Binding]) -> None: ...

    def aors(self) -> list[str]:
        """Every AOR that may have bindings (expired ones included)."""
        ...


class MemoryLocation:
    """Bindings in a dict: expired ones are dropped whenever an AOR is read."""

    def __init__(self) -> None:
        self._by_aor: dict[str, list[Binding]] = {}

    def bindings(self, aor: str, now: float) -> list[Binding]:
        current = [b for b in self._by_aor.get(aor, ()) if b.expires_at > now]
        if current:
            self._by_aor[aor] = current
        else:
            self._by_aor.pop(aor, None)
        return list(current)

    def replace(self, aor: str, bindings: list[Binding]) -> None:
        if bindings:
            self._by_aor[aor] = list(bindings)
        else:
            self._by_aor.pop(aor, None)

    def aors(self) -> list[str]:
        return list(self._by_aor)


class RegistrationRefused(Exception):
    """A REGISTER the registrar answers with an error; nothing was changed."""

    def __init__(self, status: int, reason: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.headers = list(headers)


class Registrar:
    """Applies REGISTER requests to a `Location` under a `RegistrarPolicy`.

    `flow_alive(source)` says whether a binding's flow still reaches its
    device (a TCP connection that closed does not): a binding whose flow is
    dead is no device, and never counts against a line's `max_devices`.
    """

    def __init__(
        self,
        location: Location,
        policy: RegistrarPolicy | None = None,
        *,
        flow_alive: Callable[[object], bool] = lambda source: True,
    ) -> None:
        self.location = location
        self.policy = policy or RegistrarPolicy()
        self.flow_alive = flow_alive

    def register(
        self,
        request: Request,
        *,
        aor: str,
        max_devices: int,
        source: object,
        now: float,
        to_tag: str,
        max_expires: int | None = None,
        signed_by: str | None = None,
    ) -> Response:
        """Apply `request` for the line `aor` and build the answer: 200 with
        the current bindings, or the error that left every binding as it was.
        `max_expires` caps this REGISTER's bindings below the policy's (a
        credential that expires sooner); `signed_by` names that credential."""
        try:
            bindings = self._apply(request, aor, max_devices, source, now, max_expires, signed_by)
        except RegistrationRefused as refused:
            return make_response(
                request, refused.status, refused.reason, to_tag=to_tag, headers=refused.headers
            )
        self.location.replace(aor, bindings)
        headers = [
            *(("Contact", _contact_value(b, now)) for b in bindings),
            ("Date", formatdate(usegmt=True)),
            ("Supported", "path"),
        ]
        if "path" in _option_tags(request, "Supported"):
            # RFC 3327 §5.3: the Path stored goes back to a UA that asked for it.
            headers.extend(("Path", value) for value in request.headers.get_all("Path"))
        return make_response(request, 200, to_tag=to_tag, headers=headers)

    def reachable(self, binding: Binding) -> bool:
        """Whether requests still reach the device: by its Path (the proxy
        in front keeps its own connection to it), else by its flow."""
        return bool(binding.path) or self.flow_alive(binding.source)

    def forget(self, gone: Callable[[Binding], bool], now: float) -> int:
        """Remove, from every AOR, the bindings `gone` picks (a flow that
        closed and was not replaced); returns how many went."""
        removed = 0
        for aor in self.location.aors():
            bindings = self.location.bindings(aor, now)
            kept = [b for b in bindings if not gone(b)]
            if len(kept) < len(bindings):
                self.location.replace(aor, kept)
                removed += len(bindings) - len(kept)
        return removed

    def _apply(
        self,
        request: Request,
        aor: str,
        max_devices: int,
        source: object,
        now: float,
        max_expires: int | None = None,
        signed_by: str | None = None,
    ) -> list[Binding]:
        try:
            contacts = request.contacts
        except ParseError as error:
            raise RegistrationRefused(400, error.reason) from None
        header_expires = _expires_header(request)
        path = _path(request)
        current = self.location.bindings(aor, now)
        call_id, cseq = request.call_id, request.cseq.seq
        if any(c.wildcard for c in contacts):
            return self._remove_all(contacts, header_expires, current, call_id, cseq)
        updated = list(current)
        user_agent = request.headers.get("User-Agent")
        if user_agent is not None:
            user_agent = bounds.printable(user_agent, bounds.USER_AGENT_MAX)
        for contact in contacts:
            if not bounds.is_clean(contact.display_name or "") or not bounds.is_clean(str(contact)):
                # Kept, and written into requests to the device: a control
                # character in its display name or parameters goes no further.
                raise RegistrationRefused(400, "Control Character in Contact")
            _check_device(contact)
            expires = self._lifetime(contact, header_expires)
            if max_expires is not None and expires > 0:
                expires = max(1, min(expires, max_expires))
            earlier = [b for b in updated if any(b is c for c in current)]
            replaced = _same_device(contact, call_id, updated, earlier)
            for known in replaced:
                _check_order(known, call_id, cseq)
                updated.remove(known)
            if expires == 0:
                continue
            if not replaced:
                self._make_room(updated, earlier, max_devices)
            updated.append(
                Binding(
                    aor=aor,
                    contact=_without_expires(contact),
                    expires_at=now + expires,
                    call_id=call_id,
                    cseq=cseq,
                    source=source,
                    user_agent=user_agent,
                    path=path,
                    signed_by=signed_by,
                )
            )
        return updated

    def _make_room(self, bindings: list[Binding], earlier: list[Binding], max_devices: int) -> None:
        """Make room in `bindings` for one more device: `earlier` bindings
        whose flow is dead give theirs up, the earliest first; 403 if live
        ones fill it."""
        dead = [b for b in earlier if not self.reachable(b)]
        for binding in dead[: max(0, len(bindings) - max_devices + 1)]:
            bindings.remove(binding)
        if len(bindings) >= max_devices:
            raise RegistrationRefused(
                403,
                "Too Many Devices",
                [("Warning", f'399 callbridge "at most {max_devices} devices on this line"')],
            )

    def _lifetime(self, contact: NameAddr, header_expires: int | None) -> int:
        text = contact.params.get("expires")
        if text is not None:
            if not text.isdigit() or not text.isascii():
                raise RegistrationRefused(400, "Malformed expires parameter")
            expires = _delta_seconds(text)
        elif header_expires is not None:
            expires = header_expires
        else:
            expires = self.policy.default_expires
        if 0 < expires < self.policy.min_expires:
            raise RegistrationRefused(
                423, "Interval Too Brief", [("Min-Expires", str(self.policy.min_expires))]
            )
        return min(expires, self.policy.max_expires)

    def _remove_all(
        self,
        contacts: list[NameAddr],
        header_expires: int | None,
        current: list[Binding],
        call_id: str,
        cseq: int,
    ) -> list[Binding]:
        # §10.3 step 6: "*" only alone, and only with Expires: 0.
        if len(contacts) != 1 or header_expires != 0:
            raise RegistrationRefused(400, "Contact * needs Expires: 0 and no other Contact")
        for binding in current:
            _check_order(binding, call_id, cseq)
        return []


def _expires_header(request: Request) -> int | None:
    text = request.headers.get("Expires")
    if text is None:
        return None
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        raise RegistrationRefused(400, "Malformed Expires")
    return _delta_seconds(text)


def _delta_seconds(digits: str) -> int:
    """ASCII digits as delta-seconds, capped at 2**32 - 1 (RFC 3261 §27.2)
    without converting thousands of digits (Python refuses past 4,300)."""
    digits = digits.lstrip("0") or "0"
    return 2**32 - 1 if len(digits) > 10 else min(int(digits), 2**32 - 1)


def _check_device(contact: NameAddr) -> None:
    """Refuse a device identity that does not fit what is kept of it."""
    instance = contact.params.get(_INSTANCE)
    if instance is None:
        return
    if not 0 < len(instance) <= bounds.INSTANCE_MAX:
        raise RegistrationRefused(400, "Malformed +sip.instance")
    reg_id = contact.params.get(_REG_ID)
    if reg_id is not None and not (_REG_ID_RE.fullmatch(reg_id) and int(reg_id) < 2**31):
        raise RegistrationRefused(400, "Malformed reg-id")


def _same_device(
    contact: NameAddr, call_id: str, bindings: list[Binding], earlier: list[Binding]
) -> list[Binding]:
    """The bindings `contact` takes the place of, the most telling key first:
    its URI (§10.3); else the same instance and reg-id (RFC 5626 §6),
    whatever the URI; else, for a device without an instance, the same
    Call-ID — a phone that reconnects from a new port keeps its Call-ID and
    changes its Contact's port. Only bindings of `earlier` REGISTERs are
    replaced by the keys other than the URI: contacts registered together
    stay side by side."""
    by_uri = [b for b in bindings if b.uri == contact.uri]
    if by_uri:
        return by_uri
    instance = contact.params.get(_INSTANCE)
    if instance is not None:
        reg_id = contact.params.get(_REG_ID)
        return [b for b in earlier if b.instance == instance and b.reg_id == reg_id]
    return [b for b in earlier if b.call_id == call_id and b.instance is None]


def _path(request: Request) -> tuple[NameAddr, ...]:
    """The Path the REGISTER came with, nearest proxy first, bounded: it is
    kept, and written as Route into every request to the device."""
    try:
        path = [parse_name_addr(value) for value in request.headers.get_all("Path")]
    except ParseError:
        raise RegistrationRefused(400, "Malformed Path") from None
    if len(path) > bounds.PATH_MAX_ENTRIES:
        raise RegistrationRefused(400, "Path Too Long")
    if not all(bounds.is_clean(str(entry)) for entry in path):
        raise RegistrationRefused(400, "Control Character in Path")
    if sum(len(str(entry)) + 2 for entry in path) > bounds.PATH_MAX:
        raise RegistrationRefused(400, "Path Too Long")
    return tuple(path)


def _option_tags(request: Request, header: str) -> set[str]:
    return {tag.lower() for tag in request.headers.get_all(header)}


def _check_order(binding: Binding, call_id: str, cseq: int) -> None:
    # §10.3 step 7: the same Call-ID with an older or equal CSeq is a stale
    # or reordered REGISTER; it must not undo a newer one.
    if binding.call_id == call_id and cseq <= binding.cseq:
        raise RegistrationRefused(500, "Out Of Order REGISTER", [("Retry-After", "1")])


def _without_expires(contact: NameAddr) -> NameAddr:
    if "expires" not in contact.params:
        return contact
    copy = contact.copy()
    copy.params.remove("expires")
    return copy


def _contact_value(binding: Binding, now: float) -> str:
    contact = binding.contact.copy()
    contact.params.set("expires", str(binding.seconds_left(now)))
    return str(contact)
