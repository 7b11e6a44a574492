"""Posting and `gitbus agents` as agents pile up: 1, 64 and 2,000 agent refs (issue 16, item 6).

In process, on one long-lived repository per scenario: `Bus.discover` against the pygit2 floor
(floor.py), every side of every scenario interleaved in one `measure.interleaved_on` call, so the
1-agent and the 2,000-agent rates are measured side by side. Whole process: `gitbus agents` (piped,
the plain rows) and `gitbus discover` on a bus of 8 agents and one of 2,000, the order rotating.
The agents are made through the library, one `join` and one `discovery` each; the refs stay loose
(as on a busy clone between two `git pack-refs`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import floor
import helpers
from measure import Command, Op, Series, cli_times, interleaved_on, ratio, verdict

from gitbus.bus import Bus
from gitbus.clock import SystemClock
from gitbus.git import Repository, init_repository
from gitbus.ids import agent_name

AGENT = "bench"
SCENARIOS = (1, 64, 2000)  # agents on the bus, the poster included
GOAL = 0.7  # post ≥ 0.7× the floor (64 agents); 2,000 agents ≥ 0.7× the 1-agent rate


@dataclass(frozen=True)
class Result:
    fs: str
    posts: dict[str, Series]  # "gitbus <n>" / "floor <n>" -> ops/s
    cli: dict[str, Series]  # command label -> seconds
    reps: int
    ops: int


def crowded(d: Path, agents: int) -> Path:
    """A repository whose bus has `agents - 1` other agents, each with a join and a discovery."""
    repo = init_repository(d)
    for k in range(agents - 1):
        Bus(repo, agent_name(f"peer-{k}"), SystemClock()).discover(f"peer {k} is here")
    return d


def post_sides(work: Path) -> dict[str, Op]:
    sides: dict[str, Op] = {}
    for n in SCENARIOS:
        g, f = crowded(work / f"g{n}", n), crowded(work / f"f{n}", n)
        bus = Bus(Repository.open(g), agent_name(AGENT), SystemClock())
        sides[f"gitbus {n}"] = lambda i, bus=bus: bus.discover(f"message {i}")
        sides[f"floor {n}"] = floor.PostFloor(f, AGENT).post
    return sides


def run(work: Path, fs: str, env: Mapping[str, str], reps: int, ops: int, cli_reps: int) -> Result:
    helpers.log(f"agentrefs on {fs}: {SCENARIOS} agents, {reps} x {ops} posts per side")
    posts = interleaved_on(post_sides(work), reps, ops)
    exe = helpers.gitbus_exe()
    small, big = crowded(work / "cli8", 8), crowded(work / "cli2000", 2000)
    buses = (("8", small), ("2,000", big))
    cmds = [Command(f"agents, {n} agents", (exe, "agents"), d) for n, d in buses]
    cmds += [Command(f"discover, {n} agents", (exe, "discover", "a finding"), d) for n, d in buses]
    cli = cli_times(cmds, cli_reps, env)
    return Result(fs, posts, cli, reps, ops)


def _ops(s: Series) -> str:
    return f"{s.median:,.0f} | {s.lo:,.0f} – {s.hi:,.0f}"


def rows(results: list[Result]) -> list[str]:
    out = ["| file system | agents | gitbus posts/s | min – max | floor posts/s | min – max | gitbus ÷ floor "
           "| gitbus ÷ its 1-agent rate |", "|---|---:|---:|---|---:|---|---:|---:|"]
    for r in results:
        one = r.posts["gitbus 1"]
        for n in SCENARIOS:
            g, f = r.posts[f"gitbus {n}"], r.posts[f"floor {n}"]
            out.append(f"| {r.fs} | {n:,} | {_ops(g)} | {_ops(f)} | {ratio(g, f):.2f}× "
                       f"| {ratio(g, one):.2f}× |")
    out += ["", "| file system | command (whole process) | median s | min – max |", "|---|---|---:|---|"]
    for r in results:
        out += [f"| {r.fs} | `gitbus {label}` | {s.median:.3f} | {s.lo:.3f} – {s.hi:.3f} |"
                for label, s in r.cli.items()]
    return out


def goal_rows(results: list[Result]) -> list[str]:
    out = []
    for r in results:
        x = ratio(r.posts["gitbus 64"], r.posts["floor 64"])
        out.append(f"| post throughput, 64 agents, {r.fs} ≥ {GOAL}× the pygit2 floor | {x:.2f}× | "
                   f"{verdict(x >= GOAL)} |")
        y = ratio(r.posts["gitbus 2000"], r.posts["gitbus 1"])
        out.append(f"| post throughput, 2,000 agent refs, {r.fs} ≥ {GOAL}× the 1-agent rate | {y:.2f}× | "
                   f"{verdict(y >= GOAL)} |")
    return out


def section(results: list[Result], number: int) -> list[str]:
    r, counts = results[0], ", ".join(f"{n:,}" for n in SCENARIOS)
    return [
        f"## {number}. Posting and `gitbus agents` as agents pile up",
        "",
        f"`Bus.discover` against the pygit2 floor on buses of {counts} agents (each other agent with "
        "a join and a discovery, refs loose), one long-lived repository per side and scenario, all "
        f"six sides interleaved in one loop ({r.reps} × {r.ops} posts each): the "
        "1-agent and the 2,000-agent rates are measured side by side. A post reads one number for the "
        "hybrid clock, the horizon mark (docs/format.md, Times), not every chain's tip. Whole process: "
        "`gitbus agents` (piped: the plain rows) and `gitbus discover` on buses of 8 and 2,000 agents, "
        "the order rotating (`bench/agentrefs.py`).",
        "",
        *rows(results),
        "",
        "`gitbus agents` still reads one ref and one commit per agent (the newest message it shows); "
        "the rest of its time is start-up. A retired agent (`gitbus agents --retire`) keeps its ref, "
        "so it still costs that read.",
        "",
    ]


def sizes(quick: bool) -> tuple[int, int, int]:
    """Repetitions, posts per repetition, whole-process runs of each command."""
    return (3, 100, 3) if quick else (7, 300, 9)


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    reps, ops, cli_reps = sizes(quick)
    results = []
    with helpers.workdir() as work:
        env = helpers.hermetic_env(work / "home")
        places = {f"{work.parent} ({helpers.fstype(work)})": work}
        ram = helpers.tmpfs()
        with helpers.workdir(ram) if ram else helpers.workdir() as ramwork:
            if ram:
                places[f"{ram} (tmpfs)"] = ramwork
            for fs, where in places.items():
                results.append(run(where, fs, env, reps, ops, cli_reps))
    print("\n".join([*goal_rows(results), "", *section(results, 15)]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
