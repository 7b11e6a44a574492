"""A path's story and a commit's note: the bus's messages and the code's commits, read together.

`note_for_commit` is what the post-commit hook attaches to a commit (who committed, the claims it
held over the changed files, what it posted and answered since its previous commit); `story` is the
history of one path: its claims, discoveries, questions and answers interleaved in time with the
commits that changed it and their notes. Both read through a `Bus`; the notes ref itself is
`gitbus.notes`, searching the whole history `gitbus.searchindex`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gitbus import paths as P
from gitbus.chains import history
from gitbus.git import commits_read_once
from gitbus.ids import MessageId
from gitbus.inert import unsafe
from gitbus.message import Kind, Message
from gitbus.notes import NOTES_REF

if TYPE_CHECKING:
    from gitbus.bus import Bus
    from gitbus.git import Repository

_LOOKBACK = 200  # first-parent commits searched for the agent's previous one


def note_for_commit(bus: Bus, commit: str) -> str:
    """The note text for `commit`, made by this bus's agent: what it posted since its previous commit
    (the nearest first-parent ancestor it noted; else since the parent, when it has none)."""
    repo = bus.repo
    full = repo.git("rev-parse", "--verify", f"{commit}^{{commit}}").strip()
    changed = [
        p
        for p in repo.git("diff-tree", "--no-commit-id", "--name-only", "-r", "--root", full).splitlines()
        if p
    ]
    since, listed = _previous(repo, full, bus.agent)
    now = bus.clock.now_ms()
    held = [
        c
        for c in bus.claims(include_expired=True)
        if c.owner == bus.agent and any(P.covers(c.path, f, repo.ignorecase) for f in changed)
    ]
    mine = [
        m
        for m in bus.log(50, sender=bus.agent, since=since)
        if m.kind not in (Kind.RENEW, Kind.JOIN) and m.id[:8] not in listed
    ]
    lines = [f"gitbus: committed by agent {bus.agent}"]
    lines += [f"claim: {c.describe(now)}" for c in held]
    lines += [
        f"{'answered' if m.kind is Kind.ANSWER else 'posted'}: {m.id[:8]} {m.kind.value}: {m.summary()}"
        for m in reversed(mine)
    ]
    return "\n".join(lines) + "\n"


def _previous(repo: Repository, commit: str, agent: str) -> tuple[int | None, set[str]]:
    """Where `agent`'s note for `commit` starts: the time of its previous noted commit on the first-
    parent line (others' commits may lie between, after a rebase or a pull), and the ids that
    commit's note listed. git stamps whole seconds, so posts made in that commit's second, before
    it, are in range: its note says which of them it already listed. Without one: the parent."""
    out = repo.git(
        "log",
        "--first-parent",
        f"-{_LOOKBACK}",
        "--format=%x1e%H %at%n%N",  # author time: a rebase or an amend keeps it
        f"--notes={NOTES_REF}",
        f"{commit}^",
        "--",
        check=False,
    )
    mark, first = f"gitbus: committed by agent {agent}", None
    for record in out.split("\x1e")[1:]:
        head, _, note = record.partition("\n")
        _oid, _, when = head.partition(" ")
        if not when.strip().isdigit():
            continue
        at = int(when) * 1000
        if first is None:
            first = at
        if mark in note.splitlines():
            return at, _listed(note)
    return first, set()


def _listed(note: str) -> set[str]:
    """The message id prefixes a note lists as posted or answered."""
    return {
        line.split(" ", 2)[1]
        for line in note.splitlines()
        if line.startswith(("posted: ", "answered: ")) and len(line.split(" ", 2)) == 3
    }


@dataclass(frozen=True)
class Event:
    """One line of a path's story: a bus message or a commit (with its gitbus note)."""

    time: int
    message: Message | None = None
    commit: str | None = None
    author: str = ""
    subject: str = ""
    note: str = ""


def story(bus: Bus, path: str, rev: str = "HEAD") -> list[Event]:
    """Claims, releases, discoveries, questions and answers touching `path`, and the commits that
    changed it with their notes, interleaved in time (oldest first)."""
    norm = bus.paths([path])[0]
    events = [Event(m.time, message=m) for m in bus.log(None, path=norm)]
    # Answers inherit their question's paths, so they are already in; add replies without paths too.
    asked = {e.message.id for e in events if e.message and e.message.kind is Kind.QUESTION}
    events += [Event(m.time, message=m) for m in history_replies(bus, asked)]
    log = bus.repo.git(
        "log",
        "--notes=gitbus",
        "--format=%H%x1f%ct%x1f%an%x1f%s%x1f%N%x1e",
        rev,
        "--",
        norm.rstrip("/") or ".",
        check=False,
    )
    posted = {e.message.id[:8]: e.time for e in events if e.message}
    for record in log.split("\x1e"):
        parts = record.strip("\n").split("\x1f")
        if len(parts) == 5 and parts[0] and unsafe(parts[4]) is not None:
            # A note is anyone's words (notes travel with the bus): held to the text rules, or left out.
            bus.repo.skipped[f"note {parts[0]}"] = "a coordination note with characters gitbus refuses"
            parts[4] = ""
        if len(parts) == 5 and parts[0]:
            # git stamps whole seconds: a commit is placed after the posts its note lists from its second.
            second = int(parts[1]) * 1000
            listed = [posted[i] for i in _listed(parts[4]) if i in posted]
            events.append(
                Event(
                    max([second, *(t for t in listed if t < second + 1000)]),
                    commit=parts[0],
                    author=parts[2],
                    subject=parts[3],
                    note=parts[4].strip(),
                )
            )
    unique = {(e.message.id if e.message else e.commit): e for e in events}
    return sorted(unique.values(), key=lambda e: e.time)


def history_replies(bus: Bus, questions: set[MessageId]) -> list[Message]:
    if not questions:
        return []
    with commits_read_once():  # the whole history: caching each commit would only hold memory
        return [
            e.message
            for e in history(bus.repo, bus.tips())
            if e.message.kind is Kind.ANSWER and e.message.reply_to in questions
        ]
