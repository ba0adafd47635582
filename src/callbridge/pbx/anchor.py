"""A call's audio as the SDP of each party describes it, and SDP anchored at
the relay: every offer and answer that crosses from one leg to another is
rewritten to point at callbridge's own media endpoint for that leg, so RTP
flows through the media engine (`media/`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ..media.engine import MediaEngine
from ..media.errors import MediaError
from ..media.transcode import OpusFormats
from ..media.webrtc import WebRtcRemote
from ..sip import Request, Response
from ..sip.offer_answer import answer_direction, resume, with_connection
from ..sip.sdp import Attribute, MediaDescription, SdpError, SessionDescription, parse_sdp
from .webrtc_sdp import check_formats, is_webrtc, offered_mid, opus_of, webrtc_remote_of

SDP_TYPE = ("Content-Type", "application/sdp")
NULL_ADDRESSES = frozenset({"0.0.0.0", "::"})


@dataclass(frozen=True, slots=True)
class Audio:
    """The first audio stream of an SDP, as the media engine needs it."""

    index: int
    host: str
    port: int
    rtcp_port: int | None
    payload_types: Mapping[int, str]
    sends: bool
    # The side offering this stream will not hear the other (sendonly,
    # inactive, or the RFC 2543 null address): it put the call on hold.
    holds: bool = False
    # Clock rates by payload type (DTMF: telephone-event's).
    rates: Mapping[int, int] = field(default_factory=dict)
    # A browser's stream (UDP/TLS/RTP/SAVPF): its ICE and DTLS parameters,
    # its mid and whether it is bundled (pbx/webrtc_sdp.py). None: plain RTP.
    webrtc: WebRtcRemote | None = None
    mid: str | None = None
    bundle: bool = False
    # A browser's stream with Opus and no G.711: how its leg transcodes. None: relayed.
    opus: OpusFormats | None = None


def audio_of(sdp: SessionDescription) -> Audio:
    for index, media in enumerate(sdp.media):
        if media.media_type != "audio" or media.is_rejected:
            continue
        connection = sdp.connection_for(media)
        if connection is None:
            raise SdpError("the audio stream has no connection address", status=488)
        webrtc, mid, bundle, opus = None, None, False, None
        if is_webrtc(sdp, index):
            webrtc = webrtc_remote_of(sdp, index)
            mid, bundle = offered_mid(sdp, index)
            opus = opus_of(media)
        rtcp = media.attribute("rtcp")
        rtpmaps = {int(pt): rtpmap for pt, rtpmap in media.rtpmaps.items() if pt.isdigit()}
        payload_types = {pt: rtpmap.encoding for pt, rtpmap in rtpmaps.items()}
        direction = sdp.effective_direction(media)
        # A WebRTC stream's c= is only its default candidate (0.0.0.0 before
        # gathering): ICE, not the address, says where it is; never a hold.
        null = connection.address in NULL_ADDRESSES and webrtc is None
        return Audio(
            index=index,
            host=connection.address,
            port=media.port,
            rtcp_port=int(rtcp.split()[0]) if rtcp and rtcp.split()[0].isdigit() else None,
            payload_types=payload_types,
            sends=direction.sends and not null,
            holds=null or not direction.receives,
            rates={pt: rtpmap.clock_rate for pt, rtpmap in rtpmaps.items()},
            webrtc=webrtc,
            mid=mid,
            bundle=bundle,
            opus=opus,
        )
    raise SdpError("no audio stream to relay", status=488)


def checked_audio(sdp: SessionDescription, media: MediaEngine) -> Audio:
    """`audio_of`, refused (488) when it names a place the relay must never
    send to: one of this PBX's own sockets (issue 11)."""
    audio = audio_of(sdp)
    if audio.webrtc is not None:
        # ICE decides where a browser's media goes; what must hold at the
        # door is G.711 to relay or Opus to transcode.
        check_formats(sdp, audio.index)
        return audio
    if audio.host in NULL_ADDRESSES:
        return audio
    rtcp = audio.port + 1 if audio.rtcp_port is None else audio.rtcp_port
    try:
        for port in (audio.port, rtcp):
            media.check_remote(audio.host, port)
    except MediaError as error:
        raise SdpError(str(error), status=488) from None
    return audio


# What the relay takes without transcoding, as a phone would offer it.
_RELAY_OFFER = (
    "v=0\r\no=callbridge 0 0 IN IP4 {address}\r\ns=callbridge\r\n"
    "c=IN IP4 {address}\r\nt=0 0\r\nm=audio 9 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
)


def relay_offer() -> tuple[SessionDescription, Audio]:
    """An offer of our own, for a side that must get one when the caller
    made none (a browser reached by a delayed offer): PCMU, PCMA and
    telephone-event, the formats the relay passes untouched. The address
    and port are the anchoring's to fill in."""
    sdp = parse_sdp(_RELAY_OFFER.format(address="0.0.0.0").encode())
    return sdp, audio_of(sdp)


def sdp_of(message: Request | Response) -> SessionDescription | None:
    """The message's SDP body; None when it has none; SdpError when bad."""
    if not message.body:
        return None
    content_type = (message.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type != "application/sdp":
        raise SdpError(f"body of type {content_type or 'unknown'} is not SDP", status=415)
    return parse_sdp(message.body)


def anchored(sdp: SessionDescription, audio: Audio, address: str, port: int) -> bytes:
    """`sdp` pointed at our `address` and `port`: its audio stream there,
    every other stream refused (we relay audio only)."""
    ports = [0] * len(sdp.media)
    ports[audio.index] = port
    return with_connection(sdp, address, ports).to_bytes()


def answered_locally(
    last_sent: bytes, offer: SessionDescription, *, setup: str | None = None
) -> bytes | None:
    """Our own answer to a re-offer that changes only the direction (a hold,
    a resume): what we last sent this party, every stream's direction the
    answer to the offer's, one version on (RFC 3264 §8). None when the offer
    changes more than that: other streams, or our first voice format gone.
    `setup`: a browser's leg, the DTLS role we took (RFC 8842 §5) in place of
    the actpass of what we last sent when that was our offer."""
    if not last_sent:
        return None
    try:
        ours = parse_sdp(last_sent)
    except SdpError:
        return None
    if len(ours.media) != len(offer.media):
        return None
    for mine, theirs in zip(ours.media, offer.media, strict=True):
        if mine.media_type != theirs.media_type or mine.is_rejected != theirs.is_rejected:
            return None
        if not mine.is_rejected and mine.formats and mine.formats[0] not in theirs.formats:
            return None
    audio = audio_of(offer)
    direction = answer_direction(offer.effective_direction(offer.media[audio.index]))
    answer = resume(ours, direction=direction)
    # An answer names only formats the offer has (RFC 3264 §6.1): what we
    # last sent may have been our offer, with more.
    streams = tuple(
        m if m.is_rejected else _formats_of(m, theirs.formats)
        for m, theirs in zip(answer.media, offer.media, strict=True)
    )
    if setup is not None:
        streams = tuple(_with_setup(m, setup) for m in streams)
    return replace(answer, media=streams).to_bytes()


def _formats_of(media: MediaDescription, offered: tuple[str, ...]) -> MediaDescription:
    """`media` with only the formats in `offered`, and their rtpmap and fmtp."""
    kept = tuple(f for f in media.formats if f in offered)
    attributes = tuple(
        a
        for a in media.attributes
        if a.name not in ("rtpmap", "fmtp") or (a.value or "").split(" ", 1)[0] in kept
    )
    return replace(media, formats=kept, attributes=attributes)


def _with_setup(media: MediaDescription, setup: str) -> MediaDescription:
    """`media` with its a=setup, where it has one, saying `setup`."""
    attributes = tuple(
        Attribute("setup", setup) if attribute.name == "setup" else attribute
        for attribute in media.attributes
    )
    return replace(media, attributes=attributes)
