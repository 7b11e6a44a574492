"""A ledger's state: the tree of its tip, and the JSON entries in it, read lazily and held to shape.

A ledger is a chain of message commits (claim, release, renew, take, done) whose tree is the state
after that step: `claims/…/@` blobs on a claim shard, `requests/…` on the main ledger (docs/format.md,
Ledger tree). An entry is read only when asked for, and one that is no JSON object of a bounded size,
or lies deeper than any path gitbus takes, is skipped and counted, never trusted: a peer wrote the
tree. `View` is the shape a step decides on, whether one ledger (`Ledger`) or every ledger at once
(`gitbus.ledger_state.State`). Which ledger holds an entry is `gitbus.ledger_shards`; taking a step
is `gitbus.ledger_cas`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from gitbus.errors import Unreadable
from gitbus.gitfiles import Oid
from gitbus.ids import MAIN_LEDGER

if TYPE_CHECKING:
    from gitbus.git import Repository

MAX_ENTRY_BYTES = 128 * 1024  # a claim holds a reason of at most 64 KiB; nothing gitbus writes is larger
MAX_DEPTH = 80  # folders below the ledger root: `claims/` plus a path at most 64 deep, with room
CLAIMS = "claims"  # the folder of claims in a ledger tree (`gitbus.claims` lays it out)


class Ledger(NamedTuple):
    """One state of the ledger (an immutable tree), read lazily."""

    repo: Repository
    tree: Oid | None

    def read(self, path: str) -> dict[str, Any] | None:
        """The JSON object stored at `path`, or None (also when what is there is not one: skipped
        and counted in `repo.skipped`)."""
        if self.tree is None:
            return None
        found = self.repo.tree_entry(self.tree, path)
        if found is None or found[0] != "blob":
            return None
        return load_entry(self.repo, found[1], path)

    def folders(self, path: str) -> list[str]:
        """The names of the folders directly inside the folder `path`."""
        if self.tree is None:
            return []
        return [name for name, kind in self.repo.tree_list(self.tree, path) if kind == "tree"]

    def top_folders(self, top: str) -> list[str]:
        """The folders at `claims/` (one tree holds every top folder)."""
        return self.folders(CLAIMS)

    def below(self, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every (path, object) stored under the directory `path`; what is no JSON object, or lies
        deeper than any path gitbus takes, is skipped and counted."""
        if self.tree is None:
            return
        found = self.repo.tree_entry(self.tree, path)
        if found is None or found[0] != "tree":
            return
        depth = MAX_DEPTH - path.rstrip("/").count("/") - 1
        for sub, oid in self.repo.tree_blobs(found[1], path.rstrip("/") + "/", max_depth=depth):
            obj = load_entry(self.repo, oid, sub)
            if obj is not None:
                yield sub, obj


class View(Protocol):
    """A ledger state to decide on: one ledger's tree (`Ledger`) or every ledger at once (`State`)."""

    @property
    def repo(self) -> Repository: ...

    def read(self, path: str) -> dict[str, Any] | None: ...

    def folders(self, path: str) -> list[str]: ...

    def below(self, path: str) -> Iterator[tuple[str, dict[str, Any]]]: ...

    def top_folders(self, top: str) -> list[str]:
        """The folders at `claims/` among which top folder `top` (`_<name>`) is, in any spelling."""
        ...


def load_entry(repo: Repository, oid: Oid, path: str) -> dict[str, Any] | None:
    """The JSON object in blob `oid`, or None when it is none (skipped, and counted)."""
    try:
        obj = json.loads(repo.read_blob(oid, limit=MAX_ENTRY_BYTES).decode("utf-8"))
    except (ValueError, Unreadable, RecursionError) as e:
        repo.skipped[f"{oid} {path}"] = f"the ledger entry {path} is not valid JSON ({type(e).__name__})"
        return None
    if not isinstance(obj, dict):
        repo.skipped[f"{oid} {path}"] = f"the ledger entry {path} is not a JSON object"
        return None
    return obj


def tree_of(repo: Repository, tip: Oid | None, ref: str = MAIN_LEDGER) -> Oid | None:
    """The state at ledger commit `tip`: None (empty) for no ledger, and for a ledger ref that is no
    commit (counted in `repo.skipped`): a ledger a peer broke holds no claims."""
    if tip is None:
        return None
    try:
        return repo.read_commit(tip).tree
    except Unreadable as e:
        repo.skipped[ref] = str(e)
        return None
