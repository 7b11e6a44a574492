"""Housekeeping: `git gc` and `git pack-refs` move bus refs into packed-refs and objects into packs.

Nothing may be lost (same messages, same claims, same read cursors) and every bus handle, old or new,
must keep working afterwards, including once the emptied loose ref directories are gone. The same
housekeeping run beside a live writer must lose none of its writes. `gc --prune=now` is only run once
writers are idle: git documents it as unsafe beside a concurrent writer, whatever that writer is.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from gitbus import housekeeping, sync
from gitbus.bus import Bus
from gitbus.claims import Claim
from gitbus.clock import FakeClock
from gitbus.errors import ClaimConflict
from gitbus.git import Oid
from gitbus.ledger_cas import is_part
from gitbus.ledger_shards import shard_of_path
from gitbus.message import Message

from .helpers_proc import (
    FORK,
    acked_ids,
    assert_fsck_clean,
    decoded_bus_messages,
    git_run,
    held_after,
    overlapping_owners,
    read_acks,
    running,
    write_until_stopped,
    writer_errors,
)

BusFor = Callable[[Path, str], Bus]


class Snapshot(NamedTuple):
    log: list[Message]
    claims: list[Claim]
    tips: dict[str, Oid]


def _snapshot(bus: Bus) -> Snapshot:
    return Snapshot(bus.log(n=None), bus.claims(include_expired=True), bus.repo.refs("refs/bus/"))


def _loose_bus_refs(common: Path) -> list[Path]:
    return [p for p in (common / "refs" / "bus").rglob("*") if p.is_file()]


def _populate(worktrees: list[Path], bus_for: BusFor) -> tuple[Bus, Bus, Bus]:
    """Three agents in three worktrees with every kind of message, live claims and a done request."""
    api, web, ops = (
        bus_for(wt, name) for wt, name in zip(worktrees, ("api-1", "web-1", "ops-1"), strict=True)
    )
    for k in range(15):
        api.discover(f"handler {k} moved", ["internal/api/handler.go"])
        web.discover(f"page {k} reads the handler")
    question = web.ask("where is the db config?", to="api-1")
    api.answer(question.id, "config/db.yaml")
    request = api.request("split the handlers", paths=["internal/api/"])
    ops.take(request.id)
    ops.done(request.id, "split into three files")
    api.claim(["internal/api/"], reason="refactor")
    web.claim(["config/db.yaml"])
    web.release(["config/db.yaml"])
    web.claim(["config/"])
    ops.claim(["internal/apis/"])
    ops.renew()
    assert len({shard_of_path("internal/"), shard_of_path("config/")}) == 2  # see POPULATED_REFS
    return api, web, ops


# The bus refs `_populate` leaves: three agent chains, `refs/bus/ledger` (the tombstone), the main
# ledger (the request) and the shards of `internal/` and `config/` (two: they hash apart).
POPULATED_REFS = 7

HOUSEKEEPING = {
    "gc-prune-now": ("gc", "--prune=now", "--quiet"),
    "pack-refs-all": ("pack-refs", "--all"),
}


@pytest.mark.parametrize("dirs_deleted", [False, True], ids=["dirs-kept", "loose-dirs-deleted"])
@pytest.mark.parametrize("command", list(HOUSEKEEPING))
def test_housekeeping_after_messages_exist_loses_nothing_and_the_bus_keeps_working(
    worktrees: list[Path], bus_for: BusFor, clock: FakeClock, command: str, dirs_deleted: bool
) -> None:
    api, web, ops = _populate(worktrees, bus_for)
    web.inbox(mark_read=True)
    before = _snapshot(api)
    common = api.repo.common_dir

    git_run(worktrees[2], *HOUSEKEEPING[command]).check_returncode()
    assert _loose_bus_refs(common) == [], "housekeeping left loose bus refs: this test packs nothing"
    assert "refs/bus/ledger" in (common / "packed-refs").read_text()
    if command.startswith("gc"):
        loose = git_run(worktrees[0], "count-objects").stdout
        assert loose.startswith("0 objects"), f"gc left objects loose, none is read from a pack: {loose}"
    if dirs_deleted and (common / "refs" / "bus").exists():
        shutil.rmtree(common / "refs" / "bus")  # empty, as checked above

    for bus in (api, Bus.open(worktrees[1], "web-1", clock)):
        assert _snapshot(bus) == before, f"{command} changed what {bus.agent} reads"
    assert web.inbox() == [], "the read cursor lost its place"
    assert_fsck_clean(worktrees[0])

    note = api.discover("still here after housekeeping")
    assert [m.id for m in web.inbox()] == [note.id]
    with pytest.raises(ClaimConflict) as refused:
        web.claim(["internal/api/handler.go"])
    assert refused.value.holder == "api-1"
    api.release(["internal/api/"])
    granted = web.claim(["internal/api/handler.go"])
    newcomer = bus_for(worktrees[0], "new-1")
    newcomer.claim(["README.md"])
    ops.release(everything=True)

    after = _snapshot(Bus.open(worktrees[2], "ops-1", clock))
    assert after.log[-len(before.log) :] == before.log, "history before housekeeping changed"
    assert {(c.owner, c.path) for c in after.claims} == {
        ("web-1", "internal/api/handler.go"),
        ("web-1", "config/"),
        ("new-1", "README.md"),
    }
    assert granted.id in {c.id for c in after.claims}
    assert_fsck_clean(worktrees[0])


def test_gc_and_pack_refs_beside_a_live_writer_lose_no_write_and_keep_fsck_clean(
    worktrees: list[Path], tmp_path: Path, long_mode: bool
) -> None:
    writers = ("keeper-1", "keeper-2")
    for agent in writers:
        Bus.open(worktrees[1], agent).init()
    observer = Bus.open(worktrees[0], "observer")
    acks, ready, stop = tmp_path / "acks", FORK.Event(), FORK.Event()
    writer = FORK.Process(
        target=write_until_stopped, args=(str(worktrees[1]), writers, str(acks), ready, stop, 7)
    )
    commands = [
        ("pack-refs", "--all"),
        ("gc", "--quiet"),
        ("pack-refs", "--all", "--prune"),
        ("repack", "-d"),
    ]
    succeeded: set[str] = set()
    seen: set[str] = set()
    runs = 0
    with running([writer]):
        assert ready.wait(60), f"the writer never got going: {writer_errors(read_acks(acks))}"
        deadline = time.monotonic() + (60.0 if long_mode else 4.0)
        while time.monotonic() < deadline or runs < len(commands):
            args = commands[runs % len(commands)]
            proc = subprocess.Popen(
                ["git", *args], cwd=worktrees[0], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            while proc.poll() is None:  # a reader meanwhile never sees a message vanish
                now = {str(m.id) for m in observer.log(n=None)}
                assert seen <= now, f"messages vanished from a reader during git {args[0]}"
                seen = now
            if proc.returncode == 0:
                succeeded.add(args[0])
            runs += 1
            errors = writer_errors(read_acks(acks))
            assert errors == [], f"the writer failed during git {args[0]}: {errors}"
        stop.set()
    assert succeeded == {"pack-refs", "gc", "repack"}, "a housekeeping command never succeeded"

    acked = read_acks(acks)
    assert len(acked) > 50, "the writer hardly wrote"
    logged = observer.log(n=None)
    ids = [m.id for m in logged]
    assert len(set(ids)) == len(ids), "a message appears twice"
    assert acked_ids(acked) <= set(ids), "an acknowledged write was lost"
    # Every bus commit decodes; a step's commit on a further shard (`part=`) is not read as its own
    # message, but names the step it belongs to.
    decoded = decoded_bus_messages(worktrees[0])
    assert sorted(ids) == sorted(m.id for m in decoded if not is_part(m))
    assert {m.get("part") for m in decoded if is_part(m)} <= set(ids)
    claims = observer.claims()
    assert {(c.owner, c.path) for c in claims} == held_after(acked)
    assert overlapping_owners(claims) == []
    assert_fsck_clean(worktrees[0])
    git_run(worktrees[0], "gc", "--prune=now", "--quiet").check_returncode()  # writers idle now
    assert [m.id for m in observer.log(n=None)] == ids
    assert_fsck_clean(worktrees[0])


# -- gitbus.housekeeping: the cheap check and the run beside live writers ---------------------------


def _plant_loose_objects(common: Path, n: int) -> None:
    """`n` files where git keeps loose objects starting with 17: what `check` samples, as git does."""
    folder = common / "objects" / "17"
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        (folder / f"{k:038x}").write_bytes(b"")


def test_check_counts_loose_bus_refs_and_estimates_loose_objects_from_files(
    repo: Path, bus_for: BusFor
) -> None:
    api, web = bus_for(repo, "api-1"), bus_for(repo, "web-1")
    api.claim(["internal/"])
    web.discover("found it")
    common = api.repo.common_dir
    before = housekeeping.check(common)
    # two chains, the claim's shard and `refs/bus/ledger` (the tombstone the first step left there)
    assert before.loose_refs == 4
    git_run(repo, "pack-refs", "--all").check_returncode()
    assert housekeeping.check(common).loose_refs == 0
    web.discover("one more")
    assert housekeeping.check(common).loose_refs == 1  # libgit2 writes the updated ref loose again
    seen = housekeeping.check(common).loose_objects
    _plant_loose_objects(common, 3)
    assert housekeeping.check(common).loose_objects == seen + 3 * 256


def test_due_follows_git_gc_auto_thresholds() -> None:
    lim = housekeeping.Limits(loose_objects=6700, packs=50, loose_refs=100)
    assert not housekeeping.Clutter(27 * 256, 50, 100).due(lim)  # git wants more than 27 in objects/17
    assert housekeeping.Clutter(28 * 256, 0, 0).due(lim)
    assert housekeeping.Clutter(0, 51, 0).due(lim)
    assert housekeeping.Clutter(0, 0, 101).due(lim)


def test_a_run_packs_the_refs_that_are_due_and_the_bus_reads_the_same(
    worktrees: list[Path], bus_for: BusFor, clock: FakeClock
) -> None:
    api, _web, _ops = _populate(worktrees, bus_for)
    before = _snapshot(api)
    out = housekeeping.run(api.repo, limits=housekeeping.Limits(loose_refs=2))
    assert out.ran == ("git pack-refs --all",) and out.failed == ()
    assert out.before.loose_refs == POPULATED_REFS and out.after.loose_refs == 0
    assert _snapshot(Bus.open(worktrees[1], "web-1", clock)) == before
    assert housekeeping.run(api.repo).skipped == "nothing is due"
    assert_fsck_clean(worktrees[0])


def test_a_forced_run_packs_every_object_and_ref_and_loses_nothing(
    worktrees: list[Path], bus_for: BusFor, clock: FakeClock
) -> None:
    api, web, _ops = _populate(worktrees, bus_for)
    web.inbox(mark_read=True)
    before = _snapshot(api)
    out = housekeeping.run(api.repo, force=True)
    assert out.ran == ("git gc --quiet",) and out.failed == ()
    assert out.after.loose_refs == 0 and out.after.loose_objects == 0 and out.after.packs >= 1
    assert git_run(worktrees[0], "count-objects").stdout.startswith("0 objects")
    assert _snapshot(Bus.open(worktrees[2], "ops-1", clock)) == before
    assert web.inbox() == []
    assert_fsck_clean(worktrees[0])


def test_maybe_run_looks_at_most_once_per_interval(repo: Path, bus_for: BusFor) -> None:
    bus = bus_for(repo, "api-1")
    bus.discover("a loose ref")
    low = housekeeping.Limits(loose_refs=0)
    first = housekeeping.maybe_run(bus.repo, min_interval=60, limits=low)
    assert first is not None and first.ran == ("git pack-refs --all",)
    bus.discover("another loose ref")
    assert housekeeping.check(bus.repo.common_dir).due(low)
    assert housekeeping.maybe_run(bus.repo, min_interval=60, limits=low) is None  # looked a moment ago
    assert housekeeping.maybe_run(bus.repo, min_interval=0, limits=low) is not None


def test_a_second_housekeeper_returns_at_once_while_one_runs(repo: Path, bus_for: BusFor) -> None:
    bus = bus_for(repo, "api-1")
    lock = bus.repo.common_dir / "gitbus" / "housekeeping.lock"
    lock.parent.mkdir(exist_ok=True)
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        start = time.monotonic()
        out = housekeeping.run(bus.repo, force=True)
        assert time.monotonic() - start < 1.0
    assert out.skipped == "another housekeeping run is under way" and out.ran == ()
    assert housekeeping.run(bus.repo, force=True).ran == ("git gc --quiet",)


def test_a_git_command_that_fails_is_reported_not_raised(repo: Path, bus_for: BusFor) -> None:
    bus = bus_for(repo, "api-1")
    (bus.repo.common_dir / "packed-refs.lock").write_text("")  # another git is packing refs
    out = housekeeping.run(bus.repo, limits=housekeeping.Limits(loose_refs=0))
    assert out.ran == ("git pack-refs --all",)
    assert len(out.failed) == 1 and out.failed[0].startswith("git pack-refs failed: ")
    assert bus.discover("still writable").id in {m.id for m in bus.log(n=None)}


def test_forced_runs_beside_a_live_writer_lose_no_write(worktrees: list[Path], tmp_path: Path) -> None:
    for agent in ("keeper-1", "keeper-2"):
        Bus.open(worktrees[1], agent).init()
    observer = Bus.open(worktrees[0], "observer")
    acks, ready, stop = tmp_path / "acks", FORK.Event(), FORK.Event()
    writer = FORK.Process(
        target=write_until_stopped,
        args=(str(worktrees[1]), ("keeper-1", "keeper-2"), str(acks), ready, stop, 3),
    )
    with running([writer]):
        assert ready.wait(60), f"the writer never got going: {writer_errors(read_acks(acks))}"
        for k in range(4):
            out = housekeeping.run(observer.repo, force=k % 2 == 0, limits=housekeeping.Limits(0, 0, 0))
            assert out.skipped is None and out.ran
        stop.set()
    acked = read_acks(acks)
    assert writer_errors(acked) == []
    ids = [m.id for m in observer.log(n=None)]
    assert len(set(ids)) == len(ids) and acked_ids(acked) <= set(ids)
    assert {(c.owner, c.path) for c in observer.claims()} == held_after(acked)
    assert_fsck_clean(worktrees[0])


def test_gitbus_gc_packs_on_demand_and_says_what_it_did(worktrees: list[Path], bus_for: BusFor) -> None:
    api, _web, _ops = _populate(worktrees, bus_for)
    before = _snapshot(api)
    gb = [sys.executable, "-m", "gitbus", "-C", str(worktrees[0])]
    due = subprocess.run([*gb, "gc", "--json"], capture_output=True, text=True, timeout=60)
    assert due.returncode == 0, due.stderr
    assert json.loads(due.stdout)["skipped"] == "nothing is due"  # a small bus is left alone
    forced = subprocess.run([*gb, "gc", "--force"], capture_output=True, text=True, timeout=60)
    assert forced.returncode == 0, forced.stderr
    assert (
        forced.stdout.startswith("ran git gc") and f"loose bus refs {POPULATED_REFS} → 0" in forced.stdout
    ), forced.stdout
    assert _loose_bus_refs(api.repo.common_dir) == []
    assert _snapshot(Bus.open(worktrees[0], "api-1")) == before


def test_what_gitbus_kept_of_a_remote_git_no_longer_knows_is_dropped(tmp_path: Path) -> None:
    """`refs/gitbus/{fetched,vouched}/<remote>/` hold a remote's bus, and git does not rename or
    remove them with the remote: after `git remote rename` or `remove`, housekeeping drops them (they
    would keep their objects from gc for good), and keeps those of the remotes git knows."""
    from .conftest import git
    from .test_sync import Net

    net = Net.make(tmp_path)
    alice, _ = net.pair(FakeClock(1_764_000_000_000))
    alice.discover("hello")
    sync.sync(alice.repo, "origin")
    git(net.clones[0], "remote", "add", "other", net.url)
    sync.sync(alice.repo, "other")
    assert git(net.clones[0], "for-each-ref", "refs/gitbus/fetched/other/", "refs/gitbus/vouched/other/")
    git(net.clones[0], "remote", "remove", "other")
    housekeeping.run(alice.repo, force=True)
    kept = git(net.clones[0], "for-each-ref", "--format=%(refname)", "refs/gitbus/").split()
    assert kept and all(
        r.startswith(("refs/gitbus/fetched/origin/", "refs/gitbus/vouched/origin/")) for r in kept
    )
    assert sync.sync(alice.repo, "origin").refused == []
