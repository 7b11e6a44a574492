"""The fault-injection suite: kill, race, partition, pack and feed garbage to gitbus, then check that
nothing acknowledged was lost and the invariants hold. It writes docs/reliability.md.

    python -m tests.faults [--long] [--out docs/reliability.md] [--only NAME ...]

Short mode is what CI runs (tests/test_faults.py calls the same scenarios); `--long` runs the counts
the issue asks for. Every scenario returns a `Result`: what was injected, what was checked, what was
lost, and every problem it found, so a failing run still writes an honest report. Processes run on
the machine's real git over real repositories; the remote is a bare repository over file://.

What the checks mean:
- *acknowledged*: a writer appends a line to an ack file after each call returns (one O_APPEND write,
  so a kill leaves whole lines); every acknowledged message must be on the bus, exactly once.
- *claims invariant*, at every state the ledger ever went through: no two claims of different agents
  overlap; every claim held was announced by a claim message at or before that state (same id,
  owner); every claim message's paths are held by it in the state it wrote.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS = REPO_ROOT / "fixtures" / "bad-inputs.json"
FORK = mp.get_context("fork")


# -- sizes and results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    """How much of each fault to inject."""

    name: str
    kills: int  # SIGKILLs in the kill scenario, over `batches` batches
    batches: int
    housekeeping_runs: int  # git gc / pack-refs / repack runs beside live writers
    races: int  # eight-way claim rounds
    posts: int  # posts from eight processes
    seeds: tuple[int, ...]  # partition histories of three clones
    steps: int
    cli_subprocess: bool  # every bad input also through a real `python -m gitbus` process


SHORT = Size("short", 16, 2, 8, 30, 400, (1, 2), 40, False)
LONG = Size("long", 200, 10, 60, 1000, 10_000, tuple(range(1, 25)), 120, True)


@dataclass
class Result:
    name: str
    title: str
    injected: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    lost: int = 0  # acknowledged writes missing at the end
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # observations that are not failures
    known: list[str] = field(default_factory=list)  # known bugs reproduced (listed, not failed)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems and self.lost == 0

    def expect(self, cond: bool, problem: str) -> bool:
        if not cond:
            self.problems.append(problem)
        return cond

    @contextmanager
    def guarded(self, what: str) -> Iterator[None]:
        """Turn a failed assertion or a crash inside into a problem of this scenario."""
        try:
            yield
        except AssertionError as e:
            self.problems.append(f"{what}: {' '.join(str(e).split())[:600]}")
        except Exception:
            self.problems.append(f"{what} crashed: {traceback.format_exc(limit=6)[-1500:]}")


# -- shared checks ------------------------------------------------------------------------------------


def fsck_strict(repo: Path) -> str | None:
    """None when `git fsck --strict` is clean (dangling objects of lost races are allowed)."""
    proc = subprocess.run(
        ["git", "fsck", "--strict", "--no-dangling", "--no-progress"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode == 0 and not proc.stdout.strip():
        return None
    return f"git fsck --strict in {repo.name}: {(proc.stdout + proc.stderr).strip()[:400]}"


def ledger_problems(worktree: Path) -> tuple[int, list[str]]:
    """Walk every state of every ledger and check the claims invariant; (states, problems). Claims
    overlap only within one shard, and a step on several shards announces on each what it holds."""
    from gitbus.claims import slot
    from gitbus.git import Oid, Repository
    from gitbus.ids import LEDGER_REF, LEDGERS_PREFIX, MAIN_LEDGER
    from gitbus.ledger import Ledger
    from gitbus.ledger_shards import shard_of_path
    from gitbus.message import Kind

    from .helpers_proc import overlapping_owners
    from .test_sync import ledger_steps

    repo = Repository.open(worktree)
    refs = dict(repo.refs(LEDGERS_PREFIX))
    single = repo.ref(LEDGER_REF)
    if single is not None and repo.object_kind(single) == "commit":
        refs[LEDGER_REF] = single
    walked = {ref: list(ledger_steps(repo, Oid(tip)))[::-1] for ref, tip in sorted(refs.items())}
    announced: dict[str, str] = {}  # claim message id -> its agent, on any ledger (claims are carried)
    for steps in walked.values():
        for step in steps:
            if step.message is not None and step.message.kind is Kind.CLAIM:
                announced[step.message.get("part") or step.message.id] = step.message.sender
    problems: list[str] = []
    for ref, steps in walked.items():
        for step in steps:
            msg = step.message
            if msg is not None and msg.kind is Kind.CLAIM:
                mid = msg.get("part") or msg.id
                state = Ledger(repo, repo.read_commit(step.commit).tree)
                for p in msg.paths:
                    if ref not in (LEDGER_REF, MAIN_LEDGER) and shard_of_path(p) != ref:
                        continue  # held by another shard's commit of the same step
                    held = state.read(slot(p))
                    if held is None or held.get("id") != mid or held.get("owner") != msg.sender:
                        problems.append(
                            f"claim {mid} announced {p} for {msg.sender}, not held at {step.commit}"
                        )
            for c in step.claims:
                if announced.get(c.id) != c.owner:
                    problems.append(f"{c.owner}'s claim on {c.path} ({c.id}) was never announced")
            for a, b in overlapping_owners(step.claims):
                problems.append(f"{a.owner}:{a.path} and {b.owner}:{b.path} overlap at {step.commit}")
            if len(problems) > 10:
                break
    return sum(len(steps) for steps in walked.values()), problems


def bus_ids(worktree: Path) -> list[str]:
    """Every message id on the bus of `worktree`, read through the library, newest first."""
    from gitbus.bus import Bus

    return [m.id for m in Bus.open(worktree, "observer").log(n=None)]


def _hermetic(home: Path) -> None:
    """Seal the suite from the user's git config and identity (as tests/conftest.py does)."""
    home.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_EDITOR="false",
        GIT_AUTHOR_NAME="Faults",
        GIT_AUTHOR_EMAIL="faults@example.invalid",
        GIT_COMMITTER_NAME="Faults",
        GIT_COMMITTER_EMAIL="faults@example.invalid",
    )
    for var in ("GITBUS_AGENT", "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        os.environ.pop(var, None)


# -- 1. SIGKILL at random points of posting, claiming, syncing and watching ---------------------------


def _own_group(target: Callable[..., None], *args: Any) -> None:
    """Run `target` as the leader of its own process group, so a kill takes its git children too."""
    os.setsid()
    target(*args)


def _sync_until_stopped(worktree: str, ack_path: str, ready: Any, stop: Any) -> None:
    """Sync with origin in a loop; acknowledge each round (`sync ok`, or `sync-failed <why>`)."""
    from gitbus import sync
    from gitbus.errors import GitbusError
    from gitbus.git import Repository

    repo = Repository.open(worktree)
    fd = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    while not stop.is_set():
        try:
            sync.sync(repo, "origin")
            os.write(fd, b"sync ok\n")
        except GitbusError as e:
            os.write(fd, f"sync-failed {' '.join(str(e).split())}\n".encode())
        ready.set()


class Victim:
    """One process that is killed and restarted: a writer, a syncer, or a `gitbus watch`."""

    def __init__(self, kind: str, start: Callable[[int], tuple[Any, Callable[[], bool]]]) -> None:
        self.kind, self._start = kind, start
        self.proc: Any = None
        self.ready: Callable[[], bool] = lambda: False
        self.started_at = 0.0
        self.generation = 0

    def start(self) -> None:
        self.proc, self.ready = self._start(self.generation)
        self.generation += 1
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def kill(self) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.reap(30.0)

    def reap(self, timeout: float) -> None:
        if isinstance(self.proc, subprocess.Popen):
            self.proc.wait(timeout)
        else:
            self.proc.join(timeout)

    def alive(self) -> bool:
        return self.proc.poll() is None if isinstance(self.proc, subprocess.Popen) else self.proc.is_alive()


def _kill_world(root: Path) -> dict[str, Any]:
    """A bare remote over file:// and two clones sharing the bus through it.

    The remote's git side runs in a session of its own (`setsid`), as a server would: killing an
    agent's process group kills its `git push`/`git fetch`, not the remote."""
    from gitbus import settings
    from gitbus.bus import Bus

    from .test_sync import bare_remote, clone

    bare = bare_remote(root)
    clones = {}
    for side in ("a", "b"):
        path = clone(bare.as_uri(), root / side)
        for key, cmd in (("receivepack", "git-receive-pack"), ("uploadpack", "git-upload-pack")):
            subprocess.run(
                ["git", "config", f"remote.origin.{key}", f"setsid -w {cmd}"], cwd=path, check=True
            )
        for agent in (f"{side}-1", f"{side}-2"):
            Bus.open(path, agent).init("origin")
        clones[side] = path
    settings.save(Bus.open(clones["a"], "a-1").repo.common_dir, "sync_interval", 1)
    return {"bare": bare, **clones}


def kill_scenario(root: Path, size: Size) -> Result:
    from gitbus import sync
    from gitbus.errors import GitbusError
    from gitbus.git import Repository
    from gitbus.watch_daemon import running_pid

    from .helpers_proc import acked_ids, read_acks, write_until_stopped, writer_errors
    from .test_sync import bus_refs, remote_ledger_history

    res = Result("kill", "SIGKILL at random points of posting, claiming, syncing and watching")
    world = _kill_world(root)
    a, b, bare = world["a"], world["b"], world["bare"]
    acks = {side: root / f"acks-{side}" for side in ("a", "b")}
    sync_acks = root / "acks-sync"
    common_a = Repository.open(a).common_dir
    rng = random.Random(2024)
    stop = FORK.Event()

    def writer(side: Path, agents: tuple[str, str], ack: Path) -> Callable[[int], tuple[Any, Any]]:
        def start(gen: int) -> tuple[Any, Any]:
            ready = FORK.Event()
            seed = gen * 2 + (side == b)
            p = FORK.Process(
                target=_own_group, args=(write_until_stopped, str(side), agents, str(ack), ready, stop, seed)
            )
            p.start()
            return p, ready.is_set

        return start

    def syncer(gen: int) -> tuple[Any, Any]:
        ready = FORK.Event()
        p = FORK.Process(target=_own_group, args=(_sync_until_stopped, str(b), str(sync_acks), ready, stop))
        p.start()
        return p, ready.is_set

    def watcher(gen: int) -> tuple[Any, Any]:
        log = (root / "watch.log").open("a")
        p = subprocess.Popen(
            [sys.executable, "-m", "gitbus", "watch"],
            cwd=a,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        return p, lambda: running_pid(common_a) == p.pid

    victims = [
        Victim(
            "posting and claiming (clone a, claims decided by the remote)",
            writer(a, ("a-1", "a-2"), acks["a"]),
        ),
        Victim("posting and claiming (clone b)", writer(b, ("b-1", "b-2"), acks["b"])),
        Victim("syncing (clone b, `sync` in a loop)", syncer),
        Victim("watching (`gitbus watch` in clone a, syncing every second)", watcher),
    ]
    killed: Counter[str] = Counter()
    slowest_recovery = 0.0
    per_batch = [size.kills // size.batches + (i < size.kills % size.batches) for i in range(size.batches)]
    states_checked = 0
    for batch, kills in enumerate(per_batch):
        stop.clear()
        for v in victims:
            v.start()
        for _ in range(kills):
            v = rng.choice(victims)
            deadline = time.monotonic() + 60
            while not v.ready() and time.monotonic() < deadline and v.alive():
                time.sleep(0.01)
            if not v.ready():
                res.problems.append(
                    f"batch {batch}: {v.kind} never got going after a kill (bus not writable?)"
                )
                break
            slowest_recovery = max(slowest_recovery, time.monotonic() - v.started_at)
            time.sleep(rng.uniform(0.0, 0.35))  # anywhere inside its next writes, pushes or fetches
            v.kill()
            killed[v.kind] += 1
            v.start()
        stop.set()
        for v in victims:  # the end of a batch is a clean stop, not a kill
            if isinstance(v.proc, subprocess.Popen):
                os.killpg(v.pid, signal.SIGTERM)
            v.reap(60.0)
            if v.alive():
                v.kill()
                res.problems.append(f"batch {batch}: {v.kind} did not stop when asked")
        res.problems += [
            f"batch {batch}: a writer failed: {e}" for s in acks for e in writer_errors(read_acks(acks[s]))
        ]
        # Settle: both clones sync twice, then everything must agree and hold.
        with res.guarded(f"batch {batch}: settling (sync of both clones)"):
            for _ in range(2):
                for side in (a, b):
                    try:
                        sync.sync(Repository.open(side), "origin")
                    except GitbusError as e:
                        locks = sorted(str(p.relative_to(side)) for p in side.rglob("*.lock"))
                        raise AssertionError(
                            f"sync of {side.name} failed after the kills: {e} (locks: {locks})"
                        ) from None
        for repo in (a, b, bare):
            err = fsck_strict(repo)
            res.expect(err is None, f"batch {batch}: {err}")
        with res.guarded(f"batch {batch}: convergence"):
            assert bus_refs(a) == bus_refs(b) == bus_refs(bare), (
                "the clones and the remote differ after settling"
            )
        with res.guarded(f"batch {batch}: acknowledged writes"):
            acked = acked_ids(read_acks(acks["a"])) | acked_ids(read_acks(acks["b"]))
            for side in (a, b):
                ids = bus_ids(side)
                assert len(set(ids)) == len(ids), f"a message appears twice on {side.name}"
                missing = acked - set(ids)
                res.lost = max(res.lost, len(missing))
                assert not missing, (
                    f"{len(missing)} acknowledged writes missing on {side.name}: {sorted(missing)[:5]}"
                )
        for side in (a, b):
            with res.guarded(f"batch {batch}: claims invariant on {side.name}"):
                n, bad = ledger_problems(side)
                states_checked += n
                assert not bad, "; ".join(bad[:5])
        with res.guarded(f"batch {batch}: the remote's ledger"):
            observer = root / f"observer-{batch}"
            subprocess.run(["git", "clone", "-q", bare.as_uri(), str(observer)], check=True)
            remote_ledger_history(bare, observer)
            shutil.rmtree(observer)
        with res.guarded(f"batch {batch}: context files after killed watchers"):
            from gitbus.context import FILE
            from gitbus.context_text import POINTER
            from gitbus.watch import Watcher

            if (a / FILE).exists():  # a watcher killed before its first update writes none
                assert (a / FILE).read_text().endswith(POINTER), "a context file was left half written"
            Watcher(Repository.open(a)).update()  # the next watcher writes it whole
            assert (a / FILE).read_text().endswith(POINTER), "the next watcher did not write the context"
        if res.problems:
            break
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*.lock") if "gitbus" not in p.parts)
    sync_log = [" ".join(x) for x in read_acks(sync_acks)]
    acked_all = read_acks(acks["a"]) + read_acks(acks["b"])
    res.injected = [
        f"{sum(killed.values())} SIGKILLs of whole process groups (the agent and its git children), "
        f"in {len(per_batch)} batches, each 0–350 ms into the victim's work once it was writing:",
        *[f"  - {n} × {kind}" for kind, n in killed.most_common()],
        "Clone a decides claims through the remote (each claim is a fetch + a leased push); clone b "
        "too; `gitbus watch` in clone a syncs every second and after every local write.",
    ]
    res.checked = [
        "After each batch (both clones synced twice): `git fsck --strict` on both clones and the bare "
        "remote; both clones and the remote hold identical bus refs; every acknowledged message "
        f"({len(acked_ids(acked_all))} in all) is present exactly once on both clones; the claims "
        f"invariant at every ledger state of both clones ({states_checked} states walked) and at "
        "every state the remote ever accepted (its reflog); the context file is whole and a new "
        "watcher writes it.",
        f"A killed writer's replacement wrote again within {slowest_recovery:.1f} s at worst "
        "(stale-lock recovery included).",
    ]
    failed_syncs = [s for s in sync_log if s.startswith("sync-failed")]
    res.notes.append(
        f"{sum(1 for s in sync_log if s == 'sync ok')} syncs completed between kills; "
        f"{len(failed_syncs)} failed and were retried"
        + (f" (e.g. {failed_syncs[0][:160]})" if failed_syncs else "")
    )
    ref_locks = [x for x in left if "/refs/" in f"/{x}"]
    if ref_locks:
        res.notes.append(
            f"ref locks left by the last kills (gitbus moves a stale one aside): {ref_locks[:6]}"
        )
    if other := [x for x in left if x not in ref_locks]:
        res.notes.append(
            f"other git locks left by the last kills: {other[:6]}; `objects/maintenance.lock` is left by "
            "the `git maintenance run --auto` that `git fetch` starts, and makes git skip its automatic "
            "maintenance in that clone from then on (gitbus.housekeeping runs `git gc`, which it does "
            "not block)"
        )
    return res


# -- 2. git gc, pack-refs and repack beside live writers ---------------------------------------------


HOUSEKEEPING_COMMANDS: list[tuple[str, ...]] = [
    ("pack-refs", "--all"),
    ("gc", "--quiet"),
    ("repack", "-d"),
    ("gitbus-housekeeping",),
    ("pack-refs", "--all", "--prune"),
    ("repack", "-a", "-d"),
    ("gc", "--auto", "--quiet"),
    ("gitbus-housekeeping", "--force"),
]


def housekeeping_scenario(root: Path, size: Size) -> Result:
    from gitbus import housekeeping
    from gitbus.bus import Bus
    from gitbus.git import Repository

    from .conftest import make_repo
    from .helpers_proc import (
        acked_ids,
        decoded_bus_messages,
        held_after,
        overlapping_owners,
        read_acks,
        write_until_stopped,
        writer_errors,
    )

    res = Result("housekeeping", "git gc, pack-refs and repack beside live writers")
    repo = make_repo(root / "main")
    wt = root / "wt"
    subprocess.run(["git", "worktree", "add", "-q", "-b", "wt", str(wt)], cwd=repo, check=True)
    writers = {("keep-1", "keep-2"): repo, ("keep-3", "keep-4"): wt}
    for agents, where in writers.items():
        for agent in agents:
            Bus.open(where, agent).init()
    observer = Bus.open(repo, "observer")
    stop = FORK.Event()
    procs, ack_files, readies = [], [], []
    for i, (agents, where) in enumerate(writers.items()):
        ack, ready = root / f"acks-{i}", FORK.Event()
        procs.append(
            FORK.Process(target=write_until_stopped, args=(str(where), agents, str(ack), ready, stop, i))
        )
        ack_files.append(ack)
        readies.append(ready)
    for p in procs:
        p.start()
    ran: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    seen: set[str] = set()
    reads = 0
    try:
        for r in readies:
            res.expect(r.wait(60), "a writer never got going")
        lim = housekeeping.Limits(loose_objects=1, packs=1, loose_refs=1)
        for k in range(size.housekeeping_runs):
            args = HOUSEKEEPING_COMMANDS[k % len(HOUSEKEEPING_COMMANDS)]
            label = " ".join(args)
            if args[0] == "gitbus-housekeeping":
                out = housekeeping.run(Repository.open(wt), force="--force" in args, limits=lim)
                ok = not out.failed and out.skipped is None
                reads += 1
                now = {m.id for m in observer.log(n=None)}
                res.expect(seen <= now, f"messages vanished from a reader during {label}")
                seen = now
            else:
                proc = subprocess.Popen(
                    ["git", *args], cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                while proc.poll() is None:  # a reader meanwhile never sees a message vanish
                    now = {m.id for m in observer.log(n=None)}
                    reads += 1
                    res.expect(seen <= now, f"messages vanished from a reader during git {label}")
                    seen = now
                ok = proc.returncode == 0
            ran[label] += 1
            if not ok:
                failed[label] += 1
            errors = [e for f in ack_files for e in writer_errors(read_acks(f))]
            if not res.expect(not errors, f"a writer failed during {label}: {errors[:2]}"):
                break
    finally:
        stop.set()
        for p in procs:
            p.join(60)
            if p.is_alive():
                p.kill()
                p.join()
    acked = [read_acks(f) for f in ack_files]
    with res.guarded("after the runs"):
        logged = [m.id for m in observer.log(n=None)]
        assert len(set(logged)) == len(logged), "a message appears twice"
        missing = set().union(*(acked_ids(x) for x in acked)) - set(logged)
        res.lost = len(missing)
        assert not missing, f"acknowledged writes lost: {sorted(missing)[:5]}"
        steps = [
            m.id for m in decoded_bus_messages(repo) if m.get("part") is None
        ]  # a step's other commits: hidden
        assert sorted(logged) == sorted(steps), "log and git disagree"
        claims = observer.claims()
        want = set().union(*(held_after(x) for x in acked))
        assert {(c.owner, c.path) for c in claims} == want, (
            "the claims held differ from what the writers were told"
        )
        assert overlapping_owners(claims) == []
        _n, bad = ledger_problems(repo)
        assert not bad, "; ".join(bad[:5])
    err = fsck_strict(repo)
    res.expect(err is None, str(err))
    with res.guarded("gc --prune=now once the writers are idle"):
        subprocess.run(["git", "gc", "--prune=now", "--quiet"], cwd=repo, check=True)
        assert bus_ids(repo) == [m.id for m in observer.log(n=None)] and len(bus_ids(repo)) == len(logged)
        assert fsck_strict(repo) is None
    writes = sum(len(x) for x in acked)
    res.injected = [
        f"{sum(ran.values())} housekeeping runs in a repository with a worktree while two writer "
        f"processes (four agents) posted, claimed and released ({writes} acknowledged writes):",
        *[f"  - {n} × `{'git ' if not c.startswith('gitbus') else ''}{c}`" for c, n in ran.items()],
    ]
    res.checked = [
        f"A reader never saw a message vanish ({reads} full reads during the runs); no writer failed; "
        "every acknowledged write present exactly once; the claims held equal the acknowledged "
        "claims and releases replayed; the claims invariant at every ledger state; `git fsck --strict`; "
        "then `gc --prune=now` with the writers idle changes nothing.",
    ]
    if failed:
        res.notes.append(
            "runs that exited non-zero (another git held a lock; nothing lost): "
            + ", ".join(f"{c} × {n}" for c, n in failed.items())
        )
    return res


# -- 3. eight-way claim races, one winner per round ----------------------------------------------------

LINEAGES = (
    ("src/", "src/a/", "src/a/deep/", "src/a/deep/z.py"),  # each path contains the next: all overlap
    ("docs/", "docs/guide.md"),
    ("internal/api/", "internal/api/handler.go", "internal/"),
)


def claim_races_scenario(root: Path, size: Size) -> Result:
    from gitbus.bus import Bus

    from .conftest import make_repo
    from .helpers_proc import SPAWN, WAIT_SECONDS, ClaimOutcome, claim_rounds, collect, running
    from .test_races import _check_claim_round

    res = Result("claim-races", "Eight-way overlapping claim races")
    repo = make_repo(root / "main")
    wts = [repo]
    for name in ("wt-b", "wt-c"):
        subprocess.run(["git", "worktree", "add", "-q", "-b", name, str(root / name)], cwd=repo, check=True)
        wts.append(root / name)
    agents = [f"racer-{i}" for i in range(8)]
    for i, agent in enumerate(agents):
        Bus.open(wts[i % 3], agent).init()
    observer = Bus.open(repo, "observer")
    rng = random.Random(1000)
    lineage = [rng.choice(LINEAGES) for _ in range(size.races)]
    plans = {a: [[rng.choice(lineage[r])] for r in range(size.races)] for a in agents}
    barrier, out = SPAWN.Barrier(9), SPAWN.Queue()
    procs = [
        SPAWN.Process(target=claim_rounds, args=(str(wts[i % 3]), a, plans[a], barrier, out))
        for i, a in enumerate(agents)
    ]
    winners: list[ClaimOutcome] = []
    n = 0
    with res.guarded("the races"), running(procs, barrier):
        for r in range(size.races):
            barrier.wait(WAIT_SECONDS)
            outcomes: list[ClaimOutcome] = collect(out, 8)
            won = [o for o in outcomes if o.granted]
            assert len(won) == 1, f"round {r}: {len(won)} winners ({[o.agent for o in won]})"
            _check_claim_round(observer, r, outcomes)
            winners += won
            barrier.wait(WAIT_SECONDS)
            barrier.wait(WAIT_SECONDS)
            assert observer.claims() == [], f"round {r}: a claim survived release --all"
    with res.guarded("the ledger afterwards"):
        claims = observer.log(n=None, kinds=["claim"])
        assert Counter(m.id for m in claims) == Counter(str(w.granted) for w in winners), (
            "claim messages ≠ grants"
        )
        assert len(observer.log(n=None, kinds=["release"])) == len(winners)
        n, bad = ledger_problems(repo)
        assert not bad, "; ".join(bad[:5])
    err = fsck_strict(repo)
    res.expect(err is None, str(err))
    res.injected = [
        f"{size.races} rounds; in each, 8 processes (8 agents in 3 worktrees) released by one barrier "
        "claim paths on one lineage (e.g. `src/`, `src/a/`, `src/a/deep/z.py`), so every pair overlaps.",
    ]
    res.checked = [
        "Exactly one winner per round; the ledger holds exactly the winner's claim with the granted id; "
        "every loser was refused naming a holder of an overlapping claim that is really held; "
        f"afterwards {len(winners)} claim messages = {len(winners)} grants, one release each; the claims "
        f"invariant at every ledger state ({n} states); `git fsck --strict`.",
    ]
    return res


# -- 4. ten thousand posts from eight processes ---------------------------------------------------------


def posts_scenario(root: Path, size: Size) -> Result:
    from gitbus.bus import Bus
    from gitbus.ids import AgentName, agent_ref

    from .conftest import make_repo
    from .helpers_proc import SPAWN, Posted, chain, collect, post_many, running

    res = Result("posts", "Posts from eight processes at once")
    repo = make_repo(root / "main")
    senders = [f"poster-{i}" for i in range(4)] + ["shared"] * 4
    for agent in set(senders):
        Bus.open(repo, agent).init()
    each = size.posts // 8
    barrier, out = SPAWN.Barrier(8), SPAWN.Queue()
    procs = [
        SPAWN.Process(target=post_many, args=(str(repo), a, f"p{i}", each, barrier, out))
        for i, a in enumerate(senders)
    ]
    started = time.monotonic()
    with res.guarded("posting"), running(procs, barrier):
        posted: list[Posted] = collect(out, 8)
    took = time.monotonic() - started
    with res.guarded("reading back"):
        logged = Bus.open(repo, "observer").log(n=None, kinds=["discovery"])
        by_id = {m.id: m for m in logged}
        sent = {mid: (text, p.agent) for p in posted for mid, text in zip(p.ids, p.texts, strict=True)}
        res.lost = len(sent.keys() - by_id.keys())
        assert len(sent) == 8 * each, "a poster reported fewer posts than it made"
        assert len(by_id) == len(logged), "a message appears twice"
        assert not res.lost, f"{res.lost} posts are missing"
        assert len(logged) == len(sent), f"{len(logged) - len(sent)} messages nobody posted"
        assert all((by_id[i].text, by_id[i].sender) == v for i, v in sent.items()), "a post changed"
        for agent in set(senders):
            times = [m.time for m in chain(repo, agent_ref(AgentName(agent)))]
            assert len(times) == senders.count(agent) * each + 1, f"{agent}'s chain has the wrong length"
            assert times == sorted(set(times), reverse=True), f"{agent}'s times are not strictly increasing"
    err = fsck_strict(repo)
    res.expect(err is None, str(err))
    res.injected = [
        f"{8 * each} posts from 8 processes started by one barrier ({each} each): four on their own "
        f"chains, four all appending to one shared chain; {8 * each / took:,.0f} posts/s with process start."
    ]
    res.checked = [
        "Every post the library acknowledged is on the bus exactly once with its text and sender, and "
        "nothing else is; every chain has the right length with strictly increasing times; "
        "`git fsck --strict`."
    ]
    return res


# -- 5. random partitions of three clones ------------------------------------------------------------


def partitions_scenario(root: Path, size: Size) -> Result:
    from . import test_convergence as conv

    res = Result("partitions", "Random partitions of three clones syncing through a remote")
    seen: Counter[str] = Counter()
    failed = 0
    for seed in size.seeds:
        try:
            seen += conv._run(seed, size.steps, root / f"seed-{seed}")
        except AssertionError as e:
            failed += 1
            res.problems.append(" ".join(str(e).split())[:800])
        shutil.rmtree(root / f"seed-{seed}", ignore_errors=True)
    res.injected = [
        f"{len(size.seeds)} random histories (fixed seeds {size.seeds[0]}–{size.seeds[-1]}) of {size.steps} "
        "steps over three clones of a file:// remote: posts (one agent name on two clones), requests, "
        "claims, releases, renewals, takes, online and offline, pulls, pushes and syncs, partitions (a "
        "clone's remote pointed at a dead path) and clock jumps that expire leases. "
        "Events exercised: " + ", ".join(f"{k} {v}" for k, v in sorted(seen.items())) + ".",
    ]
    res.checked = [
        "After healing and two sync rounds: identical messages in identical (time, id) order and identical "
        "live claims on every clone and the remote; every post and every remotely granted step present; "
        "every offline step kept or dropped with a note to its agent; no state the remote ever accepted "
        f"held overlapping live claims. {failed} of {len(size.seeds)} histories failed.",
    ]
    return res


# -- 6. bad inputs through every CLI command -----------------------------------------------------------


NOT_IN_CORPUS = {
    "tui": "an interactive face; its input is keystrokes",
    "mcp": "a stdio server; its bad inputs are tested in tests/test_mcp.py",
}


def load_corpus() -> list[dict[str, Any]]:
    return list(json.loads(CORPUS.read_text())["cases"])


def _value(v: Any, subst: dict[str, str]) -> Any:
    """A corpus value: a string with {placeholders}, or {"repeat": s, "times": n}, or {"hex": ...}."""
    if isinstance(v, dict) and "repeat" in v:
        return str(v["repeat"]) * int(v["times"])
    if isinstance(v, dict) and "hex" in v:
        return bytes.fromhex(v["hex"])
    if isinstance(v, str):
        for k, s in subst.items():
            v = v.replace("{" + k + "}", s)
    return v


def _state(common: Path) -> tuple[dict[str, str], dict[str, bytes], int]:
    """Every ref, every file gitbus keeps (settings, cursors, caches) and the loose object count."""
    from gitbus.gitfiles import read_refs

    files = {
        str(p.relative_to(common)): p.read_bytes()
        for p in sorted((common / "gitbus").rglob("*"))
        if p.is_file() and p.name != "watch.log"
    }
    objects = sum(len(os.listdir(d)) for d in (common / "objects").glob("[0-9a-f][0-9a-f]"))
    return read_refs(common, "refs/"), files, objects


def _restore(repo: Path, common: Path, before: tuple[dict[str, str], dict[str, bytes], int]) -> None:
    """Undo what a bad input wrote, so the next case meets the same world."""
    from gitbus.gitfiles import read_refs

    now = read_refs(common, "refs/")
    script = [f"delete {r}" for r in now.keys() - before[0].keys()]
    script += [f"update {r} {oid}" for r, oid in before[0].items() if now.get(r) != oid]
    if script:
        subprocess.run(["git", "update-ref", "--stdin"], cwd=repo, input="\n".join(script) + "\n", text=True)
    for p in (common / "gitbus").rglob("*"):
        rel = str(p.relative_to(common))
        if p.is_file() and p.name != "watch.log" and rel not in before[1]:
            p.unlink()
    for rel, data in before[1].items():
        (common / rel).write_bytes(data)


def _bad_world(root: Path) -> tuple[Path, Path, dict[str, str]]:
    from gitbus.bus import Bus

    from .conftest import make_repo

    repo = make_repo(root / "main")
    wt = root / "wt-web"
    subprocess.run(["git", "worktree", "add", "-q", "-b", "web", str(wt)], cwd=repo, check=True)
    api, web = Bus.open(repo, "api-1"), Bus.open(wt, "web-1")
    api.init()
    web.join("web-1")
    api.join("api-1")
    q = web.ask("where is the db config?", to="api-1")
    d = api.discover("the handler moved", ["internal/api/handler.go"])
    taken = api.request("split the handlers")
    open_req = web.request("write the docs")
    web.take(taken.id)
    web.claim(["config/"], reason="tuning")
    (root / "outside").mkdir()
    (root / "not-empty").mkdir()
    (root / "not-empty" / "x").write_text("x")
    (root / "not-a-repo").mkdir()
    subst = {
        "repo": str(repo),
        "outside": str(root / "outside"),
        "not_empty": str(root / "not-empty"),
        "not_a_repo": str(root / "not-a-repo"),
        "question": q.id,
        "discovery": d.id,
        "request_taken": taken.id,
        "request_open": open_req.id,
        "wt": str(wt),
    }
    return repo, api.repo.common_dir, subst


def _invoke(case: dict[str, Any], repo: Path, subst: dict[str, str], real: bool) -> tuple[int, str, str]:
    """Run one corpus case in-process (typer's runner) or as a real `python -m gitbus` process."""
    args = [_value(a, subst) for a in case["args"]]
    agent = case.get("agent", "api-1")
    where = _value(case.get("cwd", "{repo}"), subst)
    head = ["-C", where] + (["-a", _value(agent, subst)] if agent is not None else [])
    stdin = _value(case.get("stdin"), subst)
    env = {k: _value(v, subst) for k, v in case.get("env", {}).items()}
    if real:
        proc = subprocess.run(
            [sys.executable, "-m", "gitbus", *head, *args],
            cwd=where,
            input=stdin.encode() if isinstance(stdin, str) else stdin or b"",
            env={**os.environ, "COLUMNS": "120", **env},
            capture_output=True,
            timeout=60,
        )
        return proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    from typer.testing import CliRunner

    from gitbus.cli import app

    r = CliRunner().invoke(app, [*head, *args], input=stdin, env={"COLUMNS": "120", **env})
    crashed = r.exception is not None and not isinstance(r.exception, SystemExit)
    return r.exit_code, r.stdout, r.stderr + (f"\nTraceback (in-process): {r.exception!r}" if crashed else "")


def check_bad_input(case: dict[str, Any], code: int, out: str, err: str) -> list[str]:
    """What is wrong with how gitbus answered one bad input (empty: all good)."""
    wrong = []
    if case.get("denied"):  # an edit the guard cannot judge: refused on stdout, exit 0 (a hook that
        # fails lets its edit through), with the reason, and nothing on stderr
        if code != 0 or err.strip() or '"deny"' not in out:
            wrong.append(f"not a refusal on stdout: exit {code}, stdout {out[:200]!r}, stderr {err[:200]!r}")
        if case.get("error") and case["error"] not in out:
            wrong.append(f"the refusal does not say {case['error']!r}: {out[:200]!r}")
        return wrong
    want = int(case.get("exit", 1))
    lines = [x for x in err.splitlines() if x.strip()]
    if code != want:
        wrong.append(f"exit {code}, expected {want}")
    if "Traceback" in out + err:
        wrong.append("a traceback")
    if want == 2:  # a usage error: one `gitbus: …` line saying what is wrong, then one `usage: …` line
        if len(lines) != 2 or not lines[0].startswith("gitbus: ") or not lines[1].startswith("usage: "):
            wrong.append(f"not one 'gitbus:' line and one 'usage:' line: {lines}")
    elif len(lines) != 1 or not lines[0].startswith(("gitbus", "usage: gitbus")):
        wrong.append(f"not one line starting 'gitbus': {lines[:3]}")
    if case.get("error") and case["error"] not in err:
        wrong.append(f"the error does not say {case['error']!r}: {lines[-1:] or '(nothing)'}")
    return wrong


def bad_inputs_scenario(root: Path, size: Size) -> Result:
    from gitbus.cli import app

    res = Result("bad-inputs", "Bad inputs through every CLI command")
    corpus = load_corpus()
    repo, common, subst = _bad_world(root)
    commands = {c.name or c.callback.__name__ for c in app.registered_commands if c.callback}
    covered = {_command_of(c) for c in corpus}
    missing = commands - covered - NOT_IN_CORPUS.keys()
    res.expect(not missing, f"commands with no bad input in fixtures/bad-inputs.json: {sorted(missing)}")
    runs = 0
    written = 0
    for case in corpus:
        for real in (False, True) if size.cli_subprocess or case.get("subprocess") else (False,):
            before = _state(common)
            code, out, err = _invoke(case, repo, subst, real)
            after = _state(common)
            runs += 1
            wrong = check_bad_input(case, code, out, err)
            if after[:2] != before[:2]:
                refs = sorted({r for r, _ in set(after[0].items()) ^ set(before[0].items())})
                files = sorted({f for f, _ in set(after[1].items()) ^ set(before[1].items())})
                wrong.append(f"it wrote: refs {refs}, files {files}")
                written += 1
                _restore(repo, common, before)
            elif after[2] != before[2]:
                res.notes.append(f"{case['name']}: left {after[2] - before[2]} unreferenced object(s)")
            how = "process" if real else "in-process"
            if wrong and case.get("known_bug"):
                res.known.append(f"{case['name']} ({how}): {'; '.join(wrong)} — {case['known_bug']}")
            elif wrong:
                res.problems.append(f"{case['name']} ({how}): {'; '.join(wrong)}")
            elif case.get("known_bug"):
                res.notes.append(f"{case['name']}: marked as a known bug but now handled; drop the mark")
    res.lost = 0
    res.injected = [
        f"{len(corpus)} bad inputs from fixtures/bad-inputs.json across {len(covered)} commands "
        f"({runs} runs{', each also as a real process' if size.cli_subprocess else ''}): hostile agent names "
        "(flag and GITBUS_AGENT), paths outside the repository or inside .git, control characters, "
        "oversize and non-UTF-8 text, bad TTLs and durations, unknown and malformed ids, unknown "
        "recipients, other agents' claims and requests, bad JSON on the hook's stdin, unknown settings, "
        "remotes and install targets. Not in the corpus: "
        + "; ".join(f"`{k}` ({v})" for k, v in NOT_IN_CORPUS.items())
        + ".",
    ]
    res.checked = [
        "Each: the expected non-zero exit (1 for a refused input, 3 for a conflict, 2 for a malformed "
        "command line), no traceback, one line on stderr starting `gitbus` (for exit 2: one `Error:` "
        "line under click's usage lines) that says what was wrong (a hook call for an edit: a refusal on "
        "stdout with exit 0 that says it), and nothing written: every ref and "
        "every file under .git/gitbus/ (settings, cursors, caches) byte-identical before and after."
        f" {written} inputs wrote something.",
    ]
    return res


# -- 7. a hostile peer pushing bad refs to the shared remote ---------------------------------------------


def _malformed(rng: random.Random, i: int) -> str:
    """One commit message in gitbus's layout with one or two fields a peer broke on purpose."""
    from . import test_hostile_remote as H

    fields: dict[str, Any] = {"sender": "fuzz", "mid": f"{i:016x}", "time": H.BASE_TIME + i}
    breakage = {
        "time": ["9" * 30, "-1", "", "1e12", "999999999999"],
        "sender": ["alice", "Fuzz", "../x", ""],
        "mid": ["zz", "0" * 17, ""],
        "kind": ["claim", "nope", ""],
        "to": ["", "x y", "ALL"],
        "text": ["\x1b[31mred", "evil \u202e txt.exe", "a\u2028b", "  pad  ", "x" * 70_000, ""],
        "paths": [("a/" * 100 + "x",), ("../etc",), (".git/config",), ("a\tb",)],
        "meta": [("=x",), ("k=" + "v" * 5000,), ("k=\x07",)],
    }
    for key in rng.sample(sorted(breakage), rng.choice((1, 2))):
        fields[key] = rng.choice(breakage[key])
    return H.trailers(**fields)


def _wrong_signers(root: Path, res: Result, delivered: list[bool]) -> tuple[int, int]:
    """A clone that requires signatures (bob's) while alice's key signs a sync merge onto bob's chain
    and a message of eve's: both refused, and alice's own signed post after them still arrives.
    (bad refs pushed, refused); `delivered` gets one entry per message posted after the attack."""
    from gitbus import sync
    from gitbus.bus import Bus

    from .test_sync import allow_signers, bare_remote, clone, gb, ssh_signing

    url = bare_remote(root).as_uri()
    a, b = clone(url, root / "a"), clone(url, root / "b")
    alice_pub, bob_pub = ssh_signing(a, root / "keys", "alice"), ssh_signing(b, root / "keys", "bob")
    allow_signers(b, root / "allowed", {"alice": alice_pub, "bob": bob_pub})
    bob = Bus.open(b, "bob")
    bob.init("origin")
    bob.discover("one")
    bob.discover("two")
    sync.sync(bob.repo, "origin")
    gb(b, "bob", "config", "require_signed", "true")
    alice = Bus.open(a, "alice")
    alice.init("origin")
    sync.sync(alice.repo, "origin")
    tip = subprocess.run(["git", "rev-parse", "refs/bus/agents/bob"], cwd=a, capture_output=True, text=True)
    oid = tip.stdout.strip()
    merge = (
        subprocess.run(
            [
                "git",
                "commit-tree",
                "-S",
                "-p",
                oid,
                "-p",
                f"{oid}^",
                "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
            ],
            cwd=a,
            input=b"gitbus: join diverged histories of refs/bus/agents/bob\n",
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    subprocess.run(["git", "push", "-q", "origin", f"{merge}:refs/bus/agents/bob"], cwd=a, check=True)
    Bus.open(a, "eve").discover("eve's words, alice's key")
    posted = alice.discover("alice, signed, after the attack")
    sync.sync(alice.repo, "origin")
    report = sync.sync(bob.repo, "origin")
    why = {r.ref: r.reason for r in report.refused}
    refused = sum(
        1 for ref in ("refs/bus/agents/bob", "refs/bus/agents/eve") if "signed by alice" in why.get(ref, "")
    )
    res.expect(refused == 2, f"wrong signers: bob's clone refused {why}")
    delivered.append(posted.id in {m.id for m in bob.log(n=None)})
    res.expect(delivered[-1], "wrong signers: alice's signed post after the attack was not delivered")
    return 2, refused


def hostile_remote_scenario(root: Path, size: Size) -> Result:
    """A peer with plain git pushes every kind of bad ref the issue names into the bare remote, then
    clones that sync (and clones that took the bus in with plain git fetch) run every everyday command
    and hook event; nothing valid may be lost."""
    from gitbus.bus import Bus

    from . import test_hostile_remote as H
    from .test_sync import gb

    res = Result("hostile-remote", "A hostile peer pushing bad refs to the shared remote")
    pushed = clones = working = lost = refused = honest_refused = 0
    after = delivered = expected = (
        0  # messages posted after the bad pushes; clones shown them, of those asked
    )

    def post_after(w: H.World, what: str) -> str:
        """alice posts on the honest clone after the attack and syncs: the message must reach every
        clone that syncs (or fetches) later."""
        nonlocal after
        alice = Bus.open(w.honest, "alice")
        m = alice.discover(f"posted after {what}")
        code, _, err = gb(w.honest, "alice", "sync")
        res.expect(
            code == 0 and "Traceback" not in err, f"{what}: the honest sync after the attack: {err[-400:]}"
        )
        after += 1
        return m.id

    def shown_after(path: Path, mid: str) -> None:
        nonlocal delivered, expected
        expected += 1
        have = {m.id for m in Bus.open(path, "carol").log(n=None)}
        delivered += mid in have
        res.expect(mid in have, f"{path.name}: the message posted after the attack was not delivered")

    def works(what: str, path: Path, valid: set[str], broken: bool = False) -> None:
        nonlocal clones, working, lost
        clones += 1
        have = {m.id for m in Bus.open(path, "carol").log(n=None)}
        lost += len(valid - have)
        before = len(res.problems)
        with res.guarded(what):
            H.assert_every_command_works(path, valid, ledger_broken=broken)
        working += len(res.problems) == before

    def synced(what: str, path: Path, agent: str = "carol") -> int:
        """Sync `path`; how many refs it refused (or ignored), one line each."""
        code, _, err = gb(path, agent, "sync")
        res.expect(
            code == 0 and "CRASHED" not in err and "Traceback" not in err, f"{what}: sync: {err[-400:]}"
        )
        return sum(1 for line in err.splitlines() if line.startswith(("gitbus: refused", "gitbus: ignored")))

    w = H.make_world(root / "chains")
    bad = H.push_bad_agent_refs(w)
    pushed += len(bad)
    mid = post_after(w, "bad chains")
    b = H.fresh_clone(w, "b")
    refused += synced("bad chains", b)
    works("bad chains, clone that synced", b, w.valid | {mid})
    shown_after(b, mid)
    c = H.plain_fetch_clone(w, "c")
    works("bad chains, clone that fetched with plain git", c, w.valid | {mid})
    shown_after(c, mid)

    # A peer reuses the id of bob's question on its own chain: every clone still shows bob's.
    w = H.make_world(root / "reused")
    q = Bus.open(w.honest, "alice").log(n=None, kinds=["question"])[0]
    impostor = H.trailers(kind="question", sender="mallory", mid=q.id, time=q.time + 5, text="impostor")
    w.peer.push(w.peer.commit(impostor), "refs/bus/agents/mallory")
    pushed += 1
    reused = 0
    mid = post_after(w, "a reused id")
    for name in ("b", "c"):
        path = H.fresh_clone(w, name) if name == "b" else H.plain_fetch_clone(w, name)
        synced("a reused id", path)
        works(f"a reused id, clone {name}", path, w.valid | {mid})
        shown_after(path, mid)
        code, out, err = gb(path, "carol", "show", q.id, "--json")
        ok = code == 0 and json.loads(out)["from"] == "bob"
        reused += ok
        res.expect(ok, f"a reused id, clone {name}: show {q.id} did not show bob's question: {err[-200:]}")

    for what, how in H.BAD_LEDGERS.items():
        w = H.make_world(root / how)
        ledger_ids = {m.id for m in Bus.open(w.honest, "alice").log(n=None) if m.kind.value == "claim"}
        H.push_bad_ledger(w, how)
        pushed += 1
        honest_refused += synced(f"a ledger with {what}, the honest clone", w.honest, "alice")
        mid = post_after(w, f"a ledger with {what}")
        b = H.fresh_clone(w, "b")
        refused += synced(f"a ledger with {what}", b)
        shown_after(b, mid)
        gone = ledger_ids if how in ("rewrite", "blob", "tree") else set()  # removed on the remote itself
        works(
            f"a ledger with {what}, clone that synced", b, (w.valid - gone) | {mid}, how in ("blob", "tree")
        )
        have = {m.id for m in Bus.open(w.honest, "alice").log(n=None)}
        lost += len(w.valid - have)
        res.expect(w.valid <= have, f"a ledger with {what}: the honest clone lost {sorted(w.valid - have)}")

    signer_refused = signer_pushed = 0
    if shutil.which("ssh-keygen"):
        shown: list[bool] = []
        signer_pushed, signer_refused = _wrong_signers(root / "signers", res, shown)
        pushed += signer_pushed
        after += len(shown)
        expected += len(shown)
        delivered += sum(shown)

    w = H.make_world(root / "stream")
    rng = random.Random(13)
    count = 60 if size.name == "short" else 600
    tip = None
    for i in range(count):
        tip = w.peer.commit(_malformed(rng, i), (tip,) if tip else ())
    assert tip is not None
    w.peer.push(tip, "refs/bus/agents/fuzz")
    pushed += 1
    mid = post_after(w, "a stream of malformed messages")
    b = H.fresh_clone(w, "b")
    refused += synced("a stream of malformed messages", b)
    works("a stream of malformed messages, clone that synced", b, w.valid | {mid})
    shown_after(b, mid)
    c = H.plain_fetch_clone(w, "c")
    works("a stream of malformed messages, plain git fetch", c, w.valid | {mid})
    shown_after(c, mid)

    res.lost = lost
    res.injected = [
        f"{pushed} bad refs pushed with plain git (commit-tree, mktree, mktag, push --force) into a bare "
        f"remote: {len(bad)} agent chains at once ({'; '.join(sorted(set(bad.values())))}), "
        f"{len(H.BAD_LEDGERS)} ledgers ({'; '.join(H.BAD_LEDGERS)}), a message on a peer's chain reusing "
        "the id of bob's question, "
        + (
            f"{signer_pushed} commits signed by the wrong agent's key (a sync merge on bob's chain and a "
            "message of eve's, both signed by alice) into a clone that requires signatures, "
            if signer_pushed
            else "(no ssh-keygen here: the wrong-signer case was not run), "
        )
        + f"and one chain of {count} malformed messages (fixed seed 13: bad times, senders, ids, types, "
        "recipients, text with escape, bidi and line-separator characters, over-long text, deep and "
        "escaping paths, bad meta). After each attack the honest agent posted a new message and synced.",
    ]
    res.checked = [
        f"{clones} clones, each after `gitbus sync` (or a plain `git fetch` of refs/bus/*): log, status, "
        "inbox, claims, agents, search, show, discover, ask, claim and release (`--offline` where the "
        "remote's ledger points at no commit, and the online claim then refused in one line; where a "
        "foreign or rule-breaking commit sits on top of vouched steps, the online claim replaces it), and "
        "the hooks SessionStart, UserPromptSubmit, PostToolUse, PreToolUse and Stop: each exits with its "
        "normal code, with no traceback. Every valid message is still shown; the clone that held the "
        f"ledger keeps all of it after syncing. **{working} of {clones} clones kept working; messages lost: "
        f"{lost}; the {after} messages posted after the attacks were shown {delivered} of the {expected} "
        "times a clone was asked for one"
        + (f" (these {clones} clones and the clone requiring signatures)" if signer_pushed else "")
        + ".** The "
        f"clones that synced refused {refused} of the {pushed - signer_pushed} bad refs pushed to them, one "
        "line each naming the ref and the reason "
        "(a ledger step whose tree plants, drops or renews a claim in another agent's name among them); "
        "the others are agent-chain commits every reader skips and counts (the reused id among them), and "
        "the unrelated ledger, "
        "which a clone's first sync cannot tell from the real one. The honest clones, which had fetched "
        f"the real ledger, refused {honest_refused} of the {len(H.BAD_LEDGERS)} bad ledgers, the rewrite "
        f"among them. `show` of the reused id gave bob's question on {reused} of 2 clones"
        + (
            f"; the clone requiring signatures refused {signer_refused} of {signer_pushed} wrongly "
            "signed refs."
            if signer_pushed
            else "."
        ),
    ]
    res.expect(
        delivered == expected, f"{expected - delivered} messages posted after the attacks were not delivered"
    )
    return res


def _command_of(case: dict[str, Any]) -> str:
    return str(case.get("command") or case["args"][0])


# -- running and reporting ----------------------------------------------------------------------------

SCENARIOS: dict[str, Callable[[Path, Size], Result]] = {
    "kill": kill_scenario,
    "housekeeping": housekeeping_scenario,
    "claim-races": claim_races_scenario,
    "posts": posts_scenario,
    "partitions": partitions_scenario,
    "bad-inputs": bad_inputs_scenario,
    "hostile-remote": hostile_remote_scenario,
}


def run_scenario(name: str, root: Path, size: Size) -> Result:
    """One scenario in its own folder under `root`, timed; a crash becomes a problem of its result."""
    where = root / name
    where.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        res = SCENARIOS[name](where, size)
    except Exception:
        res = Result(name, name, problems=[f"the scenario crashed: {traceback.format_exc(limit=8)[-2000:]}"])
    res.seconds = time.monotonic() - started
    return res


def machine() -> dict[str, str]:
    import pygit2

    git = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cpu": f"{os.cpu_count()} cores, {platform.machine()}",
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "git": git.removeprefix("git version "),
        "pygit2": f"{pygit2.__version__} (libgit2 {pygit2.LIBGIT2_VERSION})",
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "gitbus": _gitbus_at(),
    }


def _gitbus_at() -> str:
    """The commit whose gitbus/ was tested, marked when gitbus/ had uncommitted changes."""

    def out(*args: str) -> str:
        p = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else ""

    head = out("rev-parse", "--short", "HEAD") or "an unknown commit"
    dirty = out("status", "--porcelain", "--", "gitbus")
    return head + (" + uncommitted changes in gitbus/" if dirty else "")


def report(results: list[Result], size: Size, info: dict[str, str], command: str, seconds: float) -> str:
    lines = [
        "# Reliability",
        "",
        "<!-- Written by `python -m tests.faults`; do not edit by hand. -->",
        "",
        f"Fault injection, **{size.name} mode**, run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC in "
        f"{seconds:,.0f} s on {info['cpu']} ({info['system']}; Python {info['python']}, git {info['git']}, "
        f"pygit2 {info['pygit2']}; load average {info['load']} at the start), gitbus at "
        f"{info.get('gitbus', 'an unknown commit')}.",
        "",
        f"Reproduce: `{command}` from the repository root"
        + (" (`--long` for the full counts)." if size.name == "short" else "."),
        "",
        "| scenario | result | lost | duration |",
        "|---|---|---:|---:|",
    ]
    for r in results:
        verdict = "**held**" if r.ok else f"**FAILED** ({len(r.problems)} problems)"
        lines.append(f"| [{r.title}](#{r.name}) | {verdict} | {r.lost} | {r.seconds:,.1f} s |")
    for r in results:
        lines += ["", f'<a id="{r.name}"></a>', f"## {r.title}", ""]
        lines += [("**Injected.** " if i == 0 else "") + x for i, x in enumerate(r.injected)]
        lines += ["", "**Checked.** " + " ".join(r.checked), ""]
        lines.append(
            f"**Lost.** {r.lost} acknowledged writes." if r.lost or r.ok else "**Lost.** see problems."
        )
        lines.append(f"**Duration.** {r.seconds:,.1f} s.")
        if r.problems:
            lines += ["", "**Problems.**", "", *[f"- {p}" for p in r.problems[:20]]]
        if r.known:
            lines += [
                "",
                "**Known bugs reproduced** (listed, not counted as failures):",
                "",
                *[f"- {k}" for k in r.known],
            ]
        if r.notes:
            lines += ["", "**Notes.**", "", *[f"- {n}" for n in r.notes[:12]]]
        lines.append(f"\nReproduce this one: `{command} --only {r.name}`")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__.split("\n\n")[0])
    ap.add_argument("--long", action="store_true", help="The issue's full counts (takes long).")
    ap.add_argument(
        "--out", type=Path, default=None, help="Write the report here (e.g. docs/reliability.md)."
    )
    ap.add_argument("--only", nargs="+", choices=list(SCENARIOS), help="Run only these scenarios.")
    ap.add_argument("--keep", action="store_true", help="Keep the scratch repositories.")
    args = ap.parse_args(argv)
    size = LONG if args.long else SHORT
    scratch = Path(tempfile.mkdtemp(prefix="gitbus-faults-"))
    _hermetic(scratch / "home")
    info = machine()
    command = "python -m tests.faults" + (" --long" if args.long else "")
    started = time.monotonic()
    results = []
    try:
        for name in args.only or SCENARIOS:
            print(f"{name} …", file=sys.stderr, flush=True)
            res = run_scenario(name, scratch, size)
            results.append(res)
            print(
                f"{name}: {'held' if res.ok else 'FAILED'} in {res.seconds:.1f} s",
                file=sys.stderr,
                flush=True,
            )
            for p in res.problems[:5]:
                print(f"  problem: {p}", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    text = report(results, size, info, command, time.monotonic() - started)
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
