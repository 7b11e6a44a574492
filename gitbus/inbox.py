"""Who has been told what: an agent's unread messages, and what each of its hook sessions was shown.

An agent reads through `gitbus inbox` and the MCP `inbox` tool from its own cursor; each hook session
of it reads from a session cursor (`cursors.SessionCursor`). The two stay level: a session starts at
the agent's cursor (`Inbox.session_origin`), and what a session shows moves the agent's cursor along
with it (`Inbox.mark_shown`), so nothing is told twice one way after the other. Only past a long
backlog do they part, and then the ids a session showed are remembered until the cursor passes them.
A tool read tells each session to skip exactly what it returned. Every change to the agent's cursor
happens under its lock, every change to a session's under the session's.

An `Inbox` needs the repository and the chain tips only, never a `Bus`: `delivery` picks and words
what is told, `cursors` stores where each reader is, and the faces (hooks, CLI, MCP) wrap the text.

This module holds the sessions' side; `Inbox` is built on the agent's (`inbox_walk`: how far a read
walks; `inbox_marks`: what the agent has seen; `inbox_pages`: its own reads, page by page).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

from gitbus import cursors, inbox_walk
from gitbus.delivery import Batch, render, select, select_newest
from gitbus.gitfiles import Oid
from gitbus.inbox_pages import InboxPages

SESSION_BACKLOG = 20  # unread messages a new hook session is told; past that they wait in the inbox
# Messages for the agent one hook call reads back from the tips: a session further behind is told
# the newest, and the older ones wait in `gitbus inbox` (issue 16: a flood must not outlast the
# client's hook timeout, nor be decoded whole on every tool call).
HOOK_WINDOW = 200


class Told(NamedTuple):
    """What a session was told: the text, and the ids of the messages in it."""

    text: str
    shown: tuple[str, ...]


class Inbox(InboxPages):
    """Agent `agent`'s reading position on the bus of `repo`, and its sessions'."""

    def session_origin(self, backlog: int = SESSION_BACKLOG, keep: bool = True) -> tuple[dict[str, Oid], int]:
        """Where a new hook session of this agent starts reading (chain tips), and how many messages
        for it became history just now (see below; else 0).

        At the agent's cursor, so the session is told, once, what the agent has not seen yet, and
        what it shows then moves that cursor along with it. With more than `backlog` unread: from
        now, and those wait in `gitbus inbox` (the session start says how many). An agent that has
        never read anything has the bus's past as history: its cursor starts at now too (without
        `keep`, not yet: `started` sets it once the session's start went out)."""
        with cursors.agent_lock(self.repo, self.agent):
            read = cursors.load(self.repo, self.agent)
            tips = self.tips()
            if not read:
                if keep:
                    cursors.save(self.repo, self.agent, tips)
                cap = inbox_walk.UNREAD_COUNT_MAX - 1  # read at call time: tests lower it there
                return dict(tips), len(self._scan(tips, {}, None, frozenset(), cap)[1])
            shown = frozenset(cursors.load_shown(self.repo, self.agent))
            _, waiting, complete = self._scan(tips, read, None, shown, backlog)
            # a walk cut short by others' traffic counts as a long backlog: from now, the rest in the inbox
            return (dict(read) if complete and len(waiting) <= backlog else dict(tips)), 0

    # -- its sessions (the caller holds the session's lock) -----------------------------------------

    def start(self, session: str, cursor: cursors.SessionCursor | None) -> tuple[cursors.SessionCursor, int]:
        """Where `session` starts (or restarts): at `session_origin`, keeping what it was reminded
        of and told to skip; returns that cursor and how many messages became history just now.
        Nothing is saved: the caller hands the cursor to `started` once the start went out, so a
        start that could not be written is made again at the next, the same.

        It skips what the agent's sessions were shown past its cursor (`resume` does the same): a
        session that started at that cursor would otherwise show them again."""
        origin, earlier = self.session_origin(keep=False)
        base = cursor or cursors.SessionCursor({})
        seen = cursors.load_shown(self.repo, self.agent)
        skip = base.skip + tuple(i for i in seen if i not in set(base.skip))
        return base._replace(tips=dict(origin), skip=skip), earlier

    def started(self, session: str, cursor: cursors.SessionCursor) -> cursors.SessionCursor:
        """Save `cursor` (from `start`) as `session`'s, its start having gone out; returns what was
        saved. An agent that has never read anything gets its read cursor there too, unless another
        reader gave it one meanwhile: the bus's past is history from then on."""
        with cursors.agent_lock(self.repo, self.agent):
            if not cursors.load(self.repo, self.agent):
                cursors.save(self.repo, self.agent, {r: Oid(t) for r, t in cursor.tips.items()})
        return self._save(session, cursor)

    def resume(self, session: str) -> cursors.SessionCursor:
        """A cursor for a session that has no readable one (hooks installed mid-session, both slots
        lost), as a new session would start: its agent's, so what the agent has not seen is still
        told once, and what its sessions were shown (the agent's remembered ids) is not told again."""
        origin, _ = self.session_origin()
        skip = tuple(cursors.load_shown(self.repo, self.agent))
        return self._save(session, cursors.SessionCursor(dict(origin), skip=skip))

    def new_batch(
        self, cursor: cursors.SessionCursor, tips: Mapping[str, str], only_direct: bool = False
    ) -> Batch:
        """What is new for the session at `cursor` up to `tips`, as much as fits a hook's text.

        The walk reads back from the tips up to `HOOK_WINDOW` messages for the agent (`_window`): a
        session further behind is told the newest that fit (`delivery.select_newest`), and the rest
        waits unread in the agent's inbox (`tell` leaves the agent's cursor behind it)."""
        skip = frozenset(cursor.skip)
        entries, complete = self._window(
            {r: Oid(t) for r, t in tips.items()},
            {r: Oid(t) for r, t in cursor.tips.items()},
            HOOK_WINDOW,
            skip,
            only_direct,
        )
        if not complete:
            return select_newest(
                ((e.message, e.commit, e.ref) for e in entries),
                tips,
                self.agent,
                only_direct=only_direct,
                skip=skip,
            )
        return select(
            ((e.message, e.commit, e.ref) for e in reversed(entries)),
            cursor.tips,
            self.agent,
            only_direct=only_direct,
            skip=skip,
        )

    def tell(
        self,
        session: str,
        cursor: cursors.SessionCursor,
        tips: Mapping[str, str],
        send: Callable[[str], bool] | None = None,
    ) -> tuple[Told, cursors.SessionCursor]:
        """Select what is new for the session up to `tips`, move its cursor over it, and count it as
        seen by the agent (the inbox and MCP won't repeat it); returns the text and the new cursor.

        With `send`, the text is handed to it first, and nothing counts as told unless it says the
        text went out (a waiter whose session has gone must not eat a message)."""
        before = cursor.tips
        batch = self.new_batch(cursor, tips)
        told = Told(render(batch, self.agent), tuple(m.id for m in batch.shown))
        if send is not None and not send(told.text):
            return Told("", ()), cursor
        # Nothing left waiting: the cursor is at `tips`, refs that hold no message gitbus reads included
        # (a peer's ref at a blob), or the fast path would never match the bus tips again.
        saved = self._save(
            session, cursor._replace(tips=dict(batch.tips if batch.waiting else {**batch.tips, **tips}))
        )
        if batch.flood:  # the agent's cursor stays behind what was left unread; what was shown is remembered
            self.mark_shown(batch.refs, before, {})
        elif batch.tips != before:
            self.mark_shown(batch.refs, before, batch.tips)
        return told, saved

    def _save(self, session: str, cursor: cursors.SessionCursor) -> cursors.SessionCursor:
        return cursors.save_session(self.repo.common_dir, self.agent, session, cursor)
