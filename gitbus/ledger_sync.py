"""Taking in a remote's ledgers: moving a remote's single ledger to the shards, following the
ledgers one by one, and deciding this clone's offline steps again on the remote's state.

A ledger this clone is behind on fast-forwards, one it is ahead on waits for the push, and one where
both moved is built again from the remote's: each offline step there is decided again, in (time, id)
order, keeping its id; one that lost is dropped and its agent told by a note on that ledger, never
silently kept. A step on several shards is decided again on all of them. `gitbus.sync` runs this
within its rounds and its arbiter; vouching what was fetched is `gitbus.vouch`'s.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from gitbus.chains import chain_time, raise_mark
from gitbus.errors import CorruptMessage, GitbusError
from gitbus.gitfiles import Oid, RefMoved
from gitbus.ids import (
    BUS_PREFIX,
    LEDGER_REF,
    LEDGERS_PREFIX,
    MAIN_LEDGER,
    MessageId,
    is_ledger,
    new_message_id,
)
from gitbus.ledger_cas import Change, Update, decide_past, write_change
from gitbus.ledger_shards import shard_of_path, tombstone
from gitbus.ledger_state import State, Tips, read_tips
from gitbus.message import Kind, Message, decode
from gitbus.remote import ROUNDS, RemoteError, Report, reason
from gitbus.remote_push import landed, push_failed, push_ledgers
from gitbus.steps import redecide
from gitbus.vouch import Refusal

if TYPE_CHECKING:
    from gitbus.git import Repository


def raise_to(repo: Repository, lref: str, tip: Oid) -> None:
    if lref.startswith(BUS_PREFIX):  # notes carry no message time
        raise_mark(repo, chain_time(repo, tip), int(time.time() * 1000))


def behind(repo: Repository, ours: Oid | None, theirs: Oid) -> bool:
    """True when the local ref can simply move to `theirs`: it is missing, it is no commit (a peer's
    damage taken in by plain git: nothing is lost by replacing it), or `theirs` contains it."""
    return ours is None or repo.object_kind(ours) != "commit" or repo.is_ancestor(ours, theirs)


def must_move(repo: Repository, theirs: Tips) -> bool:
    """True when the remote still has the single ledger and this clone has ledger steps it lacks:
    they can go out only on the remote's moved ledgers."""
    if theirs.moved:
        return False
    ours = read_tips(repo)
    if ours.moved:
        return bool(ours.refs)
    return (
        ours.old is not None
        and ours.old != theirs.old
        and not (theirs.old is not None and repo.is_ancestor(ours.old, theirs.old))
    )


# -- moving the remote's single ledger -----------------------------------------------------------------


def migrate_remote(repo: Repository, remote: str, theirs: Tips, report: Report) -> None:
    """Move the remote's single ledger as `gitbus.ledger_cas.moving` moves a clone's: `ledgers/main`
    continues it, then `refs/bus/ledger` becomes the tombstone, leased on the tip it names (one
    atomic push; in that order where the host offers none, so no step is ever decided on a
    ledger an older gitbus still writes). Raises `RefMoved` when the remote moved meanwhile."""
    if theirs.broken is not None or (theirs.old is not None and repo.object_kind(theirs.old) != "commit"):
        raise RemoteError(
            f"The bus remote's {LEDGER_REF} cannot be moved: {theirs.broken or 'it is no commit'}. Nothing "
            "was changed; have the remote's ledger repaired."
        )
    end = theirs.old
    specs: list[Update] = []
    main = theirs.refs.get(MAIN_LEDGER)
    if end is not None and main != end:
        if main is not None and not repo.is_ancestor(main, end):
            raise RemoteError(
                f"The bus remote holds steps on both {LEDGER_REF} and {MAIN_LEDGER}; gitbus cannot tell "
                "which holds the claims. Nothing was changed; have one of them removed on the remote."
            )
        specs.append((MAIN_LEDGER, end, main))
    specs.append((LEDGER_REF, repo.blob(tombstone(end)), end))
    code, out, err, taken = push_ledgers(repo, remote, specs)
    for lref, new, _ in specs:
        if lref in taken:
            landed(repo, remote, lref, new)
            report.pushed.append(lref)
    if code != 0:
        push_failed(remote, LEDGER_REF, out, err)
        raise RemoteError(f"Moving the bus remote's ledger failed: {reason(err or out)}.")


# -- offline ledger steps, decided again ------------------------------------------------------------


def follow_ledgers(repo: Repository, theirs: Tips, report: Report, want: set[str] | None = None) -> None:
    """Bring this clone's ledgers up to the remote's `theirs`, rewriting nothing of the remote's.

    A ledger the remote has moved on fast-forwards; one where this clone is ahead keeps its steps
    (they go out at the push); one where both moved, or every ledger this clone kept while it
    carried other claims (a single ledger of its own, or one moved elsewhere), is built again from
    the remote's: this clone's steps there are decided again on the remote's state (`_rebuild`), and
    one that lost is dropped and its agent told, never silently kept. Before the remote's ledger
    has moved, a single ledger this clone has not moved only fast-forwards. With `want`, only those
    ledgers are followed (an online step's own), unless the two sides carry different claims."""
    if theirs.broken is not None:
        _blind(repo, theirs, report)
        return
    if theirs.old is None and not theirs.refs:
        return
    for _ in range(ROUNDS):  # a compare-and-swap retry loop
        ours = read_tips(repo, want=want)
        if want is not None and (ours.ended != theirs.ended or ours.old != theirs.old):
            ours, theirs = read_tips(repo), read_tips(repo, theirs.root)  # every shard: see `_no_new_shard`
        try:
            if not theirs.moved:
                forward = theirs.old is not None and not ours.moved and ours.old != theirs.old
                if forward and theirs.old and (ours.old is None or behind(repo, ours.old, theirs.old)):
                    raise_to(repo, LEDGER_REF, theirs.old)
                    repo.update_ref(LEDGER_REF, theirs.old, ours.old, "gitbus sync: ledger from remote")
                    report.updated.append(LEDGER_REF)
                return
            _rebuild(repo, ours, theirs, report)
            return
        except RefMoved:
            continue
    # Given up silently, a sync would push steps decided on ledgers it never brought up to date.
    raise RemoteError(
        f"This clone's ledgers kept moving; {ROUNDS} rounds could not bring them up to the remote's."
    )


def _blind(repo: Repository, theirs: Tips, report: Report) -> None:
    """The remote's ledgers cannot be read (`theirs.broken`): said in `report`, nothing taken in."""
    if LEDGER_REF not in report.refused_refs():  # vouching said why already, more closely
        why = f"the remote's ledger cannot be read: {theirs.broken}"
        report.refuse(Refusal(LEDGER_REF, report.remote, why, None))


def _rebuild(repo: Repository, ours: Tips, theirs: Tips, report: Report) -> None:
    same = ours.ended == theirs.ended  # both carry the same claims of the single ledger
    work = Tips(BUS_PREFIX, dict(theirs.refs), theirs.old, theirs.ended, True)
    again: dict[str, list[Message]] = {}  # ledger -> our steps on it, decided again
    kept: dict[str, list[Message]] = {}  # ledger -> our steps on it, ahead of the remote's: they stand
    leave: set[str] = set()
    for ref, o in sorted(ours.chains().items()):
        t = theirs.refs.get(ref)
        if repo.object_kind(o) != "commit":  # a peer's damage taken in with plain git: it holds nothing
            if t is None:
                leave.add(ref)  # nothing vouched for to put there: it stays as it is, refusing steps
            continue
        if o == t or (t is not None and repo.is_ancestor(o, t)):
            continue  # the remote has it all
        if same and (t is None or repo.is_ancestor(t, o)):
            work.refs[ref] = o  # ahead: our steps stand as decided, and go out at the push
            kept[ref] = _steps_since(repo, o, t)
            continue
        again[ref] = _steps_since(repo, o, repo.merge_base(o, t) if t is not None else None)
    # A step on several ledgers is decided again on all of them, or its other commits would stand
    # (or stay hidden) whatever became of its first.
    steps = {m.get("part") or m.id for ms in again.values() for m in ms}
    while moved := [r for r, ms in kept.items() if any((m.get("part") or m.id) in steps for m in ms)]:
        for ref in moved:
            again[ref] = kept.pop(ref)
            steps |= {m.get("part") or m.id for m in again[ref]}
            if ref in theirs.refs:
                work.refs[ref] = theirs.refs[ref]
            else:
                del work.refs[ref]
    mine = [(m, ref) for ref, ms in again.items() for m in ms]
    dropped: list[Message] = []
    lost_steps: set[str] = set()  # steps whose first commit lost: their other commits now show

    def order(e: tuple[Message, str]) -> tuple[int, str, bool]:  # a step's first commit before its others
        return (e[0].time, e[0].get("part") or e[0].id, e[0].get("part") is not None)

    for msg, ref in sorted(mine, key=order):
        one = _on_ledger(msg, ref)
        part = one.get("part")
        if part is not None and part in lost_steps:
            one = replace(one, meta=tuple((k, v) for k, v in one.meta if k != "part"))
        change, lost = _decided_again(repo, work, one, ref, MessageId(part or one.id))
        if change is None:
            continue
        if not lost:
            change = _as_told(change, msg)
        updates, _ = write_change(repo, State(repo, work), change)
        work.refs.update((r, new) for r, new, _ in updates if r != LEDGER_REF)  # not its lease
        if lost:
            dropped.append(change.message)
            lost_steps.add(part or one.id)
    changes: list[tuple[str, Oid | None, Oid | None]] = [
        (ref, work.refs.get(ref), ours.refs.get(ref))
        for ref in sorted(set(ours.refs) | set(work.refs))
        if work.refs.get(ref) != ours.refs.get(ref) and ref not in leave
    ]
    if ours.old != theirs.old:
        changes.append((LEDGER_REF, theirs.old, ours.old))
    if not changes:
        return
    for ref, new, _ in changes:
        if new is not None and ref != LEDGER_REF:
            raise_to(repo, ref, new)
    log = "gitbus sync: offline ledger steps re-decided" if mine else "gitbus sync: ledger from remote"
    repo.update_refs(changes, log, _no_new_shard(repo, ours, changes) if ours.old != theirs.old else None)
    report.updated += [ref for ref, _, _ in changes]
    report.dropped += dropped


def _no_new_shard(
    repo: Repository, ours: Tips, changes: list[tuple[str, Oid | None, Oid | None]]
) -> Callable[[], None]:
    """The check for a rebuild that swaps the tombstone, run while its locks are held: a claim shard
    made here since `ours` was read was decided on the claims the old tombstone carries, and would
    stand unseen beside the new one's (its grant leased the tombstone before this swap locked it).
    Such a shard is a lost race: the ledgers are read again, and it is decided again with the rest."""
    known = set(ours.refs) | {ref for ref, _, _ in changes}

    def check() -> None:
        for ref, oid in repo.refs(LEDGERS_PREFIX).items():
            if ref not in known and is_ledger(ref):  # a name no ledger has is read by no one
                raise RefMoved(ref, oid)

    return check


def _steps_since(repo: Repository, tip: Oid, base: Oid | None) -> list[Message]:
    """The ledger messages from `tip` down to `base` by first parents, newest first."""
    found: list[Message] = []
    at: Oid | None = tip
    while at is not None and at != base:
        commit = repo.read_commit(at)
        with contextlib.suppress(CorruptMessage):
            found.append(decode(commit.message))
        at = commit.parents[0] if commit.parents else None
    return found


def _on_ledger(msg: Message, ref: str) -> Message:
    """`msg` as a step on ledger `ref` alone: a claim shard's commit of a step on several shards
    decides only the paths that shard holds (each shard's commit is decided again on its own)."""
    if ref == MAIN_LEDGER or msg.kind not in (Kind.CLAIM, Kind.RELEASE, Kind.RENEW) or msg.get("dropped"):
        return msg
    return replace(msg, paths=tuple(p for p in msg.paths if shard_of_path(p) == ref))


def _as_told(change: Change, told: Message) -> Change:
    """`change` with the paths its step's first commit told (a step on several shards names them
    all there, though it decides only its own shard's): what the log shows stays what was asked."""
    if told.get("part") is not None or change.message.paths == told.paths or told.get("dropped"):
        return change
    return change._replace(message=replace(change.message, paths=told.paths))


def _decided_again(
    repo: Repository, work: Tips, msg: Message, ref: str, step: MessageId
) -> tuple[Change | None, bool]:
    """Ledger message `msg` (from ledger `ref`, of step `step`) decided again on `work`, keeping its
    id, or the note that drops it (True) when it cannot stand there."""
    lease_now = int(time.time() * 1000)

    def decide(min_time: int) -> Change | None:
        change = redecide(State(repo, work), msg, max(msg.time, min_time), lease_now=lease_now)
        part = msg.get("part")
        if change is not None and part is not None:  # still a step's other commit: shown once
            change = change._replace(
                message=replace(change.message, meta=(*change.message.meta, ("part", part)))
            )
        return change

    try:
        return decide_past(repo, work, decide), False
    except GitbusError as e:
        now = max(msg.time, chain_time(repo, work.tip(ref)) + 1)
        return _dropped(msg, str(e), now, ref, step), True


def _dropped(msg: Message, why: str, now: int, home: str, step: MessageId) -> Change:
    """A ledger note telling `msg`'s agent that its offline step `step` lost at sync (no state
    change). A step's other commit is told as the step its agent knows, by the first commit's id."""
    what = f"{msg.kind.value} {step}" + (f" of {', '.join(msg.paths)}" if step != msg.id else "")
    note = Message(
        new_message_id(),
        Kind.RELEASE,
        msg.sender,
        msg.sender,
        f"Your offline {what} was dropped at sync: {why}",
        now,
        msg.paths,
        MessageId(step),
        (("dropped", step),),
    )
    return Change(note, {}, home)
