"""Finding the request a peer's `take` names, for the step rules sync holds a take to.

A take's message names the request's sender (`To`) and id (`Reply-To`). The request is looked for
on that sender's chain first, as this clone holds it and as the fetch being vouched for brought it
(a sync fetches the chains in the same fetch as the ledgers, so a request made before its take is
there): newest first, lazily, and each chain is walked at most once a vouch, however many takes name
it. A take whose sender's chain holds no such id is looked for on every chain (the search index, and
what the fetch brought beyond it), so a take cannot dodge the rules by naming the wrong sender.
Messages are held as their few fields the rules read (`step_rules.Made`), never their text.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING

from gitbus import searchindex
from gitbus.chains import Entry, history
from gitbus.errors import GitbusError
from gitbus.gitfiles import Oid
from gitbus.ids import AGENTS_PREFIX, MessageId, agent_name
from gitbus.message import carrier_order, decode
from gitbus.step_rules import Made

if TYPE_CHECKING:
    from gitbus.git import Repository


class RequestLookup:
    """`lookup(sender, id)`: the message with `id` as this clone and the fetched refs under `side`
    (e.g. `refs/gitbus/vouched/origin/bus/`) hold it, or None when no chain holds it."""

    def __init__(self, repo: Repository, side: str) -> None:
        self.repo, self.side = repo, side
        self._seen: dict[str, dict[MessageId, Made]] = {}  # per chain: the messages walked so far
        self._walks: dict[str, Iterator[Entry]] = {}
        self._anywhere: dict[MessageId, Made | None] = {}
        self._fetched: dict[MessageId, tuple[int, str, str, Made]] | None = None

    def __call__(self, sender: str | None, mid: MessageId) -> Made | None:
        """`mid` as found on `sender`'s chain, else its first carrier on any chain (with no
        `sender`: that first carrier alone, as readers take it)."""
        return (self._on_chain(sender, mid) if sender is not None else None) or self._on_any_chain(mid)

    def _tips(self, name: str) -> tuple[str, Oid | None, Oid | None]:
        ref = AGENTS_PREFIX + name
        return ref, self.repo.ref(ref), self.repo.ref(self.side + "agents/" + name)

    def _on_chain(self, sender: str, mid: MessageId) -> Made | None:
        try:
            ref, local, fetched = self._tips(agent_name(sender))
        except GitbusError:  # no agent's name: no chain to look on
            return None
        seen = self._seen.setdefault(ref, {})
        if mid in seen:
            return seen[mid]
        if ref not in self._walks:
            walks: list[Iterator[Entry]] = []
            if fetched is not None:
                walks.append(history(self.repo, {ref: fetched}))
            if local is not None and (fetched is None or not self.repo.is_ancestor(local, fetched)):
                walks.append(history(self.repo, {ref: local}, {ref: fetched} if fetched else None))
            self._walks[ref] = itertools.chain(*walks)
        for e in self._walks[ref]:  # newest first: a request is usually taken soon after it is made
            made = Made.of(e.message)
            seen.setdefault(made.id, made)  # an id its owner used twice: the newest, as found first
            if made.id == mid:
                return made
        return None

    def _on_any_chain(self, mid: MessageId) -> Made | None:
        """The first carrier of `mid` on any chain, as `Reading.find` takes it (`carrier_order`)."""
        if mid in self._anywhere:
            return self._anywhere[mid]
        found: list[tuple[int, str, str, Made]] = []
        for commit in searchindex.commits_of(self.repo, {mid}).get(mid, []):
            try:
                m = decode(self.repo.read_commit(commit).message)
            except GitbusError:
                continue
            found.append((*carrier_order(m, commit), Made.of(m)))
        fetched = self._fetched_beyond_local().get(mid)
        if fetched is not None:
            found.append(fetched)
        first = min(found, key=lambda f: f[:3])[3] if found else None
        self._anywhere[mid] = first
        return first

    def _fetched_beyond_local(self) -> dict[MessageId, tuple[int, str, str, Made]]:
        """The messages the fetched agent chains hold beyond this clone's (which the search index
        covers): walked once, costing what the fetch brought."""
        if self._fetched is None:
            self._fetched = {}
            prefix = self.side + "agents/"
            for tref, tip in sorted(self.repo.refs(prefix).items()):
                ref = AGENTS_PREFIX + tref[len(prefix) :]
                local = self.repo.ref(ref)
                if local is not None and (local == tip or self.repo.is_ancestor(tip, local)):
                    continue
                for e in history(self.repo, {ref: tip}, {ref: local} if local else None):
                    entry = (*carrier_order(e.message, e.commit), Made.of(e.message))
                    held = self._fetched.get(e.message.id)
                    if held is None or entry[:3] < held[:3]:
                        self._fetched[e.message.id] = entry
        return self._fetched
