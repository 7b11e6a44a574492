"""Claim decisions and the edit guard with 10,000 live claims, against the same with 10.

Two repositories: eight holder agents hold `area<k>/mod<j>/` claims, 10 in one and 10,000 in the other,
granted through the library (`Bus.claim`, a hundred paths at a time). Then, side by side on the two
(measure.interleaved_on), an agent `bench` asks for:

- a grant: `Bus.claim(["new<i>/"])`, a fresh path (the ledger gains one claim per op);
- a refusal: `Bus.claim(["area0/mod0/f<i>.py"])`, inside a holder's claim (`ClaimConflict`);
- the guard's check, in process: `guard.conflicts(...)` for a path inside a claim and one outside,
  the claims snapshot current (what the PreToolUse hook does, minus process start-up);
- the index brought up one ledger step (what the first guard check after a claim adds, when no
  watcher did it first: the tree diff of the two states, in memory), and the index read whole (the
  cache file removed, then `guard.snapshot`);
- the shared-file reference (shared_file.py) with as many live claims: its claim and its check.

And whole process: `gitbus hook` with a PreToolUse `Edit` payload outside any claim (the hook's common
case), checked to print nothing, in both repositories, the order rotating, from a regular install
(`pip install .` of this checkout into a fresh venv, as users install it; startup.regular_install).

Beside the grants, when Agent Mail is installed (agentmail.py), one Agent Mail server's
`file_reservation_paths` in the same rounds: issue 16 asks a claim to cost a hundredth of it.

    python bench/manyclaims.py [--reps 5] [--ops 50] [--hook-reps 40]   # prints the section
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import floor
import shared_file
from measure import Command, Op, Series, cli_times, interleaved_on, run_ops, verdict

from gitbus import claimsindex, guard, loose, state
from gitbus.bus import Bus
from gitbus.clock import SystemClock
from gitbus.errors import ClaimConflict
from gitbus.git import Repository, init_repository
from gitbus.gitfiles import Oid
from gitbus.ids import agent_name

HOLDERS = 8
BATCH = 100
ME = "bench"
GUARD_GOAL_MS = 1.0  # issue 16: a guard check at 10,000 claims, in process
HOOK_GOAL = 1.2  # the PreToolUse hook at 10,000 claims against 10, whole process
AGENTMAIL_GOAL = 100.0  # a claim in process against Agent Mail's `file_reservation_paths`
CLAIM_GOAL_MS = 0.5  # what that means here, on ext4


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
    hook_install: str  # how the gitbus the hook rows ran was installed
    versus: dict[str, Series]  # grants (label -> ops/s) and Agent Mail's reservations, in the same rounds
    agentmail: str  # Agent Mail's version, or why it is not in the run


GRANT, REFUSE, GUARD_IN, GUARD_OUT, UPDATE, REBUILD, SF_CLAIM, SF_CHECK = (
    "grant: `Bus.claim` on a fresh path",
    "refusal: `Bus.claim` inside a held claim",
    "guard check in process, a path inside a claim",
    "guard check in process, a path outside every claim",
    "guard index brought up one ledger step (tree diff, in memory)",
    "guard index read whole from the ledger (cache missing)",
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
    cache = state.claims_cache(repo.common_dir)
    # Two ledger states one step apart, and the index of the earlier: what the first check after a
    # claim starts from when no watcher brought the index up.
    before = guard.snapshot(repo.root, repo.common_dir)
    assert before.ledger is not None
    bus.claim(["one-step-on/"])
    after = claimsindex.ledger_tip(repo.common_dir)
    old = claimsindex.render(before.ledger, before.ignorecase, before.index.lines())

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

    def update(_i: int) -> None:
        snap = guard.from_ledger(repo.root, after, claimsindex.parse_index(old))
        assert snap.ledger == after and snap.blind is None

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
        UPDATE: update,
        REBUILD: rebuild,
        SF_CLAIM: lambda i: sf.claim_path(f"new{i}/"),
        SF_CHECK: sf_check,
    }


AGENTMAIL = "Agent Mail `file_reservation_paths`"
FLOOR = "pygit2 floor (`bench/floor.py`), a fresh repository"
WRITES = ", its writes alone: 5 loose objects, a ref moved beside one leased (`gitbus.loose`)"


# Refs `loose.update_refs` may write (gitbus's own namespace), sorted as it wants them; removed again
# once the grants are measured (`GrantWrites.remove`), before anything reads the whole bus.
_LEASED, _MOVED = "refs/bus/zz-bench-writes/leased", "refs/bus/zz-bench-writes/moved"


class GrantWrites:
    """The files a grant makes, made by the same code and nothing else: 5 small loose objects
    (`loose.write`: blob, 3 trees, commit), then one ref moved and one leased in one
    `loose.update_refs` (two locks; one renamed over its ref, one removed). No decision, no reads of
    the ledger: what is left of a grant on this disk if everything else cost nothing. Made in the
    grants' own repository (its object folder, refs of its own outside `refs/bus/`): a file's cost
    depends on the disk's block group it lands in, and each repository sits in its own."""

    def __init__(self, root: Path) -> None:
        repo = Repository.open(root)
        self.objects = str(repo.common_dir / "objects")
        self.common = str(repo.common_dir)
        empty = repo.empty_tree
        self.lease = repo.commit(tree=empty, parents=[], message="lease", author=ME, time_ms=0)
        if repo.ref(_LEASED) is None:
            repo.update_ref(_LEASED, self.lease, None, "bench")
        self.tip: Oid | None = repo.ref(_MOVED)
        self.repo = repo

    def remove(self) -> None:
        for name in (_LEASED, _MOVED):
            if (oid := self.repo.ref(name)) is not None:
                self.repo.delete_ref(name, oid)

    def grant(self, i: int) -> None:
        body = b""
        for kind in (b"blob", b"tree", b"tree", b"tree", b"commit"):
            oid, data = loose.object_id(kind, b"%s %d %s" % (kind, i, body))
            loose.write(self.objects, oid, data)
            body = oid.encode()
        moved = (_MOVED, Oid(oid), self.tip)
        loose.update_refs(self.common, [(_LEASED, self.lease, self.lease), moved], keeps_log=False)
        self.tip = Oid(oid)


VERSUS_BASE = 1_000_000  # grants beside Agent Mail take paths of their own


def claims_bench(
    work: Path,
    env: Mapping[str, str],
    gitbus: str,
    counts: tuple[int, int],
    reps: int,
    ops: int,
    hook_reps: int,
    hook_install: str = "the gitbus running the bench",
    reserve: Callable[[int], float] | None = None,
    agentmail: str = "not in this run",
    agentmail_ops: int = 10,
) -> ClaimsBench:
    """`gitbus` runs the hook rows (say, from a regular install); `reserve(n)` makes `n` Agent Mail
    reservations and answers calls/s."""
    roots = {n: work / f"claims-{n}" for n in counts}
    for n, root in roots.items():
        build(root, n, work / f"claims-{n}-file")
    by_side = {_label(n): _ops(root, work / f"claims-{n}-file") for n, root in roots.items()}
    rates: dict[str, dict[str, Series]] = {}
    for what in (GRANT, REFUSE, GUARD_IN, GUARD_OUT, UPDATE, REBUILD, SF_CLAIM, SF_CHECK):
        few = max(2, ops // 10) if what == REBUILD else ops
        rates[what] = interleaved_on({label: o[what] for label, o in by_side.items()}, reps, few)
    grants = {label: o[GRANT] for label, o in by_side.items()}
    alone = {label + WRITES: GrantWrites(roots[n]) for n, label in zip(counts, grants, strict=True)}
    writes = {name: w.grant for name, w in alone.items()}
    versus = _versus({**grants, **writes}, work / "claims-floor", reserve, reps, ops, agentmail_ops)
    for w in alone.values():
        w.remove()
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
    return ClaimsBench(counts, reps, ops, rates, hook, hook_reps, hook_install, versus, agentmail)


def _versus(
    grants: Mapping[str, Op],
    floor_dir: Path,
    reserve: Callable[[int], float] | None,
    reps: int,
    ops: int,
    am_ops: int,
) -> dict[str, Series]:
    """Grants on both repositories, the pygit2 floor's (the same git work, no gitbus: floor.py) on a
    fresh one, and Agent Mail's reservations when it is there, in the same rounds, the order
    alternating."""
    init_repository(floor_dir)
    sides: dict[str, Op] = {**grants, FLOOR: floor.ClaimFloor(floor_dir, ME).claim}
    got: dict[str, list[float]] = {name: [] for name in (*sides, *([AGENTMAIL] if reserve else []))}
    names = list(got)
    for op in sides.values():
        for i in range(5):
            op(VERSUS_BASE - 1 - i)
    if reserve is not None:
        reserve(2)  # its warm-up (the driver warms up too)
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            start = VERSUS_BASE + rep * ops
            got[name].append(
                reserve(am_ops) if reserve and name == AGENTMAIL else run_ops(sides[name], start, ops)
            )
    return {name: Series(tuple(v)) for name, v in got.items()}


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


def _ms(rate: Series) -> float:
    return 1000 / rate.median


def goal_rows(b: ClaimsBench) -> list[str]:
    few, many = (_label(n) for n in b.counts)
    rows = []
    for what in (GUARD_IN, GUARD_OUT):
        t = _ms(b.rates[what][many])
        rows.append(f"| {what}, {many} ≤ {GUARD_GOAL_MS:g} ms | {t:.3f} ms | {verdict(t <= GUARD_GOAL_MS)} |")
    hook = b.hook[many].median / b.hook[few].median
    rows.append(
        f"| `gitbus hook`, PreToolUse `Edit` outside every claim, whole process, regular install: "
        f"{many} ≤ {HOOK_GOAL}× {few} | {hook:.2f}× | {verdict(hook <= HOOK_GOAL)} |"
    )
    if AGENTMAIL in b.versus:
        am = _ms(b.versus[AGENTMAIL])
        for label in (few, many):
            x = am / _ms(b.versus[label])
            rows.append(
                f"| a claim in process (`Bus.claim`, {label}) ≥ {AGENTMAIL_GOAL:.0f}× {AGENTMAIL} "
                f"| {x:.0f}× | {verdict(x >= AGENTMAIL_GOAL)} |"
            )
    for label in (few, many):
        t = _ms(b.versus[label])
        rows.append(
            f"| a claim in process (`Bus.claim`, {label}) ≤ {CLAIM_GOAL_MS} ms, ext4 (the pygit2 floor: "
            f"{_ms(b.versus[FLOOR]):.2f} ms) | {t:.2f} ms | {verdict(t <= CLAIM_GOAL_MS)} |"
        )
    return rows


def _writes_note(b: ClaimsBench) -> list[str]:
    """What 100× Agent Mail leaves a grant, beside what its writes alone cost on this disk."""
    if AGENTMAIL not in b.versus:
        return []
    budget = _ms(b.versus[AGENTMAIL]) / AGENTMAIL_GOAL
    alone = {label: _ms(b.versus[label + WRITES]) for label in map(_label, b.counts)}
    took = [f"{t:.3f} ms beside {label} ({t / budget:.0%})" for label, t in alone.items()]
    return [
        f"100× Agent Mail leaves a grant {budget:.3f} ms. Its writes alone (the objects and refs a grant "
        "makes, made by the same code in the same repository with no decision around them) took "
        f"{' and '.join(took)} of that, in the same rounds.",
        "",
    ]


def section(b: ClaimsBench, number: int) -> list[str]:
    few, many = (_label(n) for n in b.counts)
    out = [
        f"## {number}. Claims at {b.counts[1]:,} live claims",
        "",
        f"Eight holder agents hold `area<k>/mod<j>/` claims: {b.counts[0]:,} in one repository, "
        f"{b.counts[1]:,} in the other, granted through `Bus.claim` a hundred at a time. Another agent "
        "then claims and checks paths in both, side by side on the two long-lived repositories "
        f"({b.reps} × {b.ops} ops each, interleaved; the whole read {b.reps} × {max(2, b.ops // 10)}). The "
        "guard rows are `guard.conflicts`, what the PreToolUse hook does once it runs; the shared-file "
        "reference (`bench/shared_file.py`) holds the same claims in its file and in memory "
        f"(`bench/manyclaims.py`). The hook rows run the gitbus installed by {b.hook_install}.",
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
        f"{h_many.median / h_few.median:,.2f}× |",
        "",
    ]
    am = b.versus.get(AGENTMAIL)
    out += [
        "Grants beside the pygit2 floor"
        + (
            f" and {AGENTMAIL} ({b.agentmail}; one server, one caller, through its MCP tool in "
            "process as in § 8)"
            if am
            else f" (Agent Mail: {b.agentmail})"
        )
        + f", in the same rounds, the order alternating ({b.reps} × {b.ops} grants per side"
        + (f", Agent Mail {b.reps} × its own count)" if am else ")")
        + ":",
        "",
        "| side | per claim | fastest – slowest |" + (" Agent Mail ÷ side |" if am else ""),
        "|---|---:|---|" + ("---:|" if am else ""),
        *(
            f"| {name} | {_per_op(r)} |" + (f" {_ms(am) / _ms(r):,.0f}× |" if am else "")
            for name, r in b.versus.items()
            if name != AGENTMAIL
        ),
        *([f"| {AGENTMAIL}, one fresh `pkg<i>/**` pattern | {_per_op(am)} | 1× |"] if am else []),
        "",
    ]
    out += [
        "Goals (issue 16):",
        "",
        "| goal | measured | |",
        "|---|---:|---|",
        *goal_rows(b),
        "",
        *_writes_note(b),
        "A guard check looks its path up in an index of the claims keyed by the ledger tips "
        "(`<common git dir>/gitbus/cache/claims.idx`), current for the path while its top folder's shard "
        "and `refs/bus/ledger` are unchanged (two refs read, however many shards): sorted lines, "
        "binary-searched in the mapped file for the path's ancestors and the run of keys below it, so only "
        "the claims it returns are parsed. When a ledger moves, the first check brings the index up through "
        "the tree diff of each ledger that moved (git opens only the folders that changed) and writes it "
        "again; it is read whole only when there is no earlier index. A claim decision reads only the "
        "ledger entries on the path's ancestors and below it, and remembers the folders it lists by tree "
        "id; a grant still writes one blob, a tree per level and a commit, and moves its shard's ref "
        "under its lock, which is most of its time on disk.",
        "",
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    import agentmail
    import startup
    from helpers import gitbus_exe, hermetic_env, log

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--ops", type=int, default=50)
    parser.add_argument("--hook-reps", type=int, default=40)
    parser.add_argument("--agentmail-ops", type=int, default=10)
    args = parser.parse_args(argv)
    gitbus_exe()  # the library runs in this process: gitbus must be installed beside it
    with tempfile.TemporaryDirectory(prefix="gitbus-manyclaims-", dir="/tmp") as tmp:
        work = Path(tmp)
        env = hermetic_env(work / "home")
        log("installing this checkout into a fresh venv (a regular install) for the hook rows")
        python = startup.regular_install(work / "install")
        install = agentmail.ensure_installed()
        servers = None
        note = f"not installed here: {install.error.splitlines()[-1:] or install.tried}"
        if install.python is not None:
            log("starting one Agent Mail server")
            servers = agentmail.Servers(install.python, work / "agentmail" / "store", 1)
            note = f"PyPI `{agentmail.PACKAGE}` {install.version}"
        try:
            log(f"measuring: {args.reps} × {args.ops} ops, the hook {args.hook_reps} runs")
            b = claims_bench(
                work,
                env,
                str(python.with_name("gitbus")),
                (10, 10_000),
                args.reps,
                args.ops,
                args.hook_reps,
                "`pip install .` of this checkout into a fresh venv (not editable)",
                (lambda n: servers.run("reserve", 1, n)) if servers is not None else None,
                note,
                args.agentmail_ops,
            )
        finally:
            if servers is not None:
                servers.close()
    print("\n".join(section(b, 9)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
