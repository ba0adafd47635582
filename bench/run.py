"""`make bench`: every benchmark, one JSON line per result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

for script, *args in (
    ("parse_bench.py",),
    ("pipeline_bench.py",),
    ("options_load.py",),
    ("register_load.py",),
    ("ws_browsers.py",),
    ("rtp_relay_bench.py",),
    ("call_load.py",),
    ("rtp_calls.py",),
    ("moh_player.py",),
    ("conference.py", "--rooms", "1", "--size", "10"),
    ("conference.py", "--rooms", "100", "--size", "3"),
    ("routing_load.py",),
    ("identify_load.py",),
    ("ringing_card.py",),
    # A tenth of the goal's ten million calls: loading those takes about ten
    # minutes per database; docs/BENCHMARKS.md gives the full command.
    ("history_load.py", "--calls", "1000000"),
):
    print(f"# {script} {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, str(HERE / script), *args], check=True)
