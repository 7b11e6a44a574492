"""Cells: how one value looks on the TUI's screen, as rich `Text` (every peer string inert).

Ages and countdowns fit a narrow column, a message's type carries its state as a badge (answers,
request state, takeovers), and the library's sentences that name CLI commands are reworded to name
the keys that do the same here.
"""

from __future__ import annotations

import re

from rich.text import Text

from gitbus.clock import span
from gitbus.ids import EVERYONE
from gitbus.inert import inert, inert_block
from gitbus.message import Kind, Message
from gitbus.render import KIND_STYLE
from gitbus.tui.model import Snapshot


def age(ms: int) -> str:
    """How long ago, in at most 5 cells: 45s, 12m, 3h, 2d (the detail pane has it to the minute).
    Seconds round up, as `clock.span` does, so the feed and the detail pane agree."""
    s = -(-max(0, ms) // 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def countdown(ms: int) -> str:
    s = max(0, ms) // 1000
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def fit(text: Text, width: int) -> Text:
    """`text` cut to `width` cells with an ellipsis (a copy: the original is kept for a wider screen)."""
    if text.cell_len <= width:
        return text
    out = text.copy()
    out.truncate(width, overflow="ellipsis")
    return out


def label(kind: Kind) -> Text:
    return Text(kind.value, style=KIND_STYLE[kind])


def badge(m: Message, snap: Snapshot) -> Text:
    """The state a message's type carries: answers, request state, takeovers, forced releases."""
    if m.kind is Kind.QUESTION:
        n = snap.answers[m.id]
        return Text(f"[{n} answer{'s' * (n != 1)}] ", "cyan") if n else Text("[unanswered] ", "yellow")
    if m.kind is Kind.REQUEST:
        st = snap.requests.get(m.id)
        if st is None:
            return Text("[open] ", "bold magenta")
        return Text("[done] ", "dim") if st.done_at else Text(f"[taken by {inert(st.taker)}] ", "magenta")
    took = [inert(v) for k, v in m.meta if k in ("took-over", "forced")]
    if took:
        what = "took over" if m.kind is Kind.CLAIM else "forced"
        return Text(f"[{what} {'; '.join(took)}] ", "bold red")
    return Text()


def who(m: Message) -> str:
    return inert(m.sender) if m.to == EVERYONE else f"{inert(m.sender)}→{inert(m.to)}"


def paths_of(m: Message) -> str:
    return " ".join(inert(p) for p in m.paths)


def describe(m: Message, snap: Snapshot) -> Text:
    """The detail of one message: header, badge, paths, text (every peer string inert)."""
    out = Text.assemble(label(m.kind), f" {inert(m.id[:8])} from {who(m)}, {span(snap.now - m.time)} ago  ")
    out.append_text(badge(m, snap))
    if m.paths:
        out.append("\npaths: " + paths_of(m), "dim")
    out.append("\n" + inert_block(m.text or m.summary()))
    return out


# The library's sentences name CLI commands and flags; here the same step is a key (issue 14).
_KEY_HINTS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r' \(or use --force --reason "…", which is recorded and tells them\)'),
        " (or press f on it in Claims to force-release it with a reason, which is recorded and tells them)",
    ),
    (re.compile(r'A forced release needs --reason "…"'), "A forced release needs a reason"),
    (re.compile(r'Ask them with: gitbus ask --to (\S+) "…"'), r"Press ? to ask them (to: \1)."),
    (re.compile(r"`gitbus take [^`]*` first"), "take it first (t on it in the feed)"),
    (re.compile(r"see `gitbus claims`"), "see Claims (2)"),
    (re.compile(r"claim it again with `gitbus claim`"), "claim it again (c)"),
    (re.compile(r"see `gitbus log`"), "see the Feed (1)"),
]


def for_keys(text: str) -> str:
    """`text` with the CLI commands and flags it suggests named as the keys that do the same here."""
    for pattern, replacement in _KEY_HINTS:
        text = pattern.sub(replacement, text)
    return text
