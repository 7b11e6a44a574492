"""What the child processes of the race, crash and housekeeping tests run, and the checks they share.

A child opens its own `Bus` (a pygit2 object must never cross a fork), waits on a barrier so the
children really collide, and reports outcomes as plain picklable values. This is a module of its own
so that 'spawn' children can import its functions by name. Every wait is bounded: a hang fails the
test instead of blocking CI.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import subprocess
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any

from gitbus import paths as P
from gitbus.bus import Bus
from gitbus.claims import Claim
from gitbus.errors import ClaimConflict, Conflict
from gitbus.git import Oid, Repository
from gitbus.ids import agent_name, is_ledger
from gitbus.message import Message, decode

SPAWN = mp.get_context("spawn")
FORK = mp.get_context("fork")
WAIT_SECONDS = 120.0


# -- what children report ------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """A child died of an unexpected exception; the parent turns this into a test failure."""

    who: str
    trace: str


@dataclass(frozen=True)
class ClaimOutcome:
    round: int
    agent: str
    wanted: tuple[str, ...]
    granted: str | None  # the claim message id when granted
    holder: str | None  # from the ClaimConflict when refused
    held_path: str | None


@dataclass(frozen=True)
class TakeOutcome:
    round: int
    agent: str
    request: str
    taken: str | None  # the take message id when this agent won
    refusal: str | None  # the Conflict's sentence when it lost


@dataclass(frozen=True)
class Attempts:
    agent: str
    granted: int  # claims granted, of all it asked for
    tries: tuple[int, ...]  # compare-and-swaps of the ledger each claim took, in order


@dataclass(frozen=True)
class Posted:
    agent: str
    ids: tuple[str, ...]
    texts: tuple[str, ...]


# -- children ------------------------------------------------------------------------------------


def claim_rounds(
    worktree: str, agent: str, plan: Sequence[Sequence[str]], barrier: Barrier, out: Queue[Any]
) -> None:
    """Each round: claim `plan[r]` at the same moment as the others, report, wait for the parent's
    check, release everything, and wait until all have released."""
    try:
        bus = Bus.open(worktree, agent)
        for r, wanted in enumerate(plan):
            barrier.wait(WAIT_SECONDS)
            try:
                msg = bus.claim(wanted)
                out.put(ClaimOutcome(r, agent, msg.paths, msg.id, None, None))
            except ClaimConflict as e:
                out.put(ClaimOutcome(r, agent, bus.paths(wanted), None, e.holder, e.held_path))
            barrier.wait(WAIT_SECONDS)
            bus.release(everything=True)
            barrier.wait(WAIT_SECONDS)
    except BaseException:
        out.put(Failure(agent, traceback.format_exc()))
        barrier.abort()


def take_rounds(
    worktree: str, agent: str, requests: Sequence[str], barrier: Barrier, out: Queue[Any]
) -> None:
    """Each round: take request `requests[r]` at the same moment as the others and report."""
    try:
        bus = Bus.open(worktree, agent)
        for r, request in enumerate(requests):
            barrier.wait(WAIT_SECONDS)
            try:
                msg = bus.take(request)
                out.put(TakeOutcome(r, agent, request, msg.id, None))
            except Conflict as e:
                out.put(TakeOutcome(r, agent, request, None, str(e)))
    except BaseException:
        out.put(Failure(agent, traceback.format_exc()))
        barrier.abort()


class _CountingRepository(Repository):
    """A real repository that counts its compare-and-swaps of the ledger (won and lost)."""

    ledger_writes = 0

    def update_refs(self, changes: Sequence[tuple[str, Oid | None, Oid | None]], log: str) -> None:
        if any(is_ledger(name) for name, _, _ in changes):
            self.ledger_writes += 1
        super().update_refs(changes, log)


def claim_one_by_one(
    worktree: str, agent: str, paths: Sequence[str], barrier: Barrier, out: Queue[Any]
) -> None:
    """Claim each of `paths` in turn, as fast as possible once every claimant is ready, and report
    how many compare-and-swaps of the ledger each grant took."""
    try:
        repo = _CountingRepository.open(worktree)
        bus = Bus(repo, agent_name(agent), cwd=Path(worktree))
        tries: list[int] = []
        barrier.wait(WAIT_SECONDS)
        for path in paths:
            before = repo.ledger_writes
            bus.claim([path])
            tries.append(repo.ledger_writes - before)
        out.put(Attempts(agent, len(tries), tuple(tries)))
    except BaseException:
        out.put(Failure(agent, traceback.format_exc()))
        barrier.abort()


def post_many(worktree: str, agent: str, tag: str, count: int, barrier: Barrier, out: Queue[Any]) -> None:
    """Post `count` discoveries as fast as possible once every poster is ready."""
    try:
        bus = Bus.open(worktree, agent)
        barrier.wait(WAIT_SECONDS)
        posted = [bus.discover(f"{tag} says {k}") for k in range(count)]
        out.put(Posted(agent, tuple(m.id for m in posted), tuple(m.text for m in posted)))
    except BaseException:
        out.put(Failure(tag, traceback.format_exc()))
        barrier.abort()


def join_rounds(worktree: str, names: Sequence[str], barrier: Barrier, out: Queue[Any]) -> None:
    """Each round: join the bus as `names[r]` at the same moment as the others."""
    try:
        for name in names:
            bus = Bus.open(worktree, name)
            barrier.wait(WAIT_SECONDS)
            bus.init()
            out.put(name)
    except BaseException:
        out.put(Failure(f"joiner of {names}", traceback.format_exc()))
        barrier.abort()


WRITER_PATHS = ("src/a/", "src/a/x.py", "src/b/", "docs/")


def write_until_stopped(
    worktree: str, agents: Sequence[str], ack_path: str, ready: Event, stop: Event | None, seed: int
) -> None:
    """Post, claim and release in a loop as `agents`, in turn, until `stop` is set or the process is
    killed. After each write returns, one line is appended to `ack_path` (one small O_APPEND write,
    so a kill leaves only whole lines): `post <agent> <id>`, `claim <agent> <id> <path>`,
    `refused <agent> <path>`, `release <agent> <id|->` (everything) or
    `release-path <agent> <id> <path>`.

    `ready` is set once every chain and the ledger took a write, so any lock an earlier writer left
    on them has been recovered by then. An exception is acknowledged as `error <what>` before it
    ends the process."""
    fd = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def ack(line: str) -> None:
        os.write(fd, (line + "\n").encode())

    try:
        _write_until_stopped(worktree, agents, ack, ready, stop, seed)
    except BaseException as e:  # reported for the parent, whose test fails on an `error` line
        ack(f"error {type(e).__name__}: {' '.join(str(e).split())}")
        raise
    finally:
        os.close(fd)


def _write_until_stopped(
    worktree: str,
    agents: Sequence[str],
    ack: Callable[[str], None],
    ready: Event,
    stop: Event | None,
    seed: int,
) -> None:
    rng = random.Random(seed)
    buses = [Bus.open(worktree, a) for a in agents]
    for bus in buses:
        ack(f"post {bus.agent} {bus.discover(f'writer {seed} starts').id}")
    scratch = f"scratch/{seed}.py"
    ack(f"claim {buses[0].agent} {buses[0].claim([scratch]).id} {scratch}")
    released = buses[0].release([scratch])
    ack(f"release-path {buses[0].agent} {released.id if released else '-'} {scratch}")
    ready.set()
    k = 0
    while stop is None or not stop.is_set():
        bus = buses[k % len(buses)]
        roll = rng.random()
        if roll < 0.5:
            ack(f"post {bus.agent} {bus.discover(f'writer {seed} note {k}').id}")
        elif roll < 0.8:
            path = rng.choice(WRITER_PATHS)
            try:
                ack(f"claim {bus.agent} {bus.claim([path]).id} {path}")
            except ClaimConflict:
                ack(f"refused {bus.agent} {path}")
        else:
            released = bus.release(everything=True)
            ack(f"release {bus.agent} {released.id if released else '-'}")
        k += 1


def claim_and_record(worktree: str, agent: str, path: str, done_path: str) -> None:
    """Claim `path` (waiting out any lock) and write `<wall time> <message id>` to `done_path`."""
    msg = Bus.open(worktree, agent).claim([path])
    Path(done_path).write_text(f"{time.time()} {msg.id}\n")


# -- the parent's side ---------------------------------------------------------------------------


@contextmanager
def running(procs: Sequence[BaseProcess], barrier: Barrier | None = None) -> Iterator[None]:
    """Start `procs`; on the way out, unblock them if the test failed, and reap every one of them."""
    for p in procs:
        p.start()
    ok = False
    try:
        yield
        ok = True
    finally:
        if not ok and barrier is not None:
            barrier.abort()
        for p in procs:
            p.join(timeout=WAIT_SECONDS if ok else 5.0)
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
        if ok:
            assert [p.exitcode for p in procs] == [0] * len(procs), "a child process did not exit cleanly"


def collect(out: Queue[Any], n: int) -> list[Any]:
    """The next `n` reports from children; a child's crash becomes this test's failure."""
    got: list[Any] = []
    for _ in range(n):
        item = out.get(timeout=WAIT_SECONDS)
        if isinstance(item, Failure):
            raise AssertionError(f"child {item.who} failed:\n{item.trace}")
        got.append(item)
    return got


def read_acks(path: Path) -> list[list[str]]:
    """The whole lines a writer acknowledged, split into words."""
    if not path.exists():
        return []
    text = path.read_text()
    return [line.split() for line in text[: text.rfind("\n") + 1].splitlines()]


def writer_errors(acks: Iterable[list[str]]) -> list[str]:
    """What killed a writer other than a SIGKILL, as acknowledged lines."""
    return [" ".join(a) for a in acks if a[0] == "error"]


def acked_ids(acks: Iterable[list[str]]) -> set[str]:
    """The message ids of every write the writer was told succeeded."""
    return {a[2] for a in acks if a[0] in ("post", "claim", "release", "release-path") and a[2] != "-"}


def held_after(acks: Iterable[list[str]]) -> set[tuple[str, str]]:
    """(owner, path) of the claims the acknowledged writes leave in place, replayed in order."""
    held: set[tuple[str, str]] = set()
    for a in acks:
        if a[0] == "claim":
            held.add((a[1], a[3]))
        elif a[0] == "release":
            held = {h for h in held if h[0] != a[1]}
        elif a[0] == "release-path":
            held.discard((a[1], a[3]))
    return held


def git_run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)


def assert_fsck_clean(repo: Path) -> None:
    """`git fsck` finds nothing wrong; dangling and unreachable objects (orphans of lost races or of
    killed writers) are allowed."""
    proc = git_run(repo, "fsck", "--no-dangling", "--no-progress")
    assert proc.returncode == 0, f"git fsck failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"


def bus_commit_messages(repo: Path) -> dict[str, str]:
    """Every commit reachable from refs/bus/*, read by git itself (not libgit2): oid -> raw message."""
    tips = git_run(repo, "for-each-ref", "--format=%(objectname)", "refs/bus/").stdout.split()
    if not tips:
        return {}
    oids = subprocess.run(
        ["git", "rev-list", "--stdin"],
        cwd=repo,
        input="\n".join(tips) + "\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    raw = subprocess.run(
        ["git", "cat-file", "--batch"],
        cwd=repo,
        input=("\n".join(oids) + "\n").encode(),
        capture_output=True,
        check=True,
    ).stdout
    out: dict[str, str] = {}
    pos = 0
    while pos < len(raw):
        eol = raw.index(b"\n", pos)
        oid, kind, size = raw[pos:eol].decode().split()
        assert kind == "commit", f"{oid} under refs/bus is a {kind}"
        body = raw[eol + 1 : eol + 1 + int(size)]
        out[oid] = body.split(b"\n\n", 1)[1].decode()
        pos = eol + 1 + int(size) + 1
    return out


def decoded_bus_messages(repo: Path) -> list[Message]:
    """Every bus commit decoded as a gitbus message; any commit that does not decode fails the test."""
    return [decode(raw) for raw in bus_commit_messages(repo).values()]


def chain(repo: Path, ref: str) -> list[Message]:
    """The messages of one chain in parent order, newest first (first parents, as written)."""
    oids = git_run(repo, "rev-list", "--first-parent", ref).stdout.split()
    messages = bus_commit_messages(repo)
    return [decode(messages[o]) for o in oids]


def overlapping_owners(claims: Sequence[Claim]) -> list[tuple[Claim, Claim]]:
    """Pairs of claims of different owners whose paths overlap (the ledger must never hold one)."""
    return [
        (a, b)
        for i, a in enumerate(claims)
        for b in claims[i + 1 :]
        if a.owner != b.owner and P.overlaps(a.path, b.path)
    ]


def post_after_what_it_saw(worktree: str, agent: str, count: int, barrier: Barrier, out: Queue[Any]) -> None:
    """Post `count` discoveries on a clock that stands still, each after reading the newest time on
    the bus: (the newest time seen, the time posted) per post. Only the horizon mark orders them."""
    from gitbus.clock import FakeClock

    try:
        bus = Bus.open(worktree, agent, FakeClock())
        barrier.wait(WAIT_SECONDS)
        pairs = []
        for k in range(count):
            seen = max((m.time for m in bus.log(n=1)), default=0)
            pairs.append((seen, bus.discover(f"{agent} says {k}").time))
        out.put((agent, pairs))
    except BaseException:
        out.put(Failure(agent, traceback.format_exc()))
        barrier.abort()
