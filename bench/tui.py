"""First paint of `gitbus tui`: a bus of 10,000 messages side by side with an empty one.

What a person waits for after typing `gitbus tui`: a fresh process that imports the app, opens the
repository, loads the recent window (gitbus.tui.WINDOW messages, not the whole history) and paints
the 80x24 screen showing it. Each repetition runs this file as a child (`--child ROOT`), headless,
which exits right after that first painted frame; the parent times the whole process and the child
reports its own time from its first line to the painted frame, and its peak memory. The buses come
from synth.py (`git fast-import`, commits byte-identical to the library's): empty, 10,000 messages as
loose objects (as the library leaves them) and after `git gc`. Their order rotates every repetition
so that a slow stretch of a shared machine hits all of them.

    python bench/tui.py [--quick] [--messages N]
"""

from __future__ import annotations

import time
from dataclasses import dataclass

T0 = time.perf_counter()  # the child's clock starts before anything is imported

import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

GOAL_SECONDS = 1.0
SIZE = (80, 24)


def child(root: str) -> None:
    """Run the app on `root` until its first frame with the bus loaded; print the figures as JSON."""
    from gitbus.tui import GitbusApp, Snapshot

    class FirstPaint(GitbusApp):
        painted: float | None = None

        def show(self, snap: Snapshot) -> None:
            super().show(snap)
            if self.painted is None:
                self.painted = 0.0
                self.call_after_refresh(self.done)

        def done(self) -> None:
            self.painted = time.perf_counter() - T0
            self.exit()

    app = FirstPaint(root)
    app.run(headless=True, size=SIZE)
    rss_mb = _peak_rss_mb()
    print(json.dumps({"paint": app.painted, "rows": len(app.snap.feed), "rss_mb": rss_mb}))


def _peak_rss_mb() -> float:
    """This process's peak resident memory since its exec (VmHWM): `ru_maxrss` would count the
    forked copy of a large parent (the bench itself) from before the exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(root: Path, env: dict[str, str]) -> tuple[float, float, float, int]:
    """(whole process seconds, first line to painted frame seconds, peak RSS in MB, rows shown)."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(root)], env=env, capture_output=True, text=True, timeout=120
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"bench/tui.py: the child failed on {root}:\n{out.stderr}")
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return wall, float(got["paint"]), float(got["rss_mb"]), int(got["rows"])


@dataclass(frozen=True)
class TuiBench:
    """Per bus: (whole process s, first line → paint s, peak RSS MB, rows shown) for each repetition."""

    reps: int
    runs: dict[str, list[tuple[float, float, float, int]]]


def tui_bench(work: Path, env: dict[str, str], n: int, reps: int) -> TuiBench:
    """An empty bus and `n` messages (loose, and after git gc), their order rotating every round."""
    import synth

    from gitbus.git import init_repository

    buses = {"empty bus": work / "tui-empty"}
    init_repository(buses["empty bus"])
    msgs = synth.messages(n, 8, end_ms=time.time_ns() // 1_000_000 - 60_000)
    for layout in ("loose", "gc"):
        buses[f"{n:,} messages, {'loose objects' if layout == 'loose' else 'after git gc'}"] = root = (
            work / f"tui-bus-{layout}"
        )
        synth.build(root, synth.fast_import_stream(msgs), env, layout=layout)
    names = list(buses)
    runs: dict[str, list[tuple[float, float, float, int]]] = {name: [] for name in names}
    for rep in range(reps + 1):  # the first round warms the disk cache and is not counted
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            got = run_child(buses[name], env)
            if rep:
                runs[name].append(got)
    return TuiBench(reps, runs)


def goal_rows(b: TuiBench) -> list[str]:
    from measure import verdict  # not at the top: the child's clock starts before its imports

    rows = []
    for name, runs in b.runs.items():
        if name == "empty bus":
            continue
        wall = statistics.median(r[0] for r in runs)
        rows.append(
            f"| `gitbus tui` first paint at {SIZE[0]}x{SIZE[1]}, {name}, whole process "
            f"≤ {GOAL_SECONDS:.0f} s | {wall:.2f} s | {verdict(wall <= GOAL_SECONDS)} |"
        )
    return rows


def section(b: TuiBench, number: int) -> list[str]:
    lines = [
        f"## {number}. `gitbus tui`: first paint",
        "",
        f"A fresh process runs the app headless at {SIZE[0]}x{SIZE[1]} and exits on the first painted frame "
        "that shows the bus (bench/tui.py): the whole process as a person waits for it, the app's own time "
        "from its first line to that frame, and peak memory. The app loads the recent window "
        "(`gitbus.tui.WINDOW` messages), not the history, so a long bus costs about what a short one does. "
        f"Median of {b.reps} (min – max), the buses' order rotating every round.",
        "",
        "| bus | whole process | first line → paint | rows shown | peak RSS |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, runs in b.runs.items():
        walls, paints, rss, rows = zip(*runs, strict=True)
        lines.append(
            f"| {name} | {_series(walls)} | {_series(paints)} | {rows[0]} | {statistics.median(rss):.0f} MB |"
        )
    return [*lines, ""]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        child(argv[1])
        return 0
    import helpers  # not at the top: a child imports only what it measures

    quick = "--quick" in argv
    n = int(argv[argv.index("--messages") + 1]) if "--messages" in argv else 10_000
    with helpers.workdir() as work:
        b = tui_bench(work, helpers.hermetic_env(work / "home"), n, 3 if quick else 7)
    print("\n".join(section(b, 1) + goal_rows(b)))
    return 0


def _series(values: tuple[float, ...]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
