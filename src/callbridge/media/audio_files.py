"""Audio files people upload (WAV, MP3) read as what callbridge plays: 8 kHz
mono int16 samples; and the WAV it keeps them in.

Everything here blocks (decoding, resampling, disk): call it from a thread.
A file is read a chunk at a time through a streaming resampler (soxr, with
its anti-aliasing filter), channels averaged, so memory stays near the size
of the result however the file is made, and a file that turns out longer
than `max_seconds` is refused as soon as it passes it. WAV is read with the
standard library (PCM, 8 to 32 bits, any rate and up to 8 channels), and the
WAV encodings it does not know (float, G.711, extensible) and MP3 with
miniaudio (dr_wav and dr_mp3 compiled in: no ffmpeg).
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import tempfile
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import miniaudio
import numpy as np
import numpy.typing as npt
import soxr

RATE = 8000
MAX_CHANNELS = 8
MIN_RATE, MAX_RATE = 4000, 384_000
_CHUNK = 65_536  # frames read at a time

Samples = npt.NDArray[np.int16]

# Content types each kind arrives as (browsers and tools differ for WAV).
CONTENT_TYPES = {
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/vnd.wave": "wav",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
}


class AudioError(ValueError):
    """A file that cannot be played; `problem` says why, for a person."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def kind_of(content_type: str | None) -> str | None:
    """ "wav" or "mp3" for a Content-Type naming one (parameters ignored), else None."""
    if content_type is None:
        return None
    return CONTENT_TYPES.get(content_type.split(";", 1)[0].strip().lower())


def decode(data: bytes, kind: str, *, max_seconds: float) -> Samples:
    """The audio of a WAV or MP3 file as 8 kHz mono int16 samples."""
    if kind not in ("wav", "mp3"):
        raise AudioError(f"{kind!r} is not a kind of file callbridge reads: wav or mp3")
    try:
        rate, chunks = (_wav_chunks if kind == "wav" else _mp3_chunks)(data, max_seconds)
        samples = _resampled(chunks, rate, max_seconds)
    except (AudioError, MemoryError):
        raise
    except Exception as error:
        # A decoder's surprise on a crafted file is the file's fault, not a
        # server error: say so rather than answer 500.
        raise AudioError(f"the file cannot be read ({type(error).__name__})") from None
    if len(samples) == 0:
        raise AudioError("the file holds no audio")
    return samples


def _wav_chunks(data: bytes, max_seconds: float) -> tuple[int, Iterator[npt.NDArray[np.float32]]]:
    try:
        # Closed by the chunks below, which outlive this function.
        reader = wave.open(io.BytesIO(data), "rb")  # noqa: SIM115
    # RuntimeError: the standard library's answer to a chunk that claims to
    # run past the file (found by fuzzing).
    except (wave.Error, EOFError, struct.error, ValueError, RuntimeError) as error:
        if isinstance(error, wave.Error) and str(error).startswith("unknown format"):
            return _coded_wav_chunks(data, max_seconds)
        raise AudioError(f"not a WAV file this server reads: {_said(error)}") from None
    channels, width, rate = reader.getnchannels(), reader.getsampwidth(), reader.getframerate()
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"{channels} channels; at most {MAX_CHANNELS} are read")
    if width not in (1, 2, 3, 4):
        raise AudioError(f"{8 * width}-bit samples; 8, 16, 24 or 32-bit PCM is read")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"a sample rate of {rate} Hz; {MIN_RATE} to {MAX_RATE} Hz is read")
    if reader.getnframes() / rate > max_seconds:
        raise AudioError(f"longer than {max_seconds:g} seconds")

    def chunks() -> Iterator[npt.NDArray[np.float32]]:
        frame_size = channels * width
        with reader:
            while True:
                try:
                    raw = reader.readframes(_CHUNK)
                except (wave.Error, EOFError, struct.error, RuntimeError) as error:
                    raise AudioError(f"a broken WAV file: {_said(error)}") from None
                raw = raw[: len(raw) - len(raw) % frame_size]  # a cut last frame
                if not raw:
                    return
                yield _mono(_pcm_to_float(raw, width), channels)

    return rate, chunks()


def _pcm_to_float(raw: bytes, width: int) -> npt.NDArray[np.float32]:
    if width == 1:  # 8-bit WAV is unsigned
        return ((np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128).astype(np.float32)
    if width == 3:
        octets = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        value = octets[:, 0] | (octets[:, 1] << 8) | (octets[:, 2] << 16)
        value = np.where(value & 0x800000, value - 0x1000000, value)
        return (value / 2.0**23).astype(np.float32)
    dtype = "<i2" if width == 2 else "<i4"
    return (np.frombuffer(raw, dtype) / 2.0 ** (8 * width - 1)).astype(np.float32)


def _finite(samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Floating-point samples as a file may hold them (NaN, infinities,
    values past full scale) made playable: NaN silent, the rest clipped."""
    clean: npt.NDArray[np.float32] = np.clip(
        np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0
    )
    return clean


def _mono(samples: npt.NDArray[np.float32], channels: int) -> npt.NDArray[np.float32]:
    if channels == 1:
        return samples
    mixed: npt.NDArray[np.float32] = samples.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return mixed


def _mp3_chunks(data: bytes, max_seconds: float) -> tuple[int, Iterator[npt.NDArray[np.float32]]]:
    try:
        info = miniaudio.mp3_get_info(data)
    except miniaudio.DecodeError:
        raise AudioError("not an MP3 file this server reads") from None
    return _decoded_chunks(data, info, max_seconds, "MP3")


def _coded_wav_chunks(
    data: bytes, max_seconds: float
) -> tuple[int, Iterator[npt.NDArray[np.float32]]]:
    """A WAV the standard library does not read (in Python 3.11 it reads
    only plain PCM): floating point, G.711 mu-law or A-law (telephony
    prompts), ADPCM, or PCM in the extensible header tools write for more
    than 16 bits or 2 channels; through miniaudio's dr_wav."""
    try:
        info = miniaudio.wav_get_info(data)
    except miniaudio.DecodeError:
        raise AudioError("a WAV file in an encoding this server does not read") from None
    return _decoded_chunks(data, info, max_seconds, "WAV")


def _decoded_chunks(
    data: bytes, info: Any, max_seconds: float, what: str
) -> tuple[int, Iterator[npt.NDArray[np.float32]]]:
    channels, rate = int(info.nchannels), int(info.sample_rate)
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"{channels} channels; at most {MAX_CHANNELS} are read")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"a sample rate of {rate} Hz; {MIN_RATE} to {MAX_RATE} Hz is read")
    if info.duration > max_seconds:
        raise AudioError(f"longer than {max_seconds:g} seconds")
    try:
        # At the file's own rate and channels: the averaging and the
        # resampler below are the ones every upload goes through.
        stream = miniaudio.stream_memory(
            data,
            output_format=miniaudio.SampleFormat.FLOAT32,
            nchannels=channels,
            sample_rate=rate,
            frames_to_read=_CHUNK,
        )
    except miniaudio.DecodeError:
        raise AudioError(f"not a {what} file this server reads") from None

    def chunks() -> Iterator[npt.NDArray[np.float32]]:
        decoded = 0
        try:
            for chunk in stream:
                decoded += len(chunk)
                yield _mono(_finite(np.frombuffer(chunk, np.float32)), channels)
        except miniaudio.DecodeError:
            raise AudioError(f"a broken {what} file") from None
        finally:
            stream.close()
        if not decoded and info.num_frames:
            # Its header promised audio the decoder could not make out.
            raise AudioError(f"a {what} file in an encoding this server does not read")

    return rate, chunks()


def _resampled(chunks: Iterator[npt.NDArray[np.float32]], rate: int, max_seconds: float) -> Samples:
    limit = round(max_seconds * RATE)
    resampler = None if rate == RATE else soxr.ResampleStream(rate, RATE, 1, dtype="float32")
    parts: list[npt.NDArray[np.float32]] = []
    total = 0
    for chunk in _with_end(chunks):
        if resampler is not None:
            # The empty last chunk flushes what the filter still holds.
            chunk = resampler.resample_chunk(chunk, last=len(chunk) == 0)
        total += len(chunk)
        if total > limit + RATE // 10:  # a tenth of a second of slack for the filter
            raise AudioError(f"longer than {max_seconds:g} seconds")
        parts.append(chunk)
    joined = np.concatenate(parts)[:limit]
    result: Samples = np.clip(np.round(joined * 32768.0), -32768, 32767).astype(np.int16)
    return result


def _with_end(chunks: Iterator[npt.NDArray[np.float32]]) -> Iterator[npt.NDArray[np.float32]]:
    """The chunks that hold audio, then an empty one."""
    for chunk in chunks:
        if len(chunk):
            yield chunk
    yield np.zeros(0, np.float32)


def read_wav(path: Path, *, max_seconds: float) -> Samples:
    """A stored file (`write_wav`'s) read back as 8 kHz mono samples."""
    limit = 64 + round(max_seconds * RATE) * 2 * MAX_CHANNELS
    with path.open("rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise AudioError(f"{path.name} is larger than {limit} bytes")
    return decode(data, "wav", max_seconds=max_seconds)


def write_wav(path: Path, samples: Samples) -> None:
    """Write 8 kHz mono 16-bit samples to `path` atomically: a temporary
    file beside it, flushed to disk, then renamed over it, so a crash
    leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            _write_wav_to(file, samples)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _sync_directory(path.parent)


def wav_bytes(samples: Samples) -> bytes:
    """8 kHz mono 16-bit samples as the bytes of a WAV file."""
    buffer = io.BytesIO()
    _write_wav_to(buffer, samples)
    return buffer.getvalue()


def _write_wav_to(file: Any, samples: Samples) -> None:
    with wave.open(file, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(RATE)
        writer.writeframes(samples.astype("<i2").tobytes())


def _sync_directory(directory: Path) -> None:
    # The rename itself is durable only once the directory is on disk.
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _said(error: Exception) -> str:
    """An exception's text, short and printable (it may quote the file)."""
    text = str(error) or type(error).__name__
    return "".join(c if c.isprintable() else "?" for c in text)[:120]
