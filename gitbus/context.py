"""The context file: what an agent should know now, kept current in its worktree by the watcher.

`<worktree>/.gitbus/context.md`, ignored through `<common>/info/exclude` so `git status` stays clean,
written atomically. One view of the recent bus is read per update and rendered for every worktree,
so the cost of an update does not grow with the number of agents.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from gitbus import agents, ledger
from gitbus import paths as P
from gitbus.chains import history
from gitbus.claims import Claim, all_claims
from gitbus.clock import hhmm
from gitbus.delegation import state_of
from gitbus.errors import GitbusError
from gitbus.git import Repository
from gitbus.gitfiles import locate
from gitbus.ids import AGENTS_PREFIX, EVERYONE, LEDGER_REF, AgentName
from gitbus.message import Kind, Message, quote

FILE = Path(".gitbus") / "context.md"
EXCLUDE_LINE = "/.gitbus/"
WINDOW = 500  # recent messages read per update
MAX_CHARS = 8000  # the whole file, pointer included
POINTER = "More: `gitbus inbox`, `gitbus log`, `gitbus status`.\n"
CUT = "\n- …"  # ends a file that was cut to MAX_CHARS


@dataclass(frozen=True)
class View:
    """The part of the bus every context file is rendered from."""

    now: int
    claims: list[Claim]
    recent: list[Message]  # newest first
    open_requests: list[Message]


def read_view(repo: Repository, now: int) -> View:
    tips = repo.refs(AGENTS_PREFIX)
    led = repo.ref(LEDGER_REF)
    if led:
        tips[LEDGER_REF] = led
    recent = [e.message for e in islice(history(repo, tips), WINDOW)]
    state = ledger.current(repo)
    requests = [
        m
        for m in recent
        if m.kind is Kind.REQUEST and ((s := state_of(state, m.id)) is None or s.done_at is None)
    ]
    return View(now, all_claims(state), recent, requests)


def render(view: View, me: AgentName, root: Path, changed: list[str], ignorecase: bool) -> str:
    """The context file for agent `me`: facts, newest first, capped in size."""
    now, lines = view.now, [f"# gitbus context for agent {me}", ""]
    lines.append(
        f"You are agent **{me}** in worktree `{root}`. Updated {hhmm(now)}; this file is rewritten "
        "by `gitbus watch` as the bus changes. Text in quotes is other agents' words."
    )
    mine = [c for c in view.claims if c.owner == me]
    others = [c for c in view.claims if c.owner != me and c.live(now)]
    lines += ["", "## My claims"] + ([f"- {c.describe(now)}" for c in mine] or ["- none"])
    lines += ["", "## Others' claims (edits there are refused)"]
    lines += [f"- {c.describe(now)}" for c in others] or ["- none"]
    answered = {m.reply_to for m in view.recent if m.kind is Kind.ANSWER}
    open_qs = [
        m
        for m in view.recent
        if m.kind is Kind.QUESTION and m.id not in answered and m.sender != me and m.to in (EVERYONE, me)
    ]
    lines += ["", "## Open questions to me or to all"]
    lines += [
        f"- [{m.id[:8]}] {m.sender} asks{' me' if m.to == me else ''}: {quote(m.text, 200)}" for m in open_qs
    ]
    if not open_qs:
        lines.append("- none")
    mine_qs = {m.id for m in view.recent if m.kind is Kind.QUESTION and m.sender == me}
    answers = [m for m in view.recent if m.kind is Kind.ANSWER and m.reply_to in mine_qs]
    lines += ["", "## Answers to my questions"]
    lines += [f"- {m.sender} on [{(m.reply_to or '')[:8]}]: {quote(m.text, 200)}" for m in answers] or [
        "- none"
    ]
    lines += ["", "## Open requests"]
    lines += [
        f"- [{m.id[:8]}] from {m.sender}{' to me' if m.to == me else ''}: {quote(m.text, 200)}"
        for m in view.open_requests
        if m.to in (EVERYONE, me)
    ] or ["- none"]
    near = [c.path for c in mine] + changed
    found = [m for m in view.recent if m.kind is Kind.DISCOVERY and m.sender != me]
    found.sort(key=lambda m: not any(P.overlaps(p, q, ignorecase) for p in m.paths for q in near))
    lines += ["", "## Recent discoveries (touching my paths first)"]
    lines += [
        f"- {m.sender}{' on ' + ', '.join(m.paths) if m.paths else ''}: {quote(m.text, 200)}"
        for m in found[:20]
    ] or ["- none"]
    text, tail = "\n".join(lines), "\n\n" + POINTER
    if len(text) + len(tail) > MAX_CHARS:  # cut at a line end, say so, and keep the pointer
        budget = MAX_CHARS - len(tail) - len(CUT)
        text = text[: budget + 1].rsplit("\n", 1)[0] + CUT
    return text + tail


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
    try:
        if target.read_text() == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    target.parent.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".context-")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
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


def update_all(
    repo: Repository,
    now: int,
    env: dict[str, str] | None = None,
    on_problem: Callable[[str], None] | None = None,
) -> list[Path]:
    """Rewrite the context file of every worktree; the ones that changed are returned.

    A worktree that cannot be updated (its file cannot be written, its agent name setting is bad)
    is skipped so the others still are; each such problem is passed to `on_problem` as a sentence."""
    ensure_excluded(repo.common_dir)
    view = read_view(repo, now)
    written: list[Path] = []
    for wt in repo.worktrees():
        try:
            place = locate(wt)
            if place is None:
                continue
            me = agents.resolve(place, None, env or {})
            if write(wt, render(view, me, wt, changed_paths(repo, wt), repo.ignorecase)):
                written.append(wt)
        except (GitbusError, OSError) as e:
            if on_problem and wt.is_dir():  # a worktree removed meanwhile is no problem
                on_problem(f"the context file of {wt} was not updated: {_reason(e)}")
    return written


def _reason(e: Exception) -> str:
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return str(e)
