"""The bus remote (`gitbus.remote`): which git remote carries the bus, fetch and push over git, and
what git's failures mean, over real bare repositories and real clones.

The network and its helpers (a bare remote, clones, a dead or silent address) are test_sync.py's;
what sync does with what it fetched is tested there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gitbus import settings, sync
from gitbus.bus import Bus
from gitbus.clock import FakeClock
from gitbus.errors import ClaimConflict
from gitbus.git import Repository
from gitbus.ids import AgentName, agent_ref
from gitbus.ledger_shards import shard_of_path

from .conftest import git
from .test_sync import Net, bus_refs, clone, dead_port, gb, ids, set_url, stalled_port


@pytest.fixture
def net(tmp_path: Path) -> Net:
    return Net.make(tmp_path)


@pytest.fixture
def pair(net: Net, clock: FakeClock) -> tuple[Bus, Bus]:
    return net.pair(clock)


# -- which remote carries the bus -----------------------------------------------------------------------


def test_a_fresh_clone_whose_origin_carries_a_bus_joins_it_through_origin_at_init(
    net: Net, pair: tuple[Bus, Bus], clock: FakeClock, tmp_path: Path
) -> None:
    alice, _ = pair
    alice.claim(["config/"], reason="moving the db")
    sync.sync(alice.repo, "origin")
    fresh = Bus.open(clone(net.url, tmp_path / "fresh"), "carol", clock)
    assert fresh.init() is not None
    assert settings.load(fresh.repo.common_dir)["remote"] == "origin"
    assert agent_ref(AgentName("alice")) in bus_refs(fresh.repo.root)
    with pytest.raises(ClaimConflict, match="alice holds config/"):
        fresh.claim(["config/db.yaml"])


def test_a_fresh_clone_joining_by_name_claims_through_origin_without_gitbus_remote(
    net: Net, pair: tuple[Bus, Bus], tmp_path: Path
) -> None:
    assert gb(pair[0].repo.root, "alice", "claim", "config/")[0] == 0  # on the wall clock, like carol's
    fresh = clone(net.url, tmp_path / "fresh")
    assert gb(fresh, "carol", "join", "--name", "carol")[0] == 0
    code, _, err = gb(fresh, "carol", "claim", "config/db.yaml")
    assert code == 3 and "alice holds config/" in err


def test_a_fresh_clone_claiming_first_thing_claims_through_origin(
    net: Net, pair: tuple[Bus, Bus], tmp_path: Path
) -> None:
    """No init, no join, no `gitbus remote`: the first post of an agent in a clone whose origin
    carries a bus adopts it, before the step is decided (the typer path and the quick path)."""
    assert gb(pair[0].repo.root, "alice", "claim", "src/")[0] == 0
    fresh = clone(net.url, tmp_path / "carol")
    code, _, err = gb(fresh, "carol", "claim", "src/a.py")
    assert code == 3 and "alice holds src/" in err, (code, err)
    assert settings.load(Repository.open(fresh).common_dir)["remote"] == "origin"
    quick = clone(net.url, tmp_path / "erin")
    code = subprocess.run(
        [str(Path(sys.executable).parent / "gitbus"), "-a", "erin", "claim", "src/b.py"],
        cwd=quick,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
    ).returncode
    assert code == 3
    with pytest.raises(ClaimConflict):  # and a discovery first, then a claim, goes the same way
        fred = Bus.open(clone(net.url, tmp_path / "fred"), "fred")
        fred.discover("first post")
        fred.claim(["src/c.py"])


def test_a_clone_whose_origin_has_no_bus_stays_local_at_init(net: Net, clock: FakeClock) -> None:
    lone = Bus.open(net.clones[0], "alice", clock)
    assert lone.init() is not None
    assert settings.load(lone.repo.common_dir)["remote"] in (None, "")


@pytest.mark.parametrize("command", ["push", "pull", "sync"])
def test_without_a_bus_remote_push_pull_and_sync_exit_1_in_one_line(net: Net, command: str) -> None:
    a = net.clones[0]
    assert gb(a, "alice", "init")[0] == 0
    code, out, err = gb(a, "alice", command)
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [
        "gitbus: No bus remote is set; run `gitbus remote NAME` (a git remote) first."
    ]


def test_gitbus_remote_names_an_existing_git_remote(net: Net) -> None:
    a = net.clones[0]
    assert gb(a, "alice", "init")[0] == 0
    code, out, err = gb(a, "alice", "remote", "nonexistent")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "no remote named 'nonexistent'" in err
    assert settings.load(Repository.open(a).common_dir)["remote"] is None
    code, out, err = gb(a, "alice", "remote", "origin", "--json")
    assert code == 0 and json.loads(out) == {"remote": "origin"}
    assert settings.load(Repository.open(a).common_dir)["remote"] == "origin"
    code, _, err = gb(a, "alice", "push", "nonexistent")
    assert code == 1 and "no remote named 'nonexistent'" in err


# -- fetch ----------------------------------------------------------------------------------------------


def test_syncing_leaves_the_users_fetch_config_alone(net: Net, pair: tuple[Bus, Bus]) -> None:
    alice, bob = pair
    before = [git(c, "config", "--get-all", "remote.origin.fetch") for c in net.clones]
    alice.discover("one")
    bob.discover("two")
    for bus in (alice, bob, alice):
        sync.sync(bus.repo, "origin")
    assert [git(c, "config", "--get-all", "remote.origin.fetch") for c in net.clones] == before
    assert before[0].strip() == "+refs/heads/*:refs/remotes/origin/*"
    vouched = git(net.clones[0], "for-each-ref", "--format=%(refname)", "refs/gitbus/vouched/origin/bus/")
    assert "refs/gitbus/vouched/origin/bus/agents/bob" in vouched.split()


def test_a_branch_a_peer_names_like_a_bus_ref_changes_nothing_gitbus_vouched_for(
    net: Net, pair: tuple[Bus, Bus]
) -> None:
    """git's default refspec writes the remote's branches to `refs/remotes/origin/*`: a branch named
    `bus/agents/alice` lands at `refs/remotes/origin/bus/agents/alice` at the user's plain `git
    fetch`. What gitbus vouched for is kept elsewhere, so such a branch neither is taken in nor is
    pushed back over the remote's real chain."""
    alice, bob = pair
    alice.discover("the real one")
    sync.sync(alice.repo, "origin")
    sync.sync(bob.repo, "origin")
    real = git(net.bare, "rev-parse", "refs/bus/agents/alice").strip()
    forged = git(
        net.clones[0], "commit-tree", "4b825dc642cb6eb9a060e54bf8d69288fbee4904", "-p", real, "-m", "x"
    )
    git(net.clones[0], "push", "-q", "origin", f"{forged.strip()}:refs/heads/bus/agents/alice")
    git(net.clones[1], "fetch", "-q", "origin")  # the user's plain fetch
    bob.discover("bob after the plain fetch")
    report = sync.sync(bob.repo, "origin")
    assert not report.refused and not report.restored, report
    assert git(net.bare, "rev-parse", "refs/bus/agents/alice").strip() == real
    assert bob.repo.ref("refs/bus/agents/alice") == real


def test_a_tracking_ref_lock_left_by_a_killed_fetch_does_not_block_syncing(pair: tuple[Bus, Bus]) -> None:
    alice, bob = pair
    alice.discover("first")
    sync.sync(alice.repo, "origin")
    sync.sync(bob.repo, "origin")
    news = alice.discover("second")
    sync.sync(alice.repo, "origin")
    lock = bob.repo.common_dir / "refs" / "gitbus" / "fetched" / "origin" / "bus" / "agents" / "alice.lock"
    lock.write_text("")  # what git leaves when it is killed between taking the lock and renaming
    old = time.time() - 60
    os.utime(lock, (old, old))
    sync.sync(bob.repo, "origin")
    assert news.id in ids(bob) and not lock.exists()


@pytest.mark.parametrize("value", ["soon", "inf", "nan", "0", "-5"])
def test_a_network_timeout_setting_that_makes_no_sense_falls_back_to_the_default(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gitbus.git import NETWORK_TIMEOUT_SECONDS, network_timeout

    monkeypatch.setenv("GITBUS_NETWORK_TIMEOUT", value)
    assert network_timeout() == NETWORK_TIMEOUT_SECONDS


def test_a_claim_fetches_only_the_ledger(pair: tuple[Bus, Bus]) -> None:
    """No branch of the user's moves, and no FETCH_HEAD is written."""
    alice, bob = pair
    a = alice.repo.root
    git(bob.repo.root, "commit", "-q", "--allow-empty", "-m", "new work")
    git(bob.repo.root, "push", "-q", "origin", "main")
    before = git(a, "rev-parse", "refs/remotes/origin/main")
    alice.claim(["config/"])
    assert git(a, "rev-parse", "refs/remotes/origin/main") == before
    assert not (alice.repo.git_dir / "FETCH_HEAD").exists()


# -- an unreachable remote, and hosts that refuse refs/bus -----------------------------------------------


@pytest.mark.parametrize("where", ["missing path", "closed port"])
def test_an_unreachable_remote_refuses_a_claim_and_writes_nothing(
    net: Net, pair: tuple[Bus, Bus], where: str, tmp_path: Path
) -> None:
    _, bob = pair
    b = net.clones[1]
    bob.claim(["config/a.yaml"])  # the claim shard of config/ exists already
    shard = shard_of_path("config/")
    dead = (tmp_path / "gone.git").as_uri() if where == "missing path" else f"git://127.0.0.1:{dead_port()}/x"
    set_url(b, dead)
    before = bus_refs(b)

    code, out, err = gb(b, "bob", "claim", "config/b.yaml")
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gitbus: The bus remote 'origin' could not be reached: ")
    assert "--offline" in lines[0]
    assert bus_refs(b) == before, "a refused claim wrote to the bus"

    code, out, err = gb(b, "bob", "claim", "config/b.yaml", "--offline", "--json")
    assert code == 0, err
    assert json.loads(out)["paths"] == ["config/b.yaml"]
    assert bus_refs(b)[shard] != before[shard]


def test_a_remote_that_never_answers_refuses_a_claim_in_bounded_time(
    net: Net, pair: tuple[Bus, Bus], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, bob = pair
    b = net.clones[1]
    bob.claim(["README.md"])
    monkeypatch.setenv("GITBUS_NETWORK_TIMEOUT", "2")
    with stalled_port() as port:
        set_url(b, f"git://127.0.0.1:{port}/x")
        before = bus_refs(b)
        started = time.monotonic()
        code, out, err = gb(b, "bob", "claim", "config/")
        took = time.monotonic() - started
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "could not be reached: no answer within 2s" in err and "--offline" in err
    assert took < 20, f"the claim waited {took:.0f}s on a silent remote"
    assert bus_refs(b) == before


@pytest.mark.parametrize("where", ["missing path", "closed port"])
def test_the_unreachable_remote_error_gives_gits_reason(net: Net, pair: tuple[Bus, Bus], where: str) -> None:
    b = net.clones[1]
    dead = (b.parent / "gone.git").as_uri() if where == "missing path" else f"git://127.0.0.1:{dead_port()}/x"
    set_url(b, dead)
    for command in (["claim", "config/"], ["sync"]):
        code, _, err = gb(b, "bob", *command)
        assert code == 1
        cause = "does not appear to be a git repository" if where == "missing path" else "Connection refused"
        assert cause in err, f"`gitbus {command[0]}` hides git's reason: {err}"
        assert ".." not in err, err


_DENY_BUS_HOOK = """#!/bin/sh
while read old new ref; do
  case "$ref" in refs/bus/*) echo "custom refs are not allowed: $ref" >&2; exit 1;; esac
done
exit 0
"""


def _refuse_bus_refs(bare: Path, how: str) -> None:
    if how == "pre-receive hook":
        hook = bare / "hooks" / "pre-receive"
        hook.write_text(_DENY_BUS_HOOK)
        hook.chmod(0o755)
    else:
        git(bare, "config", "receive.hideRefs", "refs/bus")


@pytest.mark.parametrize("how", ["pre-receive hook", "hidden refs"])
def test_a_host_that_refuses_bus_refs_is_named_clearly(net: Net, how: str) -> None:
    a = net.clones[0]
    assert gb(a, "alice", "init", "--remote", "origin")[0] == 0
    assert gb(a, "alice", "discover", "hello")[0] == 0
    _refuse_bus_refs(net.bare, how)
    for command in ("push", "sync"):
        code, out, err = gb(a, "alice", command)
        assert code == 1 and out == "", err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "refused refs under refs/bus/" in lines[0], err
        assert "docs/sync.md" in lines[0]
    assert bus_refs(net.bare) == {}
    # Heads still work: the refusal is about the bus namespace only.
    git(a, "push", "-q", "origin", "main:refs/heads/other")


@pytest.mark.parametrize("how", ["pre-receive hook", "hidden refs"])
def test_a_claim_on_a_host_that_refuses_bus_refs_says_so(net: Net, how: str) -> None:
    a = net.clones[0]
    assert gb(a, "alice", "init", "--remote", "origin")[0] == 0
    _refuse_bus_refs(net.bare, how)
    before = bus_refs(a)
    code, _, err = gb(a, "alice", "claim", "config/")
    assert code == 1
    assert "refused refs under refs/bus/" in err, f"a refusing host is reported as unreachable: {err}"
    assert bus_refs(a) == before
