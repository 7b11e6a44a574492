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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import NamedTuple

from gitbus import chains, cursors
from gitbus.delivery import Batch, for_agent, render, select, select_newest
from gitbus.errors import Contended, GitbusError
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
PAGE_ROUNDS = 8  # a page read again this often when other reads of the agent kept marking meanwhile

# What a page was read from: the agent's cursor and the ids it remembered (see `Inbox.read_page`).
_Seen = tuple[Mapping[str, Oid], list[str]]


class _Moved(Exception):
    """Another read of the agent marked messages between this page's read and its mark (private:
    `read_page` reads the page again)."""


class Page(NamedTuple):
    """A page of the inbox: its messages (oldest first) and how many more wait past it. `newest`:
    the unread went past the window read, so the page counts from the newest back and `more` is a
    lower bound (what the page's walk saw); `next` then names where the next, older page goes on
    (`before=`), for as long as the walk has not reached the agent's cursor."""

    messages: list[Message]
    more: int
    newest: bool = False
    next: str | None = None


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
                return dict(tips), len(self._scan(tips, {}, None, frozenset(), UNREAD_COUNT_MAX - 1)[1])
            shown = frozenset(cursors.load_shown(self.repo, self.agent))
            _, waiting, complete = self._scan(tips, read, None, shown, backlog)
            # a walk cut short by others' traffic counts as a long backlog: from now, the rest in the inbox
            return (dict(read) if complete and len(waiting) <= backlog else dict(tips)), 0

    def page(self, mark_read: bool = False, limit: int | None = None) -> tuple[list[Message], int]:
        """The first page of `limit` unread messages (`read_page`) and how many more wait."""
        got = self.read_page(mark_read, limit)
        return got.messages, got.more

    def read_page(
        self, mark_read: bool = False, limit: int | None = None, number: int = 1, before: str | None = None
    ) -> Page:
        """Page `number` of `limit` unread messages (all without `limit`) and how many more wait.

        Oldest first while the unread fit in `INBOX_WINDOW`; past that, reading to the oldest would
        cost the whole backlog, so the page is the newest (`Page.newest`), its walk stops after
        `WALK_MAX` commits per message it wants, and `Page.next` names where the next page goes on
        (pass it as `before`): a position in the chains, not an offset, so pages neither shift
        when one is marked read nor depend on how far a walk went. With `mark_read`, only what is
        returned is marked seen: all of it moves the cursor to the tips read; a page is remembered
        by id past the cursor (as a hook session's is); and once pages marked read reach the
        cursor, it moves to the tips their first page read.

        Marking is a compare-and-swap: under the agent's lock, the cursor and the ids remembered
        must still be what the page was read from, else another read marked meanwhile and the page
        is read again (two reads at once never list one message twice)."""
        for _ in range(PAGE_ROUNDS if mark_read else 1):
            read = cursors.load(self.repo, self.agent)
            known = cursors.load_shown(self.repo, self.agent)
            seen = (read, known) if mark_read else None
            try:
                return self._read_page(read, frozenset(known), seen, limit, number, before)
            except _Moved:
                continue
        raise Contended(
            f"other reads of {self.agent}'s inbox kept marking messages meanwhile; nothing was marked. Retry."
        )

    def _read_page(
        self,
        read: Mapping[str, Oid],
        shown: frozenset[str],
        seen: _Seen | None,
        limit: int | None,
        number: int,
        before: str | None,
    ) -> Page:
        """`read_page` from the cursor `read` and the ids `shown`; marks (when `seen`) only if the
        agent's reads are still `seen` when it does, else raises `_Moved`."""
        mark_read = seen is not None
        if before is not None:
            if number != 1:
                raise GitbusError("a page token is the page: give --before without --page")
            cont = self._page(before)
            return self._newest(cont, read, shown, seen, limit)
        tips = self.tips()
        want = None if limit is None else max(INBOX_WINDOW, number * limit)
        walked, found, complete = self._scan(tips, read, None, shown, want)
        if not complete:
            if number != 1:
                raise GitbusError(
                    f"more than {INBOX_WINDOW} unread: pages past the first go on from the token it "
                    "printed (gitbus inbox --before TOKEN)"
                )
            start = cursors.Continuation(dict(tips), dict(tips), None, True, dict(read))
            return self._newest(start, read, shown, seen, limit, (walked, found, complete))
        msgs = [walked[i].message for i in found][::-1]
        start_at = 0 if limit is None else (number - 1) * limit
        page = msgs[start_at:] if limit is None else msgs[start_at : start_at + limit]
        more = max(0, len(msgs) - start_at - len(page))
        if mark_read and not start_at and not more:
            self._read_elsewhere(tips, [m.id for m in page], everything=True, expect=seen)
        elif mark_read and page:
            self._remember([m.id for m in page], expect=seen)
        return Page(page, more)

    def _still(self, expect: _Seen | None) -> None:
        """Raise `_Moved` unless the agent's reads are `expect` (the caller holds the agent's lock)."""
        if expect is None:
            return
        if (cursors.load(self.repo, self.agent), cursors.load_shown(self.repo, self.agent)) != expect:
            raise _Moved

    def _page(self, token: str) -> cursors.Continuation:
        cont = cursors.load_page(self.repo, self.agent, token)
        if cont is None:
            raise GitbusError(f"no inbox page {token[:20]!r} is known here: start again with gitbus inbox")
        return cont

    def _remember(self, ids: Sequence[str], expect: _Seen | None = None) -> None:
        """The model read `ids` past the agent's cursor: remembered by id, and sessions skip them."""
        with cursors.agent_lock(self.repo, self.agent):
            self._still(expect)
            known = cursors.load_shown(self.repo, self.agent)
            cursors.save_shown(self.repo, self.agent, known + [i for i in ids if i not in known])
        self._read_elsewhere({}, ids)

    def _newest(
        self,
        cont: cursors.Continuation,
        read: Mapping[str, Oid],
        shown: frozenset[str],
        seen: _Seen | None,
        limit: int | None,
        scanned: tuple[list[chains.Entry], list[int], bool] | None = None,
    ) -> Page:
        """A page past the window: the newest `limit` unread from `cont` on, and the token of the
        next (None once the walk reached the cursor and nothing more waits)."""
        want = None if limit is None else max(INBOX_WINDOW, limit)
        frontier, stops = self._resume(cont, read)
        walked, found, complete = scanned or self._scan(frontier, stops, cont.boundary, shown, want)
        taken = found if limit is None else found[:limit]
        more = len(found) - len(taken)
        passed = walked[: taken[-1] + 1] if more else walked  # up to the last message returned
        page = [walked[i].message for i in taken]
        mark_read = seen is not None
        ids = [m.id for m in page] if mark_read else []
        with cursors.agent_lock(self.repo, self.agent):
            self._still(seen)
            token = self._settle(
                cont, passed, cont.clean and (mark_read or not page), ids, complete and not more
            )
        if ids:
            self._read_elsewhere({}, ids)
        return Page(page[::-1], more if token else 0, True, token)

    def _resume(
        self, cont: cursors.Continuation, read: Mapping[str, Oid]
    ) -> tuple[dict[str, Oid], dict[str, Oid]]:
        """Where a page from `cont` walks each chain from, and where it stops: at the cursor the
        first page read, or where the agent's cursor has moved since (a hook session, another page)
        when that is newer. A chain whose cursor moved to or past where the walk stood on it is read
        to the end already, and left out: walking it from there would never meet the cursor."""
        frontier: dict[str, Oid] = {}
        stops: dict[str, Oid] = {}
        for ref, at in cont.frontier.items():
            now, then = read.get(ref), cont.stops.get(ref)
            if now is not None and now != then:
                if now == at or self.repo.is_ancestor(Oid(at), now):
                    continue
                if then is None or self.repo.is_ancestor(Oid(then), now):
                    then = now
            frontier[ref] = Oid(at)
            if then is not None:
                stops[ref] = Oid(then)
        return frontier, stops

    def _settle(
        self,
        cont: cursors.Continuation,
        passed: list[chains.Entry],
        clean: bool,
        ids: Sequence[str],
        done: bool,
    ) -> str | None:
        """After a page past the window (the caller holds the agent's lock): `ids` were read past the
        cursor (remembered by id); once the walk is `done` and every page so far was read (`clean`),
        the cursor moves to the tips the first page read. Else the token of the next page, once
        `passed` (newest first) were walked over."""
        if ids:
            known = cursors.load_shown(self.repo, self.agent)
            cursors.save_shown(self.repo, self.agent, known + [i for i in ids if i not in known])
        if done:
            if clean:
                # the first page's tips hold the cursor it read: where that has not moved, no check
                self._advance({r: Oid(t) for r, t in cont.origin.items()}, below={**cont.stops})
            return None
        frontier = dict(cont.frontier)
        for e in passed:  # newest first: each chain ends at the oldest entry passed on it
            frontier[e.ref] = str(e.commit)
        boundary = cont.boundary
        if passed:  # history is newest first: the last one passed is the oldest
            boundary = min(boundary or order(passed[-1].message), order(passed[-1].message))
        return cursors.save_page(
            self.repo, self.agent, cont._replace(frontier=frontier, boundary=boundary, clean=clean)
        )

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

    def read_new(self, budget: int = 4000) -> tuple[list[Message], int]:
        """What this agent has not seen, oldest first, as much as fits in `budget` characters of
        facts, and how many more wait; marks seen only what is returned (`read_batch`)."""
        page = self.read_batch(budget)
        return page.messages, page.more

    def read_batch(self, budget: int = 4000, before: str | None = None) -> Page:
        """What this agent has not seen, as much as fits in `budget` characters of facts, and how
        many more wait; marks seen only what is returned (for the agent and its hook sessions).

        Oldest first while the unread fit in `INBOX_WINDOW` messages; past that, the newest that fit
        (`Page.newest`), remembered by id, and `Page.next` names where the next call goes on (pass
        it as `before`); each call walks at most `WALK_MAX` commits per message of the window."""
        with cursors.agent_lock(self.repo, self.agent):  # two servers of one agent: each gets its own
            old = cursors.load(self.repo, self.agent)
            shown = frozenset(cursors.load_shown(self.repo, self.agent))
            if before is None:
                tips = self.tips()
                cont = cursors.Continuation(dict(tips), dict(tips), None, True, dict(old))
            else:
                cont = self._page(before)
            start, stops = self._resume(cont, old)
            walked, found, complete = self._scan(start, stops, cont.boundary, shown, INBOX_WINDOW)
            if complete and before is None:
                batch = select(
                    ((e.message, e.commit, e.ref) for e in reversed(walked)),
                    old,
                    self.agent,
                    budget,
                    skip=shown,
                )
                self._advance({r: Oid(t) for r, t in batch.tips.items()})
                self._forget_shown(set(batch.passed))
                token, more = None, batch.waiting
            else:
                mine = [walked[i] for i in found[:INBOX_WINDOW]]  # the one more found says more wait
                entries = ((e.message, e.commit, e.ref) for e in mine)
                batch = select_newest(entries, cont.frontier, self.agent, budget)
                more = len(found) - len(batch.shown)
                # up to the oldest message returned, when the budget left older ones in the window
                passed = walked[: found[len(batch.shown) - 1] + 1] if more else walked
                ids = [m.id for m in batch.shown]
                token = self._settle(cont, passed, cont.clean, ids, complete and not more)
        self._read_elsewhere({}, [m.id for m in batch.shown])
        if complete and before is None:
            return Page(batch.shown, more)
        return Page(batch.shown, more if token else 0, True, token)

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
        expect: _Seen | None = None,
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
