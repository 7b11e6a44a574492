"""Agents that left are retired without losing a message (docs/format.md#retired-agents)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gitbus import searchindex
from gitbus.bus import Bus
from gitbus.claims import DEFAULT_TTL_MS
from gitbus.clock import FakeClock
from gitbus.errors import GitbusError, NotFound
from gitbus.git import Repository
from gitbus.ids import AGENTS_PREFIX, agent_name
from gitbus.sync import sync

from .test_sync import Net, gb


def test_a_retired_agent_leaves_the_list_and_keeps_everything_it_said(repo: Path, clock: FakeClock) -> None:
    r = Repository.open(repo)
    me, gone = Bus(r, agent_name("me"), clock), Bus(r, agent_name("gone"), clock)
    said = gone.discover("the flaky test is the clock skew one")
    q = gone.ask("who owns config/?")
    me.answer(q.id, "I do")
    retired = me.retire("gone")
    assert retired is not None and retired.get("retired") == "me"
    assert [a.name for a in me.agents()] == ["me"]
    assert {a.name: a.retired for a in me.agents(retired=True)} == {"gone": True, "me": False}
    ids = [m.id for m in me.log(n=None)]
    assert said.id in ids and q.id in ids and ids[0] == retired.id
    assert me.find(said.id).text == said.text
    assert [m.id for m in me.history("gone")][1:3] == [q.id, said.id]
    assert said.id in [m.id for m in searchindex.matching(r, "flaky")]
    assert me.retire("gone") is None  # again: nothing more said
    with pytest.raises(NotFound, match="retired; nothing was sent"):
        me.ask("still there?", to="gone")


def test_retiring_is_refused_for_live_claims_oneself_and_unknown_names(repo: Path, clock: FakeClock) -> None:
    r = Repository.open(repo)
    me, holder = Bus(r, agent_name("me"), clock), Bus(r, agent_name("holder"), clock)
    me.discover("here")
    holder.claim(["config/"])
    before = r.refs("refs/bus/")
    with pytest.raises(GitbusError, match=r"^holder holds 1 live claim\(s\) \(config/\); "):
        me.retire("holder")
    with pytest.raises(GitbusError, match="this worktree's own agent"):
        me.retire("me")
    with pytest.raises(NotFound, match="No agent named 'nobody'"):
        me.retire("nobody")
    with pytest.raises(GitbusError):
        me.retire("Not A Name")
    assert r.refs("refs/bus/") == before, "a refused retirement wrote something"
    clock.advance(DEFAULT_TTL_MS + 1)
    assert me.retire("holder") is not None  # its lease ran out


def test_the_cli_retires_in_one_line_and_lists_retired_agents_with_all(repo: Path, clock: FakeClock) -> None:
    r = Repository.open(repo)
    Bus(r, agent_name("gone"), clock).discover("bye")
    code, out, err = gb(repo, "me", "agents", "--retire", "gone")
    assert (code, out.strip(), err) == (0, "retired gone", "")
    code, out, _ = gb(repo, "me", "agents", "--json")
    assert code == 0 and [a["name"] for a in json.loads(out)] == []
    code, out, _ = gb(repo, "me", "agents", "--all", "--json")
    assert [(a["name"], a["retired"]) for a in json.loads(out)] == [("gone", True)]
    code, out, err = gb(repo, "me", "agents", "--retire", "me")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "own agent" in err


def test_a_retired_name_that_joins_again_is_back(repo: Path, clock: FakeClock) -> None:
    r = Repository.open(repo)
    Bus(r, agent_name("gone"), clock).discover("bye")
    me = Bus(r, agent_name("me"), clock)
    me.retire("gone")
    Bus.open(repo, None, clock).join("gone")
    assert [(a.name, a.retired) for a in me.agents()] == [("gone", False)]


def test_a_retirement_travels_and_a_stale_clone_does_not_undo_it(tmp_path: Path, clock: FakeClock) -> None:
    net = Net.make(tmp_path)
    alice, bob = net.pair(clock)
    said = bob.discover("I am done here")
    sync(bob.repo, "origin")
    sync(alice.repo, "origin")
    stale = Bus.open(net.clones[1], "carol", clock)  # bob's clone still holds bob's old tip
    stale_tip = stale.repo.ref(AGENTS_PREFIX + "bob")
    alice_other = Bus(alice.repo, agent_name("ops"), clock)
    alice_other.retire("bob")
    sync(alice.repo, "origin")
    assert stale.repo.ref(AGENTS_PREFIX + "bob") == stale_tip
    sync(stale.repo, "origin")  # the stale clone pulls and pushes: the retirement stays
    sync(alice.repo, "origin")
    for b in (alice, stale):
        assert [a.name for a in b.agents() if a.name == "bob"] == []
        assert said.id in [m.id for m in b.log(n=None)]
