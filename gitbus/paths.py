"""Repository paths as claims see them: normalised, repo-relative, and compared hierarchically.

A normalised path is POSIX, relative to the repository root, with no `.`/`..`/empty components; a
directory ends with `/`. Overlap is symmetric and by whole components: `internal/api/` overlaps
`internal/api/x.go`, `internal/` and itself, never `internal/apis/`. With `core.ignorecase` the
comparison key is case-folded, the stored spelling is kept.

A typed path is a path, never a pattern: `internal/**` or `src/*.py` is refused with the folder to
claim instead, because a glob stored as a literal would protect nothing and deciding whether two globs
overlap is not exact enough for a lease. Git allows `*`, `?` and `[` in file names, so a typed path
with them is taken as itself when it exists in the worktree, and a path a tool call names (`literal`)
is always taken as itself.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gitbus.errors import GitbusError
from gitbus.inert import describe, unsafe


class NotInRepository(GitbusError):
    """The path is no file of the worktree: outside it (through a symlink too), in `.git`, or
    the root itself. A path refused for any other reason is one gitbus cannot judge."""


MAX_DEPTH = 64  # components: deeper than any real source tree, shallow enough for every walk
MAX_BYTES = 4096  # UTF-8 bytes of one path: PATH_MAX on Linux


def _check_chars(raw: str) -> None:
    if not raw or not raw.strip():
        raise GitbusError("A path is empty; name a file or directory inside the repository.")
    bad = unsafe(raw, one_line=True)
    if bad is not None:
        what = describe(bad)
        if what == "bytes that are not UTF-8":  # argv bytes that were not UTF-8
            raise GitbusError(f"The path {raw!r} is not valid UTF-8; name a path in UTF-8.")
        raise GitbusError(f"The path {raw!r} contains {what}; name a plain path.")
    if len(raw.encode("utf-8")) > MAX_BYTES:
        raise GitbusError(f"A path is over {MAX_BYTES} bytes long; name a shorter one.")


def _check_depth(rel: str) -> None:
    if rel.rstrip("/").count("/") + 1 > MAX_DEPTH:
        raise GitbusError(f"A path is more than {MAX_DEPTH} folders deep; name a shallower one.")


GLOB_CHARS = "*?["


def _refuse_pattern(raw: str, full: str, root: str) -> None:
    """Refuse a glob that names no existing file, with the folder above its first wildcard."""
    if not any(c in raw for c in GLOB_CHARS) or os.path.lexists(full):
        return
    rel = os.path.relpath(full, root).replace(os.sep, "/")
    fixed = []
    for part in rel.split("/"):
        if any(c in part for c in GLOB_CHARS):
            break
        fixed.append(part)
    instead = (
        f"name {'/'.join(fixed)}/ for everything under it"
        if fixed
        else "name the files one by one, or the folder that holds them"
    )
    raise GitbusError(f"'{raw}' is a pattern, and gitbus takes paths and folders, not patterns; {instead}.")


def normalize(
    raw: str, *, root: Path | str, cwd: Path | str, literal: bool = False, resolved: bool = False
) -> str:
    """Make a user-typed path repo-relative and canonical, or refuse it in one sentence.

    `raw` may be relative to `cwd`, or absolute inside the worktree at `root`. A trailing `/`, or an
    existing directory, makes it a directory claim. Symlinks inside the worktree are followed. A glob
    (`*`, `?`, `[`) that names no existing file is refused unless `literal` (a tool call's file).
    `resolved`: `root` and `cwd` are real paths already (`real_dirs`), so they are not resolved again.
    """
    _check_chars(raw)
    root_s = str(root) if resolved else os.path.realpath(root)
    wants_dir = raw.endswith(("/", os.sep))
    if os.path.isabs(raw):
        full = os.path.normpath(raw)
        if not inside(full, root_s):
            full = os.path.normpath(os.path.realpath(raw))
    else:
        full = os.path.normpath(os.path.join(str(cwd) if resolved else os.path.realpath(cwd), raw))
    if not inside(full, root_s):
        raise NotInRepository(f"The path '{raw}' is outside the repository; name a path inside {root_s}.")
    if not literal:
        _refuse_pattern(raw, full, root_s)
    # Through symlinks: an edit of `alias/x` is an edit of what `alias` points at, so the claim is
    # on that; and a link out of the repository is refused like any outside path.
    real = _real_below(root_s, full)
    if not inside(real, root_s):
        raise NotInRepository(
            f"The path '{raw}' leads outside the repository through a symlink; name a path inside {root_s}."
        )
    full = real
    rel = os.path.relpath(full, root_s).replace(os.sep, "/")
    if rel != raw:  # the folders it was taken from may hold what `raw` did not (bytes not UTF-8)
        _check_chars(rel)
    if rel == ".":
        raise NotInRepository(
            "The repository root is not a path gitbus takes; name a directory or file in it."
        )
    parts = rel.split("/")
    _check_depth(rel)
    if any(p.casefold() == ".git" for p in parts):
        raise NotInRepository(f"The path '{raw}' is inside git's own directory; name a path in the worktree.")
    if wants_dir or os.path.isdir(full):
        return rel + "/"
    return rel


def real_dirs(root: Path, cwd: Path) -> tuple[str, str]:
    """`root` and `cwd` resolved (`os.path.realpath`), for `normalize(..., resolved=True)`."""
    return os.path.realpath(root), os.path.realpath(cwd)


def _real_below(root: str, full: str) -> str:
    """`os.path.realpath(full)` for a path `full` inside the real path `root`: the folders above root
    are real already, so only the components below it are looked at, and a symlink among them is
    resolved by realpath itself. Nothing below a component that is not there is a link."""
    at = root.rstrip(os.sep)
    for name in full[len(at) + 1 :].split(os.sep) if full != root else ():
        at = f"{at}{os.sep}{name}"
        try:
            if stat.S_ISLNK(os.lstat(at).st_mode):
                return os.path.realpath(full)
        except OSError:
            return full
    return full


def canonical(path: str) -> str:
    """Validate an already repo-relative path (from a message or a remote) without touching disk."""
    _check_chars(path)
    body = path[:-1] if path.endswith("/") else path
    parts = body.split("/")
    if not body or any(p in ("", ".", "..") or p.casefold() == ".git" for p in parts):
        raise GitbusError(f"'{path}' is not a normalised repository path.")
    _check_depth(path)
    return path


def inside(full: str, root: str) -> bool:
    """True when path `full` is `root` or below it (both normalised, as text)."""
    return full == root or full.startswith(root.rstrip(os.sep) + os.sep)


def is_dir(path: str) -> bool:
    return path.endswith("/")


def key(path: str, ignorecase: bool) -> tuple[str, ...]:
    """The comparison key: components, case-folded when the repository ignores case."""
    body = path.rstrip("/")
    if ignorecase:
        body = body.casefold()
    return tuple(body.split("/"))


def overlaps(a: str, b: str, ignorecase: bool = False) -> bool:
    """True when one path contains the other (or they are the same), by whole components."""
    return keys_overlap(key(a, ignorecase), key(b, ignorecase))


def keys_overlap(ka: tuple[str, ...], kb: tuple[str, ...]) -> bool:
    """`overlaps` of two paths' `key`s (for a caller that compares one path with many)."""
    n = min(len(ka), len(kb))
    return ka[:n] == kb[:n]


def covers(claim: str, path: str, ignorecase: bool = False) -> bool:
    """True when `path` lies at or below `claim`."""
    kc, kp = key(claim, ignorecase), key(path, ignorecase)
    return kp[: len(kc)] == kc
