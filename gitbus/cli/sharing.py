"""The commands that share the bus through a git remote: remote, and push, pull and sync (their
bodies, and how a sync's report is shown, are `gitbus.quick`'s, which also runs them without typer).
"""

from __future__ import annotations

from typing import Annotated

import typer

from gitbus import quick, render
from gitbus.cli import root
from gitbus.cli.root import JsonOpt, out

RemoteArg = Annotated[
    str | None, typer.Argument(metavar="[REMOTE]", help="A git remote; default: the bus remote.")
]


def remote(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The git remote to share the bus through.")],
    json_out: JsonOpt = False,
) -> None:
    """Set the bus remote: from now on claims, releases and takes are decided by it."""
    bus = root.open_bus(ctx, json_out)
    bus.set_remote(name)
    if json_out:
        render.dump(out, {"remote": name})
    else:
        out.print(f"the bus is shared through '{name}' (gitbus sync to exchange messages)", markup=False)


def push(ctx: typer.Context, remote_name: RemoteArg = None, json_out: JsonOpt = False) -> None:
    """Send local bus messages and ledger steps to the remote (all or nothing)."""
    quick.push(root.open_bus(ctx, json_out), out, remote_name=remote_name, json_out=json_out)


def pull(ctx: typer.Context, remote_name: RemoteArg = None, json_out: JsonOpt = False) -> None:
    """Fetch the remote's bus and merge it in (no message is lost or rewritten)."""
    quick.pull(root.open_bus(ctx, json_out), out, remote_name=remote_name, json_out=json_out)


def sync_cmd(ctx: typer.Context, remote_name: RemoteArg = None, json_out: JsonOpt = False) -> None:
    """Pull, then push: afterwards this clone and the remote hold the same bus."""
    quick.sync(root.open_bus(ctx, json_out), out, remote_name=remote_name, json_out=json_out)
