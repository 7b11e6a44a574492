"""The commands that set gitbus up and keep it running: init, join, agents; install and uninstall
(agent clients, git hooks); config, gc; the hook handler, the watcher, the TUI, the MCP server and
the demo.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click.exceptions import UsageError

from gitbus import quick, render
from gitbus.cli import root
from gitbus.cli.root import JsonOpt, OfflineOpt, out
from gitbus.clock import iso
from gitbus.errors import GitbusError
from gitbus.settings import DEFAULTS


def init(
    ctx: typer.Context,
    remote: Annotated[
        str | None,
        typer.Option("--remote", metavar="NAME", help="The git remote to share the bus through (stored)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Prepare this repository for gitbus and register this worktree's agent (idempotent; the main
    checkout joins only when named: -a, GITBUS_AGENT, or join --name)."""
    bus = root.open_bus(ctx, json_out)
    joined = bus.init(remote)
    if json_out:
        agent = quick.acting_as(bus)
        render.dump(out, {"agent": agent, "joined": joined is not None, "remote": remote})
    elif not bus.on_bus():
        out.print(
            f"gitbus ready in {bus.repo.root}; the main checkout is not an agent"
            " (gitbus join --name NAME makes it one)",
            markup=False,
        )
    else:
        out.print(
            f"gitbus ready in {bus.repo.root} as agent {bus.agent}" + (" (joined)" if joined else ""),
            markup=False,
        )


def join(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="This worktree's agent name.")],
    json_out: JsonOpt = False,
) -> None:
    """Name this worktree's agent and announce it on the bus."""
    bus = root.open_bus(ctx, json_out)
    joined = bus.join(name)
    if json_out:
        render.dump(out, {"agent": bus.agent, "joined": joined is not None})
    else:
        out.print(f"this worktree is agent {bus.agent}", markup=False)


def agents_cmd(
    ctx: typer.Context,
    retire: Annotated[
        str | None,
        typer.Option(
            "--retire",
            metavar="NAME",
            help="Retire agent NAME, which left: it drops out of this list and takes no more "
            "messages; what it said stays on the bus.",
        ),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="List retired agents too.")] = False,
    offline: OfflineOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """List the agents on the bus with their last activity, or retire one that left.

    Retiring is refused while the agent holds a live claim on the bus remote's ledger (this clone's
    with --offline), and where this clone signs or requires signatures."""
    bus = root.open_bus(ctx, json_out, offline)
    if retire is not None:
        said = bus.retire(retire)
        _said(
            f"retired {said.sender}" if said else f"{retire} was retired already",
            {"retired": retire, "id": said.id if said else None},
            json_out,
        )
        return
    infos = bus.agents(retired=all_)
    if json_out:
        render.dump(
            out,
            [
                {
                    "name": a.name,
                    "last_active": iso(a.last_active) if a.last_active else None,
                    "last_active_ms": a.last_active or None,
                    "live_claims": a.live_claims,
                    "last_message": a.last_summary,
                    "retired": a.retired,
                }
                for a in infos
            ],
        )
    else:
        render.agents(out, infos, bus.clock.now_ms(), bus.agent)


def _said(text: str, obj: dict[str, Any], json_out: bool) -> None:
    """One outcome: `text` for people, `obj` for programs."""
    if json_out:
        render.dump(out, obj)
    else:
        out.print(text, markup=False)


class InstallTarget(StrEnum):
    CLAUDE = "claude"
    CODEX = "codex"
    GEMINI = "gemini"
    GIT_HOOKS = "git-hooks"


Target = Annotated[
    InstallTarget,
    typer.Argument(metavar="claude|codex|gemini|git-hooks", help="What to wire gitbus into."),
]


SharedOpt = Annotated[
    bool, typer.Option("--shared", help="Claude: the committed settings.json and CLAUDE.md.")
]


def install(ctx: typer.Context, target: Target, shared: SharedOpt = False, json_out: JsonOpt = False) -> None:
    """Install gitbus's hooks for Claude Code, Codex or Gemini CLI, or the git pre-commit guard
    (idempotent; docs/agents.md)."""
    from gitbus import githooks
    from gitbus import install as I

    bus = root.open_bus(ctx, json_out)
    if target is InstallTarget.CLAUDE:
        written = [str(f) for f in I.install_claude(bus.repo, shared)]
        done = "gitbus is installed for Claude Code already; nothing changed"
        _said("\n".join(f"wrote {f}" for f in written) or done, {"wrote": written}, json_out)
    elif target in (InstallTarget.CODEX, InstallTarget.GEMINI):
        from gitbus import install_agents as A

        if shared:
            raise UsageError("--shared is for claude only", ctx)
        written = [str(f) for f in A.install(bus.repo, A.TARGETS[target.value])]
        said = "\n".join(f"wrote {f}" for f in written)
        if said and target is InstallTarget.CODEX:
            said += "\n" + A.CODEX_TRUST_HINT
        done = f"gitbus is installed for {target.value} already; nothing changed"
        _said(said or done, {"wrote": written}, json_out)
    else:
        wrote = githooks.install_git_hooks(bus.repo)
        what = {"pre-commit": "the commit guard", "post-commit": "the commit notes hook"}
        lines = [f"installed {what[f.name]} in {f}" for f in wrote]
        done = "the commit guard and notes hook are installed already; nothing changed"
        _said("\n".join(lines) or done, {"wrote": [str(f) for f in wrote]}, json_out)


def uninstall(
    ctx: typer.Context, target: Target, shared: SharedOpt = False, json_out: JsonOpt = False
) -> None:
    """Remove exactly what `gitbus install` added."""
    from gitbus import githooks
    from gitbus import install as I

    bus = root.open_bus(ctx, json_out)
    if target is InstallTarget.CLAUDE:
        changed = [str(f) for f in I.uninstall_claude(bus.repo, shared)]
        lines = [f"cleaned {f}" for f in changed]
    elif target in (InstallTarget.CODEX, InstallTarget.GEMINI):
        from gitbus import install_agents as A

        if shared:
            raise UsageError("--shared is for claude only", ctx)
        changed = [str(f) for f in A.uninstall(bus.repo, A.TARGETS[target.value])]
        lines = [f"cleaned {f}" for f in changed]
    else:
        removed = githooks.uninstall_git_hooks(bus.repo)
        what = {"pre-commit": "the commit guard", "post-commit": "the commit notes hook"}
        lines = [f"removed {what[f.name]} from {f}" for f in removed]
        changed = [str(f) for f in removed]
    _said("\n".join(lines) or "nothing to remove", {"removed": changed}, json_out)


SETTINGS = ", ".join(DEFAULTS)  # every setting, so `config --help` names them all


def config(
    ctx: typer.Context,
    key: Annotated[str | None, typer.Argument(metavar="[KEY]", help=f"One of: {SETTINGS}.")] = None,
    value: Annotated[str | None, typer.Argument(help="The new value.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Show or set per-repository gitbus settings (shared by every worktree)."""
    from gitbus import settings

    bus = root.open_bus(ctx, json_out)
    if key is not None and value is not None:
        settings.save(bus.repo.common_dir, key, settings.parse(key, value))
    current = settings.load(bus.repo.common_dir)
    if key is not None and key not in current:
        settings.parse(key, "")
    for problem in settings.problems(bus.repo.common_dir):  # a value not acted on is named, not hidden
        root.err.print(f"gitbus: {problem}", markup=False, soft_wrap=True)
    shown = {key: current[key]} if key else current
    if json_out:
        render.dump(out, shown)
    else:
        for k, v in shown.items():
            out.print(f"{k} = {json.dumps(v)}", markup=False)


def gc(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Pack everything now, due or not.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Pack the bus's objects and refs when git gc --auto would (safe beside running agents)."""
    from gitbus import housekeeping

    bus = root.open_bus(ctx, json_out)
    done = housekeeping.run(bus.repo, force=force)
    if json_out:
        render.dump(out, done.to_json())
    else:
        out.print(done.describe(), markup=False)
    if done.failed:
        raise GitbusError("; ".join(done.failed) + ".")


def hook(
    mode: Annotated[
        str | None,
        typer.Argument(
            metavar="[wake|codex|gemini]",
            help="wake: wait for a message (asyncRewake); codex, gemini: that client's hooks.",
        ),
    ] = None,
) -> None:
    """The agent hook handler: hook JSON on stdin, hook JSON on stdout (docs/agents.md)."""
    from gitbus.hooks import main as hook_main

    raise typer.Exit(hook_main([mode] if mode else []))


def watch(
    ctx: typer.Context,
    daemon: Annotated[bool, typer.Option("--daemon", help="Run in the background.")] = False,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the background watcher.")] = False,
    once: Annotated[bool, typer.Option("--once", help="Update the context files once and exit.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Keep a context file current in every worktree as the bus changes (one watcher per repository)."""
    from gitbus import watch as W
    from gitbus import watch_daemon as D

    bus = root.open_bus(ctx, json_out)
    if stop:
        pid = D.stop_daemon(bus.repo)
        said = "no watcher was running" if pid is None else f"stopped the watcher (pid {pid})"
        _said(said, {"stopped": pid}, json_out)
    elif once:
        written = W.Watcher(bus.repo).update()
        _said(f"updated {len(written)} context file(s)", {"updated": [str(f) for f in written]}, json_out)
    elif daemon:
        pid = D.start_daemon(bus.repo)
        _said(f"watcher running in the background (pid {pid})", {"pid": pid}, json_out)
    elif not D.serve(bus.repo):
        pid = D.running_pid(bus.repo.common_dir)
        _said(f"a watcher is already running for this repository (pid {pid})", {"running": pid}, json_out)


def tui(ctx: typer.Context) -> None:
    """Oversee and steer the agents in a terminal UI, posting as the operator (docs/tui.md)."""
    from gitbus.tui import run

    run(ctx.obj["dir"], ctx.obj["agent"])


def mcp(ctx: typer.Context) -> None:
    """Serve the bus as MCP tools on stdio (for Claude Code and other MCP clients; docs/mcp.md)."""
    from gitbus.mcp_server import serve

    serve(ctx.obj["dir"], ctx.obj["agent"])


def demo(
    keep: Annotated[Path | None, typer.Option("--keep", help="Keep the demo repository here.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run scripted agents in a throwaway repository with three worktrees, and show the result."""
    from gitbus.demo import run_demo

    result = run_demo(keep)
    if json_out:
        render.dump(
            out,
            {
                "steps": [
                    {"agent": s.agent, "action": s.action, "outcome": s.outcome, "ok": s.ok}
                    for s in result.steps
                ],
                "log": [m.to_json() for m in result.log],
                "claims": [render.claim_json(c, result.now) for c in result.claims],
                "kept": str(result.kept) if result.kept else None,
            },
        )
        return
    out.print(f"[bold]gitbus demo[/bold] — three agents in three worktrees of {result.repo_name}\n")
    for s in result.steps:
        mark = "[green]✓[/green]" if s.ok else "[red]✗[/red]"
        out.print(f"{mark} [bold]{s.agent}[/bold] {s.action}")
        out.print(f"    {s.outcome}", markup=False)
    out.print("\n[bold]gitbus log[/bold]")
    render.messages(out, result.log, result.now)
    out.print("\n[bold]gitbus claims[/bold]")
    render.claims(out, result.claims, result.now)
    if result.kept:
        out.print(f"\nkept in {result.kept}; try: cd {result.kept}/api && gitbus log", markup=False)
    else:
        out.print("\n[dim]the demo repository was removed; keep it with --keep DIR[/dim]")
