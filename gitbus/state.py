"""gitbus's own files beside git's: every name in them, one atomic writer, one lock, and what a full
or read-only disk means.

All of it lives in `<common git dir>/gitbus/` (one clone, every worktree), except the agent name,
which is one worktree's and lives in `<worktree git dir>/gitbus/agent`. Nothing there is shared
through a remote; deleting any of it loses at most a position or a cache (docs/format.md):

    <common git dir>/gitbus/
        config.json, config.lock     settings, their writers' lock     (settings)
        cursors/<agent>.json, .lock  an agent's read cursor    (cursors)
        shown/<agent>.json           ids sessions showed       (cursors)
        sessions/<agent>/<key>/      a hook session: a.json, b.json, lock   (cursors)
        sessions/<agent>/<key>.wake.pid   its background waiter           (hooks)
        cache/claims.idx             the edit guard's claims   (guard)
        search/                      index.tsv, covered.json, lock        (searchindex)
        hooks/, hooks-path.json      git hooks in front of a relative core.hooksPath (githooks)
        created.json                 what install changed      (install_record)
        housekeeping.stamp, .lock    the last look, one housekeeper       (housekeeping)
        refused.json, sync-status.json   the last pull's refusals, the last background sync (sync)
        watch.lock, watch.log        one watcher, its output   (watch)
        turns/<hash of a ref>        a writer starved of that ref takes its turn (git)
        horizon                      the newest bus time this clone has seen   (chains)

Every module names its files through the functions below, never by spelling a path. Every small file
is replaced atomically (`write_atomic`: a unique temp file beside it, then a rename, so two writers
never share a temp name), and every lock is an `flock` (`locked`), which the kernel releases when its
holder dies. When the disk is full or read-only a write fails at once with one sentence and the temp
file is removed, so a failed write leaves nothing behind and waits for nothing. Standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from gitbus import fastpath
from gitbus.errors import GitbusError

# -- the names ---------------------------------------------------------------------------------------

DIR = "gitbus"  # the folder in the common git dir, and in each worktree's git dir (the agent name)


def root(common_dir: Path) -> Path:
    """`<common git dir>/gitbus`: the folder all of this clone's gitbus state lives in."""
    return common_dir / DIR


def agent_setting(git_dir: Path) -> Path:
    """The worktree's own agent name (`gitbus join --name`), in its private git dir."""
    return git_dir / DIR / "agent"


def settings(common_dir: Path) -> Path:
    return root(common_dir) / "config.json"


def settings_lock(common_dir: Path) -> Path:
    """Held while the settings file is read, changed and written back."""
    return root(common_dir) / "config.lock"


def cursor(common_dir: Path, agent: str) -> Path:
    """Agent `agent`'s read cursor."""
    return root(common_dir) / "cursors" / f"{agent}.json"


def cursor_lock(common_dir: Path, agent: str) -> Path:
    """Held while `agent`'s cursor and shown ids change."""
    return root(common_dir) / "cursors" / f"{agent}.lock"


def shown(common_dir: Path, agent: str) -> Path:
    """The ids `agent`'s hook sessions showed past its cursor."""
    return root(common_dir) / "shown" / f"{agent}.json"


def pages(common_dir: Path, agent: str) -> Path:
    """Where `agent`'s inbox pages past the window go on: the recent continuation tokens."""
    return root(common_dir) / "pages" / f"{agent}.json"


def agent_sessions(common_dir: Path, agent: str) -> Path:
    """The folder of `agent`'s hook sessions, one folder each."""
    return root(common_dir) / "sessions" / agent


_SAFE = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def _session_key(session: str) -> str:
    """A session id as a file name: itself when it is a safe one, else a hash of it. `.` and `..`
    are hashed too: as themselves they would name the agent's sessions folder or the one above."""
    if _SAFE.fullmatch(session) and session not in (".", ".."):
        return session
    import hashlib  # rarely needed, and the hooks' fast path pays for every import

    return hashlib.sha256(session.encode()).hexdigest()[:32]


def session_dir(common_dir: Path, agent: str, session: str) -> Path:
    """One hook session's folder: its two cursor slots and its lock."""
    return agent_sessions(common_dir, agent) / _session_key(session)


SESSION_SLOTS = fastpath.SLOTS  # a session cursor is written to both, the newer valid one wins
SESSION_LOCK = "lock"


def wake_pid(common_dir: Path, agent: str, session: str) -> Path:
    """The pid of a session's background waiter (one per session; a newer one replaces it)."""
    return agent_sessions(common_dir, agent) / f"{_session_key(session)}.wake.pid"


def claims_cache(common_dir: Path) -> Path:
    """The edit guard's index of the claims, keyed by the ledger tip."""
    return root(common_dir) / "cache" / "claims.idx"


def search(common_dir: Path) -> Path:
    """The search index's folder: `index.tsv`, `covered.json` and `lock`."""
    return root(common_dir) / "search"


def own_hooks(common_dir: Path) -> Path:
    """gitbus's hooks folder, put in front of a relative `core.hooksPath`."""
    return root(common_dir) / "hooks"


def hooks_path_record(common_dir: Path) -> Path:
    """What `core.hooksPath` was before gitbus put its own hooks folder in front of it."""
    return root(common_dir) / "hooks-path.json"


def install_record(common_dir: Path) -> Path:
    """What `gitbus install` created and the user's text it changed."""
    return root(common_dir) / "created.json"


def housekeeping_stamp(common_dir: Path) -> Path:
    """Touched at each housekeeping look: its age says whether to look again."""
    return root(common_dir) / "housekeeping.stamp"


def housekeeping_lock(common_dir: Path) -> Path:
    return root(common_dir) / "housekeeping.lock"


def refused(common_dir: Path) -> Path:
    """What the last pull refused."""
    return root(common_dir) / "refused.json"


def sync_status(common_dir: Path) -> Path:
    """How the last background sync went."""
    return root(common_dir) / "sync-status.json"


def watch_lock(common_dir: Path) -> Path:
    """Held by the one watcher of this clone, with its pid inside."""
    return root(common_dir) / "watch.lock"


def watch_log(common_dir: Path) -> Path:
    """Where a background watcher's output goes."""
    return root(common_dir) / "watch.log"


def horizon(common_dir: Path) -> Path:
    """The newest message time on this clone's bus that a new message must be stamped past."""
    return root(common_dir) / "horizon"


def turn(common_dir: Path, ref: str) -> Path:
    """Held by a writer of `ref` that lost several races in a row, while it tries once more."""
    import hashlib

    return root(common_dir) / "turns" / hashlib.sha1(ref.encode()).hexdigest()[:16]


# -- writing and locking -----------------------------------------------------------------------------

_DISK_ERRORS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
}
_DISK_TEXTS = {  # libgit2's errors carry only text
    "No space left on device": "the disk is full",
    "Disk quota exceeded": "the disk quota is exceeded",
    "Read-only file system": "the file system is read-only",
}


def disk_problem(e: BaseException) -> str | None:
    """What is wrong with the disk when `e` says it is full or read-only (retrying cannot help)."""
    if isinstance(e, OSError) and e.errno in _DISK_ERRORS:
        return _DISK_ERRORS[e.errno]
    text = str(e)
    return next((why for needle, why in _DISK_TEXTS.items() if needle in text), None)


def write_atomic(f: Path, data: str | bytes, prefix: str = ".gitbus-", mode: int | None = None) -> None:
    """Replace `f` with `data` atomically (with permissions `mode`, else private to this user); a
    `GitbusError` in one sentence when the disk refuses. Bytes are written as they are (a user's
    file given back: its CRLFs and BOM included)."""
    import tempfile  # here: with shutil and random, 5 ms before a sync can start its fetch

    tmp: str | None = None
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=f.parent, prefix=prefix)
        with os.fdopen(fd, "wb") as out:
            out.write(data if isinstance(data, bytes) else data.encode())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, f)
        tmp = None
    except OSError as e:
        raise GitbusError(f"Could not write {f}: {disk_problem(e) or e.strerror or e}.") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


@contextlib.contextmanager
def locked(f: Path, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive `flock` on the file `f` (created if missing); one sentence when the disk
    cannot hold even that. Without `wait`, yields False at once when another holder has it (and
    holds nothing), else True."""
    import fcntl

    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        handle = f.open("a")
    except OSError as e:
        raise GitbusError(f"Could not create the lock {f}: {disk_problem(e) or e.strerror or e}.") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


@contextlib.contextmanager
def taking_turn(f: Path, pause: Callable[[int], float], deadline: float) -> Iterator[bool]:
    """Hold an exclusive `flock` on `f` (created if missing), polled with `pause(n)` seconds between
    tries until the monotonic `deadline`: True while held, False when the deadline passed or the disk
    cannot hold the file (then nothing is held: a turn is for fairness, never for correctness)."""
    import fcntl
    import time

    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        handle = f.open("a")
    except OSError:
        yield False
        return
    with handle:
        for n in range(1_000_000):
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    yield False
                    return
                time.sleep(pause(n))
        yield True


def wait_turn(f: Path, pause: Callable[[int], float], deadline: float) -> None:
    """Return once nobody holds `f` by `taking_turn` (at once when there is no such file), or at the
    monotonic `deadline`: a writer that lost many races goes first."""
    import fcntl
    import time

    try:
        fd = os.open(f, os.O_RDONLY)
    except OSError:
        return
    try:
        for n in range(1_000_000):
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return
                time.sleep(pause(n))
    finally:
        os.close(fd)
