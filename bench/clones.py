"""Claims through a real remote: K clones of one bare repository, served by `git daemon` on loopback.

Each clone is a separate process with its own agent, claiming and releasing paths in its own subtree
(`c<k>/…`) for a fixed time, every step decided by the remote (a fetch of the ledger, a decision, a
push with a lease). One clone alone is measured the same way in the same run, so the figures compare
side by side: aggregate ledger steps per second, each step's latency, and each clone's grants against
the mean. `--rtt-ms N` puts a loopback relay in front of the daemon that holds every chunk N/2 ms in
each direction, the way a far host would. Afterwards the remote's whole ledger history is read back:
no state it accepted may hold two live overlapping claims of different agents.

    python bench/clones.py [--clones 8] [--seconds 20]

runs three scenarios: distinct subtrees on loopback, the same at 80 ms RTT, and every clone claiming
the same path (one holder at a time, the rest refused).
`python bench/clones.py worker DIR AGENT SUBTREE GO SECONDS OUT` is one clone's worker.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from helpers import hermetic_env, log, workdir
from measure import verdict

START_SECONDS = 10.0


def worker(d: Path, agent: str, subtree: str, go: Path, seconds: float, out: Path) -> None:
    """Claim and release paths under `subtree` until the time is up; write each step's latency."""
    from gitbus.bus import Bus
    from gitbus.errors import ClaimConflict, GitbusError

    bus = Bus.open(d, agent)
    bus.init("origin")
    print("ready", flush=True)
    deadline = time.monotonic() + START_SECONDS + seconds
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    end = time.monotonic() + seconds
    steps: list[float] = []
    grants = refused = failed = 0
    i = 0
    while time.monotonic() < end:
        path = subtree if subtree.endswith("/") else f"{subtree}/f{i}.txt"
        t0 = time.perf_counter()
        try:
            bus.claim([path], ttl_ms=60_000)
            grants += 1
        except ClaimConflict:
            refused += 1
            steps.append(time.perf_counter() - t0)
            time.sleep(0.01)
            continue
        except GitbusError:
            failed += 1
            continue
        steps.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        try:
            bus.release([path])
            steps.append(time.perf_counter() - t0)
        except GitbusError:
            failed += 1
        i += 1
    out.write_text(json.dumps({"agent": agent, "steps": steps, "grants": grants, "refused": refused,
                               "failed": failed}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"bench: nothing listens on 127.0.0.1:{port}")


class Relay:
    """A loopback TCP relay holding each chunk `delay` seconds in each direction (half the RTT)."""

    def __init__(self, target: int, delay: float) -> None:
        self.target, self.delay = target, delay
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                time.sleep(self.delay)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


@dataclass
class Run:
    clones: int
    steps_per_s: float
    p50_ms: float
    p99_ms: float
    grants: list[int]
    refused: int
    failed: int


def _git(cwd: Path, env: dict[str, str], *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def run(root: Path, env: dict[str, str], k: int, seconds: float, rtt_ms: float, contention: bool) -> Run:
    """One round: a fresh bare remote, `k` clones, their workers started together."""
    served = root / "served"
    served.mkdir(parents=True)
    bare = served / "remote.git"
    _git(served, env, "init", "-q", "--bare", "-b", "main", str(bare))
    _git(bare, env, "config", "core.logAllRefUpdates", "always")
    seed = root / "seed"
    _git(root, env, "init", "-q", "-b", "main", str(seed))
    _git(seed, env, "commit", "-q", "--allow-empty", "-m", "seed")
    _git(seed, env, "push", "-q", str(bare), "main")
    port = _free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", f"--base-path={served}", "--export-all", "--enable=receive-pack",
         "--listen=127.0.0.1", f"--port={port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    relay: Relay | None = None
    try:
        _wait_port(port)
        if rtt_ms:
            relay = Relay(port, rtt_ms / 2000)
        url = f"git://127.0.0.1:{relay.port if relay else port}/remote.git"
        go, procs = root / "go", []
        for i in range(k):
            d = root / f"c{i}"
            _git(root, env, "clone", "-q", url, str(d))
            subtree = "shared/" if contention else f"c{i}"
            procs.append(subprocess.Popen(
                [sys.executable, __file__, "worker", str(d), f"c{i}", subtree, str(go), str(seconds),
                 str(root / f"out{i}.json")],
                cwd=d, env=env, stdout=subprocess.PIPE, text=True,
            ))
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready", "a worker did not start"
        go.touch()
        for p in procs:
            p.wait(timeout=seconds + 120)
        outs = [json.loads((root / f"out{i}.json").read_text()) for i in range(k)]
        _check_history(root / "c0", bare)
    finally:
        if relay:
            relay.close()
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=10)
    steps = sorted(t for o in outs for t in o["steps"])
    return Run(
        clones=k,
        steps_per_s=len(steps) / seconds,
        p50_ms=1000 * steps[len(steps) // 2] if steps else float("nan"),
        p99_ms=1000 * steps[min(len(steps) - 1, int(len(steps) * 0.99))] if steps else float("nan"),
        grants=[o["grants"] for o in outs],
        refused=sum(o["refused"] for o in outs),
        failed=sum(o["failed"] for o in outs),
    )


def _check_history(observer: Path, bare: Path) -> None:
    """Every state each of the remote's ledgers ever held: no two live claims of different agents
    overlap (claims overlap only within one shard, so each shard's history is checked on its own)."""
    from gitbus import paths
    from gitbus.claims import all_claims
    from gitbus.git import Repository
    from gitbus.ledger import Ledger
    from gitbus.message import decode

    subprocess.run(["git", "fetch", "-q", "origin", "+refs/bus/ledger*:refs/observed/ledger*"], cwd=observer,
                   check=True)
    repo = Repository.open(observer)
    states = 0
    for ref, tip in sorted(repo.refs("refs/observed/ledgers/").items()):
        at: str | None = tip
        while at is not None:
            commit = repo.read_commit(at)
            now = decode(commit.message).time
            live = [c for c in all_claims(Ledger(repo, commit.tree)) if c.live(now)]
            for i, a in enumerate(live):
                for b in live[i + 1:]:
                    if a.owner != b.owner and paths.overlaps(a.path, b.path):
                        raise SystemExit(f"bench: DOUBLE GRANT on {ref} at {at}: {a.owner} {a.path} / "
                                         f"{b.owner} {b.path}")
            states += 1
            at = commit.parents[0] if commit.parents else None
    log(f"ledger history: {states} states, 0 double grants")


@dataclass
class ClonesBench:
    clones: int
    seconds: float
    loads: tuple[float, float]  # the load average at the start and at the end
    rounds: dict[str, tuple[Run, Run]]  # "loopback" | "80 ms" | "one path" -> (1 clone, K clones)


SCENARIOS = (("loopback", 0.0, False), ("80 ms", 80.0, False), ("one path", 0.0, True))


def clones_bench(work: Path, env: dict[str, str], clones: int, seconds: float) -> ClonesBench:
    """1 and `clones` clones in each scenario, side by side; the remote's history checked each time."""
    env = {**env, "GIT_AUTHOR_NAME": "bench", "GIT_COMMITTER_NAME": "bench",
           "GIT_AUTHOR_EMAIL": "bench@example.invalid", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}
    start = os.getloadavg()[0]
    rounds: dict[str, tuple[Run, Run]] = {}
    for name, rtt, contention in SCENARIOS:
        d = work / f"clones-{name.replace(' ', '-')}"
        one = run(d / "one", env, 1, seconds, rtt, contention)
        many = run(d / "many", env, clones, seconds, rtt, contention)
        log(f"clones, {name}: 1 clone {one}; {clones} clones {many}")
        rounds[name] = (one, many)
    return ClonesBench(clones, seconds, (start, os.getloadavg()[0]), rounds)


def _fair(r: Run) -> tuple[float, float]:
    mean = statistics.mean(r.grants) or 1.0
    return min(r.grants) / mean, max(r.grants) / mean


def goal_rows(b: ClonesBench) -> list[str]:
    rows = []
    for name in ("loopback", "80 ms"):
        one, many = b.rounds[name]
        agg, p99 = many.steps_per_s / one.steps_per_s, many.p99_ms / one.p50_ms
        lo, hi = _fair(many)
        rows += [
            f"| {b.clones} clones claiming distinct subtrees through `git daemon`, {name}: aggregate ledger "
            f"steps/s ≥ 3× one clone's (§ 15) | {agg:.2f}× | {verdict(agg >= 3)} |",
            f"| the same, {name}: claim p99 ≤ 3× one clone's p50 (§ 15) | {p99:.1f}× | {verdict(p99 <= 3)} |",
            f"| the same, {name}: every clone's grants within 2× of the mean (§ 15) | {lo:.2f}–{hi:.2f}× | "
            f"{verdict(lo >= 0.5 and hi <= 2)} |",
        ]
    rows.append(f"| {b.clones} clones claiming one path through `git daemon`: 0 double grants in the "
                f"remote's ledger history (§ 15) | 0 (checked) | {verdict(True)} |")
    return rows


def section(b: ClonesBench, number: int) -> list[str]:
    lines = [
        f"## {number}. Claims through a remote, clone by clone",
        "",
        "Clones of one bare repository served by `git daemon` on 127.0.0.1, each a separate process"
        " with its own agent, claiming and releasing fresh paths in its own subtree (`c<k>/…`) for "
        f"{b.seconds:.0f} s; every step is decided by the remote (fetch the ledgers, decide, push "
        "with a lease on its shard). One clone alone runs the same way in the same invocation, so "
        "the columns compare side by side. The 80 ms rows put a loopback relay in front of the daemon "
        "that holds every "
        "chunk 40 ms in each direction. Afterwards the remote's whole ledger history is read back "
        "and checked: no state it accepted held two live overlapping claims of different agents "
        f"(`bench/clones.py`; load average {b.loads[0]:.1f} at the start and {b.loads[1]:.1f} at the end)."
        "",
        "",
    ]
    for name, (one, many) in b.rounds.items():
        what = "every clone claiming one path" if name == "one path" else f"{name}, distinct subtrees"
        lo, hi = _fair(many)
        lines += [
            f"| {what} | 1 clone | {b.clones} clones |",
            "|---|---|---|",
            f"| ledger steps/s (grants, releases{' and refusals' if name == 'one path' else ''}) | "
            f"{one.steps_per_s:.1f} | {many.steps_per_s:.1f} ({many.steps_per_s / one.steps_per_s:.2f}×) |",
            f"| step p50 / p99 | {one.p50_ms:,.0f} / {one.p99_ms:,.0f} ms | {many.p50_ms:,.0f} / "
            f"{many.p99_ms:,.0f} ms (p99 {many.p99_ms / one.p50_ms:.1f}× one clone's p50) |",
            f"| grants per clone in {b.seconds:.0f} s | {one.grants[0]} | "
            f"{min(many.grants)}–{max(many.grants)} ({lo:.2f}–{hi:.2f}× the mean) |",
            f"| refused / failed steps | {one.refused} / {one.failed} | {many.refused} / {many.failed} |",
            "",
        ]
    lines += [
        "Each top folder's claims have a ledger ref of their own (a shard, `refs/bus/ledgers/<hhhh>`), so "
        "clones on unrelated subtrees never race: each step costs its own fetch and push, and the "
        "clones' steps go on side by side. What the remote does with several pushes at once is what "
        "is left: on loopback the daemon, each `git receive-pack` and the clones share this machine's "
        "CPUs, so the aggregate stops where the CPUs do, not where the ledger did. With every clone "
        "on one path all steps go through one shard, one step per fetch-and-push cycle, as before "
        "shards; the loser of a race backs off (jittered, exponential).",
        "",
    ]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clones", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    a = ap.parse_args()
    with workdir() as w:
        b = clones_bench(w, hermetic_env(w / "home"), a.clones, a.seconds)
    print("\n".join([*goal_rows(b), "", *section(b, 15)]))


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        d, agent, subtree, go, seconds, out = sys.argv[2:8]
        worker(Path(d), agent, subtree, Path(go), float(seconds), Path(out))
    else:
        main()
