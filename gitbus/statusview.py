"""How `gitbus status` shows the board to people (rich at a terminal, plain lines under a pipe) and
to programs (JSON).

A face module beside `render`, whose rows, tables and rules it uses: every peer-supplied value goes
in inert, never into a markup string.
"""

from __future__ import annotations

from typing import Any

from gitbus.board import unknown_claims
from gitbus.clock import hhmm, iso
from gitbus.inbox_walk import capped, count_text
from gitbus.inert import inert
from gitbus.render import Out, a_few, ago, claim_json, claims, messages, piped, request_row, rows, say
from gitbus.status import Status

Span = tuple[str, str]  # a piece of a line and its rich style ("" for none)


def _spans(console: Out, *spans: Span) -> None:
    """One line of pieces: their text under a pipe, styled by rich at a terminal."""
    if piped(console):
        console.file.write("".join(text for text, _ in spans) + "\n")
        return
    from rich.text import Text

    console.print(Text.assemble(*spans))


def _heading(console: Out, title: str) -> None:
    """A blank line, then `title` (bold at a terminal)."""
    if piped(console):
        console.file.write(f"\n{title}\n")
    else:
        console.print(f"\n[bold]{title}[/bold]")


NOT_AN_AGENT = "The main checkout is not an agent (gitbus join --name NAME makes it one)."


def status(console: Out, s: Status, me: str | None) -> None:
    """`s` for people; `me` None in a main checkout that is not an agent (`quick.acting_as`)."""
    unread = f"; {count_text(s.unread, s.unread_partial)} unread (gitbus inbox)."
    if me is None:
        _spans(console, (NOT_AN_AGENT, ""))
    else:
        _spans(console, ("You are ", ""), (me, "bold"), (unread, ""))
    if s.sync:
        when = ago(int(s.sync.get("at") or 0), s.now)
        failed = f"failed: {inert(str(s.sync['error']))}" if s.sync.get("error") else ""
        remote = inert(str(s.sync.get("remote")))
        state = (failed, "red") if failed else ("ok", "")
        _spans(console, (f"Last background sync with {remote}: {when}, ", ""), state)
    if s.damage():
        _spans(console, (s.damage() or "", "yellow"))
    damaged = [f"{inert(ref, 200)} {inert(why, 200)}" for ref, why in s.damaged]  # a name is any file name
    a_few(console, damaged, "and {} more damaged ref(s) (gitbus status --json lists them)", prefix="")
    repair = s.repair()
    if repair:
        say(console, inert(repair))
    for path, by, at in s.taken_over:
        say(console, f"Your expired claim on {inert(path)} was taken over by {inert(by)} at {hhmm(at)}.")
    if s.claims_unknown is not None:
        _spans(console, (unknown_claims(s.claims_unknown), "yellow"))
    _heading(console, "Your claims")
    claims(console, s.my_claims, s.now, s.me, unknown=s.claims_unknown is not None)
    _heading(console, "Others' claims")
    claims(console, s.other_claims, s.now, s.me, unknown=s.claims_unknown is not None)
    _heading(console, "Open questions")
    messages(console, s.open_questions, s.now)
    _heading(console, "Open requests")
    if piped(console):
        rows(console, (request_row(r) for r in s.requests))
        return
    if not s.requests:
        console.print("[dim]none[/dim]")
    for r in s.requests:
        req = r.message
        how = f"taken by {inert(r.state.taker)}" if r.state else "open"
        _spans(console, (f"{inert(req.id[:8])} from {inert(req.sender)} ({how}): {inert(req.summary())}", ""))


def status_json(s: Status, me: str | None) -> dict[str, Any]:
    return {
        "me": me,
        "unread": capped(s.unread, s.unread_partial)[0],
        "unread_capped": capped(s.unread, s.unread_partial)[1],
        "sync": s.sync,
        "skipped": s.skipped,
        "damaged_refs": [ref for ref, _ in s.damaged],
        "claims_unknown": s.claims_unknown,  # why the claims lists may lack some; None: they are whole
        "refused": list(s.refused),
        "taken_over": [{"path": p, "by": by, "time": iso(t), "time_ms": t} for p, by, t in s.taken_over],
        "my_claims": [claim_json(c, s.now) for c in s.my_claims],
        "other_claims": [claim_json(c, s.now) for c in s.other_claims],
        "open_questions": [m.to_json() for m in s.open_questions],
        "open_requests": [
            {
                **r.message.to_json(),
                "state": r.state.state if r.state else "open",
                "taker": r.state.taker if r.state else None,
            }
            for r in s.requests
        ],
    }
