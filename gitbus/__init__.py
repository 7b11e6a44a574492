"""gitbus: a git-native coordination bus for AI coding agents in parallel worktrees."""

from gitbus.bus import Bus
from gitbus.errors import ClaimConflict, Conflict, GitbusError, NotFound

__all__ = ["Bus", "ClaimConflict", "Conflict", "GitbusError", "NotFound"]
__version__ = "0.1.0"
