"""Posting costs the same however many agents are on the bus, and still sorts after every tip (the
horizon mark, docs/format.md#times)."""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitbus import chains, state
from gitbus.bus import Bus
from gitbus.clock import FakeClock
from gitbus.git import Repository
from gitbus.ids import AGENTS_PREFIX, agent_name
from gitbus.sync import sync

from .helpers_proc import SPAWN, collect, post_after_what_it_saw, running
from .test_sync import Net

_WATCHING: list[Counter[str]] = []  # the counter of the test that is looking, if any


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """Count every file or folder under refs/bus/agents/ that Python opens or lists (an audit hook:
    what the code really touches, however it is written)."""
    if not _WATCHING or event not in ("open", "os.scandir", "os.listdir"):
        return
    path = args[0]
    if isinstance(path, (str, bytes, os.PathLike)) and "refs/bus/agents" in os.fsdecode(path):
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


def test_a_post_sorts_after_what_sync_took_in_from_a_clock_ahead(tmp_path: Path) -> None:
    net = Net.make(tmp_path)
    ahead, behind = FakeClock(1_764_000_600_000), FakeClock(1_764_000_000_000)
    alice = Bus.open(net.clones[0], "alice", ahead)
    alice.init("origin")
    bob = Bus.open(net.clones[1], "bob", behind)
    bob.init("origin")
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
