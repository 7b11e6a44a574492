"""A session far behind (issue 16, item 7): a hook call and `gitbus inbox` with 100,000 unread.

The bus is synthetic (synth.py, byte-identical to what the library writes): `messages` messages over
8 agent chains, all broadcasts, questions and answers as section 3 has them. Agent `reader`'s cursor
and its hook session `s1`'s cursor sit on each chain's first message, so everything after is
unread; a second copy of the state has the cursors one message behind the tips (1 unread), the
everyday case. Before every timed run the state directory (`.git/gitbus`) is put back, so each run
does the same work. Each command is a whole process, `python -m gitbus …` from a regular install
(`pip install .` into a fresh venv, as users install; an editable install adds its finder to every
start-up): this checkout ("now") and, when given, an unpacked older tree ("before", e.g. `git
archive main gitbus`), side by side in one rotation; peak memory is the child's `ru_maxrss`.

    python bench/flood.py --before /tmp/main-src      # prints the section's markdown
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import startup
import synth
from helpers import hermetic_env, log, workdir
from measure import verdict

from gitbus import cursors
from gitbus.bus import Bus
from gitbus.git import Repository

AGENTS = 8
SESSION = "s1"
COMMANDS = {"hook": "`gitbus hook` (PostToolUse)", "inbox": "`gitbus inbox` (first page)"}
TIME = "/usr/bin/time"  # GNU time: the child's peak memory
POST_TOOL_USE = {"hook_event_name": "PostToolUse", "session_id": SESSION, "tool_name": "Bash",
                 "tool_input": {}}


@dataclass(frozen=True)
class Flooded:
    root: Path
    states: dict[str, Path]  # "flood" / "one": a saved `.git/gitbus` to restore before each run
    messages: int


def build(root: Path, n: int, env: Mapping[str, str], layout: str) -> Flooded:
    msgs = synth.messages(n, AGENTS, end_ms=time.time_ns() // 1_000_000 - 60_000)
    marks = synth.build(root, synth.fast_import_stream(msgs), env, layout=layout)
    repo = Repository.open(root)
    refs = [f"refs/bus/agents/agent-{k}" for k in range(AGENTS)]
    firsts = {ref: marks[k + 1] for k, ref in enumerate(refs)}
    last = {ref: marks[max(i for i in marks if (i - 1) % AGENTS == k)] for k, ref in enumerate(refs)}
    behind_one = dict(last) | {refs[-1]: marks[max(marks) - AGENTS]}  # agent-7's newest is unread
    states = {}
    for label, at in (("flood", firsts), ("one", behind_one)):
        shutil.rmtree(root / ".git" / "gitbus", ignore_errors=True)
        cursors.save(repo, "reader", at)  # type: ignore[arg-type]
        cursors.save_session(repo.common_dir, "reader", SESSION, cursors.SessionCursor(dict(at)))
        states[label] = root.parent / f"{root.name}-state-{label}"
        shutil.copytree(root / ".git" / "gitbus", states[label])
    return Flooded(root, states, n)


def restore(f: Flooded, state: str) -> None:
    shutil.rmtree(f.root / ".git" / "gitbus")
    shutil.copytree(f.states[state], f.root / ".git" / "gitbus")


@dataclass(frozen=True)
class Case:
    label: str
    python: Path  # the interpreter of a regular install (`pip install .`) of the tree measured
    argv: tuple[str, ...]  # after `python -m gitbus`
    state: str
    stdin: bytes | None = None


@dataclass(frozen=True)
class Runs:
    seconds: tuple[float, ...]
    rss_mb: tuple[float, ...]
    out_bytes: int


def run_once(f: Flooded, c: Case, env: Mapping[str, str]) -> tuple[float, float, bytes]:
    """One whole-process run: (seconds, peak RSS in MB from GNU time's %M, stdout)."""
    restore(f, c.state)
    full = dict(env) | {"GITBUS_AGENT": "reader"}
    argv = [TIME, "-f", "%M", str(c.python), *(c.argv if c.argv[0] == "-c" else ("-m", "gitbus", *c.argv))]
    t0 = time.perf_counter()
    p = subprocess.run(argv, cwd=f.root, env=full, input=c.stdin, capture_output=True, check=False)
    took = time.perf_counter() - t0
    if p.returncode != 0:
        raise AssertionError(f"{c.label}: exit {p.returncode}: {p.stderr.decode(errors='replace')[-500:]}")
    rss_kb = int(p.stderr.decode().strip().splitlines()[-1])
    return took, rss_kb / 1024, p.stdout


def timed(f: Flooded, cases: Sequence[Case], reps: int, env: Mapping[str, str]) -> dict[str, Runs]:
    """Each case `reps` times (after one untimed run), the order rotating every round."""
    got: dict[str, list[tuple[float, float, int]]] = {c.label: [] for c in cases}
    for c in cases:
        run_once(f, c, env)
    for rep in range(reps):
        k = rep % len(cases)
        order = [*cases[k:], *cases[:k]]
        for c in order if rep % 2 == 0 else order[::-1]:
            took, rss, out = run_once(f, c, env)
            got[c.label].append((took, rss, len(out)))
    return {label: Runs(tuple(t for t, _, _ in v), tuple(r for _, r, _ in v), v[-1][2])
            for label, v in got.items()}


def history_reads(root: Path, reps: int) -> dict[str, tuple[float, ...]]:
    """`Bus.log(None)` (every message, newest first) beside `Bus.log(20)`, in this process."""
    got: dict[str, list[float]] = {"all": [], "tail": []}
    n = len(Bus.open(root, "reader").log(None))
    for rep in range(reps):
        for label in ("all", "tail") if rep % 2 == 0 else ("tail", "all"):
            t0 = time.perf_counter()
            msgs = Bus.open(root, "reader").log(None if label == "all" else 20)
            got[label].append(time.perf_counter() - t0)
            assert len(msgs) == (n if label == "all" else 20)
    return {k: tuple(v) for k, v in got.items()}


def _med(v: Sequence[float]) -> str:
    return f"{statistics.median(v):,.0f}"


HOOK_GOAL_S, HOOK_GOAL_MB, INBOX_GOAL_S, HISTORY_GOAL_S = 0.100, 80, 0.200, 1.0  # issue 16's figures


@dataclass(frozen=True)
class FloodBench:
    messages: int
    layout: str
    reps: int
    before: str | None  # what the "before" tree is, when measured
    runs: dict[str, Runs]  # "who|what|state" -> runs
    reads: dict[str, tuple[float, ...]]  # "all" / "tail" -> seconds


def flood_bench(work: Path, messages: int, reps: int, before: Path | None, layout: str = "gc",
                before_label: str | None = None) -> FloodBench:
    env = hermetic_env(work / "home")
    log(f"flood: building {messages:,} messages ({layout})")
    f = build(work / "flood-bus", messages, env, layout)
    hook_in = json.dumps(POST_TOOL_USE | {"cwd": str(f.root)}).encode()
    log("flood: installing each tree measured into a fresh venv (a regular install, as users have it)")
    trees = {"now": startup.regular_install(work / "install-now")}
    if before:
        trees["before"] = startup.regular_install(work / "install-before", before / "gitbus")
    cases = []
    for who, python in trees.items():
        cases += [
            Case(f"{who}|hook|flood", python, ("hook",), "flood", hook_in),
            Case(f"{who}|hook|one", python, ("hook",), "one", hook_in),
            Case(f"{who}|inbox|flood", python, ("inbox",), "flood"),
            Case(f"{who}|inbox|one", python, ("inbox",), "one"),
        ]
    cases.append(Case("python|import pygit2|-", trees["now"], ("-c", "import pygit2"), "one"))
    log(f"flood: {len(cases)} commands x {reps}")
    runs = timed(f, cases, reps, env)
    log("flood: the whole history through the library")
    reads = history_reads(f.root, reps)
    return FloodBench(messages, layout, reps, before_label or (str(before) if before else None), runs, reads)


def _median(r: Runs) -> float:
    return statistics.median(r.seconds)


def goal_rows(fb: FloodBench) -> list[str]:
    n = f"{fb.messages:,}"
    hook, inbox = fb.runs["now|hook|flood"], fb.runs["now|inbox|flood"]
    whole = statistics.median(fb.reads["all"])
    rss = statistics.median(hook.rss_mb)
    return [
        f"| a hook call (PostToolUse), {n} unread, whole process ≤ {HOOK_GOAL_S * 1000:.0f} ms (§ 14) | "
        f"{_median(hook) * 1000:,.0f} ms | {verdict(_median(hook) <= HOOK_GOAL_S)} |",
        f"| a hook call, {n} unread, peak memory ≤ {HOOK_GOAL_MB} MB (§ 14) | {rss:,.0f} MB | "
        f"{verdict(rss <= HOOK_GOAL_MB)} |",
        f"| `gitbus inbox` first page, {n} unread, whole process ≤ {INBOX_GOAL_S * 1000:.0f} ms (§ 14) | "
        f"{_median(inbox) * 1000:,.0f} ms | {verdict(_median(inbox) <= INBOX_GOAL_S)} |",
        f"| the whole history of {n} messages through the library (`Bus.log(None)`) ≤ {HISTORY_GOAL_S:.0f} s "
        f"(§ 14) | {whole:,.2f} s | {verdict(whole <= HISTORY_GOAL_S)} |",
    ]


def section(fb: FloodBench, number: int) -> list[str]:
    n = f"{fb.messages:,}"
    before = (f' "before" is {fb.before}, installed and run the same way.' if fb.before else "")
    lines = [
        f"## {number}. Under a flood",
        "",
        f"A session far behind (issue 16): a bus of {n} messages over {AGENTS} agent chains "
        f"({'after `git gc`' if fb.layout == 'gc' else 'loose objects'}), agent `reader`'s read cursor and "
        f"its hook session's on each chain's first message, so {n} are unread; beside it the same bus "
        "with 1 unread. Before each run the state directory is put back, so every run does the same "
        f"work. Whole process, from a regular install (`pip install .` into a fresh venv, as users "
        f"install), {fb.reps} runs each after an untimed one, the order rotating; peak memory "
        f"is GNU time's maximum resident set (`bench/flood.py`).{before} A hook call reads back from the "
        "tips at most `HOOK_WINDOW` (200) messages for the agent and tells the newest; `gitbus inbox` "
        "past `INBOX_WINDOW` (1,000) unread prints the newest page and stops (docs/claude-code.md, "
        "docs/cli.md).",
        "",
        "| command | code | unread | wall median | min – max | peak RSS | printed |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for label, r in fb.runs.items():
        who, what, state = label.split("|")
        cmd = COMMANDS.get(what, f"`python -c '{what}'`")
        unread = {"flood": n, "one": "1"}.get(state, "–")
        lines.append(
            f"| {cmd} | {who} | {unread} | {_med([s * 1000 for s in r.seconds])} ms | "
            f"{min(r.seconds) * 1000:,.0f} – {max(r.seconds) * 1000:,.0f} | {_med(r.rss_mb)} MB | "
            f"{r.out_bytes:,} B |"
        )
    lines += [
        "",
        "| library read, in process | median | min – max |",
        "|---|---:|---|",
    ]
    for label, v in fb.reads.items():
        what = f"`Bus.log(None)`: all {n} messages, newest first" if label == "all" else "`Bus.log(20)`"
        spread = f"{min(v) * 1000:,.0f} – {max(v) * 1000:,.0f}"
        lines.append(f"| {what} | {_med([s * 1000 for s in v])} ms | {spread} |")
    return [*lines, ""]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--before", type=Path, help="an unpacked older gitbus tree to measure beside this one")
    ap.add_argument("--before-label", help="how the report names that tree (say, `main` at 527e864)")
    ap.add_argument("--layout", default="gc", choices=("gc", "loose"))
    args = ap.parse_args(argv)
    with workdir() as work:
        fb = flood_bench(work, args.messages, args.reps, args.before, args.layout, args.before_label)
    print("\n".join([*section(fb, 14), "", *goal_rows(fb)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
