"""Start-up of the everyday commands, each a whole process, beside `python -c "import pygit2"`.

Issue 14's goal: `log`, `status`, `claims`, `discover` and `claim` each within 2x of importing
pygit2, in a regular install: this checkout copied and `pip install`ed (not editable) into a fresh
venv, as users install it. The commands run side by side in one run, the order rotating every
round, in a repository of one joined agent with 100 messages, stdout and stderr piped (as agents
run them). Each is also run once under `-X importtime` to list what of typer, rich, pydantic and the
other heavy faces it imports (nothing, for the goal).

    python bench/startup.py [--reps 20]      # makes the venv under a temporary directory
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from measure import Series, verdict

ROOT = Path(__file__).resolve().parent.parent
GOAL = 2.0
HOOK_GOAL = 2.0  # issue 16: the nothing-new hook ≤ 2× `python -c pass`, in a regular install
PASS, PYGIT2 = "python -c pass", 'python -c "import pygit2"'
HOOK = "gitbus hook (PostToolUse, nothing new)"
EVERYDAY = ("gitbus log -n 20", "gitbus status", "gitbus claims", "gitbus discover TEXT", "gitbus claim PATH")
HEAVY = ("typer", "click", "rich", "pydantic", "mcp", "textual", "watchdog")


@dataclass(frozen=True)
class StartupBench:
    times: dict[str, Series]  # label -> seconds
    heavy: dict[str, tuple[str, ...]]  # everyday command -> the HEAVY packages it imported
    reps: int
    install: str  # how the measured gitbus was installed


def regular_install(work: Path, package: Path | None = None) -> Path:
    """A fresh venv under `work` with this checkout `pip install`ed into it (a copy, so no build/
    lands in the checkout), or with `package` (another tree's `gitbus/`) in its place; its python."""
    src = work / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(package or ROOT / "gitbus", src / "gitbus", ignore=shutil.ignore_patterns("__pycache__"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(src)], check=True, capture_output=True)
    return py


def _run(argv: list[str], cwd: Path, env: Mapping[str, str], stdin: bytes | None = None) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, env=dict(env), check=True, capture_output=True, input=stdin)
    took = time.perf_counter() - t0
    if stdin is not None and r.stdout:  # the hook row must measure the nothing-to-say path
        raise AssertionError(f"{argv} said something: {r.stdout[:200]!r}")
    return took


def _hook_payload(repo: Path, event: str, **extra: object) -> bytes:
    fields = {"session_id": "bench", "transcript_path": "/dev/null", "cwd": str(repo),
              "hook_event_name": event}
    return json.dumps({**fields, **extra}).encode()


def _imports(argv: list[str], cwd: Path, env: Mapping[str, str]) -> tuple[str, ...]:
    """The HEAVY packages `argv` imports (`-X importtime` through PYTHONPROFILEIMPORTTIME)."""
    r = subprocess.run(argv, cwd=cwd, env={**env, "PYTHONPROFILEIMPORTTIME": "1"}, check=True,
                       capture_output=True, text=True)
    seen = {line.split("|")[-1].strip().split(".")[0] for line in r.stderr.splitlines()
            if line.startswith("import time:")}
    return tuple(h for h in HEAVY if h in seen)


def startup_bench(work: Path, env: Mapping[str, str], python: Path, reps: int) -> StartupBench:
    """The five everyday commands of the gitbus installed beside `python`, with the two baselines."""
    gitbus = str(python.with_name("gitbus"))
    repo = work / "startup-repo"
    who = {f"GIT_{role}_{field}": value for role in ("AUTHOR", "COMMITTER")
           for field, value in (("NAME", "bench"), ("EMAIL", "bench@example.invalid"))}
    env = {**env, **who, "GITBUS_AGENT": "api-1"}
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "init"], cwd=repo, check=True, env=env)
    subprocess.run([gitbus, "init"], cwd=repo, env=env, check=True, capture_output=True)
    for i in range(100):
        subprocess.run([gitbus, "discover", f"finding {i}"], cwd=repo, env=env, check=True,
                       capture_output=True)
    claimed = [0]

    def claim() -> list[str]:  # a fresh path each time: a real claim, not a renewal
        claimed[0] += 1
        return [gitbus, "claim", f"src/f{claimed[0]}.py"]

    commands: dict[str, Callable[[], list[str]]] = {
        PASS: lambda: [str(python), "-c", "pass"],
        PYGIT2: lambda: [str(python), "-c", "import pygit2"],
        "gitbus log -n 20": lambda: [gitbus, "log", "-n", "20"],
        "gitbus status": lambda: [gitbus, "status"],
        "gitbus claims": lambda: [gitbus, "claims"],
        "gitbus discover TEXT": lambda: [gitbus, "discover", "a finding"],
        "gitbus claim PATH": claim,
    }
    # The hook of a session whose cursor is at the tips: SessionStart once, then every tool call.
    # In a repository of its own, since the posts above would otherwise move the tips under it.
    quiet = work / "startup-hook-repo"
    shutil.copytree(repo, quiet, symlinks=True)
    post = _hook_payload(quiet, "PostToolUse", tool_name="Bash", tool_input={"command": "ls"},
                         tool_response={"stdout": ""})
    subprocess.run([gitbus, "hook"], cwd=quiet, env=env, check=True, capture_output=True,
                   input=_hook_payload(quiet, "SessionStart", source="startup"))
    commands[HOOK] = lambda: [gitbus, "hook"]
    stdin = {HOOK: post}
    cwd = {HOOK: quiet}
    heavy = {name: _imports(commands[name](), repo, env) for name in EVERYDAY}
    times: dict[str, list[float]] = {k: [] for k in commands}
    names = list(commands)
    for r in range(reps + 1):
        k = r % len(names)
        order = names[k:] + names[:k]
        for name in order if r % 2 else order[::-1]:
            t = _run(commands[name](), cwd.get(name, repo), env, stdin.get(name))
            if r:  # the first round warms the page cache, untimed
                times[name].append(t)
    return StartupBench({k: Series(tuple(v)) for k, v in times.items()}, heavy, reps,
                        "`pip install .` of this checkout into a fresh venv (not editable)")


def _ms(s: Series) -> str:
    return f"{s.median * 1000:,.1f} ms | {s.lo * 1000:,.1f} – {s.hi * 1000:,.1f}"


def goal_rows(b: StartupBench) -> list[str]:
    base = b.times[PYGIT2].median
    hook = b.times[HOOK].median / b.times[PASS].median
    return [f"| `{name}`, whole process, regular install ≤ {GOAL:.0f}× `{PYGIT2}` | "
            f"{b.times[name].median / base:.2f}× | {verdict(b.times[name].median / base <= GOAL)} |"
            for name in EVERYDAY] + [
            f"| `{HOOK}`, whole process, regular install ≤ {HOOK_GOAL:.0f}× `{PASS}` | "
            f"{hook:.2f}× | {verdict(hook <= HOOK_GOAL)} |"]


def table(b: StartupBench) -> list[str]:
    base = b.times[PYGIT2].median
    lines = [f"| command | median | min – max | ÷ `import pygit2` (goal ≤ {GOAL:.0f}×) | ÷ `python -c pass` "
             "| imports of typer, click, rich, pydantic, mcp, textual, watchdog |",
             "|---|---:|---|---:|---:|---|"]
    for name, s in b.times.items():
        heavy = ", ".join(b.heavy[name]) or "none" if name in b.heavy else ""
        lines.append(f"| `{name}` | {_ms(s)} | {s.median / base:.2f}× | "
                     f"{s.median / b.times[PASS].median:.2f}× | {heavy} |")
    return lines


def section(b: StartupBench) -> list[str]:
    return [
        "### The everyday commands against the 2× goal (issue 14)",
        "",
        f"Each command a whole process of the gitbus installed by {b.install}, side by side with "
        f"`{PYGIT2}` and `{PASS}` from that venv in one run, the order rotating (and reversing) every "
        f"round, {b.reps} rounds after an untimed one, in a repository of one agent and 100 messages, "
        "stdout and stderr piped as agents run them (bench/startup.py). `claim` takes a fresh path each "
        "time. The hook row is a Claude Code PostToolUse payload for a session started once before "
        "(its cursor at the bus tips), the every-tool-call path. The last column is what each command "
        "imported of the heavy faces, from one run under `-X importtime`.",
        "",
        *table(b),
        "",
        "`gitbus.entry` hands these five to `gitbus.quick`, which parses them without typer from a "
        "table generated from the typer declarations (docs/gen_cli.py) and writes plain lines when "
        "stdout is not a terminal; rich is imported only to draw tables at a terminal. What is left is "
        "Python, pygit2 and the library (`gitbus.bus` and what it imports), and the command's own work.",
        "",
        "The hook row is `gitbus hook` as `gitbus install claude` writes it when run from this install "
        "(its console script). `gitbus.entry` offers a plain `gitbus hook` call to `gitbus.fastpath` "
        "first, which answers the nothing-new call from git's and gitbus's files with `os` and the C JSON "
        "scanner alone, before `json`, `re`, `typing`, `pathlib` or the hook handler load (the console "
        "script pip writes imports `re` itself, about 5 ms of what is left above `python -c pass`).",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gitbus-startup-") as tmp:
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "GITBUS_"))}
        env.update(HOME=str(work / "home"), GIT_CONFIG_NOSYSTEM="1")
        (work / "home").mkdir()
        print("installing this checkout into a fresh venv …", file=sys.stderr)
        python = regular_install(work)
        print(f"measuring, {args.reps} rounds …", file=sys.stderr)
        print("\n".join(section(startup_bench(work, env, python, args.reps))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
