"""Music on hold: which music plays (the bundled melody, or a file an admin
uploaded, kept converted under the data directory) and the one `Player` that
plays it to every held party.

An upload is decoded, resampled, encoded and written in a thread, never on
the event loop; the running player takes the new music at once, and a
restart finds it again in `music-on-hold.wav`. One upload at a time: they
are written and swapped in the order they came. The file is per node: on
several nodes, upload to each (or share the data directory).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from ..logs import log_event
from .audio_files import AudioError, decode, kind_of, read_wav, write_wav
from .melody import default_music
from .player import MAX_SAMPLES, SAMPLE_RATE, CallLater, Clock, Music, Player

logger = logging.getLogger("callbridge.media.music")

FILE_NAME = "music-on-hold.wav"
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_SECONDS = MAX_SAMPLES / SAMPLE_RATE

Source = Literal["bundled", "uploaded"]


@dataclass(frozen=True, slots=True)
class MusicInfo:
    """What plays: `source`, its length, and when it was uploaded (None for
    the bundled melody)."""

    source: Source
    seconds: float
    uploaded_at: datetime | None


class MusicOnHold:
    """The music on hold of this process: `player` plays it; `upload` and
    `reset` change it for everyone, held calls included."""

    def __init__(self, data_dir: Path, player: Player, info: MusicInfo) -> None:
        self.data_dir = data_dir
        self.player = player
        self.info = info
        self._changing = asyncio.Lock()

    @property
    def path(self) -> Path:
        return self.data_dir / FILE_NAME

    @classmethod
    def load(
        cls, data_dir: Path, *, clock: Clock = time.monotonic, call_later: CallLater | None = None
    ) -> MusicOnHold:
        """The music stored under `data_dir`, or the bundled melody when
        there is none or it cannot be read (logged). Blocks: reads the file."""
        path = data_dir / FILE_NAME
        music, info = _bundled()
        if path.exists():
            try:
                music, info = _stored(path)
            except (OSError, AudioError, ValueError) as error:
                log_event(
                    logger,
                    logging.WARNING,
                    "media.music_on_hold_unreadable",
                    path=str(path),
                    problem=getattr(error, "problem", type(error).__name__),
                    playing="bundled",
                )
        return cls(data_dir, Player(music, clock=clock, call_later=call_later), info)

    async def upload(self, data: bytes, content_type: str) -> MusicInfo:
        """Make the file `data` (WAV or MP3, as `content_type` says) the music
        on hold. `AudioError` names what is wrong with a file it cannot use;
        `ValueError` for a type that is neither; `OSError` when it cannot be
        stored (the music playing stays)."""
        kind = kind_of(content_type)
        if kind is None:
            raise ValueError(f"{content_type!r} is neither audio/wav nor audio/mpeg")
        if len(data) > MAX_UPLOAD_BYTES:
            raise AudioError(f"larger than {MAX_UPLOAD_BYTES} bytes")
        async with self._changing:
            try:
                music, info = await asyncio.to_thread(_convert_and_store, data, kind, self.path)
            except OSError as error:
                log_event(
                    logger,
                    logging.ERROR,
                    "media.music_on_hold_not_stored",
                    path=str(self.path),
                    error=error.strerror or type(error).__name__,
                )
                raise
            self.player.replace(music)
            self.info = info
        log_event(
            logger,
            logging.INFO,
            "media.music_on_hold_uploaded",
            kind=kind,
            bytes=len(data),
            seconds=round(info.seconds, 2),
        )
        return info

    async def reset(self) -> MusicInfo:
        """Go back to the bundled melody (the stored file is removed)."""
        async with self._changing:
            music, info = await asyncio.to_thread(_remove_and_bundle, self.path)
            self.player.replace(music)
            self.info = info
        log_event(logger, logging.INFO, "media.music_on_hold_reset")
        return info


def _bundled() -> tuple[Music, MusicInfo]:
    music = Music(default_music())
    return music, MusicInfo("bundled", music.seconds, None)


def _stored(path: Path) -> tuple[Music, MusicInfo]:
    music = Music(read_wav(path, max_seconds=MAX_SECONDS))
    uploaded_at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return music, MusicInfo("uploaded", music.seconds, uploaded_at)


def _convert_and_store(data: bytes, kind: str, path: Path) -> tuple[Music, MusicInfo]:
    music = Music(decode(data, kind, max_seconds=MAX_SECONDS))
    write_wav(path, music.samples)
    uploaded_at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return music, MusicInfo("uploaded", music.seconds, uploaded_at)


def _remove_and_bundle(path: Path) -> tuple[Music, MusicInfo]:
    path.unlink(missing_ok=True)
    return _bundled()
