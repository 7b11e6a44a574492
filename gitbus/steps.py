"""Ledger steps: what each kind of step does (a value with `decide`) and what it may do (`problem`).

A step is an immutable value naming what an agent asks of the ledger: `Claim`, `Release`, `Renew`,
`Take`, `Done`, or the `Note` sync writes to tell an agent its offline step was dropped. Its
`decide(state, time, id)` returns the `Change` that does it on that ledger state, or None when there is
nothing to do, or raises to refuse; `ledger.transact` calls it again on the winner's state after a
lost race. `Bus` builds steps from what the user asked; sync rebuilds them from their messages
(`from_message`) to decide offline steps again on the remote's state (`redecide`).

What a step may do is checked on every ledger commit sync takes in (`problem`): the ledger's state is
its tip's tree, and anyone with push access to the remote can write a tree.
So a ledger commit sync takes in must be a step gitbus could have written: one parent (gitbus
writes no ledger merge), and a tree that differs from its parent's only in ways the step its message
names, by the agent it names, may change it. A claim adds or refreshes entries owned by its sender on
the paths it names, in their folded slots, overlapping no other agent's live claim, and removes only
its sender's own entries or others' that were open to take-over (expired past the skew margin) at
the earlier of its time and the checking clone's clock; a release removes its sender's entries
(another's only when it records the release as forced, with a reason); a
renew changes only its sender's entries, which stay its; a take writes the request's entry for its
sender; a done marks done a request its sender took; anything else changes nothing. An entry that
does not read as a claim or request holds nothing: a step may remove or replace it, never write one.
Rules, not a replay: a step is judged by what it changed, so a legitimate step decided on another
clock passes.

A step changes at most `MAX_STEP_CHANGES` entries, and the diff stops reading there: a tree of
millions of entries is refused after reading that many, never read whole.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from gitbus import claims as C
from gitbus import delegation as D
from gitbus.clock import hhmm
from gitbus.errors import Conflict, GitbusError, NotFound, Unreadable
from gitbus.gitfiles import Commit, Oid
from gitbus.ids import EVERYONE, MAIN_LEDGER, AgentName, MessageId
from gitbus.ledger import Ledger, View, load_entry
from gitbus.ledger_cas import Change
from gitbus.ledger_shards import route, shard_of_path
from gitbus.message import Kind, Message

if TYPE_CHECKING:
    from gitbus.git import Repository

# A claim names at most `message.MAX_PATHS` paths, and may take over the expired claims below each.
MAX_STEP_CHANGES = 20_000


class Step(Protocol):
    def ledgers(self) -> set[str] | None:
        """The ledgers this step reads and may write; None: any of them (it reads them all)."""
        ...

    def decide(self, state: View, time: int, id: MessageId, lease_now: int | None = None) -> Change | None:
        """The change that takes this step on `state`, as message `id` stamped `time` (the bus's
        hybrid clock); leases are judged and set by `lease_now`, the decider's own wall clock (at
        most `time`), so one fast clock on the bus cannot make everyone else's live leases look
        expired. None: nothing to do. Raises a `GitbusError` to refuse."""
        ...


@dataclass(frozen=True)
class Claim:
    """Lease all of `paths` to `me`, or none: refused with the first live claim of another agent."""

    me: AgentName
    paths: tuple[str, ...]
    ttl_ms: int = C.DEFAULT_TTL_MS
    reason: str = ""

    def ledgers(self) -> set[str] | None:
        return {shard_of_path(p) for p in self.paths}

    def decide(self, state: View, time: int, id: MessageId, lease_now: int | None = None) -> Change:
        me, ttl_ms = self.me, self.ttl_ms
        C.check_ttl(ttl_ms)
        now = min(time, lease_now if lease_now is not None else time)
        writes: dict[str, dict[str, Any] | None] = {}
        meta: list[tuple[str, str]] = []
        for path in self.paths:
            previous: C.Claim | None = None
            for c in C.overlapping(state, path):
                if c.owner == me:
                    if C.same_path(c.path, path):
                        previous = c
                    continue
                if not c.open_to_others(now):
                    raise C.conflict_error(c, f"Claim on {path}", now)
                if c.where not in writes:  # not when an earlier path of this claim already took the slot
                    writes[c.where] = None
                    meta.append(("took-over", f"{c.owner} {c.path}"))
            claim = C.Claim(
                path=path,
                owner=me,
                reason=self.reason or (previous.reason if previous else ""),
                claimed_at=previous.claimed_at if previous and previous.live(now) else now,
                expires_at=now + ttl_ms,
                ttl_ms=ttl_ms,
                id=id,
            )
            if previous is not None and previous.where != C.slot(path):
                writes[previous.where] = None  # a claim in its spelling's slot moves to the folded one
            writes[C.slot(path)] = claim.to_json()
        meta += [("expires", str(now + ttl_ms)), ("ttl", str(ttl_ms))]
        msg = Message(id, Kind.CLAIM, me, EVERYONE, self.reason, time, self.paths, meta=tuple(meta))
        return Change(msg, writes)


@dataclass(frozen=True)
class Release:
    """Release `me`'s claims on `paths` (or all of them); another's only with `force` and a reason.
    `only_held` (a step decided again at sync) passes over paths nobody holds any more."""

    me: AgentName
    paths: tuple[str, ...] = ()
    everything: bool = False
    force: bool = False
    reason: str = ""
    only_held: bool = False

    def ledgers(self) -> set[str] | None:
        return None if self.everything else {shard_of_path(p) for p in self.paths}

    def decide(self, state: View, time: int, id: MessageId, lease_now: int | None = None) -> Change | None:
        me = self.me
        if self.everything:
            targets = [c for c in C.all_claims(state) if c.owner == me]
        else:
            targets = []
            for path in self.paths:
                c = C.held_at(state, path)
                if c is None:
                    if self.only_held:
                        continue
                    raise NotFound(f"There is no claim on {path}; see `gitbus claims`.")
                if c.owner != me and not self.force:
                    raise GitbusError(
                        f"{c.describe(time)}; only {c.owner} can release it "
                        '(or use --force --reason "…", which is recorded and tells them).'
                    )
                if c.owner != me and not self.reason.strip():
                    raise GitbusError('A forced release needs --reason "…"; it is recorded for the owner.')
                targets.append(c)
        if not targets and (self.everything or self.only_held):
            return None
        meta = tuple(("forced", f"{c.owner} {c.path}") for c in targets if c.owner != me)
        paths = tuple(c.path for c in targets)
        msg = Message(id, Kind.RELEASE, me, EVERYONE, self.reason, time, paths, meta=meta)
        return Change(msg, {c.where: None for c in targets})


@dataclass(frozen=True)
class Renew:
    """Extend `me`'s claims (all, or those on `paths`) by their lease, or by `ttl_ms`. `only_held`
    (a step decided again at sync) passes over paths nobody holds any more."""

    me: AgentName
    paths: tuple[str, ...] = ()
    ttl_ms: int | None = None
    only_held: bool = False

    def ledgers(self) -> set[str] | None:
        return {shard_of_path(p) for p in self.paths} if self.paths else None

    def decide(self, state: View, time: int, id: MessageId, lease_now: int | None = None) -> Change | None:
        me, paths, ttl_ms = self.me, self.paths, self.ttl_ms
        if ttl_ms is not None:
            C.check_ttl(ttl_ms)
        now = min(time, lease_now if lease_now is not None else time)
        if self.only_held:
            paths = tuple(p for p in paths if C.held_at(state, p) is not None)
            if not paths:
                return None
        if paths:  # only the named slots are read: renewing costs the paths' depth, not the ledger's size
            held = {c.where: c for p in paths for c in C.claims_at(state, p) if c.owner == me}
            mine = sorted(held.values(), key=lambda c: c.path)
            missing = [p for p in paths if not any(C.same_path(p, c.path) for c in mine)]
            if missing:
                raise NotFound(f"You hold no claim on {missing[0]}; claim it again with `gitbus claim`.")
        else:
            mine = [c for c in C.all_claims(state) if c.owner == me]
        if not mine:
            return None
        writes: dict[str, dict[str, Any] | None] = {}
        for c in mine:
            ttl = ttl_ms or c.ttl_ms
            renewed = C.Claim(
                c.path, me, c.reason, c.claimed_at if c.live(now) else now, now + ttl, ttl, c.id
            )
            writes[c.where] = renewed.to_json()
        meta = (("expires", str(max(now + (ttl_ms or c.ttl_ms) for c in mine))),)
        msg = Message(id, Kind.RENEW, me, EVERYONE, "", time, tuple(c.path for c in mine), meta=meta)
        return Change(msg, writes)


@dataclass(frozen=True)
class Take:
    """`me` takes `request`: refused when another agent took it first. Stamped after `after` (the
    request's time, so a take never sorts before its request)."""

    me: AgentName
    request: Message
    after: int = 0

    def ledgers(self) -> set[str] | None:
        return {MAIN_LEDGER}

    def decide(self, state: View, time: int, id: MessageId, lease_now: int | None = None) -> Change:
        me, request, now = self.me, self.request, max(time, self.after)
        _require_request(request)
        if request.to not in (EVERYONE, me):
            raise Conflict(f"Request {request.id} is addressed to {request.to}, not to {me}.")
        held = D.state_of(state, request.id)
        if held is not None:
            if held.taker == me:
                done = " and it is done" if held.done_at else ""
                raise GitbusError(f"You already took request {request.id}{done}.")
            raise Conflict(
                f"Request {request.id} was already taken by {held.taker} at "
                f"{hhmm(held.taken_at)}" + (" and is done." if held.done_at else ".")
            )
        taken = D.RequestState(request.id, me, now)
        msg = Message(id, Kind.TAKE, me, request.sender, request.summary(), now, request.paths, request.id)
        return Change(msg, {D.slot(request.id): taken.to_json()})


@dataclass(frozen=True)
class Done:
    """`me` finishes `request`, which it took."""

    me: AgentName
    request: Message
    text: str = ""

    def ledgers(self) -> set[str] | None:
        return {MAIN_LEDGER}

    def decide(self, state: View, time: int, id: MessageId, lease_now: int | None = None) -> Change:
        me, request = self.me, self.request
        _require_request(request)
        held = D.state_of(state, request.id)
        if held is None:
            raise GitbusError(f"Request {request.id} has not been taken; `gitbus take {request.id}` first.")
        if held.taker != me:
            raise Conflict(f"Request {request.id} was taken by {held.taker}; only they can finish it.")
        if held.done_at is not None:
            raise GitbusError(f"Request {request.id} is already done.")
        done = D.RequestState(request.id, me, held.taken_at, time)
        msg = Message(id, Kind.DONE, me, request.sender, self.text, time, request.paths, request.id)
        return Change(msg, {D.slot(request.id): done.to_json()})


@dataclass(frozen=True)
class Note:
    """A ledger message that changes no state: sync's note that an offline step was dropped. Decided
    again, it keeps its id and text and takes the new time, or its agent is never told."""

    message: Message

    def ledgers(self) -> set[str] | None:
        return None

    def decide(self, state: View, time: int, id: MessageId, lease_now: int | None = None) -> Change:
        return Change(replace(self.message, time=time), {})


def _require_request(request: Message) -> None:
    if request.kind is not Kind.REQUEST:
        raise GitbusError(f"{request.id} is a {request.kind.value}, not a request.")


def from_message(msg: Message) -> Step | None:
    """The step ledger message `msg` took, to decide again on another state (None: not a step). A
    release or renew so rebuilt passes over what is no longer held; a request is known by its id."""
    me = msg.sender
    if msg.kind is Kind.CLAIM:
        stated = msg.get("ttl")
        ttl = (
            int(stated)
            if stated and stated.isdigit()
            else int(msg.get("expires") or msg.time + C.DEFAULT_TTL_MS) - msg.time
        )
        return Claim(me, msg.paths, min(max(ttl, C.MIN_TTL_MS), C.MAX_TTL_MS), msg.text)
    if msg.get("dropped"):
        return Note(msg)
    if msg.kind is Kind.RELEASE:
        reason = msg.text or "re-decided at sync"
        return Release(me, msg.paths, force=bool(msg.get("forced")), reason=reason, only_held=True)
    if msg.kind is Kind.RENEW:
        return Renew(me, msg.paths, only_held=True)
    if msg.kind in (Kind.TAKE, Kind.DONE) and msg.reply_to:
        request = Message(msg.reply_to, Kind.REQUEST, msg.to, EVERYONE, msg.text, msg.time, msg.paths)
        return Take(me, request) if msg.kind is Kind.TAKE else Done(me, request, msg.text)
    return None


def redecide(state: View, msg: Message, now: int, lease_now: int | None = None) -> Change | None:
    """Decide ledger message `msg` again on another state, keeping its id; raise if it cannot stand.
    Leases are judged by `lease_now`, the wall clock of the machine deciding again."""
    step = from_message(msg)
    return None if step is None else step.decide(state, now, msg.id, lease_now)


def problem(
    repo: Repository,
    commit: Commit,
    msg: Message,
    now_ms: int | None = None,
    ref: str | None = None,
    root_tree: Oid | None = None,
) -> str | None:
    """Why ledger commit `commit` (whose message is `msg`) is no step its sender may take on its
    parent's state, or None when it is one. Take-overs are judged at the earlier of the step's time
    and `now_ms`, the vouching clone's clock: a step stamped ahead cannot make live claims expire.

    On claim shard `ref`, every entry it changes must be one that shard holds (`ledger.route`), and
    its first commit builds on `root_tree`, the claims the shard carried from the single ledger."""
    if len(commit.parents) > 1:
        return f"a ledger merge by {msg.sender} ({msg.id}): gitbus writes the ledger one step at a time"
    parent_tree: Oid | None = root_tree
    if commit.parents:
        try:
            parent_tree = repo.read_commit(commit.parents[0]).tree
        except GitbusError:
            parent_tree = None
    try:
        diff = repo.tree_diff(parent_tree, commit.tree, MAX_STEP_CHANGES)
    except Unreadable as e:
        return f"a {msg.kind.value} by {msg.sender} whose {str(e).rstrip('.')} ({msg.id})"
    if diff is None:
        return f"a ledger step changing more than {MAX_STEP_CHANGES} entries ({msg.id})"
    lease_now = msg.time if now_ms is None else min(msg.time, now_ms)
    written: list[C.Claim] = []
    for path, old, new in diff:
        if ref is not None and ref != MAIN_LEDGER and route(path) != ref:
            return (
                f"a {msg.kind.value} by {msg.sender} that writes {path}, which {ref} does not hold ({msg.id})"
            )
        why = _entry_problem(repo, msg, path, old, new, lease_now)
        if why is not None:
            return f"a {msg.kind.value} by {msg.sender} that {why} ({msg.id})"
        claim = _claim(repo, new, path) if path.startswith(C.ROOT + "/") and path.endswith("/@") else None
        if claim is not None:
            written.append(claim)
    state = Ledger(repo, commit.tree)
    for claim in written:  # the same rule as `Claim.decide`: no live claim of another overlaps it
        for c in C.overlapping(state, claim.path):
            if c.owner != claim.owner and not c.open_to_others(lease_now):
                return (
                    f"a {msg.kind.value} by {msg.sender} that writes a claim on {claim.path} "
                    f"over {c.owner}'s live claim on {c.path} ({msg.id})"
                )
    return None


def _read(repo: Repository, oid: Oid | None, path: str) -> dict[str, Any] | None:
    if oid is None or repo.object_kind(oid) != "blob":
        return None
    return load_entry(repo, oid, path)


def _claim(repo: Repository, oid: Oid | None, path: str) -> C.Claim | None:
    obj = _read(repo, oid, path)
    if obj is None:
        return None
    try:
        claim = C.Claim.from_json(obj)
    except GitbusError:
        return None
    return claim if path.casefold() == C.slot(claim.path) else None


def _request(repo: Repository, oid: Oid | None, path: str) -> D.RequestState | None:
    obj = _read(repo, oid, path)
    if obj is None:
        return None
    try:
        state = D.RequestState.from_json(obj)
    except GitbusError:
        return None
    return state if path == D.slot(state.request) else None


def _entry_problem(
    repo: Repository, msg: Message, path: str, old: Oid | None, new: Oid | None, lease_now: int
) -> str | None:
    """Why this one changed entry is not the step's to change, or None."""
    if path.startswith(C.ROOT + "/") and path.endswith("/@"):
        before, after = _claim(repo, old, path), _claim(repo, new, path)
        if new is not None and after is None:
            return f"writes an entry at {path} that is no claim in its slot"
        if after is not None and path != C.slot(after.path):
            # gitbus writes a claim in its folded slot; only a claim an older gitbus wrote in its
            # spelling's slot is renewed where it stands
            renewed = before is not None and before.owner == after.owner
            renewed = renewed and before is not None and C.same_path(before.path, after.path)
            if not renewed or msg.kind is not Kind.RENEW:
                return f"writes a claim on {after.path} at {path}, not in its slot {C.slot(after.path)}"
        return _claim_change(msg, before, after, lease_now)  # an unreadable entry holds no claim
    if path.startswith("requests/"):
        was, now = _request(repo, old, path), _request(repo, new, path)
        if new is not None and now is None:
            return f"writes an entry at {path} that is no request state in its slot"
        return _request_change(msg, was, now)
    return None if new is None else f"writes {path}, outside claims/ and requests/"


def _claim_change(msg: Message, before: C.Claim | None, after: C.Claim | None, lease_now: int) -> str | None:
    me, kind = msg.sender, msg.kind
    if after is not None:
        if kind not in (Kind.CLAIM, Kind.RENEW) or msg.get("dropped"):
            return f"writes the claim on {after.path}"
        if after.owner != me:
            return f"writes a claim on {after.path} in {after.owner}'s name"
        if not any(C.same_path(after.path, p) for p in msg.paths):
            return f"writes a claim on {after.path}, a path it does not name"
        if kind is Kind.RENEW and (before is None or before.owner != me):
            return f"renews a claim on {after.path} it did not hold"
    if before is not None and before.owner != me:
        if after is not None and kind is Kind.RENEW:
            return f"renews {before.owner}'s claim on {before.path}"
        forced = f"{before.owner} {before.path}" in {v for k, v in msg.meta if k == "forced"}
        if kind is Kind.RELEASE and forced and not msg.get("dropped"):
            # as `Release.decide`: a forced release records its reason for the owner
            if msg.text.strip():
                return None
            return f"force-releases {before.owner}'s claim on {before.path} giving no reason"
        if kind is Kind.CLAIM and not msg.get("dropped") and before.open_to_others(lease_now):
            return None
        return f"removes {before.owner}'s claim on {before.path}"
    if before is not None and after is None and kind not in (Kind.CLAIM, Kind.RELEASE):
        return f"removes the claim on {before.path}"
    return None


def _request_change(msg: Message, was: D.RequestState | None, now: D.RequestState | None) -> str | None:
    me = msg.sender
    if now is None:
        return f"removes the state of request {was.request}" if was is not None else None
    if now.request != msg.reply_to or now.taker != me:
        return f"writes request {now.request} as taken by {now.taker}"
    if msg.kind is Kind.TAKE and was is None and now.done_at is None:
        return None
    if msg.kind is Kind.DONE and was is not None and was.taker == me and was.done_at is None:
        return None if now.done_at is not None and now.taken_at == was.taken_at else "rewrites its request"
    return f"changes the state of request {now.request}"
