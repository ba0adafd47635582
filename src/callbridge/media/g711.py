"""G.711 PCMU (μ-law) and PCMA (A-law) between 16-bit linear samples and
octets, through lookup tables built once (ITU-T G.711, as in Sun's g711.c)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]

_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159  # in 14-bit units
_ULAW_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEGMENT_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _every_sample() -> npt.NDArray[np.int32]:
    # Index i of an encode table is the int16 sample whose bits read as uint16 i.
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    pcm = _every_sample() >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    pcm = np.minimum(np.abs(pcm), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    segment = np.searchsorted(_ULAW_SEGMENT_ENDS, pcm, side="left")
    code = (segment << 4) | ((pcm >> (segment + 1)) & 0x0F)
    code = np.where(segment >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    pcm = _every_sample() >> 3
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    pcm = np.where(pcm >= 0, pcm, -pcm - 1)
    segment = np.searchsorted(_ALAW_SEGMENT_ENDS, pcm, side="left")
    mantissa = np.where(segment < 2, pcm >> 1, pcm >> np.maximum(segment, 1)) & 0x0F
    code = np.where(segment >= 8, 0x7F, (np.minimum(segment, 7) << 4) | mantissa)
    return (code ^ mask).astype(np.uint8)


def _build_ulaw_decode() -> Samples:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((code & 0x0F) << 3) + _ULAW_BIAS) << ((code & 0x70) >> 4)
    return np.where(code & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)


def _build_alaw_decode() -> Samples:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    segment = (code & 0x70) >> 4
    t = (code & 0x0F) << 4
    t = np.where(segment == 0, t + 8, (t + 0x108) << np.maximum(segment - 1, 0))
    return np.where(code & 0x80, t, -t).astype(np.int16)


ULAW_ENCODE = _build_ulaw_encode()
ALAW_ENCODE = _build_alaw_encode()
ULAW_DECODE = _build_ulaw_decode()
ALAW_DECODE = _build_alaw_decode()
for _table in (ULAW_ENCODE, ALAW_ENCODE, ULAW_DECODE, ALAW_DECODE):
    _table.setflags(write=False)


def _as_samples(samples: Any) -> Samples:
    return np.ascontiguousarray(samples, dtype=np.int16)


def pcmu_encode(samples: Any) -> bytes:
    """16-bit linear samples (any array-like of int16) → μ-law octets."""
    return ULAW_ENCODE[_as_samples(samples).view(np.uint16)].tobytes()


def pcma_encode(samples: Any) -> bytes:
    """16-bit linear samples (any array-like of int16) → A-law octets."""
    return ALAW_ENCODE[_as_samples(samples).view(np.uint16)].tobytes()


def pcmu_decode(data: bytes | bytearray | memoryview) -> Samples:
    """μ-law octets → 16-bit linear samples."""
    return ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def pcma_decode(data: bytes | bytearray | memoryview) -> Samples:
    """A-law octets → 16-bit linear samples."""
    return ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]
