"""What a ledger step may do: the rules every ledger commit sync takes in must keep (`problem`).

The ledger's state is its tip's tree, and anyone with push access to the remote can write a tree.
So a ledger commit sync takes in must be a step gitbus could have written: one parent (gitbus
writes no ledger merge), and a tree that differs from its parent's only in ways the step its message
names, by the agent it names, may change it. A claim adds or refreshes entries owned by its sender on
the paths it names, in their folded slots, overlapping no other agent's live claim, and removes only
its sender's own entries or others' that were open to take-over (expired past the skew margin) at
the earlier of its time and the checking clone's clock; a release removes its sender's entries
(another's only when it records the release as forced, with a reason); a
renew changes only its sender's entries, which stay its; a take writes the request's entry for its
sender, of a request it may take (below); a done marks done a request its sender took; anything
else changes nothing. An entry that does not read as a claim or request holds nothing: a step may
remove or replace it, never write one.
Rules, not a replay: a step is judged by what it changed, so a legitimate step decided on another
clock passes (`gitbus.steps` decides the steps themselves).

A take is held to what `Take.decide` refuses: the message it names (`find_request`) must be a
`request`, by the sender the take names, addressed to everyone or to the taker, and taken no earlier
than it was made. A request no chain on this clone holds, even after the fetch being vouched for,
cannot be judged, and the take is taken as the other rules allow: refusing it would let this clone's
next step on the main ledger replace it, erasing a take that may be honest (a request made on the
taker's own clone whose chain was not pushed yet, or one an online step's ledger-only fetch did not
bring).

A step changes at most `MAX_STEP_CHANGES` entries, and the diff stops reading there: a tree of
millions of entries is refused after reading that many, never read whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from gitbus import claims as C
from gitbus import delegation as D
from gitbus.errors import GitbusError, Unreadable
from gitbus.gitfiles import Commit, Oid
from gitbus.ids import EVERYONE, MAIN_LEDGER, AgentName, MessageId
from gitbus.ledger import Ledger, load_entry
from gitbus.ledger_shards import route
from gitbus.message import Kind, Message

if TYPE_CHECKING:
    from gitbus.git import Repository

# A claim names at most `message.MAX_PATHS` paths, and may take over the expired claims below each.
MAX_STEP_CHANGES = 20_000


class Made(NamedTuple):
    """What the take rules read of the message a take names."""

    id: MessageId
    kind: Kind
    sender: AgentName
    to: AgentName
    time: int

    @classmethod
    def of(cls, m: Message) -> Made:
        return cls(m.id, m.kind, m.sender, m.to, m.time)


# (the sender a take names, the request's id) -> that message, or None: no chain holds it
FindRequest = Callable[[str | None, MessageId], "Made | None"]  # sender None: its first carrier anywhere


def problem(
    repo: Repository,
    commit: Commit,
    msg: Message,
    now_ms: int | None = None,
    ref: str | None = None,
    root_tree: Oid | None = None,
    find_request: FindRequest | None = None,
) -> str | None:
    """Why ledger commit `commit` (whose message is `msg`) is no step its sender may take on its
    parent's state, or None when it is one. Take-overs are judged at the earlier of the step's time
    and `now_ms`, the vouching clone's clock: a step stamped ahead cannot make live claims expire.

    On claim shard `ref`, every entry it changes must be one that shard holds (`ledger_shards.route`), and
    its first commit builds on `root_tree`, the claims the shard carried from the single ledger.
    `find_request` looks up the request a take names (`request_lookup.RequestLookup`); without it,
    a take is not held to its request."""
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
        why = _entry_problem(repo, msg, path, old, new, lease_now, find_request)
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
    repo: Repository,
    msg: Message,
    path: str,
    old: Oid | None,
    new: Oid | None,
    lease_now: int,
    find_request: FindRequest | None = None,
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
        why = _request_change(msg, was, now)
        if why is None and msg.kind is Kind.TAKE and now is not None and find_request is not None:
            return _take_problem(msg, now, find_request)
        return why
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


def _take_problem(msg: Message, now: D.RequestState, find_request: FindRequest) -> str | None:
    """Why take `msg`, which writes `now`, takes what `Take.decide` would not let it, or None (also
    when no chain on this clone holds the request: see the module's docstring)."""
    r = find_request(msg.to, now.request)
    if r is None:
        return None
    why = _against(msg, now, r)
    first = find_request(None, now.request) if why is not None else None
    if first is not None and first != r:
        # Readers take an id's first carrier (`Reading.find`); the sender's chain, walked newest
        # first, may have shown a later copy a peer appended: the take is judged by the first.
        return _against(msg, now, first)
    return why


def _against(msg: Message, now: D.RequestState, r: Made) -> str | None:
    """Why take `msg` may not take request `r` as `now` says it does, or None."""
    if r.kind is not Kind.REQUEST:
        return f"takes {r.id}, which is a {r.kind.value}, not a request"
    if r.sender != msg.to:
        return f"takes request {r.id} of {r.sender}, naming {msg.to} as its sender"
    if r.to not in (EVERYONE, msg.sender):
        return f"takes request {r.id}, which is addressed to {r.to}, not to {msg.sender}"
    if now.taken_at < r.time:
        return f"takes request {r.id} at {now.taken_at}, before it was made at {r.time}"
    return None
