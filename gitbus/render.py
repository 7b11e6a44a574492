"""How the CLI shows library values to people (rich) and to programs (JSON).

A face module: the only place, with `cli`, that knows about rich.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from gitbus.bus import AgentInfo, Status
from gitbus.claims import Claim
from gitbus.clock import hhmm, iso, span
from gitbus.ids import EVERYONE
from gitbus.message import Kind, Message

KIND_STYLE = {
    Kind.JOIN: "dim",
    Kind.DISCOVERY: "green",
    Kind.QUESTION: "yellow",
    Kind.ANSWER: "cyan",
    Kind.REQUEST: "magenta",
    Kind.TAKE: "magenta",
    Kind.DONE: "magenta",
    Kind.CLAIM: "blue",
    Kind.RELEASE: "blue",
    Kind.RENEW: "dim blue",
}


def dump(console: Console, obj: Any) -> None:
    """JSON for programs: plain, one document, no colour or wrapping."""
    console.file.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def claim_json(c: Claim, now: int) -> dict[str, Any]:
    return {
        "path": c.path,
        "owner": c.owner,
        "reason": c.reason,
        "claimed_at": iso(c.claimed_at),
        "expires_at": iso(c.expires_at),
        "ttl_ms": c.ttl_ms,
        "live": c.live(now),
        "id": c.id,
    }


def ago(ms: int, now: int) -> str:
    return f"{span(now - ms)} ago" if now >= ms else f"in {span(ms - now)}"


def messages(console: Console, msgs: Sequence[Message], now: int, title: str | None = None) -> None:
    if not msgs:
        console.print("[dim]no messages[/dim]")
        return
    table = Table(title=title, show_lines=False, expand=False, pad_edge=False)
    for col in ("id", "when", "type", "from", "to", "text"):
        table.add_column(col, overflow="fold", no_wrap=col in ("id", "when", "type"))
    for m in msgs:
        text = Text(m.summary())
        if m.paths and m.kind not in (Kind.CLAIM, Kind.RELEASE, Kind.RENEW):
            text.append("  " + " ".join(m.paths), style="dim")
        if m.reply_to:
            text.append(f"  ↩ {m.reply_to[:8]}", style="dim")
        table.add_row(
            m.id[:8],
            ago(m.time, now),
            Text(m.kind.value, style=KIND_STYLE[m.kind]),
            m.sender,
            "all" if m.to == EVERYONE else m.to,
            text,
        )
    console.print(table)


def line(console: Console, m: Message, json_out: bool = False) -> None:
    """One message on one line, flushed at once: `gitbus log --follow` (JSON: one object a line)."""
    if json_out:
        console.file.write(json.dumps(m.to_json(), ensure_ascii=False) + "\n")
    else:
        to = "" if m.to == EVERYONE else f"→{m.to}"
        paths = f"  [{' '.join(m.paths)}]" if m.paths else ""
        stamp = datetime.fromtimestamp(m.time / 1000).strftime("%H:%M:%S")
        console.print(
            Text.assemble(
                f"{stamp} ",
                (f"{m.kind.value:<9}", KIND_STYLE[m.kind]),
                f" {m.sender}{to}: {m.summary()}{paths}  ",
                (m.id[:8], "dim"),
            )
        )
    console.file.flush()


def message_full(console: Console, m: Message, replies: Iterable[Message], now: int) -> None:
    console.print(
        f"[bold]{m.kind.value}[/bold] {m.id} from [bold]{m.sender}[/bold] to "
        f"{'all' if m.to == EVERYONE else m.to}, {ago(m.time, now)} ({hhmm(m.time)})"
    )
    if m.paths:
        console.print("paths: " + ", ".join(m.paths))
    if m.reply_to:
        console.print(f"reply to: {m.reply_to}")
    for k, v in m.meta:
        console.print(f"{k}: {v}")
    if m.text:
        console.print()
        console.print(Text(m.text))
    for r in replies:
        console.print()
        console.print(f"[bold]{r.kind.value}[/bold] {r.id} from [bold]{r.sender}[/bold], {ago(r.time, now)}")
        if r.text:
            console.print(Text(r.text))


def claims(console: Console, cs: Sequence[Claim], now: int, me: str | None = None) -> None:
    if not cs:
        console.print("[dim]no claims[/dim]")
        return
    table = Table(pad_edge=False)
    for col in ("path", "holder", "expires", "reason"):
        table.add_column(col, overflow="fold")
    for c in cs:
        left = (
            f"{hhmm(c.expires_at)} ({span(c.expires_at - now)})"
            if c.live(now)
            else f"[red]expired {hhmm(c.expires_at)}[/red]"
        )
        who = f"[bold]{c.owner}[/bold]" if c.owner == me else c.owner
        table.add_row(Text(c.path), who, left, Text(c.reason))
    console.print(table)


def agents(console: Console, infos: Sequence[AgentInfo], now: int, me: str) -> None:
    if not infos:
        console.print("[dim]no agents yet; run `gitbus init` in a worktree[/dim]")
        return
    table = Table(pad_edge=False)
    for col in ("agent", "last active", "claims", "last message"):
        table.add_column(col, overflow="fold")
    for a in infos:
        name = f"[bold]{a.name}[/bold] (you)" if a.name == me else a.name
        table.add_row(
            name, ago(a.last_active, now) if a.last_active else "-", str(a.live_claims), Text(a.last_summary)
        )
    console.print(table)


def status(console: Console, s: Status) -> None:
    console.print(f"You are [bold]{s.me}[/bold]; {s.unread} unread (gitbus inbox).")
    if s.sync:
        when = ago(int(s.sync.get("at") or 0), s.now)
        state = f"[red]failed: {escape(str(s.sync['error']))}[/red]" if s.sync.get("error") else "ok"
        console.print(f"Last background sync with {s.sync.get('remote')}: {when}, {state}")
    if s.damage():
        console.print(f"[yellow]{escape(s.damage() or '')}[/yellow]")
    for path, by, at in s.taken_over:
        console.print(f"Your expired claim on {escape(path)} was taken over by {by} at {hhmm(at)}.")
    console.print("\n[bold]Your claims[/bold]")
    claims(console, s.my_claims, s.now, s.me)
    console.print("\n[bold]Others' claims[/bold]")
    claims(console, s.other_claims, s.now, s.me)
    console.print("\n[bold]Open questions[/bold]")
    messages(console, s.open_questions, s.now)
    console.print("\n[bold]Open requests[/bold]")
    if not s.requests:
        console.print("[dim]none[/dim]")
    for r in s.requests:
        state = f"taken by {r.state.taker}" if r.state else "open"
        console.print(f"{r.message.id[:8]} from {r.message.sender} ({state}): {r.message.summary()}")


def status_json(s: Status) -> dict[str, Any]:
    return {
        "me": s.me,
        "unread": s.unread,
        "sync": s.sync,
        "skipped": s.skipped,
        "refused": list(s.refused),
        "taken_over": [{"path": p, "by": by, "time": iso(t)} for p, by, t in s.taken_over],
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
