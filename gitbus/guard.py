"""The guards: may this agent edit or commit these paths, given the other agents' live claims?

The edit guard runs before every Write/Edit of a Claude Code session, so it reads claims from a
snapshot keyed by the ledger tip (`<common>/gitbus/cache/claims.json`): while the ledger has not
moved, no libgit2 is loaded. A stale snapshot is never used: its key is the exact ledger commit.

It fails closed: when the ledger cannot be read (a ledger ref at no commit, a repository git cannot
open) the snapshot says so (`blind`) and the faces refuse every edit and commit with that reason; when
the cache cannot be written (a full or read-only disk) it decides from the ledger all the same and
says why (`note`). Neither waits nor leaves a temp file behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gitbus import paths as P
from gitbus.claims import Claim
from gitbus.errors import Conflict, GitbusError
from gitbus.gitfiles import read_refs
from gitbus.ids import LEDGER_REF, AgentName
from gitbus.inert import inert
from gitbus.state import claims_cache, write_atomic


@dataclass(frozen=True)
class Snapshot:
    """All claims in the ledger at commit `ledger` (None: no ledger yet)."""

    ledger: str | None
    ignorecase: bool
    claims: tuple[Claim, ...]
    blind: str | None = None  # why the claims could not be read: the guard then refuses everything
    note: str | None = None  # why the decision was made without the cache (it could not be written)

    def blocking(self, me: AgentName, path: str, now: int) -> list[Claim]:
        """Live claims of other agents overlapping `path`."""
        return [
            c
            for c in self.claims
            if c.owner != me and c.live(now) and P.overlaps(c.path, path, ignorecase=True)
        ]

    def mine_covering(self, me: AgentName, path: str) -> list[Claim]:
        """My claims (live or lapsed but still mine) at or above `path`."""
        return [c for c in self.claims if c.owner == me and P.covers(c.path, path, ignorecase=True)]


def ledger_tip(common_dir: Path) -> str | None:
    return read_refs(common_dir, LEDGER_REF).get(LEDGER_REF)


def cached(common_dir: Path) -> Snapshot | None:
    """The snapshot, if it was taken at the current ledger tip."""
    tip = ledger_tip(common_dir)
    try:
        obj: dict[str, Any] = json.loads(claims_cache(common_dir).read_text())
        if obj.get("ledger") != tip:
            return None
        return Snapshot(tip, bool(obj["ignorecase"]), tuple(Claim.from_json(c) for c in obj["claims"]))
    except (OSError, ValueError, KeyError, TypeError, GitbusError):
        return None


def store(common_dir: Path, snap: Snapshot) -> None:
    """Cache `snap`; a `GitbusError` in one sentence when the disk refuses (no temp file left)."""
    obj = {"ledger": snap.ledger, "ignorecase": snap.ignorecase, "claims": [c.to_json() for c in snap.claims]}
    write_atomic(claims_cache(common_dir), json.dumps(obj), prefix=".claims-")


def snapshot(root: Path, common_dir: Path) -> Snapshot:
    """The claims now: from the snapshot if current, else read from the ledger and cached. Never
    raises: what goes wrong is in `blind` or `note`."""
    snap = cached(common_dir)
    if snap is not None:
        return snap
    from gitbus import ledger
    from gitbus.claims import all_claims
    from gitbus.git import Repository

    try:
        repo = Repository.open(root)
        # Read the tip once and key the snapshot by exactly what was read.
        tip = repo.ref(LEDGER_REF)
        if not ledger.readable(repo):
            kind = repo.object_kind(tip) if tip else None
            return Snapshot(tip, True, (), blind=f"{LEDGER_REF} points at a {kind or 'missing object'}")
        state = ledger.Ledger(repo, ledger.tree_of(repo, tip))
        snap = Snapshot(tip, repo.ignorecase, tuple(all_claims(state)))
    except (GitbusError, OSError) as e:
        return Snapshot(None, True, (), blind=str(e).rstrip("."))
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
    snap = snapshot(root, common_dir)
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
