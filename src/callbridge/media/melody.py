"""The bundled music on hold: a short melody synthesized here, by code, so
callbridge ships no recording and no third-party rights.

Eight seconds at 120 beats a minute, four bars over the chords C, A minor,
F and G (I-vi-IV-V), which loop back into each other: a plucked melody around
C5-D6 (a band-limited triangle: odd harmonics only up to 3.4 kHz, so nothing
folds back at 8 kHz) over one bass note a bar (sine and two overtones, as a
phone's band starts near 300 Hz and would lose a bare bass tone). Each note
starts in 8 ms and decays exponentially, ending with a 15 ms fade, so no
note clicks and the loop has no seam. The whole is scaled to an RMS of
-18 dBFS (relative to a full-scale square wave), the level telephone prompts
are usually made at, with its peaks well under full scale.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 8000
BEAT = 0.5  # seconds: 120 beats a minute
LEVEL_DBFS = -18.0
_BAND_TOP = 3400.0  # Hz: the top of the telephone band

# (MIDI note, length in beats), bar by bar; 69 is A4 = 440 Hz.
_MELODY = (
    # C: G5 E5 G5 C6 G5
    (79, 1.0), (76, 0.5), (79, 0.5), (84, 1.0), (79, 1.0),
    # A minor: A5 E5 A5 C6 A5
    (81, 1.0), (76, 0.5), (81, 0.5), (84, 1.0), (81, 1.0),
    # F: F5 A5 C6 A5 F5
    (77, 1.0), (81, 0.5), (84, 0.5), (81, 1.0), (77, 1.0),
    # G: G5 B5 D6 B5, then G5 held, fading into the C of the next loop
    (79, 0.5), (83, 0.5), (86, 0.5), (83, 0.5), (79, 2.0),
)  # fmt: skip
_BASS = ((48, 4.0), (45, 4.0), (41, 4.0), (43, 4.0))  # C3, A2, F2, G2: a bar each


def _frequency(note: int) -> float:
    return float(440.0 * 2.0 ** ((note - 69) / 12))


def _envelope(length: int, decay: float) -> npt.NDArray[np.float64]:
    t = np.arange(length) / SAMPLE_RATE
    attack = np.minimum(1.0, t / 0.008)
    release = np.minimum(1.0, (length - np.arange(length)) / (0.015 * SAMPLE_RATE))
    result: npt.NDArray[np.float64] = attack * np.exp(-t / decay) * release
    return result


def _tone(
    frequency: float, length: int, partials: tuple[tuple[int, float], ...]
) -> npt.NDArray[np.float64]:
    t = np.arange(length) / SAMPLE_RATE
    wave = np.zeros(length)
    for multiple, amplitude in partials:
        if frequency * multiple < _BAND_TOP:
            wave += amplitude * np.sin(2 * np.pi * frequency * multiple * t)
    return wave


# A triangle wave's partials: odd harmonics at 1/n², alternating in sign.
_TRIANGLE = tuple((n, (-1) ** (n // 2) / n**2) for n in range(1, 16, 2))
_BASS_PARTIALS = ((1, 1.0), (2, 0.5), (3, 0.25))


def _voice(
    notes: tuple[tuple[int, float], ...],
    partials: tuple[tuple[int, float], ...],
    decay: float,
    total: int,
) -> npt.NDArray[np.float64]:
    out = np.zeros(total)
    start = 0
    for note, beats in notes:
        length = round(beats * BEAT * SAMPLE_RATE)
        tone = _tone(_frequency(note), length, partials) * _envelope(length, decay)
        out[start : start + length] += tone
        start += length
    return out


@functools.cache
def _synthesize() -> npt.NDArray[np.int16]:
    total = round(sum(beats for _, beats in _MELODY) * BEAT * SAMPLE_RATE)
    mix = _voice(_MELODY, _TRIANGLE, 0.35, total) + 0.45 * _voice(_BASS, _BASS_PARTIALS, 1.2, total)
    rms = float(np.sqrt(np.mean(mix**2)))
    mix *= 32768 * 10 ** (LEVEL_DBFS / 20) / rms
    samples = np.round(np.clip(mix, -32768, 32767)).astype(np.int16)
    samples.setflags(write=False)
    return samples


def frequencies() -> frozenset[float]:
    """Every frequency the melody sounds (each note's partials in the band):
    what a test listening for it looks for."""
    voices = ((_MELODY, _TRIANGLE), (_BASS, _BASS_PARTIALS))
    return frozenset(
        _frequency(note) * multiple
        for notes, partials in voices
        for note, _ in notes
        for multiple, _ in partials
        if _frequency(note) * multiple < _BAND_TOP
    )


def default_music() -> npt.NDArray[np.int16]:
    """The bundled melody: 8 s of 8 kHz mono int16 samples, made at the first
    call and kept (read-only) for the life of the process."""
    return _synthesize()
