"""media/transcode.py: Opus ↔ G.711 frames keep a tone's frequency and level,
number their own stream, rescale telephone-events, and survive loss."""

from __future__ import annotations

import itertools
import struct

import av
import numpy as np

from callbridge.media.g711 import pcma_decode, pcmu_decode, pcmu_encode
from callbridge.media.rtp import RtpPacket, TelephoneEvent
from callbridge.media.transcode import (
    G711_FRAME,
    OPUS_FRAME,
    PCMA,
    PCMU,
    G711ToOpus,
    OpusFormats,
    OpusToG711,
    OpusTranscoder,
)
from tests.audio import level_dbfs, sine, strongest_frequency

FORMATS = OpusFormats(opus=111, events=126, voice=PCMU, plain_events=101)


def g711_packets(
    tone: np.ndarray, *, pt: int = PCMU, start: int = 1000, ssrc: int = 0x1234, stamp: int = 0
) -> list[bytes]:
    pcm = np.round(tone * 32767).astype(np.int16)
    return [
        RtpPacket(
            pt,
            (start + i) & 0xFFFF,
            (stamp + i * G711_FRAME) & 0xFFFFFFFF,
            ssrc,
            pcmu_encode(pcm[i * 160 : i * 160 + 160]),
        ).to_bytes()
        for i in range(len(pcm) // G711_FRAME)
    ]


def opus_packets(tone: np.ndarray, *, pt: int = 111) -> list[bytes]:
    """A browser's stream: `tone` at 48 kHz as 20 ms Opus packets."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = 48000
    encoder.layout = "mono"
    encoder.format = "flt"
    encoder.open()
    packets: list[bytes] = []
    for i in range(len(tone) // OPUS_FRAME):
        frame = av.AudioFrame.from_ndarray(
            tone[i * OPUS_FRAME : (i + 1) * OPUS_FRAME].astype(np.float32).reshape(1, -1),
            format="flt",
            layout="mono",
        )
        frame.sample_rate, frame.pts = 48000, i * OPUS_FRAME
        for encoded in encoder.encode(frame):
            n = len(packets)
            packets.append(RtpPacket(pt, n, n * OPUS_FRAME, 0x99, bytes(encoded)).to_bytes())
    return packets


def decode_opus(packets: list[bytes]) -> np.ndarray:
    decoder = av.CodecContext.create("opus", "r")
    chunks = []
    for data in packets:
        for frame in decoder.decode(av.Packet(RtpPacket.parse(data).payload)):
            chunks.append(frame.to_ndarray().mean(axis=0))
    return np.concatenate(chunks)


def decode_g711(packets: list[bytes]) -> np.ndarray:
    out = []
    for data in packets:
        packet = RtpPacket.parse(data)
        decode = pcma_decode if packet.payload_type == PCMA else pcmu_decode
        out.append(decode(packet.payload).astype(np.float64) / 32768)
    return np.concatenate(out)


def steady(samples: np.ndarray, rate: int) -> np.ndarray:
    return samples[rate // 5 :]  # past the codecs' and resamplers' start-up


def test_g711_to_opus_to_g711_keeps_a_440_hz_tone() -> None:
    tone = sine(440, 1.0, 8000, 0.5)
    to_browser, from_browser = G711ToOpus(FORMATS), OpusToG711(FORMATS)
    opus = [out for packet in g711_packets(tone) for out in to_browser.convert(packet)]
    back = [out for packet in opus for out in from_browser.convert(packet)]
    samples = steady(decode_g711(back), 8000)
    assert abs(strongest_frequency(samples, 8000) - 440) <= 20
    assert abs(level_dbfs(samples) - level_dbfs(tone)) < 3


def test_g711_to_opus_keeps_the_tone_at_48_khz() -> None:
    tone = sine(440, 1.0, 8000, 0.5)
    to_browser = G711ToOpus(FORMATS)
    opus = [out for packet in g711_packets(tone) for out in to_browser.convert(packet)]
    samples = steady(decode_opus(opus), 48000)
    assert abs(strongest_frequency(samples, 48000) - 440) <= 20
    assert abs(level_dbfs(samples) - level_dbfs(tone)) < 3


def test_opus_to_g711_keeps_a_440_hz_tone() -> None:
    tone = sine(440, 1.0, 48000, 0.5)
    from_browser = OpusToG711(FORMATS)
    g711 = [out for packet in opus_packets(tone) for out in from_browser.convert(packet)]
    samples = steady(decode_g711(g711), 8000)
    assert abs(strongest_frequency(samples, 8000) - 440) <= 20
    assert abs(level_dbfs(samples) - level_dbfs(tone)) < 3


def test_opus_to_g711_speaks_the_other_partys_g711() -> None:
    from_browser = OpusToG711(OpusFormats(opus=111, voice=PCMA))
    g711 = [
        out for p in opus_packets(sine(440, 0.2, 48000, 0.5)) for out in from_browser.convert(p)
    ]
    assert {RtpPacket.parse(p).payload_type for p in g711} == {PCMA}


def test_each_direction_is_its_own_stream_20_ms_a_packet() -> None:
    to_browser, from_browser = G711ToOpus(FORMATS), OpusToG711(FORMATS)
    opus = [
        RtpPacket.parse(out)
        for packet in g711_packets(sine(440, 0.5, 8000, 0.5))
        for out in to_browser.convert(packet)
    ]
    g711 = [
        RtpPacket.parse(out)
        for p in opus_packets(sine(440, 0.5, 48000, 0.5))
        for out in from_browser.convert(p)
    ]
    for packets, step, pt in ((opus, OPUS_FRAME, 111), (g711, G711_FRAME, PCMU)):
        assert len(packets) >= 20
        assert {p.payload_type for p in packets} == {pt}
        assert {p.ssrc for p in packets} not in ({0x1234}, {0x99})
        assert len({p.ssrc for p in packets}) == 1
        for a, b in itertools.pairwise(packets):
            assert (b.sequence_number - a.sequence_number) & 0xFFFF == 1
            assert (b.timestamp - a.timestamp) & 0xFFFFFFFF == step
    assert all(len(p.payload) == G711_FRAME for p in g711)


def test_a_lost_browser_packet_is_silence_and_the_stream_goes_on() -> None:
    packets = opus_packets(sine(440, 1.0, 48000, 0.5))
    reference = OpusToG711(FORMATS)
    whole = [o for p in packets for o in reference.convert(p)]
    from_browser = OpusToG711(FORMATS)
    del packets[20]
    out = [RtpPacket.parse(o) for p in packets for o in from_browser.convert(p)]
    # The lost packet's 20 ms came as silence: as many packets, no stall, no jump.
    assert len(out) == len(whole)
    for a, b in itertools.pairwise(out):
        assert (b.timestamp - a.timestamp) & 0xFFFFFFFF == G711_FRAME
    samples = steady(decode_g711([o.to_bytes() for o in out]), 8000)
    assert abs(strongest_frequency(samples, 8000) - 440) <= 20


def test_a_long_gap_jumps_the_timestamps_and_late_packets_are_dropped() -> None:
    to_browser = G711ToOpus(FORMATS)
    packets = g711_packets(sine(440, 2.0, 8000, 0.5))
    kept = packets[:20] + packets[60:]
    out = [RtpPacket.parse(o) for p in kept for o in to_browser.convert(p)]
    jumps = [(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in itertools.pairwise(out)]
    assert sorted(set(jumps)) == [OPUS_FRAME, OPUS_FRAME + 40 * G711_FRAME * 6]
    assert to_browser.convert(packets[30]) == []  # late: the stream has moved on
    assert to_browser.convert(packets[-1]) == []  # a repeat


def test_a_new_source_behind_the_old_ones_sequence_is_a_new_stream() -> None:
    """The phone, then the music on hold (its own SSRC, a sequence "behind"
    the phone's), then the phone again: each is heard, none taken as late."""
    to_browser = G711ToOpus(FORMATS)
    phone = g711_packets(sine(440, 1.0, 8000, 0.5), start=40000)
    music = g711_packets(sine(697, 1.0, 8000, 0.5), start=100, ssrc=0x5678, stamp=77)
    again = g711_packets(sine(440, 1.0, 8000, 0.5), start=40050, stamp=400 * G711_FRAME)
    counts = [sum(len(to_browser.convert(p)) for p in part) for part in (phone, music, again)]
    assert all(count >= 40 for count in counts), counts  # 50 a second, less the encoder's start


def test_telephone_events_cross_rescaled_to_the_other_clock() -> None:
    transcoder = OpusTranscoder(FORMATS)
    for p in opus_packets(sine(440, 0.1, 48000, 0.5)):
        transcoder.from_browser(p)
    at = transcoder.inbound.stream.timestamp
    events = [
        RtpPacket(
            126, 100 + i, 48000, 0x99, TelephoneEvent(5, end, 10, d).to_bytes(), marker=i == 0
        )
        for i, (end, d) in enumerate(((False, 960), (False, 1920), (True, 4800)))
    ]
    out = [RtpPacket.parse(o) for e in events for o in transcoder.from_browser(e.to_bytes())]
    assert [p.payload_type for p in out] == [101, 101, 101]
    assert {p.timestamp for p in out} == {at}
    assert [p.marker for p in out] == [True, False, False]
    assert [TelephoneEvent.parse(p.payload).duration for p in out] == [160, 320, 800]
    assert TelephoneEvent.parse(out[-1].payload).end

    back = RtpPacket(101, 7, 8000, 0x5, TelephoneEvent(11, True, 10, 800).to_bytes()).to_bytes()
    (sent,) = [RtpPacket.parse(o) for o in transcoder.to_browser(back)]
    assert sent.payload_type == 126
    assert TelephoneEvent.parse(sent.payload) == TelephoneEvent(11, True, 10, 4800)


def test_events_are_dropped_when_the_browser_takes_none() -> None:
    transcoder = OpusTranscoder(OpusFormats(opus=111, events=None))
    event = RtpPacket(101, 7, 8000, 0x5, TelephoneEvent(1, True, 10, 800).to_bytes()).to_bytes()
    assert transcoder.to_browser(event) == []


def test_garbage_is_dropped_not_raised() -> None:
    transcoder = OpusTranscoder(FORMATS)
    assert transcoder.from_browser(b"\x80") == []
    junk = RtpPacket(111, 1, 0, 0x99, b"\xff" * 40).to_bytes()
    transcoder.from_browser(junk)  # whatever the decoder makes of it, no exception
    assert transcoder.to_browser(struct.pack("!BBHII", 0x80, 13, 1, 0, 5) + b"\x00") == []
