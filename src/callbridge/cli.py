"""The `callbridge` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from . import __version__
from .logs import configure
from .settings import Settings


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="callbridge", description="A PBX for teams in a CRM.")
    parser.add_argument("--version", action="version", version=f"callbridge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the PBX (settings from CALLBRIDGE_* variables)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        sys.exit(serve())


def serve() -> int:
    settings = Settings()
    configure(settings.log_level, settings.log_format)
    from .app import run

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(run(settings))
    return uvloop.run(run(settings))
