"""Opus ↔ G.711 at a WebRTC leg's boundary, sans-IO: a browser's Opus RTP in,
the leg's own G.711 RTP stream out (8 kHz, 160 samples a packet), and G.711
from the relay out to the browser as Opus (48 kHz, 960 samples a packet);
RFC 4733 telephone-events rescaled between the two clocks on the way.

Only a browser whose SDP has Opus and neither PCMU nor PCMA gets one: the
rest of the call (relay, recorder, players, DTMF) sees G.711 as from any
phone. PyAV (libopus) codes, soxr changes the rate."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Final

import av
import numpy as np
import numpy.typing as npt
import soxr

from .g711 import pcma_decode, pcma_encode, pcmu_decode, pcmu_encode
from .rtp import RTP_HEADER_SIZE, payload_offset

OPUS_RATE: Final = 48000
G711_RATE: Final = 8000
G711_FRAME: Final = 160  # 20 ms at 8 kHz
OPUS_FRAME: Final = 960  # 20 ms at 48 kHz
PCMU: Final = 0
PCMA: Final = 8
OPUS_BITRATE: Final = 32000
# A gap in a stream up to this long (in its own samples' 20 ms packets) is
# filled with silence, so the other side's stream stays continuous; a longer
# one (a hold, DTX) is a jump of the timestamps instead.
MAX_FILLED_PACKETS: Final = 10

_HEADER: Final = struct.Struct("!BBHII")
_EVENT: Final = struct.Struct("!BBH")

Pcm = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class OpusFormats:
    """The payload types of a transcoded leg: the browser's Opus and
    telephone-event/48000 (None: it takes none), and the G.711 and
    telephone-event/8000 the rest of the call uses."""

    opus: int
    events: int | None = None
    voice: int = PCMU
    plain_events: int | None = 101


class _OwnStream:
    """An RTP stream of our own: random SSRC, sequence and timestamp start."""

    __slots__ = ("sequence", "ssrc", "timestamp")

    def __init__(self) -> None:
        seed = int.from_bytes(os.urandom(10), "big")
        self.ssrc = seed & 0xFFFFFFFF
        self.sequence = (seed >> 32) & 0xFFFF
        self.timestamp = (seed >> 48) & 0xFFFFFFFF

    def packet(self, payload_type: int, payload: bytes, timestamp: int, marker: bool) -> bytes:
        self.sequence = (self.sequence + 1) & 0xFFFF
        second = (0x80 if marker else 0) | payload_type
        return _HEADER.pack(0x80, second, self.sequence, timestamp, self.ssrc) + payload


class _Arrivals:
    """Where the peer's stream is: what is stale (late or repeated), and
    how many samples went missing before a packet. A new SSRC is a new
    stream (the music on hold, then the phone again; RFC 3550 §8): its
    sequence and timestamps start afresh, whatever they are."""

    __slots__ = ("next_timestamp", "sequence", "ssrc")

    def __init__(self) -> None:
        self.ssrc: int | None = None
        self.sequence: int | None = None
        self.next_timestamp = 0

    def accept(self, ssrc: int, sequence: int, timestamp: int) -> int | None:
        """The samples missing before this packet (0: none); None when it is
        stale and must be dropped."""
        if self.sequence is None or ssrc != self.ssrc:
            self.ssrc, self.sequence = ssrc, sequence
            return 0
        ahead = (sequence - self.sequence) & 0xFFFF
        if ahead == 0 or ahead >= 0x8000:
            return None
        self.sequence = sequence
        missing = (timestamp - self.next_timestamp) & 0xFFFFFFFF
        return 0 if missing >= 0x80000000 else missing

    def played(self, timestamp: int, samples: int) -> None:
        self.next_timestamp = (timestamp + samples) & 0xFFFFFFFF


class _Events:
    """RFC 4733 events from one clock to another: an event keeps the
    timestamp of our stream when it began; its duration is rescaled."""

    __slots__ = ("_mapped", "_source")

    def __init__(self) -> None:
        self._source: int | None = None
        self._mapped = 0

    def convert(
        self, payload: bytes, timestamp: int, now: int, scale: float
    ) -> tuple[bytes, int, bool] | None:
        if len(payload) < _EVENT.size:
            return None
        event, flags, duration = _EVENT.unpack_from(payload)
        began = timestamp != self._source
        if began:
            self._source, self._mapped = timestamp, now
        duration = min(0xFFFF, round(duration * scale))
        return _EVENT.pack(event, flags, duration), self._mapped, began


def _parts(packet: bytes) -> tuple[int, int, int, int, bytes] | None:
    """(payload type, SSRC, sequence, timestamp, payload) of an RTP packet,
    padding removed."""
    offset = payload_offset(packet)
    if len(packet) < RTP_HEADER_SIZE or offset < 0:
        return None
    first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(packet)
    end = len(packet)
    if first & 0x20:
        end -= packet[-1]
        if end < offset:
            return None
    return second & 0x7F, ssrc, sequence, timestamp, packet[offset:end]


def _event_packets(
    events: _Events,
    stream: _OwnStream,
    payload: bytes,
    timestamp: int,
    payload_type: int,
    ratio: float,
) -> list[bytes]:
    """An RFC 4733 event's packet on `stream`, its clock scaled by `ratio`;
    none for one that does not cross."""
    converted = events.convert(payload, timestamp, stream.timestamp, ratio)
    if converted is None:
        return []
    body, mapped, began = converted
    return [stream.packet(payload_type, body, mapped, began)]


class _Frames:
    """Samples waiting to make whole frames."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: Pcm = np.zeros(0, dtype=np.float32)

    def add(self, samples: Pcm, size: int) -> list[Pcm]:
        pending = np.concatenate((self._pending, samples)) if len(self._pending) else samples
        whole = len(pending) // size
        self._pending = pending[whole * size :]
        return [pending[i * size : (i + 1) * size] for i in range(whole)]


class OpusToG711:
    """A browser's Opus RTP → our G.711 RTP stream (and its events at 8 kHz)."""

    def __init__(self, formats: OpusFormats) -> None:
        self.formats = formats
        self._decoder = av.CodecContext.create("opus", "r")
        self._decoder.sample_rate = OPUS_RATE
        self._resampler = soxr.ResampleStream(OPUS_RATE, G711_RATE, 1, dtype="float32")
        self._frames = _Frames()
        self._arrivals = _Arrivals()
        self._events = _Events()
        self.stream = _OwnStream()
        self.decode_errors = 0

    def convert(self, packet: bytes) -> list[bytes]:
        parts = _parts(packet)
        if parts is None:
            return []
        payload_type, ssrc, sequence, timestamp, payload = parts
        formats = self.formats
        if payload_type == formats.events and formats.plain_events is not None:
            return self._event(payload, timestamp, formats.plain_events)
        if payload_type != formats.opus:
            return []
        missing = self._arrivals.accept(ssrc, sequence, timestamp)
        if missing is None:
            return []
        pcm = self._decode(payload)
        self._arrivals.played(timestamp, len(pcm))
        out = self._fill(missing) if missing else []
        return out + self._emit(self._resampler.resample_chunk(pcm))

    def _decode(self, payload: bytes) -> Pcm:
        try:
            frames = self._decoder.decode(av.Packet(payload))
        except av.FFmpegError:
            self.decode_errors += 1
            return np.zeros(OPUS_FRAME, dtype=np.float32)
        if not frames:
            return np.zeros(0, dtype=np.float32)
        decoded = [f.to_ndarray() for f in frames]
        # Planar float, one row per channel (a browser's "/2" is usually mono inside).
        samples = np.concatenate(decoded, axis=1) if len(decoded) > 1 else decoded[0]
        return np.ascontiguousarray(samples.mean(axis=0, dtype=np.float32))

    def _fill(self, missing: int) -> list[bytes]:
        if missing > MAX_FILLED_PACKETS * OPUS_FRAME:
            self.stream.timestamp = (self.stream.timestamp + missing // 6) & 0xFFFFFFFF
            return []
        silence = np.zeros(missing, dtype=np.float32)
        return self._emit(self._resampler.resample_chunk(silence))

    def _emit(self, samples: Pcm) -> list[bytes]:
        out = []
        stream, voice = self.stream, self.formats.voice
        encode = pcma_encode if voice == PCMA else pcmu_encode
        for frame in self._frames.add(samples, G711_FRAME):
            pcm = np.clip(frame * 32768.0, -32768, 32767).astype(np.int16)
            out.append(stream.packet(voice, encode(pcm), stream.timestamp, False))
            stream.timestamp = (stream.timestamp + G711_FRAME) & 0xFFFFFFFF
        return out

    def _event(self, payload: bytes, timestamp: int, payload_type: int) -> list[bytes]:
        return _event_packets(
            self._events, self.stream, payload, timestamp, payload_type, G711_RATE / OPUS_RATE
        )


class G711ToOpus:
    """G.711 RTP from the relay → Opus RTP for the browser (events at 48 kHz)."""

    def __init__(self, formats: OpusFormats) -> None:
        self.formats = formats
        encoder = self._encoder = av.CodecContext.create("libopus", "w")
        encoder.sample_rate = OPUS_RATE
        encoder.layout = "mono"
        encoder.format = "flt"
        encoder.bit_rate = OPUS_BITRATE
        encoder.open()
        self._resampler = soxr.ResampleStream(G711_RATE, OPUS_RATE, 1, dtype="float32")
        self._frames = _Frames()
        self._arrivals = _Arrivals()
        self._events = _Events()
        self.stream = _OwnStream()
        self._pts = 0

    def convert(self, packet: bytes) -> list[bytes]:
        parts = _parts(packet)
        if parts is None:
            return []
        payload_type, ssrc, sequence, timestamp, payload = parts
        formats = self.formats
        if payload_type == formats.plain_events:
            if formats.events is None:
                return []
            return self._event(payload, timestamp, formats.events)
        if payload_type == PCMU:
            linear = pcmu_decode(payload)
        elif payload_type == PCMA:
            linear = pcma_decode(payload)
        else:
            return []  # comfort noise and the like: the browser's own silence stands in
        missing = self._arrivals.accept(ssrc, sequence, timestamp)
        if missing is None:
            return []
        self._arrivals.played(timestamp, len(linear))
        out = self._fill(missing) if missing else []
        pcm = linear.astype(np.float32) * np.float32(1 / 32768)
        return out + self._emit(self._resampler.resample_chunk(pcm))

    def _fill(self, missing: int) -> list[bytes]:
        if missing > MAX_FILLED_PACKETS * G711_FRAME:
            self.stream.timestamp = (self.stream.timestamp + missing * 6) & 0xFFFFFFFF
            return []
        silence = np.zeros(missing, dtype=np.float32)
        return self._emit(self._resampler.resample_chunk(silence))

    def _emit(self, samples: Pcm) -> list[bytes]:
        out = []
        stream, opus = self.stream, self.formats.opus
        for frame in self._frames.add(samples, OPUS_FRAME):
            audio = av.AudioFrame.from_ndarray(frame.reshape(1, -1), format="flt", layout="mono")
            audio.sample_rate = OPUS_RATE
            audio.pts = self._pts
            self._pts += OPUS_FRAME
            for encoded in self._encoder.encode(audio):
                out.append(stream.packet(opus, bytes(encoded), stream.timestamp, False))
                stream.timestamp = (stream.timestamp + OPUS_FRAME) & 0xFFFFFFFF
        return out

    def _event(self, payload: bytes, timestamp: int, payload_type: int) -> list[bytes]:
        return _event_packets(
            self._events, self.stream, payload, timestamp, payload_type, OPUS_RATE / G711_RATE
        )


class OpusTranscoder:
    """Both directions of one transcoded WebRTC leg, with their counters."""

    def __init__(self, formats: OpusFormats) -> None:
        self.inbound = OpusToG711(formats)
        self.outbound = G711ToOpus(formats)
        self.packets_decoded = 0
        self.packets_encoded = 0

    @property
    def formats(self) -> OpusFormats:
        return self.inbound.formats

    def set_formats(self, formats: OpusFormats) -> None:
        """The payload types changed (the other party's SDP named its G.711)."""
        self.inbound.formats = self.outbound.formats = formats

    def from_browser(self, packet: bytes) -> list[bytes]:
        self.packets_decoded += 1
        return self.inbound.convert(packet)

    def to_browser(self, packet: bytes) -> list[bytes]:
        self.packets_encoded += 1
        return self.outbound.convert(packet)
