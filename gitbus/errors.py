"""The one error base of gitbus.

Every failure a user can cause or meet is a `GitbusError` whose text is one sentence for that user.
Faces map it to an exit code in one place (`exit_code`); nothing else is caught there.
"""

from __future__ import annotations


class GitbusError(Exception):
    """A failure explained to the user in one sentence; exit code 1."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotFound(GitbusError):
    """A message, agent or request that the caller named does not exist."""


class Conflict(GitbusError):
    """Another agent got there first (a path, a request); exit code 3."""

    exit_code = 3


class ClaimConflict(Conflict):
    """A claim was refused because another agent holds an overlapping live claim."""

    def __init__(self, message: str, *, holder: str, held_path: str, reason: str, expires_at: int):
        super().__init__(message)
        self.holder = holder
        self.held_path = held_path
        self.reason = reason
        self.expires_at = expires_at


class Contended(GitbusError):
    """A ref stayed locked or raced for longer than we are willing to wait; exit code 4."""

    exit_code = 4


class CorruptMessage(GitbusError):
    """A commit under refs/bus is not a gitbus message of a version we understand."""


class Unreadable(GitbusError):
    """An object under refs/bus that is missing or of the wrong kind (a ref at a blob, tree or tag)."""
