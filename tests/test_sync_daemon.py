"""The bus over a real network transport: a `git daemon` on 127.0.0.1 serving a bare remote.

The daemon accepts pushes (`--enable=receive-pack`), so two clones race their claims through it as
two machines would race through any git host: each claim fetches the remote's ledger, decides, and
pushes with a lease; the remote takes exactly one. A third clone then reads the remote's ledger
history back and checks that no state it ever accepted held overlapping live claims of two agents.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gitbus import sync
from gitbus.bus import Bus
from gitbus.clock import FakeClock
from gitbus.errors import ClaimConflict, GitbusError
from gitbus.ids import LEDGER_REF
from gitbus.ledger_shards import shard_of_path
from gitbus.message import Message

from .test_sync import bare_remote, bus_refs, clone, ids, offline, order_keys, remote_ledger_history, sharing

START_SECONDS = 10.0
ROUND_SECONDS = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Served:
    bare: Path
    url: str


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Served]:
    """A real `git daemon` serving `remote.git` read-write on a free 127.0.0.1 port."""
    yield from _serve(tmp_path)


@pytest.fixture
def daemon_without_atomic(tmp_path: Path) -> Iterator[Served]:
    """The same, for a host that does not offer atomic pushes (`receive.advertiseAtomic=false`)."""
    yield from _serve(tmp_path, "receive.advertiseAtomic=false")


def _serve(tmp_path: Path, *config: str) -> Iterator[Served]:
    base = tmp_path / "served"
    bare = bare_remote(base)
    for setting in config:
        key, value = setting.split("=", 1)
        subprocess.run(["git", "-C", str(bare), "config", key, value], check=True)
    proc: subprocess.Popen[bytes] | None = None
    port = 0
    for _ in range(3):  # another process may take the port between our probe and the daemon's bind
        port = _free_port()
        proc = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                f"--base-path={base}",
                "--export-all",
                "--enable=receive-pack",
                "--listen=127.0.0.1",
                f"--port={port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: the finalizer ends it and its children
        )
        deadline = time.monotonic() + START_SECONDS
        while proc.poll() is None and not _accepts(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None and _accepts(port):
            break
        _stop(proc)
        proc = None
    assert proc is not None, "git daemon did not start on 127.0.0.1"
    try:
        yield Served(bare, f"git://127.0.0.1:{port}/remote.git")
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def test_messages_and_claims_round_trip_through_git_daemon(
    daemon: Served, tmp_path: Path, clock: FakeClock
) -> None:
    a, b = clone(daemon.url, tmp_path / "a"), clone(daemon.url, tmp_path / "b")
    alice, bob = sharing(a, "alice", clock), sharing(b, "bob", clock)
    posted = [alice.discover("over git://").id, bob.ask("anyone on config/?", paths=["config/"]).id]
    granted = alice.claim(["config/"])
    with pytest.raises(ClaimConflict, match="alice holds config/"):
        bob.claim(["config/db.yaml"])
    mine = offline(bob).claim(["README.md"])
    for bus in (alice, bob, alice):
        sync.sync(bus.repo, "origin")
    assert ids(alice) == ids(bob) and order_keys(alice) == order_keys(bob)
    assert {*posted, granted.id, mine.id} <= set(ids(alice))
    assert {(c.owner, c.path) for c in alice.claims()} == {("alice", "config/"), ("bob", "README.md")}
    assert bus_refs(daemon.bare) == bus_refs(a) == bus_refs(b)


@dataclass
class Outcome:
    agent: str
    wanted: str
    granted: Message | None = None
    error: GitbusError | None = None


def _claim_on_signal(bus: Bus, wanted: str, start: threading.Barrier, out: Outcome) -> None:
    start.wait(ROUND_SECONDS)
    try:
        out.granted = bus.claim([wanted])
    except GitbusError as e:
        out.error = e


def test_two_clones_racing_overlapping_claims_through_the_daemon_never_both_win(
    daemon: Served, tmp_path: Path, clock: FakeClock, long_mode: bool
) -> None:
    a, b = clone(daemon.url, tmp_path / "a"), clone(daemon.url, tmp_path / "b")
    racers = [sharing(a, "alice", clock), sharing(b, "bob", clock)]
    rng = random.Random(20260101)
    rounds = 100 if long_mode else 24
    problems: list[str] = []
    winners: dict[str, str] = {}  # claim id -> agent
    deadline = time.monotonic() + (600 if long_mode else 60)
    for r in range(rounds):
        assert time.monotonic() < deadline, f"the race rounds took too long (round {r})"
        wants = [f"race/r{r}/", f"race/r{r}/x.py"]  # one claim shard (race/) for every round
        rng.shuffle(wants)
        outcomes = [Outcome(bus.agent, w) for bus, w in zip(racers, wants, strict=True)]
        start = threading.Barrier(len(racers))
        threads = [
            threading.Thread(target=_claim_on_signal, args=(bus, o.wanted, start, o))
            for bus, o in zip(racers, outcomes, strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(ROUND_SECONDS)
            assert not t.is_alive(), f"round {r}: a claim hung"
        won = [o for o in outcomes if o.granted]
        lost = [o for o in outcomes if not o.granted]
        if len(won) != 1:
            problems.append(f"round {r}: {len(won)} winners: {[(o.agent, o.wanted) for o in won]}")
            continue
        winner, loser = won[0], lost[0]
        assert winner.granted is not None
        winners[winner.granted.id] = winner.agent
        if not (isinstance(loser.error, ClaimConflict) and loser.error.holder == winner.agent):
            problems.append(
                f"round {r}: {loser.agent} was not refused naming {winner.agent}: {loser.error!r}"
            )

    observer = clone(daemon.url, tmp_path / "observer")
    history = remote_ledger_history(daemon.bare, observer)  # no accepted state had overlapping live claims
    assert set(history) <= {shard_of_path("race/")}, history.keys()
    final = {c.id: c.owner for steps in history.values() if steps for c in steps[0].claims}
    assert final == winners, "the remote's claims are not exactly the winners'"
    assert not problems, f"{len(problems)} of {rounds} rounds went wrong:\n" + "\n".join(problems)


def test_a_host_without_atomic_push_still_decides_claims_and_syncs(
    daemon_without_atomic: Served, tmp_path: Path, clock: FakeClock
) -> None:
    url = daemon_without_atomic.url
    a, b = clone(url, tmp_path / "a"), clone(url, tmp_path / "b")
    alice, bob = sharing(a, "alice", clock), sharing(b, "bob", clock)
    alice.discover("no atomic here")
    lost = offline(bob).claim(["lib/"])
    granted = alice.claim(["config/"])  # a single-ref step needs no atomic push
    alice.claim(["lib/x.py"])
    with pytest.raises(ClaimConflict, match="alice holds config/"):
        bob.claim(["config/db.yaml"])
    mine = offline(bob).claim(["README.md"])
    asked = bob.ask("who has config?")
    for bus in (alice, bob, alice):  # several refs each: per-ref pushes, each with its lease
        sync.sync(bus.repo, "origin")
    assert ids(alice) == ids(bob) and {granted.id, mine.id, asked.id} <= set(ids(alice))
    assert lost.id not in {c.id for c in alice.claims()}
    assert {(c.owner, c.path) for c in bob.claims()} == {
        ("alice", "config/"),
        ("alice", "lib/x.py"),
        ("bob", "README.md"),
    }
    assert bus_refs(daemon_without_atomic.bare) == bus_refs(a) == bus_refs(b)


def test_without_atomic_push_the_refs_the_remote_took_are_kept_when_one_is_refused(
    daemon_without_atomic: Served, tmp_path: Path, clock: FakeClock
) -> None:
    hook = daemon_without_atomic.bare / "hooks" / "update"
    # The claim shards: the tombstone that moves the remote's ledger first goes out on its own.
    refuse_ledger = 'case "$1" in refs/bus/ledgers/*) echo "no ledger here" >&2; exit 1;; esac'
    hook.write_text(f"#!/bin/sh\n{refuse_ledger}\nexit 0\n")
    hook.chmod(0o755)
    a = clone(daemon_without_atomic.url, tmp_path / "a")
    alice = offline(sharing(a, "alice", clock))
    alice.discover("from a")
    alice.claim(["src/"])
    with pytest.raises(GitbusError, match="refused refs under refs/bus/") as refused:
        sync.sync(alice.repo, "origin")
    assert "\n" not in str(refused.value)
    chain = "refs/bus/agents/alice"
    remote = bus_refs(daemon_without_atomic.bare)
    tracked = str(alice.repo.ref("refs/gitbus/vouched/origin/bus/agents/alice"))
    assert remote.get(chain) == bus_refs(a)[chain] == tracked
    shard = shard_of_path("src/")
    assert (
        shard not in remote and alice.repo.ref("refs/gitbus/vouched/origin/bus/ledgers/" + shard[-4:]) is None
    )


def test_without_atomic_push_a_push_the_remote_took_whole_is_recorded_as_pushed(
    daemon_without_atomic: Served, tmp_path: Path, clock: FakeClock
) -> None:
    a = clone(daemon_without_atomic.url, tmp_path / "a")
    alice = offline(sharing(a, "alice", clock))
    alice.discover("from a")
    alice.claim(["src/"])
    report = sync.sync(alice.repo, "origin", pull=False)
    assert sorted(report.pushed) == ["refs/bus/agents/alice", LEDGER_REF, shard_of_path("src/")]
    remote = bus_refs(daemon_without_atomic.bare)
    for ref in report.pushed:  # recorded at once: the next push leases what the remote holds
        assert str(alice.repo.ref("refs/gitbus/vouched/origin/bus/" + ref[len("refs/bus/") :])) == remote[ref]
