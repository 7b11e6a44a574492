"""Who has seen what: the agent's cursor, the ids remembered past it, and what its sessions skip.

What the model read moves the agent's cursor (never backwards), and what it read past the cursor
(a page of the newest, a session's newest in a flood) is remembered by id until the cursor passes
it; a read through a tool tells each hook session to skip exactly what it returned. Every change
happens under the agent's lock (a session's under the session's), and a mark made for a page checks
first that no other read marked meanwhile (`Moved`), so two reads never list one message twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gitbus import cursors
from gitbus.gitfiles import Oid
from gitbus.inbox_walk import InboxWalk

# What a page was read from: the agent's cursor and the ids it remembered (see `Inbox.read_page`).
Seen = tuple[Mapping[str, Oid], list[str]]


class Moved(Exception):
    """Another read of the agent marked messages between this page's read and its mark
    (`read_page` reads the page again)."""


class InboxMarks(InboxWalk):
    """The agent's marks of what it saw, kept under its lock (the writes `Inbox` is made of)."""

    def _still(self, expect: Seen | None) -> None:
        """Raise `Moved` unless the agent's reads are `expect` (the caller holds the agent's lock)."""
        if expect is None:
            return
        if (cursors.load(self.repo, self.agent), cursors.load_shown(self.repo, self.agent)) != expect:
            raise Moved

    def _remember(self, ids: Sequence[str], expect: Seen | None = None) -> None:
        """The model read `ids` past the agent's cursor: remembered by id, and sessions skip them."""
        with cursors.agent_lock(self.repo, self.agent):
            self._still(expect)
            known = cursors.load_shown(self.repo, self.agent)
            cursors.save_shown(self.repo, self.agent, known + [i for i in ids if i not in known])
        self._read_elsewhere({}, ids)

    def mark_shown(
        self, shown: Mapping[str, str], before: Mapping[str, str], after: Mapping[str, str]
    ) -> None:
        """A hook session showed `shown` (message id -> chain ref), the new messages between its
        cursor tips `before` and `after`: they count as seen by the agent, so `gitbus inbox` and
        MCP do not repeat them.

        The agent's cursor moves to `after` only on chains where it was already at or past `before`
        (sessions start at the agent's cursor, so that is the rule); elsewhere it stays behind what
        the agent has not seen yet (say, a long backlog from before the session started), and the
        ids shown on those chains are remembered instead."""
        with cursors.agent_lock(self.repo, self.agent):
            cursor = cursors.load(self.repo, self.agent)
            moves: dict[str, Oid] = {}
            for ref, tip in after.items():
                was, have = before.get(ref), cursor.get(ref)
                level = have == was or (
                    was is not None and have is not None and self.repo.is_ancestor(Oid(was), Oid(have))
                )
                if level:
                    moves[ref] = Oid(tip)
            self._advance(moves)
            behind = [i for i, ref in shown.items() if ref not in moves]
            if behind:
                known = cursors.load_shown(self.repo, self.agent)
                cursors.save_shown(self.repo, self.agent, known + [i for i in behind if i not in known])

    def _read_elsewhere(
        self,
        tips: Mapping[str, Oid],
        ids: Sequence[str],
        everything: bool = False,
        expect: Seen | None = None,
    ) -> None:
        """The model read `ids` through a tool (`gitbus inbox`, MCP), up to `tips` (all that was new,
        with `everything`): the agent's cursor moves there, and each hook session is told to skip
        those ids, and only those: a session still gets what the agent saw through another session."""
        with cursors.agent_lock(self.repo, self.agent):
            self._still(expect)
            self._advance(tips)
            if everything:
                cursors.save_shown(self.repo, self.agent, [])  # all behind the cursor now
        if not ids:
            return
        common = self.repo.common_dir
        for key in cursors.sessions_of(common, self.agent):
            with cursors.session_lock(common, self.agent, key):
                current = cursors.load_session(common, self.agent, key)
                if current is not None:
                    skip = current.skip + tuple(i for i in ids if i not in current.skip)
                    cursors.save_session(common, self.agent, key, current._replace(skip=skip))

    def _forget_shown(self, passed: set[str]) -> None:
        """Drop remembered shown ids the agent's cursor has now moved over (caller holds the lock)."""
        known = cursors.load_shown(self.repo, self.agent)
        kept = [i for i in known if i not in passed]
        if kept != known:
            cursors.save_shown(self.repo, self.agent, kept)

    def _advance(self, tips: Mapping[str, Oid], below: Mapping[str, str] | None = None) -> None:
        """Move this agent's cursor up to `tips`, never backwards. Where the cursor is still at its
        value in `below`, known to be behind `tips` there, it moves without asking git (an ancestry
        check can cost a long chain's whole history)."""
        out = dict(cursors.load(self.repo, self.agent))
        changed = False
        for ref, tip in tips.items():
            if ref in out and out[ref] == tip:
                continue
            behind = ref not in out or (below or {}).get(ref) == out[ref]
            if behind or self.repo.is_ancestor(Oid(out[ref]), tip):
                out[ref], changed = tip, True
        if changed:
            cursors.save(self.repo, self.agent, out)
