"""The everyday commands — log, status, claims, discover, claim, inbox, and push, pull, sync — started
without typer (issues 14 and 16).

People run these dozens of times an hour and agents on every step; typer (with pydantic) and rich
cost more to import than the command costs to run. So `entry` offers every command line to `run`
first. It parses one of these commands with the table in `quick_args` (`quick_parse`), which
docs/gen_cli.py generates from the typer declarations in `cli` (the one place options are declared),
opens the bus and calls the same body the typer command calls (a sync or pull with the fetch
`quick_parse.early_fetch` started before any of this loaded); rich is imported only to draw for a terminal.
Whatever it does not take as well formed — `--help`, `--version`, an unknown option, a missing or
bad value, `log --follow`, shell completion — it hands back untouched, and typer does all of it as
before: help, usage errors (exit 2) and every other command.

`fail` is the one place a `GitbusError` becomes its line and exit code, on both paths.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from gitbus import render, statusview
from gitbus.bus import Bus
from gitbus.clock import hhmm, iso, parse_duration, parse_since
from gitbus.errors import ClaimConflict, GitbusError
from gitbus.fetching import Early
from gitbus.inert import inert, inert_block
from gitbus.quick_parse import parse as parse
from gitbus.render import Out

# -- the bodies, shared with the typer commands in `cli` ----------------------------------------


def stdin_text(text: str) -> str:
    """The text argument, or standard input for `-` (strict UTF-8)."""
    if text != "-":
        return text
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise GitbusError("Standard input is not valid UTF-8; nothing was sent.") from None


def tell_notices(bus: Bus) -> None:
    """What the library noticed while taking a step (a refused remote tip it replaced, …), one line
    each on stderr, after the command's own output: the command that caused it says so."""
    for notice in bus.notices:
        sys.stderr.write(f"gitbus: {notice}\n")


def posted(out: Out, msg: Any, json_out: bool) -> None:
    """What a post printed: the message as JSON, or one line naming it."""
    if msg is None:
        return
    if json_out:
        render.dump(out, msg.to_json())
    else:
        # A take's text is the request's summary: a peer's words.
        render.say(out, f"{msg.kind.value} {msg.id} from {msg.sender}: {inert(msg.summary())}")


def log(
    bus: Bus,
    out: Out,
    *,
    n: int,
    type_: list[str] | None,
    from_: str | None,
    path: str | None,
    since: str | None,
    grep: str | None,
    json_out: bool,
) -> None:
    now = bus.clock.now_ms()
    when = parse_since(since, now) if since else None
    msgs = bus.log(n, kinds=type_ or [], sender=from_, path=path, since=when, grep=grep)
    verified = bus.verified(msgs)
    if json_out:
        render.dump(out, [{**m.to_json(), "verified": bool(verified and verified.get(m.id))} for m in msgs])
    else:
        render.messages(out, msgs, now, verified=verified)


def acting_as(bus: Bus) -> str | None:
    """The agent this command acts as; None in a main checkout that neither joined nor was given a
    name: it is not an agent (docs/cli.md § Who am I), so it is not shown as one."""
    if bus.is_main_checkout and not bus.named and not bus.on_bus():
        return None
    return bus.agent


def status(bus: Bus, out: Out, *, json_out: bool) -> None:
    s = bus.status()
    if json_out:
        render.dump(out, statusview.status_json(s, acting_as(bus)))
    else:
        statusview.status(out, s, acting_as(bus))


def claims(bus: Bus, out: Out, *, all_: bool, json_out: bool) -> None:
    now, cs = bus.clock.now_ms(), bus.claims(include_expired=all_)
    if json_out:
        render.dump(out, [render.claim_json(c, now) for c in cs])
    else:
        render.claims(out, cs, now, bus.agent)


def discover(bus: Bus, out: Out, *, text: str, path: list[str] | None, json_out: bool) -> None:
    posted(out, bus.discover(stdin_text(text), path or []), json_out)


def claim(bus: Bus, out: Out, *, paths: list[str], ttl: str | None, reason: str, json_out: bool) -> None:
    msg = bus.claim(paths, parse_duration(ttl) if ttl else None, reason)
    if json_out:
        now = bus.clock.now_ms()
        mine = [c for c in bus.claims() if c.owner == bus.agent and c.path in msg.paths]
        render.dump(out, {**msg.to_json(), "claims": [render.claim_json(c, now) for c in mine]})
    else:
        render.say(out, f"claimed {', '.join(msg.paths)} until {hhmm(int(msg.get('expires') or 0))}")


def inbox(
    bus: Bus, out: Out, *, mark_read: bool, n: int, page: int, json_out: bool, before: str | None = None
) -> None:
    """A page of what this agent has not seen, and a line saying how to reach the rest (on stderr
    under a pipe, so the lines stay rows). Past `inbox_pages.INBOX_WINDOW` unread, the page is the newest
    and its walk is bounded; the line then gives the token the next, older page goes on from
    (`--before`), never an offset (issue 16)."""
    from gitbus.inbox import Inbox

    got = Inbox(bus.repo, bus.agent).read_page(mark_read, n, page, before)
    sized = f" -n {n}" if n != INBOX_PAGE else ""
    then = f"gitbus inbox --before {got.next}{sized}" if got.next else None
    if json_out:  # an object, not a list: `more` says what waits past the page (`-n`)
        doc: dict[str, Any] = {"messages": [m.to_json() for m in got.messages], "more": got.more}
        if got.newest:  # `more` is then a lower bound: the walk stopped after the page
            doc |= {"newest_first": True, "next": then, "before": got.next}
        render.dump(out, doc)
        return
    render.messages(out, got.messages, bus.clock.now_ms())
    where = render.console_for(stderr=True) if render.piped(out) else out
    if then and got.more:
        render.say(where, f"the newest unread; {got.more} or more older: {then}")
    elif then and got.messages:
        render.say(where, f"the newest unread; older ones may wait: {then}")
    elif then:
        render.say(
            where, f"nothing unread among the newest messages this page read; older ones may wait: {then}"
        )
    elif got.more:
        # marked read, a page's messages leave the list: the same page number then shows the next ones
        at = page if mark_read else page + 1
        more = f"gitbus inbox -n {n + got.more}" if page == 1 else f"gitbus inbox --page {at} -n {n}"
        render.say(where, f"{got.more} more: {more}")
    elif got.messages and not mark_read and not render.piped(out):
        out.print("[dim]gitbus inbox --mark-read marks these as seen[/dim]")


INBOX_PAGE = 50  # `gitbus inbox` prints at most this many unless -n says otherwise


def sync(bus: Bus, out: Out, *, remote_name: str | None, json_out: bool, early: Early | None = None) -> None:
    _share(bus, out, remote_name, json_out, early=early)


def push(bus: Bus, out: Out, *, remote_name: str | None, json_out: bool) -> None:
    _share(bus, out, remote_name, json_out, taking=False)


def pull(bus: Bus, out: Out, *, remote_name: str | None, json_out: bool, early: Early | None = None) -> None:
    _share(bus, out, remote_name, json_out, sending=False, early=early)


def _share(
    bus: Bus,
    out: Out,
    remote_name: str | None,
    json_out: bool,
    taking: bool = True,
    sending: bool = True,
    early: Early | None = None,
) -> None:
    """Take the remote's bus in and/or send ours out, then say what moved (`syncview`). `early`: the
    fetch `quick_parse.early_fetch` started, for the sync to take or let go of."""
    from gitbus import sync, syncview
    from gitbus.remote import require_remote

    known = early.remote if early is not None and early.serves(bus.repo.common_dir, early.remote) else None
    name = require_remote(bus.repo, remote_name, known)
    report = sync.sync(bus.repo, name, pull=taking, send=sending, early=early)
    syncview.report(out, report, json_out)


BODIES: dict[str, Callable[..., None]] = {  # one for each command in quick_args.COMMANDS
    "log": log,
    "status": status,
    "claims": claims,
    "discover": discover,
    "claim": claim,
    "inbox": inbox,
    "push": push,
    "pull": pull,
    "sync": sync,
}


def fail(e: GitbusError, out: Out, err: Out, json_out: bool) -> int:
    """The one place a `GitbusError` is shown and becomes an exit code (`cli.EXIT_CODES`)."""
    if isinstance(e, ClaimConflict) and json_out:
        render.dump(
            out,
            {
                "error": e.message,
                "holder": e.holder,
                "held_path": e.held_path,
                "reason": e.reason,
                "expires_at": iso(e.expires_at),
                "expires_at_ms": e.expires_at,
            },
        )
    # A refusal may name a peer's claim, path and reason: shown inert.
    render.say(err, f"gitbus: {inert_block(e.message)}")
    return e.exit_code


# -- the command line ---------------------------------------------------------------------------


def run(argv: Sequence[str], early: Early | None = None) -> int | None:
    """Run an everyday command and return its exit code; None (nothing done) for typer to take.
    `early`: the fetch `quick_parse.early_fetch` started for this sync or pull; the caller, who
    started it, closes it after (which lets go of it if it was not taken)."""
    if "_GITBUS_COMPLETE" in os.environ:  # shell completion is typer's
        return None
    parsed = parse(argv)
    if parsed is None:
        return None
    name, root, values = parsed
    json_out = bool(values["json_out"])
    if early is not None and name in ("sync", "pull"):
        values["early"] = early
    # JSON goes out through `render.dump` alone, which writes the file as it is: no rich for it.
    out = render.Plain(sys.stdout) if json_out else render.console_for()
    try:
        bus = Bus.open(root["directory"], root["agent"], offline=bool(values.pop("offline", False)))
        BODIES[name](bus, out, **values)
        tell_notices(bus)
    except GitbusError as e:
        return fail(e, out, render.console_for(stderr=True), json_out)
    except (KeyboardInterrupt, EOFError):  # as click does: a new line, then typer's abort line
        if early is not None:
            early.close(stop=True)
        sys.stderr.write("\n")
        render.say(render.console_for(stderr=True), "gitbus: aborted")
        return 1
    except BrokenPipeError:  # the reader went away (`gitbus log | head -1`): done, quietly
        reader_gone()
        return 0
    return 0


def reader_gone() -> None:
    """After a write to a closed pipe: point stdout at /dev/null (Python's advice), so the flush at
    exit does not fail again; the command then ends quietly with 0, as `log -f` does."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
