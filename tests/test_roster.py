"""Agents that left are retired without losing a message (docs/format.md#retired-agents)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from gitbus import render, searchindex
from gitbus.bus import Bus
from gitbus.claims import DEFAULT_TTL_MS
from gitbus.clock import FakeClock
from gitbus.errors import GitbusError, NotFound
from gitbus.git import Repository
from gitbus.ids import AGENTS_PREFIX, agent_name
from gitbus.sync import sync

from .conftest import git
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


def test_retiring_is_refused_where_this_clone_signs_or_requires_signatures(
    repo: Path, clock: FakeClock
) -> None:
    """A retirement is `From` the agent retired but signed by the retiring worktree: a clone that
    requires signatures would refuse the retired agent's chain from it on, later posts and all."""
    r = Repository.open(repo)
    Bus(r, agent_name("gone"), clock).discover("bye")
    before = r.refs("refs/bus/")
    assert gb(repo, "me", "config", "require_signed", "true")[0] == 0
    code, out, err = gb(repo, "me", "agents", "--retire", "gone")
    assert (code, out) == (1, "") and len(err.strip().splitlines()) == 1
    assert "signed" in err and "nothing was retired" in err
    assert Repository.open(repo).refs("refs/bus/") == before
    assert gb(repo, "me", "config", "require_signed", "false")[0] == 0
    git(repo, "config", "commit.gpgsign", "true")  # this clone signs: its peers may require it
    with pytest.raises(GitbusError, match="signs or requires signed messages"):
        Bus.open(repo, "me", clock).retire("gone")


def test_retiring_counts_the_live_claims_on_the_bus_remotes_ledger(tmp_path: Path, clock: FakeClock) -> None:
    """Who holds what is decided on the remote's ledger: a claim this clone has not synced yet
    still stops the retirement, as it would stop a claim."""
    net = Net.make(tmp_path)
    alice, bob = net.pair(clock)
    bob.discover("here")
    sync(bob.repo, "origin")
    sync(alice.repo, "origin")
    bob.claim(["README.md"])  # on the remote; alice's clone has not fetched it
    assert all(c.owner != "bob" for c in alice.claims())
    with pytest.raises(GitbusError, match="live claim"):
        alice.retire("bob")
    assert [c.owner for c in alice.claims()] == ["bob"]
    assert "bob" in [a.name for a in alice.agents()]


def test_agents_all_marks_the_retired_in_text(repo: Path, clock: FakeClock) -> None:
    r = Repository.open(repo)
    Bus(r, agent_name("gone"), clock).discover("bye")
    Bus(r, agent_name("here"), clock).discover("hi")
    Bus(r, agent_name("me"), clock).retire("gone")
    code, out, _ = gb(repo, "me", "agents", "--all")
    rows = {line.split("\t")[0]: line.split("\t") for line in out.splitlines()}
    assert code == 0 and rows["gone"][-1] == "retired" and rows["here"][-1] != "retired"
    table = io.StringIO()
    console = Console(file=table, width=200, force_terminal=True, color_system=None)
    render.agents(console, Bus(r, agent_name("me"), clock).agents(retired=True), clock.now_ms(), "me")
    shown = {line.split("│")[1].strip() for line in table.getvalue().splitlines() if line.count("│") > 2}
    assert {"gone (retired)", "here"} <= shown
