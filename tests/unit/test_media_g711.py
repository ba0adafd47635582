"""G.711 PCMU/PCMA tables against the reference algorithm's known values."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from callbridge.media import g711

EVERY_SAMPLE = np.arange(-32768, 32768, dtype=np.int16)
CODECS = [
    pytest.param(g711.pcmu_encode, g711.pcmu_decode, id="pcmu"),
    pytest.param(g711.pcma_encode, g711.pcma_decode, id="pcma"),
]


def test_known_pcmu_values() -> None:
    assert g711.pcmu_encode([0, -1, 32767, -32768]) == bytes([0xFF, 0x7E, 0x80, 0x00])
    assert g711.pcmu_decode(bytes([0xFF, 0x7F, 0x80, 0x00])).tolist() == [0, 0, 32124, -32124]


def test_known_pcma_values() -> None:
    assert g711.pcma_encode([0, -1, 32767, -32768]) == bytes([0xD5, 0x55, 0xAA, 0x2A])
    assert g711.pcma_decode(bytes([0xD5, 0x55, 0xAA, 0x2A])).tolist() == [8, -8, 32256, -32256]


def test_table_sizes() -> None:
    assert g711.ULAW_ENCODE.shape == g711.ALAW_ENCODE.shape == (65536,)
    assert g711.ULAW_DECODE.shape == g711.ALAW_DECODE.shape == (256,)
    assert g711.ULAW_DECODE.dtype == np.int16


@pytest.mark.parametrize(("encode", "decode"), CODECS)
def test_every_code_survives_decode_then_encode(encode, decode) -> None:  # type: ignore[no-untyped-def]
    codes = bytes(range(256))
    again = encode(decode(codes))
    if encode is g711.pcmu_encode:  # μ-law has two zeros; 0x7F (-0) comes back as 0xFF
        assert again == codes.replace(b"\x7f", b"\xff")
    else:
        assert again == codes


@pytest.mark.parametrize(("encode", "decode"), CODECS)
def test_round_trip_error_is_within_half_a_quantization_step(encode, decode) -> None:  # type: ignore[no-untyped-def]
    # The step doubles per segment: the error stays under |x|/32 plus the
    # smallest step, for every 16-bit sample (μ-law clipping included).
    samples = EVERY_SAMPLE.astype(np.int64)
    error = np.abs(decode(encode(EVERY_SAMPLE)).astype(np.int64) - samples)
    assert np.all(error <= np.abs(samples) / 32 + 8)


@pytest.mark.parametrize(("encode", "decode"), CODECS)
def test_vectorised_over_a_20ms_frame(encode, decode) -> None:  # type: ignore[no-untyped-def]
    tone = (8000 * np.sin(2 * np.pi * 1000 * np.arange(160) / 8000)).astype(np.int16)
    octets = encode(tone)
    assert len(octets) == 160
    decoded = decode(octets)
    assert decoded.dtype == np.int16 and decoded.shape == (160,)
    assert np.max(np.abs(decoded.astype(int) - tone)) <= 8000 / 32 + 8


def test_matches_the_standard_library_reference_when_present() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")  # gone in Python 3.13
    linear = EVERY_SAMPLE.tobytes()
    assert g711.pcmu_encode(EVERY_SAMPLE) == audioop.lin2ulaw(linear, 2)
    assert g711.pcma_encode(EVERY_SAMPLE) == audioop.lin2alaw(linear, 2)
    codes = bytes(range(256))
    assert g711.pcmu_decode(codes).tobytes() == audioop.ulaw2lin(codes, 2)
    assert g711.pcma_decode(codes).tobytes() == audioop.alaw2lin(codes, 2)
