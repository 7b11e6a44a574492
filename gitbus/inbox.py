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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import NamedTuple

from gitbus import chains, cursors
from gitbus.delivery import Batch, for_agent, render, select, select_newest
from gitbus.git import Repository
from gitbus.gitfiles import Oid
from gitbus.ids import AgentName
from gitbus.message import Message

UNREAD_COUNT_MAX = 1000  # `status` counts unread messages exactly up to this many (it reads one more)
SESSION_BACKLOG = 20  # unread messages a new hook session is told; past that they wait in the inbox
# Messages for the agent one hook call reads back from the tips: a session further behind is told
# the newest, and the older ones wait in `gitbus inbox` (issue 16: a flood must not outlast the
# client's hook timeout, nor be decoded whole on every tool call).
HOOK_WINDOW = 200
WALK_MAX = 4  # a windowed walk reads at most this many commits per message it wants
INBOX_WINDOW = 1000  # messages `gitbus inbox` and the MCP inbox read back at most per page


class Page(NamedTuple):
    """A page of the inbox: its messages (oldest first) and how many more wait past it. `newest`:
    the unread went past the window read, so the page counts from the newest back (page 2 is older)
    and `more` is a lower bound."""

    messages: list[Message]
    more: int
    newest: bool = False


def capped(n: int) -> tuple[int, bool]:
    """A count taken up to `UNREAD_COUNT_MAX + 1`: (at most `UNREAD_COUNT_MAX`, whether it went past)."""
    return min(n, UNREAD_COUNT_MAX), n > UNREAD_COUNT_MAX


def count_text(n: int) -> str:
    """A count that went past `UNREAD_COUNT_MAX` reads `1000+`; exactly 1,000 reads `1000`."""
    shown, more = capped(n)
    return f"{shown}+" if more else str(shown)


class Told(NamedTuple):
    """What a session was told: the text, and the ids of the messages in it."""

    text: str
    shown: tuple[str, ...]


@dataclass(frozen=True)
class Inbox:
    """Agent `agent`'s reading position on the bus of `repo`, and its sessions'."""

    repo: Repository
    agent: AgentName

    def tips(self) -> dict[str, Oid]:
        return chains.all_tips(self.repo)

    # -- the agent ----------------------------------------------------------------------------------

    def unread(
        self, cursor: str | None = None, limit: int | None = None
    ) -> tuple[list[Message], dict[str, Oid]]:
        """Messages for this agent not yet seen by `cursor` (oldest first; with `limit`, only the
        newest that many), and the tips read.

        For the agent's own cursor, what its hook sessions were already shown does not count."""
        tips = self.tips()
        read = cursors.load(self.repo, cursor or self.agent)
        shown = set(cursors.load_shown(self.repo, self.agent)) if cursor is None else set()
        new = islice(
            (
                e.message
                for e in chains.history(self.repo, tips, read)
                if for_agent(e.message, self.agent) and e.message.id not in shown
            ),
            limit,
        )
        return list(new)[::-1], tips

    def session_origin(self, backlog: int = SESSION_BACKLOG) -> tuple[dict[str, Oid], int]:
        """Where a new hook session of this agent starts reading (chain tips), and how many messages
        for it became history just now (see below; else 0).

        At the agent's cursor, so the session is told, once, what the agent has not seen yet, and
        what it shows then moves that cursor along with it. With more than `backlog` unread: from
        now, and those wait in `gitbus inbox` (the session start says how many). An agent that has
        never read anything has the bus's past as history: its cursor starts at now too."""
        with cursors.agent_lock(self.repo, self.agent):
            read = cursors.load(self.repo, self.agent)
            if not read:
                earlier, tips = self.unread(limit=UNREAD_COUNT_MAX)
                cursors.save(self.repo, self.agent, tips)
                return dict(tips), len(earlier)
            waiting, tips = self.unread(limit=backlog + 1)
            return (dict(read) if len(waiting) <= backlog else dict(tips)), 0

    def page(self, mark_read: bool = False, limit: int | None = None) -> tuple[list[Message], int]:
        """The first page of `limit` unread messages (`read_page`) and how many more wait."""
        got = self.read_page(mark_read, limit)
        return got.messages, got.more

    def read_page(self, mark_read: bool = False, limit: int | None = None, number: int = 1) -> Page:
        """Page `number` of `limit` unread messages (all without `limit`) and how many more wait.

        Oldest first while the unread fit in `INBOX_WINDOW`; past that, reading to the oldest would
        cost the whole backlog, so pages count from the newest back (`Page.newest`), and the walk
        stops after the page. With `mark_read`, only what is returned is marked seen: all of it
        moves the cursor to the tips read; a page is remembered by id past the cursor (as a hook
        session's is), so the next page leaves it out."""
        tips = self.tips()
        read = cursors.load(self.repo, self.agent)
        shown = set(cursors.load_shown(self.repo, self.agent))
        want = None if limit is None else max(INBOX_WINDOW, number * limit)
        found, complete = self._walk(tips, read, lambda m: m.id not in shown, want)
        start = 0 if limit is None else (number - 1) * limit
        if complete:
            msgs = found[::-1]
            page = msgs[start:] if limit is None else msgs[start : start + limit]
        else:
            page = found[start : start + (limit or 0)][::-1]
        more = max(0, len(found) - start - len(page))
        if mark_read and complete and not start and not more:
            self._read_elsewhere(tips, [m.id for m in page], everything=True)
        elif mark_read and page:
            with cursors.agent_lock(self.repo, self.agent):
                known = cursors.load_shown(self.repo, self.agent)
                cursors.save_shown(self.repo, self.agent, known + [m.id for m in page if m.id not in known])
            self._read_elsewhere({}, [m.id for m in page])
        return Page(page, more, not complete)

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

    def _walk(
        self,
        tips: Mapping[str, Oid],
        stops: Mapping[str, Oid],
        keep: Callable[[Message], bool],
        want: int | None,
    ) -> tuple[list[Message], bool]:
        """Messages for this agent between `stops` and `tips` that `keep` takes, newest first: all
        of them, or the newest `want` and one more (the walk then stops there: the one more says
        that more wait); and whether that is all. A walk over messages that are not for the agent
        stops too, after `WALK_MAX` times `want` commits."""
        found: list[Message] = []
        for walked, e in enumerate(chains.history(self.repo, tips, stops), 1):
            if want is not None and (len(found) > want or walked > WALK_MAX * want):
                return found, False
            if for_agent(e.message, self.agent) and keep(e.message):
                found.append(e.message)
        return found, True

    def read_new(self, budget: int = 4000) -> tuple[list[Message], int]:
        """What this agent has not seen, oldest first, as much as fits in `budget` characters of
        facts, and how many more wait; marks seen only what is returned (`read_batch`)."""
        page = self.read_batch(budget)
        return page.messages, page.more

    def read_batch(self, budget: int = 4000) -> Page:
        """What this agent has not seen, as much as fits in `budget` characters of facts, and how
        many more wait; marks seen only what is returned (for the agent and its hook sessions).

        Oldest first while the unread fit in `INBOX_WINDOW` messages; past that, the newest that fit
        (`Page.newest`), remembered by id, and the next call gives the ones before them."""
        with cursors.agent_lock(self.repo, self.agent):  # two servers of one agent: each gets its own
            tips = self.tips()
            old = cursors.load(self.repo, self.agent)
            shown = frozenset(cursors.load_shown(self.repo, self.agent))
            entries, complete = self._window(tips, old, INBOX_WINDOW, shown)
            if not complete:
                batch = select_newest(
                    ((e.message, e.commit, e.ref) for e in entries),
                    tips,
                    self.agent,
                    budget,
                    skip=shown,
                )
                known = cursors.load_shown(self.repo, self.agent)
                cursors.save_shown(
                    self.repo, self.agent, known + [m.id for m in batch.shown if m.id not in shown]
                )
            else:
                batch = select(
                    ((e.message, e.commit, e.ref) for e in reversed(entries)),
                    old,
                    self.agent,
                    budget,
                    skip=shown,
                )
                self._advance({r: Oid(t) for r, t in batch.tips.items()})
                self._forget_shown(set(batch.passed))
        self._read_elsewhere({}, [m.id for m in batch.shown])
        # past the window, at least one more entry waits: the caller asks again (it may hold nothing for us)
        return Page(batch.shown, max(batch.older, 1) if batch.flood else batch.waiting, batch.flood)

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

    def _read_elsewhere(self, tips: Mapping[str, Oid], ids: list[str], everything: bool = False) -> None:
        """The model read `ids` through a tool (`gitbus inbox`, MCP), up to `tips` (all that was new,
        with `everything`): the agent's cursor moves there, and each hook session is told to skip
        those ids, and only those: a session still gets what the agent saw through another session."""
        with cursors.agent_lock(self.repo, self.agent):
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

    def _advance(self, tips: Mapping[str, Oid]) -> None:
        """Move this agent's cursor up to `tips`, never backwards."""
        out = dict(cursors.load(self.repo, self.agent))
        changed = False
        for ref, tip in tips.items():
            if ref not in out or (out[ref] != tip and self.repo.is_ancestor(Oid(out[ref]), tip)):
                out[ref], changed = tip, True
        if changed:
            cursors.save(self.repo, self.agent, out)

    # -- its sessions (the caller holds the session's lock) -----------------------------------------

    def start(self, session: str, cursor: cursors.SessionCursor | None) -> tuple[cursors.SessionCursor, int]:
        """Start (or restart) `session` at `session_origin`, keeping what it was reminded of and
        told to skip; returns its saved cursor and how many messages became history just now."""
        origin, earlier = self.session_origin()
        base = cursor or cursors.SessionCursor({})
        return self._save(session, base._replace(tips=dict(origin))), earlier

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
