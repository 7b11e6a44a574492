"""The `gitbus` command: parse, call one library function, render. Nothing else lives here.

Exit codes: 0 success, 1 a user error (any `GitbusError`), 2 a malformed command line, 3 a conflict
(claim or request held by another agent), 4 the bus stayed locked; the table is `EXIT_CODES`, and
docs/cli.md's table is checked against it. `quick.fail` is the one place that turns a `GitbusError`
into its line and exit code (`_Group.invoke` calls it here, `quick.run` for the everyday commands);
`_Group.main` handles a malformed command line (click's `UsageError`).

The everyday commands' bodies live in `gitbus.quick`, which runs them without typer; their options
are declared here, once, and docs/gen_cli.py copies them into `gitbus/quick_args.py`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.core import TyperArgument, TyperGroup, TyperOption

from gitbus import quick, render
from gitbus.bus import Bus
from gitbus.clock import hhmm, iso, parse_duration, parse_since
from gitbus.errors import ClaimConflict, Conflict, Contended, GitbusError, NotFound
from gitbus.inert import inert, inert_block
from gitbus.message import Message
from gitbus.settings import DEFAULTS


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """Rich exits 1 when the reader of a pipe goes away; for gitbus that is a quiet success."""
        self.quiet = True
        quick.reader_gone()
        raise SystemExit(0)


out = _Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


USAGE = 2  # a malformed command line: unknown command or option, a missing or invalid argument

EXIT_CODES: dict[int, tuple[type[GitbusError], ...]] = {
    1: (GitbusError, NotFound),
    3: (Conflict, ClaimConflict),
    4: (Contended,),
}  # and 0 for success, USAGE for a malformed command line


class _Argument(TyperArgument):
    """An argument shown as click shows one: `PATH...`, `[PATH]...`, never `{PATH...}...` and a
    Python type beside it (typer 0.29's `<list[str]>`)."""

    def _base(self) -> str:
        return (self.metavar or str(self.name).upper()).strip("[]").removesuffix("...").strip("[]")

    def _rich_display_name(self) -> str:
        return self._base() + ("..." if self.nargs != 1 else "")

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self._rich_display_name()
        return name if self.required else f"[{self._base()}]" + ("..." if self.nargs != 1 else "")


_VALUE_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "Path": "PATH"}


class _Option(TyperOption):
    """An option's value named in capitals (`--ttl DURATION`, `-n INTEGER`), not `<str>`."""

    def display_type_rich(self, ctx: Any) -> str | None:
        bare = self.bare_type().removeprefix("list[").removesuffix("]")
        return self.metavar or _VALUE_NAMES.get(bare, bare.upper())


def _readable(params: list[Any]) -> list[Any]:
    """`params` with gitbus's help display (the classes differ only in how they print)."""
    for p in params:
        if type(p) is TyperArgument:
            p.__class__ = _Argument
        elif type(p) is TyperOption:
            p.__class__ = _Option
    return params


class _Group(TyperGroup):
    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _readable(command.params)
        return command

    def get_params(self, ctx: Any) -> list[Any]:
        return _readable(super().get_params(ctx))

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Click's own handling, except a malformed command line: one `gitbus:` line saying what is
        wrong, one usage line, exit 2 (click prints four lines, typer with rich a box)."""
        try:
            rv = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except NoArgsIsHelpError as e:  # bare `gitbus`: the help, exit 2
            if not standalone_mode:
                raise
            e.show()
            sys.exit(e.exit_code)
        except UsageError as e:  # typer vendors click (typer._click), pinned in pyproject.toml
            if not standalone_mode:
                raise
            usage = e.ctx.get_usage() if e.ctx else "Usage: gitbus [OPTIONS] COMMAND [ARGS]..."
            err.print(f"gitbus: {_usage_sentence(e)}", markup=False, highlight=False, soft_wrap=True)
            usage = "usage: " + usage.removeprefix("Usage: ")
            err.print(usage, markup=False, highlight=False, soft_wrap=True)
            sys.exit(USAGE)
        except ClickException as e:
            if not standalone_mode:
                raise
            e.show()
            sys.exit(e.exit_code)
        except typer.Abort:
            if not standalone_mode:
                raise
            err.print("gitbus: aborted", markup=False)
            sys.exit(1)
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except GitbusError as e:
            raise typer.Exit(quick.fail(e, out, err, bool(ctx.obj and ctx.obj.get("json")))) from None
        except BrokenPipeError:  # a plain write to a closed pipe (`gitbus show … | head -1`)
            quick.reader_gone()
            raise typer.Exit(0) from None


def _usage_sentence(e: UsageError) -> str:
    """Click's message for a malformed command line as one plain sentence: typer 0.29 checks values
    with pydantic, whose words ("Value error, …", "Input should be …") and line breaks leak through."""
    message = e.format_message()
    cause = e.__cause__
    errors = getattr(cause, "errors", None)
    if callable(errors) and errors():
        first = errors()[0]
        got, limits = first.get("input"), first.get("ctx") or {}
        plain = {
            "greater_than_equal": f"{got} is less than the minimum, {limits.get('ge')}.",
            "int_parsing": f"{got!r} is not a whole number.",
            "value_error": str(limits.get("error", "")),
        }.get(first.get("type"), str(first.get("msg", "")).replace("Input", repr(got), 1))
        message = message.replace(str(first.get("msg", "")), plain)
    message = " ".join(message.split())  # "Choose from:\n\tclaude,\n\tgit-hooks" on one line
    return message if message.endswith((".", "?", "!")) else message + "."


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    add_completion=True,  # typer's --install-completion and --show-completion; the check costs ~1 ms
    rich_markup_mode=None,
    help="A git-native coordination bus for agents working in parallel worktrees.",
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for programs.")]
OfflineOpt = Annotated[
    bool,
    typer.Option("--offline", help="Decide locally even with a bus remote; reconciled at the next sync."),
]
PathsOpt = Annotated[
    list[str] | None, typer.Option("--path", "-p", metavar="PATH", help="A path this is about (repeatable).")
]
INBOX_PAGE = 50  # `gitbus inbox` prints at most this many unless -n says otherwise

ToOpt = Annotated[
    str | None, typer.Option("--to", metavar="AGENT", help="An agent's name; everyone when omitted.")
]


def _version(shown: bool) -> None:
    if shown:
        from gitbus import __version__

        out.print(f"gitbus {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent", "-a", envvar=None, metavar="AGENT", help="Act as this agent (overrides GITBUS_AGENT)."
        ),
    ] = None,
    directory: Annotated[
        Path, typer.Option("-C", metavar="PATH", help="Run as if started in this directory.")
    ] = Path("."),
    _: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print gitbus's version.")
    ] = False,
) -> None:
    ctx.obj = {"agent": agent, "dir": directory}


def _bus(ctx: typer.Context, json_out: bool = False, offline: bool = False) -> Bus:
    ctx.obj["json"] = json_out
    return Bus.open(ctx.obj["dir"], ctx.obj["agent"], offline=offline)


_text = quick.stdin_text


def _posted(bus: Bus, msg: Any, json_out: bool) -> None:
    quick.posted(out, msg, json_out)


# -- identity -----------------------------------------------------------------------------------


@app.command()
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
    bus = _bus(ctx, json_out)
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


@app.command()
def join(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="This worktree's agent name.")],
    json_out: JsonOpt = False,
) -> None:
    """Name this worktree's agent and announce it on the bus."""
    bus = _bus(ctx, json_out)
    joined = bus.join(name)
    if json_out:
        render.dump(out, {"agent": bus.agent, "joined": joined is not None})
    else:
        out.print(f"this worktree is agent {bus.agent}", markup=False)


@app.command("agents")
def agents_cmd(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """List the agents on the bus with their last activity."""
    bus = _bus(ctx, json_out)
    infos = bus.agents()
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
                }
                for a in infos
            ],
        )
    else:
        render.agents(out, infos, bus.clock.now_ms(), bus.agent)


# -- posting ------------------------------------------------------------------------------------


@app.command()
def discover(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="What you found; - reads stdin.")],
    path: PathsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Tell everyone what you found."""
    quick.discover(_bus(ctx, json_out), out, text=text, path=path, json_out=json_out)


@app.command()
def ask(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="The question; - reads stdin.")],
    to: ToOpt = None,
    path: PathsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Ask one agent or everyone a question."""
    bus = _bus(ctx, json_out)
    _posted(bus, bus.ask(_text(text), to, path or []), json_out)


@app.command()
def answer(
    ctx: typer.Context,
    id: Annotated[str, typer.Argument(help="The question's id (or a prefix).")],
    text: Annotated[str, typer.Argument(help="The answer; - reads stdin.")],
    json_out: JsonOpt = False,
) -> None:
    """Answer a question."""
    bus = _bus(ctx, json_out)
    _posted(bus, bus.answer(id, _text(text)), json_out)


@app.command()
def request(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="The work asked for; - reads stdin.")],
    to: ToOpt = None,
    path: PathsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Hand off a subtask; one agent will take it."""
    bus = _bus(ctx, json_out)
    _posted(bus, bus.request(_text(text), to, path or []), json_out)


@app.command()
def take(
    ctx: typer.Context,
    id: Annotated[str, typer.Argument(help="The request's id.")],
    offline: OfflineOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Take a request; exactly one agent can."""
    bus = _bus(ctx, json_out, offline)
    _posted(bus, bus.take(id), json_out)


@app.command()
def done(
    ctx: typer.Context,
    id: Annotated[str, typer.Argument(help="The request's id.")],
    text: Annotated[str, typer.Argument(help="What was done; - reads stdin.")] = "",
    offline: OfflineOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Mark a request you took as done."""
    bus = _bus(ctx, json_out, offline)
    _posted(bus, bus.done(id, _text(text)), json_out)


# -- claims -------------------------------------------------------------------------------------


@app.command()
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
    bus = _bus(ctx, json_out, offline)
    quick.claim(bus, out, paths=paths, ttl=ttl, reason=reason, json_out=json_out)


@app.command()
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
    bus = _bus(ctx, json_out, offline)
    msg = bus.release(paths or [], everything=all_, force=force, reason=reason)
    if json_out:
        render.dump(out, msg.to_json() if msg else None)
    elif msg is None:
        out.print("you hold no claims")
    else:
        out.print(f"released {', '.join(msg.paths)}", markup=False)


@app.command()
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
    bus = _bus(ctx, json_out, offline)
    msg = bus.renew(paths or [], parse_duration(ttl) if ttl else None)
    if json_out:
        render.dump(out, msg.to_json() if msg else None)
    elif msg is None:
        out.print("you hold no claims")
    else:
        out.print(f"renewed {', '.join(msg.paths)}", markup=False)


@app.command("claims")
def claims_cmd(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Include expired claims.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """List live claims (all agents)."""
    quick.claims(_bus(ctx, json_out), out, all_=all_, json_out=json_out)


# -- reading ------------------------------------------------------------------------------------


@app.command()
def log(
    ctx: typer.Context,
    n: Annotated[int, typer.Option("-n", min=1, help="How many messages (newest first).")] = 20,
    type_: Annotated[
        list[str] | None, typer.Option("--type", "-t", metavar="TYPE", help="Only this type (repeatable).")
    ] = None,
    from_: Annotated[
        str | None, typer.Option("--from", metavar="AGENT", help="Only from this agent.")
    ] = None,
    path: Annotated[
        str | None, typer.Option("--path", metavar="PATH", help="Only messages touching this path.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", metavar="DURATION|TIME", help="2h, 30m or an ISO time.")
    ] = None,
    grep: Annotated[str | None, typer.Option("--grep", help="Only messages containing this text.")] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Then print new messages as they arrive, one a line, until Ctrl-C."
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Show the bus history, newest first (with --follow: oldest first, then live; JSON one a line)."""
    bus = _bus(ctx, json_out)
    if not follow:
        quick.log(
            bus, out, n=n, type_=type_, from_=from_, path=path, since=since, grep=grep, json_out=json_out
        )
        return
    kinds = type_ or []
    now = bus.clock.now_ms()
    newest = bus.log(1)  # read first: whatever arrives from here on is at or after its time
    msgs = bus.log(
        n, kinds=kinds, sender=from_, path=path, since=parse_since(since, now) if since else None, grep=grep
    )
    _follow(bus, msgs, newest[0].time if newest else 0, json_out, kinds, from_, path, grep)


def _follow(
    bus: Bus,
    shown: list[Message],
    since: int,
    json_out: bool,
    kinds: list[str],
    sender: str | None,
    path: str | None,
    grep: str | None,
) -> None:
    """Print `shown` oldest first, then each new message matching the filters as it arrives, until
    Ctrl-C (or the reader of a pipe goes away).

    Every 0.3 s the bus refs are read as files (no libgit2, a few small reads); only when they change
    is `Bus.log` asked for what is at or after `since`, the newest time already seen, so a poll costs
    what is new (posts are stamped past every chain tip, so a new local post is never older). A sync
    can merge in messages older than that; they are not shown here (see `gitbus log`)."""
    from gitbus.gitfiles import read_refs

    seen = {m.id: m.time for m in shown}
    refs: dict[str, str] | None = None  # so the first poll catches what arrived since `since` was read
    try:
        for m in reversed(shown):
            render.line(out, m, json_out)
        while True:
            now_refs = read_refs(bus.repo.common_dir, "refs/bus/")
            if now_refs != refs:
                refs, newest = now_refs, bus.log(1)
                new = bus.log(None, since=since, kinds=kinds, sender=sender, path=path, grep=grep)
                for m in reversed(new):
                    if m.id not in seen:
                        seen[m.id] = m.time
                        render.line(out, m, json_out)
                since = max(since, newest[0].time if newest else 0)
                seen = {k: t for k, t in seen.items() if t >= since}  # bounded: only the newest instant
            if _reader_gone(0.3):
                return
    except KeyboardInterrupt:
        return
    except BrokenPipeError:  # `gitbus log -f | head`: the reader is gone, so are we, quietly
        quick.reader_gone()


def _reader_gone(wait: float) -> bool:
    """Wait up to `wait` seconds; True as soon as stdout is a pipe whose reader has closed it.

    Writing is how a closed pipe usually shows (BrokenPipeError), but `log -f` may not write for
    hours: `gitbus log -f | head -1` would outlive head until the next message. poll() reports
    POLLERR on the write end of a pipe with no reader (Linux, macOS); a terminal or file never."""
    import select
    import time

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test runner's buffer)
        time.sleep(wait)
        return False
    poller = select.poll()
    poller.register(fd, 0)  # no events asked for: POLLERR/POLLHUP are always reported
    return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(wait * 1000))


@app.command()
def show(
    ctx: typer.Context,
    id: Annotated[str, typer.Argument(help="A message id (or a prefix).")],
    json_out: JsonOpt = False,
) -> None:
    """Show one message in full, with its replies."""
    bus = _bus(ctx, json_out)
    msg = bus.find(id)
    replies = bus.replies(msg.id)
    verified = bus.verified([msg])
    mark = None if verified is None else verified.get(msg.id, False)
    if json_out:
        render.dump(out, {**msg.to_json(), "verified": bool(mark), "replies": [r.to_json() for r in replies]})
    else:
        render.message_full(out, msg, replies, bus.clock.now_ms(), mark)


@app.command()
def inbox(
    ctx: typer.Context,
    mark_read: Annotated[bool, typer.Option("--mark-read", help="Mark these as seen.")] = False,
    n: Annotated[int, typer.Option("-n", min=1, help="At most this many, oldest first.")] = INBOX_PAGE,
    json_out: JsonOpt = False,
) -> None:
    """What this agent has not seen: messages to it, answers to its questions, broadcasts."""
    from gitbus.inbox import Inbox

    bus = _bus(ctx, json_out)
    msgs, more = Inbox(bus.repo, bus.agent).page(mark_read, n)
    if json_out:  # an object, not a list: `more` says what waits past the page (`-n`)
        render.dump(out, {"messages": [m.to_json() for m in msgs], "more": more})
        return
    render.messages(out, msgs, bus.clock.now_ms())
    if more:  # on stderr under a pipe, so the lines stay rows
        (err if render.piped(out) else out).print(
            f"{more} more: gitbus inbox -n {n + more}", markup=False, highlight=False
        )
    elif msgs and not mark_read and not render.piped(out):
        out.print("[dim]gitbus inbox --mark-read marks these as seen[/dim]")


@app.command()
def status(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Who I am, my claims, others' claims, open questions and requests."""
    quick.status(_bus(ctx, json_out), out, json_out=json_out)


@app.command()
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


# -- live delivery ------------------------------------------------------------------------------


@app.command()
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


@app.command()
def watch(
    ctx: typer.Context,
    daemon: Annotated[bool, typer.Option("--daemon", help="Run in the background.")] = False,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the background watcher.")] = False,
    once: Annotated[bool, typer.Option("--once", help="Update the context files once and exit.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Keep a context file current in every worktree as the bus changes (one watcher per repository)."""
    from gitbus import watch as W

    bus = _bus(ctx, json_out)
    if stop:
        pid = W.stop_daemon(bus.repo)
        said = "no watcher was running" if pid is None else f"stopped the watcher (pid {pid})"
        _said(said, {"stopped": pid}, json_out)
    elif once:
        written = W.Watcher(bus.repo).update()
        _said(f"updated {len(written)} context file(s)", {"updated": [str(f) for f in written]}, json_out)
    elif daemon:
        pid = W.start_daemon(bus.repo)
        _said(f"watcher running in the background (pid {pid})", {"pid": pid}, json_out)
    elif not W.serve(bus.repo):
        pid = W.running_pid(bus.repo.common_dir)
        _said(f"a watcher is already running for this repository (pid {pid})", {"running": pid}, json_out)


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


@app.command()
def install(ctx: typer.Context, target: Target, shared: SharedOpt = False, json_out: JsonOpt = False) -> None:
    """Install gitbus's hooks for Claude Code, Codex or Gemini CLI, or the git pre-commit guard
    (idempotent; docs/agents.md)."""
    from gitbus import githooks
    from gitbus import install as I

    bus = _bus(ctx, json_out)
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


@app.command()
def uninstall(
    ctx: typer.Context, target: Target, shared: SharedOpt = False, json_out: JsonOpt = False
) -> None:
    """Remove exactly what `gitbus install` added."""
    from gitbus import githooks
    from gitbus import install as I

    bus = _bus(ctx, json_out)
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


@app.command("guard")
def guard_cmd(
    ctx: typer.Context,
    paths: Annotated[list[str] | None, typer.Argument(metavar="[PATH]...", help="Paths to check.")] = None,
    staged: Annotated[bool, typer.Option("--staged", help="Check what the next commit changes.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Exit 3 if any path is inside another agent's live claim (the pre-commit guard runs this)."""
    from gitbus import guard, settings

    bus = _bus(ctx, json_out)
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


SETTINGS = ", ".join(DEFAULTS)  # every setting, so `config --help` names them all


@app.command()
def config(
    ctx: typer.Context,
    key: Annotated[str | None, typer.Argument(metavar="[KEY]", help=f"One of: {SETTINGS}.")] = None,
    value: Annotated[str | None, typer.Argument(help="The new value.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Show or set per-repository gitbus settings (shared by every worktree)."""
    from gitbus import settings

    bus = _bus(ctx, json_out)
    if key is not None and value is not None:
        settings.save(bus.repo.common_dir, key, settings.parse(key, value))
    current = settings.load(bus.repo.common_dir)
    if key is not None and key not in current:
        settings.parse(key, "")
    shown = {key: current[key]} if key else current
    if json_out:
        render.dump(out, shown)
    else:
        for k, v in shown.items():
            out.print(f"{k} = {json.dumps(v)}", markup=False)


@app.command()
def gc(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Pack everything now, due or not.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Pack the bus's objects and refs when git gc --auto would (safe beside running agents)."""
    from gitbus import housekeeping

    bus = _bus(ctx, json_out)
    done = housekeeping.run(bus.repo, force=force)
    if json_out:
        render.dump(out, done.to_json())
    else:
        out.print(done.describe(), markup=False)
    if done.failed:
        raise GitbusError("; ".join(done.failed) + ".")


@app.command()
def tui(ctx: typer.Context) -> None:
    """Oversee and steer the agents in a terminal UI, posting as the operator (docs/tui.md)."""
    from gitbus.tui import run

    run(ctx.obj["dir"], ctx.obj["agent"])


@app.command()
def mcp(ctx: typer.Context) -> None:
    """Serve the bus as MCP tools on stdio (for Claude Code and other MCP clients; docs/mcp.md)."""
    from gitbus.mcp_server import serve

    serve(ctx.obj["dir"], ctx.obj["agent"])


# -- history ----------------------------------------------------------------------------------


@app.command()
def note(
    ctx: typer.Context,
    commit: Annotated[str, typer.Argument(help="The commit to annotate.")] = "HEAD",
    json_out: JsonOpt = False,
) -> None:
    """Attach this agent's coordination note to a commit (the post-commit hook runs this)."""
    from gitbus import notes, story

    bus = _bus(ctx, json_out)
    text = story.note_for_commit(bus, commit)
    notes.add(bus.repo, commit, text, bus.clock.now_ms())
    if json_out:
        render.dump(out, {"commit": commit, "note": text})
    else:
        out.print(inert_block(text.rstrip()), markup=False)


@app.command()
def history(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="A file or directory.")],
    json_out: JsonOpt = False,
) -> None:
    """The story of a path: claims, discoveries, questions and answers, and commits with their notes."""
    from gitbus import story

    bus = _bus(ctx, json_out)
    events = story.story(bus, path)
    if json_out:
        render.dump(
            out,
            [
                {"time": iso(e.time), "time_ms": e.time, "message": e.message.to_json()}
                if e.message
                else {
                    "time": iso(e.time),
                    "time_ms": e.time,
                    "commit": e.commit,
                    "author": e.author,
                    "subject": e.subject,
                    "note": e.note,
                }
                for e in events
            ],
        )
        return
    for e in events:
        if e.message:
            m = e.message
            said = f"{inert(m.sender)}: {inert(m.summary())}  [{inert(m.id[:8])}]"
            out.print(f"{hhmm(e.time)}  {m.kind.value:<9} {said}", markup=False)
        else:
            out.print(
                f"{hhmm(e.time)}  commit    {(e.commit or '')[:10]} {inert(e.author)}: {inert(e.subject)}",
                markup=False,
            )
            for line in e.note.splitlines():
                out.print(f"                 {inert(line)}", markup=False)
    if not events:
        out.print("nothing on the bus or in the history touches this path", markup=False)


@app.command()
def search(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="Text to find (any case).")],
    n: Annotated[int, typer.Option("-n", min=1, help="At most this many (newest first).")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """Search every message ever posted."""
    bus = _bus(ctx, json_out)
    found = bus.log(n, grep=text)
    if json_out:
        render.dump(out, [m.to_json() for m in found])
    else:
        render.messages(out, found, bus.clock.now_ms())


# -- across machines ----------------------------------------------------------------------------

RemoteArg = Annotated[
    str | None, typer.Argument(metavar="[REMOTE]", help="A git remote; default: the bus remote.")
]


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
            f"gitbus: ignored {inert(ref)}: not a valid agent name, so no gitbus wrote it", markup=False
        )
    if len(report.ignored) > SYNC_NAMED:
        more = len(report.ignored) - SYNC_NAMED
        err.print(f"gitbus: ignored {more} more ref(s) with names no agent can have", markup=False)
    for refusal in report.refused[:SYNC_NAMED]:
        err.print(f"gitbus: {inert(refusal.line(), 600)}", markup=False, soft_wrap=True)
    if len(report.refused) > SYNC_NAMED:
        more = len(report.refused) - SYNC_NAMED
        err.print(f"gitbus: refused {more} more ref(s) (gitbus sync --json lists them)", markup=False)


SYNC_NAMED = 5  # bad refs a sync names one by one


@app.command()
def remote(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The git remote to share the bus through.")],
    json_out: JsonOpt = False,
) -> None:
    """Set the bus remote: from now on claims, releases and takes are decided by it."""
    bus = _bus(ctx, json_out)
    bus.set_remote(name)
    if json_out:
        render.dump(out, {"remote": name})
    else:
        out.print(f"the bus is shared through '{name}' (gitbus sync to exchange messages)", markup=False)


@app.command()
def push(ctx: typer.Context, remote_name: RemoteArg = None, json_out: JsonOpt = False) -> None:
    """Send local bus messages and ledger steps to the remote (all or nothing)."""
    from gitbus import sync
    from gitbus.remote import require_remote

    bus = _bus(ctx, json_out)
    _report(sync.sync(bus.repo, require_remote(bus.repo, remote_name), pull=False), json_out)


@app.command()
def pull(ctx: typer.Context, remote_name: RemoteArg = None, json_out: JsonOpt = False) -> None:
    """Fetch the remote's bus and merge it in (no message is lost or rewritten)."""
    from gitbus import sync
    from gitbus.remote import require_remote

    bus = _bus(ctx, json_out)
    _report(sync.sync(bus.repo, require_remote(bus.repo, remote_name), send=False), json_out)


@app.command("sync")
def sync_cmd(ctx: typer.Context, remote_name: RemoteArg = None, json_out: JsonOpt = False) -> None:
    """Pull, then push: afterwards this clone and the remote hold the same bus."""
    from gitbus import sync
    from gitbus.remote import require_remote

    bus = _bus(ctx, json_out)
    _report(sync.sync(bus.repo, require_remote(bus.repo, remote_name)), json_out)


def main() -> None:
    app()
