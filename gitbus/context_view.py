"""The view every context file is drawn from: the recent bus, read once per update for all worktrees.

A watcher rewrites the context file of every worktree at each update, and with 64 worktrees what they
all show alike (a peer's words made inert, a claim's fact, the paths' keys, which messages touch a
path) was most of an update's time. A `View` holds one read of the recent bus (a `Board`) and makes
each of those once, on first use, for every file drawn from it: it trades memory held for one update
for work done once per worktree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property

from gitbus import paths as P
from gitbus.board import Board
from gitbus.board import read as read_board
from gitbus.claims import Claim
from gitbus.git import Repository
from gitbus.gitfiles import Oid
from gitbus.message import Kind, Message

WINDOW = 500  # recent messages read per update


@dataclass(frozen=True)
class View:
    """The part of the bus every context file is rendered from (a `Board`, as lists)."""

    now: int
    claims: list[Claim]
    recent: list[Message]  # newest first
    open_requests: list[Message]
    source: Board | None = None  # the read it was made from

    @cached_property
    def board(self) -> Board:
        return self.source or Board(self.now, tuple(self.recent), tuple(self.claims))

    @cached_property
    def _made(self) -> dict[object, str]:
        return {}

    def once(self, key: object, make: Callable[[], str]) -> str:
        """`make()`, made once per view: what every worktree's file shows alike (a peer's words,
        names and paths made inert, a claim's fact) is made once per update, not once per worktree
        (at 64 worktrees that was most of an update)."""
        made = self._made
        if key not in made:
            made[key] = make()
        return made[key]

    # What every file filters for its own agent, sorted out of `recent` once per view, not once per
    # worktree: at 64 worktrees four passes over 500 messages each were a fifth of an update.
    @cached_property
    def open_questions(self) -> list[Message]:
        return self.board.open_questions()

    @cached_property
    def asked(self) -> dict[str, set[str]]:
        """Each agent's questions in the window, by id."""
        out: dict[str, set[str]] = {}
        for m in self.recent:
            if m.kind is Kind.QUESTION:
                out.setdefault(m.sender, set()).add(m.id)
        return out

    @cached_property
    def answer_messages(self) -> list[Message]:
        return [m for m in self.recent if m.kind is Kind.ANSWER]

    @cached_property
    def discoveries(self) -> list[tuple[int, Message]]:
        """The discoveries in the window, with their indices into `recent`."""
        return [(i, m) for i, m in enumerate(self.recent) if m.kind is Kind.DISCOVERY]

    @cached_property
    def _keys(self) -> dict[tuple[str, bool], tuple[str, ...]]:
        return {}

    def key(self, path: str, ignorecase: bool) -> tuple[str, ...]:
        """`paths.key(path, ignorecase)`, made once per view (every file ranks the same claims)."""
        got = self._keys.get((path, ignorecase))
        if got is None:
            got = self._keys[(path, ignorecase)] = P.key(path, ignorecase)
        return got

    @cached_property
    def _paths(self) -> dict[bool, tuple[dict[tuple[str, ...], set[int]], dict[tuple[str, ...], set[int]]]]:
        return {}

    def touching(self, near: list[str], ignorecase: bool) -> set[int]:
        """The indices into `recent` of the messages naming a path that overlaps one of `near`
        (`paths.overlaps`), found through an index of every recent message's paths made once per
        view, so ranking costs each worktree a few lookups, not a comparison per message."""
        if ignorecase not in self._paths:
            below: dict[tuple[str, ...], set[int]] = {}  # every prefix of a path -> its messages
            exact: dict[tuple[str, ...], set[int]] = {}  # every whole path -> its messages
            for i, m in enumerate(self.recent):
                for p in m.paths:
                    k = P.key(p, ignorecase)
                    exact.setdefault(k, set()).add(i)
                    for n in range(1, len(k) + 1):
                        below.setdefault(k[:n], set()).add(i)
            self._paths[ignorecase] = (below, exact)
        below, exact = self._paths[ignorecase]
        out: set[int] = set()
        for q in near:
            k = P.key(q, ignorecase)
            out |= below.get(k, set())  # paths at or below q
            for n in range(1, len(k)):
                out |= exact.get(k[:n], set())  # paths above q
        return out


def read_view(repo: Repository, now: int, tips: Mapping[str, Oid] | None = None) -> View:
    """The recent bus up to `tips` (default: as it is now) and the claims as they are now."""
    b = read_board(repo, now, WINDOW, tips)
    return View(now, list(b.claims), list(b.recent), [r.message for r in b.open_requests()], b)
