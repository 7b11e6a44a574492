"""How the benchmarks measure: interleaved repetitions, medians, cProfile breakdowns, CLI wall time.

On a shared or virtual machine the speed drifts by tens of percent within a minute, so every
comparison is measured side by side in one run: in-process sides alternate A,B then B,A from one
repetition to the next, and CLI commands rotate their order, so a slow stretch hits all of them.
"""

from __future__ import annotations

import cProfile
import gc
import pstats
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

WARMUP_OPS = 5

Op = Callable[[int], object]
Setup = Callable[[Path], Op]


@dataclass(frozen=True)
class Series:
    """Repeated measurements of one thing (ops/s or seconds)."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def lo(self) -> float:
        return min(self.values)

    @property
    def hi(self) -> float:
        return max(self.values)


def verdict(ok: bool) -> str:
    """How a goal row of docs/benchmarks.md ends."""
    return "**met**" if ok else "**missed**"


def ratio(a: Series, b: Series) -> float:
    """The ratio of medians."""
    return a.median / b.median


def run_ops(op: Op, start: int, ops: int) -> float:
    """Ops/s of `op(start) … op(start + ops - 1)`."""
    gc.collect()
    t0 = time.perf_counter()
    for i in range(start, start + ops):
        op(i)
    return ops / (time.perf_counter() - t0)


def fresh(setup: Setup, d: Path, ops: int) -> float:
    """Ops/s on a fresh repository at `d` (set-up and warm-up untimed; `d` removed after)."""
    op = setup(d)
    for i in range(WARMUP_OPS):
        op(i)
    rate = run_ops(op, WARMUP_OPS, ops)
    shutil.rmtree(d)
    return rate


def interleaved(sides: Mapping[str, Setup], reps: int, ops: int, work: Path) -> dict[str, Series]:
    """Each repetition on a fresh repository per side; the sides alternate A,B then B,A."""
    got: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            got[name].append(fresh(sides[name], work / f"{name}-{rep}", ops))
    return {name: Series(tuple(v)) for name, v in got.items()}


def interleaved_on(ops_by_side: Mapping[str, Op], reps: int, ops: int) -> dict[str, Series]:
    """Like `interleaved`, but every repetition continues on the same (already set-up) repositories."""
    got: dict[str, list[float]] = {name: [] for name in ops_by_side}
    names = list(ops_by_side)
    for name in names:
        for i in range(WARMUP_OPS):
            ops_by_side[name](-1 - i)
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            got[name].append(run_ops(ops_by_side[name], rep * ops, ops))
    return {name: Series(tuple(v)) for name, v in got.items()}


def interleaved_beside(
    ops_by_side: Mapping[str, Op], outside: Mapping[str, Callable[[], float]], reps: int, ops: int
) -> dict[str, Series]:
    """Like `interleaved_on`, with sides that run elsewhere (another process, its own op count) in
    the same rounds: each call of an outside side runs one round there and answers its ops/s."""
    for op in ops_by_side.values():
        for i in range(WARMUP_OPS):
            op(-1 - i)
    for run in outside.values():  # their warm-up round, not counted
        run()
    got: dict[str, list[float]] = {name: [] for name in (*ops_by_side, *outside)}
    names = list(got)
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            rate = outside[name]() if name in outside else run_ops(ops_by_side[name], rep * ops, ops)
            got[name].append(rate)
    return {name: Series(tuple(v)) for name, v in got.items()}


@dataclass(frozen=True)
class ProfileRow:
    name: str
    calls_per_op: float
    us_per_op: float


@dataclass(frozen=True)
class Profile:
    categories: dict[str, float]  # category -> µs per op (tottime)
    top: list[ProfileRow]


def _category(filename: str, func: str) -> str:
    if filename == "~":
        if "pygit2" in func or "libgit2" in func:
            return "libgit2 via pygit2 (C)"
        if "_cffi_backend" in func:
            return "pygit2 wrappers (Python, cffi)"
        return "Python built-ins"
    if "/pygit2/" in filename:
        return "pygit2 wrappers (Python, cffi)"
    if "/gitbus/" in filename:
        return "gitbus (Python)"
    if "/bench/" in filename:
        return "bench harness"
    return "standard library (Python)"


def _short(filename: str, line: int, func: str) -> str:
    if filename == "~":
        return func.replace("<method ", "<").replace("<built-in method ", "<")
    parts = Path(filename).parts
    where = "/".join(parts[-2:]) if "gitbus" in parts or "pygit2" in parts else parts[-1]
    return f"{where}:{line} {func}"


def profile(setup: Setup, d: Path, ops: int, top: int = 14) -> Profile:
    """Where the time of `ops` operations goes, per operation (cProfile slows Python more than C)."""
    op = setup(d)
    for i in range(WARMUP_OPS):
        op(i)
    prof = cProfile.Profile()
    prof.enable()
    for i in range(WARMUP_OPS, WARMUP_OPS + ops):
        op(i)
    prof.disable()
    shutil.rmtree(d)
    raw = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    cats: dict[str, float] = {}
    rows: list[ProfileRow] = []
    for (filename, line, func), (_cc, ncalls, tottime, _ct, _callers) in raw.items():
        cat = _category(filename, func)
        cats[cat] = cats.get(cat, 0.0) + tottime * 1e6 / ops
        rows.append(ProfileRow(_short(filename, line, func), ncalls / ops, tottime * 1e6 / ops))
    rows.sort(key=lambda r: -r.us_per_op)
    return Profile(dict(sorted(cats.items(), key=lambda kv: -kv[1])), rows[:top])


@dataclass(frozen=True)
class Command:
    label: str
    argv: tuple[str, ...]
    cwd: Path
    stdin: bytes | None = None  # fed to the process (None: inherited)


def cli_times(cmds: Sequence[Command], reps: int, env: Mapping[str, str]) -> dict[str, Series]:
    """Whole-process wall time of each command; the order rotates every repetition."""
    for c in cmds:  # warm the page cache; not counted
        subprocess.run(c.argv, cwd=c.cwd, env=dict(env), input=c.stdin, capture_output=True, check=True)
    got: dict[str, list[float]] = {c.label: [] for c in cmds}
    for rep in range(reps):
        k = rep % len(cmds)
        for c in [*cmds[k:], *cmds[:k]]:
            t0 = time.perf_counter()
            subprocess.run(c.argv, cwd=c.cwd, env=dict(env), input=c.stdin, capture_output=True, check=True)
            got[c.label].append(time.perf_counter() - t0)
    return {label: Series(tuple(v)) for label, v in got.items()}


def timed_calls(calls: Mapping[str, Callable[[], object]], reps: int) -> dict[str, Series]:
    """Seconds per call of each in-process callable, rotating the order every repetition."""
    for f in calls.values():
        f()
    got: dict[str, list[float]] = {label: [] for label in calls}
    labels = list(calls)
    for rep in range(reps):
        k = rep % len(labels)
        for label in [*labels[k:], *labels[:k]]:
            t0 = time.perf_counter()
            calls[label]()
            got[label].append(time.perf_counter() - t0)
    return {label: Series(tuple(v)) for label, v in got.items()}
