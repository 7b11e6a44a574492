"""The bus remote: which git remote carries the bus, what one sync with it did, git's failures in a line.

The bus remote is the one named on the command line, else the configured one; `gitbus init` may find
one on `origin` with a single `git ls-remote`, bounded in time, so a dead host holds nothing up. A
sync's outcome is one `Report`, each ref and dropped step told once. git's failures become one line
(`reason`, `RemoteError`): the host's own words without its boilerplate. What the last pull refused
and how the last background sync went are remembered for `gitbus status`; a disk that cannot take
that reminder loses only the reminder. Fetching is `gitbus.remote_fetch`, pushing
`gitbus.remote_push`, taking in what was fetched `gitbus.sync`.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gitbus import settings, state, vouch
from gitbus.errors import GitbusError
from gitbus.message import Message

if TYPE_CHECKING:
    from gitbus.git import Repository

ROUNDS = 8  # how often a fetch, a push or a sync is tried again after losing a race


class RemoteError(GitbusError):
    """The bus remote could not be reached or refused the bus refs."""


@dataclass
class Report:
    """What one sync did."""

    remote: str
    updated: list[str] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)
    dropped: list[Message] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # remote refs that no gitbus could have written
    refused: list[vouch.Refusal] = field(default_factory=list)  # remote refs sync could not vouch for
    restored: list[str] = field(default_factory=list)  # one line each: a ref the remote lost, put back
    passed: list[str] = field(
        default_factory=list
    )  # one line each: an entry of theirs that is no gitbus data or too large to merge

    def refuse(self, refusal: vouch.Refusal) -> None:
        self.refused = [r for r in self.refused if r.ref != refusal.ref] + [refusal]

    def refused_refs(self) -> set[str]:
        return {r.ref for r in self.refused}

    def settled(self) -> Report:
        """This report with each ref, and each dropped step, told once: a sync takes the remote in
        again in every round it needs, and a ref moved or passed over in two rounds is one fact."""
        for refs in (self.updated, self.merged, self.pushed, self.ignored, self.restored, self.passed):
            refs[:] = dict.fromkeys(refs)
        self.dropped[:] = {m.id: m for m in self.dropped}.values()
        return self


# -- which remote --------------------------------------------------------------------------------------


def bus_remote(repo: Repository, explicit: str | None = None) -> str | None:
    """The remote named on the command line, else the configured one, else None (local bus)."""
    name = explicit or settings.load(repo.common_dir)["remote"]
    return str(name) if name else None


def require_remote(repo: Repository, explicit: str | None, known: str | None = None) -> str:
    """The bus remote (`bus_remote`), refused in one sentence when none is set or git has no such
    remote. `known`: a remote git named a moment ago (`fetching.start` asked it), not asked again."""
    name = bus_remote(repo, explicit)
    if not name:
        raise GitbusError("No bus remote is set; run `gitbus remote NAME` (a git remote) first.")
    settings.parse("remote", name)
    code = 0 if name == known else repo.git_result("remote", "get-url", name)[0]
    if code != 0:
        raise GitbusError(f"git has no remote named '{name}'; add it with `git remote add {name} URL`.")
    return name


# `gitbus init` asks the remote once whether it carries a bus; a dead host must not hold it up long.
DISCOVER_TIMEOUT_SECONDS = 10.0


def remote_carrying_bus(repo: Repository, name: str = "origin") -> str | None:
    """`name` when git knows that remote and it holds refs under refs/bus/ (one `git ls-remote`), else
    None: a clone of a repository that already carries a bus shares it without `gitbus remote`. Any
    failure (no network, no such remote) is None, and the bus stays local."""
    if repo.git_result("remote", "get-url", name)[0] != 0:
        return None
    code, out, _ = repo.git_result(
        "ls-remote", "--refs", name, "refs/bus/*", network=True, timeout=DISCOVER_TIMEOUT_SECONDS
    )
    return name if code == 0 and out.strip() else None


# -- what git's errors mean ----------------------------------------------------------------------------

_NOISE = (
    "Please make sure you have",
    "and the repository exists",
    "Could not read from remote",
    "To ",
    "Done",
)


def reason(err: str) -> str:
    """git's own reason for a failed fetch or push, in one line, without its boilerplate."""
    lines = [line.strip() for line in err.strip().splitlines() if line.strip()]
    lines = [x for x in lines if not x.startswith(_NOISE) and "failed to push some refs" not in x] or lines
    return (
        " ".join(x.removeprefix("fatal: ").removeprefix("error: ") for x in lines).rstrip(".") or "no answer"
    )


# -- what the last sync did, for `gitbus status` ------------------------------------------------------


def record_refused(repo: Repository, remote: str, report: Report) -> None:
    """Remember what the last pull refused, for `gitbus status` (cleared by a pull that refused
    nothing). A disk that cannot take the file loses only this reminder."""
    f = state.refused(repo.common_dir)
    lines = [r.line() for r in report.refused]
    if not lines and not f.exists():
        return
    with contextlib.suppress(GitbusError):
        state.write_atomic(f, json.dumps({"remote": remote, "refused": lines}), prefix=".refused-")


def last_refused(repo: Repository) -> list[str]:
    """The refusal lines of the last pull (see `record_refused`)."""
    try:
        obj = json.loads(state.refused(repo.common_dir).read_text())
        lines = obj["refused"] if isinstance(obj, dict) else []
    except (OSError, ValueError, KeyError, RecursionError):  # a damaged reminder is none
        return []
    return [str(x) for x in lines] if isinstance(lines, list) else []


def record_status(repo: Repository, remote: str, now_ms: int, error: str | None) -> None:
    """Remember how the last background sync went, for `gitbus status`."""
    f = state.sync_status(repo.common_dir)
    status = json.dumps({"remote": remote, "at": now_ms, "error": error})
    state.write_atomic(f, status, prefix=".sync-status-")


def last_status(repo: Repository) -> dict[str, Any] | None:
    """How the last background sync went (`remote`, `at`, `error`), or None if none was recorded."""
    try:
        obj = json.loads(state.sync_status(repo.common_dir).read_text())
    except (OSError, ValueError, RecursionError):  # a damaged record is none
        return None
    return obj if isinstance(obj, dict) else None
