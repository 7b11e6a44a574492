"""The coordination notes store: git notes under `refs/notes/gitbus`, written and merged by
compare-and-swap.

When an agent commits, the post-commit hook attaches a note (what goes in it is `gitbus.story`);
`git log --notes=gitbus` shows them. Notes are written through our own compare-and-swap on the notes
ref, because concurrent `git notes add` silently loses notes; two notes for one commit are
concatenated, and two clones' notes are merged three-way at sync, both texts kept. Only an entry at
a commit id in git's fanout is a note: anything else a peer put in its notes tree is never merged in.
A note is read for showing by id, to `SHOWN_BYTES` at most, and read whole (to merge or add to it)
only up to `MERGED_BYTES`: a peer can push a note of any size, and no clone's sync holds more of it.
One over `MERGED_BYTES` is not read at all, not even to show its start; none is written that large.
"""

from __future__ import annotations

import codecs
import re
from typing import TYPE_CHECKING, NamedTuple

from gitbus.errors import GitbusError
from gitbus.gitfiles import Oid

if TYPE_CHECKING:
    from gitbus.git import Repository

NOTES_REF = "refs/notes/gitbus"
SHOWN_BYTES = 64 * 1024  # of a note, read for showing: as much as a bus message's text can hold
MERGED_BYTES = 1024 * 1024  # of a note, read whole to merge or add to it; a larger one is never read


class Note(NamedTuple):
    """A commit's note as read for showing: its text (the first `SHOWN_BYTES` at most, cut at a
    character), its whole size in bytes, and whether the text was cut; `unread` when it is over
    `MERGED_BYTES`: then its text is empty, none of it read."""

    text: str
    size: int
    cut: bool
    unread: bool = False


def tree(repo: Repository) -> Oid | None:
    """The tree of the notes commit (None: no notes yet). A notes ref that is there but cannot be
    read raises a `GitbusError` that says what is wrong with it."""
    tip = repo.ref(NOTES_REF)
    return None if tip is None else _tree_of(repo, tip)


def _tree_of(repo: Repository, tip: Oid) -> Oid:
    try:
        return repo.read_commit(tip).tree
    except GitbusError as e:
        raise GitbusError(f"{NOTES_REF} cannot be read: {str(e).rstrip('.')}") from None


def find(repo: Repository, tree: Oid, commit: Oid) -> Oid | None:
    """The note blob for `commit` in notes tree `tree`, wherever git's fanout put it (`ab/cdef…`,
    `ab/cd/ef…`, or flat), or None. Only a folder named by the next two digits is entered, as git
    reads a notes tree; nothing else there is ever taken for a note."""
    at = ""
    for i in range(0, len(commit) - 2, 2):
        if repo.tree_entry(tree, at + commit[i:]) is not None:  # a note only if a regular file
            return repo.file_entry(tree, at + commit[i:])
        folder = repo.tree_entry(tree, at + commit[i : i + 2])
        if folder is None or folder[0] != "tree":
            return None
        at += commit[i : i + 2] + "/"
    return None


def read(repo: Repository, tree: Oid, commit: Oid, limit: int = SHOWN_BYTES) -> Note | None:
    """The note on `commit` in notes tree `tree` (None: it has none), read to at most `limit` bytes;
    one over `MERGED_BYTES` is judged by its object header alone and none of it is read, here or by a
    git child (git inflates a packed blob whole to hand over even its start). Bytes that are not
    UTF-8 become lone surrogates, which `gitbus.inert.unsafe` refuses."""
    blob = find(repo, tree, commit)
    if blob is None:
        return None
    size = repo.blob_size(blob)
    if size > MERGED_BYTES:
        return Note("", size, cut=True, unread=True)
    data = repo.read_blob(blob) if size <= limit else repo.blob_start(blob, limit)
    cut = size > len(data)
    # An incremental decoder holds back a character the cut split, rather than mangle it.
    text = codecs.getincrementaldecoder("utf-8")("surrogateescape").decode(data, final=not cut)
    if cut and "\n" in text:
        text = text[: text.rindex("\n") + 1]  # whole lines only
    return Note(text, size, cut)


def add(repo: Repository, commit: str, text: str, time_ms: int) -> None:
    """Attach `text` to `commit` as a gitbus note (appended to an existing one), by compare-and-swap.
    A note that would pass `MERGED_BYTES` is not written (no later add or merge could read it): a
    `GitbusError` says so."""
    full = Oid(repo.git("rev-parse", "--verify", f"{commit}^{{commit}}").strip())

    def attempt() -> None:
        tip = repo.ref(NOTES_REF)
        notes = _tree_of(repo, tip) if tip else None
        old = _existing(repo, notes, full)
        joined = ((old.rstrip("\n") + "\n\n") if old else "") + text
        data = joined.encode(errors="surrogateescape")  # a note's bytes kept as they were
        if len(data) > MERGED_BYTES:
            over = f"over the {MERGED_BYTES} gitbus adds to"
            raise GitbusError(f"The note on {full[:12]} would be {len(data)} bytes, {over}: nothing written.")
        blob = repo.blob(data)
        new_tree = repo.tree_update(notes, {_note_path(repo, notes, full): blob})
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
    """The note on `commit` to add to ("" when none); a note over `MERGED_BYTES` is never read whole:
    a `GitbusError` says so, and nothing is written."""
    if tree is None:
        return ""
    found = repo.tree_entry(tree, _note_path(repo, tree, commit))
    if not found or found[0] != "blob":
        return ""
    text, size = _whole(repo, found[1])
    if text is None:
        over = f"over the {MERGED_BYTES} gitbus adds to"
        raise GitbusError(f"The note on {commit[:12]} is {size} bytes, {over}: nothing written.")
    return text


def _whole(repo: Repository, blob: Oid) -> tuple[str | None, int]:
    """The text of note `blob` and its size in bytes; the text is None when it is over `MERGED_BYTES`,
    judged by the object's header: then none of it is read, here or by a git child. Bytes that are
    not UTF-8 become lone surrogates, and are written back as the same bytes."""
    size = repo.blob_size(blob)
    if size > MERGED_BYTES:
        return None, size
    return repo.read_blob(blob).decode(errors="surrogateescape"), size


class Merged(NamedTuple):
    """A notes merge: its commit, and one line for each entry of their notes tree passed over: one
    that is no note (a symbolic link, a submodule, a file at a path no commit id makes), or a note
    too large to merge (over `MERGED_BYTES`, or joined to ours it would be, on a commit both sides
    noted anew)."""

    commit: Oid
    passed: list[str]


def merge(repo: Repository, ours: Oid, theirs: Oid) -> Merged:
    """A notes commit holding both sides' notes, three-way from their merge base: a note changed on
    one side only takes that side; a note changed on both keeps ours and adds what theirs has more
    (paragraph by paragraph), so a note added to after an earlier sync is not doubled. An entry of
    any side that is no note is never taken for one: ours stay as they are, theirs are passed over.
    A note is taken by id, unread, when one side changed it; of one over `MERGED_BYTES` on a commit
    both sides changed only the size is read (its object header): ours stays as it is, theirs is
    passed over and named (it stays in the notes history, the merge's second parent). So is theirs
    when joining it to ours would make a note over `MERGED_BYTES`."""
    base = repo.merge_base(ours, theirs)
    ours_tree, theirs_tree = repo.read_commit(ours).tree, repo.read_commit(theirs).tree
    odd: list[str] = []
    large: list[str] = []
    b = _by_commit(repo, repo.read_commit(base).tree, []) if base else {}
    o, t = _by_commit(repo, ours_tree, []), _by_commit(repo, theirs_tree, odd)
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
        kept, extra = _paragraphs(repo, mine), _paragraphs(repo, their)
        if isinstance(kept, int) or isinstance(extra, int):  # ours stays as it is
            if their is not None:  # a removal of theirs would keep ours anyway: nothing passed over
                theirs_size = extra if isinstance(extra, int) else repo.blob_size(their[1])
                large.append(_too_large(commit, kept, theirs_size))
            continue
        for p in kept:
            if p in extra:
                extra.remove(p)
        joined = ("\n\n".join(kept + extra) + "\n").encode(errors="surrogateescape")
        if len(joined) > MERGED_BYTES:  # a note no later merge or add could read: ours stays as it is
            if extra:
                theirs_size = repo.blob_size(their[1]) if their else 0
                large.append(
                    f"their note on {commit[:12]}, {theirs_size} bytes, as joined to ours it would be "
                    f"{len(joined)} bytes, over the {MERGED_BYTES} a merged note can be"
                )
            continue
        changes[path] = repo.blob(joined)
    tree = repo.tree_update(ours_tree, changes)
    when = max(repo.read_commit(ours).time, repo.read_commit(theirs).time) * 1000
    commit = repo.commit(
        tree=tree, parents=[ours, theirs], message="Notes merged by gitbus\n", author="gitbus", time_ms=when
    )
    passed = [f"{path} is no note" for path in odd] + large
    return Merged(commit, [f"{NOTES_REF}: {why}" for why in passed])


# A note's path: a commit id, in two-digit folders as git's fanout lays them out (`ab/cd/ef…`).
_NOTE_PATH = re.compile(r"(?:[0-9a-f]{2}/)*[0-9a-f]{2,64}")


def _by_commit(repo: Repository, tree: Oid, odd: list[str]) -> dict[Oid, tuple[str, Oid]]:
    """Each noted commit in a notes tree: (its path there, fanout or flat; the note blob). What is
    no note (a link, a submodule, a file whose path is no commit id) is put in `odd`, by path."""
    found: dict[Oid, tuple[str, Oid]] = {}
    for path, blob in repo.tree_blobs(tree, others=odd):
        commit = path.replace("/", "")
        if _NOTE_PATH.fullmatch(path) and len(commit) in (40, 64):
            found[Oid(commit)] = (path, blob)
        else:
            odd.append(path)
    return found


def _too_large(commit: Oid, ours: list[str] | int, theirs: int) -> str:
    """The passed-over line for their note on `commit`, `theirs` bytes, when a side is too large to
    read (`ours` is our note's size then, else its paragraphs): it names that side."""
    head, over = f"their note on {commit[:12]}, {theirs} bytes,", f"over the {MERGED_BYTES} a merge reads"
    if isinstance(ours, list):
        return f"{head} is {over}"
    if theirs <= MERGED_BYTES:
        return f"{head} as ours is {ours} bytes, {over}"
    return f"{head} is {over}, and so is ours ({ours} bytes)"


def _paragraphs(repo: Repository, entry: tuple[str, Oid] | None) -> list[str] | int:
    """A note cut at blank lines: one paragraph per `add` (git's own notes concatenate the same way);
    or, for a note over `MERGED_BYTES`, its size, the note never read whole."""
    if entry is None:
        return []
    text, size = _whole(repo, entry[1])
    if text is None:
        return size
    return [p.strip("\n") for p in text.strip("\n").split("\n\n") if p.strip("\n")]
