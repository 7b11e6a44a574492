"""Ledger steps as values: what the bus asks for, rebuilt from the message it wrote, decides the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitbus import steps
from gitbus.bus import Bus
from gitbus.clock import FakeClock
from gitbus.errors import ClaimConflict, NotFound
from gitbus.ids import AgentName, MessageId
from gitbus.ledger import Ledger, current, tree_of

ALICE, BOB = AgentName("alice"), AgentName("bob")


def test_each_step_rebuilt_from_its_message_decides_the_same_change_on_the_same_state(
    repo: Path, clock: FakeClock
) -> None:
    alice, bob = Bus.open(repo, ALICE, clock), Bus.open(repo, BOB, clock)
    request = bob.request("split the handlers")
    taken = [
        alice.claim(["src/api/", "docs/x.md"], ttl_ms=600_000, reason="splitting"),
        alice.renew(["src/api/"]),  # a renew by its own lease: what replay can rebuild
        alice.release(["docs/x.md"], reason="done with it"),
        alice.take(request.id),
        alice.done(request.id, "split in two"),
    ]
    kinds = []
    for i, msg in enumerate(taken):
        assert msg is not None
        # Decide each again on the state it was decided on: walk back to it.
        state = _state_before(alice, i, len(taken))
        step = steps.from_message(msg)
        assert step is not None
        kinds.append(type(step).__name__)
        change = step.decide(state, msg.time, msg.id, lease_now=clock.now_ms())
        assert change is not None and change.message == msg
    assert kinds == ["Claim", "Renew", "Release", "Take", "Done"]


def _state_before(bus: Bus, index: int, count: int) -> Ledger:
    """The ledger state before the `index`-th of the last `count` ledger steps."""
    at = bus.repo.ref("refs/bus/ledger")
    for _ in range(count - index):
        assert at is not None
        commit = bus.repo.read_commit(at)
        at = commit.parents[0] if commit.parents else None
    return Ledger(bus.repo, tree_of(bus.repo, at))


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
