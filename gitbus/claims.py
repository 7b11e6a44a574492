"""Claims: leases on files and directories, as the ledger holds them (the steps that change them,
`Claim`, `Release`, `Renew`, are in `gitbus.steps`).

A claim lives at `claims/_<c1>/_<c2>/…/@` in the ledger tree, one level per path component, case-folded
(the `_` prefix keeps names like `.gitmodules` from meaning anything to `git fsck`). Claims compare
case-insensitively on every clone, whatever its `core.ignorecase`: two clones that differ there must
never both hold `Docs/` and `docs/readme.md`. A ledger written before slots were always folded may
hold a claim in its spelling's slot; readers look there too, and writers remove it from where it is.
So the claims that overlap a path are exactly the `@` blobs on its ancestors plus those below it: a
check costs the path's depth plus its subtree, not the number of claims. Invariant kept by every grant: no two
entries of different owners overlap (an expired one is removed when another agent takes its place).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from gitbus import paths as P
from gitbus.clock import hhmm, sane, span
from gitbus.errors import ClaimConflict, GitbusError
from gitbus.ids import AgentName, MessageId, agent_name
from gitbus.ledger import View as Ledger
from gitbus.message import Kind, clean_text, full_id, quote

DEFAULT_TTL_MS = 30 * 60_000
MIN_TTL_MS = 1000
MAX_TTL_MS = 7 * 24 * 3_600_000
# Another agent takes an expired claim over only once it is this much past its expiry: two machines'
# clocks may disagree by a little, and the owner's clock may still say the lease is live.
SKEW_MARGIN_MS = 30_000
ROOT = "claims"


@dataclass(frozen=True)
class Claim:
    path: str
    owner: AgentName
    reason: str
    claimed_at: int
    expires_at: int
    ttl_ms: int
    id: MessageId
    stored_at: str = field(default="", compare=False)  # its ledger slot, when read from one

    @property
    def where(self) -> str:
        """The slot this claim occupies: where it was read, else where it is written."""
        return self.stored_at or slot(self.path)

    def live(self, now: int) -> bool:
        return self.expires_at > now

    def open_to_others(self, now: int) -> bool:
        """True once another agent may take this claim over: expired by more than the skew margin."""
        return self.expires_at + SKEW_MARGIN_MS <= now

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "owner": self.owner,
            "reason": self.reason,
            "claimed_at": self.claimed_at,
            "expires_at": self.expires_at,
            "ttl_ms": self.ttl_ms,
            "id": self.id,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Claim:
        """A claim from its ledger entry, held to the rules gitbus writes by (docs/format.md, Claims);
        raises `GitbusError` naming what is wrong, and the readers skip such an entry."""
        try:
            path, owner, reason, mid = (_str(obj, k) for k in ("path", "owner", "reason", "id"))
            ttl = obj.get("ttl_ms", DEFAULT_TTL_MS)
            claim = cls(
                path=P.canonical(path),
                owner=agent_name(owner),
                reason=clean_text(reason, Kind.CLAIM),
                claimed_at=_time(obj, "claimed_at"),
                expires_at=_time(obj, "expires_at"),
                ttl_ms=ttl if type(ttl) is int and MIN_TTL_MS <= ttl <= MAX_TTL_MS else -1,
                id=MessageId(full_id(mid)),
            )
        except KeyError as e:
            raise GitbusError(f"A claim entry lacks {e}.") from None
        if claim.ttl_ms < 0:
            raise GitbusError("A claim entry has a lease outside 1s-7d.")
        if claim.reason != reason:
            raise GitbusError("A claim entry's reason is not as gitbus writes it.")
        return claim

    def describe(self, now: int) -> str:
        """`api-1 holds internal/api/ until 14:20 (12m left) (reason: "splitting handlers")`."""
        when = (
            f"until {hhmm(self.expires_at)} ({span(self.expires_at - now)} left)"
            if self.live(now)
            else f"expired at {hhmm(self.expires_at)}"
        )
        # The reason is a peer's words: quoted, so it reads as data wherever it is shown.
        return f"{self.owner} holds {self.path} {when}" + (
            f" (reason: {quote(self.reason)})" if self.reason else ""
        )


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise GitbusError(f"A ledger entry's {key} is not a string.")
    return value


def _time(obj: dict[str, Any], key: str) -> int:
    value = obj[key]
    if type(value) is not int or not sane(value):
        raise GitbusError(f"A ledger entry's {key} is not a time gitbus takes.")
    return value


def read_claim(ledger: Ledger, where: str, obj: dict[str, Any]) -> Claim | None:
    """The claim stored at `where`, or None when the entry breaks the rules or does not sit in its
    path's slot (skipped, and counted in `repo.skipped`)."""
    try:
        claim = Claim.from_json(obj)
    except GitbusError as e:
        ledger.repo.skipped[where] = str(e)
        return None
    if where.casefold() != slot(claim.path):
        ledger.repo.skipped[where] = f"the claim on {claim.path} is not in its slot"
        return None
    return replace(claim, stored_at=where)


def check_ttl(ttl_ms: int) -> None:
    if not MIN_TTL_MS <= ttl_ms <= MAX_TTL_MS:
        raise GitbusError(f"A lease must be between 1s and {MAX_TTL_MS // 86_400_000}d.")


def _slot_dir(path: str) -> str:
    return ROOT + "/" + "/".join("_" + c for c in P.key(path, True))


def slot(path: str) -> str:
    """Where the claim on `path` is written: its components case-folded."""
    return _slot_dir(path) + "/@"


def same_path(a: str, b: str) -> bool:
    """True when `a` and `b` are one claim's path (one slot): equal but for case and a trailing `/`."""
    return P.key(a, True) == P.key(b, True)


@lru_cache(maxsize=64)
def _by_fold(names: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """A folder's names by their case-folded form (remembered: a folder of thousands of claims is
    looked into by every decision below it, and folding every name each time cost more than git)."""
    out: dict[str, list[str]] = {}
    for n in names:
        out.setdefault(n.casefold(), []).append(n)
    return {k: tuple(v) for k, v in out.items()}


def _spellings(names: list[str], want: str) -> list[str] | tuple[str, ...]:
    """The names among `names` that fold to `want` (itself folded). When every name is folded, as
    gitbus writes them, that is `want` alone, found without folding name by name (a casefold that
    changes nothing changes no character); else by `_by_fold`."""
    joined = "/".join(names)
    if joined == joined.casefold():
        return [want] if want in names else []
    return _by_fold(tuple(names)).get(want, ())


def _folders_along(ledger: Ledger, path: str) -> list[list[str]]:
    """For each depth of `path`, the ledger folders that stand for it in any case: the folded one
    gitbus writes, and any other spelling a gitbus that folded only with `core.ignorecase` wrote."""
    levels: list[list[str]] = []
    current = [ROOT]
    for comp in P.key(path, True):
        want = "_" + comp
        if current == [ROOT]:  # the top folder: only the ledger that holds it is read
            current = [f"{ROOT}/{n}" for n in _spellings(ledger.top_folders(want), want)]
        else:
            current = [f"{d}/{n}" for d in current for n in _spellings(ledger.folders(d), want)]
        if not current:
            break
        levels.append(current)
    return levels


def held_at(ledger: Ledger, path: str) -> Claim | None:
    """The claim whose path is `path` (any case), wherever its slot is."""
    levels = _folders_along(ledger, path)
    if len(levels) < len(P.key(path, True)):
        return None
    for folder in levels[-1]:
        obj = ledger.read(folder + "/@")
        claim = read_claim(ledger, folder + "/@", obj) if obj is not None else None
        if claim is not None:
            return claim
    return None


def claims_at(ledger: Ledger, path: str) -> list[Claim]:
    """Every claim whose path is `path` (any case), in whichever slot it is: reads only that slot
    and its older spellings, never the whole ledger."""
    levels = _folders_along(ledger, path)
    if len(levels) < len(P.key(path, True)):
        return []
    found = []
    for folder in levels[-1]:
        obj = ledger.read(folder + "/@")
        claim = read_claim(ledger, folder + "/@", obj) if obj is not None else None
        if claim is not None:
            found.append(claim)
    return found


def all_claims(ledger: Ledger) -> list[Claim]:
    """Every claim in the ledger that reads as one (see `read_claim`), by path."""
    found = (read_claim(ledger, where, obj) for where, obj in ledger.below(ROOT) if where.endswith("/@"))
    return sorted((c for c in found if c is not None), key=lambda c: c.path)


def overlapping(ledger: Ledger, path: str) -> list[Claim]:
    """Claims on `path`, on any directory above it, and on anything below it, in any case."""
    found: list[Claim] = []
    levels = _folders_along(ledger, path)
    for folders in levels:
        for folder in folders:
            obj = ledger.read(folder + "/@")
            claim = read_claim(ledger, folder + "/@", obj) if obj is not None else None
            if claim is not None:
                found.append(claim)
    if len(levels) == len(P.key(path, True)):
        for folder in levels[-1]:
            for sub, obj in ledger.below(folder):
                if sub != folder + "/@" and sub.endswith("/@"):
                    claim = read_claim(ledger, sub, obj)
                    if claim is not None:
                        found.append(claim)
    return found


def conflict_error(claim: Claim, wanted: str, now: int) -> ClaimConflict:
    grace = (
        ""
        if claim.live(now)
        else f"; it can be taken over {span(claim.expires_at + SKEW_MARGIN_MS - now)} from now "
        f"({SKEW_MARGIN_MS // 1000}s past its expiry, a margin for clock skew)"
    )
    return ClaimConflict(
        f"{wanted} is refused: {claim.describe(now)}{grace}. "
        f'Ask them with: gitbus ask --to {claim.owner} "…"',
        holder=claim.owner,
        held_path=claim.path,
        reason=claim.reason,
        expires_at=claim.expires_at,
    )
