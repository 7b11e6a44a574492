"""The one door to git: every pygit2 call and every git subprocess in gitbus goes through here.

It offers domain verbs over plain values (hex object ids, bytes, strings) so the rest of gitbus never
sees a pygit2 type. Ref writes are compare-and-swap only: `update_ref` names the value it replaces and
raises `RefMoved` with the winner when someone else got there first. Lock contention is retried with
jittered backoff, and a `.lock` file left by a killed process is recovered once it is clearly stale
(libgit2 never waits on a lock, and a stale one blocks every writer, git included).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

import pygit2

from gitbus.errors import Contended, GitbusError, Unreadable
from gitbus.gitfiles import Commit, Oid, RefMoved, common_dir_of, read_refs
from gitbus.state import disk_problem

T = TypeVar("T")

__all__ = ["Commit", "Oid", "RefMoved", "Repository", "init_repository"]


STALE_LOCK_SECONDS = 3.0
NETWORK_TIMEOUT_SECONDS = 30.0  # a claim's fetch or push that takes longer: the remote is unreachable
SYNC_TIMEOUT_SECONDS = 300.0  # a whole-bus fetch or push may carry thousands of messages


def network_timeout(whole_bus: bool = False) -> float:
    """Seconds a fetch or push may take: `GITBUS_NETWORK_TIMEOUT` if set, else a claim's 30 or a whole
    bus's 300."""
    default = SYNC_TIMEOUT_SECONDS if whole_bus else NETWORK_TIMEOUT_SECONDS
    try:
        value = float(os.environ.get("GITBUS_NETWORK_TIMEOUT", ""))
    except ValueError:
        return default
    return value if 0 < value < 86_400 else default  # nan, inf, 0 and negatives: the default


_LOCK_DEADLINE_SECONDS = 30.0
_FILE_MODE = pygit2.enums.FileMode.BLOB
_TREE_MODE = pygit2.enums.FileMode.TREE


class Repository:
    """An opened repository (from any of its worktrees), with the verbs gitbus needs."""

    def __init__(self, repo: pygit2.Repository, root: Path, git_dir: Path, common_dir: Path) -> None:
        self._repo = repo
        self.root = root
        self.git_dir = git_dir
        self.common_dir = common_dir
        self.ignorecase = _config_bool(repo, "core.ignorecase")
        self.signing = _config_bool(repo, "commit.gpgsign")  # git signs commits here: so does gitbus
        self._empty_tree: Oid | None = None
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
        """The object a ref points at, or None if it does not exist."""
        ref = self._repo.references.get(name)
        return None if ref is None else Oid(str(ref.target))

    def refs(self, prefix: str) -> dict[str, Oid]:
        """All refs whose names start with `prefix`, with their targets.

        Read from git's files: libgit2 can only list every ref in the repository, which costs ~10 ms
        per call with a thousand unpacked tags, and this runs on every post."""
        return {name: Oid(oid) for name, oid in read_refs(self.common_dir, prefix).items()}

    def update_ref(self, name: str, new: Oid, expected: Oid | None, log: str) -> None:
        """Point `name` at `new` if it still holds `expected` (None: must not exist).

        The comparison happens while holding the ref lock, which is the only safe create-if-absent in
        libgit2 (`references.create(force=False)` races). Raises `RefMoved`.
        """
        deadline = time.monotonic() + _LOCK_DEADLINE_SECONDS
        delay = 0.0005
        while True:
            try:
                with self._repo.transaction() as txn:
                    txn.lock_ref(name)
                    actual = self.ref(name)  # read while holding the lock
                    if actual != expected:
                        raise RefMoved(name, actual)
                    txn.set_target(name, pygit2.Oid(hex=new), message=log)
                return
            except (pygit2.GitError, OSError) as e:  # the lock is held: back off with jitter
                disk = disk_problem(e)
                if disk:  # no writer will ever get through: say so at once, not after 30 s
                    raise GitbusError(f"Could not write {name}: {disk}.") from None
                if time.monotonic() > deadline:
                    raise Contended(
                        f"Could not lock {name} for {_LOCK_DEADLINE_SECONDS:.0f}s; another writer holds it "
                        f"({e})."
                    ) from None
                self.recover_stale_lock(self.common_dir / f"{name}.lock")
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 0.05)

    def delete_ref(self, name: str, expected: Oid) -> None:
        """Delete `name` if it still holds `expected`; raises `RefMoved` otherwise."""
        with self._repo.transaction() as txn:
            txn.lock_ref(name)
            actual = self.ref(name)
            if actual != expected:
                raise RefMoved(name, actual)
            txn.remove(name)

    def recover_stale_lock(self, lock: Path) -> bool:
        """Remove the lock file `lock` (a ref's `.lock`) when it is older than any live writer holds
        one: a killed process, ours or git's, left it. True if it is gone now.

        The lock is first moved aside under a unique name and checked to be the same old file: two
        recoverers racing never delete a lock that a live writer has just taken."""
        try:
            seen = lock.stat()
        except FileNotFoundError:
            return True
        if time.time() - seen.st_mtime <= STALE_LOCK_SECONDS:
            return False
        aside = lock.with_name(f"{lock.name}.stale-{os.getpid()}-{random.getrandbits(32):08x}")
        try:
            os.rename(lock, aside)
        except FileNotFoundError:
            return True
        fresh = aside.stat().st_ino != seen.st_ino
        if fresh:  # we moved a fresh lock: give it back if still free
            with contextlib.suppress(FileExistsError):
                os.link(aside, lock)
        aside.unlink()
        return not fresh

    # -- objects ----------------------------------------------------------------------------------

    def commit(self, *, tree: Oid, parents: list[Oid], message: str, author: str, time_ms: int) -> Oid:
        """Write a commit object (no ref moves). Author and committer are the agent. Where git signs
        commits (`commit.gpgsign`), git's own `commit-tree -S` writes it, signed with the user's
        configured key and format (OpenPGP, SSH or X.509)."""
        if self.signing:
            return self._signed_commit(tree, parents, message, author, time_ms)
        sig = pygit2.Signature(author, f"{author}@gitbus.invalid", time_ms // 1000, 0)
        oid = _write_object(
            lambda: self._repo.create_commit(
                None, sig, sig, message, pygit2.Oid(hex=tree), [pygit2.Oid(hex=p) for p in parents]
            )
        )
        return Oid(str(oid))

    def _signed_commit(self, tree: Oid, parents: list[Oid], message: str, author: str, time_ms: int) -> Oid:
        who = {"NAME": author, "EMAIL": f"{author}@gitbus.invalid", "DATE": f"@{time_ms // 1000} +0000"}
        env = {
            **os.environ,
            **{f"GIT_{role}_{k}": v for role in ("AUTHOR", "COMMITTER") for k, v in who.items()},
        }
        args = ["git", "commit-tree", tree, *(a for p in parents for a in ("-p", p)), "-S", "-F", "-"]
        proc = subprocess.run(
            args, cwd=self.root, input=message.encode(), env=env, capture_output=True, check=False
        )
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            why = err[-1] if err else f"exit {proc.returncode}"
            raise GitbusError(
                f"git could not sign the bus commit ({why}); fix the signing setup or unset commit.gpgsign."
            )
        return Oid(proc.stdout.decode().strip())

    def signers(self, tip: Oid, hide: list[Oid]) -> dict[Oid, tuple[str, str]]:
        """For every commit reachable from `tip` and not from `hide`: git's verdict on its signature
        (`%G?`: G good, B bad, U unknown validity, N none, …) and the signer git names (`%GS`: an SSH
        principal from `gpg.ssh.allowedSignersFile`, or an OpenPGP user id)."""
        args = ["log", "--format=%H%x00%G?%x00%GS", tip, *(f"^{h}" for h in hide), "--"]
        code, out, _ = self.git_result(*args)
        result: dict[Oid, tuple[str, str]] = {}
        for line in out.splitlines() if code == 0 else ():
            oid, _, rest = line.partition("\0")
            verdict, _, signer = rest.partition("\0")
            result[Oid(oid)] = (verdict, signer)
        return result

    def verdicts(self, commits: list[Oid]) -> dict[Oid, tuple[str, str]]:
        """git's verdict and signer (as in `signers`) for each of `commits`, in one `git log`."""
        if not commits:
            return {}
        args = ["log", "--no-walk=unsorted", "--format=%H%x00%G?%x00%GS", *commits, "--"]
        code, out, _ = self.git_result(*args)
        result: dict[Oid, tuple[str, str]] = {}
        for line in out.splitlines() if code == 0 else ():
            oid, _, rest = line.partition("\0")
            verdict, _, signer = rest.partition("\0")
            result[Oid(oid)] = (verdict, signer)
        return result

    def read_commit(self, oid: Oid) -> Commit:
        """The commit `oid`; raises `Unreadable` when it is missing or another kind of object (a ref
        a peer pointed at a blob, tree or tag). A message that is not UTF-8 reads as empty: it is
        then no gitbus message, and is skipped like any foreign commit."""
        try:
            c = self._repo[oid]
        except (KeyError, ValueError, pygit2.GitError):
            raise Unreadable(f"{oid} is missing from the repository.") from None
        if not isinstance(c, pygit2.Commit):
            raise Unreadable(f"{oid} is a {_kind_of(c)}, not a commit.")
        try:
            message = c.raw_message.decode("utf-8")
        except UnicodeDecodeError:
            message = ""
        parents = tuple(Oid(str(p)) for p in c.parent_ids)
        return Commit(oid, message, parents, Oid(str(c.tree_id)), c.commit_time)

    def object_kind(self, oid: Oid) -> str | None:
        """`commit`, `tree`, `blob` or `tag`, or None when the object is missing."""
        try:
            return _kind_of(self._repo[oid])
        except (KeyError, ValueError, pygit2.GitError):
            return None

    def is_ancestor(self, ancestor: Oid, descendant: Oid) -> bool:
        """True when `ancestor` is `descendant` or reachable from it."""
        if ancestor == descendant:
            return True
        return bool(self._repo.descendant_of(pygit2.Oid(hex=descendant), pygit2.Oid(hex=ancestor)))

    def merge_base(self, a: Oid, b: Oid) -> Oid | None:
        base = self._repo.merge_base(pygit2.Oid(hex=a), pygit2.Oid(hex=b))
        return Oid(str(base)) if base else None

    def blob(self, data: bytes) -> Oid:
        return Oid(str(_write_object(lambda: self._repo.create_blob(data))))

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

    @property
    def empty_tree(self) -> Oid:
        if self._empty_tree is None:
            self._empty_tree = Oid(str(_write_object(self._repo.TreeBuilder().write)))
        return self._empty_tree

    def tree_entry(self, tree: Oid, path: str) -> tuple[str, Oid] | None:
        """('blob'|'tree', oid) at `path` inside `tree`, or None (also when `tree` is no tree)."""
        t = self._tree(tree)
        if t is None:
            return None
        try:
            obj = t[path]
        except (KeyError, ValueError, pygit2.GitError):
            return None
        if obj.type == pygit2.enums.ObjectType.TREE:
            return ("tree", Oid(str(obj.id)))
        return ("blob", Oid(str(obj.id))) if obj.type == pygit2.enums.ObjectType.BLOB else None

    def tree_list(self, tree: Oid, path: str) -> list[tuple[str, str]]:
        """(name, 'blob'|'tree') of every entry of the folder `path` inside `tree` ('' for the root)."""
        found = ("tree", tree) if not path else self.tree_entry(tree, path)
        t = self._tree(found[1]) if found and found[0] == "tree" else None
        if t is None:
            return []
        kinds = {pygit2.enums.ObjectType.TREE: "tree", pygit2.enums.ObjectType.BLOB: "blob"}
        return [(e.name, kinds[e.type]) for e in t if e.type in kinds and e.name is not None]

    def _tree(self, oid: Oid) -> pygit2.Tree | None:
        try:
            t = self._repo[oid]
        except (KeyError, ValueError, pygit2.GitError):
            return None
        return t if isinstance(t, pygit2.Tree) else None

    def tree_blobs(
        self, tree: Oid, prefix: str = "", max_depth: int | None = None
    ) -> Iterator[tuple[str, Oid]]:
        """Every blob below `tree`, depth first in name order, as (path, oid). Iterative, so a
        tree of any depth is walked; subtrees below `max_depth` folders are left out."""
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
            ta = self._tree(a) if a else None
            tb = self._tree(b) if b else None
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

    # -- files and the git CLI --------------------------------------------------------------------

    def git(self, *args: str, check: bool = True, input: bytes | None = None) -> str:
        """Run the git CLI in this worktree (for what libgit2 lacks: leases, gc, worktree lists)."""
        proc = subprocess.run(["git", *args], cwd=self.root, input=input, capture_output=True, check=False)
        if check and proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            raise GitbusError(f"git {args[0]} failed: {err[-1] if err else proc.returncode}.")
        return proc.stdout.decode(errors="replace")

    def git_result(
        self, *args: str, network: bool = False, timeout: float | None = None
    ) -> tuple[int, str, str]:
        """Run the git CLI and return (exit code, stdout, stderr) for callers that read failures.

        `network`: a fetch or push, which must fail rather than wait: no prompt for credentials, ssh
        in batch mode (unless the user set their own ssh command), and at most `timeout` seconds for
        a remote that accepts a connection and never answers."""
        env, limit = None, network_timeout() if timeout is None else timeout
        if network:
            env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
            if (
                "GIT_SSH_COMMAND" not in env
                and "GIT_SSH" not in env
                and not self._has_config("core.sshCommand")
            ):
                env["GIT_SSH_COMMAND"] = (
                    "ssh -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=10 "
                    "-o ServerAliveCountMax=3"
                )
        if not network:
            proc = subprocess.run(["git", *args], cwd=self.root, capture_output=True, check=False)
            return proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
        # A session of its own, so a timeout ends git *and* its ssh or remote helper, not git alone.
        with subprocess.Popen(
            ["git", *args],
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        ) as child:
            try:
                out, err = child.communicate(timeout=limit)
            except BaseException as e:  # the timeout, or Ctrl-C: git and its helpers go too
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.communicate()
                if isinstance(e, subprocess.TimeoutExpired):
                    return 124, "", f"fatal: no answer within {limit:g}s"
                raise
        return child.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    def _has_config(self, key: str) -> bool:
        try:
            self._repo.config[key]
        except KeyError:
            return False
        return True

    def staged_paths(self) -> list[str]:
        """Paths the next commit of this worktree changes (old and new names of renames)."""
        out = self.git("diff", "--cached", "--name-only", "--no-renames", "-z")
        return [p for p in out.split("\0") if p]

    def worktrees(self) -> list[Path]:
        """Every worktree of this repository that still exists on disk, the main one first; a bare
        main repository is no worktree (`bare` in its porcelain entry): nothing is checked out there."""
        out: list[Path] = []
        for entry in self.git("worktree", "list", "--porcelain").split("\n\n"):
            lines = entry.splitlines()
            if lines and lines[0].startswith("worktree ") and "bare" not in lines[1:]:
                p = Path(lines[0][len("worktree ") :])
                if p.is_dir():
                    out.append(p)
        return out


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
            disk = disk_problem(e)
            if disk:
                raise GitbusError(f"Could not write to the repository: {disk}.") from None
            if attempt == 10 or not isinstance(e, OSError):
                raise
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.05)
    raise AssertionError("unreachable")


def _kind_of(obj: pygit2.Object) -> str:
    return {
        pygit2.enums.ObjectType.COMMIT: "commit",
        pygit2.enums.ObjectType.TREE: "tree",
        pygit2.enums.ObjectType.BLOB: "blob",
        pygit2.enums.ObjectType.TAG: "tag",
    }.get(obj.type, "object")


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
