"""gitbus's own files beside git's: one atomic writer, and what a full or read-only disk means.

Every small state file (cursors, settings, the claims cache) is replaced atomically: a unique temp
file beside it, then a rename. When the disk is full or read-only the write fails at once with one
sentence and the temp file is removed, so a failed write leaves nothing behind and waits for nothing.
Standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from gitbus.errors import GitbusError

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


def write_atomic(f: Path, data: str, prefix: str = ".gitbus-", mode: int | None = None) -> None:
    """Replace `f` with `data` atomically (with permissions `mode`, else private to this user); a
    `GitbusError` in one sentence when the disk refuses."""
    tmp: str | None = None
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=f.parent, prefix=prefix)
        with os.fdopen(fd, "w") as out:
            out.write(data)
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
def locked(f: Path) -> Iterator[None]:
    """Hold an exclusive `flock` on the file `f` (created if missing); one sentence when the disk
    cannot hold even that."""
    import fcntl

    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        handle = f.open("a")
    except OSError as e:
        raise GitbusError(f"Could not create the lock {f}: {disk_problem(e) or e.strerror or e}.") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
