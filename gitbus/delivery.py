"""Delivery to a running session: what is new for it, said once, short, as facts from named peers.

Each Claude Code session has its own cursor (`cursors.SessionCursor`), so two sessions of one agent
each see every message once. The cursor advances only over what was actually put in front of the
model, or was never for it: when the text budget runs out, the rest waits for the next call.
Every peer string in a fact is inert (`gitbus.inert`): quoted or escaped, and capped, so no peer can
start a line of its own in the model's context or outgrow the budget with one long path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from gitbus.claims import Claim
from gitbus.clock import hhmm
from gitbus.ids import EVERYONE, AgentName
from gitbus.inert import PATH_CHARS, QUOTE_CHARS, inert, quoted, quoted_path, within
from gitbus.message import Kind, Message

BUDGET_CHARS = 1500
PATH_LIST_CHARS = 500  # the paths of one fact


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
    # Set when the reader was further behind than the window read: `shown` are the newest that fit,
    # and at least `older` more for it (older ones) were left unread, for `gitbus inbox` to page.
    flood: bool = False
    older: int = 0


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


def select_newest(
    entries: Iterable[tuple[Message, str, str]],
    tips: Mapping[str, str],
    me: AgentName,
    budget: int = BUDGET_CHARS,
    only_direct: bool = False,
    skip: frozenset[str] = frozenset(),
) -> Batch:
    """For a reader further behind than the window read (`entries`, newest first): the newest
    messages for `me` that fit in `budget`, shown oldest first, and how many more for it the window
    held (older ones, left unread). The cursor tips become `tips`: the rest waits in the agent's
    inbox, which nothing here moves."""
    shown: list[Message] = []
    refs: dict[str, str] = {}
    used, older = 0, 0
    for msg, _commit, ref in entries:
        if not (for_agent(msg, me) and (not only_direct or msg.to == me) and msg.id not in skip):
            continue
        cost = len(fact(msg, me)) + 1
        if older or (used + cost > budget and shown):
            older += 1
            continue
        shown.append(msg)
        refs[msg.id] = ref
        used += cost
    return Batch(shown[::-1], 0, dict(tips), refs, flood=True, older=older)


def path_list(paths: Sequence[str], most: int = 5) -> str:
    """Up to `most` paths, each inert and capped, then how many more (a message may name hundreds)."""
    return within([quoted_path(p) for p in paths], PATH_LIST_CHARS, most=most)


def name(agent: str) -> str:
    """A peer's agent name as shown to a model (names read from the ledger are not validated)."""
    return inert(agent, 64)


def fact(m: Message, me: AgentName) -> str:
    """One line stating what a peer did; its words are quoted, never phrased as instructions."""
    who, short = name(m.sender), inert(m.id[:8])
    on = f" on {path_list(m.paths)}" if m.paths else ""
    replied = inert((m.reply_to or "")[:8])
    if m.kind is Kind.CLAIM:
        until = m.get("expires")
        when = f" until {hhmm(int(until))}" if until and until.isdigit() else ""
        why = f", reason {quoted(m.text)}" if m.text else ""
        mine = [v.split(" ", 1)[1] for k, v in m.meta if k == "took-over" and v.split(" ", 1)[0] == me]
        lost = f"; your expired claim on {path_list(mine)} is gone: {who} took it over" if mine else ""
        return f"- {who} claimed {path_list(m.paths)}{when}{why}{lost}."
    if m.kind is Kind.RELEASE:
        forced = [inert(v, PATH_CHARS) for k, v in m.meta if k == "forced"]
        if forced:
            return f"- {who} force-released {within(forced, PATH_LIST_CHARS, '; ')}, reason {quoted(m.text)}."
        return f"- {who} released {path_list(m.paths)}."
    if m.kind is Kind.DISCOVERY:
        return f"- {who} reported{on}: {quoted(m.text)} [{short}]"
    if m.kind is Kind.QUESTION:
        whom = "you" if m.to == me else "everyone" if m.to == EVERYONE else name(m.to)
        return f'- {who} asked {whom}{on}: {quoted(m.text)} [{short}; reply: gitbus answer {short} "…"]'
    if m.kind is Kind.ANSWER:
        return f"- {who} answered question {replied}: {quoted(m.text)} [{short}]"
    if m.kind is Kind.REQUEST:
        whom = "you" if m.to == me else "anyone" if m.to == EVERYONE else name(m.to)
        return f"- {who} requested work from {whom}{on}: {quoted(m.text)} [{short}; gitbus take {short}]"
    if m.kind is Kind.TAKE:
        return f"- {who} took request {replied}."
    if m.kind is Kind.DONE:
        said = f": {quoted(m.text)}" if m.text else "."
        return f"- {who} finished request {replied}{said}"
    if m.kind is Kind.JOIN:
        return f"- {who} joined the bus."
    return f"- {who}: {m.kind.value} {quoted(m.text)}"


def claim_fact(c: Claim, now: int) -> str:
    """`Claim.describe` for a model: the owner, path and reason read from the ledger made inert and
    capped first (a ledger blob is as untrusted as a message)."""
    reason = inert(" ".join(c.reason.split()), QUOTE_CHARS)
    return replace(c, owner=AgentName(name(c.owner)), path=quoted_path(c.path), reason=reason).describe(now)


def claim_list(claims: Sequence[Claim], now: int, budget: int, most: int | None = None) -> str:
    """Claims as `claim_fact`s joined by `; `, within `budget` characters, then how many more."""
    return within([claim_fact(c, now) for c in claims[:most]], budget, "; ", total=len(claims))


def render(batch: Batch, me: AgentName) -> str:
    """The text put in front of the model for `batch` (empty when nothing is shown)."""
    if not batch.shown:
        return f"gitbus, for agent {me}: {flood_note(batch.older, shown=False)}" if batch.flood else ""
    lines = [f"gitbus, new for agent {me} (peers' words in quotes):"]
    lines += [fact(m, me) for m in batch.shown]
    if batch.waiting:
        lines.append(f"{batch.waiting} more will follow (or run: gitbus inbox).")
    if batch.flood:
        lines.append(flood_note(batch.older))
    return "\n".join(lines)


def flood_note(older: int, shown: bool = True) -> str:
    """What a reader far behind is told about the messages older than those shown (`shown`: some
    were): they wait unread in the inbox, or may (the window held no more for it)."""
    if older:
        waiting = f"{older} or more older message(s) for you wait unread"
    else:
        waiting = "older messages for you may wait unread"
    newest = "the newest are shown here" if shown else "none of the newest is for you"
    return (
        f"More arrived than one call reads: {newest}; {waiting} in gitbus inbox "
        "(past its newest page it names the next: --before TOKEN)."
    )
