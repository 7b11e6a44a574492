"""Sharing the bus through a git remote: taking in what was fetched, the sync rounds, and the remote
as the ledger's arbiter.

Every fetched bus ref is followed by one routine (`follow`): a local ref the remote's contains moves
to it; where both sides moved, the two are joined and nothing is rewritten. An agent chain posted to
under one name on two machines is joined by a merge commit, notes by a notes merge (both texts kept).
The ledgers are followed together (`gitbus.ledger_sync`): this clone's offline steps are decided
again on the remote's state, and one that lost is dropped and its agent told, never silently kept. A
ledger commit reaches the remote only on top of the tips it was decided on (`RemoteArbiter`), so two
machines claiming overlapping paths at once cannot both win. Fetch, push and git's errors are
`gitbus.remote_fetch`, `gitbus.remote_push` and `gitbus.remote`.

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
from gitbus.chains import is_ledger_chain, time_to_follow
from gitbus.errors import Contended, GitbusError
from gitbus.fetching import Early, notes_tracking, tracking
from gitbus.gitfiles import Oid, RefMoved
from gitbus.ids import (
    AGENTS_PREFIX,
    LEDGER_REF,
    agent_name,
    ledger_ref,
)
from gitbus.inert import inert
from gitbus.ledger_cas import Update
from gitbus.ledger_state import Tips, read_tips
from gitbus.ledger_sync import behind, follow_ledgers, migrate_remote, must_move, raise_to
from gitbus.message import Message
from gitbus.notes import NOTES_REF
from gitbus.remote import ROUNDS, RemoteError, Report, reason, record_refused
from gitbus.remote_fetch import fetch, fetch_vouched, fetched_of, tracking_of
from gitbus.remote_push import landed, push, push_failed, push_ledgers

if TYPE_CHECKING:
    from gitbus.git import Repository

# Both sides moved: (repo, the local ref, ours, theirs) -> a commit holding both, the offline
# ledger steps that lost on the way (their drop notes are in the commit), and one line for each
# entry of theirs passed over as no gitbus data or as a note too large to merge.
Join = Callable[["Repository", str, Oid, Oid], tuple[Oid, list[Message], list[str]]]


@dataclass(frozen=True)
class Way:
    """How one kind of bus ref follows its remote twin."""

    forward: str  # the reflog line of a fast-forward
    joined: str  # the reflog line of a join
    join: Join
    merged: bool = True  # a join is reported as merged (chains, notes) or as updated (the ledger)


def _join_chain(repo: Repository, lref: str, ours: Oid, theirs: Oid) -> tuple[Oid, list[Message], list[str]]:
    """One agent name posting on two machines: join both histories, rewrite nothing."""
    now = int(time.time() * 1000)  # a tip dated a day past this clock is not followed (`time_to_follow`)
    t = max(time_to_follow(repo, ours, now), time_to_follow(repo, theirs, now)) + 1
    merge = repo.commit(
        tree=repo.empty_tree,
        parents=[ours, theirs],
        time_ms=t,
        message=f"gitbus: join diverged histories of {lref}\n",
        author="gitbus",
    )
    return merge, [], []


def _join_notes(repo: Repository, _lref: str, ours: Oid, theirs: Oid) -> tuple[Oid, list[Message], list[str]]:
    """Notes added on both sides are merged, never dropped (the same commit noted twice: both texts);
    what in theirs is no note is passed over."""
    merged = notes.merge(repo, ours, theirs)
    return merged.commit, [], merged.passed


CHAIN = Way("gitbus sync: fast-forward", "gitbus sync: merge", _join_chain)
NOTES = Way("gitbus sync: notes from remote", "gitbus sync: notes merged", _join_notes)


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
            if ours is None or behind(repo, ours, theirs):
                if ours != theirs:
                    raise_to(repo, lref, theirs)
                    repo.update_ref(lref, theirs, ours, way.forward)
                    report.updated.append(lref)
            elif not repo.is_ancestor(theirs, ours):
                new, dropped, passed = way.join(repo, lref, ours, theirs)
                raise_to(repo, lref, new)
                repo.update_ref(lref, new, ours, way.joined)
                (report.merged if way.merged else report.updated).append(lref)
                report.dropped += dropped
                report.passed += passed
            return
        except RefMoved:
            continue


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
    ledgers = tracking(remote) + "ledgers/"
    # a name that is no ledger gitbus keeps (`main`, or a shard's 4 hex digits): never taken in
    report.ignored += [t for t in sorted(repo.refs(ledgers)) if ledger_ref(t[len(ledgers) :]) is None]
    follow_ledgers(repo, read_tips(repo, tracking(remote)), report)
    theirs_notes = repo.ref(notes_tracking(remote))
    if theirs_notes:
        follow(repo, NOTES_REF, theirs_notes, report, NOTES)


# -- the rounds ----------------------------------------------------------------------------------------


def sync(
    repo: Repository, remote: str, *, pull: bool = True, send: bool = True, early: Early | None = None
) -> Report:
    """Fetch, integrate and push until the remote takes our refs (or the rounds run out). A remote
    that still has the single ledger is moved first when this clone has ledger steps for it.
    `early`: the first fetch, started already (`gitbus.fetching`); let go of if it is not taken."""
    report = Report(remote)
    if early is not None and not pull:
        early.close()
        early = None
    for _ in range(ROUNDS):
        if pull:
            fetch_vouched(repo, remote, report, early=early)
            early = None
            integrate(repo, remote, report)
        if not send:
            record_refused(repo, remote, report)
            return report.settled()
        try:
            theirs = read_tips(repo, tracking(remote))
            if must_move(repo, theirs):
                migrate_remote(repo, remote, theirs, report)
                pull = True  # take in the moved ledger: this clone's steps are decided again on it
                continue
            push(repo, remote, report)
            if pull:
                record_refused(repo, remote, report)
            return report.settled()
        except RefMoved:
            pull = True  # the remote moved under us: take its news and try again
    raise RemoteError(f"The bus remote '{remote}' kept moving; {ROUNDS} sync rounds did not settle.")


# -- the remote as the ledgers' arbiter ---------------------------------------------------------------


class RemoteArbiter:
    """Decide ledger steps on the remote's tips and publish them only if the remote accepts."""

    def __init__(self, repo: Repository, remote: str) -> None:
        self.repo, self.remote = repo, remote
        self.report = Report(remote)
        self.replaces: dict[str, Oid] = {}  # refused remote ledger tips the next step replaces
        self.notices: list[str] = []  # one line each, for the command to show

    def tips(self, want: set[str] | None = None) -> Tips:
        """The remote's ledgers (those in `want`, when given), with our offline steps there published
        on top of them first (and a remote single ledger moved first).

        When a remote ledger holds what sync refuses (a foreign commit, a step that breaks the
        rules) on top of steps it vouched for, a step is decided on the last vouched one and
        replaces the refused tip: its push leases that tip (`publish`), so it still names the value
        it replaces, and claims keep working without anyone repairing the remote by hand."""
        if want is not None and self._offline_steps():
            want = None  # they are followed and published whole first: a step may span shards
        for _ in range(ROUNDS):  # a retry loop: the remote moved while we published
            self.report.refused = [r for r in self.report.refused if not is_ledger_chain(r.ref)]
            self.replaces = {}
            try:
                fetch_vouched(self.repo, self.remote, self.report, "ledger", want)
            except RemoteError as e:
                raise RemoteError(
                    f"{e} Nothing was changed; retry, or pass --offline to act locally and "
                    "reconcile at the next sync."
                ) from None
            refusals = {r.ref: r for r in self.report.refused if is_ledger_chain(r.ref)}
            theirs = read_tips(self.repo, tracking(self.remote), want)
            if LEDGER_REF in refusals and not theirs.moved and want is not None:
                want = None  # a tombstone is vouched for against the main ledger: take that in too
                continue
            for ref, refusal in refusals.items():
                vouched = self.repo.ref(tracking_of(self.remote, ref))
                if ref == LEDGER_REF and theirs.moved and theirs.broken is None:
                    continue  # a tombstone replaced after the move: the one vouched for still says it all
                if ref == LEDGER_REF or not self._on_top(vouched, refusal.fetched):
                    raise RemoteError(
                        f"The bus remote's ledger cannot be decided on: {refusal.line()}. Nothing was "
                        "changed; pass --offline to act locally, and have the remote's ledger repaired."
                    )
            if not theirs.moved:
                if want is not None:  # before the remote's ledger moves, or first takes it in: all of it
                    want = None
                    continue
                with contextlib.suppress(RefMoved):
                    migrate_remote(self.repo, self.remote, theirs, self.report)
                continue
            told = len(self.report.dropped)
            follow_ledgers(self.repo, theirs, self.report, want)
            # An earlier offline step that lost on the remote's tips: the command says so (issue 16).
            for m in self.report.dropped[told:]:
                line = inert(m.text, 400)
                if line not in self.notices:  # a round after a lost race replays it again
                    self.notices.append(line)
            ours = read_tips(self.repo, want=want)
            self.replaces = {ref: r.fetched for ref, r in refusals.items() if r.fetched is not None}
            ahead = [
                r
                for r, tip in ours.refs.items()
                if tip != theirs.refs.get(r) and r not in refusals and (want is None or r in want)
            ]
            if not ahead:
                return read_tips(self.repo, want=want)  # offline steps on a refused ledger go out with it
            try:  # offline steps not yet on the remote: publish them first
                push(self.repo, self.remote, self.report, only=ahead)
                return read_tips(self.repo, want=want)
            except RefMoved:
                continue  # the remote moved meanwhile: take its news and publish again
        raise Contended(
            f"The bus remote '{self.remote}' kept moving while publishing offline steps; "
            "nothing was changed. Retry."
        )

    def _offline_steps(self) -> bool:
        """True when a ledger of this clone differs from what was last fetched from the remote:
        steps made offline wait there (two listings of refs, no network)."""
        ours, theirs = read_tips(self.repo), read_tips(self.repo, tracking(self.remote))
        return ours.refs != theirs.refs

    def _on_top(self, vouched: Oid | None, refused: Oid | None) -> bool:
        """True when the refused remote tip is a commit on top of the vouched one: a step on the
        vouched one may replace it. A rewrite or a ref at no commit is repaired by hand."""
        return (
            vouched is not None
            and refused is not None
            and self.repo.object_kind(refused) == "commit"
            and self.repo.is_ancestor(vouched, refused)
        )

    def _landed(self, specs: list[Update]) -> bool:
        """After a push that timed out: did the remote take every update anyway? A second look; if
        that fails too, the step is reported as not made, and should the remote have taken it after
        all, it arrives with the next sync like any other ledger step (a claim's lease then runs out)."""
        try:
            fetch(self.repo, self.remote, "ledger", {ref for ref, _, _ in specs})
        except RemoteError:
            return False
        for ref, new, _ in specs:
            theirs = self.repo.ref(fetched_of(self.remote, ref))
            if theirs is None or not (theirs == new or self.repo.is_ancestor(new, theirs)):
                return False
        return True

    def publish(self, updates: list[Update], log: str) -> None:
        specs = [(ref, new, self.replaces.get(ref, expected)) for ref, new, expected in updates]
        # the tombstone's lease first: one by one (a host without atomic push), it is checked before
        # any shard built on its carried claims lands
        specs.sort(key=lambda spec: spec[0] != LEDGER_REF)
        code, out, err, taken = push_ledgers(self.repo, self.remote, specs)
        if code == 124 and self._landed(specs):
            code, taken = 0, {ref for ref, _, _ in specs}  # it timed out after the remote took it
        self._record([s for s in specs if s[0] in taken], log)
        if code != 0:
            if taken:  # a host without atomic push took this step's first ledgers, then refused one
                push_failed(self.remote, specs[0][0], out, err)  # a lost race: decided again, to finish it
                left = ", ".join(ref for ref, _, _ in specs if ref not in taken)
                raise RemoteError(
                    f"The bus remote '{self.remote}' offers no atomic push and took this step on "
                    f"{', '.join(sorted(taken))} but not on {left} ({reason(err or out)}); what it took "
                    "stands as a step of its own. Retry to finish it, or release what it took."
                )
            push_failed(self.remote, specs[0][0], out, err)
            raise RemoteError(
                f"The bus remote '{self.remote}' could not be reached: {reason(err or out)}; nothing was "
                "changed. Retry, or pass --offline to act locally and reconcile at the next sync."
            )
        for ref, _, _ in specs:
            if ref in self.replaces:
                refusal = next(r for r in self.report.refused if r.ref == ref)
                self.notices.append(
                    f"replaced {self.replaces[ref][:12]} on {ref} of '{self.remote}' with this step, "
                    f"decided on the last step sync vouched for, since sync refuses what was there: "
                    f"{refusal.reason}"
                )

    def _record(self, took: list[Update], log: str) -> None:
        """Move the tracking and local refs of what the remote took (where no one moved them past)."""
        for lref, new, _ in took:
            landed(self.repo, self.remote, lref, new)  # its tracking ref, and what was fetched
            for _ in range(ROUNDS):  # a compare-and-swap retry loop
                current = self.repo.ref(lref)
                if current == new or (current and not self.repo.is_ancestor(current, new)):
                    break
                try:
                    self.repo.update_ref(lref, new, current, log)
                    break
                except RefMoved:
                    continue
