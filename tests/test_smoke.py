from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gitbus.bus import Bus


def test_a_discovery_posted_in_one_worktree_is_read_in_another(
    worktrees: list[Path], bus_for: Callable[[Path, str], Bus]
) -> None:
    a = bus_for(worktrees[0], "api-1")
    b = bus_for(worktrees[1], "web-1")
    posted = a.discover("the db config is config/db.yaml", ["config/db.yaml"])
    assert [m.id for m in b.inbox()][-1] == posted.id
