"""RFC 3264 offer/answer: builds offers and answers from local media capabilities, and the
hold, resume and media-anchoring rewrites a B2BUA applies to descriptions it relays.

Every function returns a new SessionDescription and leaves its input untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

from .sdp import (
    Attribute,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    RtpMap,
    SessionDescription,
    address_type,
)

FIRST_DYNAMIC_PAYLOAD_TYPE: Final = 96
LAST_DYNAMIC_PAYLOAD_TYPE: Final = 127
# Formats that ride along with a voice codec but cannot carry a call on their own.
AUXILIARY_ENCODINGS: Final = frozenset({"telephone-event", "cn"})
# RFC 2543 put a call on hold by pointing the stream at a null address; RFC 3264 §8.4
# still asks us to recognise it. Some IPv6 stacks do the same with "::".
_NULL_ADDRESSES: Final = frozenset({"0.0.0.0", "::"})


class OfferAnswerError(Exception):
    """An offer we cannot answer; `status` is the SIP response to send (488 by default)."""

    def __init__(self, reason: str, *, status: int = 488) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Codec:
    """A payload format we can send and receive; `payload_type` is what we offer it as."""

    encoding: str
    clock_rate: int
    channels: int = 1
    fmtp: str | None = None
    payload_type: int | None = None

    @property
    def rtpmap(self) -> RtpMap:
        return RtpMap(self.encoding, self.clock_rate, self.channels)

    @property
    def is_auxiliary(self) -> bool:
        return self.encoding.lower() in AUXILIARY_ENCODINGS

    def matches(self, offered: RtpMap) -> bool:
        # RFC 4855 §3: encoding names are case-insensitive ("pcmu" is PCMU).
        return (
            offered.encoding.lower() == self.encoding.lower()
            and offered.clock_rate == self.clock_rate
            and offered.channels == self.channels
        )


PCMU: Final = Codec("PCMU", 8000, payload_type=0)
PCMA: Final = Codec("PCMA", 8000, payload_type=8)
# RFC 3551 §4.5.2: G.722 is advertised at 8000 Hz although it samples at 16000.
G722: Final = Codec("G722", 8000, payload_type=9)
TELEPHONE_EVENT: Final = Codec("telephone-event", 8000, fmtp="0-16", payload_type=101)


@dataclass(frozen=True, kw_only=True)
class MediaCapabilities:
    """What one of our media endpoints can do, in our order of preference."""

    codecs: tuple[Codec, ...] = (PCMU, PCMA, TELEPHONE_EVENT)
    media_type: str = "audio"
    protos: frozenset[str] = frozenset({"RTP/AVP"})
    direction: Direction = Direction.SENDRECV
    ptime: int | None = 20

    @property
    def proto(self) -> str:
        """The profile we offer: RTP/AVP when we accept it, else any we accept."""
        return "RTP/AVP" if "RTP/AVP" in self.protos else min(self.protos)


DEFAULT_CAPABILITIES: Final = MediaCapabilities()

# RFC 3264 §6.1: the answer mirrors the offer, so what they send we receive.
ANSWER_DIRECTION: Final = {
    Direction.SENDRECV: Direction.SENDRECV,
    Direction.SENDONLY: Direction.RECVONLY,
    Direction.RECVONLY: Direction.SENDONLY,
    Direction.INACTIVE: Direction.INACTIVE,
}


def answer_direction(offered: Direction, local: Direction = Direction.SENDRECV) -> Direction:
    """The direction to answer `offered` with, never more than `local` allows."""
    return ANSWER_DIRECTION[offered].intersect(local)


@dataclass(frozen=True)
class _Format:
    """One payload format chosen for an m-line: its number, encoding and parameters."""

    payload_type: str
    rtpmap: RtpMap
    fmtp: str | None


# --- building offers and answers --------------------------------------------------------------


def make_offer(
    local: MediaCapabilities = DEFAULT_CAPABILITIES,
    *,
    address: str,
    port: int,
    session_id: str,
    session_version: int = 1,
    username: str = "-",
) -> SessionDescription:
    """An initial offer with one m-line carrying every local codec in preference order."""
    formats = [
        _Format(str(pt), codec.rtpmap, codec.fmtp)
        for pt, codec in _assign_payload_types(local.codecs)
    ]
    media = _media_line(local, local.proto, port, formats, local.direction)
    return _session(address, username, session_id, session_version, (media,))


def answer(
    offer: SessionDescription,
    local: MediaCapabilities = DEFAULT_CAPABILITIES,
    *,
    address: str,
    ports: Sequence[int],
    session_id: str,
    session_version: int = 1,
    username: str = "-",
) -> SessionDescription:
    """The RFC 3264 answer to `offer`: one m-line per offered m-line, in the same order.

    Acceptable m-lines take a port from `ports` in turn; the others, and any left once
    `ports` runs out, are answered with port 0. Raises OfferAnswerError(488) when no
    m-line is acceptable.
    """
    remaining = list(ports)
    answered: list[MediaDescription] = []
    for offered in offer.media:
        formats = _acceptable_formats(offered, local) if remaining else []
        if not formats:
            answered.append(_rejected(offered))
            continue
        direction = answer_direction(_offered_direction(offer, offered), local.direction)
        answered.append(_media_line(local, offered.proto, remaining.pop(0), formats, direction))
    if all(media.is_rejected for media in answered):
        raise OfferAnswerError("no acceptable media in offer")
    return _session(address, username, session_id, session_version, tuple(answered))


def _assign_payload_types(codecs: Sequence[Codec]) -> list[tuple[int, Codec]]:
    """Each codec's preferred payload type, or a free dynamic one when it has none or clashes."""
    wanted = {codec.payload_type for codec in codecs}
    free = (
        pt
        for pt in range(FIRST_DYNAMIC_PAYLOAD_TYPE, LAST_DYNAMIC_PAYLOAD_TYPE + 1)
        if pt not in wanted
    )
    assigned: list[tuple[int, Codec]] = []
    for codec in codecs:
        pt = codec.payload_type
        if pt is None or any(pt == used for used, _ in assigned):
            pt = next(free, None)
        if pt is None:
            raise ValueError("more codecs than dynamic payload types")
        assigned.append((pt, codec))
    return assigned


def _acceptable_formats(offered: MediaDescription, local: MediaCapabilities) -> list[_Format]:
    """The offered formats we support, in the offerer's order (RFC 3264 §6.1), keeping the
    offerer's payload type numbers; empty when the m-line cannot be accepted at all.

    The offerer's fmtp is echoed when it has one (annexb=no, the DTMF event range), since
    that is what it asked to receive; our own only fills the gap.
    """
    if offered.is_rejected or offered.media_type != local.media_type:
        return []
    if offered.proto not in local.protos:
        return []
    fmtps = offered.fmtps
    formats = [
        _Format(pt, rtpmap, fmtps.get(pt) or codec.fmtp)
        for pt, rtpmap in offered.rtpmaps.items()
        if (codec := _matching_codec(rtpmap, local.codecs)) is not None
    ]
    carries_voice = any(f.rtpmap.encoding.lower() not in AUXILIARY_ENCODINGS for f in formats)
    return formats if carries_voice else []


def _matching_codec(offered: RtpMap, codecs: Sequence[Codec]) -> Codec | None:
    return next((codec for codec in codecs if codec.matches(offered)), None)


def _offered_direction(offer: SessionDescription, media: MediaDescription) -> Direction:
    direction = offer.effective_direction(media)
    # A null address means "do not send to me" whatever the attribute says.
    if _has_null_address(offer, media):
        return direction.intersect(Direction.SENDONLY)
    return direction


def _rejected(offered: MediaDescription) -> MediaDescription:
    # RFC 3264 §6: a refused stream stays in the answer with port 0 and the offered formats.
    return MediaDescription(
        media_type=offered.media_type, port=0, proto=offered.proto, formats=offered.formats
    )


def _media_line(
    local: MediaCapabilities,
    proto: str,
    port: int,
    formats: Sequence[_Format],
    direction: Direction,
) -> MediaDescription:
    attributes: list[Attribute] = []
    for fmt in formats:
        attributes.append(Attribute("rtpmap", f"{fmt.payload_type} {fmt.rtpmap.value}"))
        if fmt.fmtp is not None:
            attributes.append(Attribute("fmtp", f"{fmt.payload_type} {fmt.fmtp}"))
    if local.ptime is not None:
        attributes.append(Attribute("ptime", str(local.ptime)))
    attributes.append(Attribute(direction.value))
    return MediaDescription(
        media_type=local.media_type,
        port=port,
        proto=proto,
        formats=tuple(fmt.payload_type for fmt in formats),
        attributes=tuple(attributes),
    )


def _session(
    address: str,
    username: str,
    session_id: str,
    session_version: int,
    media: tuple[MediaDescription, ...],
) -> SessionDescription:
    origin = Origin(username, session_id, session_version, "IN", address_type(address), address)
    return SessionDescription(
        origin=origin, connection=Connection.for_address(address), media=media
    )


# --- rewriting descriptions -------------------------------------------------------------------


def bump_version(sdp: SessionDescription) -> SessionDescription:
    """The same description with o= sess-version one higher (RFC 3264 §8)."""
    return replace(sdp, origin=replace(sdp.origin, sess_version=sdp.origin.sess_version + 1))


def _revised(old: SessionDescription, new: SessionDescription) -> SessionDescription:
    # RFC 3264 §8: the version goes up exactly when the description changes, and only then.
    return old if new == old else bump_version(new)


def _redirect_active_media(
    sdp: SessionDescription, new_direction: Callable[[Direction], Direction]
) -> SessionDescription:
    """Set the direction of every stream still in use; rejected streams stay as they are."""
    media = tuple(
        m if m.is_rejected else m.with_direction(new_direction(sdp.effective_direction(m)))
        for m in sdp.media
    )
    return _revised(sdp, replace(sdp, media=media))


HoldStyle = Literal["sendonly", "inactive"]


def hold(sdp: SessionDescription, *, style: HoldStyle = "sendonly") -> SessionDescription:
    """Our description with every active stream put on hold.

    "sendonly" keeps sending (music on hold); a stream that was recvonly becomes inactive,
    as RFC 3264 §8.4 requires. "inactive" stops media both ways.
    """
    held = Direction(style)
    return _redirect_active_media(sdp, held.intersect)


def resume(
    sdp: SessionDescription, *, direction: Direction = Direction.SENDRECV
) -> SessionDescription:
    """Our description taken off hold: every active stream goes back to `direction`."""
    return _redirect_active_media(sdp, lambda _current: direction)


def is_on_hold(sdp: SessionDescription) -> bool:
    """Whether `sdp` (usually the peer's) holds the call: every active stream is held."""
    active = [media for media in sdp.media if not media.is_rejected]
    return bool(active) and all(is_stream_on_hold(sdp, media) for media in active)


def is_stream_on_hold(sdp: SessionDescription, media: MediaDescription) -> bool:
    """Whether the sender of `sdp` refuses to receive on this stream: a=sendonly,
    a=inactive, or the RFC 2543 null connection address.
    """
    return not sdp.effective_direction(media).receives or _has_null_address(sdp, media)


def _has_null_address(sdp: SessionDescription, media: MediaDescription) -> bool:
    connection = sdp.connection_for(media)
    return connection is not None and connection.address in _NULL_ADDRESSES


def with_connection(
    sdp: SessionDescription, address: str, ports: Sequence[int]
) -> SessionDescription:
    """`sdp` pointed at a media anchor: `address` for every stream, `ports[i]` for m-line i.

    Rejected streams keep port 0. Media-level c= lines and a=rtcp (RFC 3605) are dropped,
    since both would still name the original endpoint.
    """
    if len(ports) != len(sdp.media):
        raise ValueError(f"need {len(sdp.media)} ports, one per m-line, got {len(ports)}")
    media = tuple(
        replace(m.without_attributes("rtcp"), connection=None, port=0 if m.is_rejected else port)
        for m, port in zip(sdp.media, ports, strict=True)
    )
    anchored = replace(sdp, connection=Connection.for_address(address), media=media)
    return _revised(sdp, anchored)
