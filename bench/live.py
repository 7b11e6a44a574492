"""Live delivery: what a hook call with nothing to say costs, and how fast a post reaches the context files.

(a) Claude Code runs `gitbus hook` on every prompt and tool call. Its common case is a PostToolUse
    call for a session whose cursor is already at the bus tips: nothing to say. That whole process is
    timed against a bare `python -c pass`, in both forms the installed hooks can take (`python -m
    gitbus hook` and the `gitbus` executable, see `gitbus.install_files.gitbus_command`), interleaved, and
    its imports are listed with `PYTHONPROFILEIMPORTTIME`.
(b) A `gitbus watch` process runs; another process posts through the library in one worktree; this
    process polls the context files of all the other worktrees until each shows the post. Latency is
    from the moment the post's compare-and-swap returned to the moment the first file, and every
    file, says it. One update is then timed and profiled in process to say where the time goes.

Run as `python live.py poster WORKTREE AGENT` it is the posting child of (b): one discovery per line
of stdin, and the monotonic times before and after each post on stdout. `python live.py steps ROOT
REPS` times one update, whole and step by step, in a fresh process, and prints them as JSON.
`python live.py propagation WORKTREES POSTS` runs (b) alone and prints its figures.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from measure import Command, Series, cli_times, timed_calls

from gitbus import agents, context, context_text, context_view, gitfiles, guard, watch, watch_daemon
from gitbus.bus import Bus
from gitbus.clock import SystemClock
from gitbus.git import Repository, init_repository
from gitbus.install_files import gitbus_command

SESSION = "bench-session"
TRAFFIC = 200  # messages on the bus before measuring: a bus in use, not an empty one
HOOK_GOAL = 2.0  # the nothing-new hook ≤ 2× `python -c pass`
P50_GOAL, P99_GOAL = 0.100, 0.300  # propagation latency, seconds
CROWD, CROWD_GOALS = 64, (0.050, 0.150)  # issue 16: at 64 worktrees, p50 ≤ 50 ms and p99 ≤ 150 ms


def goals(worktrees: int) -> tuple[float, float]:
    """The p50 and p99 goals of a post reaching every context file, in seconds."""
    return CROWD_GOALS if worktrees >= CROWD else (P50_GOAL, P99_GOAL)
POLL_SLEEP = 0.0002  # the reader's poll interval: the resolution of the latency figures
POST_TIMEOUT = 5.0
UPDATE_REPS = 40


# -- a repository in use --------------------------------------------------------------------------


def agent_of(i: int) -> str:
    return f"agent-{i}"


def scene(root: Path, worktrees: int, env: Mapping[str, str]) -> list[Path]:
    """A repository with `worktrees` worktrees (the main one first), an agent joined in each, and some
    traffic: discoveries, questions and one claim per agent. Returns the worktree roots.

    No discovery touches a claimed path, so a new one is listed first in every file (they rank
    discoveries on the reader's own paths first, and list 20)."""
    repo = init_repository(root)
    roots = [root]
    for i in range(1, worktrees):
        wt = root.parent / f"{root.name}-wt{i}"
        subprocess.run(
            ["git", "worktree", "add", "-q", "-b", wt.name, str(wt)],
            cwd=root,
            env=dict(env),
            check=True,
            capture_output=True,
        )
        roots.append(wt)
    buses = [Bus.open(wt, agent_of(i)) for i, wt in enumerate(roots)]
    for i, b in enumerate(buses):
        b.join(agent_of(i))
        b.claim([f"pkg{i}/"], reason=f"work of agent {i}")
    for k in range(TRAFFIC):
        b = buses[k % len(buses)]
        if k % 10 == 3:
            b.ask(f"question {k}: who owns pkg{k % 7}/?")
        else:
            b.discover(f"finding {k}: the handler in pkg{k % 7} retries {k % 5} times", [f"lib{k % 7}/m.py"])
    context.update_all(repo, buses[0].clock.now_ms())  # also adds /.gitbus/ to info/exclude
    return roots


# -- (a) the hook's nothing-new path ---------------------------------------------------------------


@dataclass(frozen=True)
class ImportRow:
    name: str
    cumulative_us: int


@dataclass(frozen=True)
class HookBench:
    reps: int
    worktrees: int
    times: dict[str, Series]  # label -> seconds; "python -c pass" is the baseline
    installed: str  # the command `gitbus install claude` writes here
    installed_label: str  # which measured form that is
    imports: list[ImportRow]  # top-level imports of the hook beyond those of `python -c pass`
    modules: list[str]  # every module the hook adds, in import order
    baseline_modules: int
    pre_modules: list[str]  # what the PreToolUse edit check imports beyond the nothing-new path


PASS, MODULE, EXE, PRE = "python -c pass", "python -m gitbus hook", "gitbus hook", "gitbus hook (PreToolUse)"
CODEX, GEMINI = "gitbus hook codex", "gitbus hook gemini"  # the same path, through gitbus.agentcli


def payload(cwd: Path, event: str, **extra: object) -> bytes:
    return json.dumps(
        {
            "session_id": SESSION,
            "transcript_path": "/dev/null",
            "cwd": str(cwd),
            "hook_event_name": event,
            **extra,
        }
    ).encode()


def _with(raw: bytes, extra: dict[str, str]) -> bytes:
    return json.dumps({**json.loads(raw), **extra}).encode()


def _run(
    argv: list[str], cwd: Path, env: Mapping[str, str], stdin: bytes
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=dict(env), input=stdin.decode(), capture_output=True, text=True, check=False
    )


def _imports(argv: list[str], cwd: Path, env: Mapping[str, str], stdin: bytes) -> list[tuple[int, str, int]]:
    """(depth, module, cumulative µs) for every import the process makes, in order."""
    r = _run(argv, cwd, {**env, "PYTHONPROFILEIMPORTTIME": "1"}, stdin)
    out: list[tuple[int, str, int]] = []
    for line in r.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)$", line)
        if m:
            out.append(((len(m.group(3)) - 1) // 2, m.group(4), int(m.group(2))))
    return out


def hook_bench(
    work: Path, env: Mapping[str, str], gitbus_exe: str, reps: int, worktrees: int = 4
) -> HookBench:
    roots = scene(work / "hooks", worktrees, env)
    wt = roots[1]
    py = sys.executable
    post = payload(
        wt, "PostToolUse", tool_name="Bash", tool_input={"command": "ls"}, tool_response={"stdout": ""}
    )
    edit = payload(
        wt,
        "PreToolUse",
        tool_name="Edit",
        tool_input={"file_path": str(wt / "README.md"), "old_string": "a", "new_string": "b"},
    )
    # The session starts (its cursor goes to the tips); the claims snapshot is taken by a first edit.
    start = _run([gitbus_exe, "hook"], wt, env, payload(wt, "SessionStart", source="startup"))
    assert start.returncode == 0 and "additionalContext" in start.stdout, start
    for argv, stdin in (
        ([py, "-m", "gitbus", "hook"], post),
        ([gitbus_exe, "hook"], post),
        ([gitbus_exe, "hook"], edit),
    ):
        r = _run(argv, wt, env, stdin)
        if (r.returncode, r.stdout, r.stderr) != (0, "", ""):
            raise AssertionError(f"{argv} is not on its nothing-to-say path: {r}")
    # Codex's PostToolUse and Gemini's AfterTool, each for a session of its own started first.
    after_tool = {}
    for client, event in ((CODEX, "PostToolUse"), (GEMINI, "AfterTool")):
        argv = [gitbus_exe, "hook", client.rsplit(" ", 1)[1]]
        own = {"session_id": f"{SESSION}-{client[-5:]}"}
        opened = _run(argv, wt, env, _with(payload(wt, "SessionStart", source="startup"), own))
        assert opened.returncode == 0 and "additionalContext" in opened.stdout, opened
        after_tool[client] = (argv, _with(payload(wt, event, tool_name="x", tool_input={}), own))
        r = _run(argv, wt, env, after_tool[client][1])
        if (r.returncode, r.stdout, r.stderr) != (0, "", ""):
            raise AssertionError(f"{argv} is not on its nothing-to-say path: {r}")
    sessions = Repository.open(wt).common_dir / "gitbus" / "sessions"
    before = {p: p.stat().st_mtime_ns for p in sessions.rglob("*.json")}

    cmds = [
        Command(PASS, (py, "-c", "pass"), wt, post),
        Command(MODULE, (py, "-m", "gitbus", "hook"), wt, post),
        Command(EXE, (gitbus_exe, "hook"), wt, post),
        Command(PRE, (gitbus_exe, "hook"), wt, edit),
        *(Command(label, tuple(argv), wt, stdin) for label, (argv, stdin) in after_tool.items()),
    ]
    times = cli_times(cmds, reps, env)
    after = {p: p.stat().st_mtime_ns for p in sessions.rglob("*.json")}
    if after != before:
        raise AssertionError("a nothing-new hook call wrote its session cursor")

    base = _imports([py, "-c", "pass"], wt, env, post)
    hook = _imports([py, "-m", "gitbus", "hook"], wt, env, post)
    known = {name for _, name, _ in base}
    added = [(depth, name, us) for depth, name, us in hook if name not in known]
    if any(name == "pygit2" or name.startswith("pygit2.") for _, name, _ in added):
        raise AssertionError("the hook's nothing-new path imported pygit2")
    pre = _imports([py, "-m", "gitbus", "hook"], wt, env, edit)
    hook_names = known | {name for _, name, _ in hook}
    pre_added = [name for _, name, _ in pre if name not in hook_names]
    if any(name == "pygit2" or name.startswith("pygit2.") for name in pre_added):
        raise AssertionError("the edit guard's common path imported pygit2")
    rows = sorted(
        (ImportRow(name, us) for depth, name, us in added if depth == 0), key=lambda r: -r.cumulative_us
    )

    installed = gitbus_command()
    label = MODULE if installed.endswith(" -m gitbus") else EXE
    return HookBench(
        reps,
        worktrees,
        times,
        f"{installed} hook",
        label,
        rows,
        [n for _, n, _ in added],
        len(known),
        pre_added,
    )


# -- (b) propagation through the watcher -----------------------------------------------------------


@dataclass(frozen=True)
class Step:
    name: str
    ms: float  # per update


@dataclass(frozen=True)
class Propagation:
    worktrees: int
    posts: int
    first: tuple[float, ...]  # seconds from the post's compare-and-swap to the first other file showing it
    every: tuple[float, ...]  # … to the last: every other worktree's file shows it
    post_call: tuple[float, ...]  # seconds in the post call itself (another process, the library)
    update: Series  # seconds per `Watcher.update()` on this repository, in process
    steps: list[Step]  # where an update's time goes: its steps timed alone (medians)
    debounce: float


def percentile(values: tuple[float, ...], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): the smallest value with at least q% of values ≤ it."""
    ordered = sorted(values)
    k = max(1, -(-len(ordered) * q // 100))
    return ordered[int(k) - 1]


def _poll(files: list[Path], marker: str, timeout: float) -> dict[Path, float]:
    """The monotonic time at which each file first contains `marker` (read on every change of it)."""
    deadline = time.monotonic() + timeout
    last: dict[Path, tuple[int, int, int]] = {}
    seen: dict[Path, float] = {}
    while True:
        now = time.monotonic()
        for f in files:
            if f in seen:
                continue
            try:
                st = os.stat(f)
                sig = (st.st_ino, st.st_mtime_ns, st.st_size)
                if sig != last.get(f):
                    last[f] = sig
                    if marker in f.read_text():
                        seen[f] = now
            except FileNotFoundError:
                pass
        if len(seen) == len(files):
            return seen
        if now > deadline:
            missing = ", ".join(str(f) for f in files if f not in seen)
            raise AssertionError(f"{missing} did not show {marker!r} within {timeout:.0f}s")
        time.sleep(POLL_SLEEP)


def _wait(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def _step_calls(repo: Repository) -> dict[str, Callable[[], object]]:
    """An update's steps one by one, in the order `context.update_all` takes them (its file writes
    left out: nothing changed since the last update, so it writes nothing either)."""
    now = SystemClock().now_ms()
    wts = repo.worktrees()
    view = context_view.read_view(repo, now)
    named = [(wt, agents.resolve(loc, None, {})) for wt in wts if (loc := gitfiles.locate(wt)) is not None]
    changed = {wt: context.changed_paths(repo, wt) for wt in wts}
    return {
        "read the bus once (libgit2: recent history, ledger, claims)": lambda: context_view.read_view(
            repo, now
        ),
        "list the worktrees (`git worktree list`)": repo.worktrees,
        "find each worktree's git dirs and agent": lambda: [
            agents.resolve(loc, None, {}) for wt in wts if (loc := gitfiles.locate(wt)) is not None
        ],
        "changed files, one `git status` per worktree": lambda: [
            context.changed_paths(repo, wt) for wt in wts
        ],
        "render every file": lambda: [
            context_text.render(view, me, wt, changed[wt], repo.ignorecase) for wt, me in named
        ],
        "compare with the files on disk": lambda: [(wt / context.FILE).read_text() for wt in wts],
        "refresh the claims snapshot": lambda: guard.snapshot(repo.root, repo.common_dir),
    }


def propagation(
    work: Path, env: Mapping[str, str], gitbus_exe: str, worktrees: int, posts: int, seed: int = 7
) -> Propagation:
    roots = scene(work / f"prop-{worktrees}", worktrees, env)
    main, poster_wt = roots[0], roots[1]
    readers = [wt / context.FILE for wt in roots if wt != poster_wt]  # its own discoveries are not listed
    watcher = subprocess.Popen(
        [gitbus_exe, "watch"],
        cwd=main,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    poster = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "poster", str(poster_wt), agent_of(1)],
        cwd=poster_wt,
        env=dict(env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert poster.stdin is not None and poster.stdout is not None
    rng = random.Random(seed)
    first: list[float] = []
    every: list[float] = []
    post_call: list[float] = []
    try:
        common = Repository.open(main).common_dir
        _wait(lambda: watch_daemon.running_pid(common) == watcher.pid, "the watcher to start")
        for i in range(-3, posts):  # three untimed warm-up posts; the first also waits for the watcher
            time.sleep(rng.uniform(0.05, 0.25))  # sparse traffic: each post meets an idle watcher
            marker = f"probe {i} {rng.getrandbits(32):08x}"
            poster.stdin.write(marker + "\n")
            poster.stdin.flush()
            seen = _poll(readers, marker, POST_TIMEOUT)
            t_call, t_done = (float(x) for x in poster.stdout.readline().split())
            if i >= 0:
                first.append(min(seen.values()) - t_done)
                every.append(max(seen.values()) - t_done)
                post_call.append(t_done - t_call)
    finally:
        poster.stdin.close()
        poster.wait(10)
        watcher.send_signal(signal.SIGTERM)
        try:
            watcher.wait(10)
        except subprocess.TimeoutExpired:
            watcher.kill()
            watcher.wait(10)
    err = watcher.stderr.read() if watcher.stderr else ""
    if "Traceback" in err or "gitbus watch:" in err:
        raise AssertionError(f"gitbus watch failed: {err}")
    # Timed in a fresh process like the watcher's: in this long-running one, with its large heap, the
    # Python-heavy steps measured up to 4 times slower.
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "steps", str(main), str(UPDATE_REPS)],
        cwd=main,
        env=dict(env),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    timed = json.loads(out)
    update = Series(tuple(timed["update"]))
    steps = [Step(name, ms) for name, ms in timed["steps"]]
    return Propagation(
        worktrees,
        posts,
        tuple(first),
        tuple(every),
        tuple(post_call),
        update,
        steps,
        watch.SETTLE_SECONDS,  # sparse posts: each meets an idle watcher, which waits only this
    )


def propagation_main(worktrees: int, posts: int) -> int:
    """(b) alone, for one number of worktrees: its figures, the goals and the load average."""
    import helpers

    with helpers.workdir() as work:
        env = {k: v for k, v in helpers.hermetic_env(work / "home").items() if k != "GITBUS_AGENT"}
        for role in ("AUTHOR", "COMMITTER"):
            env.update({f"GIT_{role}_NAME": "bench", f"GIT_{role}_EMAIL": "bench@example.invalid"})
        os.environ.update(env)
        os.environ.pop("GITBUS_AGENT", None)
        load0 = os.getloadavg()[0]
        p = propagation(work, env, helpers.gitbus_exe(), worktrees, posts)
        load1 = os.getloadavg()[0]
    p50_goal, p99_goal = goals(worktrees)
    p50, p99 = percentile(p.every, 50), percentile(p.every, 99)
    print(f"{worktrees} worktrees, {posts} posts; load average (1 min) {load0:.2f} at the start, "
          f"{load1:.2f} at the end")
    first50, first99 = percentile(p.first, 50), percentile(p.first, 99)
    print(f"first file p50 {first50 * 1000:.0f} ms, p99 {first99 * 1000:.0f} ms")
    print(f"every file p50 {p50 * 1000:.0f} ms (goal ≤ {p50_goal * 1000:.0f}), p99 {p99 * 1000:.0f} ms "
          f"(goal ≤ {p99_goal * 1000:.0f}), max {max(p.every) * 1000:.0f} ms")
    print(f"one fresh update {p.update.median * 1000:.1f} ms ({p.update.lo * 1000:.1f} – "
          f"{p.update.hi * 1000:.1f}); the post call p50 {percentile(p.post_call, 50) * 1000:.1f} ms")
    for step in p.steps:
        print(f"  {step.name}: {step.ms:.1f} ms")
    return 0


def poster_main(worktree: str, agent: str) -> int:
    bus = Bus.open(worktree, agent)
    bus.discover("warming up")
    for line in sys.stdin:
        t0 = time.monotonic()
        bus.discover(line.strip())
        t1 = time.monotonic()
        print(f"{t0!r} {t1!r}", flush=True)
    return 0


def steps_main(root: str, reps: int) -> int:
    repo = Repository.open(root)
    calls = {"update": watch.Watcher(repo).update, **_step_calls(repo)}
    timed = timed_calls(calls, reps)  # one rotation for all: the machine's drift hits each alike
    steps = [(name, s.median * 1000) for name, s in timed.items() if name != "update"]
    print(json.dumps({"update": list(timed["update"].values), "steps": steps}))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["poster"]:
        raise SystemExit(poster_main(sys.argv[2], sys.argv[3]))
    if sys.argv[1:2] == ["steps"]:
        raise SystemExit(steps_main(sys.argv[2], int(sys.argv[3])))
    if sys.argv[1:2] == ["propagation"]:
        raise SystemExit(propagation_main(int(sys.argv[2]), int(sys.argv[3])))
    raise SystemExit(
        "usage: live.py poster WORKTREE AGENT | live.py steps ROOT REPS | "
        "live.py propagation WORKTREES POSTS (bench/run.py runs them)"
    )
