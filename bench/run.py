"""`make bench`: every benchmark, one JSON line per result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

for script in (
    "parse_bench.py",
    "pipeline_bench.py",
    "options_load.py",
    "register_load.py",
    "rtp_relay_bench.py",
    "call_load.py",
    "rtp_calls.py",
    "routing_load.py",
):
    print(f"# {script}", flush=True)
    subprocess.run([sys.executable, str(HERE / script)], check=True)
