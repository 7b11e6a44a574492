"""Start-up of the everyday commands, each a whole process, beside `python -c "import pygit2"`.

Issue 14's goal: `log`, `status`, `claims`, `discover` and `claim` each within 2x of importing
pygit2, measured in a regular (not editable) install. The commands run side by side in one run, the
order rotating every round, in a repository of two joined agents with 100 messages.

    python -m venv /tmp/v && /tmp/v/bin/pip install . && rm -rf build
    /tmp/v/bin/python bench/startup.py [--reps 30]      # prints a markdown table
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 2.0


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args(argv)
    py = sys.executable
    gitbus = str(Path(py).parent / "gitbus")
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        env = {**os.environ, "GITBUS_AGENT": "api-1", "GIT_CONFIG_NOSYSTEM": "1"}
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        subprocess.run(
            ["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", "init"], check=True, env=env
        )
        subprocess.run([gitbus, "init"], cwd=repo, env=env, check=True, capture_output=True)
        for i in range(100):
            subprocess.run(
                [gitbus, "discover", f"finding {i}"], cwd=repo, env=env, check=True, capture_output=True
            )
        n = [0]

        def claim() -> list[str]:
            n[0] += 1
            return [gitbus, "claim", f"src/f{n[0]}.py"]

        commands: dict[str, object] = {
            'python -c "import pygit2"': [py, "-c", "import pygit2"],
            "gitbus log -n 20": [gitbus, "log", "-n", "20"],
            "gitbus status": [gitbus, "status"],
            "gitbus claims": [gitbus, "claims"],
            "gitbus discover TEXT": [gitbus, "discover", "a finding"],
            "gitbus claim PATH": claim,
        }
        times: dict[str, list[float]] = {k: [] for k in commands}
        names = list(commands)
        for r in range(args.reps + 1):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order if r % 2 else order[::-1]:
                c = commands[name]
                cmd = c() if callable(c) else c
                t = run(cmd, repo, env)  # type: ignore[arg-type]
                if r:  # the first round warms the caches, untimed
                    times[name].append(t)
    base = statistics.median(times[names[0]])
    print(f"| command | median | min – max | ÷ import pygit2 (goal ≤ {GOAL:.0f}×) |")
    print("|---|---:|---|---:|")
    for name in names:
        ts = times[name]
        med, lo, hi = statistics.median(ts), min(ts), max(ts)
        print(f"| `{name}` | {med * 1000:.1f} ms | {lo * 1000:.1f} – {hi * 1000:.1f} | {med / base:.2f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
