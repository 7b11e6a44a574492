"""Posting costs the same however many agents are on the bus, and still sorts after every tip (the
horizon mark, docs/format.md#times)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gitbus import chains, state
from gitbus.bus import Bus
from gitbus.clock import FakeClock
from gitbus.errors import ClaimConflict
from gitbus.git import Repository
from gitbus.gitfiles import Oid
from gitbus.ids import AGENTS_PREFIX, LEDGER_REF, agent_name
from gitbus.ledger_shards import shard_of_path
from gitbus.sync import sync

from .helpers_proc import SPAWN, collect, post_after_what_it_saw, running
from .test_sync import Net

_WATCHING: list[Counter[str]] = []  # the counter of the test that is looking, if any


_OWN = ("refs/bus/agents/me", "refs/bus/agents/me.lock")  # the chain a post by `me` writes, and its lock


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """Count every file or folder under refs/bus/agents/ that Python opens or lists, but the poster's
    own ref (an audit hook: what the code really touches, however it is written)."""
    if not _WATCHING or event not in ("open", "os.scandir", "os.listdir"):
        return
    path = args[0]
    name = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else ""
    if "refs/bus/agents" in name and not name.endswith(_OWN):
        _WATCHING[-1][event] += 1


sys.addaudithook(_audit)


class Counted:
    """A repository whose commit and object reads are counted (the git work is real)."""

    def __init__(self, repo: Repository) -> None:
        self.reads: Counter[str] = Counter()
        for verb in ("read_commit", "object_kind", "refs"):
            real = getattr(repo, verb)

            def counted(*args: Any, _real: Any = real, _verb: str = verb) -> Any:
                self.reads[_verb] += 1
                return _real(*args)

            setattr(repo, verb, counted)


@pytest.fixture
def touched() -> Iterator[Counter[str]]:
    seen: Counter[str] = Counter()
    yield seen
    if _WATCHING and _WATCHING[-1] is seen:
        _WATCHING.pop()


def crowd(path: Path, clock: FakeClock, n: int) -> None:
    repo = Repository.open(path)
    for k in range(n):
        Bus(repo, agent_name(f"peer-{k}"), clock).discover(f"peer {k} is here")


def test_a_post_reads_no_other_agents_chain(repo: Path, clock: FakeClock, touched: Counter[str]) -> None:
    crowd(repo, clock, 40)
    me = Bus.open(repo, "me", clock)
    me.discover("first")  # joined, the mark written
    chains._TIMES.clear()  # as in a new process: nothing remembered about any tip
    chains._COMMITS.clear()
    me = Bus.open(repo, "me", clock)
    counted = Counted(me.repo)
    _WATCHING.append(touched)
    posted = me.discover("second")
    _WATCHING.pop()
    assert not touched, f"files under refs/bus/agents read: {touched}"
    assert counted.reads["refs"] == 0, "a post listed the agents' refs"
    assert counted.reads["read_commit"] + counted.reads["object_kind"] <= 1, counted.reads  # its own tip
    assert posted.time > max(m.time for m in me.log(n=None) if m.id != posted.id)


def test_every_post_sorts_after_every_message_posted_before_it(repo: Path, clock: FakeClock) -> None:
    """The clock stands still: each post is still stamped past every tip, whoever wrote it."""
    r = Repository.open(repo)
    buses = [Bus(r, agent_name(n), clock) for n in ("a", "b", "c")]
    ids = [buses[k % 3].discover(f"post {k}").id for k in range(9)]
    ids.append(buses[0].claim(["README.md"]).id)
    ids.append(buses[1].discover("after the claim").id)
    assert [m.id for m in buses[2].log(n=None) if m.kind.value != "join"] == ids[::-1]


def test_a_clone_without_a_horizon_mark_reads_every_tip_once(repo: Path, clock: FakeClock) -> None:
    crowd(repo, clock, 3)
    mark = state.horizon(Repository.open(repo).common_dir)
    newest = chains.read_mark(Repository.open(repo))
    mark.unlink()  # as a clone a gitbus without the mark wrote
    me = Bus.open(repo, "me", clock)
    counted = Counted(me.repo)
    posted = me.discover("after all three")
    assert counted.reads["refs"] == 1
    assert newest is not None and posted.time > newest
    assert chains.read_mark(me.repo) == posted.time


def test_the_mark_only_rises_and_a_damaged_one_is_rebuilt_from_the_tips(repo: Path, clock: FakeClock) -> None:
    crowd(repo, clock, 2)
    r = Repository.open(repo)
    newest = chains.read_mark(r)
    assert newest is not None
    chains.raise_mark(r, newest - 5000)
    assert chains.read_mark(r) == newest
    state.horizon(r.common_dir).write_text("not a time at all, and longer than one\n")
    assert chains.read_mark(r) is None
    assert chains.stamp(r, clock.now_ms() - 60_000) == newest + 1  # a clock behind: past every tip
    assert chains.read_mark(r) == newest + 1


def ahead_and_behind(tmp_path: Path) -> tuple[Bus, Bus]:
    """alice and bob sharing one remote, alice's clock ten minutes ahead of bob's."""
    net = Net.make(tmp_path)
    alice = Bus.open(net.clones[0], "alice", FakeClock(1_764_000_600_000))
    alice.init("origin")
    bob = Bus.open(net.clones[1], "bob", FakeClock(1_764_000_000_000))
    bob.init("origin")
    return alice, bob


def test_a_post_sorts_after_what_sync_took_in_from_a_clock_ahead(tmp_path: Path) -> None:
    alice, bob = ahead_and_behind(tmp_path)
    bob.discover("bob is here")
    told = alice.discover("ten minutes ahead of bob's clock")
    sync(alice.repo, "origin")
    sync(bob.repo, "origin")
    reply = bob.discover("I saw it")
    assert reply.time > told.time
    assert [m.id for m in bob.log(n=2)] == [reply.id, told.id]
    assert AGENTS_PREFIX + "alice" in bob.tips()


def test_processes_posting_at_once_on_a_still_clock_each_stamp_past_what_they_saw(
    worktrees: list[Path], clock: FakeClock
) -> None:
    """The mark is raised under a lock: no two posts of a clone share a time, and each is later than
    everything its poster could read before it, whichever process wrote that."""
    agents = [f"poster-{i}" for i in range(6)]
    for i, a in enumerate(agents):
        Bus.open(worktrees[i % len(worktrees)], a, clock).init()
    barrier, out = SPAWN.Barrier(len(agents)), SPAWN.Queue()
    procs = [
        SPAWN.Process(
            target=post_after_what_it_saw, args=(str(worktrees[i % len(worktrees)]), a, 25, barrier, out)
        )
        for i, a in enumerate(agents)
    ]
    with running(procs, barrier):
        results: list[tuple[str, list[tuple[int, int]]]] = collect(out, len(agents))
    stamped = [t for _, pairs in results for _, t in pairs]
    assert all(t > seen for _, pairs in results for seen, t in pairs), "a post sorts before what it saw"
    assert len(set(stamped)) == len(stamped) == 6 * 25, "two posts share a time: the mark lost an update"


def test_a_post_sorts_after_a_ledger_step_that_a_refused_claim_brought_in(tmp_path: Path) -> None:
    """Every online step fetches the remote's ledger and moves the local one forward: what it shows
    raises the mark even when the step itself is refused and writes nothing."""
    alice, bob = ahead_and_behind(tmp_path)
    bob.discover("bob is here")
    held = alice.claim(["README.md"])  # decided on the remote, ten minutes ahead of bob's clock
    with pytest.raises(ClaimConflict):
        bob.claim(["README.md"])
    assert [c.owner for c in bob.claims()] == ["alice"]  # bob sees it now
    reply = bob.discover("I see alice holds README.md")
    assert reply.time > held.time


def test_sync_raises_the_mark_before_it_moves_a_bus_ref(tmp_path: Path) -> None:
    """A post made while a long sync runs, once a ref it moved is visible, sorts after that ref's tip:
    the mark is raised first, as every writer raises it before its compare-and-swap."""
    net = Net.make(tmp_path)
    ahead, behind = FakeClock(1_764_000_600_000), FakeClock(1_764_000_000_000)
    alice = Bus.open(net.clones[0], "alice", ahead)
    alice.init("origin")
    alice.discover("from ten minutes ahead")
    alice.claim(["README.md"])
    sync(alice.repo, "origin")
    bob = Bus.open(net.clones[1], "bob", behind)
    seen: list[tuple[str, int, int | None]] = []
    real = bob.repo.update_refs

    def update_refs(
        changes: list[tuple[str, Oid | None, Oid | None]], log: str, check: Callable[[], None] | None = None
    ) -> None:
        for ref, new, _ in changes:
            if new is not None and ref != LEDGER_REF:  # the tombstone is no message
                seen.append((ref, chains.chain_time(bob.repo, new), chains.read_mark(bob.repo)))
        real(changes, log, check)

    bob.repo.update_refs = update_refs  # type: ignore[method-assign]
    sync(bob.repo, "origin")
    moved = [(ref, t, mark) for ref, t, mark in seen if ref.startswith("refs/bus/")]
    assert {ref for ref, _, _ in moved} >= {"refs/bus/agents/alice", shard_of_path("README.md")}
    assert all(mark is not None and mark >= t for _, t, mark in moved), moved


def test_a_peer_commit_dated_far_ahead_does_not_pin_the_mark(tmp_path: Path, clock: FakeClock) -> None:
    """A foreign commit on a chain counts by its committer date, which its peer chose: sync takes it
    in (it is no message to vouch for), but a time more than a day ahead never reaches the mark."""
    net = Net.make(tmp_path)
    alice = Bus.open(net.clones[0], "alice", clock)
    alice.init("origin")
    alice.discover("hi")
    a = alice.repo
    tip = a.ref("refs/bus/agents/alice")
    assert tip is not None
    year_2200 = 7_258_118_400
    date = f"@{year_2200} +0000"
    env = {**os.environ, "GIT_COMMITTER_DATE": date, "GIT_AUTHOR_DATE": date}
    git = ["git", "-C", str(net.clones[0])]
    new = subprocess.run(
        [*git, "commit-tree", f"{tip}^{{tree}}", "-p", tip, "-m", "not a gitbus message"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run([*git, "update-ref", "refs/bus/agents/alice", new, tip], check=True)
    sync(a, "origin")
    bob = Bus.open(net.clones[1], "bob", clock)
    bob.init("origin")
    sync(bob.repo, "origin")
    assert bob.repo.ref("refs/bus/agents/alice") == new  # taken in
    mark = chains.read_mark(bob.repo)
    assert mark is not None and mark < year_2200 * 1000 - chains.FUTURE_MS
    assert bob.discover("still now").time <= clock.now_ms() + chains.FUTURE_MS


def _far_ahead_on(clone: Path, ref: str, message: str) -> str:
    """Put a commit dated in the year 2200 on top of `ref` with plain git, as a hostile peer could."""
    date = "@7258118400 +0000"
    env = {**os.environ, "GIT_COMMITTER_DATE": date, "GIT_AUTHOR_DATE": date}
    git = ["git", "-C", str(clone)]
    tip = subprocess.run([*git, "rev-parse", ref], capture_output=True, text=True, check=True).stdout.strip()
    new = subprocess.run(
        [*git, "commit-tree", f"{tip}^{{tree}}", "-p", tip, "-m", message],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run([*git, "update-ref", ref, new, tip], check=True)
    return new


FORGED_AHEAD = (
    "discovery: x\n\nfrom the future\n\nGitbus-Version: 1\nGitbus-Id: 00000000000000aa\n"
    "Gitbus-Type: discovery\nGitbus-From: mallory\nGitbus-To: *\nGitbus-Time: 7258118400000\n"
)


@pytest.mark.parametrize("message", ["just a commit", FORGED_AHEAD], ids=["foreign", "forged-sender"])
def test_a_commit_dated_far_ahead_on_an_agents_own_chain_does_not_silence_it(
    tmp_path: Path, clock: FakeClock, message: str
) -> None:
    """A peer puts a commit from the year 2200 on bob's chain. Readers skip it, and bob's next post
    must not be stamped past it: every other clone refuses a message stamped a day ahead, so bob
    would never be heard again."""
    net = Net.make(tmp_path)
    alice = Bus.open(net.clones[0], "alice", clock)
    alice.init("origin")
    bob = Bus.open(net.clones[1], "bob", clock)
    bob.init("origin")
    bob.discover("before")
    _far_ahead_on(net.clones[1], "refs/bus/agents/bob", message)
    after = bob.discover("after")
    assert after.time <= clock.now_ms() + chains.FUTURE_MS
    mark = chains.read_mark(bob.repo)
    assert mark is not None and mark <= clock.now_ms() + chains.FUTURE_MS
    sync(bob.repo, "origin")
    report = sync(alice.repo, "origin")
    assert not report.refused, report.refused
    assert after.id in [m.id for m in alice.log(n=5)]


def test_a_sync_join_past_a_commit_dated_far_ahead_is_stamped_now(tmp_path: Path, clock: FakeClock) -> None:
    """One agent posting from two clones, one chain topped by a peer's commit from the year 2200:
    the join of the two histories is stamped by this clock, and the agent's next post with it."""
    net = Net.make(tmp_path)
    one = Bus.open(net.clones[0], "bob", clock)
    one.init("origin")
    one.discover("from the first clone")
    sync(one.repo, "origin")
    two = Bus.open(net.clones[1], "bob", clock)
    two.init("origin")
    sync(two.repo, "origin")
    two.discover("from the second clone")
    _far_ahead_on(net.clones[0], "refs/bus/agents/bob", "just a commit")
    one.discover("first clone again")
    sync(one.repo, "origin")
    sync(two.repo, "origin")  # both moved: joined
    tip = two.repo.ref("refs/bus/agents/bob")
    assert tip is not None and len(two.repo.read_commit(tip).parents) == 2
    assert chains.chain_time(two.repo, tip) <= clock.now_ms() + chains.FUTURE_MS
    assert two.discover("after the join").time <= clock.now_ms() + chains.FUTURE_MS


def test_a_mark_more_than_a_day_ahead_is_replaced_by_the_tips_at_the_next_post(
    repo: Path, clock: FakeClock
) -> None:
    me = Bus.open(repo, "me", clock)
    first = me.discover("first")
    state.horizon(me.repo.common_dir).write_text(f"{clock.now_ms() + 2 * chains.FUTURE_MS:013d}\n")
    reads = []
    for k in range(3):
        b = Bus.open(repo, "me", clock)
        counted = Counted(b.repo)
        posted = b.discover(f"post {k}")
        reads.append(counted.reads["refs"])
        assert first.time < posted.time <= clock.now_ms() + chains.FUTURE_MS
    assert reads == [1, 0, 0], "the far-ahead mark was not replaced: every post reads every tip"
    assert chains.read_mark(me.repo) == posted.time


def test_a_take_raises_the_mark_to_its_own_time_past_the_request(repo: Path, clock: FakeClock) -> None:
    """`take` is stamped past its request, which may be later than everything else its taker saw (a
    request fetched with plain git never raised the mark): the mark follows the take's own time."""
    asker = Bus.open(repo, "asker", FakeClock(clock.now_ms() + 600_000))
    req = asker.request("please do this")
    state.horizon(asker.repo.common_dir).write_text(f"{clock.now_ms() - 1000:013d}\n")  # as plain git
    me = Bus.open(repo, "me", clock)
    took = me.take(req.id)
    assert took.time > req.time
    after = me.discover("on it")
    assert after.time > took.time


def test_a_ledger_step_replaces_a_mark_more_than_a_day_ahead(repo: Path, clock: FakeClock) -> None:
    me = Bus.open(repo, "me", clock)
    me.discover("first")
    state.horizon(me.repo.common_dir).write_text(f"{clock.now_ms() + 2 * chains.FUTURE_MS:013d}\n")
    held = me.claim(["README.md"])
    assert held.time <= clock.now_ms() + chains.FUTURE_MS
    assert chains.read_mark(me.repo) == held.time
