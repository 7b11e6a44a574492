"""The commands about claims: claim, release, renew, claims, and guard (is a path inside another
agent's live claim?).
"""

from __future__ import annotations

from typing import Annotated

import typer
from typer._click.exceptions import UsageError

from gitbus import quick, render
from gitbus.cli import root
from gitbus.cli.root import JsonOpt, OfflineOpt, err, out
from gitbus.clock import parse_duration
from gitbus.message import Message


def claim(
    ctx: typer.Context,
    paths: Annotated[list[str], typer.Argument(metavar="PATH...", help="Files or directories (dir/).")],
    ttl: Annotated[
        str | None, typer.Option("--ttl", metavar="DURATION", help="Lease: 30s, 10m, 1h30m (default 30m).")
    ] = None,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why, for the others.")] = "",
    offline: OfflineOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Claim paths so other agents keep out; all or none. Exit 3 names the holder on conflict."""
    bus = root.open_bus(ctx, json_out, offline)
    quick.claim(bus, out, paths=paths, ttl=ttl, reason=reason, json_out=json_out)


def release(
    ctx: typer.Context,
    paths: Annotated[
        list[str] | None, typer.Argument(metavar="[PATH]...", help="Claimed paths to release.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Release every claim you hold.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Release another agent's claim.")] = False,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (required with --force).")] = "",
    offline: OfflineOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Release claims you hold (or, with --force --reason, another's; recorded)."""
    if not paths and not all_:
        raise UsageError("Name the paths to release, or use --all.", ctx)
    bus = root.open_bus(ctx, json_out, offline)
    msg = bus.release(paths or [], everything=all_, force=force, reason=reason)
    _step_done(msg, "released", json_out)


def _step_done(msg: Message | None, verb: str, json_out: bool) -> None:
    """What a release or renew did: its message, or that the caller held nothing to do it to."""
    if json_out:
        render.dump(out, msg.to_json() if msg else None)
    elif msg is None:
        out.print("you hold no claims")
    else:
        out.print(f"{verb} {', '.join(msg.paths)}", markup=False)


def renew(
    ctx: typer.Context,
    paths: Annotated[list[str] | None, typer.Argument(metavar="[PATH]...", help="Only these claims.")] = None,
    ttl: Annotated[
        str | None, typer.Option("--ttl", metavar="DURATION", help="New lease; default each claim's own.")
    ] = None,
    offline: OfflineOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Extend the leases of your claims."""
    bus = root.open_bus(ctx, json_out, offline)
    msg = bus.renew(paths or [], parse_duration(ttl) if ttl else None)
    _step_done(msg, "renewed", json_out)


def claims_cmd(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Include expired claims.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """List live claims (all agents)."""
    quick.claims(root.open_bus(ctx, json_out), out, all_=all_, json_out=json_out)


def guard_cmd(
    ctx: typer.Context,
    paths: Annotated[list[str] | None, typer.Argument(metavar="[PATH]...", help="Paths to check.")] = None,
    staged: Annotated[bool, typer.Option("--staged", help="Check what the next commit changes.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Exit 3 if any path is inside another agent's live claim (the pre-commit guard runs this)."""
    from gitbus import guard, settings

    bus = root.open_bus(ctx, json_out)
    mode = settings.load(bus.repo.common_dir)["guard"]
    rel = bus.repo.staged_paths() if staged else list(bus.paths(paths or []))
    hits = (
        []
        if mode == "off"
        else guard.conflicts(bus.repo.root, bus.repo.common_dir, bus.agent, rel, bus.clock.now_ms())
    )
    if json_out:
        render.dump(out, [{"path": p, "claim": render.claim_json(c, bus.clock.now_ms())} for p, c in hits])
    for p, c in hits:
        err.print(f"gitbus: {guard.denial([c], p, bus.clock.now_ms())}", markup=False, soft_wrap=True)
    if hits and mode == "deny":
        err.print(
            "gitbus: commit refused (bypass: GITBUS_NO_GUARD=1 git commit …, or --no-verify).",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(3)
