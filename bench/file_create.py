"""What creating a recording's file costs on a filesystem: N files created,
each given a WAV-sized header and two appends and closed, as the recorder
does once per call; CPU (user + system) per file, and how much of it the
create (`open` with O_CREAT) takes.

    .venv/bin/python bench/file_create.py [DIRECTORY] [--files 2000] [--rounds 3]

Run it once on the data directory's filesystem and once on tmpfs
(/dev/shm) for a reference in the same command: the ratio says how much of
a recorded call's cost is the disk's."""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

CHUNK = bytes(6_400)  # 0.4 s of 8 kHz 16-bit stereo


def one_round(directory: Path, files: int) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_SELF)
    opening = 0.0
    for n in range(files):
        started = time.perf_counter()
        fd = os.open(directory / f"{n}.wav", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        opening += time.perf_counter() - started
        os.write(fd, bytes(44) + CHUNK)
        os.write(fd, CHUNK)
        os.pwrite(fd, bytes(44), 0)
        os.close(fd)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "cpu_us_per_file": round(1e6 * cpu / files),
        "open_us_per_file": round(1e6 * opening / files),
    }


def measure(parent: Path, files: int, rounds: int) -> list[dict[str, float]]:
    directory = Path(tempfile.mkdtemp(dir=parent, prefix="file-create-"))
    try:
        return [one_round(directory, files) for _ in range(rounds)]
    finally:
        shutil.rmtree(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", nargs="?", default=".")
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for target in (Path(args.directory), Path("/dev/shm")):
        if target.is_dir():
            rounds = measure(target, args.files, args.rounds)
            print(json.dumps({"directory": str(target), "files": args.files, "rounds": rounds}))


if __name__ == "__main__":
    main()
