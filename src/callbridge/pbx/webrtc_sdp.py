"""SDP across the WebRTC boundary: a browser's UDP/TLS/RTP/SAVPF description
read (ICE credentials, certificate fingerprints, DTLS role) and turned into
plain RTP/AVP for the other party, and a plain description turned into ours
for the browser (ICE-lite, our fingerprint, one host candidate, rtcp-mux).

Formats that pass the relay untouched cross as they are: PCMU, PCMA and
telephone-event at 8 kHz; the relay decrypts and re-encrypts, never decodes.
A browser whose SDP (its offer, or its answer to ours) has Opus/48000 and
neither PCMU nor PCMA is transcoded at its leg (media/transcode.py): its
side of the SDP names its Opus and telephone-event/48000, the other party's
PCMU, PCMA and telephone-event/8000. Our offer to a browser names Opus after
the G.711 formats, so a browser that prefers G.711 still relays. Only an SDP
with neither G.711 nor Opus is refused (488)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Final

from ..media.dtls_srtp import FINGERPRINT_HASHES, Fingerprint, Role
from ..media.ice_lite import ICE_CHARS
from ..media.transcode import PCMA, PCMU, OpusFormats
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
# Our plain side of a transcoded leg, when the other party's SDP is not known yet.
PLAIN_EVENTS: Final = 101
# The payload types we give Opus and telephone-event/48000 in an offer to a
# browser (Chrome's own numbers), or the first free dynamic ones.
OFFERED_OPUS: Final = 111
OFFERED_EVENTS: Final = 126
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


def check_formats(sdp: SessionDescription, index: int) -> None:
    """`SdpError` (488) unless a browser's stream `index` has PCMU or PCMA
    (relayed) or Opus/48000 (transcoded)."""
    if opus_of(sdp.media[index]) is None:
        _passthrough_formats(sdp.media[index])


def opus_of(media: MediaDescription) -> OpusFormats | None:
    """How a browser's stream is transcoded: None when it has PCMU or PCMA
    (relayed untouched) or no Opus; else its Opus and telephone-event/48000
    payload types, with PCMU and telephone-event 101 on the plain side
    until the other party's SDP says otherwise (`plain_side`)."""
    rtpmaps = media.rtpmaps
    found = {
        (m.encoding.upper(), m.clock_rate): pt for pt in media.formats if (m := rtpmaps.get(pt))
    }
    if ("PCMU", 8000) in found or ("PCMA", 8000) in found or ("OPUS", 48000) not in found:
        return None
    # Events cross only at Opus's clock (what a browser pairs with Opus).
    events = found.get(("TELEPHONE-EVENT", 48000))
    return OpusFormats(
        opus=int(found[("OPUS", 48000)]),
        events=None if events is None else int(events),
        voice=PCMU,
        plain_events=None if events is None else PLAIN_EVENTS,
    )


def plain_side(opus: OpusFormats, plain: Audio | None) -> OpusFormats:
    """`opus` with the plain side the other party's SDP (`plain`) names:
    its first G.711, and its telephone-event/8000 (None: it takes none)."""
    if plain is None:
        return opus
    names = {pt: name.upper() for pt, name in plain.payload_types.items()}
    voice = next((pt for pt, name in names.items() if name in VOICE and pt in (PCMU, PCMA)), PCMU)
    events = next(
        (
            pt
            for pt, name in names.items()
            if name == "TELEPHONE-EVENT" and plain.rates.get(pt, 8000) == 8000
        ),
        None,
    )
    return replace(opus, voice=voice, plain_events=events if opus.plain_events else None)


def transcoded_payload_types(opus: OpusFormats) -> dict[int, str]:
    """What a transcoded browser leg carries inside the relay, by payload type."""
    types = {PCMU: "PCMU", PCMA: "PCMA"}
    if opus.plain_events is not None:
        types[opus.plain_events] = "telephone-event"
    return types


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
            f"neither PCMU, PCMA nor Opus among the offered formats ({offered})",
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


def plain_of(
    sdp: SessionDescription,
    audio: Audio,
    address: str,
    port: int,
    *,
    plain: Audio | None = None,
    one_voice: bool = False,
) -> bytes:
    """A browser's description as a phone must see it: RTP/AVP at our
    `address` and `port`, the pass-through formats only, no ICE or DTLS
    attribute; every other stream refused. A browser speaking only Opus is
    the phone's PCMU and PCMA (those of `plain`, the phone's own offer, in
    an answer) and telephone-event/8000 when the browser takes events.
    `one_voice`: only the browser's first voice format (and its events),
    for an offer made of a browser's answer: whatever the phone answers
    must be what the browser sends."""
    media = sdp.media[audio.index]
    opus = opus_of(media)
    if opus is None:
        formats = _passthrough_formats(media)
        if one_voice:
            rtpmaps = media.rtpmaps
            voice = next(pt for pt in formats if rtpmaps[pt].encoding.upper() in VOICE)
            formats = tuple(
                pt for pt in formats if pt == voice or rtpmaps[pt].encoding.upper() not in VOICE
            )
        attributes = _payload_attributes(media, formats, sdp)
    else:
        formats, attributes = _transcoded_plain(plain_side(opus, plain), plain)
        attributes.append(Attribute(sdp.effective_direction(media).value))
    audio_line = MediaDescription(
        media_type="audio",
        port=port,
        proto=PLAIN_PROTO,
        formats=formats,
        attributes=tuple(attributes),
    )
    streams = tuple(
        audio_line if i == audio.index else _refused(m, PLAIN_PROTO)
        for i, m in enumerate(sdp.media)
    )
    ours = replace(_session_without(sdp), connection=Connection.for_address(address), media=streams)
    return bump_version(ours).to_bytes()


def _transcoded_plain(
    opus: OpusFormats, plain: Audio | None
) -> tuple[tuple[str, ...], list[Attribute]]:
    """The plain side of a transcoded leg: G.711 (only what `plain`, the
    phone's offer, has when answering it) and telephone-event/8000."""
    voices = [PCMU, PCMA]
    if plain is not None:
        named = [pt for pt in plain.payload_types if pt in (PCMU, PCMA)]
        voices = named or voices
    voices.sort(key=lambda pt: pt != opus.voice)
    attributes = [
        Attribute("rtpmap", f"{pt} {'PCMU' if pt == PCMU else 'PCMA'}/8000") for pt in voices
    ]
    formats = [str(pt) for pt in voices]
    if opus.plain_events is not None:
        formats.append(str(opus.plain_events))
        attributes += [
            Attribute("rtpmap", f"{opus.plain_events} telephone-event/8000"),
            Attribute("fmtp", f"{opus.plain_events} 0-15"),
        ]
    attributes.append(Attribute("ptime", "20"))
    return tuple(formats), attributes


def _opus_attributes(opus: OpusFormats, events: bool) -> tuple[list[str], list[Attribute]]:
    formats = [str(opus.opus)]
    attributes = [
        Attribute("rtpmap", f"{opus.opus} opus/48000/2"),
        Attribute("fmtp", f"{opus.opus} minptime=10;useinbandfec=1"),
    ]
    if events and opus.events is not None:
        formats.append(str(opus.events))
        attributes += [
            Attribute("rtpmap", f"{opus.events} telephone-event/48000"),
            Attribute("fmtp", f"{opus.events} 0-15"),
        ]
    return formats, attributes


def offered_opus(audio: Audio) -> OpusFormats:
    """The Opus (and telephone-event/48000) we add to an offer to a browser:
    Chrome's payload types unless the phone's offer uses them."""
    taken = set(audio.payload_types)
    free = [pt for pt in (OFFERED_OPUS, OFFERED_EVENTS, *range(96, 128)) if pt not in taken]
    events = any(name.upper() == "TELEPHONE-EVENT" for name in audio.payload_types.values())
    return OpusFormats(opus=free[0], events=free[1] if events else None)


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
    opus: OpusFormats | None = None,
    offer_opus: bool = False,
) -> bytes:
    """A plain description as a browser must see it: UDP/TLS/RTP/SAVPF at our
    `address` and `port` with our ICE-lite credentials, fingerprint, DTLS
    `setup` (actpass in an offer, active or passive in an answer), one host
    candidate and rtcp-mux. In an answer, `mid` is the offer's (and `bundle`
    whether the offer grouped it); in an offer, "0". `opus`: the browser
    speaks only Opus, and is named its Opus in place of the G.711 formats;
    `offer_opus`: an offer, which names Opus after the G.711 formats."""
    media = sdp.media[audio.index]
    formats = _passthrough_formats(media)
    attributes = _payload_attributes(media, formats, sdp)
    if opus is not None:
        events = any(
            (a.value or "").split(" ", 1)[0] in formats
            and "telephone-event" in (a.value or "").lower()
            for a in attributes
            if a.name == "rtpmap"
        )
        names, opus_attributes = _opus_attributes(opus, events)
        formats = tuple(names)
        attributes = [a for a in attributes if a.name not in ("rtpmap", "fmtp")]
        attributes[:0] = opus_attributes
    elif offer_opus:
        names, opus_attributes = _opus_attributes(offered_opus(audio), True)
        formats = (*formats, *names)
        attributes[:0] = opus_attributes
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
