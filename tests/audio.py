"""Audio files made at test time: WAV with the standard library, MP3 with
lameenc (a PyPI encoder, a test dependency), and what to measure in them."""

from __future__ import annotations

import io
import struct
import wave

import numpy as np


def sine(frequency: float, seconds: float, rate: int, amplitude: float) -> np.ndarray:
    """A sine as floats in [-1, 1]."""
    t = np.arange(round(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * frequency * t)


def wav_bytes(channels: list[np.ndarray], rate: int, width: int = 2) -> bytes:
    """A PCM WAV of float channels (in [-1, 1]) at `width` bytes a sample."""
    frames = np.stack(channels, axis=1)
    if width == 1:
        raw = np.round(frames * 127 + 128).astype(np.uint8).tobytes()
    elif width == 3:
        ints = np.round(frames * (2**23 - 1)).astype("<i4")
        raw = ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        dtype = "<i2" if width == 2 else "<i4"
        raw = np.round(frames * (2 ** (8 * width - 1) - 1)).astype(dtype).tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(len(channels))
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(raw)
    return buffer.getvalue()


def coded_wav_bytes(
    channels: list[np.ndarray], rate: int, encoding: str, *, extensible: bool = False
) -> bytes:
    """A WAV the standard library does not write: `float` (32-bit IEEE),
    `mulaw` or `alaw` (G.711), or `pcm24`; with `extensible`, in the
    WAVE_FORMAT_EXTENSIBLE header (as tools write for > 16 bits or > 2 channels)."""
    from callbridge.media import g711

    frames = np.stack(channels, axis=1)
    if encoding == "float":
        tag, bits, raw = 3, 32, frames.astype("<f4").tobytes()
    elif encoding in ("mulaw", "alaw"):
        ints = np.round(frames * 32767).astype(np.int16).reshape(-1)
        encode = g711.pcmu_encode if encoding == "mulaw" else g711.pcma_encode
        tag, bits, raw = (7 if encoding == "mulaw" else 6), 8, encode(ints)
    else:
        ints = np.round(frames * (2**23 - 1)).astype("<i4")
        tag, bits, raw = 1, 24, ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    count, block = len(channels), len(channels) * bits // 8
    fmt = struct.pack("<HHIIHH", tag, count, rate, rate * block, block, bits)
    if extensible:
        subformat = struct.pack("<H", tag) + bytes.fromhex("000000001000800000aa00389b71")
        fmt = struct.pack("<HHIIHH", 0xFFFE, count, rate, rate * block, block, bits)
        fmt += struct.pack("<HHI", 22, bits, 0) + subformat
    elif tag != 1:
        fmt += struct.pack("<H", 0)  # cbSize
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if tag != 1 and not extensible:
        body += b"fact" + struct.pack("<II", 4, len(frames))
    body += b"data" + struct.pack("<I", len(raw)) + raw + (b"\0" if len(raw) % 2 else b"")
    return b"RIFF" + struct.pack("<I", len(body)) + body


def mp3_bytes(channels: list[np.ndarray], rate: int, kbps: int = 128) -> bytes:
    import lameenc

    encoder = lameenc.Encoder()
    encoder.set_bit_rate(kbps)
    encoder.set_in_sample_rate(rate)
    encoder.set_channels(len(channels))
    encoder.set_quality(2)
    pcm = np.round(np.stack(channels, axis=1) * 32767).astype("<i2").tobytes()
    return bytes(encoder.encode(pcm) + encoder.flush())


def level_dbfs(samples: np.ndarray) -> float:
    """RMS relative to full scale (a full-scale square wave is 0 dBFS)."""
    rms = np.sqrt(np.mean(samples.astype(np.float64) ** 2))
    return float(20 * np.log10(max(rms, 1e-9) / 32768))


def strongest_frequency(samples: np.ndarray, rate: int = 8000) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])
