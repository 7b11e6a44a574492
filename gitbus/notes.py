"""Coordination history beside the code: git notes under `refs/notes/gitbus`, and a path's story.

When an agent commits, the post-commit hook attaches a note: who committed, the claims it held over
the changed files, what it posted and answered since its previous commit. `git log --notes=gitbus`
shows them. Notes are written through our own compare-and-swap on the notes ref, because concurrent
`git notes add` silently loses notes; two notes for one commit are concatenated.
Searching the whole history is `gitbus.searchindex`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gitbus import paths as P
from gitbus.chains import history
from gitbus.gitfiles import Oid
from gitbus.ids import MessageId
from gitbus.inert import unsafe
from gitbus.message import Kind, Message

if TYPE_CHECKING:
    from gitbus.bus import Bus
    from gitbus.git import Repository

NOTES_REF = "refs/notes/gitbus"


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


def add(repo: Repository, commit: str, text: str, time_ms: int) -> None:
    """Attach `text` to `commit` as a gitbus note (appended to an existing one), by compare-and-swap."""
    full = Oid(repo.git("rev-parse", "--verify", f"{commit}^{{commit}}").strip())

    def attempt() -> None:
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
        repo.update_ref(NOTES_REF, oid, tip, "gitbus: note")

    repo.retry_cas(NOTES_REF, attempt, f"writing a note on {full[:12]}")


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
    """A notes commit holding both sides' notes, three-way from their merge base: a note changed on
    one side only takes that side; a note changed on both keeps ours and adds what theirs has more
    (paragraph by paragraph), so a note added to after an earlier sync is not doubled."""
    base = repo.merge_base(ours, theirs)
    ours_tree, theirs_tree = repo.read_commit(ours).tree, repo.read_commit(theirs).tree
    b = _by_commit(repo, repo.read_commit(base).tree) if base else {}
    o, t = _by_commit(repo, ours_tree), _by_commit(repo, theirs_tree)
    changes: dict[str, Oid | None] = {}
    for commit in sorted(b.keys() | o.keys() | t.keys()):
        was, mine, their = b.get(commit), o.get(commit), t.get(commit)
        blobs = [e[1] if e else None for e in (was, mine, their)]  # a fanout change keeps the blob
        if blobs[2] in (blobs[1], blobs[0]):
            continue
        path = mine[0] if mine else _note_path(repo, ours_tree, commit)
        if blobs[1] == blobs[0]:
            changes[path] = their[1] if their else None  # changed (or removed) on their side only
            continue
        kept = _paragraphs(repo, mine)
        extra = _paragraphs(repo, their)
        for p in kept:
            if p in extra:
                extra.remove(p)
        changes[path] = repo.blob(("\n\n".join(kept + extra) + "\n").encode())
    tree = repo.tree_update(ours_tree, changes)
    when = max(repo.read_commit(ours).time, repo.read_commit(theirs).time) * 1000
    return repo.commit(
        tree=tree, parents=[ours, theirs], message="Notes merged by gitbus\n", author="gitbus", time_ms=when
    )


def _by_commit(repo: Repository, tree: Oid) -> dict[Oid, tuple[str, Oid]]:
    """Each noted commit in a notes tree: (its path there, fanout or flat; the note blob)."""
    return {Oid(path.replace("/", "")): (path, blob) for path, blob in repo.tree_blobs(tree)}


def _paragraphs(repo: Repository, entry: tuple[str, Oid] | None) -> list[str]:
    """A note cut at blank lines: one paragraph per `add` (git's own notes concatenate the same way)."""
    if entry is None:
        return []
    text = repo.read_blob(entry[1]).decode(errors="replace").strip("\n")
    return [p.strip("\n") for p in text.split("\n\n") if p.strip("\n")]


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
    return [
        e.message
        for e in history(bus.repo, bus.tips())
        if e.message.kind is Kind.ANSWER and e.message.reply_to in questions
    ]
