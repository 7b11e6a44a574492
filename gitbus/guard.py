"""The guards: may this agent edit or commit these paths, given the other agents' live claims?

The edit guard runs before every Write/Edit of a Claude Code session, so it decides from the claims
index (`gitbus.claimsindex`), keyed by the ledger tips. A stale index is never used for a decision: a
path's claims all lie on its top folder's shard, so the index decides a path only while that shard and
`refs/bus/ledger` are what it was taken at (two refs read, however many shards), and no libgit2 is
loaded then.

It fails closed: when the ledger cannot be read (a ledger ref at no commit, a repository git cannot
open) the snapshot says so (`blind`) and the faces refuse every edit and commit with that reason; when
the cache cannot be written (a full or read-only disk) it decides from the ledger all the same and
says why (`note`). Neither waits nor leaves a temp file behind. An index line that does not read back
(a damaged cache) is never guessed at: the index is read again from the ledger at the same tip.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from gitbus.claims import Claim
from gitbus.claimsindex import (
    EMPTY,
    Damaged,
    Index,
    Loaded,
    key_refs,
    ledger_tip,
    line,
    load,
    parse_index,
    render,
    tips_of,
    updated,
)
from gitbus.errors import Conflict, GitbusError
from gitbus.gitfiles import read_refs
from gitbus.ids import BUS_PREFIX, LEDGER_REF, AgentName
from gitbus.inert import inert
from gitbus.state import claims_cache, write_atomic


@dataclass(frozen=True)
class Snapshot:
    """The claims in the ledger at commit `ledger` (None: no ledger yet), looked up by path."""

    ledger: str | None
    ignorecase: bool
    index: Index
    blind: str | None = None  # why the claims could not be read: the guard then refuses everything
    note: str | None = None  # why the decision was made without the cache (it could not be written)
    root: Path | None = None  # the worktree, to read the index again should a line of it be damaged

    def _lookup(self, path: str, below: bool) -> list[Claim]:
        try:
            return self.index.overlapping(path) if below else self.index.covering(path)
        except Damaged:
            if self.root is None:
                raise
        try:
            fresh = from_ledger(self.root, self.ledger, None)  # a damaged cache is never guessed at
        except Exception as e:  # the caller refuses the edit on this error
            raise GitbusError(f"gitbus could not read the claims ({type(e).__name__}).") from None
        if fresh.blind is not None:
            raise GitbusError(f"gitbus could not read the claims ({inert(fresh.blind)}).")
        common = _common_dir(self.root)
        if common is not None:
            with contextlib.suppress(GitbusError):
                store(common, fresh)
        return fresh.index.overlapping(path) if below else fresh.index.covering(path)

    def blocking(self, me: AgentName, path: str, now: int) -> list[Claim]:
        """Live claims of other agents overlapping `path`."""
        return [c for c in self._lookup(path, True) if c.owner != me and c.live(now)]

    def mine_covering(self, me: AgentName, path: str) -> list[Claim]:
        """My claims (live or lapsed but still mine) at or above `path`."""
        return [c for c in self._lookup(path, False) if c.owner == me]


def _common_dir(root: Path) -> Path | None:
    from gitbus.gitfiles import locate

    loc = locate(root)
    return loc.common_dir if loc is not None else None


def cached(common_dir: Path, root: Path | None = None, paths: Iterable[str] | None = None) -> Snapshot | None:
    """The snapshot, if the index was taken at the current ledgers. With `paths`, current for those
    paths: the claims that overlap a path are all on its top folder's shard, so only that shard and
    `refs/bus/ledger` (the claims it carries) must still be what the index was taken at, and a check
    reads two refs however many shards there are."""
    found = load(common_dir)
    if found is None:
        return None
    if paths is None:
        return (
            Snapshot(found[0], found[1], found[2], root=root) if found[0] == ledger_tip(common_dir) else None
        )
    from gitbus.ledger_shards import shard_of_path

    taken = key_refs(found[0])
    if taken is None:
        return None  # an index an older gitbus keyed by one ledger commit, or a damaged header
    for ref in {LEDGER_REF, *(shard_of_path(p) for p in paths)}:
        damaged: dict[str, str] = {}
        if read_refs(common_dir, ref, damaged).get(ref) != taken.get(ref[len(BUS_PREFIX) :]) or damaged:
            return None  # read again: a damaged ledger ref makes the guard blind
    return Snapshot(found[0], found[1], found[2], root=root)


def store(common_dir: Path, snap: Snapshot) -> None:
    """Cache `snap`; a `GitbusError` in one sentence when the disk refuses (no temp file left)."""
    data = snap.index.data
    write_atomic(claims_cache(common_dir), bytes(data), prefix=".claims-")


def from_ledger(root: Path, tip: str | None, before: Loaded | None) -> Snapshot:
    """The snapshot at the ledgers index key `tip` names, brought up from `before` (an index at an
    earlier key) when git can diff the states, else read whole. Raises what reading the ledger raises."""
    from gitbus import ledger_state
    from gitbus.git import Repository

    repo = Repository.open(root)
    tips = tips_of(repo, tip)
    for ref, oid in tips.refs.items():
        if repo.object_kind(oid) != "commit":
            kind = repo.object_kind(oid)
            return Snapshot(tip, True, EMPTY, blind=f"{ref} points at a {kind or 'missing object'}")
    if tips.broken is not None:
        return Snapshot(tip, True, EMPTY, blind=tips.broken)
    if not tips.moved and tips.old is not None and repo.object_kind(tips.old) != "commit":
        return Snapshot(tip, True, EMPTY, blind=f"{LEDGER_REF} points at no commit")
    state = ledger_state.State(repo, tips)
    lines = updated(repo, state, before) if before is not None else None
    if lines is None:
        from gitbus.claims import all_claims

        lines = [line(c) for c in all_claims(state)]
    data = render(tip, repo.ignorecase, lines)
    return Snapshot(tip, repo.ignorecase, parse_index(data)[2], root=root)


def snapshot(root: Path, common_dir: Path, paths: Iterable[str] | None = None) -> Snapshot:
    """The claims now (for `paths`, when given: see `cached`): from the index if current, else read
    from the ledgers (from the index of earlier tips when there is one) and cached. Never raises:
    what goes wrong is in `blind` or `note`."""
    try:
        snap = cached(common_dir, root, paths)
    except Exception:  # a cache that does not read as one is read again from the ledgers, never trusted
        snap = None
    if snap is not None:
        return snap
    try:
        # Read the tip once and key the snapshot by exactly what was read.
        snap = from_ledger(root, ledger_tip(common_dir), load(common_dir))
    except (GitbusError, OSError) as e:
        return Snapshot(None, True, EMPTY, blind=str(e).rstrip("."))
    except Exception as e:  # whatever a peer's ledger breaks, the guard stays closed
        return Snapshot(None, True, EMPTY, blind=f"reading the ledger failed ({type(e).__name__})")
    if snap.blind is not None:
        return snap
    try:
        store(common_dir, snap)
    except GitbusError as e:
        return replace(snap, note=f"{e.message.rstrip('.')}; the guard read the ledger itself")
    return snap


def blind_denial(snap: Snapshot, path: str) -> str:
    """One sentence refusing an edit or commit of `path` because the claims could not be read."""
    return (
        f"{path} may be inside a claim of another agent: gitbus could not read the claims "
        f"({inert(snap.blind or 'unknown')}), so it refuses edits until it can. See gitbus status."
    )


class GuardBlind(Conflict):
    """The commit guard could not read the claims, so it refuses the commit (exit 3)."""


def denial(blocking: list[Claim], path: str, now: int) -> str:
    """One sentence naming the holder, the claim, its expiry and how to reach them (the claim's
    strings come from the ledger: inert and capped, as every peer string shown to a model)."""
    from gitbus.delivery import claim_fact, name
    from gitbus.inert import quoted_path

    c = blocking[0]
    return (
        f"{quoted_path(path)} is inside a claim of another agent: {claim_fact(c, now)}. "
        f'To coordinate, ask them: gitbus ask --to {name(c.owner)} "…"'
    )


def conflicts(
    root: Path, common_dir: Path, me: AgentName, rel_paths: list[str], now: int
) -> list[tuple[str, Claim]]:
    """For each path inside another agent's live claim, the path and that claim."""
    snap = snapshot(root, common_dir, rel_paths)
    if snap.blind is not None and rel_paths:
        raise GuardBlind(
            blind_denial(snap, rel_paths[0])
            + " Commit refused (bypass: GITBUS_NO_GUARD=1 git commit …, or --no-verify)."
        )
    out: list[tuple[str, Claim]] = []
    for p in rel_paths:
        hit = snap.blocking(me, p, now)
        if hit:
            out.append((p, hit[0]))
    return out
