"""The `gitbus` command: parse, call one library function, render. Nothing else lives here.

`root` holds the typer app, the global options and the one error-to-exit-code mapping; the commands
live in one module per concept (`messages`, `claims`, `setup`, `sharing`), and the table below
registers them in the order `--help` and docs/cli.md list them.

The everyday commands' bodies live in `gitbus.quick`, which runs them without typer; their options
are declared here, once, and docs/gen_cli.py copies them into `gitbus/quick_args.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gitbus.cli import claims, messages, setup, sharing
from gitbus.cli.root import EXIT_CODES, USAGE, app, err, open_bus, out

__all__ = ["EXIT_CODES", "USAGE", "app", "err", "main", "open_bus", "out"]

COMMANDS: tuple[tuple[str, Callable[..., Any]], ...] = (
    # identity
    ("init", setup.init),
    ("join", setup.join),
    ("agents", setup.agents_cmd),
    # posting
    ("discover", messages.discover),
    ("ask", messages.ask),
    ("answer", messages.answer),
    ("request", messages.request),
    ("take", messages.take),
    ("done", messages.done),
    # claims
    ("claim", claims.claim),
    ("release", claims.release),
    ("renew", claims.renew),
    ("claims", claims.claims_cmd),
    # reading
    ("log", messages.log),
    ("show", messages.show),
    ("inbox", messages.inbox),
    ("status", messages.status),
    ("demo", setup.demo),
    # live delivery and setup
    ("hook", setup.hook),
    ("watch", setup.watch),
    ("install", setup.install),
    ("uninstall", setup.uninstall),
    ("guard", claims.guard_cmd),
    ("config", setup.config),
    ("gc", setup.gc),
    ("tui", setup.tui),
    ("mcp", setup.mcp),
    # history
    ("note", messages.note),
    ("history", messages.history),
    ("search", messages.search),
    # across machines
    ("remote", sharing.remote),
    ("push", sharing.push),
    ("pull", sharing.pull),
    ("sync", sharing.sync_cmd),
)

for _name, _command in COMMANDS:
    app.command(_name)(_command)


def main() -> None:
    app()
