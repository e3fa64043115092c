"""`locus secrets`: the tokens Locus keeps in the system keyring (never in config.toml, logs or traces)."""

from __future__ import annotations

import argparse
import getpass
import sys

from app.cli import EXIT_ERROR, EXIT_OK
from app.secrets import Secrets, stored_names_file


def add_parsers(sub) -> None:
    """Add the `secrets` command to the `locus` parser's subparsers."""
    p = sub.add_parser("secrets", help="store or remove tokens in the system keyring (hub token, OTLP API key)")
    actions = p.add_subparsers(dest="secrets_command", metavar="ACTION", required=True)
    actions.add_parser("status", help="whether a keyring is available and which tokens are stored")
    set_p = actions.add_parser("set", help="store a token (read from the terminal without echo, or from stdin)")
    set_p.add_argument(
        "name",
        type=_secret_name,
        help=f"{', '.join(Secrets.KNOWN)}, or mcp.NAME for an MCP server's ${{keyring:NAME}} in mcp.json",
    )
    delete_p = actions.add_parser("delete", help="remove a stored token")
    delete_p.add_argument("name", type=_secret_name)
    p.set_defaults(run=run)


def _secret_name(name: str) -> str:
    if not Secrets.is_known(name):
        raise argparse.ArgumentTypeError(
            f"'{name}' is not a token Locus keeps: use one of {', '.join(Secrets.KNOWN)}, or mcp.NAME for an MCP server"
        )
    return name


def run(args: argparse.Namespace) -> int:
    """Carry out one `locus secrets` action."""
    from app.paths import resolve_paths

    secrets = Secrets(index_path=stored_names_file(resolve_paths()))
    if args.secrets_command == "status":
        ok, message = secrets.available()
        print(message)
        if ok:
            for name in Secrets.KNOWN:
                print(f"  {name}: {'stored' if secrets.get(name) else 'not set'}")
        return EXIT_OK if ok else EXIT_ERROR
    if args.secrets_command == "delete":
        secrets.delete(args.name)
        print(f"Removed '{args.name}' (if it was stored).", file=sys.stderr)
        return EXIT_OK
    value = getpass.getpass(f"{args.name}: ") if sys.stdin.isatty() else sys.stdin.readline()
    value = value.strip()
    if not value:
        print("locus: nothing was entered; the token is unchanged.", file=sys.stderr)
        return EXIT_ERROR
    secrets.set(args.name, value)
    print(f"Stored '{args.name}' in the system keyring.", file=sys.stderr)
    return EXIT_OK
