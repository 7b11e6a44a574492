"""What the TUI shows, as plain values built off the UI thread: the feed filter, and a snapshot of
the bus drawn from the board (`gitbus.board`), so the TUI never reads the ledger itself.

Memory is bounded: the feed holds the newest WINDOW messages, so the first paint costs the same
with 10,000 messages as with 100. A filtered view asks `Bus.log` with the filters, which walks back
until WINDOW match: slow only for a rare filter on a long history, and then on a worker thread.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from gitbus.board import Board
from gitbus.bus import AgentInfo, Bus, Replies
from gitbus.claims import Claim
from gitbus.delegation import RequestState
from gitbus.errors import NotFound
from gitbus.ids import agent_name
from gitbus.inert import has_forbidden_char
from gitbus.message import Message, kind_named

WINDOW = 200  # messages the feed holds


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
    claims_unknown: str | None = None  # why the claims could not all be read (a damaged ledger ref)

    @cached_property
    def board(self) -> Board:
        """The board this snapshot shows (the answers, open questions and takeovers are its)."""
        return Board(self.now, self.window, self.claims, self.requests)

    @property
    def answers(self) -> Counter[str]:
        return self.board.answers

    def open_questions(self, to: str | None = None) -> list[Message]:
        """Unanswered questions in the window (answers always sort after their question)."""
        return self.board.open_questions(to)

    def took_over(self, claim_id: str) -> list[str]:
        """`owner path` of every expired claim the claim message `claim_id` took over."""
        return self.board.took_over(claim_id)


def in_order(claims: Iterable[Claim], now: int) -> tuple[Claim, ...]:
    """Live claims first, then the expired ones, each by path."""
    return tuple(sorted(claims, key=lambda c: (not c.live(now), c.path)))


def load(bus: Bus, query: Query) -> Snapshot:
    """The snapshot for `query`: the feed it asks for, the agents, and the board (the window, the
    claims and the state of every request in the window or the feed)."""
    feed = (
        tuple(bus.log(WINDOW, kinds=query.kinds, sender=query.sender, path=query.path, grep=query.text))
        if query
        else None
    )
    b = bus.board(WINDOW, also=feed or ())
    agents = tuple(bus.agents(board=b))  # a damaged ledger: the board says the claims are unknown
    return Snapshot(
        b.now,
        b.recent,
        b.recent if feed is None else feed,
        in_order(b.claims, b.now),
        agents,
        b.requests,
        b.skipped,
        len(b.refused),
        b.claims_unknown,
    )


def thread_of(bus: Bus, message: Message) -> tuple[Message, Replies]:
    """The message a thread starts from (the question an answer replies to) and its replies."""
    root = message
    if message.reply_to:
        with contextlib.suppress(NotFound):  # older than the history we hold: show it alone
            root = bus.find(message.reply_to)
    return root, bus.replies(root)


def plain_paths(paths: Iterable[str]) -> list[str]:
    """The paths a form may be prefilled with: an input field shows its value as it is, so a path
    with a control or format character in it is left for the operator to type."""
    return [p for p in paths if not has_forbidden_char(p)]


def split_paths(text: str) -> list[str]:
    return [p for p in re.split(r"[\s,]+", text) if p]
