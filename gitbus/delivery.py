"""Delivery to a running session: what is new for it, said once, short, as facts from named peers.

Each Claude Code session has its own cursor (`cursors.SessionCursor`), so two sessions of one agent
each see every message once. The cursor advances only over what was actually put in front of the
model, or was never for it: when the text budget runs out, the rest waits for the next call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gitbus.clock import hhmm
from gitbus.ids import EVERYONE, AgentName
from gitbus.message import Kind, Message, quote

BUDGET_CHARS = 1500
_QUOTE_CHARS = 280


def for_agent(m: Message, me: AgentName) -> bool:
    """What a session is told: others' messages to it or to everyone, except lease renewals."""
    if m.to == me and m.get("dropped"):  # our own offline step lost at sync: the one self-note we show
        return True
    return m.sender != me and m.to in (EVERYONE, me) and m.kind is not Kind.RENEW


@dataclass(frozen=True)
class Batch:
    """The messages to show now, how many more wait, and the cursor tips once these are shown."""

    shown: list[Message]
    waiting: int
    tips: dict[str, str]
    refs: dict[str, str] = field(default_factory=dict)  # shown message id -> its chain ref
    passed: list[str] = field(default_factory=list)  # ids of every message the cursor moved over


def select(
    entries: Iterable[tuple[Message, str, str]],
    old_tips: Mapping[str, str],
    me: AgentName,
    budget: int = BUDGET_CHARS,
    only_direct: bool = False,
    skip: frozenset[str] = frozenset(),
) -> Batch:
    """Pick, oldest first, what fits in `budget`; `entries` are (message, commit, chain ref).

    The cursor moves over a prefix of the new messages only (everything before the first one that
    did not fit), so per chain it is always a prefix too: chains are strictly time-ordered. Ids in
    `skip` were already read another way: passed over like messages that are not for `me`.
    """
    tips = dict(old_tips)
    shown: list[Message] = []
    refs: dict[str, str] = {}
    passed: list[str] = []
    used, waiting, stopped = 0, 0, False
    for msg, commit, ref in entries:
        relevant = for_agent(msg, me) and (not only_direct or msg.to == me) and msg.id not in skip
        if stopped:
            waiting += relevant
            continue
        if relevant:
            cost = len(fact(msg, me)) + 1  # one fact is at most ~1 KB (quotes and path lists capped)
            if used + cost > budget and shown:
                stopped, waiting = True, 1
                continue
            shown.append(msg)
            refs[msg.id] = ref
            used += cost
        tips[ref] = commit
        passed.append(msg.id)
    return Batch(shown, waiting, tips, refs, passed)


def path_list(paths: tuple[str, ...], most: int = 5) -> str:
    """Up to `most` paths, then how many more (a message may name hundreds)."""
    shown = ", ".join(paths[:most])
    return shown + (f" and {len(paths) - most} more" if len(paths) > most else "")


def fact(m: Message, me: AgentName) -> str:
    """One line stating what a peer did; its words are quoted, never phrased as instructions."""
    who, short = m.sender, m.id[:8]
    on = f" on {path_list(m.paths)}" if m.paths else ""
    if m.kind is Kind.CLAIM:
        until = m.get("expires")
        when = f" until {hhmm(int(until))}" if until and until.isdigit() else ""
        why = f", reason {quote(m.text)}" if m.text else ""
        mine = [v.split(" ", 1)[1] for k, v in m.meta if k == "took-over" and v.split(" ", 1)[0] == me]
        lost = f"; your expired claim on {', '.join(mine)} is gone: {who} took it over" if mine else ""
        return f"- {who} claimed {path_list(m.paths)}{when}{why}{lost}."
    if m.kind is Kind.RELEASE:
        forced = [v for k, v in m.meta if k == "forced"]
        if forced:
            return f"- {who} force-released {'; '.join(forced)}, reason {quote(m.text)}."
        return f"- {who} released {path_list(m.paths)}."
    if m.kind is Kind.DISCOVERY:
        return f"- {who} reported{on}: {quote(m.text)} [{short}]"
    if m.kind is Kind.QUESTION:
        whom = "you" if m.to == me else "everyone" if m.to == EVERYONE else m.to
        return f'- {who} asked {whom}{on}: {quote(m.text)} [{short}; reply: gitbus answer {short} "…"]'
    if m.kind is Kind.ANSWER:
        return f"- {who} answered question {(m.reply_to or '')[:8]}: {quote(m.text)} [{short}]"
    if m.kind is Kind.REQUEST:
        whom = "you" if m.to == me else "anyone" if m.to == EVERYONE else m.to
        return f"- {who} requested work from {whom}{on}: {quote(m.text)} [{short}; gitbus take {short}]"
    if m.kind is Kind.TAKE:
        return f"- {who} took request {(m.reply_to or '')[:8]}."
    if m.kind is Kind.DONE:
        said = f": {quote(m.text)}" if m.text else "."
        return f"- {who} finished request {(m.reply_to or '')[:8]}{said}"
    if m.kind is Kind.JOIN:
        return f"- {who} joined the bus."
    return f"- {who}: {m.kind.value} {quote(m.text)}"


def render(batch: Batch, me: AgentName) -> str:
    """The text put in front of the model for `batch` (empty when nothing is shown)."""
    if not batch.shown:
        return ""
    lines = [f"gitbus, new for agent {me} (peers' words in quotes):"]
    lines += [fact(m, me) for m in batch.shown]
    if batch.waiting:
        lines.append(f"{batch.waiting} more will follow (or run: gitbus inbox).")
    return "\n".join(lines)
