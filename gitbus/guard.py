"""The guards: may this agent edit or commit these paths, given the other agents' live claims?

The edit guard runs before every Write/Edit of a Claude Code session, so it reads claims from a
snapshot keyed by the ledger tip (`<common>/gitbus/cache/claims.json`): while the ledger has not
moved, no libgit2 is loaded. A stale snapshot is never used: its key is the exact ledger commit.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitbus import paths as P
from gitbus.claims import Claim
from gitbus.gitfiles import read_refs
from gitbus.ids import LEDGER_REF, AgentName


@dataclass(frozen=True)
class Snapshot:
    """All claims in the ledger at commit `ledger` (None: no ledger yet)."""

    ledger: str | None
    ignorecase: bool
    claims: tuple[Claim, ...]

    def blocking(self, me: AgentName, path: str, now: int) -> list[Claim]:
        """Live claims of other agents overlapping `path`."""
        return [
            c
            for c in self.claims
            if c.owner != me and c.live(now) and P.overlaps(c.path, path, self.ignorecase)
        ]

    def mine_covering(self, me: AgentName, path: str) -> list[Claim]:
        """My claims (live or lapsed but still mine) at or above `path`."""
        return [c for c in self.claims if c.owner == me and P.covers(c.path, path, self.ignorecase)]


def _file(common_dir: Path) -> Path:
    return common_dir / "gitbus" / "cache" / "claims.json"


def ledger_tip(common_dir: Path) -> str | None:
    return read_refs(common_dir, LEDGER_REF).get(LEDGER_REF)


def cached(common_dir: Path) -> Snapshot | None:
    """The snapshot, if it was taken at the current ledger tip."""
    tip = ledger_tip(common_dir)
    try:
        obj: dict[str, Any] = json.loads(_file(common_dir).read_text())
        if obj.get("ledger") != tip:
            return None
        return Snapshot(tip, bool(obj["ignorecase"]), tuple(Claim.from_json(c) for c in obj["claims"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store(common_dir: Path, snap: Snapshot) -> None:
    f = _file(common_dir)
    f.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=f.parent, prefix=".claims-")
    with os.fdopen(fd, "w") as out:
        json.dump(
            {
                "ledger": snap.ledger,
                "ignorecase": snap.ignorecase,
                "claims": [c.to_json() for c in snap.claims],
            },
            out,
        )
    os.replace(tmp, f)


def snapshot(root: Path, common_dir: Path) -> Snapshot:
    """The claims now: from the snapshot if current, else read from the ledger and cached."""
    snap = cached(common_dir)
    if snap is not None:
        return snap
    from gitbus import ledger
    from gitbus.claims import all_claims
    from gitbus.git import Repository

    repo = Repository.open(root)
    # Read the tip once and key the snapshot by exactly what was read.
    tip = repo.ref(LEDGER_REF)
    state = ledger.Ledger(repo, repo.read_commit(tip).tree if tip else None)
    snap = Snapshot(tip, repo.ignorecase, tuple(all_claims(state)))
    store(common_dir, snap)
    return snap


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
    out: list[tuple[str, Claim]] = []
    for p in rel_paths:
        hit = snap.blocking(me, p, now)
        if hit:
            out.append((p, hit[0]))
    return out
