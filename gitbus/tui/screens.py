"""Screens over the panes: the compose form that posts as the operator, the thread view, and the
forms each posting key opens (a title, its fields, and the one `Bus` call that posts them).

A form posts on a worker thread with a fresh `Bus`; an error keeps it open with the library's
sentence, reworded to name keys (`cells.for_keys`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.suggester import SuggestFromList
from textual.widgets import Footer, Input, Label, Static

from gitbus.bus import Bus
from gitbus.claims import Claim
from gitbus.clock import parse_duration
from gitbus.errors import GitbusError
from gitbus.inert import inert, inert_block
from gitbus.message import Kind, Message
from gitbus.tui.cells import describe, for_keys, label
from gitbus.tui.model import Snapshot, plain_paths, split_paths, thread_of

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

    def __init__(
        self, message: Message, open_bus: Callable[[], Bus], snapshot: Callable[[], Snapshot]
    ) -> None:
        super().__init__()
        self.root, self.open_bus, self.snapshot = message, open_bus, snapshot

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
        try:
            root, replies = await asyncio.to_thread(lambda: thread_of(self.open_bus(), self.root))
        except GitbusError as e:
            app.notify(inert_block(str(e)), severity="error", markup=False)
            return
        if not self.is_attached:  # closed while the thread was read
            return
        self.root, snap = root, self.snapshot()
        n = sum(r.kind is Kind.ANSWER for r in replies.messages)
        more = f" (the first {len(replies.messages)} shown)" if replies.left_out else ""
        total = replies.total
        title = f" thread {inert(root.id[:8])} · replies: {total}{more}, answers: {n} · esc back"
        self.query_one("#thread-title", Static).update(Text.assemble(label(root.kind), title))
        body = self.query_one("#thread-body", VerticalScroll)
        await body.remove_children()
        await body.mount_all(
            Static(describe(m, snap), classes="post root" if m is root else "post", markup=False)
            for m in [root, *replies.messages]
        )
        app.refresh_bindings()


# -- the forms ------------------------------------------------------------------------------------

Form = tuple[str, list[Field], Submit]


def discover_form(me: str) -> Form:
    return (
        f"Discovery, as {me}",
        [
            Field("text", "What did you find?"),
            Field("paths", "Paths (optional)", placeholder="src/a.py docs/"),
        ],
        lambda bus, v: bus.discover(v["text"], split_paths(v["paths"])),
    )


def ask_form(me: str, to: str | None, names: tuple[str, ...]) -> Form:
    return (
        f"Question, as {me}",
        [
            Field("to", "To (an agent, or all)", to or "all", suggest=names),
            Field("text", "Question"),
            Field("paths", "Paths (optional)"),
        ],
        lambda bus, v: bus.ask(v["text"], v["to"].strip() or None, split_paths(v["paths"])),
    )


def answer_form(q: Message) -> Form:
    return (
        f"Answer {inert(q.sender)}: {inert(q.summary())}",
        [Field("text", "Answer")],
        lambda bus, v: bus.answer(q.id, v["text"]),
    )


def claim_form(me: str, m: Message | None) -> Form:
    return (
        f"Claim, as {me}",
        [
            Field("paths", "Paths (dir/ for a directory)", " ".join(plain_paths(m.paths)) if m else ""),
            Field("ttl", "Lease", placeholder="30m (default), 10m, 1h30m"),
            Field("reason", "Reason"),
        ],
        lambda bus, v: bus.claim(
            split_paths(v["paths"]), parse_duration(v["ttl"]) if v["ttl"].strip() else None, v["reason"]
        ),
    )


def release_form(me: str, c: Claim | None) -> Form:
    return (
        f"Release, as {me}",
        [
            Field("paths", "Paths", " ".join(plain_paths((c.path,))) if c else ""),
            Field("reason", "Reason (optional)"),
        ],
        lambda bus, v: bus.release(split_paths(v["paths"]), reason=v["reason"]),
    )


def force_release_form(c: Claim | None) -> Form:
    held = f" held by {inert(c.owner)}" if c else ""
    return (
        f"Force-release{held}: recorded, and the holder is told",
        [
            Field("paths", "Paths", " ".join(plain_paths((c.path,))) if c else ""),
            Field("reason", "Reason (required)"),
        ],
        lambda bus, v: bus.release(split_paths(v["paths"]), force=True, reason=v["reason"]),
    )
