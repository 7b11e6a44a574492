"""The one door to git: every pygit2 call and every git subprocess in gitbus goes through here.

It offers domain verbs over plain values (hex object ids, bytes, strings) so the rest of gitbus never
sees a pygit2 type; the verbs that run git itself (push, signing, gc) are `gitcli.GitCli`'s, which
`Repository` takes on. Ref writes are compare-and-swap only: `update_ref` names the value it replaces and
raises `RefMoved` with the winner when someone else got there first; `retry_cas` is the one loop that
decides again after a lost race, with one limit, one give-up rule and jittered exponential backoff, so
a loser is never starved by a winner that comes straight back. Lock contention is retried with the
same backoff, and a `.lock` file left by a killed process is recovered once it is clearly stale
(libgit2 never waits on a lock, and a stale one blocks every writer, git included).
"""

from __future__ import annotations

import contextlib
import errno
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import pygit2

from gitbus import loose, races, state
from gitbus.errors import Contended, GitbusError, Unreadable
from gitbus.gitcli import NETWORK_TIMEOUT_SECONDS, STALE_LOCK_SECONDS, GitCli, network_timeout
from gitbus.gitfiles import (
    Commit,
    DamagedRef,
    Oid,
    RefMoved,
    common_dir_of,
    damage_text,
    read_ref,
    read_refs,
    refuse_damage,
)
from gitbus.ids import BUS_PREFIX, KEPT_PREFIX
from gitbus.inert import inert
from gitbus.races import LOCAL_BACKOFF, REMOTE_BACKOFF, STARVED_AFTER, TURN_POLL, LostRaces
from gitbus.state import disk_problem

T = TypeVar("T")

__all__ = ["STALE_LOCK_SECONDS", "Commit", "LostRaces", "Oid", "RefMoved", "Repository", "init_repository"]
__all__ += ["NETWORK_TIMEOUT_SECONDS", "network_timeout"]  # kept where callers knew them


_LOCK_DEADLINE_SECONDS = 30.0
# libgit2 keeps no tree over 4 KiB in its object cache, so each path lookup in a ledger folder of
# thousands of claims inflated and parsed that folder again (issue 16): trees up to 1 MiB are kept.
pygit2.settings.cache_object_limit(pygit2.enums.ObjectType.TREE, 1 << 20)
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


_LISTINGS_KEPT = 64  # folder listings remembered per handle, by tree id (a tree never changes)
_ENTRIES_KEPT = 64  # the entries of trees this handle wrote or read to write, by id
_WRITTEN_KEPT = 256  # objects a handle remembers writing, so what refers to them need not read them
_SMALL_TREE = 64  # entries: a tree up to this size is laid out here (`gitbus.loose`), a larger one by libgit2
_FILE_MODE = pygit2.enums.FileMode.BLOB
_EXECUTABLE_MODE = pygit2.enums.FileMode.BLOB_EXECUTABLE
_TREE_MODE = pygit2.enums.FileMode.TREE


class Repository(GitCli):
    """An opened repository (from any of its worktrees), with the verbs gitbus needs."""

    def __init__(self, repo: pygit2.Repository, root: Path, git_dir: Path, common_dir: Path) -> None:
        self._repo = repo
        self.root = root
        self.git_dir = git_dir
        self.common_dir = common_dir
        self._turns: dict[str, Path] = {}  # ref -> its turn file (`retry_cas`, on every write)
        self.ignorecase = _config_bool(repo, "core.ignorecase")
        self.signing = _config_bool(repo, "commit.gpgsign")  # git signs commits here: so does gitbus
        self._empty_tree: Oid | None = None
        self._listings: dict[Oid, list[tuple[str, str]]] = {}
        # Objects are written as loose files by `gitbus.loose` in a SHA-1 repository (libgit2 reads
        # and writes no other format here), fsynced where libgit2 would (`core.fsyncObjectFiles`).
        self._objects = (
            str(common_dir / "objects")
            if _config_str(repo, "extensions.objectformat") in ("", "sha1")
            else None
        )
        self._fsync = _config_bool(repo, "core.fsyncobjectfiles")
        self._common = str(common_dir)
        self._reflog_always = _config_str(repo, "core.logallrefupdates") == "always"
        self._entries: dict[Oid, loose.Entries] = {}
        self._written: dict[Oid, bytes] = {}  # objects this handle wrote or read lately, with their kind
        # What the readers of this handle met under refs/bus that is not valid gitbus data and
        # passed over (a commit, ref or ledger entry -> why): shown by `gitbus status`, never fatal.
        self.skipped: dict[str, str] = {}

    @classmethod
    def open(cls, path: str | Path = ".") -> Repository:
        """Open the repository containing `path`; refuse bare and reftable repositories clearly."""
        found = pygit2.discover_repository(str(path))
        if found is None:
            raise GitbusError(f"'{path}' is not inside a git repository; run gitbus in a worktree.")
        git_dir = Path(found).resolve()
        common_dir = common_dir_of(git_dir)
        if (common_dir / "reftable").is_dir():
            raise GitbusError(
                "This repository stores refs in reftable format, which libgit2 cannot read; "
                "gitbus needs the files ref backend (git init --ref-format=files)."
            )
        try:
            repo = pygit2.Repository(str(git_dir))
        except pygit2.GitError as e:
            raise GitbusError(f"git could not open the repository at {git_dir}: {e}.") from None
        if repo.workdir is None:
            raise GitbusError(f"{git_dir} is a bare repository; run gitbus inside a worktree.")
        return cls(repo, Path(repo.workdir).resolve(), git_dir, common_dir)

    # -- refs -------------------------------------------------------------------------------------

    def ref(self, name: str) -> Oid | None:
        """The object a ref points at, or None if it does not exist. A bus ref (`refs/bus/`, and what
        gitbus keeps of a remote's, `refs/gitbus/`) is read from git's files as `refs` reads
        it, and one that is there but damaged raises `DamagedRef` (libgit2 would raise its own
        error, or follow a symbolic value to another ref's commit)."""
        if name.startswith((BUS_PREFIX, KEPT_PREFIX)):
            damaged: dict[str, str] = {}
            oid = read_ref(self.common_dir, name, damaged)
            if damaged and name.startswith(f"{KEPT_PREFIX}fetched/"):
                return None  # the remote's, as fetched (a folder: it holds `name/x`): the next fetch mends it
            refuse_damage(self.common_dir, damaged)
            return None if oid is None else Oid(oid)
        try:
            ref = self._repo.references.get(name)
        except pygit2.GitError as e:
            raise DamagedRef(self.common_dir, name, f"cannot be read ({e})") from None
        return None if ref is None else Oid(str(ref.target))

    def refs(self, prefix: str, damaged: dict[str, str] | None = None) -> dict[str, Oid]:
        """All refs whose names start with `prefix`, with their targets; those that are there but
        damaged are counted in `skipped` (and put in `damaged`, ref -> why), never read as absent.

        Read from git's files: libgit2 can only list every ref in the repository, which costs ~10 ms
        per call with a thousand unpacked tags, and this runs on every post."""
        bad: dict[str, str] = {}
        found = {name: Oid(oid) for name, oid in read_refs(self.common_dir, prefix, bad).items()}
        for name, why in bad.items():
            self.skipped[name] = damage_text(self.common_dir, name, why)
        if damaged is not None:
            damaged.update(bad)
        return found

    def update_ref(self, name: str, new: Oid, expected: Oid | None, log: str) -> None:
        """Point `name` at `new` if it still holds `expected` (None: must not exist).

        The comparison happens while holding the ref lock, which is the only safe create-if-absent in
        libgit2 (`references.create(force=False)` races). Raises `RefMoved`.
        """
        self.update_refs([(name, new, expected)], log)

    def update_refs(
        self,
        changes: Sequence[tuple[str, Oid | None, Oid | None]],
        log: str,
        check: Callable[[], None] | None = None,
    ) -> None:
        """Move every (ref, new, expected) of `changes` or none: each ref is locked (in name order,
        so two writers never wait on each other), compared with what it must still hold, and all are
        set together (a `new` of None deletes it). Raises `RefMoved` naming the first that moved.
        `check`, when given, runs once every lock is held and every ref compared, and may raise
        `RefMoved` too: for what the refs' values alone do not say (another ref that appeared)."""
        deadline = time.monotonic() + _LOCK_DEADLINE_SECONDS
        waited = 0
        ordered = sorted(changes, key=lambda c: c[0])
        for name, new, _ in ordered:  # a short or multi-line value would be written as it is
            if new is not None and self._objects is not None and not loose.full_id(new):
                raise GitbusError(f"Could not write {name}: {new!r} is not a full object id.")
        # The plain case (gitbus's own refs, set, not deleted) by git's lock protocol (`gitbus.loose`).
        plain = [(n, new, old) for n, new, old in ordered if new is not None]
        fast = self._objects is not None and len(plain) == len(ordered)
        while True:
            try:
                if fast:
                    try:
                        loose.update_refs(self._common, plain, self._reflog_always, self._fsync, check)
                        return
                    except loose.NotPlain:
                        fast = False
                with self._repo.transaction() as txn:
                    for name, _, _ in ordered:
                        txn.lock_ref(name)
                    for name, _, expected in ordered:
                        actual = self.ref(name)  # read while holding the lock
                        if actual != expected:
                            raise RefMoved(name, actual)
                    if check is not None:
                        check()
                    for name, new, _ in ordered:
                        if new is None:
                            txn.remove(name)
                        else:
                            txn.set_target(name, pygit2.Oid(hex=new), message=log)
                return
            except (pygit2.GitError, OSError) as e:  # a lock is held: back off with jitter
                names = ", ".join(n for n, _, _ in ordered)
                why = _lasting(e)
                if why:  # no writer will ever get through: say so at once, not after 30 s
                    raise GitbusError(f"Could not write {names}: {inert(why, 300)}.") from None
                if time.monotonic() > deadline:
                    raise Contended(
                        f"Could not lock {names} for {_LOCK_DEADLINE_SECONDS:.0f}s; another writer holds it "
                        f"({e})."
                    ) from None
                for name, _, _ in ordered:
                    self.recover_stale_lock(self.common_dir / f"{name}.lock")
                time.sleep(LOCAL_BACKOFF.delay(waited))
                waited += 1

    def retry_cas(self, ref: str, attempt: Callable[[], T], what: str, remote: bool = False) -> T:
        """`attempt()` until it does not lose a race for `ref`: the one retry loop of every ref write.

        `attempt` reads the ref, decides, and writes with a compare-and-swap (`update_ref`, or a push
        with a lease when `remote`), raising `RefMoved` when another writer got there first; it is
        then called again, on the winner's value, after a backoff (`Backoff`; `REMOTE_BACKOFF` for a
        push). After `MAX_RACES` lost races in a row it raises `LostRaces`, naming the ref and the
        winner; `what` says what was being done ("appending to refs/bus/agents/a").

        Backoff alone favours the writer that just won and comes straight back for its next step,
        so a writer of this clone that lost `STARVED_AFTER` races in a row takes the ref's turn
        (`state.taking_turn`): every other writer of the ref here waits at the turn before its next
        try (`state.wait_turn`), and the starved one races only those already under way."""
        policy = REMOTE_BACKOFF if remote else LOCAL_BACKOFF
        deadline = time.monotonic() + _LOCK_DEADLINE_SECONDS
        turn_file = self._turns.get(ref) or self._turns.setdefault(ref, state.turn(self.common_dir, ref))
        with contextlib.ExitStack() as turn:
            holding = False
            for lost in range(races.MAX_RACES):
                try:
                    if not holding:
                        state.wait_turn(turn_file, TURN_POLL.delay, deadline)
                    return attempt()
                except RefMoved as e:
                    if lost + 1 == races.MAX_RACES:
                        raise LostRaces(what, e) from None
                    if lost + 1 == STARVED_AFTER:
                        holding = turn.enter_context(state.taking_turn(turn_file, TURN_POLL.delay, deadline))
                    time.sleep(policy.delay(0 if holding and not remote else lost))
        raise AssertionError("unreachable")

    def delete_ref(self, name: str, expected: Oid) -> None:
        """Delete `name` if it still holds `expected`; raises `RefMoved` otherwise."""
        with self._repo.transaction() as txn:
            txn.lock_ref(name)
            actual = self.ref(name)
            if actual != expected:
                raise RefMoved(name, actual)
            txn.remove(name)

    # -- objects ----------------------------------------------------------------------------------

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
            oid = _write_object(
                lambda: self._repo.create_commit(None, sig, sig, message, tree_id, parent_ids)
            )
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
        try:
            c = self._repo[oid]
        except (KeyError, ValueError, pygit2.GitError):
            raise Unreadable(f"{oid} is missing from the repository.") from None
        if not isinstance(c, pygit2.Commit):
            raise Unreadable(f"{oid} is a {_kind_of(c)}, not a commit.")
        return c

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
            return Oid(str(_write_object(lambda: self._repo.create_blob(data))))
        return self._put(b"blob", data)

    def _put(self, kind: bytes, body: bytes) -> Oid:
        """Write object `kind` holding `body` as a loose object (`gitbus.loose`)."""
        oid, data = loose.object_id(kind, body)
        objects = self._objects
        assert objects is not None
        _write_object(lambda: loose.write(objects, oid, data, self._fsync))
        self._remember(Oid(oid), kind)
        return Oid(oid)

    def _remember(self, oid: Oid, kind: bytes) -> None:
        if len(self._written) >= _WRITTEN_KEPT:
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                del self._written[next(iter(self._written))]
        self._written[oid] = kind

    def read_blob(self, oid: Oid, limit: int | None = None) -> bytes:
        """The bytes of blob `oid`; `Unreadable` when it is not a blob or is over `limit` bytes."""
        try:
            b = self._repo[oid]
        except (KeyError, ValueError, pygit2.GitError):
            raise Unreadable(f"{oid} is missing from the repository.") from None
        if not isinstance(b, pygit2.Blob):
            raise Unreadable(f"{oid} is a {_kind_of(b)}, not a blob.")
        if limit is not None and b.size > limit:
            raise Unreadable(f"{oid} is {b.size} bytes, over the {limit} a gitbus entry can be.")
        return b.data

    def read_blob_start(self, oid: Oid, limit: int) -> tuple[bytes, int]:
        """The first `limit` bytes of blob `oid` and its whole size in bytes, never holding more of it
        than that: libgit2 reads a whole object at once, so a blob over `limit` is streamed from
        `git cat-file` instead. `Unreadable` when it is missing or no blob."""
        try:
            kind, size = self._repo.odb.read_header(oid)
        except (KeyError, ValueError, pygit2.GitError):
            raise Unreadable(f"{oid} is missing from the repository.") from None
        if kind != pygit2.enums.ObjectType.BLOB:
            raise Unreadable(f"{oid} is not a blob.")
        if size <= limit:
            return self.read_blob(oid), size
        return self.blob_start(oid, limit), size

    def commit_header(self, oid: Oid) -> tuple[int, str, str]:
        """The committer time (seconds), the author's name and the subject of commit `oid`, as
        `git log`'s `%ct`, `%an` and `%s` give them (the subject: the message's first paragraph on
        one line), for showing; bytes that are not UTF-8 read as U+FFFD. Raises as `read_commit`."""
        c = self._commit(oid)
        return c.commit_time, c.author.raw_name.decode(errors="replace"), _subject(c.raw_message)

    @property
    def empty_tree(self) -> Oid:
        if self._empty_tree is None:
            self._empty_tree = Oid(str(_write_object(self._repo.TreeBuilder().write)))
        return self._empty_tree

    def tree_entry(self, tree: Oid, path: str) -> tuple[str, Oid] | None:
        """('blob'|'tree', oid) at `path` inside `tree`, or None (also when `tree` is no tree)."""
        obj = self._entry(tree, path)
        if obj is None:
            return None
        if obj.type == pygit2.enums.ObjectType.TREE:
            return ("tree", Oid(str(obj.id)))
        return ("blob", Oid(str(obj.id))) if obj.type == pygit2.enums.ObjectType.BLOB else None

    def file_entry(self, tree: Oid, path: str) -> Oid | None:
        """The blob at `path` inside `tree` when it is a regular file there (mode 100644 or 100755),
        else None: what git reads as a note; a symbolic link or a gitlink in its place is none."""
        obj = self._entry(tree, path)
        if obj is None:
            return None
        regular = obj.filemode in (_FILE_MODE, _EXECUTABLE_MODE)
        return Oid(str(obj.id)) if regular and obj.type == pygit2.enums.ObjectType.BLOB else None

    def _entry(self, tree: Oid, path: str) -> pygit2.Object | None:
        t = self._tree(tree)
        if t is None:
            return None
        try:
            return t[path]
        except (KeyError, ValueError, pygit2.GitError):
            return None

    def tree_list(self, tree: Oid, path: str) -> list[tuple[str, str]]:
        """(name, 'blob'|'tree') of every entry of the folder `path` inside `tree` ('' for the root).
        Remembered by the folder's id: a claim decision lists the same few folders again and again."""
        found = ("tree", tree) if not path else self.tree_entry(tree, path)
        if not found or found[0] != "tree":
            return []
        listing = self._listings.get(found[1])
        if listing is None:
            t = self._tree(found[1])
            if t is None:
                return []
            kinds = {pygit2.enums.ObjectType.TREE: "tree", pygit2.enums.ObjectType.BLOB: "blob"}
            listing = [(e.name, kinds[e.type]) for e in t if e.type in kinds and e.name is not None]
            if len(self._listings) >= _LISTINGS_KEPT:
                with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                    del self._listings[next(iter(self._listings))]
            self._listings[found[1]] = listing
        return list(listing)

    def _tree(self, oid: Oid) -> pygit2.Tree | None:
        try:
            t = self._repo[oid]
        except (KeyError, ValueError, pygit2.GitError):
            return None
        return t if isinstance(t, pygit2.Tree) else None

    def _sorted_tree(self, oid: Oid) -> pygit2.Tree | None:
        """Tree `oid` (None: none), refused as git fsck refuses it when two entries share a name or
        the entries are out of git's order: a reader keyed by name would see only one of the two."""
        tree = self._tree(oid)
        if tree is None:
            return None
        last: bytes | None = None
        for e in tree:
            raw = e.raw_name if e.raw_name is not None else b""
            key = raw + b"/" if e.type == pygit2.enums.ObjectType.TREE else raw
            if last is not None and key <= last:
                raise Unreadable(f"tree {oid[:12]} has entries out of order or sharing a name")
            last = key
        return tree

    def tree_blobs(
        self, tree: Oid, prefix: str = "", max_depth: int | None = None, others: list[str] | None = None
    ) -> Iterator[tuple[str, Oid]]:
        """Every blob below `tree`, depth first in name order, as (path, oid). Iterative, so a
        tree of any depth is walked; subtrees below `max_depth` folders are left out. With
        `others`, only files are blobs: the paths of symbolic links and submodules go there."""
        first = self._tree(tree)
        if first is None:
            return
        stack: list[tuple[Iterator[pygit2.Object], str, int]] = [(iter(first), prefix, 0)]
        while stack:
            entries, at, depth = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                continue
            path = f"{at}{entry.name}"
            if entry.type == pygit2.enums.ObjectType.TREE:
                sub = self._tree(Oid(str(entry.id)))
                if sub is not None and (max_depth is None or depth < max_depth):
                    stack.append((iter(sub), path + "/", depth + 1))
            elif others is not None and entry.filemode not in (_FILE_MODE, _EXECUTABLE_MODE):
                others.append(path)
            elif entry.type == pygit2.enums.ObjectType.BLOB:
                yield path, Oid(str(entry.id))

    def tree_diff(
        self, old: Oid | None, new: Oid | None, limit: int
    ) -> list[tuple[str, Oid | None, Oid | None]] | None:
        """Every leaf that differs between trees `old` and `new` (None: empty), as (path, old entry,
        new entry), entries that are no blob (a submodule, a symlink) included; folders both hold
        unchanged are never opened. Iterative, so any depth is walked; None once more than `limit`
        leaves differ, so a hostile tree of millions of entries costs `limit`, never its size."""
        out: list[tuple[str, Oid | None, Oid | None]] = []
        todo: list[tuple[str, Oid | None, Oid | None]] = [("", old, new)]
        while todo:
            prefix, a, b = todo.pop()
            ta = self._sorted_tree(a) if a else None
            tb = self._sorted_tree(b) if b else None
            for oid, found in ((a, ta), (b, tb)):
                if oid and found is None:  # never read as empty: every entry would look added or removed
                    raise Unreadable(f"tree {oid[:12]} is missing from the repository or no tree")
            left = {e.name: e for e in ta if e.name is not None} if ta is not None else {}
            right = {e.name: e for e in tb if e.name is not None} if tb is not None else {}
            for name in sorted(left.keys() | right.keys()):
                ea, eb = left.get(name), right.get(name)
                ia = Oid(str(ea.id)) if ea is not None else None
                ib = Oid(str(eb.id)) if eb is not None else None
                if ia == ib and (ea is None or eb is None or ea.filemode == eb.filemode):
                    continue
                a_dir = ea is not None and ea.type == pygit2.enums.ObjectType.TREE
                b_dir = eb is not None and eb.type == pygit2.enums.ObjectType.TREE
                if a_dir or b_dir:
                    todo.append((f"{prefix}{name}/", ia if a_dir else None, ib if b_dir else None))
                if (not a_dir and ia is not None) or (not b_dir and ib is not None):
                    out.append((f"{prefix}{name}", None if a_dir else ia, None if b_dir else ib))
                if len(out) > limit or len(todo) > limit:
                    return None
        return out

    def tree_pick(self, tree: Oid, folder: str, names: Iterable[str]) -> Oid | None:
        """A new tree holding only the entries `names` of `folder` (one name, at the root of `tree`),
        as they are (no blob is read, each looked up by name); None when it would be empty."""
        found = self.tree_entry(tree, folder)
        sub = self._tree(found[1]) if found is not None and found[0] == "tree" else None
        if sub is None:
            return None
        tb = self._repo.TreeBuilder()
        for name in names:
            try:
                e = sub[name]
            except (KeyError, ValueError, pygit2.GitError):
                continue
            tb.insert(name, e.id, e.filemode)
        if len(tb) == 0:
            return None
        top = self._repo.TreeBuilder()
        top.insert(folder, _write_object(tb.write), _TREE_MODE)
        return Oid(str(_write_object(top.write)))

    def tree_update(self, tree: Oid | None, changes: Mapping[str, Oid | None]) -> Oid:
        """A new tree: `tree` with each path set to a blob (or removed for None); empty dirs pruned."""
        groups: dict[str, dict[str, Oid | None]] = {}
        leaves: dict[str, Oid | None] = {}
        for path, value in changes.items():
            head, _, rest = path.partition("/")
            if rest:
                groups.setdefault(head, {})[rest] = value
            else:
                leaves[head] = value
        entries = self._small_tree(tree)
        names = {name: loose.plain(name) for name in (*leaves, *groups)}
        blobs = all(v is None or (loose.full_id(v) and self._is(v, b"blob")) for v in leaves.values())
        if entries is None or None in names.values() or not blobs:  # libgit2 refuses a bad entry, as before
            return self._built_tree(tree, leaves, groups)
        for name, value in leaves.items():
            if value is None:
                entries.pop(names[name] or b"", None)
            else:
                entries[names[name] or b""] = (loose.BLOB, bytes.fromhex(value))
        for name, sub in groups.items():
            key = names[name] or b""
            existing = entries.get(key)
            new_sub = self.tree_update(
                Oid(existing[1].hex()) if existing and existing[0] == loose.TREE else None, sub
            )
            if new_sub == loose.EMPTY_TREE:
                entries.pop(key, None)
            else:
                entries[key] = (loose.TREE, bytes.fromhex(new_sub))
        if not entries:
            return self.empty_tree
        oid = self._put(b"tree", loose.tree_bytes(entries))
        self._remember_entries(oid, entries)
        return oid

    def _small_tree(self, tree: Oid | None) -> loose.Entries | None:
        """A copy of the entries of `tree` (None: none) when this handle lays the tree out itself: a
        SHA-1 repository, a tree of at most `_SMALL_TREE` entries, as git writes trees. Else None."""
        if self._objects is None:
            return None
        if tree is None:
            return {}
        known = self._entries.get(tree)
        if known is not None:
            return dict(known)
        t = self._tree(tree)
        if t is None or len(t) > _SMALL_TREE:
            return None
        entries = loose.parse_tree(t.read_raw())
        if entries is not None:
            self._remember_entries(tree, entries)
        return None if entries is None else dict(entries)

    def _remember_entries(self, oid: Oid, entries: loose.Entries) -> None:
        if len(self._entries) >= _ENTRIES_KEPT:
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                del self._entries[next(iter(self._entries))]
        self._entries[oid] = entries

    def _built_tree(
        self, tree: Oid | None, leaves: dict[str, Oid | None], groups: dict[str, dict[str, Oid | None]]
    ) -> Oid:
        """`tree_update` by libgit2's tree builder: for a large tree, or one not as git writes it."""
        tb = self._repo.TreeBuilder(pygit2.Oid(hex=tree)) if tree else self._repo.TreeBuilder()
        for name, value in leaves.items():
            if value is None:
                if tb.get(name) is not None:
                    tb.remove(name)
            else:
                tb.insert(name, pygit2.Oid(hex=value), _FILE_MODE)
        for name, sub in groups.items():
            existing = tb.get(name)
            sub_tree = Oid(str(existing.id)) if existing is not None and existing.type_str == "tree" else None
            new_sub = self.tree_update(sub_tree, sub)
            if new_sub == self.empty_tree:
                if existing is not None:
                    tb.remove(name)
            else:
                tb.insert(name, pygit2.Oid(hex=new_sub), _TREE_MODE)
        return Oid(str(_write_object(tb.write)))

    def _has_config(self, key: str) -> bool:
        try:
            self._repo.config[key]
        except KeyError:
            return False
        return True

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


def _write_object(write: Callable[[], T]) -> T:
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
            why = _lasting(e) if isinstance(e, OSError) else disk_problem(e)
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


def _lasting(e: pygit2.GitError | OSError) -> str | None:
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


def _config_str(repo: pygit2.Repository, name: str) -> str:
    try:
        return str(repo.config[name]).lower()
    except (KeyError, pygit2.GitError):
        return ""


def _config_bool(repo: pygit2.Repository, name: str) -> bool:
    try:
        return bool(repo.config.get_bool(name))
    except (KeyError, pygit2.GitError):
        return False


def init_repository(path: Path, *, initial_commit: bool = True) -> Repository:
    """Create a repository with one commit on `main` (for the demo and tests)."""
    repo = pygit2.init_repository(str(path), initial_head="main")
    if initial_commit:
        sig = pygit2.Signature("gitbus demo", "demo@gitbus.invalid")
        readme = repo.create_blob(b"# demo\n")
        tb = repo.TreeBuilder()
        tb.insert("README.md", readme, _FILE_MODE)
        repo.create_commit("refs/heads/main", sig, sig, "Initial commit", tb.write(), [])
        repo.checkout_head()  # type: ignore[no-untyped-call]
    return Repository.open(path)
