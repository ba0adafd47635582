"""ICE-lite (RFC 8445 §2.5) for a WebRTC leg, without sockets: our one host
candidate answers the browser's connectivity checks, and the check that
proves it knows our password chooses where the leg sends."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Final

from aioice import stun

Address = tuple[str, int]

# ice-char (RFC 8839 §5.4): letters, digits, "+" and "/".
ICE_CHARS: Final = frozenset(string.ascii_letters + string.digits + "+/")
UFRAG_LENGTH: Final = 8  # ≥ 4 characters, 24 bits of randomness (RFC 8839 §5.4)
PASSWORD_LENGTH: Final = 24  # ≥ 22 characters, 128 bits
_ALPHABET: Final = string.ascii_letters + string.digits
# A STUN message's first two bits are zero (RFC 7983 §7): the demultiplexer
# has already looked; this is the most a check from a browser needs.
MAX_STUN_BYTES: Final = 1280


def random_ice_string(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


@dataclass(frozen=True, slots=True)
class IceCredentials:
    ufrag: str
    pwd: str

    @classmethod
    def generate(cls) -> IceCredentials:
        return cls(random_ice_string(UFRAG_LENGTH), random_ice_string(PASSWORD_LENGTH))


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What a datagram that looked like STUN came to: `reply` to send back
    (None: dropped), and whether its source is now the leg's destination."""

    reply: bytes | None
    selected: bool = False


DROPPED: Final = CheckResult(None)


class IceLite:
    """The lite agent of one leg: it never sends a check of its own, it only
    answers the full agent's (the browser is always controlling).

    A check counts when it is a Binding request whose USERNAME is
    `our-ufrag:their-ufrag` and whose MESSAGE-INTEGRITY is keyed with our
    password: only someone who read our SDP can make one. The first such
    source becomes the destination; a later one replaces it only when its
    check carries USE-CANDIDATE (the controlling agent's nomination)."""

    def __init__(self, local: IceCredentials) -> None:
        self.local = local
        self.remote_ufrag: str | None = None
        self.selected: Address | None = None
        self.nominated = False
        self.refused = 0  # checks that failed the username or integrity test

    def set_remote(self, ufrag: str) -> None:
        if ufrag != self.remote_ufrag:
            self.remote_ufrag = ufrag

    def receive(self, data: bytes, addr: Address) -> CheckResult:
        if len(data) > MAX_STUN_BYTES:
            self.refused += 1
            return DROPPED
        try:
            message = stun.parse_message(data)
        except (ValueError, IndexError, UnicodeDecodeError):
            self.refused += 1
            return DROPPED
        if message.message_method != stun.Method.BINDING:
            return DROPPED
        if message.message_class != stun.Class.REQUEST:
            return DROPPED  # a lite agent sends no requests, so expects no responses
        if not self._authentic(message):
            self.refused += 1
            return DROPPED
        reply = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=message.transaction_id,
        )
        reply.attributes["XOR-MAPPED-ADDRESS"] = addr
        reply.add_message_integrity(self.local.pwd.encode())
        nominated = "USE-CANDIDATE" in message.attributes
        selected = False
        if self.selected is None or (nominated and not self.nominated and addr != self.selected):
            self.selected = addr
            selected = True
        self.nominated = self.nominated or (nominated and addr == self.selected)
        return CheckResult(bytes(reply), selected)

    def _authentic(self, message: stun.Message) -> bool:
        username = message.attributes.get("USERNAME")
        if not isinstance(username, str):
            return False
        ours, sep, theirs = username.partition(":")
        if not sep or ours != self.local.ufrag:
            return False
        if self.remote_ufrag is not None and theirs != self.remote_ufrag:
            return False  # the answer may come after the first checks: then any
        return message.check_message_integrity(self.local.pwd.encode())
