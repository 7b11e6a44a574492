"""Races between real processes: claims, posts, joins and takes decided by compare-and-swap.

Each agent is its own 'spawn' process that opens its own bus in a real worktree, and a barrier
releases them all at once so the compare-and-swaps really collide. After each round the parent reads
the ledger back and checks it against what every process was told.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from gitbus import ledger_state
from gitbus.bus import Bus
from gitbus.claims import SKEW_MARGIN_MS, Claim
from gitbus.clock import FakeClock
from gitbus.delegation import state_of
from gitbus.ids import AgentName, agent_ref
from gitbus.message import Message
from gitbus.paths import overlaps

from .helpers_proc import (
    SPAWN,
    WAIT_SECONDS,
    Attempts,
    ClaimOutcome,
    Posted,
    TakeOutcome,
    chain,
    claim_one_by_one,
    claim_rounds,
    collect,
    join_rounds,
    overlapping_owners,
    post_many,
    running,
    take_rounds,
)

AGENTS = tuple(f"agent-{i}" for i in range(8))
# Ancestors, descendants and siblings of one another, so most rounds are a pile-up.
UNIVERSE = (
    "src/",
    "src/a/",
    "src/a/x.py",
    "src/a/y.py",
    "src/a/deep/z.py",
    "src/b/",
    "src/b/w.py",
    "docs/",
    "docs/guide.md",
)


def _home(worktrees: list[Path], i: int) -> Path:
    return worktrees[i % len(worktrees)]


def _check_claim_round(observer: Bus, r: int, outcomes: list[ClaimOutcome]) -> None:
    held = observer.claims()
    assert overlapping_owners(held) == [], f"round {r}: two agents hold overlapping claims"
    by_owner_path: dict[tuple[str, str], Claim] = {(c.owner, c.path): c for c in held}
    winners = [o for o in outcomes if o.granted]
    assert winners, f"round {r}: every claim was refused, though the ledger was empty"
    for w in winners:
        for p in w.wanted:
            c = by_owner_path.get((w.agent, p))
            assert c is not None and c.id == w.granted, f"round {r}: {w.agent} was granted {p}, not held"
    assert {c.id for c in held} == {w.granted for w in winners}, f"round {r}: an unannounced claim is held"
    for loser in (o for o in outcomes if not o.granted):
        assert loser.holder != loser.agent, f"round {r}: {loser.agent} was refused because of itself"
        c = by_owner_path.get((str(loser.holder), str(loser.held_path)))
        assert c is not None, f"round {r}: {loser} names a claim that is not held"
        assert any(overlaps(c.path, p) for p in loser.wanted), f"round {r}: {loser} names a disjoint claim"


def test_eight_agents_racing_overlapping_claims_never_both_hold(
    worktrees: list[Path], long_mode: bool
) -> None:
    rounds = 500 if long_mode else 50
    for i, agent in enumerate(AGENTS):
        Bus.open(_home(worktrees, i), agent).init()  # joined beforehand: the rounds race on the ledger only
    observer = Bus.open(worktrees[0], "observer")
    rng = random.Random(850)
    plans = {a: [rng.sample(UNIVERSE, rng.choice((1, 1, 2))) for _ in range(rounds)] for a in AGENTS}
    barrier, out = SPAWN.Barrier(len(AGENTS) + 1), SPAWN.Queue()
    procs = [
        SPAWN.Process(target=claim_rounds, args=(str(_home(worktrees, i)), a, plans[a], barrier, out))
        for i, a in enumerate(AGENTS)
    ]
    granted: list[ClaimOutcome] = []
    refused = 0
    with running(procs, barrier):
        for r in range(rounds):
            barrier.wait(WAIT_SECONDS)
            outcomes: list[ClaimOutcome] = collect(out, len(AGENTS))
            _check_claim_round(observer, r, outcomes)
            granted += [o for o in outcomes if o.granted]
            refused += sum(1 for o in outcomes if not o.granted)
            barrier.wait(WAIT_SECONDS)
            barrier.wait(WAIT_SECONDS)
            assert observer.claims() == [], f"round {r}: a claim survived release --all"
    assert refused > 0, "no claim was ever refused: the agents did not collide"

    claim_messages = observer.log(n=None, kinds=["claim"])
    assert Counter(m.id for m in claim_messages) == Counter(str(g.granted) for g in granted)
    by_id = {g.granted: g for g in granted}
    for m in claim_messages:
        assert (m.sender, m.paths) == (by_id[m.id].agent, by_id[m.id].wanted)
    assert len(observer.log(n=None, kinds=["release"])) == len(granted)


@pytest.mark.parametrize("shared", [False, True], ids=["each-on-its-own-chain", "all-on-one-chain"])
def test_eight_processes_posting_at_once_lose_and_duplicate_nothing(
    worktrees: list[Path], long_mode: bool, shared: bool
) -> None:
    count = 300 if long_mode else 50
    senders = ["poster"] * 8 if shared else [f"poster-{i}" for i in range(8)]
    for i, agent in enumerate(senders):
        Bus.open(_home(worktrees, i), agent).init()
    barrier, out = SPAWN.Barrier(8), SPAWN.Queue()
    procs = [
        SPAWN.Process(target=post_many, args=(str(_home(worktrees, i)), a, f"p{i}", count, barrier, out))
        for i, a in enumerate(senders)
    ]
    with running(procs, barrier):
        posted: list[Posted] = collect(out, 8)

    logged = Bus.open(worktrees[0], "observer").log(n=None, kinds=["discovery"])
    by_id: dict[str, Message] = {m.id: m for m in logged}
    assert len(by_id) == len(logged) == 8 * count, "a message is missing or appears twice in the log"
    assert Counter(m.text for m in logged) == Counter(t for p in posted for t in p.texts)
    for p in posted:
        for mid, text in zip(p.ids, p.texts, strict=True):
            assert (by_id[mid].text, by_id[mid].sender) == (text, p.agent)
    for agent in set(senders):
        messages = chain(worktrees[0], agent_ref(AgentName(agent)))
        assert len(messages) == senders.count(agent) * count + 1  # and the join
        times = [m.time for m in messages]
        assert times == sorted(set(times), reverse=True), f"{agent}'s chain times are not strictly increasing"


def test_eight_processes_joining_as_one_agent_announce_it_once(
    worktrees: list[Path], long_mode: bool
) -> None:
    names = [f"newcomer-{r}" for r in range(20 if long_mode else 5)]
    barrier, out = SPAWN.Barrier(8), SPAWN.Queue()
    procs = [
        SPAWN.Process(target=join_rounds, args=(str(_home(worktrees, i)), names, barrier, out))
        for i in range(8)
    ]
    with running(procs, barrier):
        collect(out, 8 * len(names))
    joins = Counter(m.sender for m in Bus.open(worktrees[0], "observer").log(n=None, kinds=["join"]))
    assert joins == Counter(names), "an agent that joined from several processes at once was announced twice"


def test_agents_taking_one_request_at_once_leave_exactly_one_taker(
    worktrees: list[Path], long_mode: bool
) -> None:
    rounds = 100 if long_mode else 20
    boss = Bus.open(worktrees[0], "boss")
    boss.init()
    requests = [boss.request(f"job {r}: split the handlers").id for r in range(rounds)]
    for i, agent in enumerate(AGENTS):
        Bus.open(_home(worktrees, i), agent).init()
    barrier, out = SPAWN.Barrier(len(AGENTS) + 1), SPAWN.Queue()
    procs = [
        SPAWN.Process(target=take_rounds, args=(str(_home(worktrees, i)), a, requests, barrier, out))
        for i, a in enumerate(AGENTS)
    ]
    winners: dict[str, TakeOutcome] = {}
    with running(procs, barrier):
        for r, request in enumerate(requests):
            barrier.wait(WAIT_SECONDS)
            outcomes: list[TakeOutcome] = collect(out, len(AGENTS))
            won = [o for o in outcomes if o.taken]
            assert len(won) == 1, f"request {r} was taken by {[o.agent for o in won]}"
            winners[request] = won[0]
            for lost in (o for o in outcomes if not o.taken):
                assert won[0].agent in str(lost.refusal), f"{lost.agent}'s refusal does not name the taker"
            state = state_of(ledger_state.current(boss.repo), request)
            assert state is not None and state.taker == won[0].agent

    takes = boss.log(n=None, kinds=["take"])
    assert Counter(m.reply_to for m in takes) == Counter(requests), "a request has two take messages"
    assert {(m.reply_to, m.sender, m.id) for m in takes} == {
        (req, w.agent, w.taken) for req, w in winners.items()
    }


# What a winner of the races above is promised, reduced to one process: a granted claim is held.
def test_a_claim_over_an_expired_lease_holds_every_path_it_was_granted(
    repo: Path, bus_for: Callable[[Path, str], Bus], clock: FakeClock
) -> None:
    old, new = bus_for(repo, "old-1"), bus_for(repo, "new-1")
    old.claim(["src/a/"], ttl_ms=1000)
    clock.advance(5000 + SKEW_MARGIN_MS)
    granted = new.claim(["src/a/", "src/a/x.py"])
    held = {c.path for c in new.claims() if c.owner == "new-1"}
    assert held == set(granted.paths), f"granted {granted.paths}, but the ledger holds only {sorted(held)}"


def test_claimants_of_distinct_paths_each_get_every_grant_within_a_bounded_number_of_tries(
    worktrees: list[Path], long_mode: bool
) -> None:
    """A lost race never starves a process: each claimant, coming back for its next path straight
    after each grant, gets every grant, and no grant takes more than a few rounds of the crowd."""
    n, per = 6, (60 if long_mode else 20)
    claimants = [f"crowd-{i}" for i in range(n)]
    for i, agent in enumerate(claimants):
        Bus.open(_home(worktrees, i), agent).init()
    barrier, out = SPAWN.Barrier(n), SPAWN.Queue()
    procs = [
        SPAWN.Process(
            target=claim_one_by_one,
            args=(str(_home(worktrees, i)), a, [f"area{i}/f{k}.py" for k in range(per)], barrier, out),
        )
        for i, a in enumerate(claimants)
    ]
    with running(procs, barrier):
        reports: list[Attempts] = collect(out, n)
    tries = sorted(t for r in reports for t in r.tries)
    assert {r.agent: r.granted for r in reports} == dict.fromkeys(claimants, per)
    # A writer that lost a few races in a row takes its turn, and then races only those under way.
    assert tries[-1] <= 2 * n, f"a grant took {tries[-1]} compare-and-swaps (all: {tries})"
    held = Bus.open(worktrees[0], "observer").claims()
    assert sorted(c.path for c in held) == sorted(f"area{i}/f{k}.py" for i in range(n) for k in range(per))
