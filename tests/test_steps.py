"""Ledger steps as values: what the bus asks for, rebuilt from the message it wrote, decides the same."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gitbus import steps
from gitbus.bus import Bus
from gitbus.clock import FakeClock
from gitbus.errors import ClaimConflict, NotFound
from gitbus.ids import AgentName, MessageId
from gitbus.ledger_state import State, Tips, current, read_tips
from gitbus.message import Message

ALICE, BOB = AgentName("alice"), AgentName("bob")


def test_each_step_rebuilt_from_its_message_decides_the_same_change_on_the_same_state(
    repo: Path, clock: FakeClock
) -> None:
    alice, bob = Bus.open(repo, ALICE, clock), Bus.open(repo, BOB, clock)
    request = bob.request("split the handlers")
    # The ledgers before each step (every shard and the main ledger), to decide it again on.
    before: list[Tips] = []

    def step(act: Callable[[], Message | None]) -> Message | None:
        before.append(read_tips(alice.repo))
        return act()

    taken = [
        step(lambda: alice.claim(["src/api/", "docs/x.md"], ttl_ms=600_000, reason="splitting")),
        step(lambda: alice.renew(["src/api/"])),  # a renew by its own lease: what replay can rebuild
        step(lambda: alice.release(["docs/x.md"], reason="done with it")),
        step(lambda: alice.take(request.id)),
        step(lambda: alice.done(request.id, "split in two")),
    ]
    kinds = []
    for msg, tips in zip(taken, before, strict=True):
        assert msg is not None
        assert tips.refs != read_tips(alice.repo).refs  # decided again on the state before it, not now
        state = State(alice.repo, tips)
        rebuilt = steps.from_message(msg)
        assert rebuilt is not None
        kinds.append(type(rebuilt).__name__)
        change = rebuilt.decide(state, msg.time, msg.id, lease_now=clock.now_ms())
        assert change is not None and change.message == msg
    assert kinds == ["Claim", "Renew", "Release", "Take", "Done"]


def test_a_step_value_refuses_on_a_state_where_it_cannot_stand(repo: Path, clock: FakeClock) -> None:
    Bus.open(repo, BOB, clock).claim(["src/"])
    alice = Bus.open(repo, ALICE, clock)
    state = current(alice.repo)
    now, mid = clock.now_ms(), MessageId("0123456789abcdef")
    with pytest.raises(ClaimConflict) as refused:
        steps.Claim(ALICE, ("src/a.py",)).decide(state, now, mid)
    assert refused.value.holder == BOB
    with pytest.raises(NotFound):
        steps.Release(ALICE, ("docs/",)).decide(state, now, mid)
    # Rebuilt for replay, a release of what nobody holds any more is nothing to do, not a refusal.
    assert steps.Release(ALICE, ("docs/",), only_held=True).decide(state, now, mid) is None
