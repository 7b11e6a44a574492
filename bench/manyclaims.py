"""Claim decisions and the edit guard with 10,000 live claims, against the same with 10.

Two repositories: eight holder agents hold `area<k>/mod<j>/` claims, 10 in one and 10,000 in the other,
granted through the library (`Bus.claim`, a hundred paths at a time). Then, side by side on the two
(measure.interleaved_on), an agent `bench` asks for:

- a grant: `Bus.claim(["new<i>/"])`, a fresh path (the ledger gains one claim per op);
- a refusal: `Bus.claim(["area0/mod0/f<i>.py"])`, inside a holder's claim (`ClaimConflict`);
- the guard's check, in process: `guard.conflicts(...)` for a path inside a claim and one outside,
  the claims snapshot current (what the PreToolUse hook does, minus process start-up);
- the snapshot rebuilt: what the first guard check after a ledger change costs when no watcher
  refreshed it (the cache file removed, then `guard.snapshot`);
- the shared-file reference (shared_file.py) with as many live claims: its claim and its check.

And whole process: `gitbus hook` with a PreToolUse `Edit` payload outside any claim (the hook's common
case), checked to print nothing, in both repositories, the order rotating.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import shared_file
from measure import Command, Op, Series, cli_times, interleaved_on

from gitbus import guard
from gitbus.bus import Bus
from gitbus.clock import SystemClock
from gitbus.errors import ClaimConflict
from gitbus.git import Repository, init_repository
from gitbus.ids import agent_name

HOLDERS = 8
BATCH = 100
ME = "bench"


def holder_paths(n: int) -> dict[str, list[str]]:
    """`n` directory claims spread over the holders: `area<k>/mod<j>/`."""
    out: dict[str, list[str]] = {f"holder-{k}": [] for k in range(HOLDERS)}
    for i in range(n):
        k = i % HOLDERS
        out[f"holder-{k}"].append(f"area{k}/mod{i // HOLDERS}/")
    return out


def build(root: Path, n: int, files: Path) -> None:
    """A repository whose ledger holds `n` live claims, and a shared-file directory holding the same."""
    repo = init_repository(root)
    lines: list[bytes] = []
    for holder, paths in holder_paths(n).items():
        bus = Bus(repo, agent_name(holder), SystemClock())
        for i in range(0, len(paths), BATCH):
            bus.claim(paths[i : i + BATCH], reason="bench")
        for c in bus.claims():
            if c.owner == holder:
                lines.append(
                    shared_file.line(
                        {
                            "kind": "claim",
                            "path": c.path,
                            "owner": c.owner,
                            "claimed_at": c.claimed_at,
                            "expires_at": c.expires_at,
                        }
                    )
                )
    files.mkdir(parents=True)
    (files / shared_file.CLAIMS).write_bytes(b"".join(lines))  # the same claims, without n² checks
    Bus(repo, agent_name(ME), SystemClock()).join(ME)
    got = len(Bus(repo, agent_name(ME), SystemClock()).claims())
    if got != n:
        raise AssertionError(f"{root} holds {got} live claims, expected {n}")


@dataclass(frozen=True)
class ClaimsBench:
    counts: tuple[int, int]  # live claims in the two repositories
    reps: int
    ops: int
    rates: dict[str, dict[str, Series]]  # operation -> label ("10 claims") -> ops/s
    hook: dict[str, Series]  # label -> seconds, whole process
    hook_reps: int


GRANT, REFUSE, GUARD_IN, GUARD_OUT, REBUILD, SF_CLAIM, SF_CHECK = (
    "grant: `Bus.claim` on a fresh path",
    "refusal: `Bus.claim` inside a held claim",
    "guard check in process, a path inside a claim",
    "guard check in process, a path outside every claim",
    "guard snapshot rebuilt from the ledger (cache missing)",
    "shared file: claim a fresh path",
    "shared file: check a path outside every claim",
)


def _label(n: int) -> str:
    return f"{n:,} claims"


def _ops(root: Path, files: Path) -> dict[str, Op]:
    repo = Repository.open(root)
    bus = Bus(repo, agent_name(ME), SystemClock())
    me = agent_name(ME)
    clock = SystemClock()
    sf = shared_file.SharedFile(files, ME)
    cache = repo.common_dir / "gitbus" / "cache" / "claims.json"

    def refuse(i: int) -> None:
        try:
            bus.claim([f"area0/mod0/f{i}.py"])
        except ClaimConflict:
            return
        raise AssertionError("a claim inside a held claim was granted")

    def check(path: str, blocked: bool) -> Op:
        def op(_i: int) -> None:
            hit = guard.conflicts(repo.root, repo.common_dir, me, [path], clock.now_ms())
            assert bool(hit) == blocked, (path, hit)

        return op

    def rebuild(_i: int) -> None:
        cache.unlink(missing_ok=True)
        guard.snapshot(repo.root, repo.common_dir)

    def sf_check(_i: int) -> None:
        assert sf.check("src/free.py") is None

    return {
        GRANT: lambda i: bus.claim([f"new{i}/"]),
        REFUSE: refuse,
        GUARD_IN: check("area0/mod0/x.py", True),
        GUARD_OUT: check("src/free.py", False),
        REBUILD: rebuild,
        SF_CLAIM: lambda i: sf.claim_path(f"new{i}/"),
        SF_CHECK: sf_check,
    }


def claims_bench(
    work: Path,
    env: Mapping[str, str],
    gitbus: str,
    counts: tuple[int, int],
    reps: int,
    ops: int,
    hook_reps: int,
) -> ClaimsBench:
    roots = {n: work / f"claims-{n}" for n in counts}
    for n, root in roots.items():
        build(root, n, work / f"claims-{n}-file")
    by_side = {_label(n): _ops(root, work / f"claims-{n}-file") for n, root in roots.items()}
    rates: dict[str, dict[str, Series]] = {}
    for what in (GRANT, REFUSE, GUARD_IN, GUARD_OUT, REBUILD, SF_CLAIM, SF_CHECK):
        few = max(2, ops // 10) if what == REBUILD else ops
        rates[what] = interleaved_on({label: o[what] for label, o in by_side.items()}, reps, few)
    cmds = []
    hook_env = {**env, "GITBUS_AGENT": ME}
    for n, root in roots.items():
        edit = json.dumps(
            {
                "session_id": "bench-claims",
                "transcript_path": "/dev/null",
                "cwd": str(root),
                "hook_event_name": "PreToolUse",
                "tool_name": "Edit",
                "tool_input": {
                    "file_path": str(root / "src" / "free.py"),
                    "old_string": "a",
                    "new_string": "b",
                },
            }
        ).encode()
        cmds.append(Command(_label(n), (gitbus, "hook"), root, edit))
    _quiet_hooks(cmds, hook_env)
    hook = cli_times(cmds, hook_reps, hook_env)
    return ClaimsBench(counts, reps, ops, rates, hook, hook_reps)


def _quiet_hooks(cmds: list[Command], env: Mapping[str, str]) -> None:
    import subprocess

    for c in cmds:
        r = subprocess.run(c.argv, cwd=c.cwd, env=dict(env), input=c.stdin, capture_output=True, check=False)
        if (r.returncode, r.stdout, r.stderr) != (0, b"", b""):
            raise AssertionError(f"the PreToolUse hook in {c.cwd} is not on its allow path: {r}")


# -- the report's lines ------------------------------------------------------------------------------


def _per_op(s: Series) -> str:
    """ops/s as time per op: median, then the range (fastest – slowest)."""
    return f"{1000 / s.median:,.2f} ms | {1000 / s.hi:,.2f} – {1000 / s.lo:,.2f}"


def section(b: ClaimsBench, number: int) -> list[str]:
    few, many = (_label(n) for n in b.counts)
    out = [
        f"## {number}. Claims at {b.counts[1]:,} live claims",
        "",
        f"Eight holder agents hold `area<k>/mod<j>/` claims: {b.counts[0]:,} in one repository, "
        f"{b.counts[1]:,} in the other, granted through `Bus.claim` a hundred at a time. Another agent "
        "then claims and checks paths in both, side by side on the two long-lived repositories "
        f"({b.reps} × {b.ops} ops each, interleaved; the rebuild {b.reps} × {max(2, b.ops // 10)}). The "
        "guard rows are `guard.conflicts`, what the PreToolUse hook does once it runs; the shared-file "
        "reference (`bench/shared_file.py`) holds the same claims in its file and in memory "
        "(`bench/manyclaims.py`).",
        "",
        f"| operation | {few}: per op | fastest – slowest | {many}: per op | fastest – slowest "
        "| time ratio |",
        "|---|---:|---|---:|---|---:|",
    ]
    for what, sides in b.rates.items():
        a, z = sides[few], sides[many]
        out.append(f"| {what} | {_per_op(a)} | {_per_op(z)} | {a.median / z.median:,.1f}× |")
    h_few, h_many = b.hook[few], b.hook[many]
    out += [
        f"| `gitbus hook`, PreToolUse `Edit` outside every claim, whole process ({b.hook_reps} runs) | "
        f"{h_few.median * 1000:,.1f} ms | {h_few.lo * 1000:,.1f} – {h_few.hi * 1000:,.1f} | "
        f"{h_many.median * 1000:,.1f} ms | {h_many.lo * 1000:,.1f} – {h_many.hi * 1000:,.1f} | "
        f"{h_many.median / h_few.median:,.1f}× |",
        "",
        "A claim decision reads only the ledger entries on the path's ancestors and below it, so a grant "
        "or a refusal barely depends on the number of claims; a grant still rewrites the `claims` tree, "
        "whose size grows with every top-level claimed directory. The guard reads a snapshot of every "
        "claim (a JSON file keyed by the ledger tip) and scans it: linear in the live claims.",
        "",
    ]
    return out
