"""Git's objects, through the door to git: blobs and commits written and read, what kind an object
is, and which commit descends from which.

In a SHA-1 repository objects are written as loose files by `gitbus.loose`, not by libgit2, which looks
every object up before writing it and rescans its packs on the miss (issue 16); libgit2 keeps what
`loose` does not cover (another object format, a NUL in a message). The trade-off is a little memory:
a handle remembers the kind of each object it wrote or read lately, since a new object must refer only
to objects that are there, as such, and those are the ones it just wrote or read. `write_object` retries
a write that raced gc, and `lasting` tells a write that waiting will let through from one it never
will. libgit2's cache is tuned here for the process: no hash check on read, and no commit cached during
a walk over a whole history (`commits_read_once`). `Objects` is a base of `Repository`, which supplies
the handle and its caches.
"""

from __future__ import annotations

import contextlib
import errno
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pygit2

from gitbus import loose
from gitbus.errors import GitbusError, Unreadable
from gitbus.gitcli import GitCli
from gitbus.gitfiles import Commit, Oid
from gitbus.inert import inert
from gitbus.state import disk_problem

T = TypeVar("T")
Obj = TypeVar("Obj")


# Hashing every object again on each read is work git's own reads skip: objects come in through our
# writes or git's index-pack, which checks each (a tenth of reading 100,000 messages).
pygit2.option(pygit2.enums.Option.ENABLE_STRICT_HASH_VERIFICATION, 0)
_COMMITS_KEPT = 4096  # libgit2's own limit: commits up to 4 KiB are kept in its object cache
_walks = 0  # whole-history walks under way (`commits_read_once`), counted under `_walks_lock`
_walks_lock = threading.Lock()


@contextlib.contextmanager
def commits_read_once() -> Iterator[None]:
    """libgit2 keeps no commit in its object cache meanwhile: a walk over a whole history reads each
    commit once, and caching 100,000 of them cost more than it saved (a fifteenth of the walk). Only
    then: a watcher reads the same 500 recent commits on every update, 7 ms cached, 13 ms not. The
    setting is libgit2's, for the process: another thread's reads meanwhile are not cached either."""
    global _walks
    with _walks_lock:
        _walks += 1
        pygit2.settings.cache_object_limit(pygit2.enums.ObjectType.COMMIT, 0)
    try:
        yield
    finally:
        with _walks_lock:
            _walks -= 1
            if not _walks:
                pygit2.settings.cache_object_limit(pygit2.enums.ObjectType.COMMIT, _COMMITS_KEPT)


_WRITTEN_KEPT = 256  # objects a handle remembers writing, so what refers to them need not read them


class Objects(GitCli):
    """The object verbs of `Repository` (a base: `Repository` supplies the handle and its caches)."""

    _repo: pygit2.Repository
    _objects: str | None  # the objects folder where `gitbus.loose` writes, else None
    _fsync: bool
    _empty_tree: Oid | None
    _written: dict[Oid, bytes]
    signing: bool

    def commit(self, *, tree: Oid, parents: list[Oid], message: str, author: str, time_ms: int) -> Oid:
        """Write a commit object (no ref moves). Author and committer are the agent. Where git signs
        commits (`commit.gpgsign`), git's own `commit-tree -S` writes it, signed with the user's
        configured key and format (OpenPGP, SSH or X.509)."""
        if self.signing:
            return self._signed_commit(tree, parents, message, author, time_ms)
        sig = pygit2.Signature(author, f"{author}@gitbus.invalid", time_ms // 1000, 0)
        # A message holding NUL is libgit2's, which ends it there (a NUL in a commit fails `fsck --strict`).
        if self._objects is None or "\0" in message or not all(loose.full_id(o) for o in (tree, *parents)):
            tree_id, parent_ids = pygit2.Oid(hex=tree), [pygit2.Oid(hex=p) for p in parents]
            oid = write_object(lambda: self._repo.create_commit(None, sig, sig, message, tree_id, parent_ids))
            return Oid(str(oid))
        # What libgit2's strict object creation checked: the tree and the parents are there, as such
        # (a tree this handle wrote is; a parent, the writer's own tip, was read, so comes from cache).
        if not self._is(tree, b"tree"):
            raise GitbusError(f"Could not write a commit: its tree {tree[:12]} is not in the repository.")
        for p in parents:
            if not self._is(p, b"commit"):
                raise GitbusError(
                    f"Could not write a commit: its parent {p[:12]} is no commit in the repository."
                )
        # Laid out as libgit2 lays it out (`git_commit_create_buffer`), which would read the tree and
        # every parent back from disk first; `sig` holds the name and email as libgit2 checked them.
        who = f"{sig.name} <{sig.email}> {sig.time} +0000\n"
        head = f"tree {tree}\n" + "".join(f"parent {p}\n" for p in parents)
        return self._put(b"commit", f"{head}author {who}committer {who}\n{message}".encode())

    def read_commit(self, oid: Oid) -> Commit:
        """The commit `oid`; raises `Unreadable` when it is missing or another kind of object (a ref
        a peer pointed at a blob, tree or tag). A message that is not UTF-8 reads as empty: it is
        then no gitbus message, and is skipped like any foreign commit."""
        c = self._commit(oid)
        parents = tuple([Oid(str(p)) for p in c.parent_ids])
        return Commit(oid, _text(c), parents, Oid(str(c.tree_id)), c.commit_time)

    def read_links(self, oid: Oid) -> tuple[tuple[Oid, ...], str]:
        """The parents and the message of commit `oid`, as `read_commit` reads them (and raising as
        it does), and nothing else: what a walk over thousands of new commits needs of most."""
        c = self._commit(oid)
        return tuple([Oid(str(p)) for p in c.parent_ids]), _text(c)

    def _commit(self, oid: Oid) -> pygit2.Commit:
        return self._object(oid, pygit2.Commit, "commit")

    def _object(self, oid: Oid, kind: type[Obj], name: str) -> Obj:
        """Object `oid`, which must be a `kind` (`name` in git's words); `Unreadable` when it is
        missing or of another kind."""
        try:
            obj = self._repo[oid]
        except (KeyError, ValueError, pygit2.GitError):
            raise Unreadable(f"{oid} is missing from the repository.") from None
        if not isinstance(obj, kind):
            raise Unreadable(f"{oid} is a {_kind_of(obj)}, not a {name}.")
        return obj

    def object_kind(self, oid: Oid) -> str | None:
        """`commit`, `tree`, `blob` or `tag`, or None when the object is missing. An object's kind
        never changes, so one this handle wrote or read lately is known without a read (every
        ledger step asks it of the tombstone)."""
        kind = self._kind(oid)
        return None if kind is None else kind.decode()

    def _kind(self, oid: Oid) -> bytes | None:
        known = self._written.get(oid)
        if known is not None:
            return known
        try:
            kind = _kind_of(self._repo[oid]).encode()
        except (KeyError, ValueError, pygit2.GitError):
            return None
        self._remember(oid, kind)
        return kind

    def is_ancestor(self, ancestor: Oid, descendant: Oid) -> bool:
        """True when `ancestor` is `descendant` or reachable from it (never when either is no
        commit: a peer's ref may point at a blob, and that holds no history)."""
        if ancestor == descendant:
            return True
        try:
            return bool(self._repo.descendant_of(pygit2.Oid(hex=descendant), pygit2.Oid(hex=ancestor)))
        except (pygit2.GitError, ValueError, KeyError):
            return False

    def merge_base(self, a: Oid, b: Oid) -> Oid | None:
        try:
            base = self._repo.merge_base(pygit2.Oid(hex=a), pygit2.Oid(hex=b))
        except (pygit2.GitError, ValueError, KeyError):
            return None  # either is no commit: no history in common
        return Oid(str(base)) if base else None

    def _is(self, oid: Oid, kind: bytes) -> bool:
        """True when object `oid` is there and of `kind`: what libgit2's strict object creation checks
        of what a new object refers to. One this handle wrote or read lately is known without a read."""
        return (kind == b"tree" and oid == self._empty_tree) or self._kind(oid) == kind

    def blob(self, data: bytes) -> Oid:
        if self._objects is None:
            return Oid(str(write_object(lambda: self._repo.create_blob(data))))
        return self._put(b"blob", data)

    def _put(self, kind: bytes, body: bytes) -> Oid:
        """Write object `kind` holding `body` as a loose object (`gitbus.loose`)."""
        oid, data = loose.object_id(kind, body)
        objects = self._objects
        assert objects is not None
        write_object(lambda: loose.write(objects, oid, data, self._fsync))
        self._remember(Oid(oid), kind)
        return Oid(oid)

    def _remember(self, oid: Oid, kind: bytes) -> None:
        if len(self._written) >= _WRITTEN_KEPT:
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                del self._written[next(iter(self._written))]
        self._written[oid] = kind

    def read_blob(self, oid: Oid, limit: int | None = None) -> bytes:
        """The bytes of blob `oid`; `Unreadable` when it is not a blob or is over `limit` bytes."""
        b = self._object(oid, pygit2.Blob, "blob")
        if limit is not None and b.size > limit:
            raise Unreadable(f"{oid} is {b.size} bytes, over the {limit} a gitbus entry can be.")
        return b.data

    def blob_size(self, oid: Oid) -> int:
        """The size in bytes of blob `oid`, from its object header alone: none of it is read (git
        inflates a packed blob whole even to stream it). `Unreadable` when it is missing or no blob."""
        try:
            kind, size = self._repo.odb.read_header(oid)
        except (KeyError, ValueError, pygit2.GitError):
            raise Unreadable(f"{oid} is missing from the repository.") from None
        if kind != pygit2.enums.ObjectType.BLOB:
            raise Unreadable(f"{oid} is not a blob.")
        return int(size)

    def commit_header(self, oid: Oid) -> tuple[int, str, str]:
        """The committer time (seconds), the author's name and the subject of commit `oid`, as
        `git log`'s `%ct`, `%an` and `%s` give them (the subject: the message's first paragraph on
        one line), for showing; bytes that are not UTF-8 read as U+FFFD. Raises as `read_commit`."""
        c = self._commit(oid)
        return c.commit_time, c.author.raw_name.decode(errors="replace"), _subject(c.raw_message)


def _text(c: pygit2.Commit) -> str:
    """A commit's message; empty when it is not UTF-8 (then it is no gitbus message)."""
    try:
        return c.raw_message.decode("utf-8")
    except UnicodeDecodeError:
        return ""


def _subject(raw: bytes) -> str:
    """A commit message's subject as git's `%s` gives it: its first paragraph, lines joined by a
    space. Only git's own blanks count as space (Python's would take `\\x1c`-`\\x1f` too)."""
    lines: list[str] = []
    for line in raw.decode(errors="replace").split("\n"):
        if line.strip(" \t\r"):
            lines.append(line.rstrip(" \t\r"))
        elif lines:
            break
    return " ".join(lines)


def write_object(write: Callable[[], T]) -> T:
    """Write an object, retrying a failed rename into `objects/xx/`.

    libgit2 writes a temp file, creates `objects/xx/` and renames into it; `git repack -d`, gc and
    prune-packed delete empty `objects/xx/` folders, so the rename can fail in between. Objects are
    content-addressed, so writing again is always safe.
    """
    delay = 0.001
    for attempt in range(11):
        try:
            return write()
        except (OSError, pygit2.GitError) as e:
            why = lasting(e) if isinstance(e, OSError) else disk_problem(e)
            if why:  # no permission, a full disk: no retry helps (git: "insufficient permission …")
                raise GitbusError(f"Could not write to the repository: {inert(why, 300)}.") from None
            if attempt == 10 or not isinstance(e, OSError):
                raise
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.05)
    raise AssertionError("unreachable")


# Errors a writer may meet while another holds a lock or moves a folder: worth waiting for. Any
# other error (a folder or a file in a ref's place, no permission, a full or read-only disk, a
# setting libgit2 cannot parse) stays however long one waits, and is reported at once.
_PASSING = frozenset({errno.EEXIST, errno.ENOENT, errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ESTALE})


def lasting(e: pygit2.GitError | OSError) -> str | None:
    """Why writing cannot succeed however long one waits, or None when `e` is contention (a lock
    another writer holds, a folder gc just removed). libgit2 reports a held lock as "failed to lock
    file '<ref>.lock' for writing" with no reason after it, or with EEXIST's."""
    disk = disk_problem(e)
    if disk:
        return disk
    if isinstance(e, OSError):
        if e.errno in _PASSING:
            return None
        where = f" ({e.filename})" if e.filename else ""
        return f"{e.strerror or type(e).__name__}{where}"
    text = str(e).strip()
    if text.startswith("failed to lock file") and (text.endswith(":") or text.endswith("File exists")):
        return None
    return text or type(e).__name__


def _kind_of(obj: pygit2.Object) -> str:
    return {
        pygit2.enums.ObjectType.COMMIT: "commit",
        pygit2.enums.ObjectType.TREE: "tree",
        pygit2.enums.ObjectType.BLOB: "blob",
        pygit2.enums.ObjectType.TAG: "tag",
    }.get(obj.type, "object")
