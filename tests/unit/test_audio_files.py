"""Uploaded audio read as 8 kHz mono: every PCM width, rates, channels,
the limits, and the stored WAV written atomically."""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path

import miniaudio
import numpy as np
import pytest

from callbridge.media.audio_files import AudioError, decode, kind_of, read_wav, write_wav

from ..audio import (
    coded_wav_bytes,
    level_dbfs,
    mp3_bytes,
    sine,
    strongest_frequency,
    wav_bytes,
)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_every_pcm_width_reads_at_its_level(width: int) -> None:
    samples = decode(wav_bytes([sine(500, 1.0, 16_000, 0.5)], 16_000, width), "wav", max_seconds=60)
    assert len(samples) == 8000
    middle = samples[200:-200]
    assert strongest_frequency(middle) == pytest.approx(500, abs=1)
    # 8-bit keeps about 48 dB of range: the level is still right.
    assert level_dbfs(middle) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.3)


def test_8_khz_mono_16_bit_passes_unchanged() -> None:
    original = np.round(sine(300, 0.5, 8000, 0.4) * 32767) / 32767
    samples = decode(wav_bytes([original], 8000), "wav", max_seconds=60)
    assert np.array_equal(samples, np.round(original * 32767).astype(np.int16))


def test_channels_are_averaged() -> None:
    tone = sine(400, 0.5, 8000, 0.6)
    samples = decode(wav_bytes([tone, -tone, tone, tone], 8000), "wav", max_seconds=60)
    assert level_dbfs(samples) == pytest.approx(20 * np.log10(0.3 / np.sqrt(2)), abs=0.1)


def test_a_tone_above_4_khz_is_filtered_out_not_folded_back() -> None:
    # Decimating 48 kHz to 8 kHz without a filter would fold 5 kHz onto 3 kHz.
    samples = decode(wav_bytes([sine(5000, 1.0, 48_000, 0.5)], 48_000), "wav", max_seconds=60)
    assert level_dbfs(samples[400:-400]) < -60


def test_a_cut_wav_plays_what_it_holds() -> None:
    whole = wav_bytes([sine(440, 1.0, 8000, 0.5)], 8000)
    samples = decode(whole[: 44 + 2 * 4000 + 1], "wav", max_seconds=60)
    assert len(samples) == 4000


@pytest.mark.parametrize(
    ("encoding", "extensible", "tolerance"),
    [
        ("float", False, 0.1),
        ("float", True, 0.1),
        ("mulaw", False, 0.3),
        ("alaw", False, 0.3),
        ("pcm24", True, 0.1),
    ],
)
def test_wav_encodings_the_standard_library_does_not_read_are_read(
    encoding: str, extensible: bool, tolerance: float
) -> None:
    # Telephony prompts come as G.711 WAVs; DAWs and ffmpeg write float and
    # extensible headers; Python 3.11's wave reads none of them.
    left = sine(700, 1.0, 16_000, 0.5)
    data = coded_wav_bytes([left, np.zeros_like(left)], 16_000, encoding, extensible=extensible)
    samples = decode(data, "wav", max_seconds=60)
    assert len(samples) == 8000
    middle = samples[200:-200]
    assert strongest_frequency(middle) == pytest.approx(700, abs=1)
    assert level_dbfs(middle) == pytest.approx(20 * np.log10(0.25 / np.sqrt(2)), abs=tolerance)


def test_a_wav_in_an_encoding_nobody_reads_is_refused_with_a_reason() -> None:
    data = bytearray(wav_bytes([sine(440, 0.1, 8000, 0.5)], 8000))
    data[20:22] = (0x55).to_bytes(2, "little")  # MPEG layer 3 inside a WAV
    with pytest.raises(AudioError, match="a WAV file in an encoding this server does not read"):
        decode(bytes(data), "wav", max_seconds=60)


def test_a_coded_wav_longer_than_the_limit_is_refused() -> None:
    data = coded_wav_bytes([np.zeros(8000 * 11)], 8000, "mulaw")
    with pytest.raises(AudioError, match="longer than 10 seconds"):
        decode(data, "wav", max_seconds=10)


def test_longer_than_the_limit_is_refused_before_it_is_read() -> None:
    data = wav_bytes([np.zeros(8000 * 11)], 8000)
    with pytest.raises(AudioError, match="longer than 10 seconds"):
        decode(data, "wav", max_seconds=10)


def test_an_mp3_longer_than_the_limit_is_refused() -> None:
    data = mp3_bytes([sine(440, 3.0, 8000, 0.5)], 8000, kbps=32)
    assert len(decode(data, "mp3", max_seconds=10)) == pytest.approx(24_000, abs=2000)
    with pytest.raises(AudioError, match="longer than 1 seconds"):
        decode(data, "mp3", max_seconds=1)


def test_an_mp3_whose_header_lies_about_its_length_is_cut_off_while_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = mp3_bytes([sine(440, 3.0, 8000, 0.5)], 8000, kbps=32)
    honest = miniaudio.mp3_get_info

    def lying(mp3: bytes) -> object:
        info = honest(mp3)
        info.duration = 0.5
        return info

    monkeypatch.setattr(miniaudio, "mp3_get_info", lying)
    with pytest.raises(AudioError, match="longer than 1 seconds"):
        decode(data, "mp3", max_seconds=1)


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("audio/wav", "wav"),
        ("audio/x-wav", "wav"),
        ("Audio/WAV; codecs=1", "wav"),
        ("audio/mpeg", "mp3"),
        ("audio/mp3", "mp3"),
        ("audio/ogg", None),
        ("", None),
        (None, None),
    ],
)
def test_content_types(content_type: str | None, kind: str | None) -> None:
    assert kind_of(content_type) == kind


def test_the_stored_wav_is_replaced_whole_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "music" / "music-on-hold.wav"
    first = np.arange(-4000, 4000, dtype=np.int16)
    write_wav(path, first)
    write_wav(path, first[::-1].copy())
    assert np.array_equal(read_wav(path, max_seconds=10), first[::-1])
    assert os.listdir(path.parent) == ["music-on-hold.wav"]  # no temporary file left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "music-on-hold.wav"
    write_wav(path, np.ones(800, dtype=np.int16))

    def broken(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_wav(path, np.zeros(800, dtype=np.int16))
    assert np.array_equal(read_wav(path, max_seconds=10), np.ones(800, dtype=np.int16))
    assert os.listdir(tmp_path) == ["music-on-hold.wav"]


def test_a_riff_size_ending_inside_a_chunk_is_a_bad_file_not_a_crash() -> None:
    # The standard library raises RuntimeError for this one (found by fuzzing).
    wav = wav_bytes([sine(440, 0.1, 8000, 0.5)], 8000)
    odd_chunk = b"LIST" + (5).to_bytes(4, "little") + b"abcde\0"
    data = bytearray(wav[:36] + odd_chunk + wav[36:])
    data[4:8] = (36 + 5).to_bytes(4, "little")
    with pytest.raises(AudioError, match="not a WAV file"):
        decode(bytes(data), "wav", max_seconds=10)


def mutated(data: bytes, rng: random.Random) -> bytes:
    """`data` with a few bytes changed, cut or inserted, the header most often."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 12)):
        at = rng.randrange(min(len(out), 64) if rng.random() < 0.5 else len(out))
        action = rng.random()
        if action < 0.6:
            out[at] = rng.choice([0, 1, 2, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        elif action < 0.8:
            del out[at : at + rng.randint(1, 40)]
        else:
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        if not out:
            break
    return bytes(out)


@pytest.mark.parametrize("kind", ["wav", "mp3"])
def test_mangled_files_are_refused_or_read_never_a_crash(kind: str) -> None:
    rng = random.Random(13)
    if kind == "wav":
        seeds = [
            wav_bytes([sine(440, 0.2, 16_000, 0.5)] * 2, 16_000),
            wav_bytes([sine(440, 0.2, 8000, 0.5)], 8000, width=3),
            coded_wav_bytes([sine(440, 0.2, 8000, 0.5)], 8000, "mulaw"),
            coded_wav_bytes([sine(440, 0.2, 8000, 0.5)] * 2, 8000, "float", extensible=True),
        ]
    else:
        seeds = [mp3_bytes([sine(440, 0.3, 44_100, 0.5)] * 2, 44_100)]
    for _ in range(300):
        try:
            samples = decode(mutated(rng.choice(seeds), rng), kind, max_seconds=10)
        except AudioError:
            continue
        assert samples.dtype == np.int16 and 0 < len(samples) <= 80_000


def test_a_float_wav_with_nan_and_values_past_full_scale_plays_clipped() -> None:
    left = sine(500, 0.5, 8000, 0.5)
    left[100:200] = np.nan
    left[300] = np.inf
    left[400:410] = 1e30
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow, no NaN cast to int16
        samples = decode(coded_wav_bytes([left], 8000, "float"), "wav", max_seconds=10)
    assert len(samples) == 4000
    assert (samples[100:200] == 0).all() and samples[300] == 32767
    assert (samples[400:410] == 32767).all()
