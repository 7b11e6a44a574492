"""The agent's own reads of its inbox: `gitbus inbox` pages and the MCP tool's batches.

Oldest first while the unread fit in `INBOX_WINDOW`; past that, reading to the oldest would cost the
whole backlog, so a page is the newest and names where the next, older one goes on: a position in
the chains (a stored token), not an offset, so pages neither shift when one is marked read nor depend
on how far a walk went. Only what a page returns is marked seen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import islice
from typing import NamedTuple

from gitbus import chains, cursors
from gitbus.delivery import for_agent, select, select_newest
from gitbus.errors import Contended, GitbusError
from gitbus.gitfiles import Oid
from gitbus.inbox_marks import InboxMarks, Moved, Seen
from gitbus.inbox_walk import order
from gitbus.message import Message

INBOX_WINDOW = 1000  # messages `gitbus inbox` and the MCP inbox read back at most per page
PAGE_ROUNDS = 8  # a page read again this often when other reads of the agent kept marking meanwhile


class Page(NamedTuple):
    """A page of the inbox: its messages (oldest first) and how many more wait past it. `newest`:
    the unread went past the window read, so the page counts from the newest back and `more` is a
    lower bound (what the page's walk saw); `next` then names where the next, older page goes on
    (`before=`), for as long as the walk has not reached the agent's cursor."""

    messages: list[Message]
    more: int
    newest: bool = False
    next: str | None = None


class InboxPages(InboxMarks):
    """The agent's pages and batches of its unread messages (the tool reads `Inbox` is made of)."""

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
            except Moved:
                continue
        raise Contended(
            f"other reads of {self.agent}'s inbox kept marking messages meanwhile; nothing was marked. Retry."
        )

    def _read_page(
        self,
        read: Mapping[str, Oid],
        shown: frozenset[str],
        seen: Seen | None,
        limit: int | None,
        number: int,
        before: str | None,
    ) -> Page:
        """`read_page` from the cursor `read` and the ids `shown`; marks (when `seen`) only if the
        agent's reads are still `seen` when it does, else raises `Moved`."""
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

    def _page(self, token: str) -> cursors.Continuation:
        cont = cursors.load_page(self.repo, self.agent, token)
        if cont is None:
            raise GitbusError(f"no inbox page {token[:20]!r} is known here: start again with gitbus inbox")
        return cont

    def _newest(
        self,
        cont: cursors.Continuation,
        read: Mapping[str, Oid],
        shown: frozenset[str],
        seen: Seen | None,
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
