"""A post in process beside MCP Agent Mail's `send_message`, in the same rounds (issue 16: "post stays
≥ 100×").

Agent Mail's `send_message` with one recipient is what its agents do to tell another agent something;
its driver (agentmail.py) sends a finding ("finding i", a one-line body) to one registered agent. gitbus
has no separate "send": what an agent posting a finding does is `Bus.discover` (to everyone), and a
message to one agent is `Bus.ask` (or `Bus.request`) with `to=`, which first checks that the recipient
is on the bus, as Agent Mail checks its recipient is registered. The goal row is `Bus.discover`, the
post issue 16 names; `Bus.ask` to one agent is measured beside it, the closer analogue in shape.

Both gitbus sides run on long-lived repositories where the recipient has joined, the pygit2 floor
(floor.py) on a fresh one, and Agent Mail's `send_message` on one server through its MCP tool in
process, its store on the same file system; every round runs every side once, the order alternating
(`measure.interleaved_beside`). Run alone (`cd bench && python posts.py`), it measures on the disk and
again on /dev/shm, where the disk's file-creation cost (docs/benchmarks.md, Machine) is out of the way.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import agentmail
import floor
import helpers
from measure import Op, Series, interleaved_beside, verdict

from gitbus.bus import Bus
from gitbus.clock import SystemClock
from gitbus.git import init_repository
from gitbus.ids import agent_name

# Agent Mail's first sender and its recipient (agentmail.py), lowercase as gitbus agent names are.
AGENT, RECIPIENT = "bluelake", "quietharbor"
GOAL = 100.0  # issue 16: a post in process ≥ 100× Agent Mail's send

DISCOVER = "`Bus.discover`: a finding, to everyone"
ASK = "`Bus.ask` to one agent (its recipient checked)"
FLOOR = "pygit2 floor (`bench/floor.py`), a fresh repository"
AGENTMAIL = "Agent Mail `send_message`, one recipient"


@dataclass(frozen=True)
class PostsBench:
    fs: str  # where the repositories and Agent Mail's store were
    reps: int
    ops: int  # posts per round, each gitbus side and the floor
    agentmail_ops: int  # sends per round
    rates: dict[str, Series]  # side -> ops/s
    agentmail: str  # Agent Mail's version, or why it is not in the run
    load: tuple[float, float]  # 1-minute load average before and after


def _bus(d: Path) -> Bus:
    """A repository where the recipient has joined, and the sender's bus on it."""
    repo = init_repository(d)
    Bus(repo, agent_name(RECIPIENT), SystemClock()).join(RECIPIENT)
    bus = Bus(repo, agent_name(AGENT), SystemClock())
    bus.join(AGENT)
    return bus


def sides(work: Path) -> dict[str, Op]:
    discoverer, asker = _bus(work / "posts-discover"), _bus(work / "posts-ask")
    init_repository(work / "posts-floor")
    return {
        DISCOVER: lambda i: discoverer.discover(f"finding {i}: the handler retries {i % 9} times"),
        ASK: lambda i: asker.ask(f"finding {i}: does the handler retry {i % 9} times?", to=RECIPIENT),
        FLOOR: floor.PostFloor(work / "posts-floor", AGENT).post,
    }


def posts_bench(
    work: Path,
    fs: str,
    reps: int,
    ops: int,
    send: Callable[[int], float] | None = None,
    note: str = "not in this run",
    agentmail_ops: int = 10,
) -> PostsBench:
    """`send(n)` makes `n` Agent Mail sends to one recipient and answers calls/s; `note` says which
    Agent Mail that is, or why it is not in the run."""
    before = os.getloadavg()[0]
    outside = {AGENTMAIL: lambda: send(agentmail_ops)} if send is not None else {}
    rates = interleaved_beside(sides(work), outside, reps, ops)
    return PostsBench(fs, reps, ops, agentmail_ops, rates, note, (before, os.getloadavg()[0]))


# -- the report's lines ------------------------------------------------------------------------------


def _ms(rate: Series) -> float:
    return 1000 / rate.median


def _per_op(s: Series) -> str:
    """ops/s as time per op: median, then the range (fastest – slowest)."""
    return f"{1000 / s.median:,.2f} ms | {1000 / s.hi:,.2f} – {1000 / s.lo:,.2f}"


def goal_rows(results: list[PostsBench]) -> list[str]:
    rows = []
    for b in results:
        am = b.rates.get(AGENTMAIL)
        if am is None:
            continue
        for side, what in (
            (DISCOVER, "a post in process (`Bus.discover`)"),
            (ASK, "a message to one agent in process (`Bus.ask`)"),
        ):
            x = _ms(am) / _ms(b.rates[side])
            rows.append(
                f"| {what}, {b.fs} ≥ {GOAL:.0f}× Agent Mail `send_message` (one recipient) | {x:.0f}× "
                f"| {verdict(x >= GOAL)} |"
            )
    return rows


def section(results: list[PostsBench], number: int) -> list[str]:
    b = results[0]
    am = any(AGENTMAIL in r.rates for r in results)
    loads = "; ".join(f"{r.fs}: {r.load[0]:.2f} – {r.load[1]:.2f}" for r in results)
    out = [
        f"## {number}. A post beside Agent Mail's `send_message` (in process)",
        "",
        "`Bus.discover` (what an agent posting a finding does) and `Bus.ask` to one agent, each on a "
        "long-lived repository where the recipient has joined, beside the pygit2 floor on a fresh one"
        + (
            f" and Agent Mail `send_message` to one recipient ({b.agentmail}; one server, one caller, "
            "through its MCP tool in process as in § 8, its store on the same file system)"
            if am
            else f" (Agent Mail: {b.agentmail})"
        )
        + f", in the same rounds, the order alternating ({b.reps} × {b.ops} posts per side"
        + (f", Agent Mail {b.reps} × {b.agentmail_ops} sends" if am else "")
        + f"; load average at the start and the end, {loads}; `bench/posts.py`).",
        "",
        "| file system | side | per post | fastest – slowest |" + (" Agent Mail ÷ side |" if am else ""),
        "|---|---|---:|---|" + ("---:|" if am else ""),
    ]
    for r in results:
        mail = r.rates.get(AGENTMAIL)
        out += [
            f"| {r.fs} | {name} | {_per_op(s)} |" + (f" {_ms(mail) / _ms(s):,.0f}× |" if mail else "")
            for name, s in r.rates.items()
            if name != AGENTMAIL
        ]
        out += [f"| {r.fs} | {AGENTMAIL} | {_per_op(mail)} | 1× |"] if mail else []
    out.append("")
    if am:
        out += ["Goals (issue 16):", "", "| goal | measured | |", "|---|---:|---|", *goal_rows(results), ""]
    out += [
        "gitbus has no `send`: a finding is a discovery to everyone, and a message to one agent is a "
        "question (or a request) with its recipient. `Bus.ask` checks the recipient is on the bus "
        "(its chain's ref and last message read), as Agent Mail checks its recipient is registered; "
        "both then write one commit on the sender's chain and move its ref. An Agent Mail send writes "
        "its rows in SQLite and commits the message's files to its git archive.",
        "",
    ]
    return out


def _measure(work: Path, fs: str, install: agentmail.Install, reps: int, ops: int, am_ops: int) -> PostsBench:
    """One file system: an Agent Mail server with its store in `work`, and the sides beside it."""
    servers = None
    note = f"not installed here: {install.error.splitlines()[-1:] or install.tried}"
    if install.python is not None:
        helpers.log(f"{fs}: starting one Agent Mail server")
        servers = agentmail.Servers(install.python, work / "agentmail" / "store", 1)
        note = f"PyPI `{agentmail.PACKAGE}` {install.version}"
    try:
        helpers.log(f"{fs}: {reps} × {ops} posts per side, Agent Mail {reps} × {am_ops}")
        send = (lambda n: servers.run("send", 1, n)) if servers is not None else None
        return posts_bench(work, fs, reps, ops, send, note, am_ops)
    finally:
        if servers is not None:
            servers.close()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reps", type=int, default=11)
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--agentmail-ops", type=int, default=10)
    args = parser.parse_args(argv)
    helpers.gitbus_exe()  # the library runs in this process: gitbus must be installed beside it
    install = agentmail.ensure_installed()
    results = []
    ram = helpers.tmpfs()
    with helpers.workdir() as work, helpers.workdir(ram) as ramwork:
        helpers.hermetic_env(work / "home")
        places = {f"{work.parent} ({helpers.fstype(work)})": work} | (
            {f"{ram} (tmpfs)": ramwork} if ram else {}
        )
        for fs, where in places.items():
            results.append(_measure(where, fs, install, args.reps, args.ops, args.agentmail_ops))
    print("\n".join([*goal_rows(results), "", *section(results, 17)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
