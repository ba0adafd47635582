"""Tones for the audio tests: each phone plays a pure sine and records what
it receives, and numpy's FFT says whether the other's tone got through, at
the level it was sent and for long enough."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .baresip import Baresip

RATE = 8000  # G.711's rate; sndfile records at the codec's rate
CALLER_TONE = 1000.0  # Hz
CALLEE_TONE = 440.0
AMPLITUDE = 0.5  # of full scale
SENT_RMS = AMPLITUDE * 32767 / np.sqrt(2)


def write_tone(path: Path, frequency: float, seconds: float = 10.0) -> Path:
    """A sine at `AMPLITUDE`, 16-bit mono WAV at 8 kHz. aufile ends the call
    when its file ends: the file must outlast the call."""
    t = np.arange(int(seconds * RATE)) / RATE
    samples = (AMPLITUDE * 32767 * np.sin(2 * np.pi * frequency * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(samples.tobytes())
    return path


@dataclass(frozen=True)
class Heard:
    """What a recording holds."""

    seconds: float  # of sound: 20 ms frames louder than -30 dBFS
    level: float  # RMS of those frames (a full-scale sine is 23,170)
    peak_hz: float  # the dominant frequency
    purity: float  # the share of all energy within ±20 Hz of the expected tone

    def __str__(self) -> str:
        return (
            f"{self.seconds:.2f} s of sound at RMS {self.level:.0f}, peak {self.peak_hz:.1f} Hz, "
            f"{self.purity:.1%} of the energy at the tone"
        )


def read_samples(path: Path) -> tuple[np.ndarray, int]:
    """A 16-bit WAV's samples, its channels averaged (sndfile records Opus
    as the decoder gives it: 48 kHz stereo), and its rate."""
    with wave.open(str(path)) as recording:
        assert recording.getsampwidth() == 2, path
        channels, rate = recording.getnchannels(), recording.getframerate()
        samples = np.frombuffer(recording.readframes(recording.getnframes()), "<i2")
    return samples.astype(np.float64).reshape(-1, channels).mean(axis=1), rate


def analyse(
    path: Path, tone: float, *, last: float | None = None, first: float | None = None
) -> Heard:
    """What `path` holds; with `last`, only its last `last` seconds; with
    `first`, only its first."""
    x, rate = read_samples(path)
    if last is not None:
        x = x[-int(last * rate) :]
    if first is not None:
        x = x[: int(first * rate)]
    frame = rate // 50
    frames = x[: len(x) // frame * frame].reshape(-1, frame)
    rms = np.sqrt((frames**2).mean(axis=1)) if len(frames) else np.zeros(0)
    loud = rms > 32767 * 10 ** (-30 / 20)
    if not len(x) or not x.any():
        return Heard(0.0, 0.0, 0.0, 0.0)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    frequencies = np.fft.rfftfreq(len(x), 1 / rate)
    return Heard(
        seconds=float(loud.sum()) * frame / rate,
        level=float(np.sqrt((frames[loud] ** 2).mean())) if loud.any() else 0.0,
        peak_hz=float(frequencies[spectrum.argmax()]),
        purity=float(spectrum[np.abs(frequencies - tone) <= 20].sum() / spectrum.sum()),
    )


def channel_heard(path: Path, channel: int, tone: float, workdir: Path) -> Heard:
    """What one channel of a stereo recording holds (tones.analyse on it alone)."""
    with wave.open(str(path)) as recording:
        assert (recording.getnchannels(), recording.getframerate()) == (2, 8000)
        frames = np.frombuffer(recording.readframes(recording.getnframes()), "<i2")
    mono = workdir / f"{path.stem}-{channel}.wav"
    with wave.open(str(mono), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(frames.reshape(-1, 2)[:, channel].copy().tobytes())
    return analyse(mono, tone)


def assert_hears(
    phone: Baresip,
    tone: float,
    diagnostics: str = "",
    *,
    seconds: float = 2.0,
    last: float | None = None,
    first: float | None = None,
    same_level: bool = True,
) -> None:
    """`phone` received `tone` (in its recording's `last` or `first` seconds,
    if given):
    for at least `seconds`, loud, and nearly pure; at the level it was sent
    unless `same_level` is False (a browser's microphone goes through the
    browser's own gain control before it is sent)."""
    recordings = phone.recordings("dec")
    assert len(recordings) == 1, f"{phone.directory}: {recordings}\n{diagnostics}"
    heard = analyse(recordings[0], tone, last=last, first=first)
    context = f"{recordings[0]}: {heard}\n{diagnostics}"
    assert heard.seconds >= seconds, context
    assert abs(heard.peak_hz - tone) <= 20, context
    # At the level it was sent (G.711 keeps it within a fraction of a dB): far
    # above silence, and not PCMU decoded as PCMA or back (-8.6 dB).
    if same_level:
        assert abs(20 * np.log10(max(heard.level, 1) / SENT_RMS)) <= 3, context
    assert heard.purity >= 0.9, context


@dataclass(frozen=True)
class HeardMusic:
    """How much of a recording is the bundled melody: `share` of its energy
    within 8 Hz of a frequency the melody sounds, and how many of those
    frequencies hold at least 1% of it each (a single tone that happens to
    sit on one of them gives 1)."""

    share: float
    notes: int

    def __str__(self) -> str:
        return f"{self.share:.1%} of the energy on the melody's notes, {self.notes} notes heard"


def analyse_music(samples: np.ndarray, rate: int = RATE) -> HeardMusic:
    """Whether `samples` (what a held phone received) are the music on hold:
    any second or more of the melody, from any point of its loop, scores a
    share above 0.9 with at least 4 notes (the whole loop 11); the test tones
    score 0, and noise about 0.1 with none."""
    from callbridge.media.melody import frequencies

    x = samples.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    bins = np.fft.rfftfreq(len(x), 1 / rate)
    total = spectrum.sum()
    if not total:
        return HeardMusic(0.0, 0)
    near = np.zeros(len(bins), dtype=bool)
    notes = 0
    for frequency in frequencies():
        around = np.abs(bins - frequency) <= 8
        near |= around
        notes += int(spectrum[around].sum() >= 0.01 * total)
    return HeardMusic(float(spectrum[near].sum() / total), notes)
