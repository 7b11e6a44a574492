"""The TUI app: its panes, keys and live updates (see gitbus.tui for the whole).

Live updates come from a 0.5 s timer that compares a stamp of the bus refs with the last one
(`gitfiles.bus_stamp`: the `stat` of each bus ref file, no file read, libgit2 untouched, ~0.25 ms
for ten agents); only a different stamp reloads. We chose the timer over a watchdog observer (which
`gitbus watch` uses) because the lease countdown needs a 1 s timer anyway, a stat cannot miss an
event where inotify is blind (network mounts, some containers), it needs no observer thread or
debounce, and half a second is below what a person notices.

Reads run on a worker thread, each with its own `Bus` (a pygit2 handle never crosses threads); one
load runs at a time and a change during it schedules exactly one more, so a busy bus cannot starve
the screen.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Input, Static, TabbedContent, TabPane

from gitbus import settings
from gitbus.bus import Bus
from gitbus.claims import Claim
from gitbus.clock import Clock, SystemClock
from gitbus.errors import GitbusError
from gitbus.git import Repository
from gitbus.gitfiles import Stamp, bus_stamp
from gitbus.ids import agent_name
from gitbus.inert import inert, inert_block
from gitbus.message import Kind, Message
from gitbus.tui.cells import describe, for_keys
from gitbus.tui.model import Query, Snapshot, in_order, load
from gitbus.tui.panes import (
    AgentsTable,
    ClaimsTable,
    FeedTable,
    Table,
    agent_detail,
    agent_rows,
    claim_detail,
    claim_rows,
    feed_rows,
    left,
    status_line,
)
from gitbus.tui.screens import (
    ComposeScreen,
    Form,
    ThreadScreen,
    answer_form,
    ask_form,
    claim_form,
    discover_form,
    force_release_form,
    release_form,
)

POLL_SECONDS = 0.5  # how often the bus refs' stamp is compared
TICK_SECONDS = 1.0  # the lease countdown


class GitbusApp(App[None]):
    TITLE = "gitbus"
    CSS_PATH = Path(__file__).with_name("gitbus.tcss")  # absolute: a subclass elsewhere finds it too
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "pane('feed')", "Feed", show=False),
        Binding("2", "pane('claims')", "Claims", show=False),
        Binding("3", "pane('agents')", "Agents", show=False),
        Binding("q", "quit", "Quit"),
        Binding("d", "discover", "Discover"),
        Binding("question_mark", "ask", "Ask", key_display="?"),
        Binding("c", "claim", "Claim"),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear"),
        Binding("ctrl+q", "quit", "Quit", priority=True, show=False),  # also from inside a form
    ]

    def __init__(self, path: str | Path = ".", agent: str | None = None, clock: Clock | None = None) -> None:
        super().__init__()
        repo = Repository.open(path)
        self.root, self.clock = repo.root, clock or SystemClock()
        self.common = repo.common_dir
        self.agent = agent_name(agent or settings.load(self.common)["operator"])
        self.query_filter = Query()
        self.snap = Snapshot(self.clock.now_ms(), (), (), (), ())
        self._stamp: Stamp | None = None
        self._loading = self._dirty = False
        self._ticks = 0
        self._offered: tuple[bool | None, ...] = ()
        self._filter_open = False  # the box opened with `/`, maybe still empty

    def open_bus(self) -> Bus:
        """A fresh handle for one thread; paths typed in the app are relative to the worktree root."""
        return Bus.open(self.root, self.agent, self.clock)

    def compose(self) -> ComposeResult:
        yield Static(id="status", markup=False)
        with TabbedContent(initial="feed"):
            with TabPane("1 Feed", id="feed"):
                yield Input(
                    placeholder="type:question from:api-1 path:src/ words  (esc clears)",
                    id="filter",
                    compact=True,
                )
                yield FeedTable(id="feed-table")
                yield Static(id="feed-detail", classes="detail", markup=False)
            with TabPane("2 Claims", id="claims"):
                yield ClaimsTable(id="claims-table")
                yield Static(id="claim-detail", classes="detail", markup=False)
            with TabPane("3 Agents", id="agents"):
                yield AgentsTable(id="agents-table")
                yield Static(id="agent-detail", classes="detail", markup=False)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.home = self.screen  # the panes' screen: `self.query_one` would search the screen on top
        self.home.query_one(FeedTable).focus()
        self.poll()
        self.set_interval(POLL_SECONDS, self.poll)
        self.set_interval(TICK_SECONDS, self.tick)

    # -- loading --------------------------------------------------------------------------------

    @property
    def live(self) -> bool:
        """The panes exist: false while the app shuts down, when a late timer must not touch them."""
        return self.is_running and self.home.is_attached

    def poll(self) -> None:
        if not self.live:
            return
        stamp = bus_stamp(self.common)
        if stamp != self._stamp:
            self._stamp = stamp
            self.reload()

    def reload(self) -> None:
        if not self.live:
            return
        if self._loading:
            self._dirty = True
            return
        self._loading = True
        self.run_worker(self._load(self.query_filter), group="load")

    async def _load(self, query: Query) -> None:
        try:
            snap = await asyncio.to_thread(lambda: load(self.open_bus(), query))
            if not self.live:  # quit while the bus was read
                return
            if query == self.query_filter:
                self.show(snap)
            else:
                self._dirty = True
        except GitbusError as e:
            self.notify(inert_block(str(e)), severity="error", markup=False)
        finally:
            self._loading = False
        if self._dirty:
            self._dirty = False
            self.reload()

    @property
    def busy(self) -> bool:
        """A load is running or due (tests wait for this to clear)."""
        return self._loading or self._dirty

    def show(self, snap: Snapshot) -> None:
        self.snap = snap
        self.render_feed()
        self.render_claims()
        self.render_agents()
        if isinstance(self.screen, ThreadScreen):
            self.screen.reload()
        self.offer()

    def tick(self) -> None:
        """Each second the leases count down; every 15 s the ages in the feed move on too."""
        if not self.live:
            return
        self._ticks += 1
        now = self.clock.now_ms()
        expiring = [c for c in self.snap.claims if c.live(self.snap.now) and not c.live(now)]
        self.snap = replace(self.snap, now=now, claims=in_order(self.snap.claims, now))
        table = self.home.query_one(ClaimsTable)
        if expiring or table.keys != [c.path for c in self.snap.claims]:  # re-sorted, recounted
            self.render_claims()
            self.render_status()
            self.render_agents()
        else:
            for c in self.snap.claims:
                table.update_cell(c.path, "left", left(c, now))
            self.render_claim_detail()
        if self._ticks % 15 == 0:
            self.render_feed()
            self.render_agents()

    # -- rendering ------------------------------------------------------------------------------

    def render_status(self) -> None:
        line = status_line(self.snap, self.agent, self.root.name, bool(self.query_filter))
        self.home.query_one("#status", Static).update(line)

    def render_feed(self) -> None:
        self.home.query_one(FeedTable).fill(feed_rows(self.snap))
        self.render_status()
        self.render_feed_detail()

    def render_feed_detail(self) -> None:
        m = self.selected_message()
        detail = self.home.query_one("#feed-detail", Static)
        if m is None:
            detail.update(Text("no messages" + (" match the filter" if self.query_filter else ""), "dim"))
        else:
            detail.update(describe(m, self.snap))

    def render_claims(self) -> None:
        self.home.query_one(ClaimsTable).fill(claim_rows(self.snap, self.agent))
        self.render_claim_detail()

    def render_claim_detail(self) -> None:
        self.home.query_one("#claim-detail", Static).update(claim_detail(self.snap, self.selected_claim()))

    def render_agents(self) -> None:
        self.home.query_one(AgentsTable).fill(agent_rows(self.snap, self.agent))
        self.render_agent_detail()

    def render_agent_detail(self) -> None:
        name = self.home.query_one(AgentsTable).selected()
        self.home.query_one("#agent-detail", Static).update(agent_detail(self.snap, name))

    @on(DataTable.RowHighlighted)
    def highlighted(self, event: DataTable.RowHighlighted) -> None:
        if isinstance(event.data_table, FeedTable):
            self.render_feed_detail()
        elif isinstance(event.data_table, ClaimsTable):
            self.render_claim_detail()
        else:
            self.render_agent_detail()
        self.offer()

    # -- selection ------------------------------------------------------------------------------

    def selected_message(self) -> Message | None:
        if isinstance(self.screen, ThreadScreen):
            return self.screen.root
        key = self.home.query_one(FeedTable).selected()
        return next((m for m in self.snap.feed if m.id == key), None)

    def selected_claim(self) -> Claim | None:
        key = self.home.query_one(ClaimsTable).selected()
        return next((c for c in self.snap.claims if c.path == key), None)

    def pane(self) -> str:
        return str(self.home.query_one(TabbedContent).active)

    def offer(self) -> None:
        """Refresh the footer when what the keys can do changed (a footer rebuild costs ~7 ms)."""
        actions = ("answer", "take", "open_thread", "clear_filter", "release", "force_release")
        now = tuple(self.check_action(a, ()) for a in actions)
        if now != self._offered:
            self._offered = now
            self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        m = self.selected_message() if action in ("answer", "take", "open_thread") else None
        if action == "answer":
            return True if m and m.kind is Kind.QUESTION else None
        if action == "take":
            return True if m and m.kind is Kind.REQUEST and self.snap.requests.get(m.id) is None else None
        if action == "open_thread":
            return True if m else None
        if action == "clear_filter":  # also hides the box opened with `/` and left empty
            return bool(self.query_filter) or self._filter_open
        if action in ("release", "force_release"):  # `r` on your own claim, `f` on another's
            c = self.selected_claim()
            if c is None:
                return None
            return (c.owner == self.agent) == (action == "release")
        return True

    # -- actions --------------------------------------------------------------------------------

    def action_pane(self, name: str) -> None:
        if isinstance(self.screen, ThreadScreen):
            self.pop_screen()
        self.home.query_one(TabbedContent).active = name
        self.home.query_one(f"#{name}-table", Table).focus()

    @on(TabbedContent.TabActivated)
    def tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.home.query_one(f"#{event.pane.id}-table", Table).focus()

    def action_filter(self) -> None:
        self.action_pane("feed")
        box = self.home.query_one("#filter", Input)
        box.add_class("shown")
        box.focus()
        self._filter_open = True
        self.offer()

    @on(Input.Submitted, "#filter")
    def filter_submitted(self, event: Input.Submitted) -> None:
        try:
            query = Query.parse(event.value)
        except GitbusError as e:
            self.notify(inert_block(str(e)), severity="error", markup=False)
            return
        self.set_filter(query)

    def set_filter(self, query: Query) -> None:
        self.query_filter = query
        box = self.home.query_one("#filter", Input)
        box.value = str(query)
        box.set_class(bool(query), "shown")
        self._filter_open = bool(query)
        self.home.query_one(FeedTable).focus()
        self.render_status()
        self.offer()
        self.reload()

    def action_clear_filter(self) -> None:
        self.set_filter(Query())

    def action_feed_for(self, what: str) -> None:
        if what == "path":
            c = self.selected_claim()
            query = Query(path=c.path) if c else Query()
        else:
            name = self.home.query_one(AgentsTable).selected()
            query = Query(sender=name) if name else Query()
        self.action_pane("feed")
        self.set_filter(query)

    def action_open_thread(self) -> None:
        m = self.selected_message()
        if m is not None and not isinstance(self.screen, ThreadScreen):
            self.push_screen(ThreadScreen(m, self.open_bus, lambda: self.snap))

    def compose_form(self, form: Form) -> None:
        title, fields, submit = form

        def posted(msg: Message | None) -> None:
            if msg is not None:
                said = f"{msg.kind.value} {msg.id[:8]}: {inert(msg.summary())}"
                self.notify(said, title="posted", markup=False)
            self.reload()

        self.push_screen(ComposeScreen(title, fields, submit, self.open_bus), posted)

    def agent_names(self) -> tuple[str, ...]:
        return ("all", *(a.name for a in self.snap.agents if a.name != self.agent))

    def action_discover(self) -> None:
        self.compose_form(discover_form(self.agent))

    def action_ask(self) -> None:
        to = self.home.query_one(AgentsTable).selected() if self.pane() == "agents" else None
        self.compose_form(ask_form(self.agent, to, self.agent_names()))

    def action_answer(self) -> None:
        q = self.selected_message()
        if q is not None and q.kind is Kind.QUESTION:
            self.compose_form(answer_form(q))

    def action_claim(self) -> None:
        self.compose_form(claim_form(self.agent, self.selected_message() if self.pane() == "feed" else None))

    def action_release(self) -> None:
        self.compose_form(release_form(self.agent, self.selected_claim()))

    def action_force_release(self) -> None:
        self.compose_form(force_release_form(self.selected_claim()))

    async def action_take(self) -> None:
        m = self.selected_message()
        if m is None or m.kind is not Kind.REQUEST:
            return
        try:
            msg = await asyncio.to_thread(lambda: self.open_bus().take(m.id))
        except GitbusError as e:
            self.notify(for_keys(inert_block(str(e))), severity="error", markup=False)
            return
        said = f"took {inert(m.sender)}'s request: {inert(m.summary())}"
        self.notify(said, title=msg.id[:8], markup=False)
        self.reload()
