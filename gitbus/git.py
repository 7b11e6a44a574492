"""The one door to git: every pygit2 call and every git subprocess in gitbus goes through here.

It offers domain verbs over plain values (hex object ids, bytes, strings) so the rest of gitbus never
sees a pygit2 type. `Repository` is the opened repository and its refs; it takes on the verbs of
objects (`gitobjects.Objects`: blobs, commits, ancestry), of trees (`gittrees.Trees`) and of git itself
(`gitcli.GitCli`: push, signing, gc), so callers see one door. Ref writes are compare-and-swap only:
`update_ref` names the value it replaces and raises `RefMoved` with the winner when someone else got
there first; `retry_cas` is the one loop that decides again after a lost race, with one limit, one
give-up rule and jittered exponential backoff, so a loser is never starved by a winner that comes
straight back. Lock contention is retried with the same backoff, and a `.lock` file left by a killed
process is recovered once it is clearly stale (libgit2 never waits on a lock, and a stale one blocks
every writer, git included).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pygit2

from gitbus import loose, races, state
from gitbus.errors import Contended, GitbusError
from gitbus.gitcli import NETWORK_TIMEOUT_SECONDS, STALE_LOCK_SECONDS, network_timeout
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
from gitbus.gitobjects import lasting
from gitbus.gittrees import FILE_MODE, Trees
from gitbus.ids import BUS_PREFIX, KEPT_PREFIX
from gitbus.inert import inert
from gitbus.races import LOCAL_BACKOFF, REMOTE_BACKOFF, STARVED_AFTER, TURN_POLL, LostRaces

T = TypeVar("T")

__all__ = ["STALE_LOCK_SECONDS", "Commit", "LostRaces", "Oid", "RefMoved", "Repository", "init_repository"]
__all__ += ["NETWORK_TIMEOUT_SECONDS", "network_timeout"]  # kept where callers knew them


_LOCK_DEADLINE_SECONDS = 30.0


class Repository(Trees):
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
                why = lasting(e)
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

    def _has_config(self, key: str) -> bool:
        try:
            self._repo.config[key]
        except KeyError:
            return False
        return True


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
        tb.insert("README.md", readme, FILE_MODE)
        repo.create_commit("refs/heads/main", sig, sig, "Initial commit", tb.write(), [])
        repo.checkout_head()  # type: ignore[no-untyped-call]
    return Repository.open(path)
