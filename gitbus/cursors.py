"""Read cursors: which messages an agent has already seen, per chain.

A cursor maps each chain ref to the last commit seen on it. Because chains only grow, "new" is the
commits between that commit and the tip, and a message that arrives late (synced from another
machine with an older time) is still new: a cursor never remembers a position in time order, the
mistake that made other mailboxes skip messages (field notes §7). Cursors are local to a clone and
live in the common git dir, written atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from gitbus.git import Oid, Repository


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
    fd, tmp = tempfile.mkstemp(dir=f.parent, prefix=".cursor-")
    with os.fdopen(fd, "w") as out:
        json.dump(dict(sorted(tips.items())), out)
    os.replace(tmp, f)
