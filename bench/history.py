"""Reading a whole big bus, next to its tail, and what a message costs on disk before and after `git gc`.

(a) The buses of section 3 (synth.py). `Bus.log(None)` is the library's "everything, newest first"
    (the CLI's `gitbus log -n N` requires N ≥ 1, so `-n <every message>` stands for "all" there),
    timed beside `Bus.log(20)`, each call on a freshly opened bus, in one rotation. The shared-file
    reference (shared_file.py) holds the same messages as JSON lines: its tail is a backwards read of
    the last blocks, its whole read parses every line. Every whole read is checked to return every
    message.
(b) Bytes per message: the sizes of `.git/objects`, `.git/refs` and `packed-refs` of the loose bus
    (objects as posting leaves them), then the same after `git gc` (timed), divided by the messages.
    Both the files' own sizes and the disk blocks they take are given: a loose object is a file of a
    few hundred bytes that takes a whole block.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import shared_file
from measure import Command, Series, cli_times, timed_calls

from gitbus.bus import Bus
from gitbus.message import Message, encode


def write_jsonl(path: Path, msgs: Sequence[Message]) -> None:
    """The shared-file reference's log of the same messages, oldest first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(shared_file.line(m.to_json()) for m in msgs))


def _checked(f: Callable[[], Sequence[object]], n: int, what: str) -> Callable[[], object]:
    got = len(f())
    if got != n:
        raise AssertionError(f"{what} returned {got} messages, expected {n}")
    return f


def _log(root: Path, n: int | None) -> Callable[[], Sequence[object]]:
    """`Bus.log(n)` on a freshly opened bus, as a command would."""
    return lambda: Bus.open(root, "reader").log(n)


@dataclass(frozen=True)
class ReadBench:
    messages: int
    reps: int
    cli_reps: int
    library: dict[str, Series]  # label -> seconds
    cli: dict[str, Series]


def read_bench(
    buses: Mapping[str, tuple[Path, int]],  # label -> (root, messages)
    jsonl: Path,
    big: int,
    env: Mapping[str, str],
    gitbus: str,
    reps: int,
    cli_reps: int,
) -> ReadBench:
    calls: dict[str, Callable[[], object]] = {}
    for label, (root, n) in buses.items():
        calls[f"{label}|tail"] = _checked(_log(root, 20), min(20, n), label)
        calls[f"{label}|all"] = _checked(_log(root, None), n, label)
    calls["shared file|tail"] = _checked(lambda: shared_file.tail(jsonl, 20), 20, "tail")
    calls["shared file|all"] = _checked(lambda: shared_file.read_all(jsonl), big, "read_all")
    library = timed_calls(calls, reps)
    cmds = []
    for label, (root, n) in buses.items():
        if n == big:
            argv = (gitbus, "log", "-n", str(n), "--json")
            out = subprocess.run(argv, cwd=root, env=dict(env), capture_output=True, check=True).stdout
            if len(json.loads(out)) != n:
                raise AssertionError(f"`gitbus log -n {n} --json` in {root} did not print every message")
            cmds.append(Command(f"{label}|all", argv, root))
            cmds.append(Command(f"{label}|tail", (gitbus, "log", "-n", "20", "--json"), root))
    cli = cli_times(cmds, cli_reps, env)
    return ReadBench(big, reps, cli_reps, library, cli)


@dataclass(frozen=True)
class Footprint:
    files: int
    apparent: int  # bytes: the files' sizes
    allocated: int  # bytes: the disk blocks they take


def footprint(git_dir: Path) -> Footprint:
    """`objects/`, `refs/` and `packed-refs` of a git dir."""
    files = apparent = allocated = 0
    paths = [git_dir / "packed-refs"] if (git_dir / "packed-refs").exists() else []
    for top in ("objects", "refs"):
        for dirpath, _dirs, names in os.walk(git_dir / top):
            paths += [Path(dirpath) / name for name in names]
    for p in paths:
        st = p.stat()
        files += 1
        apparent += st.st_size
        allocated += st.st_blocks * 512
    return Footprint(files, apparent, allocated)


@dataclass(frozen=True)
class SizeBench:
    messages: int
    raw: int  # bytes of the messages' text as gitbus encodes it (commit messages), all together
    before: Footprint
    after: Footprint
    gc_seconds: float
    jsonl: int  # bytes of the shared-file log of the same messages


def size_bench(root: Path, msgs: Sequence[Message], jsonl: Path, env: Mapping[str, str]) -> SizeBench:
    """Footprint of the loose bus at `root`, then `git gc` (timed) and the footprint again."""
    git_dir = root / ".git"
    before = footprint(git_dir)
    t0 = time.perf_counter()
    subprocess.run(["git", "gc", "--quiet"], cwd=root, env=dict(env), check=True, capture_output=True)
    took = time.perf_counter() - t0
    return SizeBench(
        len(msgs),
        sum(len(encode(m).encode()) for m in msgs),
        before,
        footprint(git_dir),
        took,
        jsonl.stat().st_size,
    )


# -- the report's lines ------------------------------------------------------------------------------


def _ms(s: Series) -> str:
    return f"{s.median * 1000:,.1f} ms | {s.lo * 1000:,.1f} – {s.hi * 1000:,.1f}"


def section(r: ReadBench, z: SizeBench, number: int) -> list[str]:
    labels = list(dict.fromkeys(k.split("|")[0] for k in r.library))
    out = [
        f"## {number}. Reading the whole history",
        "",
        "The buses of section 3. Library: `Bus.open(root).log(20)` (the tail) and `Bus.open(root).log(None)` "
        "(every message, newest first, in the bus order), each call on a freshly opened bus, "
        f"{r.reps} repetitions in one rotation; every whole read was checked to return every message. "
        f"The shared-file reference (`bench/shared_file.py`) holds the same {r.messages:,} messages as JSON "
        "lines: its tail reads the last blocks backwards, its whole read parses every line. CLI: "
        f'`gitbus log -n {r.messages} --json` (the CLI has no "all": `-n` must be at least 1) beside '
        f"`gitbus log -n 20 --json`, whole process, {r.cli_reps} repetitions.",
        "",
        "| source | tail (20) median | min – max | everything median | min – max | everything ÷ tail |",
        "|---|---:|---|---:|---|---:|",
    ]
    for label in labels:
        tail, whole = r.library[f"{label}|tail"], r.library[f"{label}|all"]
        out.append(f"| {label} | {_ms(tail)} | {_ms(whole)} | {whole.median / tail.median:,.0f}× |")
    for label in dict.fromkeys(k.split("|")[0] for k in r.cli):
        tail, whole = r.cli[f"{label}|tail"], r.cli[f"{label}|all"]
        out.append(f"| CLI, {label} | {_ms(tail)} | {_ms(whole)} | {whole.median / tail.median:,.1f}× |")
    per = {
        label: r.library[f"{label}|all"].median / n * 1e6
        for label, n in ((lb, r.messages) for lb in labels)
        if "100 " not in label
    }
    out += [
        "",
        "Per message, reading everything: "
        + "; ".join(f"{label} {us:,.1f} µs" for label, us in per.items())
        + ". The tail costs the same at any size (section 3); the whole history is linear in it.",
        "",
        f"## {number + 1}. Bytes per message, before and after housekeeping",
        "",
        f"The loose bus of {z.messages:,} messages (one commit object per message, as posting leaves them), "
        f"measured as `.git/objects`, `.git/refs` and `packed-refs`; then `git gc` ({z.gc_seconds:.1f} s) "
        "and the same again. *Size* is the files' own length; *on disk* is the blocks they take.",
        "",
        "| | files | size | per message | on disk | per message |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, f in (("loose, as posted", z.before), ("after `git gc`", z.after)):
        out.append(
            f"| {label} | {f.files:,} | {f.apparent / 1e6:,.1f} MB | {f.apparent / z.messages:,.0f} B | "
            f"{f.allocated / 1e6:,.1f} MB | {f.allocated / z.messages:,.0f} B |"
        )
    out += [
        f"| for scale: the messages' text as gitbus encodes it | | {z.raw / 1e6:,.1f} MB | "
        f"{z.raw / z.messages:,.0f} B | | |",
        f"| for scale: the shared-file log of the same messages (JSON lines) | 1 | {z.jsonl / 1e6:,.1f} MB | "
        f"{z.jsonl / z.messages:,.0f} B | | |",
        "",
        "A loose object is zlib-compressed alone, one file each; `git gc` packs them with deltas between "
        "similar messages and moves the refs into `packed-refs`. This `git gc --quiet` is what a forced "
        "housekeeping run executes (`gitbus.housekeeping`).",
        "",
    ]
    return out
