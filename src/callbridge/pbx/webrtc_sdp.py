"""SDP across the WebRTC boundary: a browser's UDP/TLS/RTP/SAVPF description
read (ICE credentials, certificate fingerprints, DTLS role) and turned into
plain RTP/AVP for the other party, and a plain description turned into ours
for the browser (ICE-lite, our fingerprint, one host candidate, rtcp-mux).

Only formats that pass the relay untouched cross: PCMU, PCMA and
telephone-event at 8 kHz. The relay decrypts and re-encrypts; it does not
transcode, so a browser that offers only Opus is refused with 488."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Final

from ..media.dtls_srtp import FINGERPRINT_HASHES, Fingerprint, Role
from ..media.ice_lite import ICE_CHARS
from ..media.webrtc import WebRtcLocal, WebRtcRemote
from ..sip.offer_answer import bump_version
from ..sip.sdp import (
    Attribute,
    Connection,
    MediaDescription,
    SdpError,
    SessionDescription,
)

if TYPE_CHECKING:
    from .anchor import Audio

WEBRTC_PROTO: Final = "UDP/TLS/RTP/SAVPF"
PLAIN_PROTO: Final = "RTP/AVP"
# What crosses between a browser and a phone without decoding.
PASSTHROUGH: Final = frozenset({("PCMU", 8000), ("PCMA", 8000), ("TELEPHONE-EVENT", 8000)})
VOICE: Final = frozenset({"PCMU", "PCMA"})
# Media attributes that describe the payload and survive the crossing; every
# other one (ICE, DTLS, RTCP feedback, header extensions, SSRCs) belongs to
# one side only.
_PAYLOAD_ATTRIBUTES: Final = ("rtpmap", "fmtp", "ptime", "maxptime")
_DIRECTIONS: Final = ("sendrecv", "sendonly", "recvonly", "inactive")
# RFC 8839 §5.4: ufrag 4-256 ice-chars, password 22-256.
UFRAG_LENGTHS: Final = range(4, 257)
PWD_LENGTHS: Final = range(22, 257)
_FINGERPRINT_VALUE: Final = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){15,63}")
MAX_FINGERPRINTS: Final = 8
# Type preference 126 (host), local preference 65535, component 1 (RFC 8445 §5.1.2.1).
HOST_PRIORITY: Final = (126 << 24) | (65535 << 8) | 255


def is_webrtc(sdp: SessionDescription, index: int) -> bool:
    """Whether stream `index` is a WebRTC endpoint's: DTLS-SRTP (a `…/TLS/…`
    profile) with ICE. A phone's SRTP without ICE (SDES `RTP/SAVP` with
    a=crypto, or DTLS between two phones) is not: it passes through the
    relay untouched, end to end, as before."""
    media = sdp.media[index]
    dtls = "TLS" in media.proto.upper().split("/")
    return dtls and (media.has_attribute("ice-ufrag") or sdp.has_attribute("ice-ufrag"))


def webrtc_remote_of(sdp: SessionDescription, index: int) -> WebRtcRemote:
    """The ICE and DTLS parameters of stream `index`; `SdpError` (488)
    naming the attribute that is missing or malformed."""
    media = sdp.media[index]

    def value(name: str) -> str | None:
        found = media.attribute(name)
        return found if found is not None else sdp.attribute(name)

    ufrag, pwd = value("ice-ufrag"), value("ice-pwd")
    if ufrag is None or len(ufrag) not in UFRAG_LENGTHS or not set(ufrag) <= ICE_CHARS:
        raise SdpError("a=ice-ufrag is missing or not 4-256 ice-chars", status=488)
    if pwd is None or len(pwd) not in PWD_LENGTHS or not set(pwd) <= ICE_CHARS:
        raise SdpError("a=ice-pwd is missing or not 22-256 ice-chars", status=488)
    values = media.attribute_values("fingerprint") or sdp.attribute_values("fingerprint")
    fingerprints = []
    for text in values[:MAX_FINGERPRINTS]:
        algorithm, _, digest = text.strip().partition(" ")
        algorithm, digest = algorithm.lower(), digest.strip()
        if algorithm in FINGERPRINT_HASHES and _FINGERPRINT_VALUE.fullmatch(digest):
            fingerprints.append(Fingerprint(algorithm, digest.upper()))
    if not fingerprints:
        raise SdpError("a=fingerprint is missing or uses no hash we know", status=488)
    setup = (value("setup") or "actpass").strip().lower()
    if setup not in ("actpass", "active", "passive"):
        raise SdpError("a=setup is not actpass, active or passive", status=488)
    if not media.has_attribute("rtcp-mux"):
        raise SdpError("a=rtcp-mux is required on a WebRTC stream", status=488)
    # Its passive makes us the DTLS client; active or actpass leaves us the server.
    role: Role = "client" if setup == "passive" else "server"
    return WebRtcRemote(ufrag, pwd, tuple(fingerprints), role)


def check_passthrough(sdp: SessionDescription, index: int) -> None:
    """`SdpError` (488) unless stream `index` offers PCMU or PCMA."""
    _passthrough_formats(sdp.media[index])


def _passthrough_formats(media: MediaDescription) -> tuple[str, ...]:
    rtpmaps = media.rtpmaps
    kept = tuple(
        pt
        for pt in media.formats
        if (m := rtpmaps.get(pt)) is not None and (m.encoding.upper(), m.clock_rate) in PASSTHROUGH
    )
    if not any(rtpmaps[pt].encoding.upper() in VOICE for pt in kept):
        offered = ", ".join(sorted({m.encoding for m in rtpmaps.values()})) or "none"
        raise SdpError(
            f"no PCMU or PCMA among the offered formats ({offered}); the relay does not transcode",
            status=488,
        )
    return kept


def _payload_attributes(
    media: MediaDescription, formats: tuple[str, ...], session: SessionDescription
) -> list[Attribute]:
    kept = []
    for attribute in media.attributes:
        if attribute.name in ("rtpmap", "fmtp"):
            if (attribute.value or "").split(" ", 1)[0] in formats:
                kept.append(attribute)
        elif attribute.name in _PAYLOAD_ATTRIBUTES:
            kept.append(attribute)
    # RFC 3551's static types may come without rtpmap; say them anyway.
    named = {(a.value or "").split(" ", 1)[0] for a in kept if a.name == "rtpmap"}
    rtpmaps = media.rtpmaps
    for pt in formats:
        if pt not in named:
            kept.append(Attribute("rtpmap", f"{pt} {rtpmaps[pt].value}"))
    kept.append(Attribute(session.effective_direction(media).value))
    return kept


def _session_without(sdp: SessionDescription, *names: str) -> SessionDescription:
    return replace(
        sdp, attributes=tuple(a for a in sdp.attributes if a.name in _DIRECTIONS), bandwidths=()
    ).without_attributes(*names)


def plain_of(sdp: SessionDescription, audio: Audio, address: str, port: int) -> bytes:
    """A browser's description as a phone must see it: RTP/AVP at our
    `address` and `port`, the pass-through formats only, no ICE or DTLS
    attribute; every other stream refused."""
    media = sdp.media[audio.index]
    formats = _passthrough_formats(media)
    audio_line = MediaDescription(
        media_type="audio",
        port=port,
        proto=PLAIN_PROTO,
        formats=formats,
        attributes=tuple(_payload_attributes(media, formats, sdp)),
    )
    streams = tuple(
        audio_line if i == audio.index else _refused(m, PLAIN_PROTO)
        for i, m in enumerate(sdp.media)
    )
    plain = replace(
        _session_without(sdp), connection=Connection.for_address(address), media=streams
    )
    return bump_version(plain).to_bytes()


def webrtc_of(
    sdp: SessionDescription,
    audio: Audio,
    local: WebRtcLocal,
    address: str,
    port: int,
    *,
    setup: str,
    mid: str | None = "0",
    bundle: bool = False,
) -> bytes:
    """A plain description as a browser must see it: UDP/TLS/RTP/SAVPF at our
    `address` and `port` with our ICE-lite credentials, fingerprint, DTLS
    `setup` (actpass in an offer, active or passive in an answer), one host
    candidate and rtcp-mux. In an answer, `mid` is the offer's (and `bundle`
    whether the offer grouped it); in an offer, "0"."""
    media = sdp.media[audio.index]
    formats = _passthrough_formats(media)
    attributes = _payload_attributes(media, formats, sdp)
    if mid is not None:
        attributes.insert(0, Attribute("mid", mid))
    attributes += [
        Attribute("ice-ufrag", local.ice.ufrag),
        Attribute("ice-pwd", local.ice.pwd),
        Attribute("fingerprint", str(local.fingerprint)),
        Attribute("setup", setup),
        Attribute("rtcp-mux"),
        Attribute("candidate", f"1 1 udp {HOST_PRIORITY} {address} {port} typ host"),
        Attribute("end-of-candidates"),
    ]
    audio_line = MediaDescription(
        media_type="audio",
        port=port,
        proto=WEBRTC_PROTO,
        formats=formats,
        attributes=tuple(attributes),
    )
    streams = tuple(
        audio_line if i == audio.index else _refused(m, m.proto) for i, m in enumerate(sdp.media)
    )
    session_attributes = [Attribute("ice-lite")]
    if bundle and mid is not None:
        session_attributes.append(Attribute("group", f"BUNDLE {mid}"))
    session = _session_without(sdp)
    webrtc = replace(
        session,
        attributes=(*session_attributes, *session.attributes),
        connection=Connection.for_address(address),
        media=streams,
    )
    return bump_version(webrtc).to_bytes()


def answer_setup(remote: WebRtcRemote) -> str:
    """Our a=setup in an answer: passive when we are the DTLS server."""
    return "passive" if remote.role == "server" else "active"


def offered_mid(sdp: SessionDescription, index: int) -> tuple[str | None, bool]:
    """Stream `index`'s mid in a browser's SDP, and whether it is bundled."""
    mid = sdp.media[index].attribute("mid")
    if mid is not None and not (0 < len(mid) <= 32 and mid.isprintable() and " " not in mid):
        raise SdpError("a=mid is not 1-32 printable characters", status=488)
    bundled = any(
        mid is not None and mid in (group.split()[1:] if group.startswith("BUNDLE") else [])
        for group in sdp.attribute_values("group")
    )
    return mid, bundled


def _refused(media: MediaDescription, proto: str) -> MediaDescription:
    return MediaDescription(
        media_type=media.media_type, port=0, proto=proto, formats=media.formats or ("0",)
    )
