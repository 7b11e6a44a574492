"""Taking a ledger step: the serialization point for everything two agents may race for.

A step is decided on the tips of the ledgers it touches and published by one compare-and-swap of
those refs (`transact`): two agents can never both win, no process death can leave a grant
unannounced, and a lost race decides the step again. The grant and its announcement are one commit
per ledger. A step on several shards (one claim of `src/` and `docs/`) writes one commit on each and
moves them all at once: one ref transaction here, one atomic push with a lease on each to a remote
(an `Arbiter` says which). Its first commit, in ref-name order, carries the message; each other one
is a full message of its own, marked `part=<first id>`, which readers leave out. The first step
decided on the single ledger of old moves it in the same transaction (`moving`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from gitbus.chains import chain_time, remember_time
from gitbus.errors import GitbusError
from gitbus.gitfiles import PACKED, Oid
from gitbus.ids import LEDGER_REF, LEDGERS_PREFIX, MAIN_LEDGER, new_message_id
from gitbus.inert import inert
from gitbus.ledger_shards import route, shard_of_path, tombstone
from gitbus.ledger_state import State, Tips, read_tips
from gitbus.message import Message, encode

if TYPE_CHECKING:
    from gitbus.git import Repository


class Change(NamedTuple):
    """What a ledger step publishes: its message, and the state blobs it sets (None deletes). A
    change that sets nothing is written on `home` (default: the main ledger)."""

    message: Message
    writes: dict[str, dict[str, Any] | None]
    home: str | None = None


# A ref update a step publishes: (ref, new value, the value it replaces; None: it must not exist).
Update = tuple[str, Oid, Oid | None]


class Arbiter(Protocol):
    """Who decides the ledgers: this clone (`LocalArbiter`) or a remote (`gitbus.sync.RemoteArbiter`)."""

    def tips(self, want: set[str] | None = None) -> Tips:
        """The ledgers to decide on; `want`, when known, names those the step reads (the others
        may be as they were)."""
        ...

    def publish(self, updates: list[Update], log: str) -> None:
        """Make every update or none, each only if its ref still holds what it replaces; raise
        `RefMoved` when someone won the race."""
        ...

    @property
    def notices(self) -> list[str]:
        """One line each the command should show about how the step was published."""
        ...


class LocalArbiter:
    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.notices: list[str] = []

    def tips(self, want: set[str] | None = None) -> Tips:
        return read_tips(self.repo, want=want)

    def publish(self, updates: list[Update], log: str) -> None:
        self.repo.update_refs(updates, log)


def moving(repo: Repository, tips: Tips) -> list[Update]:
    """What moves the single ledger `tips` still has (nothing once it moved): `ledgers/main` continues
    its chain and `refs/bus/ledger` becomes the tombstone naming its last commit. Published with the
    first step decided on it, so an older gitbus never sees a step it could overwrite."""
    if tips.moved:
        return []
    stone = repo.blob(tombstone(tips.old))
    if tips.old is None:
        return [(LEDGER_REF, stone, None)]
    main = tips.refs.get(MAIN_LEDGER)
    if main is not None and main != tips.old and not repo.is_ancestor(main, tips.old):
        raise GitbusError(
            f"Both {LEDGER_REF} and {MAIN_LEDGER} hold ledger steps the other lacks; gitbus cannot "
            f"tell which holds the claims. Keep one: git update-ref -d {MAIN_LEDGER}, or move "
            f"{LEDGER_REF} aside."
        )
    return [(MAIN_LEDGER, tips.old, main), (LEDGER_REF, stone, tips.old)]


def write_change(repo: Repository, state: State, change: Change) -> tuple[list[Update], list[Oid]]:
    """The commits for `change` on the ledgers of `state`, one per ledger it writes, as ref updates
    (no ref moves), and the commits themselves, the one carrying the message first."""
    tips = state.tips
    if tips.broken is not None:
        # The damaged ref, as `read_tips` counted it: a shard, the tombstone, or packed-refs itself
        # (whose own repair `broken` says); else the tombstone, which `tips_of` judged by its value
        # (a tree, a missing object, missing beside the shards). Not `git update-ref`: git refuses
        # to update a ref it cannot read, and follows a symbolic one to the ref it names.
        found = (r for r, why in repo.skipped.items() if why == tips.broken)
        bad = inert(next(found, LEDGER_REF), 200)
        again = f" Put the last good one back into {bad} (git reflog {bad} lists them where kept)."
        raise GitbusError(
            f"{inert(tips.broken, 200)}; no claim can be decided.{again if bad != PACKED else ''}"
        )
    groups: dict[str, dict[str, Oid | None]] = {}
    for path, obj in change.writes.items():
        groups.setdefault(route(path), {})[path] = None if obj is None else repo.blob(_dump(obj))
    if not groups:
        groups[change.home or MAIN_LEDGER] = {}
    lead = change.message
    updates: list[Update] = []
    commits: list[Oid] = []
    for i, ref in enumerate(sorted(groups)):
        tip = tips.tip(ref)
        tree = state.tree(ref)
        if tip is not None and tree is None:
            # Replacing it would drop every claim on it, and the guard would let edits into them through.
            raise GitbusError(
                f"The ledger {ref} points at {inert(repo.skipped.get(ref, 'no commit'), 200)}; no claim "
                f"can be decided on it. Put the last good one back: git update-ref {ref} <commit> "
                f"(git reflog {ref} lists them)."
            )
        msg = lead if i == 0 else _part(lead, ref)
        oid = repo.commit(
            tree=repo.tree_update(tree, groups[ref]),
            parents=[tip] if tip else [],
            message=encode(msg),
            author=msg.sender,
            time_ms=msg.time,
        )
        updates.append((ref, oid, tips.refs.get(ref)))
        commits.append(oid)
    written = {ref for ref, _, _ in updates}
    updates += [u for u in moving(repo, tips) if u[0] not in written]
    if tips.moved and tips.old is not None and any(tips.refs.get(r) is None for r in written):
        # A shard's first commit builds on the claims the tombstone carries: it must still be it.
        updates.append((LEDGER_REF, tips.old, tips.old))
    return updates, commits


def _part(lead: Message, ref: str) -> Message:
    """The message of a step's commit on another ledger than its first: its own id, the paths that
    ledger holds, and `part=<the first's id>`, so readers show the step once."""
    paths = tuple(p for p in lead.paths if shard_of_path(p) == ref)
    return replace(lead, id=new_message_id(), paths=paths, meta=(*lead.meta, ("part", lead.id)))


def is_part(msg: Message) -> bool:
    """True for a step's commit on another ledger than its first (see `_part`): readers leave it out."""
    return any(k == "part" for k, _ in msg.meta)


def written_refs(change: Change) -> set[str]:
    """The ledgers `change` writes."""
    return {route(p) for p in change.writes} or {change.home or MAIN_LEDGER}


def decide_past(repo: Repository, tips: Tips, decide: Callable[[int], Change | None]) -> Change | None:
    """`decide(min_time)`, stamped past the tip of every ledger its change writes: each ledger's
    times rise along its chain. Decided again past them when the first decision was not."""
    floor = 0
    for _ in range(2):
        change = decide(floor + 1)
        if change is None:
            return None
        floor = max(chain_time(repo, tips.tip(r)) for r in written_refs(change))  # cached reads
        if change.message.time > floor:
            return change
    raise GitbusError("A ledger step could not be stamped past the ledgers it writes.")


def transact(
    repo: Repository,
    decide: Callable[[State, int], Change | None],
    arbiter: Arbiter | None = None,
    want: set[str] | None = None,
) -> Message | None:
    """Apply `decide(state, min_time)` to the ledgers atomically, re-deciding on lost races
    (`Repository.retry_cas`, with the remote's backoff when a remote arbitrates). `want` names the
    ledgers `decide` reads, when the step knows them (`steps.Step.ledgers`).

    `decide` may raise to refuse (nothing is written) or return None when there is nothing to do.
    Its time must pass the tip of every ledger it writes: decided again past them when it does not.
    """
    arbiter = arbiter or LocalArbiter(repo)

    def attempt() -> Message | None:
        tips = arbiter.tips(want)
        state = State(repo, tips)
        change = decide_past(repo, tips, lambda min_time: decide(state, min_time))
        if change is None:
            return None
        updates, commits = write_change(repo, state, change)
        msg = change.message
        arbiter.publish(updates, f"gitbus: {msg.kind.value} {msg.id}")
        for oid in commits:
            remember_time(oid, msg.time)
        return msg

    # One turn (`Repository.retry_cas`) per set of ledgers: a writer starved on one shard holds
    # back only the writers of that shard.
    turn = ",".join(sorted(want)) if want else LEDGERS_PREFIX.rstrip("/")
    return repo.retry_cas(turn, attempt, "updating the ledger", remote=not isinstance(arbiter, LocalArbiter))


def _dump(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, sort_keys=True, ensure_ascii=False) + "\n").encode()
