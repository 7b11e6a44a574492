"""Crashes: writers killed with SIGKILL at any moment, and the `.lock` files they leave behind.

A killed writer may leave orphan objects (allowed) and a `<ref>.lock` (recovered once older than
`STALE_LOCK_SECONDS`), but never a broken ref, an undecodable message, a claim without its message,
or a bus nobody can write to. A lock that is still fresh belongs to a live writer and must be waited
for, not deleted.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from gitbus import ledger_shards
from gitbus.bus import Bus
from gitbus.git import STALE_LOCK_SECONDS
from gitbus.ids import LEDGER_REF, agent_ref
from gitbus.ledger_cas import is_part
from gitbus.message import Kind

from .helpers_proc import (
    FORK,
    SPAWN,
    WAIT_SECONDS,
    ClaimOutcome,
    acked_ids,
    assert_fsck_clean,
    claim_and_record,
    claim_rounds,
    collect,
    decoded_bus_messages,
    overlapping_owners,
    read_acks,
    running,
    write_until_stopped,
    writer_errors,
)

WRITERS = ("crash-1", "crash-2")
RECOVERY_SECONDS = STALE_LOCK_SECONDS + 2.0  # "writable again within a few seconds"


def _common(bus: Bus) -> Path:
    return bus.repo.common_dir


def _plant_lock(common: Path, ref: str, age_seconds: float) -> Path:
    """A `<ref>.lock` as a killed writer leaves it, last touched `age_seconds` ago."""
    lock = common / f"{ref}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("")
    then = time.time() - age_seconds
    os.utime(lock, (then, then))
    return lock


def _identity(lock: Path) -> tuple[int, int] | None:
    """Which lock file is at `lock` (inode and mtime: an inode number alone may be reused)."""
    try:
        st = lock.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def _assert_sound(repo: Path, observer: Bus, acked: set[str]) -> None:
    """What must hold after any crash: fsck clean, every bus commit a message, every acknowledged
    write present exactly once, every claim in the ledger announced by its claim message."""
    assert_fsck_clean(repo)
    decoded = decoded_bus_messages(repo)
    logged = observer.log(n=None)
    # A step's commit on a further shard (`part=`) is no message of its own: it names its step's.
    whole = [m.id for m in decoded if not is_part(m)]
    assert sorted(m.id for m in logged) == sorted(whole), "log and git disagree"
    ids = {m.id for m in logged}
    assert {m.get("part") for m in decoded if is_part(m)} <= ids, "a part of a step that is not logged"
    assert len(ids) == len(logged), "a message appears twice in the log"
    assert acked <= ids, f"acknowledged writes are missing: {sorted(acked - ids)}"
    claims = observer.claims(include_expired=True)
    claim_messages = {m.id for m in logged if m.kind is Kind.CLAIM}
    assert {c.id for c in claims} <= claim_messages, "the ledger holds a claim without its claim message"
    assert overlapping_owners(claims) == []


def test_a_writer_killed_with_sigkill_at_random_moments_leaves_a_sound_writable_bus(
    worktrees: list[Path], tmp_path: Path, long_mode: bool
) -> None:
    wt = worktrees[1]
    for agent in WRITERS:
        Bus.open(wt, agent).init()
    observer = Bus.open(worktrees[0], "observer")
    acks = tmp_path / "acks"
    rng = random.Random(9)
    max_kills, budget = (400, 240.0) if long_mode else (40, 18.0)
    deadline = time.monotonic() + budget
    kills = 0
    killed_at: float | None = None
    while kills < max_kills and time.monotonic() < deadline:
        ready = FORK.Event()
        proc = FORK.Process(
            target=write_until_stopped, args=(str(wt), WRITERS, str(acks), ready, None, kills)
        )
        proc.start()
        try:
            assert ready.wait(WAIT_SECONDS), "the writer never wrote"
            if killed_at is not None:
                took = time.monotonic() - killed_at
                assert took < RECOVERY_SECONDS, f"the bus took {took:.1f}s to be writable after kill {kills}"
            time.sleep(rng.uniform(0.0, 0.06))
        finally:
            proc.kill()
            proc.join()
        killed_at = time.monotonic()
        kills += 1
        errors = writer_errors(read_acks(acks))
        assert errors == [], f"a writer failed before it was killed: {errors}"
        _assert_sound(worktrees[0], observer, acked_ids(read_acks(acks)))

    assert kills >= 10, f"only {kills} kills fit in the time budget"
    start = time.monotonic()
    for agent in WRITERS:  # whatever lock the last kill left, on either chain or on the ledger
        bus = Bus.open(wt, agent)
        bus.discover("still writable after the last kill")
        bus.claim([f"src/after-crash/{agent}/"])
        bus.release(everything=True)
    assert time.monotonic() - start < RECOVERY_SECONDS
    _assert_sound(worktrees[0], observer, acked_ids(read_acks(acks)))


@pytest.mark.parametrize("claims_before", [False, True], ids=["before-the-first-claim", "after-claims"])
def test_a_stale_lock_left_on_the_ledger_is_recovered_within_seconds(repo: Path, claims_before: bool) -> None:
    holder, claimer = Bus.open(repo, "holder-1"), Bus.open(repo, "claimer-1")
    holder.init()
    claimer.init()
    if claims_before:
        holder.claim(["config/"])
    # The refs the claim must move: its shard, and before the first step `refs/bus/ledger` too
    # (the step leaves the tombstone there).
    moved = [ledger_shards.shard_of_path("internal/api/")] + ([] if claims_before else [LEDGER_REF])
    locks = [_plant_lock(_common(claimer), ref, age_seconds=60) for ref in moved]
    start = time.monotonic()
    claimer.claim(["internal/api/"])
    assert time.monotonic() - start < 5.0
    assert not any(lock.exists() for lock in locks)
    expected = ([("holder-1", "config/")] if claims_before else []) + [("claimer-1", "internal/api/")]
    assert [(c.owner, c.path) for c in claimer.claims()] == expected
    assert_fsck_clean(repo)


def test_a_stale_lock_left_on_an_agent_chain_is_recovered_within_seconds(repo: Path) -> None:
    bus = Bus.open(repo, "poster-1")
    bus.init()
    lock = _plant_lock(_common(bus), agent_ref(bus.agent), age_seconds=60)
    start = time.monotonic()
    posted = bus.discover("written through a stale lock")
    assert time.monotonic() - start < 5.0
    assert not lock.exists()
    assert bus.log(n=1)[0].id == posted.id
    assert_fsck_clean(repo)


def test_a_ledger_lock_left_by_a_git_process_killed_with_sigkill_is_recovered(repo: Path) -> None:
    bus = Bus.open(repo, "claimer-1")
    bus.init()
    bus.claim(["config/", "internal/old.go"])
    shard = ledger_shards.shard_of_path("internal/api/")  # the ref the next claim must move
    tip = bus.repo.ref(shard)
    assert tip is not None
    # A prepared `update-ref --stdin` transaction holds the ref lock until told to commit.
    git = subprocess.Popen(
        ["git", "update-ref", "--stdin"], cwd=repo, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert git.stdin is not None and git.stdout is not None
    git.stdin.write(f"start\nupdate {shard} {tip} {tip}\nprepare\n")
    git.stdin.flush()
    assert git.stdout.readline() == "start: ok\n"
    assert git.stdout.readline() == "prepare: ok\n"
    locked_at = time.monotonic()
    git.send_signal(signal.SIGKILL)
    git.wait()
    assert (_common(bus) / f"{shard}.lock").exists()

    bus.claim(["internal/api/"])
    assert time.monotonic() - locked_at < RECOVERY_SECONDS
    assert {c.path for c in bus.claims()} == {"config/", "internal/old.go", "internal/api/"}
    assert bus.repo.ref(shard) != tip
    assert_fsck_clean(repo)


def test_a_fresh_ledger_lock_makes_a_writer_wait_until_it_is_stale_instead_of_deleting_it(
    repo: Path, tmp_path: Path
) -> None:
    bus = Bus.open(repo, "holder-1")
    bus.init()
    bus.claim(["config/", "internal/x.go"])
    bus.release(["internal/x.go"])
    shard = ledger_shards.shard_of_path("internal/")  # the ref the waiter's claim must move: it exists
    tip = bus.repo.ref(shard)
    assert tip is not None
    done = tmp_path / "done"
    lock = _plant_lock(_common(bus), shard, age_seconds=0)
    born, identity = lock.stat().st_mtime, _identity(lock)
    writer = FORK.Process(target=claim_and_record, args=(str(repo), "waiter-1", "internal/", str(done)))
    with running([writer]):
        while True:
            moved = bus.repo.ref(shard) != tip
            if _identity(lock) != identity:
                gone = time.time()
                break
            assert not moved, "the ledger moved while another writer held its lock"
            assert time.time() - born < WAIT_SECONDS, "the writer never recovered the lock"
            time.sleep(0.005)
    assert gone - born >= STALE_LOCK_SECONDS, f"a {gone - born:.2f}s old lock was deleted"
    finished_at, granted = done.read_text().split()
    assert float(finished_at) > born + STALE_LOCK_SECONDS, "the writer did not wait for the lock"
    assert {(c.owner, c.path, c.id) for c in bus.claims()} >= {("waiter-1", "internal/", granted)}


def test_a_writer_waiting_on_a_live_lock_proceeds_as_soon_as_it_is_released(
    repo: Path, tmp_path: Path
) -> None:
    bus = Bus.open(repo, "holder-1")
    bus.init()
    bus.claim(["config/"])
    done = tmp_path / "done"
    lock = _plant_lock(_common(bus), ledger_shards.shard_of_path("internal/"), age_seconds=0)
    writer = FORK.Process(target=claim_and_record, args=(str(repo), "waiter-1", "internal/", str(done)))
    with running([writer]):
        time.sleep(min(1.0, STALE_LOCK_SECONDS / 3))
        assert writer.is_alive() and not done.exists(), "the writer did not wait for the lock"
        assert lock.exists()
        released = time.time()
        lock.unlink()  # the live holder finishes
        writer.join(WAIT_SECONDS)
    assert float(done.read_text().split()[0]) - released < 1.0  # far sooner than STALE_LOCK_SECONDS
    assert [c.owner for c in bus.claims()] == ["holder-1", "waiter-1"]


def test_eight_writers_meeting_one_stale_ledger_lock_all_keep_their_grants(
    worktrees: list[Path], long_mode: bool
) -> None:
    agents = [f"agent-{i}" for i in range(8)]
    rounds = 200 if long_mode else 15
    for i, agent in enumerate(agents):
        Bus.open(worktrees[i % 3], agent).init()
    observer = Bus.open(worktrees[0], "observer")
    # Every claim is below `work/`, on one shard: it exists, and every round updates it under the stale lock.
    shard = ledger_shards.shard_of_path("work/")
    seed = observer.claim(["work/seed/"]).id
    plans = {a: [[f"work/round-{r}/{a}.py"] for r in range(rounds)] for a in agents}
    barrier, out = SPAWN.Barrier(len(agents) + 1), SPAWN.Queue()
    procs = [
        SPAWN.Process(target=claim_rounds, args=(str(worktrees[i % 3]), a, plans[a], barrier, out))
        for i, a in enumerate(agents)
    ]
    with running(procs, barrier):
        for r in range(rounds):
            _plant_lock(_common(observer), shard, age_seconds=60)
            barrier.wait(WAIT_SECONDS)
            outcomes: list[ClaimOutcome] = collect(out, len(agents))
            assert all(o.granted for o in outcomes), f"round {r}: a disjoint claim was refused"
            held = {(c.owner, c.path, c.id) for c in observer.claims()}
            won = {(o.agent, o.wanted[0], o.granted) for o in outcomes}
            assert held == {("observer", "work/seed/", seed)} | won, f"round {r}: a granted claim was lost"
            barrier.wait(WAIT_SECONDS)
            barrier.wait(WAIT_SECONDS)
    assert_fsck_clean(worktrees[0])
    claims = observer.log(n=None, kinds=["claim"])
    assert len({m.id for m in claims}) == len(claims) == 1 + 8 * rounds
