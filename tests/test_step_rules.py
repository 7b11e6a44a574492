"""The rules a peer's ledger step must keep before sync takes it in (`gitbus.step_rules`), for the
take of a request: the request it names must be a request, addressed to everyone or its taker, and
made before it is taken. Real clones of a bare remote over file://; the forged steps are written by
a peer's own gitbus, deciding a step its `take` would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from gitbus import delegation as D
from gitbus import steps, sync
from gitbus.bus import Bus
from gitbus.clock import FakeClock
from gitbus.errors import GitbusError, NotFound
from gitbus.ids import EVERYONE, MAIN_LEDGER, AgentName, MessageId
from gitbus.ledger import View
from gitbus.ledger_cas import Change
from gitbus.message import Kind, Message

from .conftest import git
from .test_sync import Net, clone, sharing


@dataclass(frozen=True)
class TakenEarly:
    """A forged take: `me` takes `request`, its state saying it was taken before the request was made."""

    me: AgentName
    request: Message

    def ledgers(self) -> set[str] | None:
        return {MAIN_LEDGER}

    def decide(self, state: View, time: int, id: MessageId, lease_now: int | None = None) -> Change:
        r = self.request
        taken = D.RequestState(r.id, self.me, r.time - 1)
        msg = Message(id, Kind.TAKE, self.me, r.sender, r.summary(), time, r.paths, r.id)
        return Change(msg, {D.slot(r.id): taken.to_json()})


@pytest.fixture
def trio(tmp_path: Path, clock: FakeClock) -> tuple[Bus, Bus, Bus]:
    """alice (clone a), bob (clone b) and carol (clone c), sharing the bus through origin."""
    net = Net.make(tmp_path)
    alice, bob = net.pair(clock)
    carol = sharing(clone(net.url, tmp_path / "c"), "carol", clock)
    for bus in (bob, carol, alice):  # alice last: she knows them all
        sync.sync(bus.repo, "origin")
    return alice, bob, carol


def _refused_main(bus: Bus) -> str:
    report = sync.sync(bus.repo, "origin")
    (refusal,) = report.refused
    assert refusal.ref == MAIN_LEDGER
    return refusal.line()


def test_a_peers_take_of_a_request_addressed_to_another_agent_is_refused_at_sync(
    trio: tuple[Bus, Bus, Bus],
) -> None:
    alice, bob, carol = trio
    warm_up = alice.request("read the parser")
    r = alice.request("fix the parser, only bob", to="bob")
    sync.sync(alice.repo, "origin")
    sync.sync(bob.repo, "origin")
    bob.take(warm_up.id)  # the main ledger holds a step bob vouched for, which the forged one is on
    sync.sync(carol.repo, "origin")
    with pytest.raises(GitbusError, match="addressed to bob"):
        carol.take(r.id)
    carol._ledger(steps.Take(carol.agent, replace(carol.find(r.id), to=EVERYONE), after=r.time + 1))

    line = _refused_main(bob)
    assert f"takes request {r.id}, which is addressed to bob, not to carol" in line
    assert bob.take(r.id).reply_to == r.id  # bob is not locked out of its own request


def test_a_peers_take_of_a_message_that_is_no_request_is_refused_at_sync(trio: tuple[Bus, Bus, Bus]) -> None:
    alice, bob, carol = trio
    q = alice.ask("which parser?")
    sync.sync(alice.repo, "origin")
    sync.sync(carol.repo, "origin")
    carol._ledger(steps.Take(carol.agent, replace(q, kind=Kind.REQUEST), after=q.time + 1))

    assert f"takes {q.id}, which is a question, not a request" in _refused_main(bob)


def test_a_peers_take_stamped_before_its_request_is_refused_at_sync(trio: tuple[Bus, Bus, Bus]) -> None:
    alice, bob, carol = trio
    r = alice.request("fix the parser")
    sync.sync(alice.repo, "origin")
    sync.sync(carol.repo, "origin")
    carol._ledger(TakenEarly(carol.agent, r))

    assert f"takes request {r.id} at {r.time - 1}, before it was made at {r.time}" in _refused_main(bob)


def test_a_peers_take_naming_another_sender_for_the_request_is_refused_at_sync(
    trio: tuple[Bus, Bus, Bus],
) -> None:
    alice, bob, carol = trio
    r = alice.request("fix the parser, only bob", to="bob")
    sync.sync(alice.repo, "origin")
    sync.sync(carol.repo, "origin")
    # the take names a sender whose chain holds no such request, so the request is looked for everywhere
    forged = replace(carol.find(r.id), to=EVERYONE, sender=AgentName("nobody"))
    carol._ledger(steps.Take(carol.agent, forged, after=r.time + 1))

    assert f"takes request {r.id} of alice, naming nobody as its sender" in _refused_main(bob)


def test_an_honest_take_of_a_request_fetched_in_the_same_sync_is_taken_in(trio: tuple[Bus, Bus, Bus]) -> None:
    alice, bob, carol = trio
    r = alice.request("fix the parser")
    sync.sync(alice.repo, "origin")
    sync.sync(carol.repo, "origin")
    carol.take(r.id)
    # bob has fetched neither the request nor the take: both come in this one sync
    assert sync.sync(bob.repo, "origin").refused == []
    with pytest.raises(GitbusError, match="already taken by carol"):
        bob.take(r.id)


def test_a_take_of_a_request_not_yet_on_the_remote_is_taken_in_as_it_cannot_be_judged(
    trio: tuple[Bus, Bus, Bus], tmp_path: Path
) -> None:
    alice, bob, _ = trio
    a = tmp_path / "a"
    # a second agent on alice's clone takes her request before her chain is pushed: its online
    # take publishes the main ledger alone
    wt = tmp_path / "a-wt"
    git(a, "worktree", "add", "-q", "--detach", str(wt))
    dave = Bus.open(wt, "dave", alice.clock)
    dave.init("origin")
    r = alice.request("fix the parser")
    dave.take(r.id)
    assert sync.sync(bob.repo, "origin", send=False).refused == []
    with pytest.raises(NotFound):  # the request came to bob's clone on no chain
        bob.find(r.id)


def test_a_later_copy_of_the_request_id_on_its_chain_does_not_get_an_honest_take_refused(
    trio: tuple[Bus, Bus, Bus], clock: FakeClock, tmp_path: Path
) -> None:
    """Readers take a message's first carrier (`Reading.find`). A peer appending a copy of a request's
    id to the requester's chain, as a question stamped later, must not get the honest take of the
    request refused at every clone's sync (the sender's chain is walked newest first)."""
    alice, bob, carol = trio
    r = alice.request("genuine")
    clock.advance(5)
    for bus in (alice, carol, bob):
        sync.sync(bus.repo, "origin")
    bob.take(r.id)
    clock.advance(5)
    sync.sync(carol.repo, "origin")
    c = carol.repo.root
    tip = git(c, "rev-parse", "refs/bus/agents/alice").strip()
    body = git(c, "cat-file", "commit", tip).split("\n\n", 1)[1]
    copy = body.replace("Gitbus-Type: request", "Gitbus-Type: question")
    copy = copy.replace(f"Gitbus-Time: {r.time}", f"Gitbus-Time: {r.time + 50}")
    assert copy != body
    (tmp_path / "copy").write_text(copy)
    empty = git(c, "hash-object", "-t", "tree", "/dev/null").strip()
    forged = git(c, "commit-tree", empty, "-p", tip, "-F", str(tmp_path / "copy")).strip()
    git(c, "push", "-q", "origin", f"{forged}:refs/bus/agents/alice")
    dan = sharing(clone(git(c, "remote", "get-url", "origin").strip(), tmp_path / "d"), "dan", clock)
    report = sync.sync(dan.repo, "origin")
    assert [x.line() for x in report.refused if x.ref == MAIN_LEDGER] == []
    assert dan.find(r.id).kind is Kind.REQUEST
