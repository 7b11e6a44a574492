"""The ledgers as one side holds them: their tips (`Tips`), and every ledger read as one state (`State`).

A side is this clone (`refs/bus/`) or a remote's tracking namespace. Its tips say whether the single
ledger has moved (`refs/bus/ledger` a tombstone) and which commit its carried claims come from; a
damaged ledger ref is never read as a ledger holding nothing, but makes the tips `broken`, so no step
is decided on them and the guard is blind. `State` reads each entry from the ledger that holds it
(`gitbus.ledger_shards.route`), each ledger's tree only once it is needed: a step costs the shards it
reads, however many there are.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from gitbus.errors import Unreadable
from gitbus.gitfiles import PACKED, DamagedRef, Oid, damage_text
from gitbus.ids import BUS_PREFIX, LEDGER_REF, LEDGERS_PREFIX, MAIN_LEDGER, is_ledger
from gitbus.ledger import CLAIMS, Ledger, tree_of
from gitbus.ledger_shards import carried, carried_tops, ended_at, route

if TYPE_CHECKING:
    from gitbus.git import Repository


class Tips(NamedTuple):
    """The ledgers as one side (this clone, or a remote's tracking refs) holds them."""

    root: str  # where the refs are: `refs/bus/`, or a remote's tracking namespace
    refs: dict[str, Oid]  # every ledger ref (by its local name, `refs/bus/ledgers/…`) and its tip
    old: Oid | None  # what `refs/bus/ledger` holds: nothing, the single ledger (a commit), a tombstone
    ended: Oid | None  # the commit the single ledger ended at, whose claims are carried
    moved: bool  # `refs/bus/ledger` is a tombstone: the ledger has moved
    broken: str | None = None  # why `refs/bus/ledger` is neither: no step can be decided

    def tip(self, ref: str) -> Oid | None:
        """The tip of ledger `ref`; before the move, the main ledger is the single ledger."""
        if ref == MAIN_LEDGER and not self.moved and self.old is not None:
            return self.old
        return self.refs.get(ref)

    def chains(self) -> dict[str, Oid]:
        """Every ledger chain to read, by ref."""
        out = dict(self.refs)
        main = self.tip(MAIN_LEDGER)
        if main is not None:
            out[MAIN_LEDGER] = main
        return out


def read_tips(repo: Repository, root: str = BUS_PREFIX, want: set[str] | None = None) -> Tips:
    """The ledgers under `root`: this clone's (`refs/bus/`) or a remote's tracking namespace. A ref
    under `ledgers/` that names no ledger gitbus keeps is left out. With `want`, once the ledger has
    moved, only those ledgers are read: a step costs its own refs, however many shards there are.

    A ledger ref that is there but damaged (an emptied file, a damaged `packed-refs` line) is never
    read as a ledger holding nothing: with `want` (a step about to be decided) it raises `DamagedRef`,
    whose sentence says how to repair it; else the tips are `broken` (no step is decided on them, the
    guard is blind) and the damage is counted in `repo.skipped`."""
    damaged: dict[str, str] = {}
    try:
        old = repo.ref(root + "ledger")
    except DamagedRef as e:
        old, damaged[e.ref] = None, e.why
    kind = repo.object_kind(old) if old is not None else None
    if want is not None and kind == "blob":
        picked: dict[str, Oid] = {}
        for r in want:
            if not is_ledger(r):
                continue
            try:
                oid = repo.ref(root + r[len(BUS_PREFIX) :])
            except DamagedRef as e:
                damaged[e.ref] = e.why
                continue
            if oid is not None:
                picked[r] = oid
        tips = tips_of(repo, root, picked, old, kind)
    else:
        found = repo.refs(root + "ledgers/", damaged)
        refs = {}
        for name, oid in found.items():
            local = LEDGERS_PREFIX + name[len(root + "ledgers/") :]
            if is_ledger(local):
                refs[local] = oid
        tips = tips_of(repo, root, refs, old, kind)
    ledgers = root + "ledgers/"
    bad = {
        r: why
        for r, why in damaged.items()
        if r in (PACKED, root + "ledger")
        or (r.startswith(ledgers) and is_ledger(LEDGERS_PREFIX + r[len(ledgers) :]))
    }
    if not bad:
        return tips
    ref, why = min(bad.items())
    if want is not None:
        raise DamagedRef(repo.common_dir, ref, why)
    for r, w in bad.items():
        repo.skipped[r] = damage_text(repo.common_dir, r, w)
    return tips._replace(broken=damage_text(repo.common_dir, ref, why))


def tips_of(
    repo: Repository, root: str, refs: dict[str, Oid], old: Oid | None, kind: str | None = None
) -> Tips:
    """The ledgers `refs` (by local name) with `refs/bus/ledger` at `old` (of object kind `kind`, when
    the caller looked already), as side `root` has them."""
    if old is None:
        # claim shards come after the tombstone: without it, what they carry is unknown
        if any(r != MAIN_LEDGER for r in refs):
            why = f"{LEDGER_REF} is missing beside the claim shards {LEDGERS_PREFIX}*: removed"
            return Tips(root, refs, None, None, True, why)
        return Tips(root, refs, None, None, False)
    kind = kind or repo.object_kind(old)
    if kind == "commit":
        return Tips(root, refs, old, old, False)
    if kind == "blob":
        try:
            return Tips(root, refs, old, ended_at(repo, old), True)
        except Unreadable as e:
            return Tips(root, refs, old, None, True, str(e))
    return Tips(root, refs, old, None, True, f"{LEDGER_REF} points at a {kind or 'missing object'}")


class State:
    """Every ledger at once, as one state: each entry is read from the ledger `route` names, whose
    tree is read the first time it is needed."""

    def __init__(self, repo: Repository, tips: Tips) -> None:
        self._repo, self.tips = repo, tips
        self._trees: dict[str, Oid | None] = {}

    @property
    def repo(self) -> Repository:
        return self._repo

    def tree(self, ref: str) -> Oid | None:
        """The state of ledger `ref`: its tip's tree, or what it carries when it has no tip yet."""
        if ref not in self._trees:
            tip = self.tips.tip(ref)
            self._trees[ref] = (
                tree_of(self._repo, tip, ref)
                if tip is not None
                else carried(self._repo, self.tips.ended, ref)
            )
        return self._trees[ref]

    def ledger(self, ref: str) -> Ledger:
        return Ledger(self._repo, self.tree(ref))

    def shards(self) -> list[str]:
        """Every claim shard that has a ref, or claims carried from the single ledger."""
        found = {r for r in self.tips.refs if r != MAIN_LEDGER}
        return sorted(found | set(carried_tops(self._repo, self.tips.ended)))

    def top_folders(self, top: str) -> list[str]:
        """The folders at `claims/` of the shard that holds top folder `top` (`_<name>`): finding a
        path's claims reads its shard, not every shard."""
        return self.ledger(route(f"{CLAIMS}/{top}/@")).folders(CLAIMS)

    def read(self, path: str) -> dict[str, Any] | None:
        return self.ledger(route(path)).read(path)

    def folders(self, path: str) -> list[str]:
        if path.rstrip("/") != CLAIMS:
            return self.ledger(route(path)).folders(path)
        return sorted(
            {
                n
                for ref in self.shards()
                for n in self.ledger(ref).folders(CLAIMS)
                if route(f"{CLAIMS}/{n}/@") == ref
            }
        )

    def below(self, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        if path.rstrip("/") != CLAIMS:
            yield from self.ledger(route(path)).below(path)
            return
        for ref in self.shards():  # a shard holds only its own paths; anything else there is skipped
            yield from ((p, obj) for p, obj in self.ledger(ref).below(CLAIMS) if route(p) == ref)


def current(repo: Repository) -> State:
    return State(repo, read_tips(repo))
