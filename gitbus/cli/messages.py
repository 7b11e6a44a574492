"""The commands that post to the bus and read it: discover, ask, answer, request, take, done;
log (and its --follow), show, inbox, search, status; a commit's note and a path's history.

The everyday ones (discover, log, status) only declare their options here; their bodies are in
`gitbus.quick`, which runs them without typer.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from gitbus import quick, render
from gitbus.bus import Bus
from gitbus.cli import root
from gitbus.cli.root import JsonOpt, OfflineOpt, PathsOpt, ToOpt, out
from gitbus.clock import hhmm, iso, parse_since
from gitbus.inert import inert, inert_block
from gitbus.message import Message

INBOX_PAGE = quick.INBOX_PAGE


_text = quick.stdin_text


def _posted(bus: Bus, msg: Any, json_out: bool) -> None:
    quick.posted(out, msg, json_out)


def discover(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="What you found; - reads stdin.")],
    path: PathsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Tell everyone what you found."""
    quick.discover(root.open_bus(ctx, json_out), out, text=text, path=path, json_out=json_out)


def ask(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="The question; - reads stdin.")],
    to: ToOpt = None,
    path: PathsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Ask one agent or everyone a question."""
    bus = root.open_bus(ctx, json_out)
    _posted(bus, bus.ask(_text(text), to, path or []), json_out)


def answer(
    ctx: typer.Context,
    id: Annotated[str, typer.Argument(help="The question's id (or a prefix).")],
    text: Annotated[str, typer.Argument(help="The answer; - reads stdin.")],
    json_out: JsonOpt = False,
) -> None:
    """Answer a question."""
    bus = root.open_bus(ctx, json_out)
    _posted(bus, bus.answer(id, _text(text)), json_out)


def request(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="The work asked for; - reads stdin.")],
    to: ToOpt = None,
    path: PathsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Hand off a subtask; one agent will take it."""
    bus = root.open_bus(ctx, json_out)
    _posted(bus, bus.request(_text(text), to, path or []), json_out)


def take(
    ctx: typer.Context,
    id: Annotated[str, typer.Argument(help="The request's id.")],
    offline: OfflineOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Take a request; exactly one agent can."""
    bus = root.open_bus(ctx, json_out, offline)
    _posted(bus, bus.take(id), json_out)


def done(
    ctx: typer.Context,
    id: Annotated[str, typer.Argument(help="The request's id.")],
    text: Annotated[str, typer.Argument(help="What was done; - reads stdin.")] = "",
    offline: OfflineOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Mark a request you took as done."""
    bus = root.open_bus(ctx, json_out, offline)
    _posted(bus, bus.done(id, _text(text)), json_out)


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
    bus = root.open_bus(ctx, json_out)
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


def show(
    ctx: typer.Context,
    id: Annotated[str, typer.Argument(help="A message id (or a prefix).")],
    json_out: JsonOpt = False,
) -> None:
    """Show one message in full, with its replies."""
    bus = root.open_bus(ctx, json_out)
    msg = bus.find(id)
    replies = bus.replies(msg)
    verified = bus.verified([msg])
    mark = None if verified is None else verified.get(msg.id, False)
    if json_out:
        render.dump(
            out,
            {
                **msg.to_json(),
                "verified": bool(mark),
                "replies": [r.to_json() for r in replies.messages],
                "replies_left_out": replies.left_out,
            },
        )
    else:
        render.message_full(out, msg, replies.messages, bus.clock.now_ms(), mark, replies.left_out)


def inbox(
    ctx: typer.Context,
    mark_read: Annotated[bool, typer.Option("--mark-read", help="Mark these as seen.")] = False,
    n: Annotated[int, typer.Option("-n", min=1, help="At most this many, oldest first.")] = INBOX_PAGE,
    page: Annotated[
        int, typer.Option("--page", min=1, help="This page of -n, oldest first (up to 1,000 unread).")
    ] = 1,
    before: Annotated[
        str | None,
        typer.Option(
            "--before",
            help="Past 1,000 unread: the older page this token, printed by the page before, names.",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """What this agent has not seen: messages to it, answers to its questions, broadcasts."""
    quick.inbox(
        root.open_bus(ctx, json_out),
        out,
        mark_read=mark_read,
        n=n,
        page=page,
        before=before,
        json_out=json_out,
    )


def search(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="Text to find (any case).")],
    n: Annotated[int, typer.Option("-n", min=1, help="At most this many (newest first).")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """Search every message ever posted."""
    bus = root.open_bus(ctx, json_out)
    found = bus.log(n, grep=text)
    if json_out:
        render.dump(out, [m.to_json() for m in found])
    else:
        render.messages(out, found, bus.clock.now_ms())


def status(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Who I am, my claims, others' claims, open questions and requests."""
    quick.status(root.open_bus(ctx, json_out), out, json_out=json_out)


def note(
    ctx: typer.Context,
    commit: Annotated[str, typer.Argument(help="The commit to annotate.")] = "HEAD",
    json_out: JsonOpt = False,
) -> None:
    """Attach this agent's coordination note to a commit (the post-commit hook runs this)."""
    from gitbus import notes, story

    bus = root.open_bus(ctx, json_out)
    text = story.note_for_commit(bus, commit)
    notes.add(bus.repo, commit, text, bus.clock.now_ms())
    if json_out:
        render.dump(out, {"commit": commit, "note": text})
    else:
        out.print(inert_block(text.rstrip()), markup=False)


def history(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="A file or directory.")],
    json_out: JsonOpt = False,
) -> None:
    """The story of a path: claims, discoveries, questions and answers, and commits with their notes."""
    from gitbus import story

    bus = root.open_bus(ctx, json_out)
    events = story.story(bus, path)
    missing = story.left_out(bus.repo)
    if missing:  # on stderr, as one line: stdout stays the story (or the JSON)
        render.say(render.console_for(stderr=True), f"gitbus: {inert(missing, 600)}")
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
                    "note_bytes": e.note_bytes,
                    "note_cut": e.note_cut,
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
            for line in e.note.split("\n") if e.note else ():
                out.print(f"                 {inert(line)}", markup=False)
            if e.note_cut:
                shown = len(e.note.encode(errors="surrogateescape")) // 1024
                out.print(
                    f"                 (note cut: the first {shown} KiB of {e.note_bytes:,} bytes shown)",
                    markup=False,
                )
    if not events:
        out.print("nothing on the bus or in the history touches this path", markup=False)
