"""Git's loose objects and loose refs written directly, as git writes them, without libgit2: the
ledger's write path.

A ledger step writes five small objects (a blob, three trees, a commit), and each cost libgit2 more than
the file itself: before every write it looks the object up, and on the miss it rescans the pack folder
(`git_odb__freshen` then `git_odb_refresh`), and the tree builder reads each entry it is given back from
disk to check it (issue 16). Here an object is hashed, deflated and made to appear under its name in
one step: written into an unnamed file (`O_TMPFILE`) in `objects/` and linked in, or, where that is
not offered, written to `objects/tmp_obj_*` and linked in (renamed where hard links are not). A reader never
sees a partial object; one that is already there is only touched, as git freshens it. An object git
has only in a pack is written loose once more, which git tolerates (`git prune-packed` drops it).

Trees are small here (a ledger folder holds the few top folders of its shard), so they are laid out
here too: `tree_bytes` in git's canonical order. `parse_tree` reads one back only when it is as git
writes trees (sorted, no repeated name, canonical modes); anything else is left to libgit2.

Refs are moved by git's own lock protocol for the files ref store (`update_refs`), which git, libgit2
and gitbus all keep: `<ref>.lock` created exclusively, the value compared while it is held, the new
value written to the lock and, once every lock of the update holds its value, renamed over the
ref (synced first where `core.fsyncObjectFiles` asks, as libgit2 does). libgit2's transaction did
the same with some forty system calls and a read of the user's identity per ref for a reflog
gitbus refs do not keep; whatever is not the plain case (a value git reads but did not write that
way, a deletion, a ref that keeps a reflog, a name git would refuse) is still libgit2's (`NotPlain`).
A ref that is there but damaged (empty, cut short, symbolic, a symbolic link or a folder in its
place, a damaged `packed-refs` line) is refused (`DamagedRef`), never written over as if absent.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import zlib
from collections.abc import Callable, Sequence

from gitbus.gitfiles import Oid, RefMoved, packed_ref, read_ref, refuse_damage

TREE = b"40000"  # git's mode of a folder entry (no leading zero)
BLOB = b"100644"
MODES = frozenset({TREE, BLOB, b"100755", b"120000", b"160000"})
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
_RAW_LEN = 20
_STORED_MAX = 4096  # bytes: an object up to this size is stored in its zlib stream, not deflated

# name -> (mode, raw id) of a tree's entries, as git stores them.
Entries = dict[bytes, tuple[bytes, bytes]]

_tmpfile = hasattr(os, "O_TMPFILE")  # False once the system refused it: named temp files from then on
_proc: int | None = None  # fd of /proc/self/fd, to link an unnamed file in by (this process's)


def object_id(kind: bytes, body: bytes) -> tuple[str, bytes]:
    """The id of object `kind` (`blob`, `tree`, `commit`) holding `body`, and its loose file's bytes."""
    raw = b"%s %d\0" % (kind, len(body)) + body
    # zlib's default state (256 KiB, allocated and cleared for every object) cost more than the file
    # itself, and a file under one disk block takes a block however well it deflates: an object that
    # small is stored (level 0, as `core.looseCompression=0` has git write it), a larger one deflated
    # with a 4 KiB window. Either is a zlib stream that git inflates as any other.
    deflate = zlib.compressobj(0 if len(raw) <= _STORED_MAX else 1, zlib.DEFLATED, 12, 4)
    return hashlib.sha1(raw, usedforsecurity=False).hexdigest(), deflate.compress(raw) + deflate.flush()


def write(objects: str, oid: str, data: bytes, fsync: bool = False) -> None:
    """Make `data` (from `object_id`) the loose object `oid` under the object folder `objects`.

    The file is made in `objects/` and linked into `objects/xx/`: ext4 takes a new file's inode from
    its folder's block group, and the 256 `xx` folders lie in as many groups, each a new place where
    the allocator may have to step over recently freed inodes (docs/benchmarks.md, Machine). Made
    in one folder, a grant measured never slower and up to 1.7× faster. Raises `OSError` when it
    could not: the caller tries again (gc may delete `objects/xx/` at any moment), as for any write
    into the repository."""
    global _tmpfile
    folder = f"{objects}/{oid[:2]}"
    final = f"{folder}/{oid[2:]}"
    if _tmpfile:
        proc = _proc_fd()
        try:
            unnamed = os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC
            fd = os.open(objects, unnamed, 0o444) if proc is not None else -1
        except OSError as e:
            if e.errno not in (errno.EISDIR, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            fd, _tmpfile = -1, False  # a file system or kernel without unnamed files
        if fd >= 0:
            try:
                _fill(fd, data, fsync)
                by_fd = str(fd)
                _link_in(lambda: os.link(by_fd, final, src_dir_fd=proc, follow_symlinks=True), folder, final)
                if fsync:
                    _sync_folder(folder)
                return
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.EPERM, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
                _tmpfile = False  # linking a file by its descriptor is refused here
            finally:
                os.close(fd)
    _write_named(objects, folder, final, data, fsync)


def _write_named(objects: str, folder: str, final: str, data: bytes, fsync: bool) -> None:
    tmp = f"{objects}/tmp_obj_{secrets.token_hex(6)}"  # a name git's prune knows to clean up
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    try:
        try:
            _fill(fd, data, fsync)
        finally:
            os.close(fd)
        try:
            _link_in(lambda: os.link(tmp, final), folder, final)
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK):
                raise
            _link_in(lambda: os.rename(tmp, final), folder, final)  # no hard links: the same object
        if fsync:
            _sync_folder(folder)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _link_in(link: Callable[[], None], folder: str, final: str) -> None:
    """Give the written file its object name, making `objects/xx/` when it is not there (gc deletes
    empty ones); an object that is already there is only freshened."""
    try:
        try:
            link()
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
            link()
    except FileExistsError:
        _freshen(final)


def _fill(fd: int, data: bytes, fsync: bool) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    if fsync:
        os.fsync(fd)


def _sync_folder(folder: str) -> None:
    """Make the new name durable too, as libgit2 does with `core.fsyncObjectFiles`."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _freshen(path: str) -> None:
    """Touch an object that is already there, as git does, so a prune does not take it meanwhile."""
    with contextlib.suppress(OSError):
        os.utime(path)


def _proc_fd() -> int | None:
    """`/proc/self/fd` of this process, or None where there is none. Opened once; a forked child
    forgets its parent's (`_forget_proc`), whose numbers name the parent's files, and opens its own."""
    global _proc, _tmpfile
    if _proc is None:
        try:
            _proc = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            _tmpfile = False
            return None
    return _proc


def _forget_proc() -> None:
    global _proc
    if _proc is not None:
        with contextlib.suppress(OSError):
            os.close(_proc)
    _proc = None


if hasattr(os, "register_at_fork"):  # asked at fork, not of every object: `getpid` is a system call
    os.register_at_fork(after_in_child=_forget_proc)


def plain(name: str) -> bytes | None:
    """`name` as a tree entry name, when it is plainly one every git takes: printable ASCII (so no
    character git's core.protectHFS/protectNTFS ignore when they compare a name with `.git`), not
    empty, no `/`, `\\` or `:`, nothing `.git` could be read as. None leaves the decision to libgit2."""
    if not (name.isascii() and name.isprintable()):
        return None
    raw = name.encode("ascii")
    low = raw.lower()
    if not raw or raw in (b".", b"..") or any(c in raw for c in b"/\\:") or raw[-1:] in (b".", b" "):
        return None
    if low.startswith((b".git", b"git~")):
        return None
    return raw


def parse_tree(raw: bytes) -> Entries | None:
    """The entries of tree `raw` (its body), or None when it is not as git writes trees."""
    out: Entries = {}
    pos, end = 0, len(raw)
    last = b""
    while pos < end:
        space = raw.find(b" ", pos)
        nul = raw.find(b"\0", space + 1) if space >= 0 else -1
        if nul < 0 or nul + 1 + _RAW_LEN > end:
            return None
        mode, name = raw[pos:space], raw[space + 1 : nul]
        if mode not in MODES or not name or b"/" in name:
            return None
        key = name + b"/" if mode == TREE else name
        if key <= last:  # out of git's order, or a name twice
            return None
        last = key
        out[name] = (mode, raw[nul + 1 : nul + 1 + _RAW_LEN])
        pos = nul + 1 + _RAW_LEN
    return out


def tree_bytes(entries: Entries) -> bytes:
    """The body of the tree holding `entries`, in git's order (a folder sorts as its name and `/`)."""
    order = sorted(entries, key=lambda n: n + b"/" if entries[n][0] == TREE else n)
    return b"".join(b"%s %s\0%s" % (entries[n][0], n, entries[n][1]) for n in order)


# -- refs ------------------------------------------------------------------------------------------

# The refs gitbus names (agent chains, ledgers, the tombstone): plain components, no `..`, no `.lock`.
_PLAIN_REF = re.compile(r"refs/bus/(?:[a-z0-9](?:[a-z0-9_-]|\.(?!\.))*/)*[a-z0-9](?:[a-z0-9_-]|\.(?!\.))*")
_HEX = frozenset("0123456789abcdef")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # a symbolic link in a ref's place is not followed


class NotPlain(Exception):
    """The refs to move are not the plain case `update_refs` handles: libgit2 moves them."""


def plain_ref(name: str) -> bool:
    """True for a ref name `update_refs` may write: one of gitbus's own under `refs/bus/`."""
    return (
        _PLAIN_REF.fullmatch(name) is not None
        and not name.endswith((".lock", "."))
        and ".lock/" not in name  # git refuses a component ending `.lock` anywhere in the name
    )


def full_id(oid: str) -> bool:
    """True for a full SHA-1 object id as git spells it (40 lowercase hex digits)."""
    return len(oid) == 40 and set(oid) <= _HEX


def update_refs(
    common: str,
    changes: Sequence[tuple[str, Oid, Oid | None]],
    keeps_log: bool,
    fsync: bool = False,
    check: Callable[[], None] | None = None,
) -> None:
    """Point each ref of `changes` (name, new, expected; sorted by name) at `new` if it still holds
    `expected` (None: it must not exist), all or none, as git does: every ref is locked first
    (`<ref>.lock`, created exclusively; `FileExistsError` while another writer holds one), then
    compared, then every new value is written into its lock, and only then are the locks renamed
    over the refs; a failure before the renames removes every lock and moves nothing. A ref whose
    new value is the one it holds (a lease) is only compared. `fsync` (core.fsyncObjectFiles) syncs
    each lock's data before the renames and the refs' folders after them, as libgit2 does. `check`
    runs once every ref is locked and compared (see `Repository.update_refs`).

    Raises `RefMoved` naming the first that moved, and `NotPlain` before locking anything when
    libgit2 must do it: a ref gitbus does not name, a reflog to keep (`keeps_log`:
    core.logAllRefUpdates=always, or the ref has one), or, once locked, a ref git reads that is not
    as git writes it; `DamagedRef` (every lock removed) for a ref that is there but damaged."""
    for name, new, expected in changes:  # a lease writes no value, so no reflog entry (nor does libgit2)
        logged = new != expected and (keeps_log or os.path.exists(f"{common}/logs/{name}"))
        if not plain_ref(name) or logged:
            raise NotPlain(name)
    locks: list[str] = []  # taken and not yet renamed: removed on the way out
    fds: list[int] = []  # their open descriptors
    try:
        for name, _, _ in changes:
            lock = f"{common}/{name}.lock"
            fds.append(_lock(lock))
            locks.append(lock)
        for name, _, expected in changes:
            actual = _held_ref(common, name, f"{common}/{name}")
            if actual != expected:
                raise RefMoved(name, actual)
        if check is not None:
            check()
        for (_, new, expected), fd in zip(changes, fds, strict=True):
            if new != expected:
                _fill(fd, f"{new}\n".encode(), fsync)
        while fds:
            os.close(fds.pop())
        moved: list[str] = []
        for (name, new, expected), lock in zip(changes, list(locks), strict=True):
            if new != expected:
                path = f"{common}/{name}"
                os.rename(lock, path)
                locks.remove(lock)
                moved.append(path)
        if fsync:
            for folder in dict.fromkeys(os.path.dirname(path) for path in moved):
                _sync_folder(folder)
    finally:
        for fd in fds:
            os.close(fd)
        for lock in locks:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)


def _lock(lock: str) -> int:
    try:
        return os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except FileNotFoundError:  # the ref's folder is not there yet
        os.makedirs(os.path.dirname(lock), exist_ok=True)
        return os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)


def _held_ref(common: str, name: str, path: str) -> Oid | None:
    """The value of locked ref `name`: its loose file, else `packed-refs` (git's order), else None.
    A value that is there but damaged (`reffiles.read_refs`: empty, cut short, symbolic, a symbolic
    link, a folder, a damaged packed line) raises `DamagedRef`: it is never written over as absent."""
    raw: bytes | None = None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | _NOFOLLOW)
    except FileNotFoundError:  # no loose file (none can appear: its lock is held): packed, or none
        bad: dict[str, str] = {}
        packed = packed_ref(common, name, bad)
        refuse_damage(common, bad)
        return None if packed is None else Oid(packed)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        fd = -1  # a symbolic link: `read_ref` names it
    if fd >= 0:
        try:
            raw = os.read(fd, 128)
        except IsADirectoryError:
            pass
        finally:
            os.close(fd)
    text = raw.decode("ascii", "replace") if raw is not None else ""
    if len(text) == 41 and text[40] == "\n" and full_id(text[:40]):
        return Oid(text[:40])
    damaged: dict[str, str] = {}
    oid = read_ref(common, name, damaged)
    refuse_damage(common, damaged)
    if raw is not None:
        raise NotPlain(name)  # a value git reads, not as git writes it: libgit2's
    return None if oid is None else Oid(oid)
