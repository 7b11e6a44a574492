"""A hook's cost inside a real Claude Code session: one scripted 6-step turn with and without gitbus.

The client is the real one pinned in clients.json (installed by `.ci/install-clients`), run in print
mode (`claude -p`) as agent bob in the worktree `wt-b` of a repository where alice (the main checkout)
and bob are joined. The model is the loopback mock of tests/realclient.py, whose harness this module
drives (loaded by its path: it is not a package on this script's path); its script makes the turn six
tool calls (Bash `true` and Read, alternating) and then a final text. gitbus is installed as a user
installs it: a regular, not editable, `pip install` of this checkout into a temporary virtual
environment, whose `gitbus` then runs `gitbus install claude` (its bin first on PATH, so the hooks and
the MCP server run that environment's `gitbus`).

The arms, each on a repository and a home of its own, set up the same way: without gitbus installed
(joined, nothing else); gitbus's hooks alone (installed, then its `.mcp.json` entry removed: this arm
only splits the cost between the hooks and the MCP server); gitbus installed; and gitbus installed
while alice posts a discovery mid-turn (in process, before the mock answers the third request), which
bob's next PostToolUse hook must deliver once. The arms alternate forward then backward; each has one
untimed warm-up run first. Wall
time is the client's whole process, spawn to exit; the mock's request times split it into start-up,
the turn and the exit. Every run is checked: exit 0, the final text, every tool call succeeded, the
hooks' context there (or not) as the arm says.

    python bench/realclient.py [--quick] [--runs N] [--doc]

`--doc` writes the section (and its goal row) into docs/benchmarks.md in place of a previous one;
without it the section is printed. Only 127.0.0.1 is ever contacted; the only processes signalled are
the clients this module started (their process groups) and what they left under this run's own homes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import helpers
from live import percentile
from measure import Series, verdict

ROOT = Path(__file__).resolve().parent.parent
CLIENT = "claude-code"
STEPS = 6  # tool calls in the scripted turn; the model is called once more for the final text
PROMPT = "Carry on with the task."
TIMEOUT = 90.0  # seconds one `claude -p` may take at the most (a few, normally)
NUMBER = 13  # the section's number in docs/benchmarks.md
QUICK_RUNS, FULL_RUNS = 4, 10  # `claude -p` turns per arm (--quick, else), with and without gitbus
WITHOUT, WITH, DELIVERY = "without gitbus", "gitbus installed", "gitbus installed, a discovery mid-turn"
HOOKS = "gitbus's hooks only (its MCP server entry removed)"  # splits the cost: hooks vs the MCP server
ARMS = (WITHOUT, HOOKS, WITH, DELIVERY)
POST_AT = 2  # the discovery is posted once the model has made this many tool calls
IDENTITY = {"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
            "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}


def harness() -> ModuleType:
    """tests/realclient.py (MockAPI, run_print, client_env, seed_home, the pinned client), loaded by its
    path: bench/ scripts run with bench/ first on sys.path, where `tests` is not importable."""
    name = "gitbus_tests_realclient"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "realclient.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: its dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules[name]


rc = harness()


# -- gitbus as a user installs it ---------------------------------------------------------------------


@dataclass(frozen=True)
class Install:
    venv: Path
    seconds: float

    @property
    def bin(self) -> Path:
        return self.venv / "bin"


def install_gitbus(venv: Path) -> Install:
    """`python -m venv VENV && VENV/bin/pip install ROOT`: a regular install of this checkout."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    pip = str(venv / "bin" / "pip")
    r = subprocess.run([pip, "install", "-q", str(ROOT)], capture_output=True, text=True, check=False)
    if r.returncode != 0 or not (venv / "bin" / "gitbus").exists():
        raise RuntimeError(f"pip install {ROOT} into {venv} failed:\n{r.stdout}{r.stderr[-3000:]}")
    show = subprocess.run([pip, "show", "gitbus"], capture_output=True, text=True, check=False)
    if "Editable project location" in show.stdout:
        raise RuntimeError(f"gitbus in {venv} is an editable install")
    return Install(venv, time.perf_counter() - t0)


# -- the scene ------------------------------------------------------------------------------------------


@dataclass
class Scene:
    """alice in the main checkout, bob in wt-b, both joined; gitbus installed for Claude Code or not."""

    arm: str
    home: Path
    alice: Path
    bob: Path
    env: dict[str, str]  # git and gitbus commands: hermetic, the temporary environment's bin first
    hooks: list[str] = field(default_factory=list)  # the commands the installed hooks run

    def gitbus(self, cwd: Path, *args: str) -> str:
        r = subprocess.run(["gitbus", *args], cwd=cwd, env=self.env, capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"gitbus {' '.join(args)} in {cwd}: {r.stdout}{r.stderr}")
        return r.stdout


def _git(cwd: Path, env: Mapping[str, str], *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=dict(env), check=True, capture_output=True, timeout=60)


def scene(root: Path, arm: str, env: Mapping[str, str], gitbus_bin: Path) -> Scene:
    """A repository with a few files and one commit, a worktree for bob, both agents joined, and
    `gitbus install claude` run in the main checkout unless the arm is the one without gitbus."""
    env = {**env, **IDENTITY, "PATH": f"{gitbus_bin}{os.pathsep}{env.get('PATH', '')}"}
    alice, bob = root / "main", root / "wt-b"
    alice.mkdir(parents=True)
    _git(alice, env, "init", "-q", "-b", "main")
    for rel in ("internal/api/handler.go", "config/db.yaml", "README.md"):
        (alice / rel).parent.mkdir(parents=True, exist_ok=True)
        (alice / rel).write_text(f"{rel}\n")
    _git(alice, env, "add", "-A")
    _git(alice, env, "commit", "-qm", "initial")
    _git(alice, env, "worktree", "add", "-q", "-b", "wt-b", str(bob))
    s = Scene(arm, root / "home", alice, bob, env)
    s.gitbus(alice, "join", "--name", "alice")
    s.gitbus(bob, "join", "--name", "bob")
    if arm != WITHOUT:
        s.gitbus(alice, "install", "claude")
        settings = json.loads((alice / ".claude" / "settings.local.json").read_text())
        s.hooks = [h["command"] for groups in settings["hooks"].values() for g in groups for h in g["hooks"]]
        exe = shlex.quote(str(gitbus_bin / "gitbus"))
        if not s.hooks or any(not c.startswith(exe + " ") for c in s.hooks):
            raise AssertionError(f"the installed hooks do not run {exe}: {s.hooks}")
        mcp = json.loads((bob / ".mcp.json").read_text())["mcpServers"]
        if mcp["gitbus"]["command"] != str(gitbus_bin / "gitbus"):
            raise AssertionError(f"the MCP server is not {exe}: {mcp}")
        if arm == HOOKS:
            for wt in (alice, bob):
                assert list(json.loads((wt / ".mcp.json").read_text())["mcpServers"]) == ["gitbus"]
                (wt / ".mcp.json").unlink()
    rc.seed_home(s.home, [alice, bob])
    return s


# -- one run ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One `claude -p` turn: seconds, and what the mock recorded."""

    wall: float  # spawn to exit
    startup: float  # spawn to the first main-loop request
    turn: float  # the first main-loop request to the last
    exit: float  # the last main-loop request to the exit
    main: int  # main-loop requests (the agent loop: they offer the model its tools)
    total: int  # every request the mock received
    paths: dict[str, int]  # requests by path (query strings dropped)
    delivered_at: int | None = None  # the tool-call step whose next request first carried the discovery


def step_reply(k: int, bob: Path) -> Any:
    """The model's reply after `k` tool calls: Bash `true` and Read in turn, then the final text."""
    if k >= STEPS:
        return rc.say("Done.")
    if k % 2 == 0:
        return rc.use("Bash", command="true", description="step of the scripted turn")
    return rc.use("Read", file_path=str(bob / ("README.md" if k % 4 == 1 else "config/db.yaml")))


def once(s: Scene, client: Any, gitbus_bin: Path, post: Callable[[str], None] | None, tag: str) -> Outcome:
    news = f"the cache lives in var/cache, keyed by content hash ({tag})"
    posted: list[int] = []

    def script(req: Any) -> Any:
        k = req.step()
        if post is not None and k == POST_AT and not posted:
            post(news)
            posted.append(req.n)
        return step_reply(k, s.bob)

    with rc.MockAPI(script) as api:
        env = rc.client_env(s.home, api)
        env["PATH"] = f"{gitbus_bin}{os.pathsep}{os.environ.get('PATH', '')}"  # as the user's shell has it
        run = rc.run_print(client, s.bob, PROMPT, env, TIMEOUT)
        rc.reap(s.home)  # whatever the client left under this arm's home (nothing, normally)
    where = f"{s.arm}, run {tag}"
    main = api.main_requests()
    if api.errors or run.code != 0 or run.result.get("result") != "Done.":
        said = f"{run.stdout[-1000:]} {run.stderr[-2000:]} {api.errors}"
        raise AssertionError(f"{where}: exit {run.code}: {said}")
    if len(main) != STEPS + 1:
        raise AssertionError(f"{where}: {len(main)} main-loop requests, not {STEPS + 1}")
    final = main[-1]
    uses = final.tool_uses()
    results = [final.result_for(u["id"]) for u in uses]
    if len(uses) != STEPS or any(r is None or r.get("is_error") for r in results):
        raise AssertionError(f"{where}: the tool calls did not all succeed: {results}")
    told = main[0].hook_context("SessionStart")
    if (s.arm == WITHOUT) == bool(told):
        raise AssertionError(f"{where}: SessionStart context {told!r}")
    if s.arm != WITHOUT and "you are agent bob" not in told[0]:
        raise AssertionError(f"{where}: SessionStart said {told[0]!r}")
    delivered = None
    if post is not None:
        added = sum(r.tail_text().count(news) for r in main)
        hit = next((r for r in main if r.where(news)), None)
        if not posted or added != 1 or hit is None or final.received().count(news) != 1:
            raise AssertionError(f"{where}: the discovery was not delivered once ({added} times)")
        delivered = hit.step()
    paths: dict[str, int] = {}
    for r in api.requests:
        key = r.path.split("?")[0]
        paths[key] = paths.get(key, 0) + 1
    start = run.started
    return Outcome(
        wall=run.seconds,
        startup=main[0].at - start,
        turn=main[-1].at - main[0].at,
        exit=start + run.seconds - main[-1].at,
        main=len(main),
        total=len(api.requests),
        paths=paths,
        delivered_at=delivered,
    )


# -- the bench --------------------------------------------------------------------------------------------


@dataclass
class RealClientBench:
    skipped: str = ""  # why nothing was measured ("" when it was)
    client: str = ""  # package@version
    runs: int = 0
    install: float = 0.0  # seconds for the venv and the regular pip install
    hooks: list[str] = field(default_factory=list)  # the hook commands, the venv's path as <venv>
    outcomes: dict[str, list[Outcome]] = field(default_factory=dict)
    when: str = ""
    loads: list[float] = field(default_factory=list)  # 1-minute load average at the start, after each run
    seconds: float = 0.0
    commit: str = ""  # this checkout's HEAD, short
    gitbus_dirty: bool = False  # gitbus/ had uncommitted changes (the install is of the working tree)

    def series(self, arm: str, what: str) -> Series:
        return Series(tuple(getattr(o, what) for o in self.outcomes[arm]))


def realclient_bench(work: Path, env: Mapping[str, str], runs: int,
                     log: Callable[[str], None] = print) -> RealClientBench:
    """`runs` timed turns per arm (after one warm-up each), the arms interleaved."""
    started = time.perf_counter()
    b = RealClientBench(when=f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC", runs=runs)
    b.skipped = rc.missing(CLIENT)
    if b.skipped:
        return b
    client = rc.pinned(CLIENT)
    b.client = f"{client.package}@{client.version}"
    b.loads.append(os.getloadavg()[0])
    status = subprocess.run(["git", "status", "--porcelain", "--", "gitbus"], cwd=ROOT, capture_output=True,
                            text=True, check=False)
    b.gitbus_dirty = bool(status.stdout.strip())
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    b.commit = head.stdout.strip() or "?"
    log(f"  a regular install of {ROOT} into a temporary virtual environment")
    inst = install_gitbus(work / "venv")
    b.install = inst.seconds
    env = {k: v for k, v in env.items() if k != "GITBUS_AGENT"}  # agents come from worktrees here
    scenes = {arm: scene(work / f"arm-{i}", arm, env, inst.bin) for i, arm in enumerate(ARMS)}
    b.hooks = sorted({c.replace(str(inst.venv), "<venv>") for c in scenes[WITH].hooks})

    from gitbus.bus import Bus

    poster = Bus.open(scenes[DELIVERY].alice, "alice")  # opened before timing: a post is then ~ms

    def post(text: str) -> None:
        poster.discover(text)

    posts: dict[str, Callable[[str], None] | None] = {arm: post if arm == DELIVERY else None for arm in ARMS}
    b.outcomes = {arm: [] for arm in ARMS}
    for arm in ARMS:  # warm-up: caches, the client's first run in a home; not counted
        once(scenes[arm], client, inst.bin, posts[arm], "warm-up")
    for rep in range(runs):
        for arm in ARMS if rep % 2 == 0 else ARMS[::-1]:
            o = once(scenes[arm], client, inst.bin, posts[arm], str(rep))
            b.outcomes[arm].append(o)
            b.loads.append(os.getloadavg()[0])
            log(f"  run {rep + 1}/{runs}, {arm}: {o.wall:.2f} s, {o.main} main requests of {o.total}")
    b.seconds = time.perf_counter() - started
    return b


# -- the report's lines --------------------------------------------------------------------------------


def _s(values: Series) -> str:
    return f"{values.median:.2f} s"


def _ms(values: Series) -> str:
    return f"{values.median * 1000:,.0f} ms"


def _counts(b: RealClientBench, arm: str, what: str) -> str:
    got = sorted({getattr(o, what) for o in b.outcomes[arm]})
    return " – ".join(str(x) for x in (got[0], got[-1])) if len(got) > 1 else str(got[0])


def goal_rows(b: RealClientBench) -> list[str]:
    if b.skipped:
        return []
    a, w = _counts(b, WITHOUT, "main"), _counts(b, WITH, "main")
    return [f"| real Claude Code, `claude -p`, a {STEPS}-step turn: requests to the model with gitbus "
            f"installed = without | {w} = {a} | {verdict(a == w)} |"]


def section(b: RealClientBench, number: int = NUMBER) -> list[str]:
    title = f"## {number}. A hook's cost inside a real Claude Code session"
    if b.skipped:
        return [title, "", f"Not measured: {b.skipped}.", ""]
    base = b.series(WITHOUT, "wall")
    cores = os.cpu_count() or 1
    lines = [
        title,
        "",
        f"The real client ({b.client}, pinned in clients.json, installed by `.ci/install-clients`) in print "
        "mode, `claude -p … --output-format json --dangerously-skip-permissions`, as agent bob in the "
        "worktree `wt-b` of a repository where alice (the main checkout) and bob are joined. The model is "
        f"the loopback mock of tests/realclient.py: its script makes the turn {STEPS} tool calls (Bash "
        "`true` and Read, alternating), then a final text, and it records every request. gitbus is "
        "installed as a user installs it: a regular (not editable) `pip install` of this checkout into a "
        f"temporary virtual environment ({b.install:.0f} s, not timed), whose `gitbus install claude` "
        "(that environment's bin first on PATH) writes the hooks, which run "
        + " and ".join(f"`{c}`" for c in b.hooks)
        + ", and the `gitbus mcp` server entry. The arms, each with a repository and a home of its own set "
        "up the same way: *without gitbus* (both agents joined, nothing installed); *gitbus's hooks "
        "only*, installed and then its `.mcp.json` entry removed (not a way to use gitbus: it splits the "
        "cost between the hooks and the MCP server); *gitbus installed*; and *gitbus installed, a "
        f"discovery mid-turn*: alice posts one, in process, once the model has made {POST_AT} tool calls, "
        "and bob's next PostToolUse hook must deliver it, once. One untimed warm-up run per arm, then "
        f"{b.runs} runs each, the arms in order then in reverse, alternately (`bench/realclient.py`). "
        "Wall time is the client's whole process, spawn to exit; the mock's clock splits it into "
        "start-up (to the agent loop's first request), the turn (its first request to its last) and the "
        "exit (from the final reply to the process's end). Every run was checked: exit 0 with the final "
        "text, every tool call succeeded, gitbus's SessionStart context present exactly when its hooks "
        "are installed, the discovery delivered exactly once.",
        "",
        f"Measured {b.when} at {b.commit} in {b.seconds:.0f} s on {cores} cores; load average (1 min) "
        f"{b.loads[0]:.2f} at the start, {b.loads[-1]:.2f} at the end, {max(b.loads):.2f} at the most "
        "(read after every run)"
        + ("; gitbus/ had uncommitted changes, which the install includes" if b.gitbus_dirty else "")
        + ". p90 is the nearest rank."
        + (" **Other work shared the machine** (a load above the number of cores): every absolute "
           "figure is inflated, and so are the ratios, since gitbus's arms start more processes, each "
           "waiting for a core; compare with a quieter run." if max(b.loads) > cores else ""),
        "",
        "| arm | wall median | p90 | min – max | ÷ without | start-up | the turn | exit "
        "| main-loop requests | all requests |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for arm in ARMS:
        wall = b.series(arm, "wall")
        p90 = percentile(wall.values, 90)
        lines.append(
            f"| {arm} | {_s(wall)} | {p90:.2f} s | {wall.lo:.2f} – {wall.hi:.2f} | "
            f"{wall.median / base.median:.2f}× | {_ms(b.series(arm, 'startup'))} | "
            f"{_ms(b.series(arm, 'turn'))} | {_ms(b.series(arm, 'exit'))} | {_counts(b, arm, 'main')} | "
            f"{_counts(b, arm, 'total')} |"
        )

    def diff(a: str, z: str) -> str:
        parts = ("startup", "turn", "exit", "wall")
        return " | ".join(
            f"{(b.series(a, what).median - b.series(z, what).median) * 1000:+,.0f} ms" for what in parts
        )

    per_step = (b.series(WITH, "turn").median - b.series(WITHOUT, "turn").median) / STEPS
    paths = sorted({p for arm in ARMS for o in b.outcomes[arm] for p in o.paths})
    delivered = sorted({o.delivered_at for o in b.outcomes[DELIVERY]} - {None})
    lines += [
        "",
        "Where the difference goes (differences of the medians above, so roughly):",
        "",
        "| | start-up | the turn | exit | wall |",
        "|---|---:|---:|---:|---:|",
        f"| the hooks (hooks only − without) | {diff(HOOKS, WITHOUT)} |",
        f"| the MCP server (installed − hooks only) | {diff(WITH, HOOKS)} |",
        f"| **gitbus installed − without** | {diff(WITH, WITHOUT)} |",
        f"| a delivery (a discovery mid-turn − installed) | {diff(DELIVERY, WITH)} |",
        "",
        f"- Requests: the agent loop called the model {STEPS + 1} times for {STEPS} tool steps in every run "
        "of every arm; the hooks add context to requests the client makes anyway, never one of their own. "
        "Every request the mock received went to "
        + ", ".join(f"`{p}`" for p in paths)
        + " (the harness sets `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`).",
        f"- Per tool step, the turn is {per_step * 1000:,.0f} ms longer with gitbus installed: one "
        "PostToolUse `gitbus hook` per tool call (matcher `*`; the PreToolUse edit guard runs only before "
        "edits, and this turn makes none), whose whole-process cost with nothing to say is in section 5. "
        "Start-up adds the SessionStart and UserPromptSubmit hooks and the `gitbus mcp` server the client "
        "starts and connects to before its first request; the exit adds the Stop hooks (the asyncRewake "
        "waiter among them, which print mode does not wait for), SessionEnd and the MCP server's "
        "shutdown.",
        f"- The discovery was first shown to the model in the request after tool call "
        f"{'/'.join(str(d) for d in delivered)}, once, in every run.",
        "",
        "This section alone (after `.ci/install-clients`; about two minutes, most of it the install and "
        "the client's own start-up):",
        "",
        "```sh",
        "python bench/realclient.py --doc",
        "```",
        "",
    ]
    return lines


# -- standalone ------------------------------------------------------------------------------------------


def write_doc(doc: Path, b: RealClientBench) -> None:
    """Put this section and its goal row into `doc`, in place of earlier ones (or before the notes)."""
    text = doc.read_text().split("\n")
    title = section(b)[0]
    head = title[: title.index(".") + 2]  # "## 13. "
    start = next((i for i, line in enumerate(text) if line.startswith(head)), None)
    if start is not None:
        end = next(i for i in range(start + 1, len(text)) if text[i].startswith("## "))
        del text[start:end]
    else:
        start = next(i for i, line in enumerate(text) if line == "## Notes on method")
    text[start:start] = section(b)
    rows = goal_rows(b)
    goal = next(i for i, line in enumerate(text) if line == "## Goals")
    end = next(i for i in range(goal + 4, len(text)) if not text[i].startswith("|"))
    marker = rows[0].split(":")[0] if rows else "\0"
    kept = [line for line in text[goal:end] if not line.startswith(marker)]
    text[goal:end] = kept + rows
    doc.write_text("\n".join(text))


def main(argv: list[str]) -> int:
    default = QUICK_RUNS if "--quick" in argv else FULL_RUNS
    runs = int(argv[argv.index("--runs") + 1]) if "--runs" in argv else default
    with helpers.workdir() as work:
        env = helpers.hermetic_env(work / "home")
        b = realclient_bench(work, env, runs, log=helpers.log)
    if b.skipped:
        print(f"bench/realclient.py: not measured: {b.skipped}", file=sys.stderr)
    if "--doc" in argv:
        write_doc(helpers.DOC, b)
        helpers.log(f"wrote section {NUMBER} into {helpers.DOC}")
    else:
        print("\n".join([*goal_rows(b), "", *section(b)]))
    return 1 if b.skipped else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
