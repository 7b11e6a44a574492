"""Sharing the bus through a git remote: real bare repositories over file://, real clones, real git.

Each clone stands for a machine. Messages travel only through `gitbus sync` / `pull` / `push`;
ledger steps (claim, release, take) are decided by the remote as soon as a bus remote is set, or
locally with `offline=True` and re-decided at the next sync. The helpers here (a bare remote, clones,
a dead address, a walk of the remote's ledger) are shared by test_remote.py, test_sync_daemon.py,
test_convergence.py and test_hostile_remote.py. Fetch, push and which remote carries the bus are
tested in test_remote.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gitbus import remote, settings, state, sync
from gitbus.bus import Bus
from gitbus.claims import Claim, all_claims
from gitbus.cli import app
from gitbus.clock import FakeClock
from gitbus.errors import ClaimConflict, Conflict, CorruptMessage, GitbusError
from gitbus.git import Oid, RefMoved, Repository
from gitbus.ids import LEDGER_REF, LEDGERS_PREFIX, MAIN_LEDGER, AgentName, agent_ref
from gitbus.ledger import Ledger
from gitbus.ledger_shards import ended_at, shard_of_path
from gitbus.message import Kind, Message, decode
from gitbus.paths import overlaps
from gitbus.watch import Watcher

from .conftest import git, make_repo, raw_git

runner = CliRunner()


# -- helpers shared with test_remote, test_sync_daemon, test_convergence, test_hostile_remote -----


def bare_remote(root: Path, name: str = "remote.git") -> Path:
    """A bare repository with one commit on main, and a reflog of every ref it ever accepts."""
    root.mkdir(parents=True, exist_ok=True)
    bare = root / name
    git(root, "init", "-q", "--bare", "-b", "main", str(bare))
    git(bare, "config", "core.logAllRefUpdates", "always")
    seed = make_repo(root / f"{name}-seed")
    git(seed, "push", "-q", bare.as_uri(), "main")
    return bare


def clone(url: str, dest: Path) -> Path:
    git(dest.parent, "clone", "-q", url, str(dest))
    return dest


def sharing(path: Path, agent: str, clock: FakeClock, remote: str | None = "origin") -> Bus:
    """Open a bus in a clone as `agent` and make `remote` its bus remote (the library's way)."""
    bus = Bus.open(path, agent, clock)
    bus.init(remote)
    return bus


def offline(bus: Bus) -> Bus:
    """The same agent on the same clone, deciding ledger steps locally."""
    return Bus(bus.repo, bus.agent, bus.clock, bus.cwd, offline=True)


def set_url(path: Path, url: str, remote: str = "origin") -> None:
    git(path, "remote", "set-url", remote, url)


def dead_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def stalled_port() -> Iterator[int]:
    """A 127.0.0.1 port that accepts connections and never says a word, until the block ends."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()


def bus_refs(path: Path) -> dict[str, str]:
    out = git(path, "for-each-ref", "--format=%(refname) %(objectname)", "refs/bus/")
    return dict(line.split(" ", 1) for line in out.splitlines())


def ids(bus: Bus) -> list[str]:
    return [m.id for m in bus.log(n=None)]


def order_keys(bus: Bus) -> list[tuple[int, str]]:
    return [(m.time, m.id) for m in bus.log(n=None)]


def assert_bus_order(bus: Bus) -> None:
    keys = order_keys(bus)
    assert keys == sorted(keys, key=lambda k: (k[0], int(k[1], 16)), reverse=True), "log is not (time, id)"
    assert len({k[1] for k in keys}) == len(keys), "a message appears twice"


def gb(path: Path, agent: str, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; an exception that escaped it (a crash, not an exit) is shown in stderr."""
    r = runner.invoke(app, ["-C", str(path), "-a", agent, *args], env={"COLUMNS": "120"})
    crashed = r.exception is not None and not isinstance(r.exception, SystemExit)
    return r.exit_code, r.stdout, r.stderr + (f"CRASHED: {r.exception!r}" if crashed else "")


@dataclass(frozen=True)
class LedgerStep:
    """One commit of a ledger: its message (None for a foreign commit) and the claims of its state."""

    commit: Oid
    message: Message | None
    claims: list[Claim]


def ledger_steps(repo: Repository, tip: Oid | None) -> Iterator[LedgerStep]:
    """Every state a ledger went through, newest first (the ledger is a single-parent chain)."""
    at = tip
    while at is not None:
        commit = repo.read_commit(at)
        assert len(commit.parents) <= 1, f"ledger commit {at} has {len(commit.parents)} parents"
        try:
            msg: Message | None = decode(commit.message)
        except CorruptMessage:
            msg = None
        yield LedgerStep(at, msg, all_claims(Ledger(repo, commit.tree)))
        at = commit.parents[0] if commit.parents else None


def overlapping_live(claims: list[Claim], now: int) -> list[tuple[Claim, Claim]]:
    live = [c for c in claims if c.live(now)]
    return [
        (a, b)
        for i, a in enumerate(live)
        for b in live[i + 1 :]
        if a.owner != b.owner and overlaps(a.path, b.path)
    ]


def _reflog(bare: Path, ref: str) -> list[str]:
    """Every value `ref` of the bare remote ever had, oldest first (read from the reflog file itself:
    `git reflog` walks commits, and `refs/bus/ledger` ends at a blob)."""
    log = bare / "logs" / ref
    lines = log.read_text().splitlines() if log.exists() else []
    return [v for v in (line.split()[1] for line in lines) if v.strip("0")]


def remote_ledger_history(bare: Path, observer: Path) -> dict[str, list[LedgerStep]]:
    """Fetch the remote's ledgers into `observer` (a clone) and check every state each ever accepted;
    returns each ledger's steps, newest first, by ref.

    The bare remote keeps a reflog (`core.logAllRefUpdates=always`): every value a ledger ever had must
    still be on its final chain (nothing accepted was later rewritten away), so walking the final
    chains visits every accepted state. The single ledger of old, `refs/bus/ledger`, may only have
    moved once, to a tombstone, and every commit it held is on the main ledger's chain. A claim shard
    holds only claims of its own paths, so two claims that overlap (their top components fold alike)
    are always on one shard: at each state of each ledger, no two live claims of different agents
    overlap.
    """
    git(observer, "fetch", "-q", "origin", "+refs/bus/ledger*:refs/observed/ledger*")
    repo = Repository.open(observer)
    found = repo.refs("refs/observed/ledgers/")
    tips = {LEDGERS_PREFIX + name[len("refs/observed/ledgers/") :]: tip for name, tip in found.items()}
    single = repo.ref("refs/observed/ledger")
    history = _reflog(bare, LEDGER_REF)
    blobs = [v for v in history if git(bare, "cat-file", "-t", v).strip() == "blob"]
    if single is not None and repo.object_kind(single) == "commit":
        assert not blobs, "the remote's refs/bus/ledger went back to a commit after it moved"
        tips[LEDGER_REF] = single
    else:
        assert len(set(blobs)) <= 1 and blobs == history[len(history) - len(blobs) :], history
        assert single is None or ended_at(repo, single) in (None, *history), "the tombstone names another"
    out: dict[str, list[LedgerStep]] = {}
    for ref, tip in sorted(tips.items()):
        steps = list(ledger_steps(repo, tip))
        on_chain = {s.commit for s in steps}
        assert set(_reflog(bare, ref)) <= on_chain, (
            f"the remote's {ref} was rewritten: an accepted state is gone"
        )
        for step in steps:
            now = step.message.time if step.message else 0
            bad = overlapping_live(step.claims, now)
            assert not bad, f"the remote accepted overlapping live claims at {step.commit}: {bad}"
            if ref not in (LEDGER_REF, MAIN_LEDGER):
                strays = [c.path for c in step.claims if shard_of_path(c.path) != ref]
                assert not strays, (
                    f"the remote's {ref} holds claims of other shards at {step.commit}: {strays}"
                )
        out[ref] = steps
    if blobs:  # every commit the single ledger held is on the main ledger now
        main = {s.commit for s in out.get(MAIN_LEDGER, [])}
        assert set(history) - set(blobs) <= main, "a state of the single ledger is gone from ledgers/main"
    return out


# -- fixtures ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Net:
    bare: Path
    url: str
    clones: list[Path]

    @classmethod
    def make(cls, root: Path) -> Net:
        """A bare remote reached over file:// and two clones of it, `a` and `b`."""
        bare = bare_remote(root)
        url = bare.as_uri()
        return cls(bare, url, [clone(url, root / name) for name in ("a", "b")])

    def pair(self, clock: FakeClock) -> tuple[Bus, Bus]:
        """alice on clone a and bob on clone b, both sharing the bus through origin."""
        return sharing(self.clones[0], "alice", clock), sharing(self.clones[1], "bob", clock)


@pytest.fixture
def net(tmp_path: Path) -> Net:
    return Net.make(tmp_path)


@pytest.fixture
def pair(net: Net, clock: FakeClock) -> tuple[Bus, Bus]:
    return net.pair(clock)


# -- messages -----------------------------------------------------------------------------------------


def test_git_clone_alone_never_brings_the_bus(net: Net, pair: tuple[Bus, Bus], tmp_path: Path) -> None:
    alice, _ = pair
    alice.discover("the db config is in config/db.yaml")
    sync.sync(alice.repo, "origin")
    assert git(net.bare, "for-each-ref", "refs/bus/agents/alice").strip()

    fresh = clone(net.url, tmp_path / "fresh")
    assert bus_refs(fresh) == {}
    git(fresh, "fetch", "-q", "origin")
    assert bus_refs(fresh) == {}, "a plain git fetch brought refs/bus"
    sync.sync(Repository.open(fresh), "origin", send=False)
    assert bus_refs(fresh)[agent_ref(AgentName("alice"))] == bus_refs(net.clones[0])["refs/bus/agents/alice"]


def test_messages_reach_the_other_clone_with_the_same_ids_in_the_same_order(pair: tuple[Bus, Bus]) -> None:
    alice, bob = pair
    posted = [alice.discover("handler retries 3 times", ["internal/api/"]).id]
    q = alice.ask("who owns config/?", paths=["config/"])
    posted.append(q.id)
    posted.append(bob.discover("README is stale").id)
    posted.append(bob.request("split the handlers", paths=["internal/api/"]).id)

    sync.sync(alice.repo, "origin")
    sync.sync(bob.repo, "origin")
    posted.append(bob.answer(q.id, "I do").id)
    sync.sync(bob.repo, "origin")
    report = sync.sync(alice.repo, "origin", send=False)  # a pull
    assert report.pushed == [] and agent_ref(AgentName("bob")) in report.updated

    assert ids(alice) == ids(bob)
    assert order_keys(alice) == order_keys(bob)
    assert set(posted) <= set(ids(alice))
    assert_bus_order(alice)
    answer = alice.find(posted[-1])
    assert answer.reply_to == q.id and answer.time > q.time

    # Syncing again changes nothing and duplicates nothing.
    before = bus_refs(alice.repo.root)
    again = sync.sync(alice.repo, "origin")
    assert (again.updated, again.merged, again.pushed) == ([], [], [])
    assert bus_refs(alice.repo.root) == before and ids(alice) == ids(bob)


def test_a_sync_of_several_rounds_tells_each_ref_once(
    net: Net, pair: tuple[Bus, Bus], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round that loses its push takes the remote in again: what it passed over, and what it took
    in, in both rounds, is told once, not once per round."""
    alice, bob = pair
    alice.discover("a real message")
    sync.sync(alice.repo, "origin")
    tip = git(net.bare, "rev-parse", "refs/bus/agents/alice").strip()
    git(net.bare, "update-ref", "refs/bus/agents/UPPER", tip)
    git(net.bare, "update-ref", "refs/bus/ledgers/nothex", tip)
    bob.discover("news of bob's, so the sync pushes")
    lost = []
    real = sync.push

    def loses_once(*args: Any, **kw: Any) -> None:
        if not lost:
            lost.append(True)
            alice.discover("alice's news, pushed while bob's push loses its race")
            real(alice.repo, "origin", remote.Report("origin"))
            raise RefMoved("refs/bus/agents/bob", None)
        real(*args, **kw)

    monkeypatch.setattr(sync, "push", loses_once)
    report = sync.sync(bob.repo, "origin")
    assert lost and "refs/bus/agents/bob" in report.pushed
    assert sorted(report.ignored) == [
        "refs/bus/agents/UPPER",
        "refs/bus/ledgers/nothex",
    ]
    assert report.updated.count("refs/bus/agents/alice") == 1, report.updated  # taken in two rounds


@pytest.mark.parametrize("name", ["UPPER", "all", "x/y"])
def test_a_remote_chain_under_a_name_gitbus_refuses_is_never_taken_in(
    net: Net, pair: tuple[Bus, Bus], name: str
) -> None:
    alice, bob = pair
    alice.discover("a real message")
    sync.sync(alice.repo, "origin")
    tip = git(net.bare, "rev-parse", "refs/bus/agents/alice").strip()
    git(net.bare, "update-ref", f"refs/bus/agents/{name}", tip)  # written on the remote by hand
    report = sync.sync(bob.repo, "origin")
    assert report.ignored == [f"refs/bus/agents/{name}"]
    assert f"refs/bus/agents/{name}" not in bus_refs(bob.repo.root)
    assert "alice" in {a.name for a in bob.agents()} and name not in {a.name for a in bob.agents()}


def test_pull_never_deletes_a_local_only_bus_ref(net: Net, pair: tuple[Bus, Bus], clock: FakeClock) -> None:
    alice, bob = pair
    alice.discover("on the remote")
    sync.sync(alice.repo, "origin")
    carol = sharing(net.clones[1], "carol", clock)  # a chain on clone b that the remote lacks
    note = carol.discover("local only, never pushed")
    local_only = bus_refs(net.clones[1])["refs/bus/agents/carol"]

    for _ in range(2):
        sync.sync(bob.repo, "origin", send=False)
        assert bus_refs(net.clones[1])["refs/bus/agents/carol"] == local_only
    assert "refs/bus/agents/carol" not in bus_refs(net.bare)
    assert note.id in ids(bob)
    # A plain git fetch with --prune does not touch refs/bus either.
    git(net.clones[1], "fetch", "-q", "--prune", "origin")
    assert bus_refs(net.clones[1])["refs/bus/agents/carol"] == local_only


def test_one_agent_name_on_two_clones_is_joined_by_a_merge_without_rewriting(
    net: Net, clock: FakeClock
) -> None:
    a = sharing(net.clones[0], "twin", clock)
    sync.sync(a.repo, "origin")
    sync.sync(Repository.open(net.clones[1]), "origin", send=False)
    b = sharing(net.clones[1], "twin", clock)  # already on the bus: b shares a's join, the chains fork below
    assert ids(b) == ids(a)
    clock.advance(1000)
    on_a = a.discover("posted on machine a")
    on_b = b.discover("posted on machine b")
    commit_a = bus_refs(net.clones[0])["refs/bus/agents/twin"]
    commit_b = bus_refs(net.clones[1])["refs/bus/agents/twin"]

    sync.sync(a.repo, "origin")
    report = sync.sync(b.repo, "origin")
    assert report.merged == ["refs/bus/agents/twin"]
    sync.sync(a.repo, "origin")

    for bus in (a, b):
        got = {m.id: m for m in bus.log(n=None)}
        assert got[on_a.id] == on_a and got[on_b.id] == on_b
        tip = bus.repo.ref("refs/bus/agents/twin")
        assert tip is not None
        assert bus.repo.is_ancestor(Oid(commit_a), tip) and bus.repo.is_ancestor(Oid(commit_b), tip)
    assert ids(a) == ids(b) and order_keys(a) == order_keys(b)
    assert bus_refs(net.clones[0]) == bus_refs(net.clones[1])
    later = a.discover("after the merge")
    assert later.time > max(on_a.time, on_b.time)


def test_two_clones_that_joined_one_name_separately_keep_both_histories(net: Net, clock: FakeClock) -> None:
    a = sharing(net.clones[0], "twin", clock)
    b = sharing(net.clones[1], "twin", clock)  # two unrelated chains for one name
    posted = [a.discover("from a").id, b.discover("from b").id]
    for bus in (a, b, a):
        sync.sync(bus.repo, "origin")
    assert len(a.log(n=None, kinds=["join"])) == 2
    assert ids(a) == ids(b) and set(posted) <= set(ids(a))
    assert_bus_order(a)


# -- the remote decides the ledger ---------------------------------------------------------------------


def test_an_overlapping_claim_on_another_clone_is_refused_by_the_remote_without_a_sync(
    pair: tuple[Bus, Bus],
) -> None:
    alice, bob = pair
    granted = alice.claim(["internal/"], reason="splitting handlers")
    with pytest.raises(ClaimConflict) as e:
        bob.claim(["internal/api/handler.go"])
    assert e.value.holder == "alice" and e.value.held_path == "internal/"
    assert [(c.owner, c.path, c.id) for c in bob.claims()] == [("alice", "internal/", granted.id)]


def test_the_cli_claim_on_another_clone_exits_3_naming_the_holder(net: Net) -> None:
    a, b = net.clones
    for path, agent in ((a, "alice"), (b, "bob")):
        assert gb(path, agent, "init")[0] == 0
        assert gb(path, agent, "remote", "origin")[0] == 0
    assert gb(a, "alice", "claim", "internal/")[0] == 0
    code, out, err = gb(b, "bob", "claim", "internal/api/", "--json")
    assert code == 3, err
    assert json.loads(out)["holder"] == "alice"
    assert "alice holds internal/" in err
    assert len(err.strip().splitlines()) == 1


def test_a_release_goes_through_the_remote(pair: tuple[Bus, Bus]) -> None:
    alice, bob = pair
    alice.claim(["config/"])
    with pytest.raises(ClaimConflict):
        bob.claim(["config/db.yaml"])
    alice.release(["config/"])
    granted = bob.claim(["config/db.yaml"])  # no sync in between: the remote knows
    sync.sync(alice.repo, "origin", send=False)
    assert [(c.owner, c.path, c.id) for c in alice.claims()] == [("bob", "config/db.yaml", granted.id)]


def test_two_clones_taking_one_request_one_wins(net: Net, pair: tuple[Bus, Bus], clock: FakeClock) -> None:
    alice, bob = pair
    req = alice.request("split the handlers", paths=["internal/api/"])
    sync.sync(alice.repo, "origin")
    sync.sync(bob.repo, "origin")
    carl = sharing(net.clones[0], "carl", clock)  # a second agent on clone a
    took = bob.take(req.id)
    with pytest.raises(Conflict) as e:
        carl.take(req.id)
    assert "bob" in str(e.value)
    code, _, err = gb(net.clones[0], "carl", "take", req.id)
    assert code == 3 and "already taken by bob" in err
    assert gb(net.clones[1], "bob", "done", req.id, "split")[0] == 0
    sync.sync(alice.repo, "origin", send=False)
    assert took.id in ids(alice)


# -- offline ledger steps, decided again at sync ---------------------------------------------------------


def test_an_offline_claim_nobody_contested_survives_sync_with_its_id(
    net: Net, pair: tuple[Bus, Bus], tmp_path: Path
) -> None:
    alice, bob = pair
    alice.claim(["README.md"])
    set_url(net.clones[1], (tmp_path / "nowhere.git").as_uri())
    with pytest.raises(GitbusError, match="--offline"):
        bob.claim(["config/"])
    mine = offline(bob).claim(["config/"], reason="tuning the pool")
    assert "config/" not in [c.path for c in Bus.open(net.clones[0], "alice").claims()]
    alice.discover("meanwhile")  # the remote moves on (a message, not a conflict)
    sync.sync(alice.repo, "origin")

    set_url(net.clones[1], net.url)
    report = sync.sync(bob.repo, "origin")
    assert report.dropped == []
    sync.sync(alice.repo, "origin")
    for bus in (alice, bob):
        held = {c.path: c for c in bus.claims()}
        assert held["config/"].id == mine.id and held["config/"].owner == "bob"
        assert held["README.md"].owner == "alice"
        assert mine.id in ids(bus)
    assert ids(alice) == ids(bob)


def test_an_offline_claim_that_lost_is_dropped_at_sync_and_its_agent_told(pair: tuple[Bus, Bus]) -> None:
    alice, bob = pair
    lost = offline(bob).claim(["internal/"], reason="offline on a train")
    won = alice.claim(["internal/api/"])  # the remote grants alice: it never saw bob's claim
    report = sync.sync(bob.repo, "origin")
    assert [m.get("dropped") for m in report.dropped] == [lost.id]
    assert [(c.owner, c.path, c.id) for c in bob.claims()] == [("alice", "internal/api/", won.id)]
    notes = [m for m in bob.inbox() if m.get("dropped")]
    assert [m.get("dropped") for m in notes] == [lost.id]
    assert notes[0].to == "bob" and lost.id in notes[0].text
    assert lost.id not in ids(bob)

    sync.sync(alice.repo, "origin")
    sync.sync(bob.repo, "origin", send=False)
    assert ids(alice) == ids(bob)
    assert [c.id for c in alice.claims()] == [won.id]
    assert not [m for m in alice.inbox() if m.get("dropped")], "alice was told of bob's drop"


def test_the_online_step_that_drops_an_earlier_offline_claim_says_so(pair: tuple[Bus, Bus]) -> None:
    """Issue 16: reconciliation is told by the command that caused it, not only in the inbox."""
    alice, bob = pair
    lost = offline(bob).claim(["internal/"], reason="offline on a train")
    alice.claim(["internal/api/"])  # the remote grants alice: it never saw bob's claim
    # Online, on the claim shard of internal/: bob's offline steps there are re-decided on the
    # remote's tip first.
    bob.claim(["internal/db/"])
    told = [n for n in bob.notices if lost.id in n]
    assert len(told) == 1 and "dropped" in told[0] and "\n" not in told[0], bob.notices
    assert "alice holds internal/api/" in told[0], told[0]
    code, _, err = gb(bob.repo.root, "bob", "claim", "internal/web/")  # and nothing twice
    assert code == 0 and lost.id not in err, err


def test_a_dropped_note_survives_a_second_pull_before_it_is_pushed(pair: tuple[Bus, Bus]) -> None:
    alice, bob = pair
    lost = offline(bob).claim(["internal/"])
    alice.claim(["internal/api/"])
    first = sync.sync(bob.repo, "origin", send=False)  # a pull: the drop is decided, not yet pushed
    assert [m.get("dropped") for m in first.dropped] == [lost.id]
    note = first.dropped[0]
    alice.claim(["config/"])  # the remote moves again before bob pushes
    sync.sync(bob.repo, "origin")
    sync.sync(alice.repo, "origin")
    for bus in (alice, bob):
        assert note.id in ids(bus), "the note telling bob his claim was dropped is gone"
    assert [m.get("dropped") for m in bob.inbox() if m.get("dropped")] == [lost.id]


def test_an_offline_release_and_take_are_replayed_on_the_remote(
    net: Net, pair: tuple[Bus, Bus], clock: FakeClock
) -> None:
    alice, bob = pair
    alice.claim(["config/"])
    req = alice.request("write the docs")
    sync.sync(alice.repo, "origin")
    sync.sync(bob.repo, "origin")
    sync.sync(alice.repo, "origin", send=False)
    took = offline(bob).take(req.id)
    released = offline(alice).release(["config/"])
    assert released is not None
    sync.sync(alice.repo, "origin")
    sync.sync(bob.repo, "origin")
    sync.sync(alice.repo, "origin")
    assert ids(alice) == ids(bob)
    assert {took.id, released.id} <= set(ids(alice))
    assert alice.claims() == bob.claims() == []
    carl = sharing(net.clones[0], "carl", clock)
    with pytest.raises(Conflict, match="bob"):
        carl.take(req.id)


# -- the remote moving while a clone pushes ------------------------------------------------------------
#
# Two interleavings of a rival's ledger push with ours, both made deterministic with real git:
# - "before our push": the rival lands between our fetch and our push, so git's client-side lease
#   check fails ("stale info"). A `git` earlier on PATH lands it, then runs the real git.
# - "inside our push": both pushes passed the lease check (both saw the same advertised tip) and the
#   remote refuses ours under its ref lock ("[remote rejected] (atomic transaction failed)", "cannot
#   lock ref"). A pre-receive hook lands it, outside git's quarantine, just before our ref update.
# Either way the remote moved: the step must be re-decided on its new tip, never reported as an
# unreachable remote.

_RIVAL_IN_HOOK = """#!/bin/sh
if [ ! -e "{marker}" ]; then
  touch "{marker}"
  printf '{updates}' | env -u GIT_QUARANTINE_PATH git update-ref --stdin
fi
exit 0
"""

_RIVAL_BEFORE_PUSH = """#!/bin/sh
if [ "$1" = push ] && [ ! -e "{marker}" ]; then
  touch "{marker}"
  printf '{updates}' | "{git}" --git-dir="{bare}" update-ref --stdin
fi
exec "{git}" "$@"
"""

INTERLEAVINGS = ["before our push", "inside our push"]


def _ledgers(repo: Repository) -> dict[str, Oid]:
    """Every ledger ref of `repo`, `refs/bus/ledger` (the tombstone) too."""
    single = repo.ref(LEDGER_REF)
    return {**repo.refs(LEDGERS_PREFIX), **({LEDGER_REF: single} if single else {})}


def rival_lands_during_next_push(
    net: Net, rival: Bus, paths: list[str], when: str, monkeypatch: pytest.MonkeyPatch
) -> Message:
    """Decide `rival`'s claim on the remote's tips without publishing it; every ledger ref it moved
    lands on the remote at once during the next push anyone makes (`when`: one of INTERLEAVINGS)."""
    sync.sync(rival.repo, "origin")
    before = _ledgers(rival.repo)
    staged = offline(rival).claim(paths)
    moved = {r: t for r, t in _ledgers(rival.repo).items() if before.get(r) != t}
    assert shard_of_path(paths[0]) in moved, moved
    for i, tip in enumerate(moved.values()):  # the objects only
        git(rival.repo.root, "push", "-q", "origin", f"{tip}:refs/staged/ledger{i}")
    updates = "".join(f"update {r} {t}\\n" for r, t in moved.items())
    marker = net.bare / "rival-landed"
    if when == "inside our push":
        hook = net.bare / "hooks" / "pre-receive"
        hook.write_text(_RIVAL_IN_HOOK.format(marker=marker, updates=updates))
        hook.chmod(0o755)
    else:
        real = shutil.which("git")
        assert real is not None
        shim = net.bare.parent / "shim"
        shim.mkdir()
        (shim / "git").write_text(
            _RIVAL_BEFORE_PUSH.format(marker=marker, git=real, bare=net.bare, updates=updates)
        )
        (shim / "git").chmod(0o755)
        monkeypatch.setenv("PATH", f"{shim}{os.pathsep}{os.environ['PATH']}")
    return staged


@pytest.mark.parametrize("when", INTERLEAVINGS)
def test_a_claim_that_loses_the_race_on_the_remote_is_refused_naming_the_winner(
    pair: tuple[Bus, Bus], net: Net, when: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = pair
    sync.sync(bob.repo, "origin")
    won = rival_lands_during_next_push(net, alice, ["internal/"], when, monkeypatch)
    with pytest.raises(ClaimConflict) as e:
        bob.claim(["internal/api/"])
    assert e.value.holder == "alice"
    assert (net.bare / "rival-landed").exists()
    assert [c.id for c in bob.claims()] == [won.id]


@pytest.mark.parametrize("when", INTERLEAVINGS)
def test_a_sync_whose_ledger_push_loses_the_race_pulls_and_retries(
    pair: tuple[Bus, Bus], net: Net, when: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = pair
    sync.sync(bob.repo, "origin")
    # Two claims that do not overlap, on one claim shard: the second push there loses the race.
    theirs = rival_lands_during_next_push(net, alice, ["src/a.py"], when, monkeypatch)
    mine = offline(bob).claim(["src/b.py"])
    report = sync.sync(bob.repo, "origin")
    assert (net.bare / "rival-landed").exists()
    assert shard_of_path("src/") in report.pushed and report.dropped == []
    sync.sync(alice.repo, "origin")
    for bus in (alice, bob):
        assert {c.id for c in bus.claims()} == {theirs.id, mine.id}


@pytest.mark.parametrize("when", INTERLEAVINGS)
def test_an_online_claim_that_first_publishes_offline_steps_survives_the_remote_moving(
    pair: tuple[Bus, Bus], net: Net, when: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = pair
    sync.sync(bob.repo, "origin")
    # `pending` is on the shard the rival lands on (no overlap): publishing it loses the race once.
    theirs = rival_lands_during_next_push(net, alice, ["lib/a.py"], when, monkeypatch)
    pending = offline(bob).claim(["lib/b.py"])
    code, _, err = gb(bob.repo.root, "bob", "claim", "internal/")  # publishes `pending` first
    assert code == 0, err
    assert (net.bare / "rival-landed").exists()
    sync.sync(alice.repo, "origin")
    held = {c.path: c.owner for c in alice.claims()}
    assert held == {"lib/a.py": "alice", "lib/b.py": "bob", "internal/": "bob"}
    assert {pending.id, theirs.id} <= set(ids(alice))


# -- background sync by the watcher ----------------------------------------------------------------------


def _wait_until(check: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"gave up after {seconds:.0f} s waiting until {what}"
        time.sleep(0.1)


def test_the_watcher_pulls_and_pushes_the_bus_in_the_background(
    net: Net, pair: tuple[Bus, Bus], tmp_path: Path
) -> None:
    alice, bob = pair
    b = net.clones[1]
    settings.save(bob.repo.common_dir, "sync_interval", 1)
    with watching(b):
        news = alice.discover("from machine a")
        sync.sync(alice.repo, "origin")
        _wait_until(lambda: news.id in ids(bob), "b's watcher pulled a's message")
        mine = bob.discover("from machine b")
        _wait_until(
            lambda: bus_refs(net.bare).get("refs/bus/agents/bob") == bus_refs(b)["refs/bus/agents/bob"],
            "b's watcher pushed b's message",
        )
        sync.sync(alice.repo, "origin", send=False)
        assert mine.id in ids(alice)
        assert (remote.last_status(bob.repo) or {}).get("error") is None

        set_url(b, (tmp_path / "gone.git").as_uri())  # the remote goes away: recorded, not fatal
        _wait_until(
            lambda: bool((remote.last_status(bob.repo) or {}).get("error")), "the failure was recorded"
        )
        assert bob.status().sync is not None
        later = bob.discover("still working locally")
        assert later.id in ids(bob)


def test_a_remote_that_never_answers_does_not_hold_up_the_watchers_context_files(
    net: Net, pair: tuple[Bus, Bus], worktrees_of_b: Path
) -> None:
    _, bob = pair
    b = net.clones[1]
    settings.save(bob.repo.common_dir, "sync_interval", 1)
    with stalled_port() as port:
        set_url(b, f"git://127.0.0.1:{port}/x")  # every sync now waits the full network timeout
        with watching(b):
            peer = Bus.open(worktrees_of_b, "carol")
            peer.join("carol")
            peer.discover("posted while the remote hangs")
            context_file = b / ".gitbus" / "context.md"
            _wait_until(
                lambda: context_file.exists() and "posted while the remote hangs" in context_file.read_text(),
                "the context file showed the post",
                seconds=10,
            )


@contextlib.contextmanager
def watching(root: Path) -> Iterator[Watcher]:
    """A watcher of `root`'s repository running in a thread until the block ends."""
    watcher = Watcher(Repository.open(root))
    assert watcher.acquire()
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        yield watcher
    finally:
        watcher.stop()
        thread.join(10)
    assert not thread.is_alive()


@pytest.fixture
def worktrees_of_b(net: Net, tmp_path: Path) -> Path:
    """A second worktree of clone b, for a second agent on that machine."""
    wt = tmp_path / "b-carol"
    git(net.clones[1], "worktree", "add", "-q", "-b", "carol", str(wt))
    return wt


# -- the CLI ---------------------------------------------------------------------------------------------


def test_push_pull_and_sync_print_json_reports(net: Net, tmp_path: Path) -> None:
    a, b = net.clones
    for path, agent in ((a, "alice"), (b, "bob")):
        assert gb(path, agent, "init", "--remote", "origin")[0] == 0
    assert gb(a, "alice", "discover", "hello")[0] == 0

    code, out, err = gb(a, "alice", "push", "--json")
    assert code == 0, err
    assert json.loads(out) == {
        "remote": "origin",
        "updated": [],
        "merged": [],
        "pushed": ["refs/bus/agents/alice"],
        "dropped": [],
        "ignored": [],
        "refused": [],
        "restored": [],
        "passed": [],
    }
    code, out, err = gb(b, "bob", "pull", "--json")
    assert code == 0, err
    pulled = json.loads(out)
    assert pulled["updated"] == ["refs/bus/agents/alice"] and pulled["pushed"] == []
    code, out, err = gb(b, "bob", "sync", "--json")
    assert code == 0, err
    assert json.loads(out)["pushed"] == ["refs/bus/agents/bob"]
    code, out, _ = gb(b, "bob", "sync")
    assert code == 0 and out.strip() == "origin: 0 ref(s) updated, 0 merged, 0 pushed"

    # An explicit REMOTE: any git remote, without making it the bus remote.
    backup = bare_remote(tmp_path / "elsewhere", "backup.git")
    git(a, "remote", "add", "backup", backup.as_uri())
    code, out, err = gb(a, "alice", "push", "backup", "--json")
    assert code == 0, err
    assert json.loads(out)["remote"] == "backup"
    assert bus_refs(backup)["refs/bus/agents/alice"] == bus_refs(a)["refs/bus/agents/alice"]
    assert settings.load(Repository.open(a).common_dir)["remote"] == "origin"


# -- no two clones ever both hold overlapping claims -----------------------------------------------------


def test_every_remote_ledger_state_is_free_of_overlaps(
    net: Net, pair: tuple[Bus, Bus], tmp_path: Path
) -> None:
    alice, bob = pair
    alice.claim(["internal/"])
    for p in ("internal/api/", "config/"):
        with contextlib.suppress(ClaimConflict):
            bob.claim([p])
    observer = clone(net.url, tmp_path / "observer")
    history = remote_ledger_history(net.bare, observer)
    kinds = {ref: [s.message.kind for s in steps if s.message] for ref, steps in history.items()}
    assert kinds == {shard_of_path("internal/"): [Kind.CLAIM], shard_of_path("config/"): [Kind.CLAIM]}


def test_two_clones_that_differ_in_core_ignorecase_never_both_hold_docs_and_docs_readme(
    net: Net, clock: FakeClock
) -> None:
    a, b = net.clones
    git(a, "config", "core.ignorecase", "false")
    git(b, "config", "core.ignorecase", "true")
    alice, bob = sharing(a, "alice", clock), sharing(b, "bob", clock)
    alice.claim(["Docs/"])
    with pytest.raises(ClaimConflict, match="alice holds Docs/"):
        bob.claim(["docs/readme.md"])
    bob.claim(["src/"])
    with pytest.raises(ClaimConflict, match="bob holds src/"):
        alice.claim(["SRC/main.c"])


# -- signatures ---------------------------------------------------------------------------------------


def ssh_signing(clone_path: Path, key_dir: Path, agent: str) -> str:
    """Make git sign every commit of `clone_path` with a new SSH key for `agent`; its public key line."""
    key_dir.mkdir(parents=True, exist_ok=True)
    key = key_dir / agent
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", agent, "-f", str(key)], check=True)
    for k, v in (("gpg.format", "ssh"), ("user.signingkey", f"{key}.pub"), ("commit.gpgsign", "true")):
        git(clone_path, "config", k, v)
    return (key_dir / f"{agent}.pub").read_text().strip()


def allow_signers(clone_path: Path, file: Path, signers: dict[str, str]) -> None:
    """Trust these keys in `clone_path`, each as the principal (agent name) it maps to."""
    file.write_text("".join(f'{name} namespaces="git" {pub}\n' for name, pub in signers.items()))
    git(clone_path, "config", "gpg.ssh.allowedSignersFile", str(file))


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
def test_bus_commits_are_signed_where_git_signs_commits_and_verify_as_their_sender(
    net: Net, clock: FakeClock
) -> None:
    a = net.clones[0]
    pub = ssh_signing(a, net.bare.parent / "keys", "alice")
    allow_signers(a, net.bare.parent / "allowed", {"alice": pub})
    alice = sharing(a, "alice", clock)
    msg = alice.discover("signed and sealed")
    alice.claim(["config/"])
    assert git(a, "log", "-1", "--format=%G? %GS", "refs/bus/agents/alice").split() == ["G", "alice"]
    assert git(a, "log", "-1", "--format=%G? %GS", shard_of_path("config/")).split() == ["G", "alice"]
    assert alice.find(msg.id) == msg


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
def test_a_clone_that_requires_signatures_takes_in_only_commits_signed_by_their_sender(
    net: Net, clock: FakeClock, tmp_path: Path
) -> None:
    a, b = net.clones
    alice_pub = ssh_signing(a, tmp_path / "keys", "alice")
    alice = sharing(a, "alice", clock)
    alice.discover("from alice, signed")
    eve = Bus.open(a, "eve", clock)  # another agent on alice's machine, signing with alice's key
    eve.discover("from eve, but alice's key signed it")
    sync.sync(alice.repo, "origin")
    mallory = clone(net.url, tmp_path / "m")  # no signing at all
    sharing(mallory, "mallory", clock).discover("unsigned")
    sync.sync(Repository.open(mallory), "origin")

    allow_signers(b, tmp_path / "allowed", {"alice": alice_pub})
    bob = sharing(b, "bob", clock)
    assert gb(b, "bob", "config", "require_signed", "true")[0] == 0
    report = sync.sync(bob.repo, "origin")
    why = {r.ref: r.reason for r in report.refused}
    assert "refs/bus/agents/alice" not in why
    assert "unsigned" in why["refs/bus/agents/mallory"]
    assert "from eve signed by alice" in why["refs/bus/agents/eve"]
    senders = {m.sender for m in bob.log(n=None)}
    assert "alice" in senders and not senders & {"eve", "mallory"}


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
def test_a_sync_merge_on_bobs_chain_signed_by_alices_key_is_refused(
    net: Net, clock: FakeClock, tmp_path: Path
) -> None:
    a, b = net.clones
    alice_pub = ssh_signing(a, tmp_path / "keys", "alice")
    bob_pub = ssh_signing(b, tmp_path / "keys", "bob")
    allow_signers(b, tmp_path / "allowed", {"alice": alice_pub, "bob": bob_pub})
    bob = sharing(b, "bob", clock)
    bob.discover("one")
    bob.discover("two")
    sync.sync(bob.repo, "origin")
    assert gb(b, "bob", "config", "require_signed", "true")[0] == 0
    sync.sync(sharing(a, "alice", clock).repo, "origin")
    tip = git(a, "rev-parse", "refs/bus/agents/bob").strip()
    merge = (
        subprocess.run(
            [
                "git",
                "commit-tree",
                "-S",
                "-p",
                tip,
                "-p",
                f"{tip}^",
                git(a, "rev-parse", f"{tip}^{{tree}}").strip(),
            ],
            cwd=a,
            input=b"gitbus: join diverged histories of refs/bus/agents/bob\n",
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    git(a, "push", "-q", "origin", f"{merge}:refs/bus/agents/bob")
    report = sync.sync(bob.repo, "origin")
    why = {r.ref: r.reason for r in report.refused}
    assert "signed by alice" in why.get("refs/bus/agents/bob", ""), why
    assert git(b, "rev-parse", "refs/bus/agents/bob").strip() == tip


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
def test_a_clone_that_requires_signatures_refuses_unsigned_notes(
    net: Net, clock: FakeClock, tmp_path: Path
) -> None:
    a, b = net.clones
    bob_pub = ssh_signing(b, tmp_path / "keys", "bob")
    allow_signers(b, tmp_path / "allowed", {"bob": bob_pub})
    bob = sharing(b, "bob", clock)
    bob.discover("signed")
    assert gb(b, "bob", "config", "require_signed", "true")[0] == 0
    sharing(a, "mallory", clock)  # no signing
    git(a, "notes", "--ref=refs/notes/gitbus", "add", "-m", "mallory: trust me", "HEAD")
    git(a, "push", "-q", "origin", "refs/notes/gitbus:refs/notes/gitbus")
    report = sync.sync(bob.repo, "origin")
    why = {r.ref: r.reason for r in report.refused}
    assert "unsigned" in why.get("refs/notes/gitbus", ""), why
    assert bob.repo.ref("refs/notes/gitbus") is None


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
def test_log_and_show_mark_senders_whose_signature_verifies_and_say_when_unverified(
    net: Net, clock: FakeClock, tmp_path: Path
) -> None:
    a, b = net.clones
    alice_pub = ssh_signing(a, tmp_path / "keys", "alice")
    alice = sharing(a, "alice", clock)
    signed = alice.discover("from alice, signed")
    eve = Bus.open(a, "eve", clock)  # alice's key signs eve's message: not eve's signature
    borrowed = eve.discover("from eve, alice's key")
    sync.sync(alice.repo, "origin")
    mallory = sharing(clone(net.url, tmp_path / "m"), "mallory", clock)
    unsigned = mallory.discover("unsigned")
    sync.sync(mallory.repo, "origin")
    bob_pub = ssh_signing(b, tmp_path / "keys", "bob")
    allow_signers(b, tmp_path / "allowed", {"alice": alice_pub, "bob": bob_pub})
    bob = sharing(b, "bob", clock)
    sync.sync(bob.repo, "origin")
    code, out, err = gb(b, "bob", "log", "--json")
    assert code == 0, err
    verified = {m["id"]: m["verified"] for m in json.loads(out)}
    assert verified[signed.id] is True
    assert verified[borrowed.id] is False and verified[unsigned.id] is False
    code, out, _ = gb(b, "bob", "show", signed.id)
    assert code == 0 and "verified" in out and "unverified" not in out, out
    code, out, _ = gb(b, "bob", "show", borrowed.id)
    assert code == 0 and "unverified" in out, out
    code, out, _ = gb(b, "bob", "show", unsigned.id, "--json")
    assert json.loads(out)["verified"] is False
    code, out, _ = gb(b, "bob", "log")
    assert code == 0 and "unverified" in out and "\x1b" not in out, out


def test_a_sync_leaves_packing_to_housekeeping_not_to_a_gc_its_fetch_starts(
    pair: tuple[Bus, Bus], clock: FakeClock
) -> None:
    """git's fetch runs `gc --auto` when it finds many loose objects; right before sync's push that
    packs the same objects twice, at once. Packing is housekeeping's (gitbus.housekeeping)."""
    alice, bob = pair
    bob.discover("news for alice's fetch")
    sync.sync(bob.repo, "origin")
    root = alice.repo.root
    in_17 = [d for d in (f"loose {i}\n".encode() for i in range(100_000)) if _blob_id(d).startswith("17")][:3]
    for data in in_17:  # git samples objects/17 to guess how many loose objects there are
        raw_git(root, "hash-object", "-w", "--stdin", input=data)
    git(root, "config", "gc.auto", "1")  # git's own threshold: more than one object in objects/17
    git(root, "config", "gc.autoDetach", "false")  # a gc git starts would run before fetch returns
    loose = int(git(root, "count-objects").split()[0])
    sync.sync(alice.repo, "origin", send=False)
    assert int(git(root, "count-objects").split()[0]) >= loose, "a gc packed the loose objects"


def _blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_a_sync_record_nested_past_pythons_limit_reads_as_none(pair: tuple[Bus, Bus]) -> None:
    """`refused.json` and `sync-status.json` are this clone's own files, but a damaged one must not
    stop `gitbus status`: json.loads raises RecursionError, not ValueError, on deep nesting."""
    _alice, bob = pair
    deep = "[" * 100_000 + "]" * 100_000
    state.refused(bob.repo.common_dir).write_text(deep)
    state.sync_status(bob.repo.common_dir).write_text(deep)
    assert remote.last_refused(bob.repo) == []
    assert remote.last_status(bob.repo) is None
    code, _, err = gb(bob.repo.root, "bob", "status")
    assert code == 0 and "CRASHED" not in err, err
