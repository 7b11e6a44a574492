"""`gitbus tui`: the bus on one terminal screen, for the people overseeing agents (docs/tui.md).

A face: each key parses a little input, calls one `Bus` method and renders what comes back. Three
panes (the feed of recent messages, the claims with their leases ticking down, the agents), a thread
view, and compose dialogs that post as the operator: the `operator` setting, or `gitbus -a NAME tui`.

Live updates come from a 0.5 s timer that compares a stamp of the bus refs with the last one: the
`stat` of each loose ref file under `<common>/refs/bus/`, of `packed-refs` and of reftable's
`tables.list`. No file is read and libgit2 is not touched (~0.25 ms for ten agents); only a
different stamp reloads. A ref write is lock-then-rename, so a moved ref always has a new inode and
mtime even when its size is the same. We chose the timer over a watchdog observer (which
`gitbus watch` uses) because the lease countdown needs a 1 s timer anyway, a stat cannot miss an
event where inotify is blind (network mounts, some containers; `gitbus watch` backs its observer
with a poll for that reason), it needs no observer thread or debounce, and half a second is below
what a person notices.

Reads run on a worker thread, each with its own `Bus` (a pygit2 handle never crosses threads); one
load runs at a time and a change during it schedules exactly one more, so a busy bus cannot starve
the screen. Memory is bounded: the feed holds the newest WINDOW messages (`Bus.log(WINDOW)`), so the
first paint costs the same with 10,000 messages as with 100. A filtered view asks `Bus.log` with the
filters, which walks back until WINDOW match: slow only for a rare filter on a long history, and then
on the worker thread while the screen stays live.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.suggester import SuggestFromList
from textual.widgets import DataTable, Footer, Input, Label, Static, TabbedContent, TabPane

from gitbus import ledger, settings, sync
from gitbus.bus import AgentInfo, Bus
from gitbus.claims import Claim
from gitbus.clock import Clock, SystemClock, hhmm, parse_duration, span
from gitbus.delegation import RequestState, state_of
from gitbus.delivery import claim_fact
from gitbus.errors import GitbusError, NotFound
from gitbus.git import Repository
from gitbus.ids import BUS_PREFIX, EVERYONE, agent_name
from gitbus.inert import has_forbidden_char, inert, inert_block
from gitbus.message import Kind, Message, kind_named
from gitbus.render import KIND_STYLE

WINDOW = 200  # messages the feed holds
POLL_SECONDS = 0.5  # how often the bus refs' signature is compared
TICK_SECONDS = 1.0  # the lease countdown


# -- what the screen shows: plain values, built off the UI thread ---------------------------------


@dataclass(frozen=True)
class Query:
    """The feed filter typed after `/`: `type:question,answer from:api-1 path:src/ free text`."""

    kinds: tuple[str, ...] = ()
    sender: str | None = None
    path: str | None = None
    text: str | None = None

    @classmethod
    def parse(cls, raw: str) -> Query:
        kinds: list[str] = []
        sender = path = None
        words: list[str] = []
        for word in raw.split():
            key, colon, value = word.partition(":")
            if colon and value and key in ("type", "t"):
                kinds += [kind_named(k).value for k in value.split(",") if k]
            elif colon and value and key in ("from", "agent", "a"):
                sender = agent_name(value)
            elif colon and value and key in ("path", "p"):
                path = value
            else:
                words.append(word)
        return cls(tuple(kinds), sender, path, " ".join(words) or None)

    def __bool__(self) -> bool:
        return bool(self.kinds or self.sender or self.path or self.text)

    def __str__(self) -> str:
        parts = [f"type:{','.join(self.kinds)}"] if self.kinds else []
        parts += [f"from:{self.sender}"] if self.sender else []
        parts += [f"path:{self.path}"] if self.path else []
        return " ".join(parts + ([self.text] if self.text else []))


@dataclass(frozen=True)
class Snapshot:
    """One consistent read of the bus: the recent window, the feed, claims, agents, request states."""

    now: int
    window: tuple[Message, ...]  # the newest WINDOW messages, newest first
    feed: tuple[Message, ...]  # the window, or what the query found
    claims: tuple[Claim, ...]
    agents: tuple[AgentInfo, ...]
    requests: Mapping[str, RequestState | None] = field(default_factory=dict)
    skipped: int = 0  # entries under refs/bus that are no valid gitbus data (peers' or damaged)
    refused: int = 0  # refs the last sync would not take in

    @cached_property
    def answers(self) -> Counter[str]:
        return Counter(m.reply_to for m in self.window if m.kind is Kind.ANSWER and m.reply_to)

    def open_questions(self, to: str | None = None) -> list[Message]:
        """Unanswered questions in the window (answers always sort after their question)."""
        done = self.answers
        return [
            m
            for m in self.window
            if m.kind is Kind.QUESTION and m.id not in done and (to is None or m.to == to)
        ]

    def took_over(self, claim_id: str) -> list[str]:
        """`owner path` of every expired claim the claim message `claim_id` took over."""
        for m in self.window:
            if m.id == claim_id:
                return [v for k, v in m.meta if k == "took-over"]
        return []


def in_order(claims: Iterable[Claim], now: int) -> tuple[Claim, ...]:
    """Live claims first, then the expired ones, each by path."""
    return tuple(sorted(claims, key=lambda c: (not c.live(now), c.path)))


def load(bus: Bus, query: Query) -> Snapshot:
    now = bus.clock.now_ms()
    window = bus.log(WINDOW)
    feed = (
        bus.log(WINDOW, kinds=query.kinds, sender=query.sender, path=query.path, grep=query.text)
        if query
        else window
    )
    state = ledger.current(bus.repo)
    requests: dict[str, RequestState | None] = {
        m.id: state_of(state, m.id) for m in (*window, *feed) if m.kind is Kind.REQUEST
    }
    return Snapshot(
        now,
        tuple(window),
        tuple(feed),
        in_order(bus.claims(include_expired=True), now),
        tuple(bus.agents()),
        requests,
        len(bus.repo.skipped),
        len(sync.last_refused(bus.repo)),
    )


def thread_of(bus: Bus, message: Message) -> tuple[Message, list[Message]]:
    """The message a thread starts from (the question an answer replies to) and its replies."""
    root = message
    if message.reply_to:
        with contextlib.suppress(NotFound):  # older than the history we hold: show it alone
            root = bus.find(message.reply_to)
    return root, bus.replies(root.id)


Stamp = tuple[tuple[str, int, int, int], ...]


def ref_stamp(common: Path) -> Stamp:
    """What changes whenever a bus ref moves, from `stat` alone: (file, inode, mtime, size) of each
    loose ref under refs/bus/, of packed-refs (pack-refs and gc replace it whole) and of reftable's
    table list."""
    files = [common / "packed-refs", common / "reftable" / "tables.list"]
    for folder, _dirs, names in os.walk(common / BUS_PREFIX):
        files += [Path(folder, n) for n in names if not n.endswith(".lock")]
    out = []
    for f in files:
        with contextlib.suppress(OSError):  # gone between the walk and the stat: the next poll sees it
            st = f.stat()
            out.append((str(f), st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


def plain_paths(paths: Iterable[str]) -> list[str]:
    """The paths a form may be prefilled with: an input field shows its value as it is, so a path
    with a control or format character in it is left for the operator to type."""
    return [p for p in paths if not has_forbidden_char(p)]


def split_paths(text: str) -> list[str]:
    return [p for p in re.split(r"[\s,]+", text) if p]


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


# -- tables ---------------------------------------------------------------------------------------


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


# -- screens --------------------------------------------------------------------------------------

Submit = Callable[[Bus, Mapping[str, str]], Message | None]


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    value: str = ""
    placeholder: str = ""
    suggest: tuple[str, ...] = ()


class ComposeScreen(ModalScreen[Message | None]):
    """A small form: enter moves to the next field and posts from the last; errors keep it open."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("ctrl+s", "post", "Post"),
    ]

    def __init__(self, title: str, fields: list[Field], submit: Submit, open_bus: Callable[[], Bus]) -> None:
        super().__init__()
        self.title_text, self.fields, self.submit, self.open_bus = title, fields, submit, open_bus
        self.posting = False

    def compose(self) -> ComposeResult:
        with Vertical(id="form"):
            yield Label(self.title_text, id="form-title", markup=False)
            for f in self.fields:
                yield Label(f.label, markup=False)
                yield Input(
                    f.value,
                    placeholder=f.placeholder,
                    id=f"f-{f.name}",
                    compact=True,
                    suggester=SuggestFromList(f.suggest) if f.suggest else None,
                )
            yield Static("", id="form-error", markup=False)
            yield Label("enter: next / post   ctrl+s: post   esc: cancel", classes="hint")

    def values(self) -> dict[str, str]:
        return {f.name: self.query_one(f"#f-{f.name}", Input).value for f in self.fields}

    @on(Input.Submitted)
    async def next_or_post(self, event: Input.Submitted) -> None:
        event.stop()
        inputs = list(self.query(Input))
        if event.input is inputs[-1]:
            await self.action_post()
        else:
            inputs[inputs.index(event.input) + 1].focus()

    async def action_post(self) -> None:
        if self.posting:  # a second enter while the first post is on its way
            return
        self.posting, values = True, self.values()
        try:
            msg = await asyncio.to_thread(lambda: self.submit(self.open_bus(), values))
        except GitbusError as e:
            self.query_one("#form-error", Static).update(Text(for_keys(inert_block(str(e))), "bold red"))
            return
        finally:
            self.posting = False
        self.dismiss(msg)


class ThreadScreen(Screen[None]):
    """A message with its replies (`Bus.replies`): a question and its answers, a request and its take."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("a", "app.answer", "Answer"),
        Binding("t", "app.take", "Take"),
    ]

    def __init__(self, message: Message) -> None:
        super().__init__()
        self.root = message

    def compose(self) -> ComposeResult:
        yield Static(id="thread-title", markup=False)
        yield VerticalScroll(id="thread-body")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        self.run_worker(self._load(), group="thread", exclusive=True)

    async def _load(self) -> None:
        app = self.app
        assert isinstance(app, GitbusApp)
        try:
            root, replies = await asyncio.to_thread(lambda: thread_of(app.open_bus(), self.root))
        except GitbusError as e:
            app.notify(inert_block(str(e)), severity="error", markup=False)
            return
        if not self.is_attached:  # closed while the thread was read
            return
        self.root, snap = root, app.snap
        n = sum(r.kind is Kind.ANSWER for r in replies)
        title = f" thread {inert(root.id[:8])} · replies: {len(replies)}, answers: {n} · esc back"
        self.query_one("#thread-title", Static).update(Text.assemble(label(root.kind), title))
        body = self.query_one("#thread-body", VerticalScroll)
        await body.remove_children()
        await body.mount_all(
            Static(describe(m, snap), classes="post root" if m is root else "post", markup=False)
            for m in [root, *replies]
        )
        app.refresh_bindings()


# -- the app --------------------------------------------------------------------------------------


class GitbusApp(App[None]):
    TITLE = "gitbus"
    CSS = """
    #status { height: 1; background: $panel; padding: 0 1; }
    TabbedContent, ContentSwitcher, TabPane { height: 1fr; }
    TabPane { padding: 0; }
    #filter { display: none; }
    #filter.shown { display: block; }
    Table { height: 1fr; }
    .detail { height: 7; border-top: solid $primary-darken-2; padding: 0 1; }
    #thread-title { height: 1; background: $panel; padding: 0 1; }
    .post { margin: 0 0 1 0; padding: 0 1; border-left: thick $secondary; }
    .post.root { border-left: thick $warning; }
    ComposeScreen { align: center middle; }
    #form { width: 76; max-width: 100%; height: auto; border: round $primary; padding: 0 1; }
    #form-title { text-style: bold; }
    #form-error { height: auto; }
    .hint { color: $text-muted; }
    """
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
        stamp = ref_stamp(self.common)
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
                table.update_cell(c.path, "left", self.left(c))
            self.render_claim_detail()
        if self._ticks % 15 == 0:
            self.render_feed()
            self.render_agents()

    # -- rendering ------------------------------------------------------------------------------

    def render_status(self) -> None:
        s = self.snap
        asked, opened = len(s.open_questions()), sum(st is None for st in s.requests.values())
        live = sum(c.live(s.now) for c in s.claims)
        text = Text.assemble((self.agent, "bold"), f" @ {self.root.name} │ ")
        if self.query_filter:  # the filter itself shows in its box above the feed
            text.append(f"{len(s.feed)} match", "bold yellow")
        else:
            text.append(f"{len(s.feed)} msgs")
        text.append(f" │ {asked} open Qs │ {opened} open reqs │ {live} claims")
        if len(s.claims) > live:
            text.append(f", {len(s.claims) - live} expired", "red")
        if s.skipped:  # a peer's bad data, read past: worth knowing, and `gitbus status` says more
            text.append(f" │ {s.skipped} skipped", "bold red")
        if s.refused:
            text.append(f" │ {s.refused} refused at sync", "bold red")
        self.home.query_one("#status", Static).update(text)

    def render_feed(self) -> None:
        s, table = self.snap, self.home.query_one(FeedTable)
        table.fill(
            [
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
        )
        self.render_status()
        self.render_feed_detail()

    def render_feed_detail(self) -> None:
        m = self.selected_message()
        detail = self.home.query_one("#feed-detail", Static)
        if m is None:
            detail.update(Text("no messages" + (" match the filter" if self.query_filter else ""), "dim"))
        else:
            detail.update(describe(m, self.snap))

    def left(self, c: Claim) -> Text:
        now = self.snap.now
        return Text(countdown(c.expires_at - now)) if c.live(now) else Text("expired", "bold red")

    def render_claims(self) -> None:
        rows = []
        for c in self.snap.claims:
            took = [inert(t) for t in self.snap.took_over(c.id)]
            note = Text(f"took over {'; '.join(took)} ", "bold red") if took else Text()
            holder = Text(inert(c.owner), "bold" if c.owner == self.agent else "")
            rows.append((c.path, [Text(inert(c.path)), holder, self.left(c), note + Text(inert(c.reason))]))
        self.home.query_one(ClaimsTable).fill(rows)
        self.render_claim_detail()

    def render_claim_detail(self) -> None:
        c = self.selected_claim()
        if c is None:
            self.home.query_one("#claim-detail", Static).update(Text("no claims", "dim"))
            return
        text = Text(claim_fact(c, self.snap.now))
        took = [inert(t) for t in self.snap.took_over(c.id)]
        if took:
            text.append(f"\ntook over: {'; '.join(took)}", "bold red")
        text.append(f"\nclaimed {hhmm(c.claimed_at)} · r release · f force-release · enter: its feed", "dim")
        self.home.query_one("#claim-detail", Static).update(text)

    def render_agents(self) -> None:
        s = self.snap
        rows = []
        for a in s.agents:
            open_qs = len(s.open_questions(to=a.name))
            rows.append(
                (
                    a.name,
                    [
                        Text(
                            inert(a.name) + (" (you)" if a.name == self.agent else ""),
                            "bold" if open_qs else "",
                        ),
                        Text(span(s.now - a.last_active) if a.last_active else "-"),
                        Text(str(sum(c.owner == a.name and c.live(s.now) for c in s.claims))),
                        Text(str(open_qs), "bold yellow" if open_qs else "dim"),
                        Text(inert(a.last_summary)),
                    ],
                )
            )
        self.home.query_one(AgentsTable).fill(rows)
        self.render_agent_detail()

    def render_agent_detail(self) -> None:
        s, name = self.snap, self.home.query_one(AgentsTable).selected()
        text = Text()
        if name:
            mine = [c for c in s.claims if c.owner == name and c.live(s.now)]
            text.append(f"{inert(name)} holds: " + (", ".join(inert(c.path) for c in mine) or "nothing"))
            for q in s.open_questions(to=name):
                said = f"{inert(q.sender)}, {span(s.now - q.time)} ago: {inert(q.summary())}"
                text.append(f"\n? from {said}", "yellow")
        self.home.query_one("#agent-detail", Static).update(text)

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
            self.push_screen(ThreadScreen(m))

    def compose_form(self, title: str, fields: list[Field], submit: Submit) -> None:
        def posted(msg: Message | None) -> None:
            if msg is not None:
                said = f"{msg.kind.value} {msg.id[:8]}: {inert(msg.summary())}"
                self.notify(said, title="posted", markup=False)
            self.reload()

        self.push_screen(ComposeScreen(title, fields, submit, self.open_bus), posted)

    def agent_names(self) -> tuple[str, ...]:
        return ("all", *(a.name for a in self.snap.agents if a.name != self.agent))

    def action_discover(self) -> None:
        self.compose_form(
            f"Discovery, as {self.agent}",
            [
                Field("text", "What did you find?"),
                Field("paths", "Paths (optional)", placeholder="src/a.py docs/"),
            ],
            lambda bus, v: bus.discover(v["text"], split_paths(v["paths"])),
        )

    def action_ask(self) -> None:
        to = self.home.query_one(AgentsTable).selected() if self.pane() == "agents" else None
        self.compose_form(
            f"Question, as {self.agent}",
            [
                Field("to", "To (an agent, or all)", to or "all", suggest=self.agent_names()),
                Field("text", "Question"),
                Field("paths", "Paths (optional)"),
            ],
            lambda bus, v: bus.ask(v["text"], v["to"].strip() or None, split_paths(v["paths"])),
        )

    def action_answer(self) -> None:
        q = self.selected_message()
        if q is None or q.kind is not Kind.QUESTION:
            return
        self.compose_form(
            f"Answer {inert(q.sender)}: {inert(q.summary())}",
            [Field("text", "Answer")],
            lambda bus, v: bus.answer(q.id, v["text"]),
        )

    def action_claim(self) -> None:
        m = self.selected_message() if self.pane() == "feed" else None
        self.compose_form(
            f"Claim, as {self.agent}",
            [
                Field("paths", "Paths (dir/ for a directory)", " ".join(plain_paths(m.paths)) if m else ""),
                Field("ttl", "Lease", placeholder="30m (default), 10m, 1h30m"),
                Field("reason", "Reason"),
            ],
            lambda bus, v: bus.claim(
                split_paths(v["paths"]), parse_duration(v["ttl"]) if v["ttl"].strip() else None, v["reason"]
            ),
        )

    def action_release(self) -> None:
        c = self.selected_claim()
        self.compose_form(
            f"Release, as {self.agent}",
            [
                Field("paths", "Paths", " ".join(plain_paths((c.path,))) if c else ""),
                Field("reason", "Reason (optional)"),
            ],
            lambda bus, v: bus.release(split_paths(v["paths"]), reason=v["reason"]),
        )

    def action_force_release(self) -> None:
        c = self.selected_claim()
        held = f" held by {inert(c.owner)}" if c else ""
        self.compose_form(
            f"Force-release{held}: recorded, and the holder is told",
            [
                Field("paths", "Paths", " ".join(plain_paths((c.path,))) if c else ""),
                Field("reason", "Reason (required)"),
            ],
            lambda bus, v: bus.release(split_paths(v["paths"]), force=True, reason=v["reason"]),
        )

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


def run(path: str | Path = ".", agent: str | None = None) -> None:
    """Run the app on the terminal until the operator quits."""
    GitbusApp(path, agent).run()
