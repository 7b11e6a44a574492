"""The context file: what an agent should know now, kept current in its worktree by the watcher.

`<worktree>/.gitbus/context.md`, ignored through `<common>/info/exclude` so `git status` stays clean,
written atomically. One view of the recent bus is read per update and rendered for every worktree,
so the cost of an update does not grow with the number of agents. Peer strings are written inert
(`delivery`'s facts and `gitbus.inert`): an agent reads this file as part of its instructions.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from itertools import accumulate
from pathlib import Path

from gitbus import agents
from gitbus import paths as P
from gitbus.board import Board, unknown_claims
from gitbus.board import read as read_board
from gitbus.claims import Claim
from gitbus.clock import hhmm
from gitbus.delivery import claim_fact, name, path_list
from gitbus.errors import GitbusError
from gitbus.git import Repository
from gitbus.gitfiles import Location, Oid, locate
from gitbus.ids import EVERYONE, AgentName
from gitbus.inert import inert, quoted
from gitbus.message import Kind, Message

FILE = Path(".gitbus") / "context.md"
EXCLUDE_LINE = "/.gitbus/"
WINDOW = 500  # recent messages read per update
MAX_CHARS = 8000  # the whole file, pointer included
POINTER = "More: `gitbus inbox`, `gitbus log`, `gitbus status`.\n"
MAX_DISCOVERIES = 20
# Sections by what an agent must not miss: its claims, questions to it, answers to its questions,
# others' claims, open requests, discoveries (indices into the sections as `render` lists them).
PRIORITY = (0, 2, 3, 1, 4, 5)
ROUNDS = (1, 3, 10, sys.maxsize)  # entries per section, raised round by round while room is left


@dataclass(frozen=True)
class View:
    """The part of the bus every context file is rendered from (a `Board`, as lists)."""

    now: int
    claims: list[Claim]
    recent: list[Message]  # newest first
    open_requests: list[Message]
    source: Board | None = None  # the read it was made from

    @cached_property
    def board(self) -> Board:
        return self.source or Board(self.now, tuple(self.recent), tuple(self.claims))

    @cached_property
    def _made(self) -> dict[object, str]:
        return {}

    def once(self, key: object, make: Callable[[], str]) -> str:
        """`make()`, made once per view: what every worktree's file shows alike (a peer's words,
        names and paths made inert, a claim's fact) is made once per update, not once per worktree
        (at 64 worktrees that was most of an update)."""
        made = self._made
        if key not in made:
            made[key] = make()
        return made[key]

    # What every file filters for its own agent, sorted out of `recent` once per view, not once per
    # worktree: at 64 worktrees four passes over 500 messages each were a fifth of an update.
    @cached_property
    def open_questions(self) -> list[Message]:
        return self.board.open_questions()

    @cached_property
    def asked(self) -> dict[str, set[str]]:
        """Each agent's questions in the window, by id."""
        out: dict[str, set[str]] = {}
        for m in self.recent:
            if m.kind is Kind.QUESTION:
                out.setdefault(m.sender, set()).add(m.id)
        return out

    @cached_property
    def answer_messages(self) -> list[Message]:
        return [m for m in self.recent if m.kind is Kind.ANSWER]

    @cached_property
    def discoveries(self) -> list[tuple[int, Message]]:
        """The discoveries in the window, with their indices into `recent`."""
        return [(i, m) for i, m in enumerate(self.recent) if m.kind is Kind.DISCOVERY]

    @cached_property
    def _keys(self) -> dict[tuple[str, bool], tuple[str, ...]]:
        return {}

    def key(self, path: str, ignorecase: bool) -> tuple[str, ...]:
        """`paths.key(path, ignorecase)`, made once per view (every file ranks the same claims)."""
        got = self._keys.get((path, ignorecase))
        if got is None:
            got = self._keys[(path, ignorecase)] = P.key(path, ignorecase)
        return got

    @cached_property
    def _paths(self) -> dict[bool, tuple[dict[tuple[str, ...], set[int]], dict[tuple[str, ...], set[int]]]]:
        return {}

    def touching(self, near: list[str], ignorecase: bool) -> set[int]:
        """The indices into `recent` of the messages naming a path that overlaps one of `near`
        (`paths.overlaps`), found through an index of every recent message's paths made once per
        view, so ranking costs each worktree a few lookups, not a comparison per message."""
        if ignorecase not in self._paths:
            below: dict[tuple[str, ...], set[int]] = {}  # every prefix of a path -> its messages
            exact: dict[tuple[str, ...], set[int]] = {}  # every whole path -> its messages
            for i, m in enumerate(self.recent):
                for p in m.paths:
                    k = P.key(p, ignorecase)
                    exact.setdefault(k, set()).add(i)
                    for n in range(1, len(k) + 1):
                        below.setdefault(k[:n], set()).add(i)
            self._paths[ignorecase] = (below, exact)
        below, exact = self._paths[ignorecase]
        out: set[int] = set()
        for q in near:
            k = P.key(q, ignorecase)
            out |= below.get(k, set())  # paths at or below q
            for n in range(1, len(k)):
                out |= exact.get(k[:n], set())  # paths above q
        return out


def read_view(repo: Repository, now: int, tips: Mapping[str, Oid] | None = None) -> View:
    """The recent bus up to `tips` (default: as it is now) and the claims as they are now."""
    b = read_board(repo, now, WINDOW, tips)
    return View(now, list(b.claims), list(b.recent), [r.message for r in b.open_requests()], b)


@dataclass(frozen=True)
class Section:
    """One `##` section: its entries in display order, and which of them matter most."""

    title: str
    entries: list[str]
    more: str  # the command that lists the rest
    rank: list[int] | None = None  # indices into `entries`, most important first (None: in order)
    most: int | None = None  # never more than this many, however much room is left
    ids: list[str] | None = None  # the message behind each entry, where there is one
    unlisted: int = 0  # entries past `most`, left out of `entries` and counted in the "N more" line

    def ranked(self, n: int) -> list[int]:
        """The indices of the `n` entries that matter most."""
        return self.rank[:n] if self.rank is not None else list(range(min(n, len(self.entries))))

    def lines(self, shown: int) -> list[str]:
        if not self.entries:
            return ["", f"## {self.title}", "- none"]
        picked = [self.entries[i] for i in sorted(self.ranked(shown))]
        return ["", f"## {self.title}", *picked, *_more(len(self.entries) + self.unlisted - shown, self.more)]


def _more(n: int, command: str) -> list[str]:
    return [f"- … and {n} more: `{command}`"] if n > 0 else []


def render(view: View, me: AgentName, root: Path, changed: list[str], ignorecase: bool) -> str:
    """The context file for agent `me`: facts, newest first, within `MAX_CHARS` (pointer included)."""
    updated = view.once("now", lambda: hhmm(view.now))
    head = [
        f"# gitbus context for agent {me}",
        "",
        f"You are agent **{me}** in worktree `{root}`. Updated {updated}; this file is rewritten "
        "by `gitbus watch` as the bus changes. Text in quotes is other agents' words.",
    ]
    tail = ["", POINTER]
    body, _ = _fitted(sections(view, me, changed, ignorecase), MAX_CHARS - len("\n".join(head + tail)))
    return "\n".join(head + body + tail)


def brief(
    view: View, me: AgentName, changed: list[str], ignorecase: bool, room: int
) -> tuple[str, list[str]]:
    """What an agent should know now, as the context file's sections within `room` characters (the
    empty ones left out), and the ids of the questions and requests it names (for a session that
    starts knowing them)."""
    lines, ids = _fitted(sections(view, me, changed, ignorecase), room, empty=False)
    return "\n".join(lines).strip("\n"), ids


def _fitted(secs: list[Section], room: int, empty: bool = True) -> tuple[list[str], list[str]]:
    """The lines of `secs` fitted to `room` (sections with nothing in them only with `empty`)."""
    shown = _fit(secs, room)
    lines = [
        line for sec, n in zip(secs, shown, strict=True) if empty or sec.entries for line in sec.lines(n)
    ]
    ids = [sec.ids[i] for sec, n in zip(secs, shown, strict=True) if sec.ids for i in sec.ranked(n)]
    return lines, ids


def sections(view: View, me: AgentName, changed: list[str], ignorecase: bool) -> list[Section]:
    """Everything an agent should know now, section by section, most important entries ranked first:
    its claims, others' claims (touching its paths first), questions to it, answers to its
    questions, open requests, and discoveries (touching its claimed and changed paths first)."""
    now = view.now
    mine = [c for c in view.claims if c.owner == me]
    near = [c.path for c in mine] + changed
    near_keys = [view.key(p, ignorecase) for p in near]

    def touches_mine(path: str) -> bool:
        k = view.key(path, ignorecase)
        return any(P.keys_overlap(k, q) for q in near_keys)

    def claim(c: Claim) -> str:  # by identity: the view holds its claims, and hashing one is slow
        return view.once(("claim", id(c)), lambda: f"- {claim_fact(c, now)}")

    def said(m: Message) -> str:  # the peer's words, quoted
        return view.once(("said", m.id), lambda: quoted(m.text, 200))

    def who(m: Message) -> str:
        return view.once(("who", m.id), lambda: name(m.sender))

    def short(text: str) -> str:
        return view.once(("id", text), lambda: inert(text[:8]))

    def found_line(m: Message) -> str:
        def make() -> str:
            on = " on " + path_list(m.paths) if m.paths else ""
            return f"- {who(m)}{on}: {said(m)}"

        return view.once(("found", m.id), make)

    others = [c for c in view.claims if c.owner != me and c.live(now)]
    if near:
        others.sort(key=lambda c: not touches_mine(c.path))
    open_qs = [m for m in view.open_questions if m.sender != me and m.to in (EVERYONE, me)]
    mine_qs = view.asked.get(me, set())
    answers = [m for m in view.answer_messages if m.reply_to in mine_qs] if mine_qs else []
    requests = [m for m in view.open_requests if m.to in (EVERYONE, me)]
    found = [(i, m) for i, m in view.discoveries if m.sender != me]
    if near:  # those touching my paths first, each part in bus order
        touching = view.touching(near, ignorecase)
        found = [im for im in found if im[0] in touching] + [im for im in found if im[0] not in touching]
    # Claims that could not all be read are unknown, not none: said first in both claims sections.
    why = view.board.claims_unknown
    unknown = [view.once("unknown", lambda: f"- {unknown_claims(why)}")] if why is not None else []
    return [  # in the order of the file
        Section("My claims", [*unknown, *(claim(c) for c in mine)], "gitbus claims"),
        Section(
            "Others' claims (edits there are refused)",
            [*unknown, *(claim(c) for c in others)],
            "gitbus claims",
        ),
        Section(
            "Open questions to me or to all",
            [f"- [{short(m.id)}] {who(m)} asks{' me' * (m.to == me)}: {said(m)}" for m in open_qs],
            "gitbus status",
            _to_me_first(open_qs, me),
            ids=[m.id for m in open_qs],
        ),
        Section(
            "Answers to my questions",
            [f"- {who(m)} on [{short(m.reply_to or '')}]: {said(m)}" for m in answers],
            "gitbus inbox",
        ),
        Section(
            "Open requests",
            [f"- [{short(m.id)}] from {who(m)}{' to me' * (m.to == me)}: {said(m)}" for m in requests],
            "gitbus status",
            _to_me_first(requests, me),
            ids=[m.id for m in requests],
        ),
        Section(
            "Recent discoveries (touching my paths first)",
            [found_line(m) for _, m in found[:MAX_DISCOVERIES]],  # never more are shown
            "gitbus log",
            most=MAX_DISCOVERIES,
            unlisted=max(0, len(found) - MAX_DISCOVERIES),
        ),
    ]


def _to_me_first(msgs: list[Message], me: AgentName) -> list[int]:
    return sorted(range(len(msgs)), key=lambda i: msgs[i].to != me)


def _fit(sections: list[Section], room: int) -> list[int]:
    """How many entries of each section to show in `room` characters.

    Every section gets its most important entry first, then up to 3, then 10, then all that fit;
    within a round, sections go in `PRIORITY` order. The rest of a section is one "N more" line, so
    a long list (others' claims, say) can never push a later section out of the file."""
    sizes = [_sizes(sec) for sec in sections]  # sizes[i][k]: section i's lines with k entries shown
    shown = [0] * len(sections)
    used = sum(size[0] for size in sizes)
    for limit in ROUNDS:
        for i in PRIORITY:
            total, size, k = len(sections[i].entries), sizes[i], shown[i]
            upto = min(total, limit, sections[i].most or total)
            others = used - size[k]
            while k < upto and others + size[k + 1] <= room:
                k += 1
            if upto == total and others + size[total] <= room:  # the last one replaces "1 more"
                k = total
            shown[i], used = k, others + size[k]
    return shown


def _sizes(sec: Section) -> list[int]:
    """The characters (newlines included) of `sec` with 0, 1, … all of its entries shown."""
    if not sec.entries:
        return [_chars(sec.lines(0))]
    n, title = len(sec.entries), _chars(sec.lines(0)[:2])
    total = n + sec.unlisted
    picked = list(accumulate((len(sec.entries[i]) + 1 for i in sec.ranked(n)), initial=0))
    more = _chars(_more(1, sec.more)) - len("1")  # the "N more" line, less N's digits
    return [title + picked[k] + (more + len(str(total - k)) if k < total else 0) for k in range(n + 1)]


def _chars(lines: list[str]) -> int:
    return sum(len(line) + 1 for line in lines)


def ensure_excluded(common_dir: Path) -> None:
    """Add `/.gitbus/` to `info/exclude` (shared by every worktree) once."""
    f = common_dir / "info" / "exclude"
    f.parent.mkdir(parents=True, exist_ok=True)
    current = f.read_text() if f.exists() else ""
    if EXCLUDE_LINE not in current.splitlines():
        with f.open("a") as out:
            out.write(("" if current.endswith("\n") or not current else "\n") + EXCLUDE_LINE + "\n")


def write(worktree: Path, text: str) -> bool:
    """Replace the worktree's context file atomically; False if it already says exactly this.

    Raises OSError when the worktree cannot take it (e.g. `.gitbus` is a file, or no space left)."""
    target = worktree / FILE
    data = text.encode()
    try:
        with open(target, "rb") as now:
            if now.read(len(data) + 1) == data:
                return False
    except OSError:
        pass
    target.parent.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".context-")
    try:
        with os.fdopen(fd, "wb") as out:  # bytes: no text layer to build, 64 files an update
            out.write(data)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


def changed_paths(repo: Repository, worktree: Path) -> list[str]:
    """Files this worktree has changed and not committed (for ranking discoveries).

    `git status` with optional locks off: a refreshing `git diff` rewrites the worktree's index
    under `index.lock`, which makes the agent's own `git add` or `git commit` there fail."""
    out = repo.git(
        "--no-optional-locks",
        "-C",
        str(worktree),
        "status",
        "--porcelain",
        "-z",
        "--untracked-files=no",
        "--no-renames",
        check=False,
    )
    return [entry[3:] for entry in out.split("\0") if len(entry) > 3][:200]


class ChangedPaths:
    """`changed_paths` per worktree, remembered for `ttl` seconds.

    They only rank discoveries, while a `git status` per worktree is most of an update's time with
    many worktrees (64 of them: ~180 ms): a watcher reuses them across the updates of a burst of
    posts. With `stale_ok`, an update never waits for them once a worktree has been looked at: a
    value past `ttl` is still used, and the worktree is listed in `stale()` for the caller to
    `refresh` off the update's path (the watcher does, on a thread of its own), so a file edit
    reaches the ranking at the first update after that refresh. Without it, a value past `ttl` is
    looked up again at once."""

    def __init__(self, ttl: float = 5.0, stale_ok: bool = False) -> None:
        self.ttl, self.stale_ok = ttl, stale_ok
        self._seen: dict[Path, tuple[float, list[str]]] = {}

    def __call__(self, repo: Repository, worktree: Path) -> list[str]:
        hit = self._seen.get(worktree)
        if hit is None or (not self.stale_ok and time.monotonic() - hit[0] >= self.ttl):
            hit = (time.monotonic(), changed_paths(repo, worktree))
            self._seen[worktree] = hit
        return hit[1]

    def stale(self) -> list[Path]:
        """The worktrees whose remembered value is older than `ttl`."""
        now = time.monotonic()
        return [wt for wt, (when, _) in list(self._seen.items()) if now - when >= self.ttl]

    def refresh(self, repo: Repository, worktrees: list[Path]) -> None:
        """Look `worktrees` up again (each entry is replaced whole: safe beside a reader thread)."""
        for wt in worktrees:
            if wt in self._seen:
                self._seen[wt] = (time.monotonic(), changed_paths(repo, wt))

    def forget_except(self, worktrees: list[Path]) -> None:
        """Drop what is remembered of worktrees that are gone."""
        keep = set(worktrees)
        self._seen = {wt: v for wt, v in list(self._seen.items()) if wt in keep}


def update_all(
    repo: Repository,
    now: int,
    env: dict[str, str] | None = None,
    on_problem: Callable[[str], None] | None = None,
    *,
    worktrees: list[Path] | None = None,
    changed: Callable[[Repository, Path], list[str]] = changed_paths,
    place: Callable[[Path], Location | None] = locate,
) -> list[Path]:
    """Rewrite the context file of every worktree (or of `worktrees`, the caller's listing); the
    ones that changed are returned.

    A worktree that cannot be updated (its file cannot be written, its agent name setting is bad)
    is skipped so the others still are; each such problem is passed to `on_problem` as a sentence.
    `changed` and `place` find a worktree's changed files and git dirs (a watcher passes its own,
    remembered while its listing of worktrees stands)."""
    ensure_excluded(repo.common_dir)
    view = read_view(repo, now)
    texts: list[tuple[Path, str]] = []
    problems: dict[Path, Exception] = {}
    for wt in repo.worktrees() if worktrees is None else worktrees:
        try:
            where = place(wt)
            if where is None:
                continue
            me = agents.resolve(where, None, env or {})
            texts.append((wt, render(view, me, wt, changed(repo, wt), repo.ignorecase)))
        except (GitbusError, OSError) as e:
            problems[wt] = e
    written: list[Path] = []
    for (wt, _), outcome in zip(texts, _write_all(texts), strict=True):
        if isinstance(outcome, OSError):
            problems[wt] = outcome
        elif outcome:
            written.append(wt)
    for wt, problem in problems.items():
        if on_problem and wt.is_dir():  # a worktree removed meanwhile is no problem
            on_problem(f"the context file of {wt} was not updated: {_reason(problem)}")
    return written


WRITERS = 8  # context files written at once


def _write_all(texts: list[tuple[Path, str]]) -> list[bool | OSError]:
    """`write` each (worktree, text), several at once: a rename over an existing file waits for the
    disk (ext4 starts writing the new file's data then, and frees the old file's blocks, a discard
    on some mounts: ~2 ms each on this machine's), so 64 files one after another took most of an
    update. The result of each, in order: written or not, or the error that stopped it."""

    def one(job: tuple[Path, str]) -> bool | OSError:
        try:
            return write(*job)
        except OSError as e:
            return e

    if len(texts) < 3:
        return [one(job) for job in texts]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(WRITERS, len(texts)), thread_name_prefix="gitbus-context") as pool:
        return list(pool.map(one, texts))


def _reason(e: Exception) -> str:
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return str(e)
