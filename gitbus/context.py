"""The context file: what an agent should know now, kept current in its worktree by the watcher.

`<worktree>/.gitbus/context.md`, ignored through `<common>/info/exclude` so `git status` stays clean,
written atomically. One view of the recent bus (`gitbus.context_view`) is read per update and
rendered for every worktree (`gitbus.context_text`), so the cost of an update does not grow with the
number of agents; each worktree's uncommitted changes, which rank what it is shown, are looked up
with `git status` and may be remembered across a burst of updates (`ChangedPaths`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path

from gitbus import agents
from gitbus.context_text import render
from gitbus.context_view import read_view
from gitbus.errors import GitbusError
from gitbus.git import Repository
from gitbus.gitfiles import Location, locate
from gitbus.inert import inert

FILE = Path(".gitbus") / "context.md"
EXCLUDE_LINE = b"/.gitbus/"


def ensure_excluded(common_dir: Path) -> None:
    """Add `/.gitbus/` to `info/exclude` (shared by every worktree) once.

    As bytes, as git reads the file: a line there in another encoding (a Latin-1 comment) is no
    reason to stop, and is kept as it was."""
    f = common_dir / "info" / "exclude"
    f.parent.mkdir(parents=True, exist_ok=True)
    try:
        current = f.read_bytes()
    except FileNotFoundError:
        current = b""
    if EXCLUDE_LINE not in current.splitlines():
        with f.open("ab") as out:
            out.write((b"" if current.endswith(b"\n") or not current else b"\n") + EXCLUDE_LINE + b"\n")


def write(worktree: Path, text: str) -> bool:
    """Replace the worktree's context file atomically; False if it already says exactly this.

    Nothing is done through a link: `.gitbus` may have come with a commit, as a symlink to anywhere,
    and `context.md` may be a link or a FIFO (which would block a plain open for a writer forever).
    So `.gitbus` must be a real directory, made here if missing, and every step happens in it by its
    descriptor; `context.md` is compared and replaced only as a regular file (or made when missing).

    Raises OSError when the worktree cannot take it (e.g. `.gitbus` is a file or a symbolic link,
    `context.md` is not a regular file, or no space left)."""
    data = text.encode()
    folder = _open_folder(worktree / FILE.parent)
    try:
        if _reads(folder, worktree / FILE, data):
            return False
        fd, tmp = _create_temporary(folder)
        try:
            with os.fdopen(fd, "wb") as out:  # bytes: no text layer to build, 64 files an update
                out.write(data)
            os.replace(tmp, FILE.name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=folder)
            raise
        return True
    finally:
        os.close(folder)


def _open_folder(folder: Path) -> int:
    """A descriptor of the worktree's `.gitbus` directory, made if missing; never one reached
    through a symbolic link (`mkdir` makes none, `O_NOFOLLOW` opens none)."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        os.mkdir(folder)  # fails, never follows, if a link or a file took the name meanwhile
        st = os.lstat(folder)
    if stat.S_ISLNK(st.st_mode):
        raise _not_followed(folder)
    if not stat.S_ISDIR(st.st_mode):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(folder))
    return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def _reads(folder: int, path: Path, data: bytes) -> bool:
    """True when the context file in `folder` holds exactly `data`; False when it is missing or
    differs. Anything but a regular file is refused (an OSError): told from its name before it is
    opened, and by its descriptor after, in case one was swapped in meanwhile (`O_NONBLOCK` keeps a
    FIFO from holding the open, `O_NOFOLLOW` a link from being opened)."""
    try:
        st = os.stat(FILE.name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISREG(st.st_mode):
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(FILE.name, flags, dir_fd=folder)
        except FileNotFoundError:
            return False
        with os.fdopen(fd, "rb") as now:
            st = os.fstat(now.fileno())
            if stat.S_ISREG(st.st_mode):
                return now.read(len(data) + 1) == data
    if stat.S_ISLNK(st.st_mode):
        raise _not_followed(path)
    raise OSError(errno.EINVAL, "Not a regular file", str(path))


def _not_followed(path: Path) -> OSError:
    return OSError(errno.ELOOP, "Is a symbolic link, never followed", str(path))


def _create_temporary(folder: int) -> tuple[int, str]:
    """A new file of this process's own in `folder`, as `tempfile.mkstemp` makes one (which takes
    no directory descriptor): its descriptor and name."""
    for _ in range(100):
        name = f".context-{secrets.token_hex(6)}"
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            return os.open(name, flags, 0o600, dir_fd=folder), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "No free temporary name", ".context-*")


def changed_paths(repo: Repository, worktree: Path) -> list[str]:
    """Files this worktree has changed and not committed (for ranking discoveries).

    `git status` with optional locks off: a refreshing `git diff` rewrites the worktree's index
    under `index.lock`, which makes the agent's own `git add` or `git commit` there fail."""
    out = repo.git(
        "--no-optional-locks",
        "-C",
        str(worktree),
        "status",
        "--porcelain",
        "-z",
        "--untracked-files=no",
        "--no-renames",
        check=False,
    )
    return [entry[3:] for entry in out.split("\0") if len(entry) > 3][:200]


class ChangedPaths:
    """`changed_paths` per worktree, remembered for `ttl` seconds.

    They only rank discoveries, while a `git status` per worktree is most of an update's time with
    many worktrees (64 of them: ~180 ms): a watcher reuses them across the updates of a burst of
    posts. With `stale_ok`, an update never waits for them once a worktree has been looked at: a
    value past `ttl` is still used, and the worktree is listed in `stale()` for the caller to
    `refresh` off the update's path (the watcher does, on a thread of its own), so a file edit
    reaches the ranking at the first update after that refresh. Without it, a value past `ttl` is
    looked up again at once."""

    def __init__(self, ttl: float = 5.0, stale_ok: bool = False) -> None:
        self.ttl, self.stale_ok = ttl, stale_ok
        self._seen: dict[Path, tuple[float, list[str]]] = {}

    def __call__(self, repo: Repository, worktree: Path) -> list[str]:
        hit = self._seen.get(worktree)
        if hit is None or (not self.stale_ok and time.monotonic() - hit[0] >= self.ttl):
            hit = (time.monotonic(), changed_paths(repo, worktree))
            self._seen[worktree] = hit
        return hit[1]

    def stale(self) -> list[Path]:
        """The worktrees whose remembered value is older than `ttl`."""
        now = time.monotonic()
        return [wt for wt, (when, _) in list(self._seen.items()) if now - when >= self.ttl]

    def refresh(self, repo: Repository, worktrees: list[Path]) -> None:
        """Look `worktrees` up again (each entry is replaced whole: safe beside a reader thread)."""
        for wt in worktrees:
            if wt in self._seen:
                self._seen[wt] = (time.monotonic(), changed_paths(repo, wt))

    def forget_except(self, worktrees: list[Path]) -> None:
        """Drop what is remembered of worktrees that are gone."""
        keep = set(worktrees)
        self._seen = {wt: v for wt, v in list(self._seen.items()) if wt in keep}


def update_all(
    repo: Repository,
    now: int,
    env: dict[str, str] | None = None,
    on_problem: Callable[[str], None] | None = None,
    *,
    worktrees: list[Path] | None = None,
    changed: Callable[[Repository, Path], list[str]] = changed_paths,
    place: Callable[[Path], Location | None] = locate,
) -> list[Path]:
    """Rewrite the context file of every worktree (or of `worktrees`, the caller's listing); the
    ones that changed are returned.

    A worktree that cannot be updated (its file cannot be written, its agent name setting is bad)
    is skipped so the others still are; each such problem is passed to `on_problem` as a sentence,
    as is each worktree the listing skips (its path cannot be read whole: `Repository.worktree_listing`).
    `changed` and `place` find a worktree's changed files and git dirs (a watcher passes its own,
    remembered while its listing of worktrees stands)."""
    ensure_excluded(repo.common_dir)
    view = read_view(repo, now)
    texts: list[tuple[Path, str]] = []
    problems: dict[Path, Exception] = {}
    if worktrees is None:
        listing = repo.worktree_listing()
        worktrees = listing.paths
        for skipped in listing.skipped:
            if on_problem:
                on_problem(skipped)
    for wt in worktrees:
        try:
            where = place(wt)
            if where is None:
                continue
            me = agents.resolve(where, None, env or {})
            texts.append((wt, render(view, me, wt, changed(repo, wt), repo.ignorecase)))
        except (GitbusError, OSError) as e:
            problems[wt] = e
    written: list[Path] = []
    for (wt, _), outcome in zip(texts, _write_all(texts), strict=True):
        if isinstance(outcome, OSError):
            problems[wt] = outcome
        elif outcome:
            written.append(wt)
    for wt, problem in problems.items():
        if on_problem and wt.is_dir():  # a worktree removed meanwhile is no problem
            # Inert: the line goes to a terminal or a log, and a directory name is anyone's choice.
            on_problem(inert(f"the context file of {wt} was not updated: {_reason(problem)}"))
    return written


WRITERS = 8  # context files written at once


def _write_all(texts: list[tuple[Path, str]]) -> list[bool | OSError]:
    """`write` each (worktree, text), several at once: a rename over an existing file waits for the
    disk (ext4 starts writing the new file's data then, and frees the old file's blocks, a discard
    on some mounts: ~2 ms each on this machine's), so 64 files one after another took most of an
    update. The result of each, in order: written or not, or the error that stopped it."""

    def one(job: tuple[Path, str]) -> bool | OSError:
        try:
            return write(*job)
        except OSError as e:
            return e

    if len(texts) < 3:
        return [one(job) for job in texts]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(WRITERS, len(texts)), thread_name_prefix="gitbus-context") as pool:
        return list(pool.map(one, texts))


def _reason(e: Exception) -> str:
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return str(e)
