"""Sharing the bus through any git remote; the remote arbitrates the ledger.

Fetches go into `refs/remotes/<remote>/bus/*` with an explicit refspec (the user's fetch config is
never touched, and no local-only bus ref is ever pruned), then are integrated:
agent chains fast-forward (or, if one name was used on two machines, are joined by a merge commit,
so no message is rewritten); the ledger follows the remote. Pushes use the git CLI with
`--atomic` and a `--force-with-lease` per ref and no `+`, so the remote accepts a ledger commit
only on top of the tip it was decided on: two machines claiming overlapping paths at once cannot
both win. Ledger commits made `--offline` are re-decided on the remote's state at the next sync;
one that lost is dropped and its agent told, never silently kept.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitbus import notes, settings, state, vouch
from gitbus.chains import all_tips, chain_time
from gitbus.errors import Contended, CorruptMessage, GitbusError
from gitbus.git import STALE_LOCK_SECONDS, network_timeout
from gitbus.gitfiles import Oid, RefMoved
from gitbus.ids import AGENTS_PREFIX, BUS_PREFIX, LEDGER_REF, agent_name, new_message_id
from gitbus.ledger import Change, Ledger, write_change
from gitbus.message import Kind, Message, decode
from gitbus.notes import NOTES_REF
from gitbus.steps import redecide

if TYPE_CHECKING:
    from gitbus.git import Repository

_ROUNDS = 8


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

    def refuse(self, refusal: vouch.Refusal) -> None:
        self.refused = [r for r in self.refused if r.ref != refusal.ref] + [refusal]

    def refused_refs(self) -> set[str]:
        return {r.ref for r in self.refused}


def bus_remote(repo: Repository, explicit: str | None = None) -> str | None:
    """The remote named on the command line, else the configured one, else None (local bus)."""
    name = explicit or settings.load(repo.common_dir)["remote"]
    return str(name) if name else None


def require_remote(repo: Repository, explicit: str | None) -> str:
    name = bus_remote(repo, explicit)
    if not name:
        raise GitbusError("No bus remote is set; run `gitbus remote NAME` (a git remote) first.")
    settings.parse("remote", name)
    code, _, _ = repo.git_result("remote", "get-url", name)
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


def tracking(remote: str) -> str:
    return f"refs/remotes/{remote}/bus/"


def fetch(repo: Repository, remote: str, what: str = "*") -> None:
    """Copy the remote's bus refs (all, or one like `ledger`) into the tracking namespace."""
    specs = [f"+{BUS_PREFIX}{what}:{tracking(remote)}{what}"]
    if what == "*":  # coordination notes travel with the bus (a glob: the remote may have none yet)
        specs.append(f"+refs/notes/gitbus*:refs/remotes/{remote}/notes/gitbus*")
    for attempt in range(_ROUNDS):
        code, _, err = repo.git_result(
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            remote,
            *specs,
            network=True,
            timeout=network_timeout(whole_bus=what == "*"),
        )
        if code == 0:
            return
        if what != "*" and "couldn't find remote ref" in err:
            return  # the remote has no ledger yet
        stale = _STALE_LOCK.search(err)
        if stale:
            # A git killed mid-fetch left a tracking ref's lock, and git never removes one itself:
            # once it is clearly stale (no live writer holds a lock that long), move it aside.
            deadline = time.monotonic() + STALE_LOCK_SECONDS + 2
            while not repo.recover_stale_lock(Path(stale.group(1))) and time.monotonic() < deadline:
                time.sleep(0.1)
            continue
        if not _lost_local_race(err):
            break
        # Another process of this repository fetched the same tracking ref first (git's own CAS on it
        # failed): what it wrote is as new as what we got, so fetch again after a short jittered wait.
        time.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
    raise RemoteError(f"The bus remote '{remote}' could not be reached: {_last(err)}.")


def fetch_vouched(repo: Repository, remote: str, report: Report, what: str = "*") -> None:
    """`fetch`, then vouch for every bus ref that moved (`gitbus.vouch`): what cannot be vouched for
    is refused in `report`, its tracking ref put back to what can."""
    notes_tracking = f"refs/remotes/{remote}/notes/gitbus"
    before = repo.refs(tracking(remote))
    before_notes = repo.ref(notes_tracking)
    signed = bool(settings.load(repo.common_dir)["require_signed"])
    fetch(repo, remote, what)
    for tref in sorted(repo.refs(tracking(remote))):
        ref = vouch.bus_ref_of(tracking(remote), tref)
        if ref is None:
            continue
        refusal = vouch.check(repo, remote, ref, tref, before.get(tref), require_signed=signed)
        if refusal is not None:
            report.refuse(refusal)
    if what == "*":
        refusal = vouch.check(repo, remote, NOTES_REF, notes_tracking, before_notes, require_signed=signed)
        if refusal is not None:
            report.refuse(refusal)


_STALE_LOCK = re.compile(r"Unable to create '([^']+\.lock)': File exists")


def _lost_local_race(err: str) -> bool:
    """git fetch failed on a local tracking ref moved or locked by a concurrent fetch, not on the remote."""
    return "cannot lock ref" in err or "unable to update local ref" in err


_NOISE = (
    "Please make sure you have",
    "and the repository exists",
    "Could not read from remote",
    "To ",
    "Done",
)


def _last(err: str) -> str:
    lines = [line.strip() for line in err.strip().splitlines() if line.strip()]
    lines = [x for x in lines if not x.startswith(_NOISE) and "failed to push some refs" not in x] or lines
    return (
        " ".join(x.removeprefix("fatal: ").removeprefix("error: ") for x in lines).rstrip(".") or "no answer"
    )


def integrate(repo: Repository, remote: str, report: Report) -> None:
    """Bring local bus refs up to what was fetched, without rewriting any message."""
    for tref, theirs in sorted(repo.refs(tracking(remote) + "agents/").items()):
        name = tref[len(tracking(remote) + "agents/") :]
        try:
            agent_name(name)
        except GitbusError:  # not a name gitbus takes: never made into a local bus ref
            report.ignored.append(tref)
            continue
        _integrate_chain(repo, AGENTS_PREFIX + name, theirs, report)
    theirs_ledger = repo.ref(tracking(remote) + "ledger")
    if theirs_ledger:
        _integrate_ledger(repo, theirs_ledger, report)
    theirs_notes = repo.ref(f"refs/remotes/{remote}/notes/gitbus")
    if theirs_notes:
        _integrate_notes(repo, theirs_notes, report)


def _behind(repo: Repository, ours: Oid | None, theirs: Oid) -> bool:
    """True when the local ref can simply move to `theirs`: it is missing, it is no commit (a peer's
    damage taken in by plain git: nothing is lost by replacing it), or `theirs` contains it."""
    return ours is None or repo.object_kind(ours) != "commit" or repo.is_ancestor(ours, theirs)


def _integrate_notes(repo: Repository, theirs: Oid, report: Report) -> None:
    """Notes added on both sides are merged, never dropped (the same commit noted twice: both texts)."""
    for _ in range(_ROUNDS):
        ours = repo.ref(NOTES_REF)
        try:
            if ours is None or _behind(repo, ours, theirs):
                if ours != theirs:
                    repo.update_ref(NOTES_REF, theirs, ours, "gitbus sync: notes from remote")
                    report.updated.append(NOTES_REF)
            elif not repo.is_ancestor(theirs, ours):
                repo.update_ref(NOTES_REF, notes.merge(repo, ours, theirs), ours, "gitbus sync: notes merged")
                report.merged.append(NOTES_REF)
            return
        except RefMoved:
            continue


def _integrate_chain(repo: Repository, lref: str, theirs: Oid, report: Report) -> None:
    for _ in range(_ROUNDS):
        ours = repo.ref(lref)
        try:
            if ours is None or _behind(repo, ours, theirs):
                if ours != theirs:
                    repo.update_ref(lref, theirs, ours, "gitbus sync: fast-forward")
                    report.updated.append(lref)
            elif not repo.is_ancestor(theirs, ours):
                # One agent name posting on two machines: join both histories, rewrite nothing.
                t = max(chain_time(repo, ours), chain_time(repo, theirs)) + 1
                merge = repo.commit(
                    tree=repo.empty_tree,
                    parents=[ours, theirs],
                    time_ms=t,
                    message=f"gitbus: join diverged histories of {lref}\n",
                    author="gitbus",
                )
                repo.update_ref(lref, merge, ours, "gitbus sync: merge")
                report.merged.append(lref)
            return
        except RefMoved:
            continue


def _integrate_ledger(repo: Repository, theirs: Oid, report: Report) -> None:
    for _ in range(_ROUNDS):
        ours = repo.ref(LEDGER_REF)
        try:
            if ours is None or _behind(repo, ours, theirs):
                if ours != theirs:
                    repo.update_ref(LEDGER_REF, theirs, ours, "gitbus sync: ledger from remote")
                    report.updated.append(LEDGER_REF)
            elif not repo.is_ancestor(theirs, ours):
                new, dropped = replay(repo, ours, theirs)
                repo.update_ref(LEDGER_REF, new, ours, "gitbus sync: offline ledger steps re-decided")
                report.updated.append(LEDGER_REF)
                report.dropped += dropped
            return
        except RefMoved:
            continue


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


def push(repo: Repository, remote: str, report: Report, only: list[str] | None = None) -> None:
    """Push every bus ref that is ahead of the remote, all or nothing, each with a lease."""
    local = all_tips(repo)
    note_tip = repo.ref(NOTES_REF)
    if note_tip:
        local[NOTES_REF] = note_tip
    specs: list[tuple[str, Oid, Oid | None]] = []
    refused = report.refused_refs()
    for lref, ours in sorted(local.items()):
        if (only is not None and lref not in only) or lref in refused:
            continue  # a refused ref: the remote holds what we will not build on, nor overwrite
        theirs = repo.ref(_tracking_of(remote, lref))
        if theirs == ours or (theirs is not None and not repo.is_ancestor(theirs, ours)):
            continue  # up to date, or the remote has more: pull first
        specs.append((lref, ours, theirs))
    if not specs:
        return
    args = ["push", "--porcelain", "--atomic", "--quiet", remote]
    args += [f"--force-with-lease={lref}:{theirs or ''}" for lref, _, theirs in specs]
    args += [f"{ours}:{lref}" for lref, ours, _ in specs]
    code, out, err = repo.git_result(
        *args, network=True, timeout=network_timeout(whole_bus=only != [LEDGER_REF])
    )
    if code != 0:
        _push_failed(remote, specs[0][0], out, err)
        raise RemoteError(f"Pushing the bus to '{remote}' failed: {_last(err or out)}.")
    for lref, ours, theirs in specs:
        tref = _tracking_of(remote, lref)
        # A concurrent fetch may already have recorded something at least as new: fine either way.
        with contextlib.suppress(RefMoved):
            repo.update_ref(tref, ours, theirs, "gitbus push")
        report.pushed.append(lref)


def _tracking_of(remote: str, lref: str) -> str:
    if lref == NOTES_REF:
        return f"refs/remotes/{remote}/notes/gitbus"
    return tracking(remote) + lref[len(BUS_PREFIX) :]


def _push_failed(remote: str, ref: str, out: str, err: str) -> None:
    text = out + err
    if "funny refname" in text or "deny" in text.lower() or "hook declined" in text:
        raise RemoteError(
            f"The bus remote '{remote}' refused refs under refs/bus/ ({_last(out + err)}); "
            "some hosts accept only branches and tags. See docs/sync.md for the fallback."
        )
    if any(
        k in text
        for k in (
            "stale info",
            "fetch first",
            "non-fast-forward",
            "atomic transaction failed",
            "failed to update ref",
            "cannot lock ref",
            "failed to lock",
        )
    ):
        raise RefMoved(ref, None)


def sync(repo: Repository, remote: str, *, pull: bool = True, send: bool = True) -> Report:
    """Fetch, integrate and push until the remote takes our refs (or the rounds run out)."""
    report = Report(remote)
    for _ in range(_ROUNDS):
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
    raise RemoteError(f"The bus remote '{remote}' kept moving; {_ROUNDS} sync rounds did not settle.")


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
    except (OSError, ValueError, KeyError):
        return []
    return [str(x) for x in lines] if isinstance(lines, list) else []


def record(repo: Repository, remote: str, now_ms: int, error: str | None) -> None:
    """Remember how the last background sync went, for `gitbus status`."""
    f = state.sync_status(repo.common_dir)
    status = json.dumps({"remote": remote, "at": now_ms, "error": error})
    state.write_atomic(f, status, prefix=".sync-status-")


def last_status(repo: Repository) -> dict[str, Any] | None:
    try:
        obj = json.loads(state.sync_status(repo.common_dir).read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


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
        for _ in range(_ROUNDS):
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
                _integrate_ledger(self.repo, theirs, self.report)
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
        expected = self.replaces or base
        code, out, err = self.repo.git_result(
            "push",
            "--porcelain",
            "--atomic",
            "--quiet",
            self.remote,
            f"--force-with-lease={LEDGER_REF}:{expected or ''}",
            f"{new}:{LEDGER_REF}",
            network=True,
        )
        if code == 124 and self._landed(new):
            code = 0  # it timed out after the remote took it: a grant all the same
        if code != 0:
            _push_failed(self.remote, LEDGER_REF, out, err)
            raise RemoteError(
                f"The bus remote '{self.remote}' could not be reached: {_last(err or out)}; nothing was "
                "changed. Retry, or pass --offline to act locally and reconcile at the next sync."
            )
        if self.replaces is not None:
            refusal = next(r for r in self.report.refused if r.ref == LEDGER_REF)
            self.notices.append(
                f"replaced {self.replaces[:12]} on {LEDGER_REF} of '{self.remote}', which sync refuses "
                f"({refusal.reason}), with this step on the last one it vouched for"
            )
        for ref in (tracking(self.remote) + "ledger", LEDGER_REF):
            for _ in range(_ROUNDS):
                current = self.repo.ref(ref)
                if current == new or (current and not self.repo.is_ancestor(current, new)):
                    break
                try:
                    self.repo.update_ref(ref, new, current, log)
                    break
                except RefMoved:
                    continue
