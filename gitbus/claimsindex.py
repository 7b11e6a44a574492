"""The claims index: every claim of the ledgers in one sorted file, so a path's claims cost its depth.

The index (`<common>/gitbus/cache/claims.idx`) is keyed by the ledger tips: every ledger ref and its
commit (`ledger_tip`), read from git's files without libgit2. A check costs the path's depth, not the
number of claims (issue 16): the index is a sorted text file, one line per claim,
`<folded key>\t<path>\t<slot>\t<claim JSON>`, where the key is the claim's path case-folded with a `/`
after every component. The claims that overlap a path are then the lines whose key is one of the
path's ancestors (one binary search each, on the mapped file) and the run of lines whose key starts
with the path's own key (the claims below it); nothing is parsed but the lines a lookup returns.

The trade-off: a file to keep current instead of the ledger read at each check. When a ledger moves,
the index is brought up to the new tips from the ones before through the tree diff of each ledger that
moved (git opens only the folders that changed), or read whole when that cannot be told. A line that
does not read back as gitbus wrote it raises `Damaged`: the index is never guessed at.
"""

from __future__ import annotations

import bisect
import mmap
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from gitbus import paths as P
from gitbus.claims import Claim
from gitbus.errors import GitbusError
from gitbus.gitfiles import PACKED, DamagedRef, read_refs
from gitbus.ids import BUS_PREFIX, LEDGER_REF, LEDGERS_PREFIX, MAIN_LEDGER, is_ledger
from gitbus.state import claims_cache

if TYPE_CHECKING:
    from gitbus.git import Repository
    from gitbus.ledger_state import State, Tips

MAGIC = b"gitbus claims index 1"
MAX_INDEX_CHANGES = 20_000  # entries a tree diff may bring in before the index is read whole instead


class Damaged(GitbusError):
    """An index line that does not read back as gitbus wrote it."""


def key_of(path: str) -> bytes:
    """A path's index key: its components case-folded, each followed by `/` (so a key's prefixes
    are exactly its ancestors' keys)."""
    return "".join(c + "/" for c in P.key(path, True)).encode()


def line(c: Claim) -> bytes:
    import json

    return b"\t".join((key_of(c.path), c.path.encode(), c.where.encode(), json.dumps(c.to_json()).encode()))


class Index:
    """The claims of one ledger state, sorted by key (bytes: `line`s, one per line, after the header).
    Lookups binary-search the buffer (a mapped file, or the bytes just built): nothing is parsed but
    the lines a lookup returns."""

    def __init__(self, data: bytes | mmap.mmap, start: int) -> None:
        self.data, self.start = data, start

    def _key_at(self, pos: int) -> tuple[bytes, int]:
        """The key of the line starting at `pos`, and where the next line starts."""
        end = self.data.find(b"\n", pos)
        if end < 0:
            raise Damaged("The claims index ends inside a line.")
        tab = self.data.find(b"\t", pos, end)
        if tab < 0:
            raise Damaged("A claims index line has no key.")
        return self.data[pos:tab], end + 1

    def _first(self, key: bytes) -> int:
        """Where the first line whose key is at least `key` starts."""
        lo, hi = self.start, len(self.data)
        while lo < hi:
            mid = (lo + hi) // 2
            pos = max(self.data.rfind(b"\n", self.start, mid) + 1, self.start)  # its line's start
            k, nxt = self._key_at(pos)
            if k < key:
                lo = nxt
            else:
                hi = pos
        return lo

    def _run(self, key: bytes, below: bool) -> list[Claim]:
        """The claims whose key is `key` (and with `below`, every key under it)."""
        import json

        out: list[Claim] = []
        pos = self._first(key)
        while pos < len(self.data):
            k, nxt = self._key_at(pos)
            if not (k == key or (below and k.startswith(key))):
                break
            try:
                _, path, where, obj = bytes(self.data[pos : nxt - 1]).split(b"\t", 3)
                claim = Claim.from_json(json.loads(obj))
            except (ValueError, RecursionError, GitbusError):
                raise Damaged("A claims index line does not read back as a claim.") from None
            if key_of(claim.path) != k or claim.path.encode() != path:
                raise Damaged("A claims index line is not under its claim's key.")
            out.append(replace(claim, stored_at=where.decode()))
            pos = nxt
        return out

    def covering(self, path: str) -> list[Claim]:
        """Claims on `path` and on every folder above it, by path."""
        k = key_of(path)
        cuts = [i + 1 for i in range(len(k)) if k[i : i + 1] == b"/"]
        return sorted((c for cut in cuts for c in self._run(k[:cut], False)), key=lambda c: c.path)

    def overlapping(self, path: str) -> list[Claim]:
        """Claims on `path`, above it and below it, by path (the order `all_claims` gives)."""
        k = key_of(path)
        cuts = [i + 1 for i in range(len(k) - 1) if k[i : i + 1] == b"/"]
        found = [c for cut in cuts for c in self._run(k[:cut], False)] + self._run(k, True)
        return sorted(found, key=lambda c: c.path)

    def lines(self) -> list[bytes]:
        """Every claim line (for bringing the index up to a newer ledger state)."""
        return [line for line in bytes(self.data[self.start :]).split(b"\n") if line]


Loaded = tuple[str | None, bool, Index]  # an index file read back: its tip, ignorecase, and lines


def render(tip: str | None, ignorecase: bool, lines: list[bytes]) -> bytes:
    head = b" ".join((MAGIC, (tip or "-").encode(), b"1" if ignorecase else b"0"))
    return b"\n".join([head, *sorted(lines)]) + b"\n"


def parse_index(data: bytes | mmap.mmap) -> Loaded:
    """The tip, `ignorecase` and index in an index file's bytes; `Damaged` when it is none."""
    end = data.find(b"\n")
    head = bytes(data[: max(end, 0)]).split(b" ")
    if end < 0 or len(head) != 6 or b" ".join(head[:4]) != MAGIC or head[5] not in (b"0", b"1"):
        raise Damaged("The claims index has no header.")
    if len(data) > end + 1 and data[len(data) - 1 : len(data)] != b"\n":
        raise Damaged("The claims index ends inside a line.")
    tip = head[4].decode()
    return (None if tip == "-" else tip), head[5] == b"1", Index(data, end + 1)


EMPTY = Index(b"", 0)


def ledger_tip(common_dir: Path) -> str | None:
    """The index key of the ledgers now: every ledger ref and `refs/bus/ledger`, `name=oid` joined
    by commas in name order (None: no ledger yet). Read from git's files, without libgit2. A ledger
    ref that is there but damaged leaves the claims unknown: `DamagedRef`, and the guard is blind."""
    damaged: dict[str, str] = {}
    refs = read_refs(common_dir, LEDGERS_PREFIX, damaged)
    refs.update(read_refs(common_dir, LEDGER_REF, damaged))
    _refuse_damage(common_dir, damaged)
    named = sorted((n[len(BUS_PREFIX) :], o) for n, o in refs.items() if n == LEDGER_REF or is_ledger(n))
    return ",".join(f"{n}={o}" for n, o in named) or None


def _refuse_damage(common_dir: Path, damaged: dict[str, str]) -> None:
    """Raise `DamagedRef` for the first damaged ledger ref of `damaged` (or packed-refs itself)."""
    bad = sorted((r, w) for r, w in damaged.items() if r in (PACKED, LEDGER_REF) or is_ledger(r))
    if bad:
        raise DamagedRef(common_dir, *bad[0])


def key_refs(key: str | None) -> dict[str, str] | None:
    """The refs (relative to `refs/bus/`) and commits an index key names (`ledger_tip`), or None when
    it is no such key (an older gitbus keyed the index by one ledger commit; a header can be damaged)."""
    if not key:
        return {}
    parts = [part.partition("=") for part in key.split(",")]
    if any(not name or not sep or not oid for name, sep, oid in parts):
        return None
    return {name: oid for name, _, oid in parts}


def tips_of(repo: Repository, key: str | None) -> Tips:
    """The ledgers an index key names (`ledger_tip`); `Damaged` when it names none."""
    from gitbus import ledger_state
    from gitbus.gitfiles import Oid

    refs = key_refs(key)
    if refs is None:
        raise Damaged("The claims index is keyed by something other than the ledgers' tips.")
    old = refs.pop(LEDGER_REF[len(BUS_PREFIX) :], None)
    named = {BUS_PREFIX + n: Oid(o) for n, o in refs.items()}
    return ledger_state.tips_of(repo, BUS_PREFIX, named, Oid(old) if old else None)


def load(common_dir: Path) -> Loaded | None:
    """The index file as it is (any tip), or None when there is none that reads."""
    try:
        with claims_cache(common_dir).open("rb") as f:
            data: bytes | mmap.mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # no file, or an empty one (mmap refuses length 0)
        return None
    try:
        return parse_index(data)
    except Damaged:
        return None


def updated(repo: Repository, state: State, before: Loaded) -> list[bytes] | None:
    """The index lines of ledger `state`, from those of `before` and the entries that differ
    between the two states, ledger by ledger; None when that cannot be told (a state git no longer
    has, a diff too big, other claims carried from the single ledger)."""
    from gitbus import ledger_shards, ledger_state
    from gitbus.claims import ROOT, read_claim
    from gitbus.errors import Unreadable

    old_key, _, old = before
    try:
        was = tips_of(repo, old_key)
        if was.broken is not None or was.ended != state.tips.ended or was.moved != state.tips.moved:
            return None
        earlier = ledger_state.State(repo, was)
        changed: set[str] = set()
        for ref in sorted(set(was.chains()) | set(state.tips.chains())):
            if was.tip(ref) == state.tips.tip(ref) or (ref == MAIN_LEDGER and was.moved):
                continue  # claims in the main ledger count only before the ledger moved
            if was.tip(ref) is not None and earlier.tree(ref) is None:
                return None
            diff = repo.tree_diff(earlier.tree(ref), state.tree(ref), MAX_INDEX_CHANGES)
            if diff is None:
                return None
            changed |= {
                p
                for p, _, _ in diff
                if p.startswith(ROOT + "/")
                and p.endswith("/@")
                and (ref == MAIN_LEDGER or ledger_shards.route(p) == ref)
            }
        kept = old.lines()
    except (Unreadable, Damaged, ValueError):
        return None
    gone: set[int] = set()
    for where in changed:  # the lines of a slot are found by its key, never by reading every line
        head, slot = _slot_key(where) + b"\t", _bytes(where)
        i = bisect.bisect_left(kept, head)
        while i < len(kept) and kept[i].startswith(head):
            if kept[i].split(b"\t", 3)[2:3] == [slot]:
                gone.add(i)
            i += 1
    for i in sorted(gone, reverse=True):
        del kept[i]
    for where in sorted(changed):
        obj = state.read(where)
        claim = read_claim(state, where, obj) if obj is not None else None
        if claim is not None:
            kept.append(line(claim))
    return kept


def _slot_key(where: str) -> bytes:
    """The index key of the claim a ledger slot `claims/_a/_b/@` holds, in any spelling."""
    return _bytes("".join(c[1:] + "/" for c in where.casefold().split("/")[1:-1]))


def _bytes(name: str) -> bytes:
    """A ledger tree name as bytes: a peer's tree may hold names that are not UTF-8 (git hands
    them over with surrogate escapes); such a slot matches no claim's key, and is skipped."""
    return name.encode("utf-8", "surrogateescape")
