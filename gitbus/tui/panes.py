"""Panes: the three tables (feed, claims, agents) with their keys, and the rows and detail text
each shows for a snapshot. A table keeps its cursor on the same row across reloads and shares its
width among the columns, cutting cells with an ellipsis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from gitbus.board import unknown_claims
from gitbus.claims import Claim
from gitbus.clock import hhmm, span
from gitbus.delivery import claim_fact
from gitbus.inert import inert
from gitbus.tui.cells import age, badge, countdown, fit, label, paths_of, who
from gitbus.tui.model import Snapshot

Rows = list[tuple[str, list[Text]]]


class Table(DataTable[Text]):
    """A row-cursor table whose columns share the width; rows are rebuilt, the cursor kept."""

    COLUMNS: ClassVar[tuple[tuple[str, int], ...]] = ()  # (name, width; 0 = the rest)

    def __init__(self, id: str) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, id=id)
        self.keys: list[str] = []
        self.content: Sequence[tuple[str, Sequence[Text]]] = ()

    def widths(self) -> list[int]:
        fixed = sum(w for _, w in self.COLUMNS)
        rest = max(8, self.size.width - fixed - 2 * len(self.COLUMNS) - 2)
        return [w or rest for _, w in self.COLUMNS]

    def on_resize(self) -> None:
        if [c.width for c in self.columns.values()] != self.widths():
            self.fill(self.content)

    def fill(self, rows: Sequence[tuple[str, Sequence[Text]]]) -> None:
        self.content, keep = rows, self.selected()
        self.clear(columns=True)
        for (name, _), w in zip(self.COLUMNS, self.widths(), strict=True):
            self.add_column(name, width=w, key=name)
        for key, cells in rows:
            self.add_row(*(fit(c, w) for c, w in zip(cells, self.widths(), strict=True)), key=key)
        self.keys = [k for k, _ in rows]
        if keep in self.keys:
            self.move_cursor(row=self.keys.index(keep), animate=False)

    def selected(self) -> str | None:
        return self.keys[self.cursor_row] if 0 <= self.cursor_row < len(self.keys) else None


class FeedTable(Table):
    COLUMNS = (("age", 5), ("type", 9), ("from", 13), ("paths", 14), ("text", 0))
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "app.open_thread", "Thread"),
        Binding("a", "app.answer", "Answer"),
        Binding("t", "app.take", "Take"),
    ]


class ClaimsTable(Table):
    COLUMNS = (("path", 24), ("holder", 10), ("left", 7), ("reason", 0))
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "app.release", "Release"),
        Binding("f", "app.force_release", "Force"),
        Binding("enter", "app.feed_for('path')", "Feed"),
    ]


class AgentsTable(Table):
    COLUMNS = (("agent", 16), ("active", 7), ("claims", 6), ("open Qs", 7), ("last message", 0))
    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "app.feed_for('agent')", "Feed")]


def feed_rows(s: Snapshot) -> Rows:
    return [
        (
            m.id,
            [
                Text(age(s.now - m.time)),
                label(m.kind),
                Text(who(m)),
                Text(paths_of(m), "dim"),
                badge(m, s) + Text(inert(m.summary())),
            ],
        )
        for m in s.feed
    ]


def left(c: Claim, now: int) -> Text:
    """The lease left on `c`, counting down, or that it expired."""
    return Text(countdown(c.expires_at - now)) if c.live(now) else Text("expired", "bold red")


def claim_rows(s: Snapshot, me: str) -> Rows:
    rows: Rows = []
    for c in s.claims:
        took = [inert(t) for t in s.took_over(c.id)]
        note = Text(f"took over {'; '.join(took)} ", "bold red") if took else Text()
        holder = Text(inert(c.owner), "bold" if c.owner == me else "")
        rows.append((c.path, [Text(inert(c.path)), holder, left(c, s.now), note + Text(inert(c.reason))]))
    return rows


def claim_detail(s: Snapshot, c: Claim | None) -> Text:
    if s.claims_unknown is not None:  # unknown, not none: said above whatever could be read
        said = Text(unknown_claims(s.claims_unknown), "bold red")
        return said if c is None else Text.assemble(said, "\n", _claim_detail(s, c))
    return _claim_detail(s, c)


def _claim_detail(s: Snapshot, c: Claim | None) -> Text:
    if c is None:
        return Text("no claims", "dim")
    text = Text(claim_fact(c, s.now))
    took = [inert(t) for t in s.took_over(c.id)]
    if took:
        text.append(f"\ntook over: {'; '.join(took)}", "bold red")
    text.append(f"\nclaimed {hhmm(c.claimed_at)} · r release · f force-release · enter: its feed", "dim")
    return text


def agent_rows(s: Snapshot, me: str) -> Rows:
    rows: Rows = []
    for a in s.agents:
        open_qs = len(s.open_questions(to=a.name))
        rows.append(
            (
                a.name,
                [
                    Text(inert(a.name) + (" (you)" if a.name == me else ""), "bold" if open_qs else ""),
                    Text(span(s.now - a.last_active) if a.last_active else "-"),
                    Text(str(sum(c.owner == a.name and c.live(s.now) for c in s.claims))),
                    Text(str(open_qs), "bold yellow" if open_qs else "dim"),
                    Text(inert(a.last_summary)),
                ],
            )
        )
    return rows


def agent_detail(s: Snapshot, name: str | None) -> Text:
    text = Text()
    if name:
        mine = [c for c in s.claims if c.owner == name and c.live(s.now)]
        text.append(f"{inert(name)} holds: " + (", ".join(inert(c.path) for c in mine) or "nothing"))
        for q in s.open_questions(to=name):
            said = f"{inert(q.sender)}, {span(s.now - q.time)} ago: {inert(q.summary())}"
            text.append(f"\n? from {said}", "yellow")
    return text


def status_line(s: Snapshot, me: str, where: str, filtered: bool) -> Text:
    """The line above the panes: who, where, and the counts (a filter's matches in yellow)."""
    live = sum(c.live(s.now) for c in s.claims)
    text = Text.assemble((me, "bold"), f" @ {where} │ ")
    if filtered:  # the filter itself shows in its box above the feed
        text.append(f"{len(s.feed)} match", "bold yellow")
    else:
        text.append(f"{len(s.feed)} msgs")
    text.append(f" │ {len(s.open_questions())} open Qs │ {s.board.untaken()} open reqs │ {live} claims")
    if s.claims_unknown is not None:
        text.append(" (claims unknown)", "bold red")
    if len(s.claims) > live:
        text.append(f", {len(s.claims) - live} expired", "red")
    if s.skipped:  # a peer's bad data, read past: worth knowing, and `gitbus status` says more
        text.append(f" │ {s.skipped} skipped", "bold red")
    if s.refused:
        text.append(f" │ {s.refused} refused at sync", "bold red")
    return text
