"""Joins: the messages on an agent's own chain that say where it joined from, or the name it took.

An agent's chain opens with a join naming its worktree, and its worktree's agent taking another name
ends the old chain with a join that says so (`moved-to`); a retirement is a join too
(`gitbus.roster`). These are read back from the chain itself, never from a local file, so every clone
agrees on who is where: the trade-off is a walk of the chain (`joined_from`) or a read of its tip
(`moved_to`) where a local table would be a lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gitbus import chains, roster
from gitbus.clock import Clock
from gitbus.errors import GitbusError
from gitbus.git import Oid, Repository
from gitbus.ids import EVERYONE, AgentName, agent_ref, new_message_id
from gitbus.inert import inert
from gitbus.message import Kind, Message, decode


def joining(
    repo: Repository, clock: Clock, name: AgentName, moved_to: AgentName | None = None
) -> Callable[[int], Message]:
    """The `make` of a join message on `name`'s chain (`chains.start`/`append`): it joined from
    `repo`'s worktree, or, with `moved_to`, it goes by that name now. Stamped past every tip."""
    where = repo.root
    try:
        str(where).encode("utf-8")  # a name that is not UTF-8 cannot be written in a message
    except UnicodeEncodeError:
        raise GitbusError(
            f"This worktree's path {inert(str(where), 200)} is not UTF-8 text, and an agent's join "
            "records where it joined from; move the worktree to such a path (git worktree move)."
        ) from None
    mid, past = new_message_id(), chains.stamp(repo, clock.now_ms())
    if moved_to is None:
        text, meta = f"{name} joined from {where.name}", (("worktree", str(where)),)
    else:
        text, meta = f"{name} is now {moved_to} (worktree {where.name})", (("moved-to", moved_to),)

    def make(min_time: int) -> Message:
        t = max(clock.now_ms(), min_time, past)
        return Message(mid, Kind.JOIN, name, EVERYONE, text, t, meta=meta)

    return make


def moved_to(repo: Repository, name: AgentName) -> str | None:
    """The name `name`'s worktree took instead, if its chain ends by saying so ("" when its
    chain ends with a retirement)."""
    tip = repo.ref(agent_ref(name))
    if tip is None:
        return None
    try:
        last = decode(repo.read_commit(tip).message)
    except GitbusError:
        return None
    if last.kind is not Kind.JOIN:
        return None
    return "" if roster.is_retirement(last) else last.get("moved-to")


def joined_from(repo: Repository, name: AgentName) -> Path | None:
    """The worktree `name` last joined from, if it is on the bus (a walk of its chain)."""
    tip = repo.ref(agent_ref(name))
    if tip is None:
        return None
    for entry in chains.history(repo, {agent_ref(name): Oid(tip)}):
        where = entry.message.get("worktree")
        if entry.message.kind is Kind.JOIN and where:
            return Path(where)
    return None
