"""Git's on-disk files read directly, without libgit2: the hooks' fast path.

Importing pygit2 costs ~150 ms and a hook runs on every tool call, so the question
"has anything on the bus changed?" is answered here, once, from the files git itself keeps: loose
refs under `<common>/refs/` and `packed-refs` (`bus_tips`: the chain tips a session reads), or their
`stat` alone (`bus_stamp`: the TUI's poll). Everything that writes still goes through `gitbus.git`. Loose
refs are read before `packed-refs`, the order that cannot miss a ref being packed concurrently
(git writes `packed-refs` before deleting the loose file). The ref readers themselves live in
`gitbus.reffiles`, which imports nothing but `os` so that the nothing-new hook can use them before
anything else loads; they are re-exported here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, NewType

from gitbus.errors import GitbusError
from gitbus.ids import BUS_PREFIX
from gitbus.reffiles import PACKED as PACKED
from gitbus.reffiles import bus_tips as bus_tips
from gitbus.reffiles import is_oid as is_oid
from gitbus.reffiles import packed_damage as packed_damage
from gitbus.reffiles import packed_ref as packed_ref
from gitbus.reffiles import packed_refs as packed_refs
from gitbus.reffiles import read_ref as read_ref
from gitbus.reffiles import read_refs as read_refs

Oid = NewType("Oid", str)
# What is trimmed around a path in git's `.git` and `commondir` files: ASCII white space only, as git
# does; str.strip() would also cut a U+2028 or U+0085 that ends a worktree's path.
_SPACE = " \t\n\r\f\v"


class Location(NamedTuple):
    """Where a worktree's files are: its root, its own git dir, and the shared (common) git dir."""

    root: Path
    git_dir: Path
    common_dir: Path


def common_dir_of(git_dir: Path) -> Path:
    """A worktree's git dir names the shared one in `commondir`; the main one is its own. One
    sentence when the one it names is not there (git refuses such a worktree too)."""
    f = git_dir / "commondir"
    if not f.is_file():
        return git_dir
    try:
        common = (git_dir / f.read_text(encoding="utf-8").strip(_SPACE)).resolve()
    except (UnicodeDecodeError, ValueError):
        raise GitbusError(f"{f} is not a git commondir file: it does not name a folder.") from None
    if not common.is_dir():
        raise GitbusError(
            f"{f} names the shared git dir {shown(common)}, which does not exist (moved or deleted?): "
            "git refuses this worktree too; `git worktree repair` run from the main checkout mends it."
        )
    return common


def locate(start: Path) -> Location | None:
    """The worktree containing `start`, found the way git does (a `.git` dir or `gitdir:` file).

    A `gitdir:` file naming a git dir that is not there is one sentence, not a location: gitbus
    would otherwise create its state in whatever folder the file names. A folder that cannot be
    followed (a symlink loop, a name too long) is one sentence too."""
    try:
        here = start.resolve()
        for folder in (here, *here.parents):
            found = _at(folder)
            if found is not None:
                return found
    except (OSError, RuntimeError, ValueError) as e:  # RuntimeError: pathlib's symlink loop
        if isinstance(e, OSError):
            why = e.strerror or "the system refuses it"
        else:
            why = "it holds a NUL" if isinstance(e, ValueError) else "it is a symlink loop"
        raise GitbusError(f"gitbus cannot follow the folder {shown(start)}: {why}.") from None
    return None


def shown(path: Path | str) -> str:
    """A path for an error line: inert and short (it may be any length and hold anything)."""
    from gitbus.inert import inert  # only on the way to an error: the hooks pay for every import

    return inert(str(path), 160)


def _at(folder: Path) -> Location | None:
    dot = folder / ".git"
    if dot.is_dir():
        return Location(folder, dot, common_dir_of(dot))
    if not dot.is_file():
        return None
    try:
        text = dot.read_text(encoding="utf-8").strip(_SPACE)
    except UnicodeDecodeError:  # git refuses it too ("invalid gitfile format")
        raise GitbusError(f"{dot} is not a git file: it is not UTF-8 text.") from None
    if not text.startswith("gitdir:"):
        return None
    git_dir = (folder / text[len("gitdir:") :].strip(_SPACE)).resolve()
    if not (git_dir / "HEAD").is_file():
        raise GitbusError(
            f"{dot} names the git dir {shown(git_dir)}, which does not exist (moved or deleted?): "
            "git refuses this worktree too; `git worktree repair` run from the main checkout mends it."
        )
    return Location(folder, git_dir, common_dir_of(git_dir))


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
    """Ref `ref` is there but cannot be read as an object id (`reffiles.read_refs` says `why`): it is
    never written over as if absent, nor read as a guess. Its text says how to repair it."""

    def __init__(self, common_dir: str | Path, ref: str, why: str) -> None:
        self.ref, self.why = ref, why
        super().__init__(damage_text(common_dir, ref, why) + "; gitbus will not write over it.")


def refuse_damage(common_dir: str | Path, damaged: dict[str, str]) -> None:
    """Raise `DamagedRef` for the first of `damaged` (ref -> why, as `read_ref` fills it), if any."""
    for ref, why in damaged.items():
        raise DamagedRef(common_dir, ref, why)


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
