"""Sharing the bus through a git remote: taking in what was fetched, the sync rounds, and the remote
as the ledger's arbiter.

Every fetched bus ref is followed by one routine (`follow`): a local ref the remote's contains moves
to it; where both sides moved, the two are joined and nothing is rewritten. An agent chain posted to
under one name on two machines is joined by a merge commit, notes by a notes merge (both texts kept),
and the ledger by deciding this clone's offline steps again on the remote's state (`replay`): one
that lost is dropped and its agent told, never silently kept. A ledger commit reaches the remote only
on top of the tip it was decided on (`RemoteArbiter`), so two machines claiming overlapping paths at
once cannot both win. Fetch, push and git's errors are `gitbus.remote`.

This sits below `Bus` (floor 6): every online ledger step goes through the arbiter, and `init` pulls
a bus it finds on `origin`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gitbus import notes
from gitbus.chains import chain_time, raise_mark
from gitbus.errors import Contended, CorruptMessage, GitbusError
from gitbus.gitfiles import Oid, RefMoved
from gitbus.ids import AGENTS_PREFIX, BUS_PREFIX, LEDGER_REF, agent_name, new_message_id
from gitbus.inert import inert
from gitbus.ledger import Change, Ledger, write_change
from gitbus.message import Kind, Message, decode
from gitbus.notes import NOTES_REF
from gitbus.remote import (
    ROUNDS,
    RemoteError,
    Report,
    fetch,
    fetch_vouched,
    notes_tracking,
    push,
    push_failed,
    push_ledger,
    reason,
    record_refused,
    tracking,
)
from gitbus.steps import redecide

if TYPE_CHECKING:
    from gitbus.git import Repository

# Both sides moved: (repo, the local ref, ours, theirs) -> a commit holding both, and the offline
# ledger steps that lost on the way (their drop notes are in the commit).
Join = Callable[["Repository", str, Oid, Oid], tuple[Oid, list[Message]]]


@dataclass(frozen=True)
class Way:
    """How one kind of bus ref follows its remote twin."""

    forward: str  # the reflog line of a fast-forward
    joined: str  # the reflog line of a join
    join: Join
    merged: bool = True  # a join is reported as merged (chains, notes) or as updated (the ledger)


def _join_chain(repo: Repository, lref: str, ours: Oid, theirs: Oid) -> tuple[Oid, list[Message]]:
    """One agent name posting on two machines: join both histories, rewrite nothing."""
    t = max(chain_time(repo, ours), chain_time(repo, theirs)) + 1
    merge = repo.commit(
        tree=repo.empty_tree,
        parents=[ours, theirs],
        time_ms=t,
        message=f"gitbus: join diverged histories of {lref}\n",
        author="gitbus",
    )
    return merge, []


def _join_notes(repo: Repository, _lref: str, ours: Oid, theirs: Oid) -> tuple[Oid, list[Message]]:
    """Notes added on both sides are merged, never dropped (the same commit noted twice: both texts)."""
    return notes.merge(repo, ours, theirs), []


def _join_ledger(repo: Repository, _lref: str, ours: Oid, theirs: Oid) -> tuple[Oid, list[Message]]:
    return replay(repo, ours, theirs)


CHAIN = Way("gitbus sync: fast-forward", "gitbus sync: merge", _join_chain)
NOTES = Way("gitbus sync: notes from remote", "gitbus sync: notes merged", _join_notes)
LEDGER = Way(
    "gitbus sync: ledger from remote",
    "gitbus sync: offline ledger steps re-decided",
    _join_ledger,
    merged=False,
)


def follow(repo: Repository, lref: str, theirs: Oid, report: Report, way: Way) -> None:
    """Bring `lref` up to the fetched `theirs` without rewriting anything: fast-forward when ours is
    behind, join when both moved, leave it when ours is ahead. A lost race reads again (up to
    `ROUNDS` times; after that the next sync tries again).

    A bus ref moved here raises the horizon mark to its new tip's time first (`chains.raise_mark`),
    as every writer does before publishing: a post made once the move is visible, by this command or
    a concurrent one, sorts after it, even when the step that fetched it was refused or had nothing
    to do. A tip stamped more than a day ahead of this clock does not count."""
    for _ in range(ROUNDS):  # a compare-and-swap retry loop
        ours = repo.ref(lref)
        try:
            if ours is None or _behind(repo, ours, theirs):
                if ours != theirs:
                    _raise_to(repo, lref, theirs)
                    repo.update_ref(lref, theirs, ours, way.forward)
                    report.updated.append(lref)
            elif not repo.is_ancestor(theirs, ours):
                new, dropped = way.join(repo, lref, ours, theirs)
                _raise_to(repo, lref, new)
                repo.update_ref(lref, new, ours, way.joined)
                (report.merged if way.merged else report.updated).append(lref)
                report.dropped += dropped
            return
        except RefMoved:
            continue


def _raise_to(repo: Repository, lref: str, tip: Oid) -> None:
    if lref.startswith(BUS_PREFIX):  # notes carry no message time
        raise_mark(repo, chain_time(repo, tip), int(time.time() * 1000))


def _behind(repo: Repository, ours: Oid | None, theirs: Oid) -> bool:
    """True when the local ref can simply move to `theirs`: it is missing, it is no commit (a peer's
    damage taken in by plain git: nothing is lost by replacing it), or `theirs` contains it."""
    return ours is None or repo.object_kind(ours) != "commit" or repo.is_ancestor(ours, theirs)


def integrate(repo: Repository, remote: str, report: Report) -> None:
    """Bring local bus refs up to what was fetched, without rewriting any message."""
    agents = tracking(remote) + "agents/"
    for tref, theirs in sorted(repo.refs(agents).items()):
        name = tref[len(agents) :]
        try:
            agent_name(name)
        except GitbusError:  # not a name gitbus takes: never made into a local bus ref
            report.ignored.append(tref)
            continue
        follow(repo, AGENTS_PREFIX + name, theirs, report, CHAIN)
    theirs_ledger = repo.ref(tracking(remote) + "ledger")
    if theirs_ledger:
        follow(repo, LEDGER_REF, theirs_ledger, report, LEDGER)
    theirs_notes = repo.ref(notes_tracking(remote))
    if theirs_notes:
        follow(repo, NOTES_REF, theirs_notes, report, NOTES)


# -- the rounds ----------------------------------------------------------------------------------------


def sync(repo: Repository, remote: str, *, pull: bool = True, send: bool = True) -> Report:
    """Fetch, integrate and push until the remote takes our refs (or the rounds run out)."""
    report = Report(remote)
    for _ in range(ROUNDS):
        if pull:
            fetch_vouched(repo, remote, report)
            integrate(repo, remote, report)
        if not send:
            record_refused(repo, remote, report)
            return report
        try:
            push(repo, remote, report)
            if pull:
                record_refused(repo, remote, report)
            return report
        except RefMoved:
            pull = True  # the remote moved under us: take its news and try again
    raise RemoteError(f"The bus remote '{remote}' kept moving; {ROUNDS} sync rounds did not settle.")


# -- offline ledger steps, decided again ------------------------------------------------------------


def replay(repo: Repository, ours: Oid, theirs: Oid) -> tuple[Oid, list[Message]]:
    """Re-decide our ledger steps since the common base on top of `theirs`; the losers are told."""
    base = repo.merge_base(ours, theirs)
    mine: list[Message] = []
    at: Oid | None = ours
    while at is not None and at != base:
        commit = repo.read_commit(at)
        with contextlib.suppress(CorruptMessage):
            mine.append(decode(commit.message))
        at = commit.parents[0] if commit.parents else None
    tip, dropped = theirs, []
    for msg in reversed(mine):
        state = Ledger(repo, repo.read_commit(tip).tree)
        now = max(msg.time, chain_time(repo, tip) + 1)
        try:
            change = redecide(state, msg, now, lease_now=int(time.time() * 1000))
        except GitbusError as e:
            change = _dropped(msg, str(e), now)
            dropped.append(change.message)
        if change is not None:
            tip = write_change(repo, tip, change)
    return tip, dropped


def _dropped(msg: Message, why: str, now: int) -> Change:
    """A ledger note telling `msg`'s agent that its offline step lost at sync (no state change)."""
    note = Message(
        new_message_id(),
        Kind.RELEASE,
        msg.sender,
        msg.sender,
        f"Your offline {msg.kind.value} {msg.id} was dropped at sync: {why}",
        now,
        msg.paths,
        msg.id,
        (("dropped", msg.id),),
    )
    return Change(note, {})


# -- the remote as the ledger's arbiter ---------------------------------------------------------------


class RemoteArbiter:
    """Decide ledger steps on the remote's tip and publish them only if the remote accepts."""

    def __init__(self, repo: Repository, remote: str) -> None:
        self.repo, self.remote = repo, remote
        self.report = Report(remote)
        self.replaces: Oid | None = None  # a refused remote ledger tip the next step replaces
        self.notices: list[str] = []  # one line each, for the command to show

    def base(self) -> Oid | None:
        """The remote's ledger, with our offline steps published on top of it first.

        When the remote's ledger holds what sync refuses (a foreign commit, a step that breaks the
        rules) on top of steps it vouched for, the step is decided on the last vouched one and
        replaces the refused tip: its push leases that tip (`publish`), so it still names the value
        it replaces, and claims keep working without anyone repairing the remote by hand."""
        for _ in range(ROUNDS):  # a retry loop: the remote moved while we published
            self.report.refused = [r for r in self.report.refused if r.ref != LEDGER_REF]
            self.replaces = None
            try:
                fetch_vouched(self.repo, self.remote, self.report, "ledger")
            except RemoteError as e:
                raise RemoteError(
                    f"{e} Nothing was changed; retry, or pass --offline to act locally and "
                    "reconcile at the next sync."
                ) from None
            refusal = next((r for r in self.report.refused if r.ref == LEDGER_REF), None)
            theirs = self.repo.ref(tracking(self.remote) + "ledger")
            if refusal is not None and not self._on_top(theirs, refusal.fetched):
                raise RemoteError(
                    f"The bus remote's ledger cannot be decided on: {refusal.line()}. Nothing was changed; "
                    "pass --offline to act locally, and have the remote's ledger repaired."
                )
            if theirs:
                told = len(self.report.dropped)
                follow(self.repo, LEDGER_REF, theirs, self.report, LEDGER)
                # An earlier offline step that lost on the remote's tip: the command says so (issue 16).
                for m in self.report.dropped[told:]:
                    line = inert(m.text, 400)
                    if line not in self.notices:  # a round after a lost race replays it again
                        self.notices.append(line)
            ours = self.repo.ref(LEDGER_REF)
            if refusal is not None:
                self.replaces = refusal.fetched
                return ours  # our offline steps, if any, go out with the step that replaces it
            if not ours or ours == theirs:
                return ours
            try:  # offline steps not yet on the remote: publish them first
                push(self.repo, self.remote, self.report, only=[LEDGER_REF])
                return self.repo.ref(LEDGER_REF)
            except RefMoved:
                continue  # the remote moved meanwhile: take its news and publish again
        raise Contended(
            f"The bus remote '{self.remote}' kept moving while publishing offline steps; "
            "nothing was changed. Retry."
        )

    def _on_top(self, vouched: Oid | None, refused: Oid | None) -> bool:
        """True when the refused remote tip is a commit on top of the vouched one: a step on the
        vouched one may replace it. A rewrite or a ref at no commit is repaired by hand."""
        return (
            vouched is not None
            and refused is not None
            and self.repo.object_kind(refused) == "commit"
            and self.repo.is_ancestor(vouched, refused)
        )

    def _landed(self, new: Oid) -> bool:
        """After a push that timed out: did the remote take `new` anyway? A second look; if that
        fails too, the step is reported as not made, and should the remote have taken it after all,
        it arrives with the next sync like any other ledger step (a claim's lease then runs out)."""
        try:
            fetch(self.repo, self.remote, "ledger")
        except RemoteError:
            return False
        theirs = self.repo.ref(tracking(self.remote) + "ledger")
        return theirs is not None and (theirs == new or self.repo.is_ancestor(new, theirs))

    def publish(self, base: Oid | None, new: Oid, log: str) -> None:
        code, out, err = push_ledger(self.repo, self.remote, new, self.replaces or base)
        if code == 124 and self._landed(new):
            code = 0  # it timed out after the remote took it: a grant all the same
        if code != 0:
            push_failed(self.remote, LEDGER_REF, out, err)
            raise RemoteError(
                f"The bus remote '{self.remote}' could not be reached: {reason(err or out)}; nothing was "
                "changed. Retry, or pass --offline to act locally and reconcile at the next sync."
            )
        if self.replaces is not None:
            refusal = next(r for r in self.report.refused if r.ref == LEDGER_REF)
            self.notices.append(
                f"replaced {self.replaces[:12]} on {LEDGER_REF} of '{self.remote}' with this step, decided "
                f"on the last step sync vouched for, since sync refuses what was there: {refusal.reason}"
            )
        for ref in (tracking(self.remote) + "ledger", LEDGER_REF):
            for _ in range(ROUNDS):  # a compare-and-swap retry loop
                current = self.repo.ref(ref)
                if current == new or (current and not self.repo.is_ancestor(current, new)):
                    break
                try:
                    self.repo.update_ref(ref, new, current, log)
                    break
                except RefMoved:
                    continue
