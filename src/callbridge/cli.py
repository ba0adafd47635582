"""The `callbridge` command."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import ValidationError

from . import __version__
from .logs import configure
from .settings import Settings

if TYPE_CHECKING:
    from .store.models import Role

# Characters of a bad setting's value shown in its error line.
_MAX_SHOWN = 80


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


def load_settings() -> Settings:
    """The settings, or exit with status 2 after one line per bad setting on stderr
    (the variable, the value given, and what is allowed), with no traceback."""
    try:
        return Settings()
    except ValidationError as error:
        for line in setting_problems(error):
            print(f"callbridge: {line}", file=sys.stderr)
    except (ValueError, OSError) as error:
        # The TOML file named by CALLBRIDGE_CONFIG_FILE cannot be read or parsed.
        file = os.environ.get("CALLBRIDGE_CONFIG_FILE", "")
        print(f"callbridge: CALLBRIDGE_CONFIG_FILE={_shown(file)}: {error}", file=sys.stderr)
    raise SystemExit(2)


def setting_problems(error: ValidationError) -> list[str]:
    """One line per setting `error` refuses."""
    problems = []
    for item in error.errors(include_url=False):
        name = ".".join(str(part) for part in item["loc"]) or "settings"
        variable = f"CALLBRIDGE_{name.upper()}"
        where = variable
        if variable not in os.environ and os.environ.get("CALLBRIDGE_CONFIG_FILE"):
            where = f"{name} in {os.environ['CALLBRIDGE_CONFIG_FILE']}"
        shown = "(hidden)" if name in _SECRETS else _shown(item.get("input"))
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}={shown}: {message}")
    return problems


_SECRETS = frozenset(
    name for name, field in Settings.model_fields.items() if "SecretStr" in str(field.annotation)
)


def _shown(value: object) -> str:
    """A setting's value as given, quoted and escaped, and cut short if long."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > _MAX_SHOWN:
        text = text[:_MAX_SHOWN] + "..."
    return json.dumps(text)


def serve() -> int:
    settings = load_settings()
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
    settings = load_settings()
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
