"""The ledger: the one serialization point for everything two agents may race for.

`refs/bus/ledger` is a chain of message commits (claim, release, renew, take, done) whose tree is the
full state after that message: `claims/…/@` blobs laid out along the claimed path, `requests/…`
blobs for delegated work. A change is decided against the state read at the tip and published by one
compare-and-swap of the ref, so the grant and its announcement are one atomic step: two agents can
never both win, and no process death can leave a grant unannounced.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from gitbus.chains import chain_time, remember_time
from gitbus.errors import GitbusError, Unreadable
from gitbus.gitfiles import Oid

if TYPE_CHECKING:
    from gitbus.git import Repository
from gitbus.ids import LEDGER_REF
from gitbus.inert import inert
from gitbus.message import Message, encode

MAX_ENTRY_BYTES = 128 * 1024  # a claim holds a reason of at most 64 KiB; nothing gitbus writes is larger
MAX_DEPTH = 80  # folders below the ledger root: `claims/` plus a path at most 64 deep, with room


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


class Change(NamedTuple):
    """What a ledger step publishes: its message, and the state blobs it sets (None deletes)."""

    message: Message
    writes: dict[str, dict[str, Any] | None]


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


def tree_of(repo: Repository, tip: Oid | None) -> Oid | None:
    """The state at ledger commit `tip`: None (empty) for no ledger, and for a ledger ref that is no
    commit (counted in `repo.skipped`): a ledger a peer broke holds no claims."""
    if tip is None:
        return None
    try:
        return repo.read_commit(tip).tree
    except Unreadable as e:
        repo.skipped[LEDGER_REF] = str(e)
        return None


def current(repo: Repository) -> Ledger:
    return Ledger(repo, tree_of(repo, repo.ref(LEDGER_REF)))


def readable(repo: Repository) -> bool:
    """False when the ledger ref points at something that is no commit."""
    tip = repo.ref(LEDGER_REF)
    return tip is None or repo.object_kind(tip) == "commit"


class Arbiter(Protocol):
    """Who decides the ledger: this clone (`LocalArbiter`) or a remote (`gitbus.sync.RemoteArbiter`)."""

    def base(self) -> Oid | None:
        """The tip to decide on."""
        ...

    def publish(self, base: Oid | None, new: Oid, log: str) -> None:
        """Make `new` the ledger if it still is `base`; raise `RefMoved` when someone won the race."""
        ...

    @property
    def notices(self) -> list[str]:
        """One line each the command should show about how the step was published."""
        ...


class LocalArbiter:
    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.notices: list[str] = []

    def base(self) -> Oid | None:
        return self.repo.ref(LEDGER_REF)

    def publish(self, base: Oid | None, new: Oid, log: str) -> None:
        self.repo.update_ref(LEDGER_REF, new, base, log)


def write_change(repo: Repository, tip: Oid | None, change: Change) -> Oid:
    """The commit for `change` on top of `tip` (no ref moves)."""
    tree = tree_of(repo, tip)
    if tip is not None and tree is None:
        # Replacing it would drop every claim on it, and the guard would let edits into them through.
        raise GitbusError(
            f"The ledger {LEDGER_REF} points at {inert(repo.skipped.get(LEDGER_REF, 'no commit'), 200)}; "
            "no claim can be decided on it. Put the last good one back: "
            f"git update-ref {LEDGER_REF} <commit> (git reflog {LEDGER_REF} lists them)."
        )
    parents = [tip] if tip else []
    blobs = {path: None if obj is None else repo.blob(_dump(obj)) for path, obj in change.writes.items()}
    msg = change.message
    return repo.commit(
        tree=repo.tree_update(tree, blobs),
        parents=parents,
        message=encode(msg),
        author=msg.sender,
        time_ms=msg.time,
    )


def transact(
    repo: Repository, decide: Callable[[Ledger, int], Change | None], arbiter: Arbiter | None = None
) -> Message | None:
    """Apply `decide(state, min_time)` to the ledger tip atomically, re-deciding on lost races
    (`Repository.retry_cas`, with the remote's backoff when a remote arbitrates).

    `decide` may raise to refuse (nothing is written) or return None when there is nothing to do.
    """
    arbiter = arbiter or LocalArbiter(repo)

    def attempt() -> Message | None:
        tip = arbiter.base()
        tree = tree_of(repo, tip)
        change = decide(Ledger(repo, tree), chain_time(repo, tip) + 1)  # the time read is cached
        if change is None:
            return None
        oid = write_change(repo, tip, change)
        msg = change.message
        arbiter.publish(tip, oid, f"gitbus: {msg.kind.value} {msg.id}")
        remember_time(oid, msg.time)
        return msg

    return repo.retry_cas(
        LEDGER_REF, attempt, "updating the ledger", remote=not isinstance(arbiter, LocalArbiter)
    )


def _dump(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, sort_keys=True, ensure_ascii=False) + "\n").encode()
