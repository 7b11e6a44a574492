"""A post in process beside MCP Agent Mail's `send_message`, in the same rounds (issue 16: "post stays
≥ 100×").

Agent Mail's `send_message` with one recipient is what its agents do to tell another agent something;
its driver (agentmail.py) sends a finding ("finding i", a one-line body) to one registered agent. gitbus
has no separate "send": what an agent posting a finding does is `Bus.discover` (to everyone), and a
message to one agent is `Bus.ask` (or `Bus.request`) with `to=`, which first checks that the recipient
is on the bus, as Agent Mail checks its recipient is registered. The goal row is `Bus.discover`, the
post issue 16 names; `Bus.ask` to one agent is measured beside it, the closer analogue in shape.

Both gitbus sides run on long-lived repositories on disk where the recipient has joined, the pygit2
floor (floor.py) on a fresh one, and Agent Mail's `send_message` on one server through its MCP tool in
process, its store on the same disk; every round runs every side once, the order alternating
(`measure.interleaved_beside`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import floor
from measure import Op, Series, interleaved_beside, verdict

from gitbus.bus import Bus
from gitbus.clock import SystemClock
from gitbus.git import init_repository
from gitbus.ids import agent_name

AGENT = "bluelake"  # Agent Mail's first sender and its recipient (agentmail.py), in the lowercase
RECIPIENT = "quietharbor"  # a gitbus agent name takes
GOAL = 100.0  # issue 16: a post in process ≥ 100× Agent Mail's send

DISCOVER = "`Bus.discover`: a finding, to everyone"
ASK = "`Bus.ask` to one agent (its recipient checked)"
FLOOR = "pygit2 floor (`bench/floor.py`), a fresh repository"
AGENTMAIL = "Agent Mail `send_message`, one recipient"


@dataclass(frozen=True)
class PostsBench:
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
    reps: int,
    ops: int,
    send: Callable[[int], float] | None = None,
    agentmail: str = "not in this run",
    agentmail_ops: int = 10,
) -> PostsBench:
    """`send(n)` makes `n` Agent Mail sends to one recipient and answers calls/s."""
    before = os.getloadavg()[0]
    outside = {AGENTMAIL: lambda: send(agentmail_ops)} if send is not None else {}
    rates = interleaved_beside(sides(work), outside, reps, ops)
    return PostsBench(reps, ops, agentmail_ops, rates, agentmail, (before, os.getloadavg()[0]))


# -- the report's lines ------------------------------------------------------------------------------


def _ms(rate: Series) -> float:
    return 1000 / rate.median


def _per_op(s: Series) -> str:
    """ops/s as time per op: median, then the range (fastest – slowest)."""
    return f"{1000 / s.median:,.2f} ms | {1000 / s.hi:,.2f} – {1000 / s.lo:,.2f}"


def goal_rows(b: PostsBench) -> list[str]:
    am = b.rates.get(AGENTMAIL)
    if am is None:
        return []
    rows = []
    for side, what in (
        (DISCOVER, "a post in process (`Bus.discover`)"),
        (ASK, "a message to one agent in process (`Bus.ask`)"),
    ):
        x = _ms(am) / _ms(b.rates[side])
        rows.append(
            f"| {what} ≥ {GOAL:.0f}× Agent Mail `send_message` (one recipient) | {x:.0f}× "
            f"| {verdict(x >= GOAL)} |"
        )
    return rows


def section(b: PostsBench, number: int) -> list[str]:
    am = b.rates.get(AGENTMAIL)
    out = [
        f"## {number}. A post beside Agent Mail's `send_message` (in process)",
        "",
        "`Bus.discover` (what an agent posting a finding does) and `Bus.ask` to one agent, each on a "
        "long-lived repository on disk where the recipient has joined, beside the pygit2 floor on a fresh "
        "one"
        + (
            f" and Agent Mail `send_message` to one recipient ({b.agentmail}; one server, one caller, "
            "through its MCP tool in process as in § 8, its store on the same disk)"
            if am
            else f" (Agent Mail: {b.agentmail})"
        )
        + f", in the same rounds, the order alternating ({b.reps} × {b.ops} posts per side"
        + (f", Agent Mail {b.reps} × {b.agentmail_ops} sends" if am else "")
        + f"; load average {b.load[0]:.2f} at the start, {b.load[1]:.2f} at the end; `bench/posts.py`).",
        "",
        "| side | per post | fastest – slowest |" + (" Agent Mail ÷ side |" if am else ""),
        "|---|---:|---|" + ("---:|" if am else ""),
        *(
            f"| {name} | {_per_op(r)} |" + (f" {_ms(am) / _ms(r):,.0f}× |" if am else "")
            for name, r in b.rates.items()
            if name != AGENTMAIL
        ),
        *([f"| {AGENTMAIL} | {_per_op(am)} | 1× |"] if am else []),
        "",
    ]
    if am:
        out += ["Goals (issue 16):", "", "| goal | measured | |", "|---|---:|---|", *goal_rows(b), ""]
    out += [
        "gitbus has no `send`: a finding is a discovery to everyone, and a message to one agent is a "
        "question (or a request) with its recipient. `Bus.ask` checks the recipient is on the bus "
        "(its chain's ref and last message read), as Agent Mail checks its recipient is registered; "
        "both then write one commit on the sender's chain and move its ref. An Agent Mail send writes "
        "its rows in SQLite and commits the message's files to its git archive.",
        "",
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    import agentmail
    from helpers import gitbus_exe, hermetic_env, log, workdir

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--agentmail-ops", type=int, default=10)
    args = parser.parse_args(argv)
    gitbus_exe()  # the library runs in this process: gitbus must be installed beside it
    with workdir() as work:
        hermetic_env(work / "home")
        install = agentmail.ensure_installed()
        servers = None
        note = f"not installed here: {install.error.splitlines()[-1:] or install.tried}"
        if install.python is not None:
            log("starting one Agent Mail server")
            servers = agentmail.Servers(install.python, work / "agentmail" / "store", 1)
            note = f"PyPI `{agentmail.PACKAGE}` {install.version}"
        try:
            log(f"measuring: {args.reps} × {args.ops} posts, Agent Mail {args.reps} × {args.agentmail_ops}")
            b = posts_bench(
                work,
                args.reps,
                args.ops,
                (lambda n: servers.run("send", 1, n)) if servers is not None else None,
                note,
                args.agentmail_ops,
            )
        finally:
            if servers is not None:
                servers.close()
    print("\n".join([*goal_rows(b), "", *section(b, 17)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
