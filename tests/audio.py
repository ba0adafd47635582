"""Audio files made at test time: WAV with the standard library, MP3 with
lameenc (a PyPI encoder, a test dependency), and what to measure in them."""

from __future__ import annotations

import io
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
