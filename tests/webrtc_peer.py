"""A browser stand-in for the WebRTC tests and the benchmark: aiortc's
RTCPeerConnection (no ICE servers, host candidates on loopback only) that
sends a sine and keeps what it hears, as 8 kHz samples."""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aioice.ice
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from av import AudioFrame, AudioResampler

RATE = 8000
FRAME = 160  # 20 ms at 8 kHz
AMPLITUDE = 0.5


@contextmanager
def loopback_candidates() -> Iterator[None]:
    """aioice gathers every interface's address (and skips 127.0.0.1): here it
    gathers 127.0.0.1 alone, so nothing is ever sent off this machine."""
    original = aioice.ice.get_host_addresses

    def loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"] if use_ipv4 else []

    aioice.ice.get_host_addresses = loopback  # type: ignore[assignment]
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original  # type: ignore[assignment]


class ToneTrack(MediaStreamTrack):
    """A sine at `frequency`, 20 ms frames at 8 kHz, paced in real time."""

    kind = "audio"

    def __init__(self, frequency: float) -> None:
        super().__init__()
        self.frequency = frequency
        self._sent = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._sent / RATE
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (self._sent + np.arange(FRAME)) / RATE
        samples = (AMPLITUDE * 32767 * np.sin(2 * np.pi * self.frequency * t)).astype(np.int16)
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, RATE)
        self._sent += FRAME
        return frame


class Browser:
    """One RTCPeerConnection: offers or answers with G.711 first, sends a tone,
    and collects the audio it receives (resampled to 8 kHz mono)."""

    def __init__(
        self,
        tone: float,
        codecs: tuple[str, ...] = ("audio/PCMU", "audio/PCMA"),
        *,
        keep: bool = True,
    ) -> None:
        """`keep`: keep what is heard as samples (False: only count the
        frames, which the benchmark's many peers can afford)."""
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.heard: list[np.ndarray] = []
        self.frames = 0
        self._reader: asyncio.Task[None] | None = None
        self._keep = keep
        transceiver = self.pc.addTransceiver(ToneTrack(tone), direction="sendrecv")
        capabilities = RTCRtpSender.getCapabilities("audio")
        if codecs:
            preferred = [c for c in capabilities.codecs if c.mimeType in codecs]
            preferred.sort(key=lambda c: codecs.index(c.mimeType))
            events = [c for c in capabilities.codecs if c.mimeType == "audio/telephone-event"]
            transceiver.setCodecPreferences(preferred + events)

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._reader = asyncio.ensure_future(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        resampler = AudioResampler(format="s16", layout="mono", rate=RATE)
        try:
            while True:
                frame = await track.recv()
                self.frames += 1
                if not self._keep:
                    continue
                for out in resampler.resample(frame):
                    self.heard.append(out.to_ndarray().reshape(-1).copy())
        except Exception:
            return  # the track ended

    async def offer(self) -> str:
        with loopback_candidates():
            await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def answer(self, offer: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        with loopback_candidates():
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    async def accept(self, answer: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    def mute(self) -> None:
        """Stop sending (the RTP sender idles without a track)."""
        for transceiver in self.pc.getTransceivers():
            transceiver.sender.replaceTrack(None)

    def samples(self, last: float | None = None) -> np.ndarray:
        heard = np.concatenate(self.heard) if self.heard else np.zeros(0, np.int16)
        return heard[-int(last * RATE) :] if last else heard

    @property
    def state(self) -> str:
        return str(self.pc.connectionState)

    async def close(self) -> None:
        await self.pc.close()
        if self._reader is not None:
            self._reader.cancel()


def tone_level(samples: Any, frequency: float, rate: int = RATE) -> tuple[float, float, float]:
    """(RMS, dominant frequency, share of the energy within ±20 Hz of `frequency`)."""
    x = np.asarray(samples, dtype=np.float64)
    if not len(x) or not x.any():
        return 0.0, 0.0, 0.0
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    frequencies = np.fft.rfftfreq(len(x), 1 / rate)
    purity = spectrum[np.abs(frequencies - frequency) <= 20].sum() / spectrum.sum()
    return float(np.sqrt((x**2).mean())), float(frequencies[spectrum.argmax()]), float(purity)
