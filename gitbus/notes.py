"""Coordination history beside the code: git notes under `refs/notes/gitbus`, a path's story, search.

When an agent commits, the post-commit hook attaches a note: who committed, the claims it held over
the changed files, what it posted and answered since its previous commit. `git log --notes=gitbus`
shows them. Notes are written through our own compare-and-swap on the notes ref, because concurrent
`git notes add` silently loses notes (field notes §3); two notes for one commit are concatenated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gitbus import paths as P
from gitbus.chains import history
from gitbus.errors import Contended, GitbusError
from gitbus.gitfiles import Oid, RefMoved
from gitbus.ids import AGENTS_PREFIX, LEDGER_REF, MessageId
from gitbus.message import Kind, Message, decode

if TYPE_CHECKING:
    from gitbus.bus import Bus
    from gitbus.git import Repository

NOTES_REF = "refs/notes/gitbus"
_RACES = 1000


def note_for_commit(bus: Bus, commit: str) -> str:
    """The note text for `commit`, made by this bus's agent."""
    repo = bus.repo
    full = repo.git("rev-parse", "--verify", f"{commit}^{{commit}}").strip()
    changed = [
        p
        for p in repo.git("diff-tree", "--no-commit-id", "--name-only", "-r", "--root", full).splitlines()
        if p
    ]
    parent_time = repo.git("log", "-1", "--format=%ct", f"{full}^", check=False).strip()
    since = int(parent_time) * 1000 if parent_time.isdigit() else None
    now = bus.clock.now_ms()
    held = [
        c
        for c in bus.claims(include_expired=True)
        if c.owner == bus.agent and any(P.covers(c.path, f, repo.ignorecase) for f in changed)
    ]
    mine = [m for m in bus.log(50, sender=bus.agent, since=since) if m.kind not in (Kind.RENEW, Kind.JOIN)]
    lines = [f"gitbus: committed by agent {bus.agent}"]
    lines += [f"claim: {c.describe(now)}" for c in held]
    lines += [
        f"{'answered' if m.kind is Kind.ANSWER else 'posted'}: {m.id[:8]} {m.kind.value}: {m.summary()}"
        for m in reversed(mine)
    ]
    return "\n".join(lines) + "\n"


def add(repo: Repository, commit: str, text: str, time_ms: int) -> None:
    """Attach `text` to `commit` as a gitbus note (appended to an existing one), by compare-and-swap."""
    full = Oid(repo.git("rev-parse", "--verify", f"{commit}^{{commit}}").strip())
    for _ in range(_RACES):
        tip = repo.ref(NOTES_REF)
        tree = repo.read_commit(tip).tree if tip else None
        old = _existing(repo, tree, full)
        blob = repo.blob(((old.rstrip("\n") + "\n\n") if old else "").encode() + text.encode())
        new_tree = repo.tree_update(tree, {_note_path(repo, tree, full): blob})
        oid = repo.commit(
            tree=new_tree,
            parents=[tip] if tip else [],
            message="Notes added by gitbus\n",
            author="gitbus",
            time_ms=time_ms,
        )
        try:
            repo.update_ref(NOTES_REF, oid, tip, "gitbus: note")
            return
        except RefMoved:
            continue
    raise Contended("Gave up writing a note after many lost races.")


def _note_path(repo: Repository, tree: Oid | None, commit: Oid) -> str:
    """Where the note for `commit` lives: where git put it (fanout `ab/cdef…`), else flat."""
    if tree is not None and repo.tree_entry(tree, f"{commit[:2]}/{commit[2:]}") is not None:
        return f"{commit[:2]}/{commit[2:]}"
    return commit


def _existing(repo: Repository, tree: Oid | None, commit: Oid) -> str:
    if tree is None:
        return ""
    found = repo.tree_entry(tree, _note_path(repo, tree, commit))
    return repo.read_blob(found[1]).decode(errors="replace") if found and found[0] == "blob" else ""


def merge(repo: Repository, ours: Oid, theirs: Oid) -> Oid:
    """A notes commit holding both sides' notes; a commit noted on both sides gets both texts."""
    ours_tree, theirs_tree = repo.read_commit(ours).tree, repo.read_commit(theirs).tree
    changes: dict[str, Oid | None] = {}
    for path, blob in repo.tree_blobs(theirs_tree):
        commit = Oid(path.replace("/", ""))
        mine = _existing(repo, ours_tree, commit)
        theirs_text = repo.read_blob(blob).decode(errors="replace")
        if mine == theirs_text or theirs_text in mine:
            continue
        text = (mine.rstrip("\n") + "\n\n" + theirs_text) if mine else theirs_text
        changes[_note_path(repo, ours_tree, commit)] = repo.blob(text.encode())
    tree = repo.tree_update(ours_tree, changes)
    t = max(repo.read_commit(ours).time, repo.read_commit(theirs).time) * 1000
    return repo.commit(
        tree=tree, parents=[ours, theirs], message="Notes merged by gitbus\n", author="gitbus", time_ms=t
    )


def search(repo: Repository, text: str, limit: int | None = None) -> list[Message]:
    """Messages whose text or subject contains `text` (any case), newest first, over all history.

    `git log --grep` scans commit messages in C: no index to build or keep in step."""
    if not text.strip():
        raise GitbusError("Search for some text.")
    tips = list(repo.refs(AGENTS_PREFIX).values())
    led = repo.ref(LEDGER_REF)
    if led:
        tips.append(led)
    if not tips:
        return []
    out = repo.git("log", "--format=%H", "-i", "-F", f"--grep={text}", *tips, "--")
    needle = text.casefold()
    found: list[Message] = []
    for oid in out.split():
        try:
            m = decode(repo.read_commit(Oid(oid)).message)
        except GitbusError:
            continue
        # git matched anywhere in the commit message, trailers included: keep only real text hits.
        if needle in m.text.casefold() or needle in m.summary().casefold():
            found.append(m)
    found.sort(key=lambda m: (m.time, m.id), reverse=True)
    return found[:limit] if limit is not None else found


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
    for record in log.split("\x1e"):
        parts = record.strip("\n").split("\x1f")
        if len(parts) == 5 and parts[0]:
            events.append(
                Event(
                    int(parts[1]) * 1000,
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
    return [
        e.message
        for e in history(bus.repo, bus.tips())
        if e.message.kind is Kind.ANSWER and e.message.reply_to in questions
    ]
