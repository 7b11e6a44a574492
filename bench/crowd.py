"""Eight agents at once: aggregate throughput of 8 processes posting (or claiming) into one repository.

Each side runs as `k` worker processes on one fresh repository (or one shared-file directory), each
worker a different agent. A worker sets up (opens the repository, joins, a few warm-up ops) and says
`ready`; when all are ready the parent says `go` to all of them, and each reports the monotonic times
(system-wide on Linux) at which it started and finished its ops. Aggregate throughput is all ops over
the span from the first start to the last finish, so process start-up is not counted. One poster is
measured the same way (k = 1), in the same repetitions, the sides alternating forward and backward.
Afterwards every message and claim must be there: nothing lost to a race.

Posts go to each agent's own chain (gitbus's layout); claims all go through the one ledger ref, so
claims measure contention on a single compare-and-swap point. The pygit2 floor retries a lost race or
a held lock with jittered backoff, as any correct libgit2 writer must.

Fairness (issue #16): `python crowd.py fairness [K] [OPS]` runs K gitbus claimants of distinct paths
on one ledger, each coming straight back for its next claim, and prints how long each one's claims
took: the slowest claim against the typical one, and each claimant's grants per second against the
mean. A lost race never starving a claimant shows as a slowest claim a few times the median, and
every claimant's rate near the mean.

`python crowd.py worker KIND SIDE DIR AGENT FIRST OPS` is one worker.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from measure import WARMUP_OPS, Op, Series

KINDS = ("post", "claim")
SIDES = ("gitbus", "floor", "shared file", "shared file + fsync")
SPREAD = 1_000_000  # worker k uses op numbers from k * SPREAD: distinct message ids and claim paths


def _retrying(op: Op) -> Op:
    """Retry a lost compare-and-swap or a held lock with jittered exponential backoff."""
    import floor
    import pygit2

    def run(i: int) -> object:
        delay = 0.0005
        while True:
            try:
                return op(i)
            except (floor.RaceLost, pygit2.GitError, OSError):
                time.sleep(random.uniform(0, delay))
                delay = min(delay * 2, 0.05)

    return run


def make_op(kind: str, side: str, d: Path, agent: str) -> Op:
    """The op one worker repeats (`d` already initialised by the parent)."""
    if side == "gitbus":
        from gitbus.bus import Bus
        from gitbus.clock import SystemClock
        from gitbus.git import Repository
        from gitbus.ids import agent_name

        bus = Bus(Repository.open(d), agent_name(agent), SystemClock())
        if kind == "post":
            return lambda i: bus.discover(f"message {i}")
        return lambda i: bus.claim([f"pkg{i}/"])
    if side == "floor":
        import floor

        return _retrying(
            floor.PostFloor(d, agent).post if kind == "post" else floor.ClaimFloor(d, agent).claim
        )
    if side.startswith("shared file"):
        import shared_file

        sf = shared_file.SharedFile(d, agent, durable=side.endswith("fsync"))
        return sf.post if kind == "post" else sf.claim
    raise ValueError(side)


def worker(kind: str, side: str, d: Path, agent: str, first: int, ops: int) -> None:
    op = make_op(kind, side, d, agent)
    for i in range(WARMUP_OPS):
        op(first - 1 - i)
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.monotonic()
    took: list[float] = []
    for i in range(first, first + ops):
        t = time.monotonic()
        op(i)
        took.append(time.monotonic() - t)
    print(json.dumps({"start": t0, "end": time.monotonic(), "took": took}), flush=True)


# -- the parent --------------------------------------------------------------------------------------


def prepare(side: str, d: Path) -> None:
    if side in ("gitbus", "floor"):
        from gitbus.git import init_repository

        init_repository(d)
    else:
        d.mkdir(parents=True)


def count(kind: str, side: str, d: Path) -> int:
    """Messages (posts) or live claims (claims) in `d`, warm-ups included."""
    if side.startswith("shared file"):
        import shared_file

        name = shared_file.MESSAGES if kind == "post" else shared_file.CLAIMS
        return len((d / name).read_bytes().splitlines())
    import pygit2

    repo = pygit2.Repository(str(d))
    if kind == "claim":
        shards = [r for r in repo.references if r.startswith("refs/bus/ledgers/") and not r.endswith("/main")]
        trees = (repo.references[r].peel(pygit2.Tree) for r in shards)
        return sum(len(t["claims"].peel(pygit2.Tree)) for t in trees if "claims" in t)
    n = 0
    for ref in repo.references:
        if ref.startswith("refs/bus/agents/"):
            n += sum(1 for _ in repo.walk(repo.references[ref].target))
    return n


def run_crowd(kind: str, side: str, d: Path, k: int, ops: int, env: Mapping[str, str]) -> float:
    """Aggregate ops/s of `k` workers doing `ops` each, on a fresh `d`; checks nothing was lost."""
    spans = _run_workers(kind, side, d, k, ops, env)
    rate = float(k * ops / (max(s["end"] for s in spans) - min(s["start"] for s in spans)))
    want = k * (ops + WARMUP_OPS) + (k if side == "gitbus" and kind == "post" else 0)  # gitbus joins first
    got = count(kind, side, d)
    if got != want:
        raise AssertionError(f"{k} {side} workers: {got} {kind}s in {d}, expected {want}")
    shutil.rmtree(d)
    return rate


def _run_workers(kind: str, side: str, d: Path, k: int, ops: int, env: Mapping[str, str]) -> list[Any]:
    """What each of `k` workers doing `ops` each on a fresh `d` reports: start, end, each op's time."""
    prepare(side, d)
    here = Path(__file__).resolve().parent
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(here / "crowd.py"),
                "worker",
                kind,
                side,
                str(d),
                f"agent-{j}",
                str((j + 1) * SPREAD),
                str(ops),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=dict(env),
            cwd=here,
        )
        for j in range(k)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a {side} {kind} worker failed to start (exit {p.wait()})")
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        spans = []
        for p in procs:
            assert p.stdout is not None
            out = p.stdout.readline()
            if p.wait() != 0 or not out:
                raise RuntimeError(f"a {side} {kind} worker failed (exit {p.returncode})")
            spans.append(json.loads(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return spans


def fairness(k: int, ops: int) -> None:
    """Print how fairly `k` gitbus claimants of distinct paths share one ledger (see the docstring)."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        spans = _run_workers("claim", "gitbus", Path(tmp) / "fair", k, ops, os.environ)
    took = sorted(t for s in spans for t in s["took"])
    rates = [ops / (s["end"] - s["start"]) for s in spans]
    mean = sum(rates) / len(rates)
    p50, p99 = took[len(took) // 2], took[min(len(took) - 1, int(len(took) * 0.99))]
    print(f"{k} claimants x {ops} claims: claim p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, ", end="")
    print(f"slowest {took[-1] * 1000:.1f} ms ({took[-1] / p50:.1f}x p50)")
    print(
        f"grants/s per claimant: mean {mean:.0f}, lowest {min(rates):.0f} ({min(rates) / mean:.2f}x mean), ",
        end="",
    )
    print(f"highest {max(rates):.0f} ({max(rates) / mean:.2f}x mean)")


@dataclass(frozen=True)
class CrowdBench:
    workers: int
    reps: int
    ops: dict[str, dict[int, int]]  # side -> workers -> ops per worker
    rates: dict[str, dict[str, dict[int, Series]]]  # kind -> side -> workers -> aggregate ops/s


Outside = Callable[[int, int], float]  # run(workers, ops each) -> aggregate ops/s


def crowd_bench(
    work: Path,
    env: Mapping[str, str],
    reps: int,
    total: int,
    workers: int = 8,
    outside: Mapping[tuple[str, str], Outside] | None = None,
    outside_total: int = 0,
) -> CrowdBench:
    """`total` ops split over 1 and over `workers` processes, per kind and side, interleaved.

    `outside` sides ((kind, label) -> run) are measured in the same rotation with `outside_total` ops."""
    outside = outside or {}
    counts = (1, workers)
    jobs: list[tuple[str, str]] = [(kind, side) for kind in KINDS for side in SIDES] + list(outside)
    got: dict[tuple[str, str], dict[int, list[float]]] = {job: {k: [] for k in counts} for job in jobs}
    ops = {side: {k: total // k for k in counts} for side in SIDES}
    ops |= {side: {k: max(1, outside_total // k) for k in counts} for _, side in outside}
    for rep in range(reps):
        for kind, side in jobs if rep % 2 == 0 else jobs[::-1]:
            for k in counts if rep % 2 == 0 else counts[::-1]:
                if (kind, side) in outside:
                    got[kind, side][k].append(outside[kind, side](k, ops[side][k]))
                else:
                    d = work / f"crowd-{kind}-{side.replace(' ', '-')}-{k}-{rep}"
                    got[kind, side][k].append(run_crowd(kind, side, d, k, ops[side][k], env))
    rates: dict[str, dict[str, dict[int, Series]]] = {kind: {} for kind in KINDS}
    for (kind, side), by in got.items():
        rates[kind][side] = {k: Series(tuple(v)) for k, v in by.items()}
    return CrowdBench(workers, reps, ops, rates)


# -- the report's lines ------------------------------------------------------------------------------

DESCRIBE = {
    "gitbus": ("`Bus.discover`", "`Bus.claim` (one fresh path)"),
    "floor": ("pygit2 floor (bench/floor.py)", "pygit2 floor, retrying lost races"),
    "shared file": ("JSONL + `flock`, no fsync (as gitbus)", "read-check-append under `flock`"),
    "shared file + fsync": ("JSONL + `flock` + `fsync` per line", "the same + `fsync`"),
    "Agent Mail": ("`send_message`, one recipient", "`file_reservation_paths`, one pattern"),
}


def _cell(s: Series) -> str:
    return "failed" if s.median != s.median else f"{s.median:,.0f} | {s.lo:,.0f} – {s.hi:,.0f}"


def goal_rows(b: CrowdBench) -> list[str]:
    return [
        f"| {b.workers} processes posting, and {b.workers} claiming, into one repository at once: no "
        "message or claim lost (all counted afterwards) | all there | **met** |"
    ]


def section(b: CrowdBench, number: int, agentmail: object | None) -> list[str]:
    """`agentmail` is an `agentmail.Outcome`, or None when Agent Mail was not part of the run."""
    w = b.workers
    out = [
        f"## {number}. {w} agents at once, and the alternatives",
        "",
        f"Aggregate throughput of 1 and of {w} processes writing into one repository (or one shared-file "
        "directory) at once, each process a different agent; process start-up and warm-up are not counted "
        "(every worker waits for a common `go`), and afterwards every message and claim is counted: "
        f"nothing may be lost. {b.reps} repetitions, the sides and the two loads alternating forward and "
        "backward; on disk (`bench/crowd.py`). Posts go to each agent's own chain; claims all go through "
        "the one ledger ref. The shared-file reference (`bench/shared_file.py`) appends one JSON line "
        "under `flock` with one `os.write` (no fsync, as gitbus: libgit2 does not fsync unless asked, and "
        "gitbus does not ask), and claims by read-check-append under `flock`; the `+ fsync` row adds one "
        "`fsync` per write.",
        "",
        f"| side | what | ops per run (1 / {w}) | posts/s, 1 process | min – max | {w} processes | "
        f"min – max | {w} ÷ 1 | ÷ gitbus at {w} |",
        "|---|---|---|---:|---|---:|---|---:|---:|",
    ]
    for kind, col in (("post", 0), ("claim", 1)):
        base = b.rates[kind]["gitbus"][w].median
        for side, series in b.rates[kind].items():
            one, many = series[1], series[w]
            ops = b.ops[side]
            out.append(
                f"| {side} | {DESCRIBE[side][col]} | {ops[1]} / {w} × {ops[w]} | {_cell(one)} | "
                f"{_cell(many)} | {many.median / one.median:.2f}× | {many.median / base:.2f}× |"
            )
        if kind == "post":
            out += [
                "",
                f"| side | what | ops per run (1 / {w}) | claims/s, 1 process | min – max | "
                f"{w} processes | min – max | {w} ÷ 1 | ÷ gitbus at {w} |",
                "|---|---|---|---:|---|---:|---|---:|---:|",
            ]
    out += ["", *_agentmail(agentmail, w), ""]
    return out


def _agentmail(o: object | None, w: int) -> list[str]:
    import agentmail

    if o is None:
        return ["Agent Mail was not part of this run."]
    assert isinstance(o, agentmail.Outcome)
    i = o.install
    if i.python is None:
        return [
            f"**MCP Agent Mail could not be measured here.** The bench tried `{i.tried}`, which failed:",
            "",
            "```",
            i.error,
            "```",
        ]
    setup = f"installed in {i.seconds:.0f} s" if i.seconds else "reused"
    lines = [
        f"Agent Mail: PyPI `{agentmail.PACKAGE}` {i.version}, in its own environment "
        f"(`bench/.venv-agentmail`, {setup}), "
        "driven through its MCP tools by an in-memory MCP client (`fastmcp.Client(server)`: the server's "
        "work plus MCP's JSON-RPC, no HTTP), project and agents registered first, LLM features off "
        f"(`bench/agentmail.py`). Each message is a row in SQLite and a commit of files in its git archive. "
        f"With {w} at once, each agent has its own server process on the one store (as {w} stdio MCP "
        f"servers would); starting {w} servers took {o.started:.0f} s (importing `mcp_agent_mail.app` "
        "loads litellm). Its ops per run are fewer: each call takes tens of milliseconds.",
    ]
    if o.probe:
        lines += [
            "",
            f"{w} callers at once on one server (its HTTP deployment), 2 `send_message` calls each: "
            f"{o.probe}.",
        ]
    if o.errors:
        lines += ["", "Agent Mail failed during the run:", "", "```", *o.errors, "```"]
    return lines


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        kind, side, d, agent, first, ops = sys.argv[2:8]
        worker(kind, side, Path(d), agent, int(first), int(ops))
    elif sys.argv[1:2] == ["fairness"]:
        fairness(int(sys.argv[2]) if len(sys.argv) > 2 else 8, int(sys.argv[3]) if len(sys.argv) > 3 else 100)
