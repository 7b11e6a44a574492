"""A path's story and a commit's note: the bus's messages and the code's commits, read together.

`note_for_commit` is what the post-commit hook attaches to a commit (who committed, the claims it
held over the changed files, what it posted and answered since its previous commit); `story` is the
history of one path: its claims, discoveries, questions and answers interleaved in time with the
commits that changed it and their notes. Both read through a `Bus`; the notes ref itself is
`gitbus.notes`, searching the whole history `gitbus.searchindex`.

A note, like a commit message, may be a peer's words, so `git log` is asked for ids and times only
and each commit and note is then read by id as one string: no separator inside either can start a
record of its own. A note is read to 64 KiB at most and held to the text rules of a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gitbus import notes
from gitbus import paths as P
from gitbus.chains import history
from gitbus.errors import GitbusError
from gitbus.gitfiles import Oid, is_oid
from gitbus.gitobjects import commits_read_once
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
    # Only ids and times come out of git log: no text of a peer's can pose as a record there.
    code, out, _ = repo.git_result(
        "log", "--first-parent", f"-{_LOOKBACK}", "--format=%H %at", f"{commit}^", "--"
    )  # author time: a rebase or an amend keeps it
    try:
        tree = notes.tree(repo)
    except GitbusError:
        tree = None  # a damaged notes ref: no previous note to go by (writing the note says why)
    mark, first = f"gitbus: committed by agent {agent}", None
    for oid, when in _ids_and_times(out if code == 0 else ""):
        at = when * 1000
        if first is None:
            first = at
        note = _read_note(repo, tree, oid)
        if note is not None and unsafe(note.text) is None and mark in note.text.split("\n"):
            return at, _listed(note.text)
    return first, set()


def _ids_and_times(out: str) -> list[tuple[Oid, int]]:
    """The `%H %at` lines of a `git log`, as (commit, seconds)."""
    found = []
    for line in out.split("\n"):
        oid, _, when = line.partition(" ")
        if is_oid(oid) and when.isdigit():
            found.append((Oid(oid), int(when)))
    return found


def _read_note(repo: Repository, tree: Oid | None, commit: Oid) -> notes.Note | None:
    """The note on `commit` (None: none, or it cannot be read: counted in `repo.skipped`)."""
    if tree is None:
        return None
    try:
        return notes.read(repo, tree, commit)
    except GitbusError as e:
        repo.skipped[f"note {commit}"] = str(e)
        return None


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
    note_bytes: int = 0  # the whole note's size: `note` holds at most `notes.SHOWN_BYTES` of it
    note_cut: bool = False


def story(bus: Bus, path: str, rev: str = "HEAD") -> list[Event]:
    """Claims, releases, discoveries, questions and answers touching `path`, and the commits that
    changed it with their notes, interleaved in time (oldest first)."""
    norm = bus.paths([path])[0]
    events = [Event(m.time, message=m) for m in bus.log(None, path=norm)]
    # Answers inherit their question's paths, so they are already in; add replies without paths too.
    asked = {e.message.id for e in events if e.message and e.message.kind is Kind.QUESTION}
    events += [Event(m.time, message=m) for m in history_replies(bus, asked)]
    repo = bus.repo
    posted = {e.message.id[:8]: e.time for e in events if e.message}
    try:
        tree = notes.tree(repo)
    except GitbusError as e:
        repo.skipped[NOTES_REF] = str(e)
        tree = None
    for oid in reversed(_changed(repo, rev, norm.rstrip("/") or ".")):  # same second: oldest first
        try:
            when, author, subject = repo.commit_header(oid)
        except GitbusError as e:  # git listed it, so it is there: a repository losing objects
            repo.skipped[f"commit {oid}"] = str(e)
            continue
        note = _read_note(repo, tree, oid)
        if note is not None and unsafe(note.text) is not None:
            # A note is anyone's words (notes travel with the bus): held to the text rules, or left out.
            repo.skipped[f"note {oid}"] = "a coordination note with characters gitbus refuses"
            note = None
        text = note.text.strip() if note else ""
        if note is not None and note.unread:  # said in our words, with the way to read it anyway
            how = f"git notes --ref=gitbus show {oid[:12]} reads it"
            text = f"(note of {note.size:,} bytes, too large to show: {how})"
        # git stamps whole seconds: a commit is placed after the posts its note lists from its second.
        second = when * 1000
        listed = [posted[i] for i in _listed(text) if i in posted]
        events.append(
            Event(
                max([second, *(t for t in listed if t < second + 1000)]),
                commit=oid,
                author=author,
                subject=subject,
                note=text,
                note_bytes=note.size if note else 0,
                note_cut=note.cut and not note.unread if note else False,  # one line says so instead
            )
        )
    unique = {(e.message.id if e.message else e.commit): e for e in events}
    return sorted(unique.values(), key=lambda e: e.time)


def _changed(repo: Repository, rev: str, path: str) -> list[Oid]:
    """The commits of `rev` that changed `path`, newest first: ids only, so nothing a commit or a
    note says can pose as another commit (their words are read by id, each as one string). None
    when `rev` has no commit yet; git's failure otherwise is counted in `repo.skipped`."""
    code, out, err = repo.git_result("log", "--format=%H", rev, "--", path)
    if code != 0:
        if repo.git_result("rev-parse", "--verify", "-q", f"{rev}^{{commit}}")[0] != 0:
            return []  # a branch with no commit yet: no history to show
        lines = err.strip().splitlines()
        repo.skipped[f"git log {rev}"] = f"git log failed ({lines[-1] if lines else code}); no commits shown"
        return []
    return [Oid(line) for line in out.split("\n") if is_oid(line)]


def left_out(repo: Repository) -> str | None:
    """One line on what a path's story could not show (a damaged notes ref, notes left out), or
    None when it showed everything. Peer words in it are made inert by the face."""
    parts = []
    if NOTES_REF in repo.skipped:
        parts.append(f"{repo.skipped[NOTES_REF]}; commits are shown without notes")
    parts += [why for key, why in repo.skipped.items() if key.startswith(("git log ", "commit "))]
    bad = [why for key, why in repo.skipped.items() if key.startswith("note ")]
    if bad:
        parts.append(f"{len(bad)} note{'s' if len(bad) != 1 else ''} left out ({bad[0]})")
    return "; ".join(parts) + "." if parts else None


def history_replies(bus: Bus, questions: set[MessageId]) -> list[Message]:
    if not questions:
        return []
    with commits_read_once():  # the whole history: caching each commit would only hold memory
        return [
            e.message
            for e in history(bus.repo, bus.tips())
            if e.message.kind is Kind.ANSWER and e.message.reply_to in questions
        ]
