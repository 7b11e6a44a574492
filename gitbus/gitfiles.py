"""Git's on-disk files read directly, without libgit2: the hooks' fast path.

Importing pygit2 costs ~150 ms and a hook runs on every tool call, so the question
"has anything on the bus changed?" is answered here, once, from the files git itself keeps: loose
refs under `<common>/refs/` and `packed-refs` (`bus_tips`: the chain tips a session reads), or their
`stat` alone (`bus_stamp`: the TUI's poll). Everything that writes still goes through `gitbus.git`. Loose
refs are read before `packed-refs`, the order that cannot miss a ref being packed concurrently
(git writes `packed-refs` before deleting the loose file). The ref readers themselves live in
`gitbus.fastpath`, which imports nothing but `os` so that the nothing-new hook can use them before
anything else loads; they are re-exported here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, NewType

from gitbus.errors import GitbusError
from gitbus.fastpath import PACKED as PACKED
from gitbus.fastpath import bus_tips as bus_tips
from gitbus.fastpath import packed_damage as packed_damage
from gitbus.fastpath import packed_refs as packed_refs
from gitbus.fastpath import read_ref as read_ref
from gitbus.fastpath import read_refs as read_refs
from gitbus.ids import BUS_PREFIX

Oid = NewType("Oid", str)


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
            try:
                text = dot.read_text().strip()
            except UnicodeDecodeError:  # git refuses it too ("invalid gitfile format")
                raise GitbusError(f"{dot} is not a git file: it is not UTF-8 text.") from None
            if text.startswith("gitdir:"):
                git_dir = (folder / text[len("gitdir:") :].strip()).resolve()
                return Location(folder, git_dir, common_dir_of(git_dir))
    return None


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


class DamagedRef(GitbusError):
    """Ref `ref` is there but cannot be read as an object id (`fastpath.read_refs` says `why`): it is
    never written over as if absent, nor read as a guess. Its text says how to repair it."""

    def __init__(self, common_dir: str | Path, ref: str, why: str) -> None:
        self.ref, self.why = ref, why
        super().__init__(damage_text(common_dir, ref, why) + "; gitbus will not write over it.")


def damage_text(common_dir: str | Path, ref: str, why: str) -> str:
    """One sentence naming damaged ref `ref` (or `packed-refs` itself), its file and the repair."""
    packed = Path(common_dir, "packed-refs")
    if ref == PACKED:
        return f"{packed} {why}: put it back as git writes it ('<id> <ref>' lines, LF ends); do not delete it"
    if "packed-refs" in why:
        return f"{ref} {why} ({packed}): put a good commit id on that line, or delete the line"
    path = Path(common_dir, ref)
    return f"{ref} {why} ({path}): write a good commit id into that file, or delete it"


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
