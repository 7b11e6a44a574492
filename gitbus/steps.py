"""Ledger steps: what each kind of step does, a value whose `decide` returns the change it makes.

A step is an immutable value naming what an agent asks of the ledger: `Claim`, `Release`, `Renew`,
`Take`, `Done`, or the `Note` sync writes to tell an agent its offline step was dropped. Its
`decide(state, time, id)` returns the `Change` that does it on that ledger state, or None when there is
nothing to do, or raises to refuse; `ledger_cas.transact` calls it again on the winner's state after a
lost race. `Bus` builds steps from what the user asked; sync rebuilds them from their messages
(`from_message`) to decide offline steps again on the remote's state (`redecide`).

The trade-off: a step is decided, never replayed, so what a step taken in from a peer may have changed
is judged apart, by rules on what it changed (`gitbus.step_rules`), and a legitimate step decided on
another clock passes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

from gitbus import claims as C
from gitbus import delegation as D
from gitbus.clock import hhmm
from gitbus.errors import Conflict, GitbusError, NotFound
from gitbus.ids import EVERYONE, MAIN_LEDGER, AgentName, MessageId
from gitbus.ledger import View
from gitbus.ledger_cas import Change
from gitbus.ledger_shards import shard_of_path
from gitbus.message import Kind, Message


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
