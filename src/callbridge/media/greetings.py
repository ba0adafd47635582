"""IVR greetings: the uploaded files, kept converted (8 kHz mono) under
`data_dir/ivr-greetings`, each named by the hash of its audio so that every
configuration version keeps finding its own; and text spoken by espeak-ng.
`greeting_samples(menu)` is what the runtime plays.

Decoding, synthesis and disk run in a thread, never on the event loop.
espeak-ng is run with its text as one argument of an argument list (no
shell), with a time limit, and writes a WAV into a private temporary
directory; its output goes through the same conversion as an upload.
Files are per node, like the music on hold.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import subprocess
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

from ..logs import log_event
from .audio_files import AudioError, Samples, decode, kind_of, read_wav, write_wav

logger = logging.getLogger("callbridge.media.greetings")

DIRECTORY = "ivr-greetings"
MAX_SECONDS = 300.0
ESPEAK = "espeak-ng"
SPEAK_TIMEOUT = 30.0
# Greetings kept decoded; a menu's greeting is a few hundred kilobytes.
CACHE_SIZE = 32


class Greeting(Protocol):
    """What a greeting is played from: an IVR menu of an applied version."""

    @property
    def greeting_kind(self) -> str: ...
    @property
    def greeting_text(self) -> str | None: ...
    @property
    def greeting_file(self) -> str | None: ...


def speech_available() -> bool:
    """Whether espeak-ng is installed, so text greetings can be spoken."""
    return shutil.which(ESPEAK) is not None


class Greetings:
    """The greetings of this node: stored uploads and spoken text, read
    through a small cache keyed by what the greeting is (the file's name,
    or the text and voice), so each menu version is decoded once."""

    def __init__(self, data_dir: Path, *, voice: str = "en") -> None:
        self.directory = data_dir / DIRECTORY
        self.voice = voice
        self._cache: OrderedDict[tuple[str, str, str], Samples] = OrderedDict()

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.wav"

    def names(self) -> frozenset[str]:
        """The stored greetings' names. Blocks: lists the directory."""
        try:
            return frozenset(p.stem for p in self.directory.glob("*.wav"))
        except OSError:
            return frozenset()

    async def store(self, data: bytes, content_type: str) -> tuple[str, float]:
        """Convert the WAV or MP3 `data` and store it; its name and length
        in seconds. `AudioError` names what is wrong with the file,
        `ValueError` a type that is neither, `OSError` a disk that cannot
        take it (logged)."""
        kind = kind_of(content_type)
        if kind is None:
            raise ValueError(f"{content_type!r} is neither audio/wav nor audio/mpeg")
        try:
            name, samples = await asyncio.to_thread(self._convert_and_store, data, kind)
        except OSError as error:
            log_event(
                logger,
                logging.ERROR,
                "ivr.greeting_not_stored",
                path=str(self.directory),
                error=error.strerror or type(error).__name__,
            )
            raise
        seconds = len(samples) / 8000
        log_event(
            logger, logging.INFO, "ivr.greeting_uploaded", kind=kind, bytes=len(data), name=name
        )
        return name, seconds

    def _convert_and_store(self, data: bytes, kind: str) -> tuple[str, Samples]:
        samples = decode(data, kind, max_seconds=MAX_SECONDS)
        name = hashlib.sha256(samples.astype("<i2").tobytes()).hexdigest()[:32]
        path = self.path(name)
        if not path.exists():  # the same audio again: the same file
            write_wav(path, samples)
        return name, samples

    async def greeting_samples(self, menu: Greeting) -> Samples:
        """The greeting of `menu` as 8 kHz mono int16 samples. `AudioError`
        when it cannot be played: its file is gone or unreadable, or the
        text cannot be spoken (espeak-ng missing, failing or too slow)."""
        key = self._key(menu)
        cached = self._cache.get(key)
        if cached is None:
            cached = await asyncio.to_thread(self._load, key)
            self._cache[key] = cached
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return cached

    def _key(self, menu: Greeting) -> tuple[str, str, str]:
        if menu.greeting_kind == "text":
            return ("text", self.voice, menu.greeting_text or "")
        return ("audio", "", menu.greeting_file or "")

    def _load(self, key: tuple[str, str, str]) -> Samples:
        kind, voice, value = key
        if kind == "text":
            return speak(value, voice)
        if not value:
            raise AudioError("the menu has no greeting file")
        try:
            return read_wav(self.path(value), max_seconds=MAX_SECONDS)
        except OSError as error:
            raise AudioError(f"the greeting file cannot be read ({type(error).__name__})") from None


def speak(text: str, voice: str, *, timeout: float = SPEAK_TIMEOUT) -> Samples:
    """`text` spoken by espeak-ng in `voice`, as 8 kHz mono samples.
    Blocks (call it from a thread). `AudioError` says why it cannot."""
    program = shutil.which(ESPEAK)
    if program is None:
        log_event(logger, logging.WARNING, "ivr.speech_unavailable", program=ESPEAK)
        raise AudioError("espeak-ng is not installed, so text cannot be spoken")
    with tempfile.TemporaryDirectory(prefix="callbridge-speech-") as directory:
        output = Path(directory) / "speech.wav"
        try:
            # "--" ends the options: a text starting with "-" is still text.
            subprocess.run(
                [program, "-v", voice, "-w", str(output), "--", text],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=timeout,
                check=True,
            )
            data = output.read_bytes()
        except subprocess.TimeoutExpired:
            log_event(logger, logging.WARNING, "ivr.speech_timeout", seconds=timeout)
            raise AudioError(f"espeak-ng took longer than {timeout:g} seconds") from None
        except subprocess.CalledProcessError as error:
            said = error.stderr.decode("utf-8", "replace") if error.stderr else ""
            shown = "".join(c if c.isprintable() else "?" for c in said)[:200]
            log_event(
                logger, logging.WARNING, "ivr.speech_failed", status=error.returncode, said=shown
            )
            raise AudioError("espeak-ng could not speak the text") from None
        except OSError as error:
            raise AudioError(f"espeak-ng could not run ({type(error).__name__})") from None
    return decode(data, "wav", max_seconds=MAX_SECONDS)
