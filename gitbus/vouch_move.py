"""Vouching for the ledger's move from the single ledger to the shards, as a remote shows it.

A clone takes in a remote's move (its `refs/bus/ledger` turned into a tombstone, `gitbus.ledger_shards`)
only when the tombstone names a commit of the remote's main ledger after which no step changes claims,
no earlier than the single ledger this clone last fetched from there, and is never replaced; and a
main-ledger step that changes claims after a move is refused, since every clone reading the tombstone
afresh would then refuse it. The trade-off: these checks walk the main ledger's first parents from
its tip down to the commit the tombstone names, which a clone does once per move it sees; steps
taken in before a remote's move (an older gitbus still stepping on the single ledger) are held to
the same rules (`before_their_move`, `their_move_stands`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gitbus import ledger, ledger_shards, ledger_state
from gitbus.errors import GitbusError, Unreadable
from gitbus.gitfiles import Commit, Oid
from gitbus.ids import BUS_PREFIX, LEDGER_REF, MAIN_LEDGER

if TYPE_CHECKING:
    from gitbus.git import Repository
    from gitbus.message import Message


def moved_problem(repo: Repository, tracking_ref: str, before: Oid | None, after: Oid) -> str | None:
    """Why the fetched `refs/bus/ledger` is no move of the single ledger sync can take in, or None.
    It must be a tombstone (`gitbus.ledger_shards`) that is never replaced, naming the commit of the
    remote's main ledger (vouched for first) after which no step changes a claim (the claims it
    carries are then all the single ledger held), and no earlier than the single ledger this clone
    last took from there."""
    if repo.object_kind(after) != "blob":
        return "it went back to a single ledger after the ledger moved to refs/bus/ledgers/"
    if before is not None and repo.object_kind(before) == "blob":
        return "its tombstone was replaced; the ledger moved once, where the first tombstone says"
    try:
        ended = ledger_shards.ended_at(repo, after)
    except GitbusError as e:
        return str(e).replace(f"{LEDGER_REF} points at ", "it points at ")
    main = repo.ref(tracking_ref + "s/main")
    if ended is not None and (
        repo.object_kind(ended) != "commit"
        or main is None
        or (not repo.is_ancestor(ended, main) and main != ended)
    ):
        return f"its tombstone names {ended[:12]}, which the remote's {MAIN_LEDGER} does not hold"
    later = claims_changed(repo, main, ended)
    if later is not None:
        named = ended[:12] if ended else "no ledger"
        return f"its tombstone names {named}, but {MAIN_LEDGER} changes claims after it (at {later[:12]})"
    if before is not None and (ended is None or (before != ended and not repo.is_ancestor(before, ended))):
        named = ended[:12] if ended else "no ledger"
        return f"its tombstone names {named}, which lacks {before[:12]}, fetched from it before"
    return None


def claims_changed(repo: Repository, tip: Oid | None, ended: Oid | None) -> Oid | None:
    """The newest commit on `tip`'s first parents, down to `ended`, whose claims differ from its
    parent's; None when there is none (the main ledger's steps since then are requests only)."""
    at = tip
    while at is not None and at != ended:  # iterative: one commit and two tree entries per step
        try:
            commit = repo.read_commit(at)
            if changes_claims(repo, commit):
                return at
        except Unreadable:
            return at
        at = commit.parents[0] if commit.parents else None
    return None


def changes_claims(repo: Repository, commit: Commit) -> bool:
    """True when ledger commit `commit`'s `claims/` differs from its first parent's (raises
    `Unreadable` when the parent cannot be read)."""
    parent = repo.read_commit(commit.parents[0]) if commit.parents else None
    return repo.tree_entry(commit.tree, ledger.CLAIMS) != (
        repo.tree_entry(parent.tree, ledger.CLAIMS) if parent else None
    )


def before_their_move(repo: Repository, commit: Commit, root: str, stone_before: Oid | None) -> bool:
    """True when main ledger step `commit`, after this clone's own move, comes before the remote's
    (side `root`, as fetched): this clone moved its ledger offline while an older gitbus still
    stepped on the remote's single ledger, and a newer one then moved the remote after those steps.
    Only while this clone has taken no move of the remote's in (`stone_before`: a commit, or
    nothing): the remote's move is then taken on first sight, as a new clone takes the whole bus,
    and a step so taken stands only if the whole main ledger is vouched for and the remote's
    tombstone would be (`their_move_stands`)."""
    if root == BUS_PREFIX or (stone_before is not None and repo.object_kind(stone_before) != "commit"):
        return False
    side = ledger_state.read_tips(repo, root, want=set())
    return side.moved and side.ended is not None and repo.is_ancestor(commit.oid, side.ended)


def their_move_stands(repo: Repository, root: str, tip: Oid, stone_before: Oid | None = None) -> bool:
    """True when the fetched tombstone of side `root` names a commit of main ledger tip `tip` after
    which no step changes claims, and which holds `stone_before`, the single ledger this clone
    fetched from there before (when it did): what vouching it (`moved_problem`) will ask of it."""
    side = ledger_state.read_tips(repo, root, want=set())
    if side.broken is not None or not side.moved or side.ended is None:
        return False
    if not repo.is_ancestor(side.ended, tip):
        return False
    if stone_before is not None and not repo.is_ancestor(stone_before, side.ended):
        return False  # `is_ancestor` holds for the commit itself, as `moved_problem` takes it
    try:
        return claims_changed(repo, tip, side.ended) is None
    except GitbusError:
        return False


def claims_after_move(repo: Repository, commit: Commit, msg: Message) -> tuple[str | None, bool]:
    """Why main ledger commit `commit` changes claims after the ledger moved (claims live on the
    shards then; such a step would make the move's tombstone, which names the last claims the main
    ledger held, refused by every clone that reads it afresh), or None; and whether that is the
    only reason (not an unreadable tree). Known from this clone's own tombstone, once it took one
    in (see `before_their_move` for the remote's)."""
    local = ledger_state.read_tips(repo, want=set())  # the tombstone alone, not every shard
    if not local.moved or local.ended is None or commit.oid == local.ended:
        return None, False
    if not repo.is_ancestor(local.ended, commit.oid):
        return None, False  # a step of the single ledger, from before the move
    try:
        if not changes_claims(repo, commit):
            return None, False
    except Unreadable as e:
        return str(e), False
    return (
        f"a {msg.kind.value} by {msg.sender} that changes claims on {MAIN_LEDGER} after the move ({msg.id})",
        True,
    )
