"""The commands that share the bus through a git remote: remote, push, pull, sync, and how a sync's
report is shown.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from gitbus import render
from gitbus.cli import root
from gitbus.cli.root import JsonOpt, err, out
from gitbus.inert import inert, inert_block

RemoteArg = Annotated[
    str | None, typer.Argument(metavar="[REMOTE]", help="A git remote; default: the bus remote.")
]


SYNC_NAMED = 5  # bad refs a sync names one by one


def _report(report: Any, json_out: bool) -> None:
    if json_out:
        render.dump(
            out,
            {
                "remote": report.remote,
                "updated": report.updated,
                "merged": report.merged,
                "pushed": report.pushed,
                "dropped": [m.to_json() for m in report.dropped],
                "ignored": report.ignored,
                "refused": [{"ref": r.ref, "reason": r.reason, "kept": r.kept} for r in report.refused],
            },
        )
        return
    out.print(
        f"{report.remote}: {len(report.updated)} ref(s) updated, {len(report.merged)} merged, "
        f"{len(report.pushed)} pushed",
        markup=False,
    )
    for m in report.dropped:
        err.print(f"gitbus: {inert_block(m.text)}", markup=False, soft_wrap=True)
    # A peer can push any number of bad refs: name a few, count the rest (`--json` lists them all).
    for ref in report.ignored[:SYNC_NAMED]:
        err.print(
            f"gitbus: ignored {inert(ref)}: {_not_ours(ref)}, so no gitbus wrote it", markup=False
        )
    if len(report.ignored) > SYNC_NAMED:
        more = len(report.ignored) - SYNC_NAMED
        err.print(f"gitbus: ignored {more} more ref(s) with names no gitbus writes", markup=False)
    for refusal in report.refused[:SYNC_NAMED]:
        err.print(f"gitbus: {inert(refusal.line(), 600)}", markup=False, soft_wrap=True)
    if len(report.refused) > SYNC_NAMED:
        more = len(report.refused) - SYNC_NAMED
        err.print(f"gitbus: refused {more} more ref(s) (gitbus sync --json lists them)", markup=False)


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
    from gitbus import sync
    from gitbus.remote import require_remote

    bus = root.open_bus(ctx, json_out)
    _report(sync.sync(bus.repo, require_remote(bus.repo, remote_name), pull=False), json_out)


def pull(ctx: typer.Context, remote_name: RemoteArg = None, json_out: JsonOpt = False) -> None:
    """Fetch the remote's bus and merge it in (no message is lost or rewritten)."""
    from gitbus import sync
    from gitbus.remote import require_remote

    bus = root.open_bus(ctx, json_out)
    _report(sync.sync(bus.repo, require_remote(bus.repo, remote_name), send=False), json_out)


def sync_cmd(ctx: typer.Context, remote_name: RemoteArg = None, json_out: JsonOpt = False) -> None:
    """Pull, then push: afterwards this clone and the remote hold the same bus."""
    from gitbus import sync
    from gitbus.remote import require_remote

    bus = root.open_bus(ctx, json_out)
    _report(sync.sync(bus.repo, require_remote(bus.repo, remote_name)), json_out)


def _not_ours(ref: str) -> str:
    """Why sync left remote ref `ref` alone, in a few words."""
    if "/bus/ledgers/" in ref:
        return "not a ledger (`main`, or a shard's 4 hex digits)"
    return "not a valid agent name"
