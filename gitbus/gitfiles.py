"""Git's on-disk files read directly, without libgit2: the hooks' fast path.

Importing pygit2 costs ~150 ms (field notes §5) and a hook runs on every tool call, so the question
"has anything on the bus changed?" is answered from the files git itself keeps: loose refs under
`<common>/refs/` and `packed-refs`. Everything that writes still goes through `gitbus.git`. Loose
refs are read before `packed-refs`, the order that cannot miss a ref being packed concurrently
(git writes `packed-refs` before deleting the loose file).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, NewType

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
    """Every ref under `prefix` (e.g. `refs/bus/`) with its object id; loose values win."""
    out: dict[str, str] = {}
    base = common_dir / prefix.rstrip("/")
    if base.is_file():  # the prefix names one ref
        try:
            oid = _oid(base.read_text())
        except (FileNotFoundError, UnicodeDecodeError):
            oid = None
        if oid:
            out[prefix] = oid
    for dirpath, _dirs, files in os.walk(base):
        for name in files:
            if name.endswith(".lock"):
                continue
            path = Path(dirpath) / name
            try:
                oid = _oid(path.read_text())
            except (FileNotFoundError, UnicodeDecodeError):
                continue
            if oid:
                out[path.relative_to(common_dir).as_posix()] = oid
    try:
        packed = (common_dir / "packed-refs").read_text()
    except FileNotFoundError:
        return out
    for line in packed.splitlines():
        if line[:1] in ("#", "^", ""):
            continue
        value, _, name = line.partition(" ")
        if name.startswith(prefix) and name not in out and _oid(value):
            out[name] = value
    return out


class RefMoved(Exception):
    """A compare-and-swap lost: the ref no longer holds the expected value (internal, retried)."""

    def __init__(self, name: str, actual: Oid | None) -> None:
        super().__init__(f"{name} moved to {actual}")
        self.actual = actual


class Commit(NamedTuple):
    oid: Oid
    message: str
    parents: tuple[Oid, ...]
    tree: Oid
    time: int  # committer time, seconds
