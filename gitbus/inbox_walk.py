"""The unread window: how far a read of an agent's inbox walks the chains, and how its count reads.

A walk goes from the chain tips back to a reader's cursor, newest first, and stops once it found
what it wants or read `WALK_MAX` commits for each message it wants: in a crowd's traffic a reader
is told the newest and a count that stopped short says "at least" (issue 16), rather than the whole
backlog being walked, or decoded, on every call. The base of `gitbus.inbox.Inbox`: it holds the
repository and the agent, and reads; it writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gitbus import chains, cursors
from gitbus.delivery import for_agent
from gitbus.git import Repository
from gitbus.gitfiles import Oid
from gitbus.ids import AgentName
from gitbus.message import Message

UNREAD_COUNT_MAX = 1000  # `status` counts unread messages exactly up to this many (it reads one more)
WALK_MAX = 4  # a windowed walk reads at most this many commits per message it wants


def order(m: Message) -> tuple[int, int]:
    """A message's place in `chains.history`'s newest-first order: larger is newer."""
    try:
        return (m.time, int(m.id, 16))
    except ValueError:
        return (m.time, 0)


def capped(n: int, partial: bool = False) -> tuple[int, bool]:
    """A count taken up to `UNREAD_COUNT_MAX + 1`: (at most `UNREAD_COUNT_MAX`, whether it went past
    or its walk stopped short, `partial`)."""
    return min(n, UNREAD_COUNT_MAX), n > UNREAD_COUNT_MAX or partial


def count_text(n: int, partial: bool = False) -> str:
    """A count that went past `UNREAD_COUNT_MAX` reads `1000+`; exactly 1,000 reads `1000`; one whose
    walk stopped short (`partial`) reads `n+` (at least that many)."""
    shown, more = capped(n, partial)
    return f"{shown}+" if more else str(shown)


@dataclass(frozen=True)
class InboxWalk:
    """Agent `agent`'s bounded walks of the bus of `repo` (the reads `Inbox` is made of)."""

    repo: Repository
    agent: AgentName

    def tips(self) -> dict[str, Oid]:
        return chains.all_tips(self.repo)

    def count_unread(self, limit: int | None = None) -> tuple[int, bool]:
        """How many messages for this agent are unread, counted up to `limit` (`UNREAD_COUNT_MAX` + 1:
        one more says "more than"), and whether the count is a lower bound: the walk reads at most
        `WALK_MAX` commits per message counted, so a crowd's traffic is not walked whole (issue 16)."""
        want = UNREAD_COUNT_MAX + 1 if limit is None else limit
        shown = frozenset(cursors.load_shown(self.repo, self.agent))
        _, found, complete = self._scan(
            self.tips(), cursors.load(self.repo, self.agent), None, shown, want - 1
        )
        return min(len(found), want), not complete and len(found) < want

    def _scan(
        self,
        tips: Mapping[str, Oid],
        stops: Mapping[str, Oid],
        boundary: tuple[int, int] | None,
        skip: frozenset[str],
        want: int | None,
    ) -> tuple[list[chains.Entry], list[int], bool]:
        """The entries between `stops` and `tips` older than `boundary` (newest first), the indexes
        among them of messages for this agent not in `skip`, and whether that is all of them. With
        `want`, the walk stops at the `want`+1-th such message (one more says more wait) or after
        `WALK_MAX` times `want` commits, whichever comes first: bounded in a crowd's traffic."""
        walked: list[chains.Entry] = []
        found: list[int] = []
        n = 0  # what this walk reads anew: a chain's position, re-read once, is not counted
        for e in chains.history(self.repo, tips, stops):
            # at or newer than `boundary`: passed by an earlier page (each chain's position is re-read
            # once), or arrived since on a chain it had not reached; walked over, never returned
            older = boundary is None or order(e.message) < boundary
            n += older
            if want is not None and (len(found) > want or n > WALK_MAX * max(want, 1) + len(skip)):
                return walked, found, False
            if older and for_agent(e.message, self.agent) and e.message.id not in skip:
                found.append(len(walked))
            walked.append(e)
        return walked, found, True

    def _window(
        self,
        tips: Mapping[str, Oid],
        stops: Mapping[str, Oid],
        window: int,
        skip: frozenset[str],
        only_direct: bool = False,
    ) -> tuple[list[chains.Entry], bool]:
        """The entries between `stops` and `tips`, newest first, up to the `window`-th message for
        this agent not in `skip` (those were read already), and whether that is all of them. Other
        messages (lease renewals, peers' direct messages) count too, at most `WALK_MAX` times the
        window beyond what `skip` holds, so the walk stops even in a flood of them."""
        entries: list[chains.Entry] = []
        fresh = 0
        for e in chains.history(self.repo, tips, stops):
            if fresh >= window or len(entries) >= WALK_MAX * window + len(skip):
                return entries, False
            entries.append(e)
            m = e.message
            fresh += for_agent(m, self.agent) and (not only_direct or m.to == self.agent) and m.id not in skip
        return entries, True
