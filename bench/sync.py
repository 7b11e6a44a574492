"""Sharing a big bus through a remote: 10,000 messages posted on clone A reach clone B.

Clone A's bus is written with `git fast-import` as commits byte-identical to the library's (synth.py),
left as loose objects the way posting leaves them. Then, timed as a person would run it, whole
processes: `gitbus sync origin` in A (one atomic, leased push of every chain to a bare repository
reached over file://, so git's pack protocol runs but no network), and `gitbus sync origin` in B (a
fetch into the tracking namespace and a fast-forward of every chain). The sum is the end-to-end figure.
Afterwards B must read A's newest messages back, and one more message makes the same trip (the cost of
a sync once the clones are level). Beside it, in the same repetition and order alternating, plain git
moves the same refs and objects from a copy of A as it was built through a second bare repository to a
second clone: `git push` of `refs/bus/*`, then `git fetch` of them in the clone (issue 16: gitbus's trip
≤ 1.2× that).
Run alone, `python bench/sync.py [--quick]` prints the figures.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import helpers
import synth
from measure import Series, verdict

from gitbus.bus import Bus
from gitbus.clock import SystemClock
from gitbus.git import Repository
from gitbus.ids import agent_name

SYNC_GOAL = 5.0  # seconds, A → remote → B, for GOAL_MESSAGES messages
GOAL_MESSAGES = 10_000
GIT_GOAL = 1.2  # issue 16: the trip ≤ 1.2× plain `git push` + `git fetch` of the same refs


@dataclass(frozen=True)
class SyncBench:
    messages: int
    agents: int
    reps: int
    built: Series  # seconds to write A's bus with fast-import (not part of the trip)
    push: Series  # `gitbus sync origin` in A: everything goes up
    pull: Series  # `gitbus sync origin` in B: everything comes down
    total: Series  # the two, end to end
    objects: int  # loose objects in A before the push
    one_push: Series  # then one new message: `gitbus sync` in A
    one_pull: Series  # and in B
    git_push: Series  # plain `git push` of refs/bus/* from A to a second bare repository
    git_fetch: Series  # plain `git fetch` of them into a clone of that one
    git_total: Series


def _git(cwd: Path, env: Mapping[str, str], *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env=dict(env), capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode()


def _timed(argv: list[str], cwd: Path, env: Mapping[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=dict(env), capture_output=True, check=False)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.decode(errors='replace')}")
    return took, proc.stdout.decode()


def _bus_refs(cwd: Path, env: Mapping[str, str]) -> str:
    return _git(cwd, env, "for-each-ref", "--format=%(refname) %(objectname)", "refs/bus/")


@dataclass(frozen=True)
class _Trip:
    built: float
    objects: int
    push: float
    pull: float
    one_push: float
    one_pull: float
    git_push: float
    git_fetch: float


def _plain_git(work: Path, a: Path, env: Mapping[str, str]) -> tuple[float, float]:
    """The same refs and objects moved by plain git: `a` (a copy of A as it was built, loose objects
    and all: gitbus's sync may leave A packed, by the automatic gc its fetch starts) → a second bare
    repository → its clone."""
    bare, c = work / "plain.git", work / "c"
    _git(work, env, "init", "-q", "--bare", "-b", "main", str(bare))
    _git(a, env, "push", "-q", bare.as_uri(), "main")
    _git(work, env, "clone", "-q", bare.as_uri(), str(c))
    push, _ = _timed(["git", "push", "-q", bare.as_uri(), "refs/bus/*:refs/bus/*"], a, env)
    fetch, _ = _timed(["git", "fetch", "-q", "origin", "refs/bus/*:refs/remotes/origin/bus/*"], c, env)
    theirs = _git(c, env, "for-each-ref", "--format=%(refname) %(objectname)", "refs/remotes/origin/bus/")
    if theirs.replace("refs/remotes/origin/bus/", "refs/bus/") != _bus_refs(a, env):
        raise AssertionError("plain git did not bring A's bus refs to its clone")
    return push, fetch


def _trip(work: Path, env: Mapping[str, str], gitbus: str, n: int, agents: int, git_first: bool) -> _Trip:
    """One fresh A, bare remote and B; the big sync, checked; then one more message. Plain git's
    trip of the same refs runs before or after gitbus's (`git_first`), from the same A."""
    bare, a, b = work / "remote.git", work / "a", work / "b"
    t0 = time.perf_counter()
    msgs = synth.messages(n, agents, end_ms=time.time_ns() // 1_000_000 - 60_000)
    synth.build(a, synth.fast_import_stream(msgs), env, layout="loose")
    built = time.perf_counter() - t0
    _git(work, env, "init", "-q", "--bare", "-b", "main", str(bare))
    _git(a, env, "remote", "add", "origin", bare.as_uri())
    _git(a, env, "push", "-q", "origin", "main")
    _git(work, env, "clone", "-q", bare.as_uri(), str(b))
    objects = int(_git(a, env, "count-objects").split()[0])
    a_copy = work / "a-copy"
    shutil.copytree(a, a_copy, symlinks=True)

    if git_first:
        git_push, git_fetch = _plain_git(work, a_copy, env)
    push, out = _timed([gitbus, "sync", "origin", "--json"], a, env)
    if len(json.loads(out)["pushed"]) != agents:
        raise AssertionError(f"gitbus sync in A pushed {out}")
    pull, out = _timed([gitbus, "sync", "origin", "--json"], b, env)
    if len(json.loads(out)["updated"]) != agents:
        raise AssertionError(f"gitbus sync in B updated {out}")
    if _bus_refs(a, env) != _bus_refs(b, env):
        raise AssertionError("after syncing, B's bus refs differ from A's")
    _, out = _timed([gitbus, "log", "-n", "5", "--json"], b, env)
    newest = [m["id"] for m in json.loads(out)]
    if newest != [m.id for m in reversed(msgs[-5:])]:
        raise AssertionError(f"B reads {newest} as its newest messages, not A's")
    if not git_first:
        git_push, git_fetch = _plain_git(work, a_copy, env)

    Bus(Repository.open(a), agent_name(msgs[0].sender), SystemClock()).discover("one more")
    one_push, _ = _timed([gitbus, "sync", "origin"], a, env)
    one_pull, _ = _timed([gitbus, "sync", "origin"], b, env)
    if _bus_refs(a, env) != _bus_refs(b, env):
        raise AssertionError("the one more message did not reach B")
    return _Trip(built, objects, push, pull, one_push, one_pull, git_push, git_fetch)


def sync_bench(
    work: Path, env: Mapping[str, str], gitbus: str, messages: int, agents: int, reps: int
) -> SyncBench:
    trips = []
    for rep in range(reps):
        d = work / f"sync-{rep}"
        d.mkdir()
        trips.append(_trip(d, env, gitbus, messages, agents, git_first=rep % 2 == 1))
        shutil.rmtree(d)

    def series(field: str) -> Series:
        return Series(tuple(float(getattr(t, field)) for t in trips))

    return SyncBench(
        messages=messages,
        agents=agents,
        reps=reps,
        built=series("built"),
        push=series("push"),
        pull=series("pull"),
        total=Series(tuple(t.push + t.pull for t in trips)),
        objects=trips[0].objects,
        one_push=series("one_push"),
        one_pull=series("one_pull"),
        git_push=series("git_push"),
        git_fetch=series("git_fetch"),
        git_total=Series(tuple(t.git_push + t.git_fetch for t in trips)),
    )


# -- the report's lines ------------------------------------------------------------------------------


def _s(s: Series) -> str:
    return f"{s.median:,.2f} s | {s.lo:,.2f} – {s.hi:,.2f}"


def _ms(s: Series) -> str:
    return f"{s.median * 1000:,.0f} ms | {s.lo * 1000:,.0f} – {s.hi * 1000:,.0f}"


def goal_rows(b: SyncBench) -> list[str]:
    x = b.total.median
    ok = verdict(x <= SYNC_GOAL)
    vs = b.total.median / b.git_total.median
    return [
        f"| {b.messages:,} messages from clone A through a bare remote to clone B (`gitbus sync` in A, "
        f"then in B) ≤ {SYNC_GOAL:g} s | {x:.2f} s | {ok} |",
        f"| the same {b.messages:,}-message trip ≤ {GIT_GOAL:g}× plain `git push` + `git fetch` of the "
        f"same refs, measured beside it (issue 16) | {vs:.2f}× | {verdict(vs <= GIT_GOAL)} |",
    ]


def section(b: SyncBench, number: int) -> list[str]:
    return [
        f"## {number}. Sharing through a remote",
        "",
        f"{b.messages:,} messages over {b.agents} agent chains are written on clone A as commits "
        "byte-identical to the library's (`git fast-import`, then exploded into "
        f"{b.objects:,} loose objects as posting leaves them). A bare repository is the remote, reached "
        "over `file://` (git's pack protocol over pipes: the git work of a real remote, without network "
        "latency); clone B is a `git clone` of it, which brings no bus. Timed, as whole processes: "
        "`gitbus sync origin` in A (one atomic push of every chain, each with a lease), then "
        "`gitbus sync origin` in B (a fetch into `refs/gitbus/fetched/origin/` and a fast-forward of every "
        "chain). Then B must list A's newest messages with `gitbus log`, and one more message, posted on "
        f"A, makes the same trip. Fresh repositories for each of {b.reps} repetitions "
        f"(`bench/sync.py`).",
        "",
        "| step | median | min – max |",
        "|---|---:|---|",
        f"| `gitbus sync` in A: {b.messages:,} messages up | {_s(b.push)} |",
        f"| `gitbus sync` in B: {b.messages:,} messages down | {_s(b.pull)} |",
        f"| **end to end** (goal ≤ {SYNC_GOAL:g} s) | **{b.total.median:,.2f} s** | "
        f"{b.total.lo:,.2f} – {b.total.hi:,.2f} |",
        f"| then one new message: `gitbus sync` in A | {_ms(b.one_push)} |",
        f"| and `gitbus sync` in B | {_ms(b.one_pull)} |",
        f"| (not timed in the trip: writing A's bus with fast-import) | {_s(b.built)} |",
        f"| plain `git push` of `refs/bus/*` from A to a second bare repository | {_s(b.git_push)} |",
        f"| plain `git fetch` of them into a clone of it | {_s(b.git_fetch)} |",
        f"| **plain git, end to end** | **{b.git_total.median:,.2f} s** | "
        f"{b.git_total.lo:,.2f} – {b.git_total.hi:,.2f} |",
        f"| **gitbus ÷ plain git** (goal ≤ {GIT_GOAL:g}×) | **{b.total.median / b.git_total.median:.2f}×** | "
        f"up {b.push.median / b.git_push.median:.2f}×, down {b.pull.median / b.git_fetch.median:.2f}× |",
        "",
        "A sync once the clones are level costs a `git fetch` and, when there is news, a `git push`: "
        "two git processes besides gitbus's own start-up (section 4). Over a real network add the "
        "round trips of those two connections.",
        "",
    ]


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    with helpers.workdir() as work:
        env = helpers.hermetic_env(work / "home")
        b = sync_bench(work, env, helpers.gitbus_exe(), GOAL_MESSAGES, 8, 2 if quick else 5)
    print("\n".join([*goal_rows(b), "", *section(b, 6)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
