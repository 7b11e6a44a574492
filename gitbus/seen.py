"""What an agent has seen: its read cursor, and the ids its hook sessions showed beyond it.

`gitbus inbox` and the MCP `inbox` read from the agent's cursor; each Claude Code session reads from
its own (`cursors.SessionCursor`) and, when it shows something, moves the agent's cursor along with
it (`mark_shown`). A session starts at the agent's cursor (`session_origin`), so the two stay level
and nothing is told twice one way after the other; only past a long backlog do they part, and then
the ids a session showed are remembered until the cursor passes them. A tool read tells each session
to skip exactly what it returned. Every change happens under the agent's lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import islice
from typing import TYPE_CHECKING

from gitbus import chains, cursors
from gitbus.delivery import for_agent, select
from gitbus.gitfiles import Oid
from gitbus.message import Message

if TYPE_CHECKING:
    from gitbus.bus import Bus

UNREAD_COUNT_MAX = 1000  # `status` counts unread messages up to this many


def count_text(n: int) -> str:
    """A count that stopped at `UNREAD_COUNT_MAX` reads `1000+`, not `1000`."""
    return f"{n}+" if n >= UNREAD_COUNT_MAX else str(n)


SESSION_BACKLOG = 20  # unread messages a new hook session is told; past that they wait in the inbox


def unread(
    bus: Bus, cursor: str | None = None, limit: int | None = None
) -> tuple[list[Message], dict[str, Oid]]:
    """Messages for this agent not yet seen by `cursor` (oldest first; with `limit`, only the
    newest that many), and the tips read.

    For the agent's own cursor, what its hook sessions were already shown does not count."""
    tips = bus.tips()
    read = cursors.load(bus.repo, cursor or bus.agent)
    shown = set(cursors.load_shown(bus.repo, bus.agent)) if cursor is None else set()
    new = islice(
        (
            e.message
            for e in chains.history(bus.repo, tips, read)
            if for_agent(e.message, bus.agent) and e.message.id not in shown
        ),
        limit,
    )
    return list(new)[::-1], tips


def session_origin(bus: Bus, backlog: int = SESSION_BACKLOG) -> tuple[dict[str, Oid], int]:
    """Where a new hook session of this agent starts reading (chain tips), and how many messages
    for it became history just now (see below; else 0).

    At the agent's cursor, so the session is told, once, what the agent has not seen yet, and
    what it shows then moves that cursor along with it. With more than `backlog` unread: from
    now, and those wait in `gitbus inbox` (the session start says how many). An agent that has
    never read anything has the bus's past as history: its cursor starts at now too."""
    with cursors.agent_lock(bus.repo, bus.agent):
        read = cursors.load(bus.repo, bus.agent)
        if not read:
            earlier, tips = unread(bus, limit=UNREAD_COUNT_MAX)
            cursors.save(bus.repo, bus.agent, tips)
            return dict(tips), len(earlier)
        waiting, tips = unread(bus, limit=backlog + 1)
        return (dict(read) if len(waiting) <= backlog else dict(tips)), 0


def inbox(bus: Bus, mark_read: bool = False) -> list[Message]:
    return inbox_page(bus, mark_read)[0]


def inbox_page(bus: Bus, mark_read: bool = False, limit: int | None = None) -> tuple[list[Message], int]:
    """The oldest `limit` unread messages (all without it) and how many more wait behind them.

    With `mark_read`, only what is returned is marked seen: all of it moves the cursor to the tips
    read; a page is remembered by id past the cursor (as a hook session's is), so the next page
    starts after it."""
    msgs, tips = unread(bus)
    page, more = (msgs, 0) if limit is None else (msgs[:limit], max(0, len(msgs) - limit))
    if mark_read and not more:
        _read_elsewhere(bus, tips, [m.id for m in page], everything=True)
    elif mark_read:
        with cursors.agent_lock(bus.repo, bus.agent):
            known = cursors.load_shown(bus.repo, bus.agent)
            cursors.save_shown(bus.repo, bus.agent, known + [m.id for m in page if m.id not in known])
        _read_elsewhere(bus, {}, [m.id for m in page])
    return page, more


def read_new(bus: Bus, budget: int = 4000) -> tuple[list[Message], int]:
    """What this agent has not seen, oldest first, as much as fits in `budget` characters of
    facts, and how many more wait; marks seen only what is returned (for the agent and its
    hook sessions)."""

    with cursors.agent_lock(bus.repo, bus.agent):  # two servers of one agent: each gets its own
        tips = bus.tips()
        old = cursors.load(bus.repo, bus.agent)
        entries = list(chains.history(bus.repo, tips, old))
        shown = frozenset(cursors.load_shown(bus.repo, bus.agent))
        batch = select(
            ((e.message, e.commit, e.ref) for e in reversed(entries)), old, bus.agent, budget, skip=shown
        )
        _advance(bus, {r: Oid(t) for r, t in batch.tips.items()})
        _forget_shown(bus, set(batch.passed))
    _read_elsewhere(bus, {}, [m.id for m in batch.shown])
    return batch.shown, batch.waiting


def _read_elsewhere(bus: Bus, tips: Mapping[str, Oid], ids: list[str], everything: bool = False) -> None:
    """The model read `ids` through a tool (`gitbus inbox`, MCP), up to `tips` (all that was new,
    with `everything`): the agent's cursor moves there, and each hook session is told to skip
    those ids, and only those: a session still gets what the agent saw through another session."""
    with cursors.agent_lock(bus.repo, bus.agent):
        _advance(bus, tips)
        if everything:
            cursors.save_shown(bus.repo, bus.agent, [])  # all behind the cursor now
    if not ids:
        return
    common = bus.repo.common_dir
    for key in cursors.sessions_of(common, bus.agent):
        with cursors.session_lock(common, bus.agent, key):
            current = cursors.load_session(common, bus.agent, key)
            if current is not None:
                skip = current.skip + tuple(i for i in ids if i not in current.skip)
                cursors.save_session(common, bus.agent, key, current._replace(skip=skip))


def mark_shown(
    bus: Bus, shown: Mapping[str, str], before: Mapping[str, str], after: Mapping[str, str]
) -> None:
    """A hook session showed `shown` (message id -> chain ref), the new messages between its
    cursor tips `before` and `after`: they count as seen by the agent, so `gitbus inbox` and
    MCP do not repeat them.

    The agent's cursor moves to `after` only on chains where it was already at or past `before`
    (sessions start at the agent's cursor, so that is the rule); elsewhere it stays behind what
    the agent has not seen yet (say, a long backlog from before the session started), and the
    ids shown on those chains are remembered instead."""
    with cursors.agent_lock(bus.repo, bus.agent):
        cursor = cursors.load(bus.repo, bus.agent)
        moves: dict[str, Oid] = {}
        for ref, tip in after.items():
            was, have = before.get(ref), cursor.get(ref)
            level = have == was or (
                was is not None and have is not None and bus.repo.is_ancestor(Oid(was), Oid(have))
            )
            if level:
                moves[ref] = Oid(tip)
        _advance(bus, moves)
        behind = [i for i, ref in shown.items() if ref not in moves]
        if behind:
            known = cursors.load_shown(bus.repo, bus.agent)
            cursors.save_shown(bus.repo, bus.agent, known + [i for i in behind if i not in known])


def _forget_shown(bus: Bus, passed: set[str]) -> None:
    """Drop remembered shown ids the agent's cursor has now moved over (caller holds the lock)."""
    known = cursors.load_shown(bus.repo, bus.agent)
    kept = [i for i in known if i not in passed]
    if kept != known:
        cursors.save_shown(bus.repo, bus.agent, kept)


def _advance(bus: Bus, tips: Mapping[str, Oid]) -> None:
    """Move this agent's cursor up to `tips`, never backwards."""
    out = dict(cursors.load(bus.repo, bus.agent))
    changed = False
    for ref, tip in tips.items():
        if ref not in out or (out[ref] != tip and bus.repo.is_ancestor(Oid(out[ref]), tip)):
            out[ref], changed = tip, True
    if changed:
        cursors.save(bus.repo, bus.agent, out)
