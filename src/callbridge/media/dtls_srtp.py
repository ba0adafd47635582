"""DTLS-SRTP (RFC 5763, 5764) for a WebRTC leg, without sockets: our
certificate and its fingerprint, the handshake fed datagram by datagram, and
the SRTP sessions keyed from it that turn SRTP into plain RTP and back."""

from __future__ import annotations

import datetime
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto
from typing import Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from pylibsrtp import Error as SrtpError
from pylibsrtp import Policy, Session

from .errors import MediaError

Role = Literal["client", "server"]
# The hashes a peer's a=fingerprint may name and we can check (RFC 8122 §5).
FINGERPRINT_HASHES: Final[dict[str, Callable[[], hashes.HashAlgorithm]]] = {
    "sha-1": hashes.SHA1,
    "sha-224": hashes.SHA224,
    "sha-256": hashes.SHA256,
    "sha-384": hashes.SHA384,
    "sha-512": hashes.SHA512,
}
# The most a handshake datagram may be: a browser's flights fit in one MTU.
MAX_DATAGRAM: Final = 1500
CERTIFICATE_DAYS: Final = 30


class DtlsError(MediaError):
    """The handshake failed: `reason` says how (a wrong fingerprint, a DTLS alert, no
    SRTP profile in common)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Profile:
    openssl_name: bytes
    libsrtp: int
    key_length: int
    salt_length: int


# Ours in order of preference; browsers offer both (RFC 7714, RFC 5764 §4.1.2).
_PROFILES: Final = (
    _Profile(b"SRTP_AEAD_AES_128_GCM", Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16, 12),
    _Profile(b"SRTP_AES128_CM_SHA1_80", Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16, 14),
)


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """An a=fingerprint: hash name (lower case) and the colon-separated hex digest (upper)."""

    algorithm: str
    value: str

    def __str__(self) -> str:
        return f"{self.algorithm} {self.value}"


def fingerprint_of(certificate: x509.Certificate, algorithm: str = "sha-256") -> Fingerprint:
    digest = certificate.fingerprint(FINGERPRINT_HASHES[algorithm]())
    return Fingerprint(algorithm, ":".join(f"{octet:02X}" for octet in digest))


class Certificate:
    """A self-signed ECDSA P-256 certificate: browsers trust it by the
    fingerprint in our SDP, not by its name, so one serves every leg."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        self.key = key
        self.certificate = certificate
        self.fingerprint = fingerprint_of(certificate)

    @classmethod
    def generate(cls, now: datetime.datetime | None = None) -> Certificate:
        now = now or datetime.datetime.now(datetime.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, secrets.token_hex(8))])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=CERTIFICATE_DAYS))
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    def context(self) -> SSL.Context:
        """An OpenSSL DTLS context presenting this certificate and asking the
        peer for its own (checked against its fingerprint after the handshake)."""
        context = SSL.Context(SSL.DTLS_METHOD)
        context.use_certificate(self.certificate)
        context.use_privatekey(self.key)
        # Any certificate passes OpenSSL: it is checked against the SDP's fingerprint.
        context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *_: True)
        context.set_tlsext_use_srtp(b":".join(p.openssl_name for p in _PROFILES))
        context.set_cipher_list(b"HIGH:!aNULL:!MD5:!RC4")
        return context


class State(Enum):
    HANDSHAKE = auto()
    CONNECTED = auto()
    FAILED = auto()
    CLOSED = auto()


class DtlsSrtp:
    """One leg's DTLS association and the SRTP sessions it keys.

    `receive(datagram)` feeds a DTLS record and returns the datagrams to send
    back; `timeout()` / `handle_timeout()` drive OpenSSL's retransmissions.
    Once `state` is CONNECTED the peer's certificate has matched one of
    `remote_fingerprints`, and `protect*` / `unprotect*` work. A failure
    raises `DtlsError` once and leaves the state FAILED."""

    def __init__(
        self, context: SSL.Context, role: Role, remote_fingerprints: tuple[Fingerprint, ...] = ()
    ) -> None:
        self.role = role
        # Empty until the peer's SDP comes: its ClientHello may come first.
        self.remote_fingerprints = remote_fingerprints
        self.state = State.HANDSHAKE
        self.profile: bytes | None = None
        self._handshaken = False
        self.started = False
        self._ssl = SSL.Connection(context, None)
        if role == "server":
            self._ssl.set_accept_state()
        else:
            self._ssl.set_connect_state()
        self._rx: Session | None = None
        self._tx: Session | None = None

    def start(self) -> list[bytes]:
        """The first flight: the ClientHello when we are the client, else nothing."""
        if self.role == "client" and not self.started:
            self.started = True
            self._step()
        return self._outgoing()

    def receive(self, data: bytes) -> list[bytes]:
        if self.state is not State.HANDSHAKE:
            return []  # a retransmitted Finished after we connected, or noise after failure
        try:
            self._ssl.bio_write(data)
        except SSL.Error as error:
            raise self._fail(f"DTLS record refused: {_reason(error)}") from None
        self._step()
        return self._outgoing()

    def expect(self, remote_fingerprints: tuple[Fingerprint, ...]) -> list[bytes]:
        """The fingerprints of the peer's SDP, when they come after the
        handshake began; checked at once if it has ended."""
        self.remote_fingerprints = remote_fingerprints
        if self.state is State.HANDSHAKE:
            self._verify()
        return []

    def timeout(self) -> float | None:
        """Seconds until OpenSSL wants to retransmit its last flight; None: nothing to do."""
        if self.state is not State.HANDSHAKE or self._handshaken:
            return None
        return self._ssl.DTLSv1_get_timeout()

    def handle_timeout(self) -> list[bytes]:
        if self.state is State.HANDSHAKE and not self._handshaken:
            try:
                self._ssl.DTLSv1_handle_timeout()
            except SSL.Error as error:
                raise self._fail(f"DTLS retransmission failed: {_reason(error)}") from None
        return self._outgoing()

    def _step(self) -> None:
        try:
            self._ssl.do_handshake()
        except SSL.WantReadError:
            return
        except SSL.Error as error:
            raise self._fail(f"DTLS handshake failed: {_reason(error)}") from None
        self._handshaken = True
        self._verify()

    def _verify(self) -> None:
        """Connected once the handshake is over *and* the peer's certificate
        matched its SDP: no SRTP key is used before both."""
        if not self._handshaken or not self.remote_fingerprints:
            return
        self._check_fingerprint()
        self._key_srtp()
        self.state = State.CONNECTED

    def _check_fingerprint(self) -> None:
        certificate = self._ssl.get_peer_certificate(as_cryptography=True)
        if certificate is None:
            raise self._fail("the peer sent no certificate")
        for expected in self.remote_fingerprints:
            if expected.algorithm not in FINGERPRINT_HASHES:
                continue
            actual = fingerprint_of(certificate, expected.algorithm)
            if hmac.compare_digest(actual.value, expected.value.upper()):
                return
        raise self._fail("the peer's certificate does not match the fingerprint in its SDP")

    def _key_srtp(self) -> None:
        selected = self._ssl.get_selected_srtp_profile()
        profile = next((p for p in _PROFILES if p.openssl_name == selected), None)
        if profile is None:
            raise self._fail("no SRTP profile in common")
        self.profile = profile.openssl_name
        keys, salts = profile.key_length, profile.salt_length
        material = self._ssl.export_keying_material(b"EXTRACTOR-dtls_srtp", 2 * (keys + salts))
        client_key, server_key = material[:keys], material[keys : 2 * keys]
        client_salt = material[2 * keys : 2 * keys + salts]
        server_salt = material[2 * keys + salts :]
        client, server = client_key + client_salt, server_key + server_salt
        ours, theirs = (server, client) if self.role == "server" else (client, server)
        self._rx = Session(_policy(theirs, Policy.SSRC_ANY_INBOUND, profile))
        self._tx = Session(_policy(ours, Policy.SSRC_ANY_OUTBOUND, profile))

    def _outgoing(self) -> list[bytes]:
        datagrams = []
        while True:
            try:
                datagrams.append(self._ssl.bio_read(MAX_DATAGRAM))
            except SSL.WantReadError:
                return datagrams

    def _fail(self, reason: str) -> DtlsError:
        self.state = State.FAILED
        return DtlsError(reason)

    # The SRTP sessions; each raises `pylibsrtp.Error` (re-exported as
    # `SrtpError`) for a packet that fails authentication or replays.

    def protect(self, packet: bytes) -> bytes:
        assert self._tx is not None, "SRTP before the DTLS handshake completed"
        return self._tx.protect(packet)

    def protect_rtcp(self, packet: bytes) -> bytes:
        assert self._tx is not None, "SRTCP before the DTLS handshake completed"
        return self._tx.protect_rtcp(packet)

    def unprotect(self, packet: bytes) -> bytes:
        assert self._rx is not None, "SRTP before the DTLS handshake completed"
        return self._rx.unprotect(packet)

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        assert self._rx is not None, "SRTCP before the DTLS handshake completed"
        return self._rx.unprotect_rtcp(packet)

    def close(self) -> None:
        self.state = State.CLOSED
        self._rx = self._tx = None


def _policy(key: bytes, ssrc_type: int, profile: _Profile) -> Policy:
    policy = Policy(key=key, ssrc_type=ssrc_type, srtp_profile=profile.libsrtp)
    # A relayed stream may repeat a sequence number (a phone's retransmitted
    # DTMF end event): libsrtp must not refuse to protect it.
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return policy


def _reason(error: SSL.Error) -> str:
    details = [str(part[2]) for part in error.args[0] if len(part) > 2] if error.args else []
    return ", ".join(details) or "unknown error"


__all__ = [
    "FINGERPRINT_HASHES",
    "Certificate",
    "DtlsError",
    "DtlsSrtp",
    "Fingerprint",
    "SrtpError",
    "State",
    "fingerprint_of",
]
