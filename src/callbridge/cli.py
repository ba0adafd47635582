"""The `callbridge` command."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import __version__
from .logs import configure
from .settings import Settings

if TYPE_CHECKING:
    from .store.models import Role


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="callbridge", description="A PBX for teams in a CRM.")
    parser.add_argument("--version", action="version", version=f"callbridge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the PBX (settings from CALLBRIDGE_* variables)")
    user = commands.add_parser("user", help="manage API users")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    create = user_commands.add_parser(
        "create", help="create a user; the password is prompted for, or read from stdin"
    )
    create.add_argument("username")
    role = create.add_mutually_exclusive_group()
    role.add_argument("--admin", dest="role", action="store_const", const="admin")
    role.add_argument("--supervisor", dest="role", action="store_const", const="supervisor")
    role.add_argument("--operator", dest="role", action="store_const", const="operator")
    args = parser.parse_args(argv)
    if args.command == "serve":
        sys.exit(serve())
    if args.command == "user":
        sys.exit(create_user(args.username, args.role or "operator"))


def serve() -> int:
    settings = Settings()
    configure(settings.log_level, settings.log_format)
    from .app import run

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(run(settings))
    return uvloop.run(run(settings))


def read_password() -> str:
    """Prompted twice on a terminal; otherwise the first line of stdin."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != password:
        raise SystemExit("callbridge: the passwords differ")
    return password


def create_user(username: str, role: Role) -> int:
    settings = Settings()
    configure("warning", settings.log_format)
    password = read_password()
    from .app import open_database
    from .store.accounts import AccountError
    from .store.accounts import create_user as store_user

    async def create() -> None:
        database = await open_database(settings)
        try:
            async with database.session() as session:
                await store_user(session, username, password, role=role)
        finally:
            await database.close()

    try:
        asyncio.run(create())
    except AccountError as error:
        print(f"callbridge: {error}", file=sys.stderr)
        return 1
    print(f"created {role} {username}")
    return 0
