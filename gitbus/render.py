"""How the CLI shows library values to people (rich) and to programs (JSON).

A face module: with `statusview` (how `gitbus status` shows the board) and `cli`, the only place that
knows about rich, and it imports rich only to draw for a terminal: the everyday commands run without
it under a pipe (`gitbus.quick`, issue 14). Every peer-supplied value goes in as a `Text` made with
`gitbus.inert`, never into a markup string: a peer's `[/x]` is shown, not parsed, and its escape
sequences are shown, not run by the terminal.

Tables are for people at a terminal. When stdout is a pipe or a file, each list is one line a row,
fields separated by tabs in a fixed order (docs/cli.md § Output under a pipe); every field is
inert, so a tab or newline inside one is shown as `\\x09`, `\\x0a` and never splits it. A row carries
a message's whole text, not the cut one-line summary a table shows.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, Protocol

from gitbus.board import OpenRequest
from gitbus.bus import AgentInfo
from gitbus.claims import Claim
from gitbus.clock import hhmm, iso, span
from gitbus.ids import EVERYONE
from gitbus.inert import inert, inert_block, json_text
from gitbus.message import Kind, Message

if TYPE_CHECKING:
    from rich.console import Console

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


class Out(Protocol):
    """Where a command writes: a rich `Console`, or `Plain` where that is surely not a terminal."""

    @property
    def file(self) -> IO[str]: ...

    @property
    def is_terminal(self) -> bool: ...

    def print(
        self,
        *objects: Any,
        markup: bool | None = None,
        highlight: bool | None = None,
        soft_wrap: bool | None = None,
        emoji: bool | None = None,
    ) -> None: ...


class Plain:
    """Output to a pipe or a file: written as it is, without importing rich (~50 ms).

    Everything printed under a pipe goes through `say`, `rows` and `dump`, which write to `file`
    whatever the console, so a `Plain` and a rich console give the same bytes there."""

    is_terminal = False

    def __init__(self, file: IO[str]) -> None:
        self.file = file

    def print(
        self,
        *objects: Any,
        markup: bool | None = None,
        highlight: bool | None = None,
        soft_wrap: bool | None = None,
        emoji: bool | None = None,
    ) -> None:
        raise TypeError("Plain output takes text through render.say, rows and dump only")


def console_for(stderr: bool = False) -> Out:
    """A console for stdout (or stderr): `Plain` when rich would surely not see a terminal there
    (not a tty, and neither FORCE_COLOR nor TTY_COMPATIBLE set); else rich's, made as `cli` makes
    its own, so it decides exactly as `cli` would."""
    file = sys.stderr if stderr else sys.stdout
    env = os.environ
    if "FORCE_COLOR" not in env and "TTY_COMPATIBLE" not in env and not _isatty(file):
        return Plain(file)
    from rich.console import Console

    if stderr:
        return Console(stderr=True, highlight=False, emoji=False)
    return Console(highlight=False, soft_wrap=True, emoji=False)


def _isatty(file: IO[str]) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):  # no such method, or closed: rich says no terminal too
        return False


def piped(console: Out) -> bool:
    """True when stdout is not a terminal: rows go out as tab-separated lines, not tables."""
    return not console.is_terminal


def say(console: Out, text: str) -> None:
    """One line of plain text (never markup): written as it is under a pipe, by rich at a terminal."""
    if piped(console):
        console.file.write(text + "\n")
    else:
        console.print(text, markup=False, highlight=False, soft_wrap=True, emoji=False)


NAMED = 5  # bad refs a command names one by one; `--json` lists them all


def a_few(console: Out, lines: Sequence[str], more: str, prefix: str = "gitbus: ") -> None:
    """Any number of bad refs (a peer can push, or a crash leave, as many as it likes): the first
    `NAMED` `lines` (inert already), then `more` with the count of the rest in place of its first
    `{}` (not `str.format`: `more` may hold a name with braces of its own), each after `prefix`."""
    for line in lines[:NAMED]:
        say(console, prefix + line)
    if len(lines) > NAMED:
        say(console, prefix + more.replace("{}", str(len(lines) - NAMED), 1))


def rows(console: Out, lines: Iterable[Sequence[str]]) -> None:
    """Tab-separated lines, each field already inert (so it holds no tab or newline)."""
    console.file.write("".join("\t".join(fields) + "\n" for fields in lines))


def dump(console: Out, obj: Any) -> None:
    """JSON for programs: plain, one document, no colour or wrapping; values exact, but what a
    terminal would act on is written as `\\u` escapes."""
    console.file.write(json_text(obj, indent=2) + "\n")


def claim_json(c: Claim, now: int) -> dict[str, Any]:
    return {
        "path": c.path,
        "owner": c.owner,
        "reason": c.reason,
        "claimed_at": iso(c.claimed_at),
        "claimed_at_ms": c.claimed_at,
        "expires_at": iso(c.expires_at),
        "expires_at_ms": c.expires_at,
        "ttl_ms": c.ttl_ms,
        "live": c.live(now),
        "id": c.id,
    }


def ago(ms: int, now: int) -> str:
    return f"{span(now - ms)} ago" if now >= ms else f"in {span(ms - now)}"


def message_row(m: Message) -> list[str]:
    """id, time (ISO UTC), type, from, to (`*` for everyone), the whole text (and its paths)."""
    if m.kind in (Kind.CLAIM, Kind.RELEASE, Kind.RENEW) and m.paths:  # as `summary`, but whole
        text = inert(", ".join(m.paths) + (f": {m.text}" if m.text else ""))
    else:
        text = inert(m.text or m.kind.value)
        if m.paths:
            text += "  " + " ".join(inert(p) for p in m.paths)
    return [inert(m.id), iso(m.time), m.kind.value, inert(m.sender), inert(m.to), text]


def request_row(r: OpenRequest) -> list[str]:
    """A message row, then the request's state (`open`, `taken`, `done`) and its taker (or `-`)."""
    state, taker = (r.state.state, inert(r.state.taker)) if r.state else ("open", "-")
    return [*message_row(r.message), state, taker]


def signature_word(verified: bool) -> str:
    """`verified`: git verifies its signature as good and the signer is its sender; else `unverified`."""
    return "verified" if verified else "unverified"


def messages(
    console: Out,
    msgs: Sequence[Message],
    now: int,
    title: str | None = None,
    verified: Mapping[str, bool] | None = None,
) -> None:
    """The messages as a table (rows when piped). With `verified` (where this clone signs or
    requires signatures), each says whether its sender's signature verifies: a last column."""
    if piped(console):
        marks = (
            [[signature_word(verified.get(m.id, False))] for m in msgs]
            if verified is not None
            else [[]] * len(msgs)
        )
        rows(console, (message_row(m) + mark for m, mark in zip(msgs, marks, strict=True)))
        return
    from rich.table import Table
    from rich.text import Text

    if not msgs:
        console.print("[dim]no messages[/dim]")
        return
    table = Table(title=title, show_lines=False, expand=False, pad_edge=False)
    for col in ("id", "when", "type", "from", "to", "text", *(("signed",) if verified is not None else ())):
        table.add_column(col, overflow="fold", no_wrap=col in ("id", "when", "type", "signed"))
    for m in msgs:
        text = Text(inert(m.summary()))
        if m.paths and m.kind not in (Kind.CLAIM, Kind.RELEASE, Kind.RENEW):
            text.append("  " + " ".join(inert(p) for p in m.paths), style="dim")
        if m.reply_to:
            text.append(f"  ↩ {inert(m.reply_to[:8])}", style="dim")
        table.add_row(
            Text(inert(m.id[:8])),
            ago(m.time, now),
            Text(m.kind.value, style=KIND_STYLE[m.kind]),
            Text(inert(m.sender)),
            Text("all" if m.to == EVERYONE else inert(m.to)),
            text,
            *(
                (Text("✓", style="green") if verified.get(m.id) else Text("unverified", style="dim"),)
                if verified is not None
                else ()
            ),
        )
    console.print(table)


def line(console: Console, m: Message, json_out: bool = False) -> None:
    """One message on one line, flushed at once: `gitbus log --follow` (JSON: one object a line;
    under a pipe, its row)."""
    from rich.text import Text

    if json_out:
        console.file.write(json_text(m.to_json()) + "\n")
    elif piped(console):
        rows(console, [message_row(m)])
    else:
        to = "" if m.to == EVERYONE else f"→{inert(m.to)}"
        paths = f"  [{' '.join(inert(p) for p in m.paths)}]" if m.paths else ""
        stamp = datetime.fromtimestamp(m.time / 1000).strftime("%H:%M:%S")
        console.print(
            Text.assemble(
                f"{stamp} ",
                (f"{m.kind.value:<9}", KIND_STYLE[m.kind]),
                f" {inert(m.sender)}{to}: {inert(m.summary())}{paths}  ",
                (inert(m.id[:8]), "dim"),
            )
        )
    console.file.flush()


def message_full(
    console: Console,
    m: Message,
    replies: Iterable[Message],
    now: int,
    verified: bool | None = None,
    left_out: int = 0,
) -> None:
    """One message in full, then `replies`, then how many newer replies were `left_out`; with
    `verified` (where this clone signs or requires signatures), a line saying whether its sender's
    signature verifies."""
    from rich.text import Text

    to = "all" if m.to == EVERYONE else inert(m.to)
    console.print(
        Text.assemble(
            (m.kind.value, "bold"),
            f" {inert(m.id)} from ",
            (inert(m.sender), "bold"),
            f" to {to}, {ago(m.time, now)} ({hhmm(m.time)})",
        )
    )
    if verified is not None:
        console.print(
            Text(f"signature: verified, signed by {inert(m.sender)}", style="green")
            if verified
            else Text(f"signature: unverified (no good signature by {inert(m.sender)})")
        )
    if m.paths:
        console.print(Text("paths: " + ", ".join(inert(p) for p in m.paths)))
    if m.reply_to:
        console.print(Text(f"reply to: {inert(m.reply_to)}"))
    for k, v in m.meta:
        console.print(Text(f"{inert(k)}: {inert(v)}"))
    if m.text:
        console.print()
        console.print(Text(inert_block(m.text)))
    for r in replies:
        console.print()
        console.print(
            Text.assemble(
                (r.kind.value, "bold"),
                f" {inert(r.id)} from ",
                (inert(r.sender), "bold"),
                f", {ago(r.time, now)}",
            )
        )
        if r.text:
            console.print(Text(inert_block(r.text)))
    if left_out:
        console.print()
        console.print(Text(f"… and {left_out} newer {'reply' if left_out == 1 else 'replies'}, not shown."))


def claim_row(c: Claim, now: int) -> list[str]:
    """path, holder, expires (ISO UTC), live or expired, reason."""
    state = "live" if c.live(now) else "expired"
    return [inert(c.path), inert(c.owner), iso(c.expires_at), state, inert(c.reason)]


def claims(console: Out, cs: Sequence[Claim], now: int, me: str | None = None, unknown: bool = False) -> None:
    """A table of `cs` ("no claims" when there are none, unless the claims are `unknown`: not all read)."""
    if piped(console):
        rows(console, (claim_row(c, now) for c in cs))
        return
    from rich.table import Table
    from rich.text import Text

    if not cs:
        console.print("[dim]none that could be read[/dim]" if unknown else "[dim]no claims[/dim]")
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
        who = Text(inert(c.owner), "bold" if c.owner == me else "")
        table.add_row(Text(inert(c.path)), who, left, Text(inert(c.reason)))
    console.print(table)


def agent_row(a: AgentInfo) -> list[str]:
    """name, last active (ISO UTC, or -), live claims, last message; then `retired` for one that is
    (its last activity and message are its retirement)."""
    active = iso(a.last_active) if a.last_active else "-"
    row = [inert(a.name), active, str(a.live_claims), inert(a.last_summary)]
    return [*row, "retired"] if a.retired else row


def agents(console: Console, infos: Sequence[AgentInfo], now: int, me: str) -> None:
    if piped(console):
        rows(console, (agent_row(a) for a in infos))
        return
    from rich.table import Table
    from rich.text import Text

    if not infos:
        console.print("[dim]no agents yet; run `gitbus init` in a worktree[/dim]")
        return
    table = Table(pad_edge=False)
    for col in ("agent", "last active", "claims", "last message"):
        table.add_column(col, overflow="fold")
    for a in infos:
        name = Text.assemble((inert(a.name), "bold"), " (you)") if a.name == me else Text(inert(a.name))
        if a.retired:  # its newest message, and so its last activity, is the retirement
            name.append(" (retired)", "dim")
        table.add_row(
            name,
            ago(a.last_active, now) if a.last_active else "-",
            str(a.live_claims),
            Text(inert(a.last_summary)),
        )
    console.print(table)
