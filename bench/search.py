"""Searching a big bus: `gitbus search WORD` and `gitbus log --grep WORD` over 100,000 messages.

The bus is the one section 3 reads (synth.py: `git fast-import`, commits byte-identical to the
library's), as loose objects and after `git gc`. Three words: one that only an old message holds (far
behind any window), one that every discovery holds (most of the bus), and one that nothing holds.
Before timing, each command must return exactly the expected messages, newest first. Timed as a
person would run it: whole processes, the order rotating every repetition (measure.cli_times). The
floor is git's own scan, `git log -i -F --grep WORD <every bus tip>`, which both commands start with.
Run alone, `python bench/search.py [--quick]` builds its own buses and prints the figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import helpers
import synth
from measure import Command, Series, cli_times, verdict

from gitbus.message import Kind, Message

SEARCH_GOAL = 1.0  # seconds, whole process
GOAL_MESSAGES = 100_000
LAYOUTS = {"loose": "loose objects", "gc": "after `git gc`"}
SEARCH_N, LOG_N = 50, 20  # what `gitbus search` and `gitbus log` print by default
COMMANDS = ("search", "log --grep")


@dataclass(frozen=True)
class Word:
    label: str
    text: str
    hits: int  # messages whose text holds it (any case)


@dataclass(frozen=True)
class SearchBench:
    messages: int
    agents: int
    reps: int
    words: tuple[Word, ...]
    times: dict[str, dict[str, Series]]  # layout -> label (see `_label`) -> seconds
    builds: dict[str, float] = field(default_factory=dict)  # layout -> the first search (builds the index)

    def worst(self, command: str, word: Word) -> float:
        """The slower layout's median for `command` and `word`."""
        return max(t[_label(command, word)].median for t in self.times.values())


def _label(command: str, word: Word) -> str:
    return f"{command} {word.label}"


FLOOR = "git log --grep"


def words(msgs: Sequence[Message]) -> tuple[Word, ...]:
    """A word deep in history that one message holds, one most messages hold, one none holds."""
    old = next(i for i, m in enumerate(msgs) if i >= len(msgs) // 10 and m.kind is Kind.DISCOVERY)
    out = []
    for label, text in (
        ("in one old message", f"finding {old}:"),
        ("in every discovery", "retries"),
        ("in no message", "xylophone"),
    ):
        out.append(Word(label, text, sum(text.casefold() in m.text.casefold() for m in msgs)))
    return tuple(out)


def _run(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> str:
    proc = subprocess.run(list(argv), cwd=cwd, env=dict(env), capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode()


def _tips(root: Path, env: Mapping[str, str]) -> list[str]:
    return _run(["git", "for-each-ref", "--format=%(objectname)", "refs/bus/"], root, env).split()


def verify(gitbus: str, root: Path, env: Mapping[str, str], msgs: Sequence[Message], w: Word) -> None:
    """Both commands must print exactly the newest messages holding `w.text`, newest first."""
    newest = [
        m.id
        for m in sorted(msgs, key=lambda m: (m.time, m.id), reverse=True)
        if w.text.casefold() in m.text.casefold()
    ]
    for argv, n in (([gitbus, "search", w.text], SEARCH_N), ([gitbus, "log", "--grep", w.text], LOG_N)):
        got = [m["id"] for m in json.loads(_run([*argv, "--json"], root, env))]
        if got != newest[:n]:
            raise AssertionError(f"{' '.join(argv[1:])} in {root} printed {got[:5]}…, expected {newest[:5]}…")


def search_bench(
    buses: Mapping[str, Path], env: Mapping[str, str], gitbus: str, messages: int, agents: int, reps: int
) -> SearchBench:
    """Time both commands on each bus (layout -> root) built from `synth.messages(messages, agents)`.

    The messages are made again here: their ids and texts depend only on the seed, not on the time."""
    msgs = synth.messages(messages, agents, end_ms=time.time_ns() // 1_000_000)
    ws = words(msgs)
    cmds = []
    builds: dict[str, float] = {}
    for layout, root in buses.items():
        t0 = time.perf_counter()  # the very first search on this bus builds the search index
        _run([gitbus, "search", ws[0].text, "--json"], root, env)
        builds[layout] = time.perf_counter() - t0
        for w in ws:
            verify(gitbus, root, env, msgs, w)
            cmds.append(Command(f"{layout}|{_label('search', w)}", (gitbus, "search", w.text), root))
            cmds.append(
                Command(f"{layout}|{_label('log --grep', w)}", (gitbus, "log", "--grep", w.text), root)
            )
        floor = ("git", "log", "--format=%H", "-i", "-F", f"--grep={ws[0].text}", *_tips(root, env), "--")
        cmds.append(Command(f"{layout}|{FLOOR}", floor, root))
    got = cli_times(cmds, reps, env)
    times: dict[str, dict[str, Series]] = {layout: {} for layout in buses}
    for key, series in got.items():
        layout, label = key.split("|", 1)
        times[layout][label] = series
    return SearchBench(messages, agents, reps, ws, times, builds)


# -- the report's lines ------------------------------------------------------------------------------


def _s(s: Series) -> str:
    return f"{s.median:,.2f} s | {s.lo:,.2f} – {s.hi:,.2f}"


def goal_rows(b: SearchBench) -> list[str]:
    rows = []
    for command in COMMANDS:
        for w in b.words[:2]:
            each = " · ".join(
                f"{b.times[layout][_label(command, w)].median:.2f} s {layout}" for layout in b.times
            )
            ok = verdict(b.worst(command, w) <= SEARCH_GOAL)
            rows.append(
                f"| `gitbus {command} WORD`, a word {w.label}, {b.messages:,} messages, "
                f"whole process ≤ {SEARCH_GOAL:g} s | {each} | {ok} |"
            )
    return rows


def section(b: SearchBench, number: int) -> list[str]:
    out = [
        f"## {number}. Search at {b.messages:,} messages",
        "",
        f"The buses of section 3 ({b.messages:,} messages over {b.agents} agent chains, as loose objects "
        "and after `git gc`). `gitbus search WORD` and `gitbus log --grep WORD` read the whole history, "
        "not a window, through the search index (`gitbus.searchindex`: one file of every message's folded "
        "text, brought up to the bus tips before each search by reading only what is new, rebuilt from "
        "the chains if lost): one pass over it finds the candidates, and gitbus reads from git only those "
        "it prints, keeping messages whose text holds the word (a word only in a trailer, such as the "
        "sender's name, does not match). Before timing, each command printed exactly the expected "
        "messages, newest first. Whole-process wall time, "
        f"{b.reps} repetitions, the order of all commands rotating (`bench/search.py`).",
        "",
        "| word | messages holding it | command | "
        + " | ".join(f"{LAYOUTS[layout]} median | min – max" for layout in b.times)
        + " |",
        "|---|---:|---|" + "---:|---|" * len(b.times),
    ]
    for w in b.words:
        for command in COMMANDS:
            cells = " | ".join(_s(b.times[layout][_label(command, w)]) for layout in b.times)
            out.append(f"| `{w.text}` ({w.label}) | {w.hits:,} | `gitbus {command}` | {cells} |")
    floor = " | ".join(_s(b.times[layout][FLOOR]) for layout in b.times)
    out += [
        f"| `{b.words[0].text}` | {b.words[0].hits:,} | for scale: `git log -i -F --grep` alone | {floor} |",
        "",
        "The first search on a bus builds the index, once: "
        + ", ".join(f"{s:,.1f} s {LAYOUTS[layout]}" for layout, s in b.builds.items())
        + " (whole process; later ones add only what is new). The `git log --grep` row is the scan "
        "gitbus used before the index: it inflates every commit message, which loose objects make slow.",
        "",
    ]
    return out


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    n = 10_000 if quick else GOAL_MESSAGES
    with helpers.workdir() as work:
        env = helpers.hermetic_env(work / "home")
        msgs = synth.messages(n, 8, end_ms=time.time_ns() // 1_000_000 - 60_000)
        buses = {}
        for layout in LAYOUTS:
            buses[layout] = work / f"bus-{layout}"
            synth.build(buses[layout], synth.fast_import_stream(msgs), env, layout=layout)
        b = search_bench(buses, env, helpers.gitbus_exe(), n, 8, 3 if quick else 5)
    print("\n".join([*goal_rows(b), "", *section(b, 7)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
