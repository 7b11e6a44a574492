"""Read cursors: which messages an agent (for `gitbus inbox`) or a session (for hooks) has seen.

A cursor maps each chain ref to the last commit seen on it. Because chains only grow, "new" is the
commits between that commit and the tip, and a message that arrives late (synced from another
machine with an older time) is still new: a cursor never remembers a position in time order, the
mistake that made other mailboxes skip messages (field notes §7). Cursors are local to a clone and
live in the common git dir, written atomically.

A session cursor is written twice (two slots, a sequence number, temp file + rename each), so a torn
or damaged file falls back to an identical copy: nothing lost, nothing repeated. This module stays
light: hooks read it on every tool call.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from gitbus.gitfiles import Oid

if TYPE_CHECKING:
    from gitbus.git import Repository


def _file(repo: Repository, name: str) -> Path:
    return repo.common_dir / "gitbus" / "cursors" / f"{name}.json"


def load(repo: Repository, name: str) -> dict[str, Oid]:
    """The cursor `name`; a missing or unreadable one means nothing was seen yet."""
    try:
        obj = json.loads(_file(repo, name).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(obj, dict):
        return {}
    return {str(k): Oid(str(v)) for k, v in obj.items() if isinstance(v, str)}


def save(repo: Repository, name: str, tips: Mapping[str, Oid]) -> None:
    """Replace the cursor `name` atomically (temp file + rename)."""
    f = _file(repo, name)
    f.parent.mkdir(parents=True, exist_ok=True)
    _write(f, json.dumps(dict(sorted(tips.items()))))


def _write(f: Path, data: str) -> None:
    """Replace `f` atomically: a unique temp file beside it, then rename."""
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=f.parent, prefix=".cursor-")
    with os.fdopen(fd, "w") as out:
        out.write(data)
    os.replace(tmp, f)


_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class SessionCursor(NamedTuple):
    """What a session has been shown: chain tips, and the questions it was reminded of at Stop."""

    tips: dict[str, str]
    seq: int = 0
    reminded: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"tips": self.tips, "seq": self.seq, "reminded": list(self.reminded)}


def _dir(common_dir: Path, agent: str, session: str) -> Path:
    if not _SAFE.match(session):
        import hashlib

        session = hashlib.sha256(session.encode()).hexdigest()[:32]
    key = session
    return common_dir / "gitbus" / "sessions" / agent / key


def sessions_of(common_dir: Path, agent: str) -> list[str]:
    """The sessions of `agent` that have a cursor on this clone."""
    d = common_dir / "gitbus" / "sessions" / agent
    return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


@contextmanager
def session_lock(common_dir: Path, agent: str, session: str) -> Iterator[None]:
    """Serialise one session's hook calls (Claude Code runs parallel tool calls' hooks at once):
    read cursor, select, save must not interleave, or two calls would show the same message."""
    import fcntl

    d = _dir(common_dir, agent, session)
    d.mkdir(parents=True, exist_ok=True)
    with (d / "lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def load_session(common_dir: Path, agent: str, session: str) -> SessionCursor | None:
    """The session's cursor from whichever slot is valid and newest; None for a new session."""
    best: SessionCursor | None = None
    for slot in ("a.json", "b.json"):
        try:
            obj = json.loads((_dir(common_dir, agent, session) / slot).read_text())
            c = SessionCursor(
                {str(k): str(v) for k, v in obj["tips"].items()},
                int(obj["seq"]),
                tuple(str(x) for x in obj.get("reminded", [])),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if best is None or c.seq > best.seq:
            best = c
    return best


def save_session(common_dir: Path, agent: str, session: str, cursor: SessionCursor) -> SessionCursor:
    """Write `cursor` (with the next sequence number) to both slots; returns what was written."""
    d = _dir(common_dir, agent, session)
    d.mkdir(parents=True, exist_ok=True)
    written = SessionCursor(cursor.tips, cursor.seq + 1, cursor.reminded[-200:])
    data = json.dumps(written.to_json())
    for slot in ("a.json", "b.json"):
        _write(d / slot, data)
    return written
