"""gitbus benchmarks: library throughput against a raw pygit2 floor, CLI wall times, live delivery, and
a real Claude Code turn with and without gitbus (realclient.py: skipped, and said so, without the client).

Run from the repository root in an environment where gitbus is installed (`pip install -e .`):

    python bench/run.py           # full: a 100,000-message bus, a few minutes
    python bench/run.py --quick   # a 10,000-message bus, about two minutes

Everything is measured side by side in one run (see measure.py), then written to
docs/benchmarks.md. Repositories live in temporary directories removed afterwards. Benchmarks never
run in the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import agentmail
import agentrefs
import clones
import crowd
import flood
import floor
import history
import live
import manyclaims
import posts
import pygit2
import realclient
import report
import search
import startup
import sync
import synth
import tui
from helpers import DOC, fstype, gitbus_exe, hermetic_env, log, out, tmpfs, workdir
from measure import Command, Op, Series, cli_times, interleaved, interleaved_on, profile, timed_calls

from gitbus.bus import Bus
from gitbus.clock import SystemClock
from gitbus.git import Repository, init_repository
from gitbus.ids import agent_name

AGENT = "bench"


@dataclass(frozen=True)
class Config:
    quick: bool
    reps: int  # in-process repetitions per side
    post_ops: int  # posts per repetition
    claim_ops: int  # claims per repetition (fresh paths: the ledger grows from 0 to this many claims)
    scale_reps: int
    scale_ops: int
    cli_reps: int
    big: int  # messages in the big bus
    small: int = 100
    agents: int = 8
    profile_ops: int = 300
    peers: int = 63  # other agents on the bus in the scaling scenarios
    tags: int = 1000  # unrelated refs in the scaling scenarios
    hook_reps: int = 60  # runs of each command in the hook comparison
    live_posts: int = 200  # posts timed through the watcher, per scenario
    live_worktrees: tuple[int, ...] = (4, 16, 64)  # 64: issue 16's crowd
    sync_reps: int = 5  # fresh A → remote → B trips of sync.GOAL_MESSAGES messages
    crowd_reps: int = 5  # repetitions of 1 and of 8 processes at once (crowd.py)
    crowd_ops: int = 800  # ops per run, split over the processes
    agentmail_ops: int = 40  # the same for Agent Mail, whose calls take tens of ms
    claims: tuple[int, int] = (10, 10_000)  # live claims in the two repositories of manyclaims.py
    claims_reps: int = 5
    claims_ops: int = 50
    posts_reps: int = 7  # rounds of a post beside Agent Mail's send (posts.py)
    posts_ops: int = 200  # posts per round, each gitbus side and the floor
    posts_agentmail_ops: int = 10  # Agent Mail sends per round
    read_reps: int = 5  # whole-history reads (history.py)
    realclient_runs: int = realclient.FULL_RUNS  # `claude -p` turns per arm, with and without gitbus
    startup_reps: int = 20  # rounds of the everyday commands in a regular install (startup.py)
    flood_reps: int = 7  # runs of each command with a flood unread (flood.py)
    clones_seconds: float = 20.0  # each scenario's claiming time, 1 and 8 clones (clones.py)


QUICK = Config(quick=True, reps=5, post_ops=200, claim_ops=100, scale_reps=3, scale_ops=60, cli_reps=5,
               big=10_000, hook_reps=20, live_posts=60, sync_reps=2, crowd_reps=2, crowd_ops=160,
               agentmail_ops=16, claims_reps=3, claims_ops=20, posts_reps=3, posts_ops=50,
               posts_agentmail_ops=5, read_reps=3,
               realclient_runs=realclient.QUICK_RUNS, startup_reps=8, clones_seconds=5.0)
FULL = Config(quick=False, reps=11, post_ops=1000, claim_ops=300, scale_reps=5, scale_ops=200, cli_reps=11,
              big=100_000)


_LOAD_AT_START = os.getloadavg()[0]  # other work on the machine shows in every absolute figure


# -- the sides --------------------------------------------------------------------------------------


def _discover(bus: Bus) -> Op:
    return lambda i: bus.discover(f"message {i}")


def gitbus_post(d: Path) -> Op:
    return _discover(Bus(init_repository(d), agent_name(AGENT), SystemClock()))


def floor_post(d: Path) -> Op:
    init_repository(d)
    return floor.PostFloor(d, AGENT).post


def gitbus_claim(d: Path) -> Op:
    bus = Bus(init_repository(d), agent_name(AGENT), SystemClock())
    return lambda i: bus.claim([f"pkg{i}/"])


def floor_claim(d: Path) -> Op:
    init_repository(d)
    return floor.ClaimFloor(d, AGENT).claim


POSTS = {"gitbus": gitbus_post, "floor": floor_post}
CLAIMS = {"gitbus": gitbus_claim, "floor": floor_claim}


def _git(cwd: Path, env: Mapping[str, str], *args: str, stdin: str | None = None) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=dict(env), input=stdin, text=True, capture_output=True,
                   check=True)


def crowded_repo(d: Path, peers: int, tags: int, packed: bool, env: Mapping[str, str]) -> None:
    """A repository whose bus has `peers` other agents, plus `tags` unrelated refs (loose or packed)."""
    repo = init_repository(d)
    for k in range(peers):
        Bus(repo, agent_name(f"peer-{k}"), SystemClock()).discover(f"peer {k} is here")
    if tags:
        head = repo.git("rev-parse", "HEAD").strip()
        _git(d, env, "update-ref", "--stdin", stdin="".join(f"create refs/tags/t{i} {head}\n"
                                                           for i in range(tags)))
    if packed:
        _git(d, env, "pack-refs", "--all")


def scaling(cfg: Config, work: Path, env: Mapping[str, str]) -> dict[str, dict[str, Series]]:
    """Post throughput as the bus gains agents and the repository gains unrelated refs."""
    scenarios = [
        ("1 agent", 0, 0, False),
        (f"{cfg.peers + 1} agents", cfg.peers, 0, False),
        (f"{cfg.peers + 1} agents + {cfg.tags:,} loose tags", cfg.peers, cfg.tags, False),
        (f"{cfg.peers + 1} agents + {cfg.tags:,} tags, all refs packed", cfg.peers, cfg.tags, True),
    ]
    out: dict[str, dict[str, Series]] = {}
    for label, peers, tags, packed in scenarios:
        log(f"  {label}")
        g, f = work / "scale-gitbus", work / "scale-floor"
        crowded_repo(g, peers, tags, packed, env)
        crowded_repo(f, peers, tags, packed, env)
        bus = Bus(Repository.open(g), agent_name(AGENT), SystemClock())
        sides: dict[str, Op] = {"gitbus": _discover(bus), "floor": floor.PostFloor(f, AGENT).post}
        out[label] = interleaved_on(sides, cfg.scale_reps, cfg.scale_ops)
        shutil.rmtree(g)
        shutil.rmtree(f)
    return out


# -- buses for `gitbus log` -------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    root: Path
    messages: int
    layout: str
    seconds: float
    newest: tuple[str, ...]


def build_bus(root: Path, n: int, agents: int, env: Mapping[str, str], layout: str) -> Built:
    t0 = time.perf_counter()
    msgs = synth.messages(n, agents, end_ms=time.time_ns() // 1_000_000 - 60_000)
    marks = synth.build(root, synth.fast_import_stream(msgs), env, layout=layout)
    if layout == "loose":
        scratch = root.parent / f"{root.name}-identity"
        synth.check_identical(scratch, msgs, marks, agents)
        shutil.rmtree(scratch)
    return Built(root, n, layout, time.perf_counter() - t0, tuple(m.id for m in reversed(msgs[-5:])))


def _log20(root: Path) -> Callable[[], object]:
    return lambda: Bus.open(root, "reader").log(20)


def verify(gitbus: str, built: Built, env: Mapping[str, str]) -> None:
    """`gitbus log -n 5 --json` must read back the five newest synthetic messages, newest first."""
    out = subprocess.run([gitbus, "log", "-n", "5", "--json"], cwd=built.root, env=dict(env),
                         capture_output=True, check=True, text=True).stdout
    ids = tuple(m["id"] for m in json.loads(out))
    if ids != built.newest:
        raise AssertionError(f"gitbus log read {ids} from {built.root}, expected {built.newest}")


# -- machine ----------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    head = out("git", "rev-parse", "--short", "HEAD")
    dirty = out("git", "status", "--porcelain", "--", "gitbus")
    dirty = " + uncommitted changes in gitbus/" if dirty else ""
    return {
        "nproc": f"{usable} ({cpu})",
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "pygit2 / libgit2": f"{version('pygit2')} / {pygit2.LIBGIT2_VERSION}",
        "git": out("git", "--version"),
        "gitbus": f"{version('gitbus')} at {head}{dirty}",
        "load average (1 min)": f"{_LOAD_AT_START:.2f} at the start, {os.getloadavg()[0]:.2f} at the end",
    }


# -- main -------------------------------------------------------------------------------------------


def with_agentmail(work: Path, workers: int) -> tuple[agentmail.Outcome, agentmail.Servers | None]:
    """Agent Mail installed (or the reason it is not) and `workers` servers started on one store."""
    log("agent mail: installing into bench/.venv-agentmail (once)")
    outcome = agentmail.Outcome(agentmail.ensure_installed())
    if outcome.install.python is None:
        log(f"agent mail: could not be installed: {outcome.install.error.splitlines()[-1:]}")
        return outcome, None
    t0 = time.perf_counter()
    try:
        servers = agentmail.Servers(outcome.install.python, work / "agentmail" / "store", workers)
    except (RuntimeError, OSError) as e:
        outcome.errors.append(f"starting {workers} servers: {e}")
        return outcome, None
    outcome.started = time.perf_counter() - t0
    return outcome, servers


def agentmail_sides(
    outcome: agentmail.Outcome, servers: agentmail.Servers
) -> dict[tuple[str, str], crowd.Outside]:
    def side(what: str) -> crowd.Outside:
        def run(k: int, ops: int) -> float:
            if outcome.errors:
                return float("nan")
            try:
                return servers.run(what, k, ops)
            except (RuntimeError, OSError, ValueError) as e:
                outcome.errors.append(f"{what}, {k} at once: {e}")
                return float("nan")

        return run

    return {("post", "Agent Mail"): side("send"), ("claim", "Agent Mail"): side("reserve")}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Benchmark gitbus and write docs/benchmarks.md.")
    ap.add_argument("--quick", action="store_true", help="a 10,000-message bus and fewer repetitions")
    ap.add_argument("--out", type=Path, default=DOC, help="where to write the report")
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    started = time.perf_counter()
    gitbus = gitbus_exe()
    ram = tmpfs()
    with workdir() as work, workdir(ram) as ramwork:
        env = hermetic_env(work / "home")
        disk = f"{tempfile.gettempdir()} ({fstype(work)})"
        fs = {disk: work} | ({f"{ram} (tmpfs)": ramwork} if ram else {})
        post: dict[str, dict[str, Series]] = {}
        claim: dict[str, dict[str, Series]] = {}
        for name, where in fs.items():
            log(f"posts on {name}: {cfg.reps} x {cfg.post_ops} per side")
            post[name] = interleaved(POSTS, cfg.reps, cfg.post_ops, where)
            log(f"claims on {name}: {cfg.reps} x {cfg.claim_ops} per side")
            claim[name] = interleaved(CLAIMS, cfg.reps, cfg.claim_ops, where)
        prof_dir = ramwork if ram else work  # CPU-bound views: least noise on a RAM file system
        prof_fs = next(k for k, v in fs.items() if v == prof_dir)
        log("profiles")
        profiles = {
            "post": (profile(gitbus_post, prof_dir / "pg", cfg.profile_ops),
                     profile(floor_post, prof_dir / "pf", cfg.profile_ops)),
            "claim": (profile(gitbus_claim, prof_dir / "cg", cfg.profile_ops),
                      profile(floor_claim, prof_dir / "cf", cfg.profile_ops)),
        }
        outcome, servers = with_agentmail(work, cfg.agents)
        log(f"crowd: 1 and {cfg.agents} processes posting and claiming at once, {cfg.crowd_reps} repetitions")
        try:
            outside = agentmail_sides(outcome, servers) if servers else {}
            crowded = crowd.crowd_bench(work, env, cfg.crowd_reps, cfg.crowd_ops, cfg.agents, outside,
                                        cfg.agentmail_ops)
            if servers and not outcome.errors:
                log(f"agent mail: {cfg.agents} callers at once on one server")
                rate, error = servers.gather("send", cfg.agents, 2)
                outcome.probe = f"{rate:,.1f} calls/s" if rate else f"failed: {error}"
            log("start-up: `pip install` of this checkout into a fresh venv (regular, not editable)")
            regular = startup.regular_install(work / "startup")
            log(f"claims: {cfg.claims[0]:,} vs {cfg.claims[1]:,} live claims, and Agent Mail reserving")
            am = servers if servers and not outcome.errors else None
            many = manyclaims.claims_bench(
                work, env, str(regular.with_name("gitbus")), cfg.claims, cfg.claims_reps, cfg.claims_ops,
                cfg.hook_reps, "`pip install .` of this checkout into a fresh venv (not editable)",
                (lambda n: am.run("reserve", 1, n)) if am else None,
                f"PyPI `{agentmail.PACKAGE}` {outcome.install.version}" if am else "not in this run")
            log(f"posts beside Agent Mail's send: {cfg.posts_reps} x {cfg.posts_ops} per side")
            posted = posts.posts_bench(
                work, disk, cfg.posts_reps, cfg.posts_ops, (lambda n: am.run("send", 1, n)) if am else None,
                f"PyPI `{agentmail.PACKAGE}` {outcome.install.version}" if am else "not in this run",
                cfg.posts_agentmail_ops)
        finally:
            if servers:
                servers.close()

        log("post scaling")
        scale = scaling(cfg, prof_dir, env)
        refs = [agentrefs.run(where / "agentrefs", name, env, *agentrefs.sizes(cfg.quick))
                for name, where in fs.items()]

        log(f"buses of {cfg.small} and {cfg.big:,} messages")
        builds = {
            "small": build_bus(work / "small", cfg.small, cfg.agents, env, "loose"),
            "big loose": build_bus(work / "big-loose", cfg.big, cfg.agents, env, "loose"),
            "big gc": build_bus(work / "big-gc", cfg.big, cfg.agents, env, "gc"),
        }
        for b in builds.values():
            verify(gitbus, b, env)
            log(f"  {b.root.name}: {b.messages:,} messages built in {b.seconds:.1f} s; gitbus log reads them")

        log(f"cli: {cfg.cli_reps} repetitions")
        py = sys.executable
        log20 = (gitbus, "log", "-n", "20")
        cmds = [
            Command("python -c pass", (py, "-c", "pass"), work),
            Command("import pygit2", (py, "-c", "import pygit2"), work),
            Command("import gitbus.bus", (py, "-c", "import gitbus.bus"), work),
            Command("gitbus --help", (gitbus, "--help"), work),
            *[Command(key, log20, b.root) for key, b in builds.items()],
        ]
        cli = cli_times(cmds, cfg.cli_reps, env)
        library = timed_calls({key: _log20(b.root) for key, b in builds.items()}, cfg.cli_reps * 3)
        log(f"start-up: the everyday commands in that install, {cfg.startup_reps} rounds")
        startups = startup.startup_bench(work / "startup", env, regular, cfg.startup_reps)

        live_env = {k: v for k, v in env.items() if k != "GITBUS_AGENT"}  # agents come from worktrees here
        log(f"live: the hook's nothing-new path, {cfg.hook_reps} repetitions")
        hooks = live.hook_bench(work, live_env, gitbus, cfg.hook_reps)
        propagation = []
        for n in cfg.live_worktrees:
            log(f"live: {cfg.live_posts} posts through `gitbus watch`, {n} worktrees")
            propagation.append(live.propagation(work, live_env, gitbus, n, cfg.live_posts))

        log(f"sync: {sync.GOAL_MESSAGES:,} messages from clone A through a remote to clone B, "
            f"{cfg.sync_reps} repetitions")
        shared = sync.sync_bench(work, env, gitbus, sync.GOAL_MESSAGES, cfg.agents, cfg.sync_reps)

        log(f"search: `gitbus search` and `gitbus log --grep` on the {cfg.big:,}-message buses")
        searched = search.search_bench({"loose": builds["big loose"].root, "gc": builds["big gc"].root},
                                       env, gitbus, cfg.big, cfg.agents, 3 if cfg.quick else 5)

        log(f"whole history: {cfg.big:,} messages, library, CLI and the shared file")
        msgs = synth.messages(cfg.big, cfg.agents, end_ms=time.time_ns() // 1_000_000)
        jsonl = work / "shared-file" / "messages.jsonl"
        history.write_jsonl(jsonl, msgs)
        reads = history.read_bench(
            {f"{b.messages:,} messages, {'loose objects' if b.layout == 'loose' else 'after git gc'}":
             (b.root, b.messages) for b in builds.values()},
            jsonl, cfg.big, env, gitbus, cfg.read_reps, max(2, cfg.read_reps - 2))
        log("bytes per message, before and after git gc")
        sizes = history.size_bench(builds["big loose"].root, msgs, jsonl, env)
        log("clones: 1 and 8 clones claiming through git daemon, loopback, 80 ms RTT and one path")
        cloned = clones.clones_bench(work, env, 8, cfg.clones_seconds)
        log(f"flood: a hook call and `gitbus inbox` with {cfg.big:,} unread")
        flooded = flood.flood_bench(work, cfg.big, cfg.flood_reps, None)
        log("gitbus tui: first paint, an empty bus and 10,000 messages")
        tui_first = tui.tui_bench(work, env, 10_000, 3 if cfg.quick else 7)
        log(f"real client: a {realclient.STEPS}-step `claude -p` turn with and without gitbus, "
            f"{cfg.realclient_runs} runs per arm")
        real = realclient.realclient_bench(work, env, cfg.realclient_runs, log=log)
        if real.skipped:
            log(f"real client: not measured: {real.skipped}")

    command = f"python bench/run.py{' --quick' if cfg.quick else ''}"
    text = report.render(report.Results(
        quick=cfg.quick, machine=machine(), command=command, seconds=time.perf_counter() - started,
        reps=cfg.reps, post_ops=cfg.post_ops, claim_ops=cfg.claim_ops, profile_ops=cfg.profile_ops,
        profile_fs=prof_fs,
        scale_reps=cfg.scale_reps, scale_ops=cfg.scale_ops, cli_reps=cfg.cli_reps, agents=cfg.agents,
        post=post, claim=claim, profiles=profiles, scale=scale,
        builds={k: report.BusInfo(b.messages, b.layout, b.seconds) for k, b in builds.items()},
        cli=cli, library=library, hooks=hooks, propagation=propagation, shared=shared,
        searched=searched, crowd=crowded, agentmail=outcome, many=many, reads=reads, sizes=sizes,
        tui=tui_first, realclient=real, startup=startups, flood=flooded, refs=refs, clones=cloned,
        posts=[posted],
    ))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    log(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
