"""gitbus: a git-native coordination bus for AI coding agents in parallel worktrees.

The names below load on first use: `gitbus hook` runs on every Claude Code tool call and must not pay
for importing pygit2 unless it has to, nor `typing` (~8 ms) when it has nothing to say.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `from typing import TYPE_CHECKING`: see above; mypy reads both the same
if TYPE_CHECKING:
    from gitbus.bus import Bus
    from gitbus.errors import ClaimConflict, Conflict, GitbusError, NotFound

__all__ = ["Bus", "ClaimConflict", "Conflict", "GitbusError", "NotFound"]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    if name == "Bus":
        from gitbus.bus import Bus

        return Bus
    if name in __all__:
        from gitbus import errors

        return getattr(errors, name)
    raise AttributeError(name)
