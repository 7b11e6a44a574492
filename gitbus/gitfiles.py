"""Git's on-disk files read directly, without libgit2: the hooks' fast path.

Importing pygit2 costs ~150 ms and a hook runs on every tool call, so the question
"has anything on the bus changed?" is answered here, once, from the files git itself keeps: loose
refs under `<common>/refs/` and `packed-refs` (`bus_tips`: the chain tips a session reads), or their
`stat` alone (`bus_stamp`: the TUI's poll). Everything that writes still goes through `gitbus.git`. Loose
refs are read before `packed-refs`, the order that cannot miss a ref being packed concurrently
(git writes `packed-refs` before deleting the loose file).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, NewType

from gitbus.ids import AGENTS_PREFIX, BUS_PREFIX, LEDGER_REF

Oid = NewType("Oid", str)

_HEX = frozenset("0123456789abcdef")


class Location(NamedTuple):
    """Where a worktree's files are: its root, its own git dir, and the shared (common) git dir."""

    root: Path
    git_dir: Path
    common_dir: Path


def common_dir_of(git_dir: Path) -> Path:
    """A worktree's git dir names the shared one in `commondir`; the main one is its own."""
    f = git_dir / "commondir"
    if f.is_file():
        return (git_dir / f.read_text().strip()).resolve()
    return git_dir


def locate(start: Path) -> Location | None:
    """The worktree containing `start`, found the way git does (a `.git` dir or `gitdir:` file)."""
    here = start.resolve()
    for folder in (here, *here.parents):
        dot = folder / ".git"
        if dot.is_dir():
            return Location(folder, dot, common_dir_of(dot))
        if dot.is_file():
            text = dot.read_text().strip()
            if text.startswith("gitdir:"):
                git_dir = (folder / text[len("gitdir:") :].strip()).resolve()
                return Location(folder, git_dir, common_dir_of(git_dir))
    return None


def _oid(text: str) -> str | None:
    t = text.strip()
    return t if len(t) in (40, 64) and set(t) <= _HEX else None


def read_refs(common_dir: Path, prefix: str) -> dict[str, str]:
    """Every ref under `prefix` (e.g. `refs/bus/`) with its object id; loose values win.

    Plain `os` calls rather than pathlib: this runs on every post, once per agent chain, and
    pathlib's parsing cost more than the reads themselves (5× at 64 agents)."""
    out: dict[str, str] = {}
    common = os.fspath(common_dir)
    base = os.path.join(common, prefix.rstrip("/"))
    oid = _read_oid(base)  # the prefix may name one ref
    if oid:
        out[prefix] = oid
    stack = [(base, prefix.rstrip("/") + "/")]
    while stack:
        folder, name_prefix = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, name_prefix + entry.name + "/"))
            elif not entry.name.endswith(".lock"):
                oid = _read_oid(entry.path)
                if oid:
                    out[name_prefix + entry.name] = oid
    for name, value in _packed(common).items():
        if name.startswith(prefix) and name not in out:
            out[name] = value
    return out


def bus_tips(common_dir: Path) -> dict[str, str]:
    """The chain tips a session reads: every agent chain and the ledger (from files, no libgit2)."""
    tips = read_refs(common_dir, AGENTS_PREFIX)
    tips.update(read_refs(common_dir, LEDGER_REF))
    return tips


Stamp = tuple[tuple[str, int, int, int], ...]


def bus_stamp(common_dir: Path) -> Stamp:
    """What changes whenever a bus ref moves, from `stat` alone, no file read: (file, inode, mtime,
    size) of each loose ref under refs/bus/, of packed-refs (pack-refs and gc replace it whole) and
    of reftable's table list. A ref write is lock-then-rename, so a moved ref always has a new inode
    and mtime even when its size is the same."""
    files = [common_dir / "packed-refs", common_dir / "reftable" / "tables.list"]
    for folder, _dirs, names in os.walk(common_dir / BUS_PREFIX):
        files += [Path(folder, n) for n in names if not n.endswith(".lock")]
    out = []
    for f in files:
        try:
            st = f.stat()
        except OSError:  # gone between the walk and the stat: the next poll sees it
            continue
        out.append((str(f), st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


def _read_oid(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    try:
        raw = os.read(fd, 128)
    except IsADirectoryError:
        return None
    finally:
        os.close(fd)
    try:
        return _oid(raw.decode("ascii"))
    except UnicodeDecodeError:
        return None


_PACKED: dict[str, tuple[tuple[int, int, int, int], dict[str, str]]] = {}


def _packed(common: str) -> dict[str, str]:
    """`packed-refs` parsed, cached by its stat: git replaces it by rename (a new inode) on every
    change, so an unchanged (inode, size, mtime, ctime) is an unchanged file."""
    path = os.path.join(common, "packed-refs")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {}
    key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    hit = _PACKED.get(common)
    if hit and hit[0] == key:
        return hit[1]
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    refs: dict[str, str] = {}
    for line in text.splitlines():
        if line[:1] in ("#", "^", ""):
            continue
        value, _, name = line.partition(" ")
        if _oid(value):
            refs[name] = value
    if len(_PACKED) > 64:
        _PACKED.clear()
    _PACKED[common] = (key, refs)
    return refs


class RefMoved(Exception):
    """A compare-and-swap lost: the ref `name` no longer holds the expected value but `actual`, the
    winner's (None: deleted, or unknown after a refused push). Internal: `Repository.retry_cas`
    decides again, and gives up with `LostRaces`."""

    def __init__(self, name: str, actual: Oid | None) -> None:
        super().__init__(f"{name} moved to {actual}")
        self.name = name
        self.actual = actual


class Commit(NamedTuple):
    oid: Oid
    message: str
    parents: tuple[Oid, ...]
    tree: Oid
    time: int  # committer time, seconds
