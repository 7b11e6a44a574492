"""Who is on the bus: every agent with its newest message, and retiring one that left.

An agent is on the bus once its chain exists (`gitbus.agents`). Listing reads one commit per agent,
its chain tip, not its history. Retiring writes one more `join` on the agent's own chain, with
`Gitbus-Meta: retired=<who retired it>` (docs/format.md, Retired agents): nothing is deleted, so
every reader still finds what it said, and the retirement travels through a remote like any message,
where a clone holding the old tip fast-forwards to it rather than undoing it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gitbus import agents, chains
from gitbus.claims import Claim
from gitbus.errors import GitbusError, NotFound
from gitbus.gitfiles import Oid
from gitbus.ids import AGENTS_PREFIX, EVERYONE, AgentName, agent_name, agent_ref, new_message_id
from gitbus.message import Kind, Message

if TYPE_CHECKING:
    from gitbus.git import Repository


@dataclass(frozen=True)
class AgentInfo:
    name: AgentName
    last_active: int
    last_summary: str
    live_claims: int
    retired: bool = False  # its chain ends with a retirement


def is_retirement(msg: Message | None) -> bool:
    """True when `msg` is a retirement: its agent left (while it is its chain's newest message)."""
    return msg is not None and msg.kind is Kind.JOIN and msg.get("retired") is not None


def listing(repo: Repository, claims: Iterable[Claim], retired: bool = False) -> list[AgentInfo]:
    """Every agent on the bus by name, with its newest message and live claims (`claims`); retired
    agents only with `retired`."""
    live: dict[str, int] = {}
    for c in claims:
        live[c.owner] = live.get(c.owner, 0) + 1
    out = []
    for name, tip in sorted(agents.known(repo).items()):
        try:
            ref = agent_ref(agent_name(name))
        except GitbusError:  # a name no agent can have: no chain gitbus reads (skipped and counted)
            repo.skipped[AGENTS_PREFIX + name] = "not a valid agent name"
            continue
        last = chains.last_message(repo, ref, Oid(tip))
        gone = is_retirement(last)
        if retired or not gone:
            when, said = (last.time, f"{last.kind.value}: {last.summary()}") if last else (0, "")
            out.append(AgentInfo(name, when, said, live.get(name, 0), gone))
    return out


def retire(
    repo: Repository,
    name: str,
    by: AgentName,
    live: Callable[[], Iterable[Claim]],
    now: Callable[[], int],
    signs: bool = False,
) -> Message | None:
    """Retire agent `name` as `by`, who sees the live claims `live()` (read last: it may fetch);
    None when it was retired already. Refused, with nothing written, for `by` itself, for an agent
    holding a live claim, for a name with no chain, and where this clone `signs` or requires
    signatures: the retirement is `From` the retired agent but signed by `by`'s key, so a clone that
    requires signatures would refuse that agent's chain from it on (docs/format.md, Retired agents)."""
    who = agent_name(name)
    if who == by:
        raise GitbusError(f"{who} is this worktree's own agent; retire it from another worktree.")
    if signs:
        raise GitbusError(
            f"This clone signs or requires signed messages, and a retirement would carry {who}'s name "
            f"under {by}'s signature, which clones requiring signatures refuse; nothing was retired "
            f"({who} stays listed)."
        )
    tip = repo.ref(agent_ref(who))
    if tip is None:
        raise NotFound(f"No agent named '{who}' is on the bus; nothing was retired.")
    held = [c.path for c in live() if c.owner == who]
    if held:
        more = ", …" if len(held) > 3 else ""
        raise GitbusError(
            f"{who} holds {len(held)} live claim(s) ({', '.join(held[:3])}{more}); let them expire "
            "or release them (`gitbus release --force`) first; nothing was retired."
        )
    if is_retirement(chains.last_message(repo, agent_ref(who), tip)):
        return None
    mid, past = new_message_id(), chains.stamp(repo, now())
    text, meta = f"{who} retired (by {by})", (("retired", by),)

    def make(min_time: int) -> Message:
        return Message(mid, Kind.JOIN, who, EVERYONE, text, max(now(), min_time, past), meta=meta)

    return chains.append(repo, agent_ref(who), make)
