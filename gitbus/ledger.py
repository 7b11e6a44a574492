"""The ledgers: the serialization points for everything two agents may race for, sharded so that
unrelated claims never wait on each other.

A ledger is a chain of message commits (claim, release, renew, take, done) whose tree is the state
after that step. `refs/bus/ledgers/main` holds `requests/…` (delegated work). Each claim shard
`refs/bus/ledgers/<hhhh>` holds the `claims/…/@` blobs of the paths whose top component, case-folded,
hashes to `hhhh` (`shard`). Two claims overlap only when their top components fold alike, so a claim
is decided on its own shard's tip and published by one compare-and-swap of that ref: two agents can
never both win, no process death can leave a grant unannounced, and claims on other top folders go
on in parallel. A step on several shards (one claim of `src/` and `docs/`) writes one commit on each
and moves them all at once: one ref transaction here, one atomic push with a lease on each to a
remote. Its first commit, in ref-name order, carries the message; each other one is a full message
of its own, marked `part=<first id>`, which readers leave out.

`refs/bus/ledger` was the single ledger of gitbus before shards. The first writer that finds it a
commit moves it, in the same transaction as its step: `ledgers/main` continues its chain, and
`refs/bus/ledger` is set to a blob (the tombstone) naming the commit it ended at. The claims held
there are carried: a shard that has no ref yet has, as its state, those claims of its paths
(`carried`), and its first commit builds on them. An older gitbus refuses a ledger ref that points at
a blob with one line, so it can no longer grant claims the shards would not see (docs/format.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from gitbus.chains import chain_time, remember_time
from gitbus.errors import GitbusError, Unreadable
from gitbus.gitfiles import PACKED, DamagedRef, Oid, damage_text

if TYPE_CHECKING:
    from gitbus.git import Repository
from gitbus.ids import BUS_PREFIX, LEDGER_REF, LEDGERS_PREFIX, MAIN_LEDGER, RefName, is_ledger, new_message_id
from gitbus.inert import inert
from gitbus.message import Message, encode

MAX_ENTRY_BYTES = 128 * 1024  # a claim holds a reason of at most 64 KiB; nothing gitbus writes is larger
MAX_DEPTH = 80  # folders below the ledger root: `claims/` plus a path at most 64 deep, with room
CLAIMS = "claims"  # the folder of claims in a ledger tree (`gitbus.claims` lays it out)
TOMBSTONE = "gitbus: this ledger moved to refs/bus/ledgers/ (docs/format.md); it ended at "
_TOMBSTONE_MAX = len(TOMBSTONE) + 66


class Ledger(NamedTuple):
    """One state of the ledger (an immutable tree), read lazily."""

    repo: Repository
    tree: Oid | None

    def read(self, path: str) -> dict[str, Any] | None:
        """The JSON object stored at `path`, or None (also when what is there is not one: skipped
        and counted in `repo.skipped`)."""
        if self.tree is None:
            return None
        found = self.repo.tree_entry(self.tree, path)
        if found is None or found[0] != "blob":
            return None
        return load_entry(self.repo, found[1], path)

    def folders(self, path: str) -> list[str]:
        """The names of the folders directly inside the folder `path`."""
        if self.tree is None:
            return []
        return [name for name, kind in self.repo.tree_list(self.tree, path) if kind == "tree"]

    def top_folders(self, top: str) -> list[str]:
        """The folders at `claims/` (one tree holds every top folder)."""
        return self.folders(CLAIMS)

    def below(self, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every (path, object) stored under the directory `path`; what is no JSON object, or lies
        deeper than any path gitbus takes, is skipped and counted."""
        if self.tree is None:
            return
        found = self.repo.tree_entry(self.tree, path)
        if found is None or found[0] != "tree":
            return
        depth = MAX_DEPTH - path.rstrip("/").count("/") - 1
        for sub, oid in self.repo.tree_blobs(found[1], path.rstrip("/") + "/", max_depth=depth):
            obj = load_entry(self.repo, oid, sub)
            if obj is not None:
                yield sub, obj


class View(Protocol):
    """A ledger state to decide on: one ledger's tree (`Ledger`) or every ledger at once (`State`)."""

    @property
    def repo(self) -> Repository: ...

    def read(self, path: str) -> dict[str, Any] | None: ...

    def folders(self, path: str) -> list[str]: ...

    def below(self, path: str) -> Iterator[tuple[str, dict[str, Any]]]: ...

    def top_folders(self, top: str) -> list[str]:
        """The folders at `claims/` among which top folder `top` (`_<name>`) is, in any spelling."""
        ...


class Change(NamedTuple):
    """What a ledger step publishes: its message, and the state blobs it sets (None deletes). A
    change that sets nothing is written on `home` (default: the main ledger)."""

    message: Message
    writes: dict[str, dict[str, Any] | None]
    home: str | None = None


# -- where state lives ---------------------------------------------------------------------------------


def shard(top: str) -> RefName:
    """The ledger of the claims below top path component `top` (any case)."""
    digest = hashlib.sha1(top.casefold().encode("utf-8", "surrogateescape")).hexdigest()[:4]
    return RefName(LEDGERS_PREFIX + digest)


def shard_of_path(path: str) -> RefName:
    """The ledger that holds the claim on repository path `path`."""
    return shard(path.split("/", 1)[0])


def route(entry: str) -> RefName:
    """The ledger that holds state entry `entry`: a claim's slot (`claims/_<top>/…`) its top's
    shard, anything else the main ledger."""
    head, _, rest = entry.partition("/")
    if head != CLAIMS or not rest:
        return MAIN_LEDGER
    top = rest.split("/", 1)[0]
    return shard(top[1:] if top.startswith("_") else top)


def tombstone(ended_at: Oid | None) -> bytes:
    """The blob `refs/bus/ledger` points at once the ledger moved: it names the commit the single
    ledger ended at (whose claims are carried), or `nothing` when there was none."""
    return f"{TOMBSTONE}{ended_at or 'nothing'}\n".encode()


_ENDED: dict[Oid, Oid | None] = {}  # tombstone -> the commit it names; objects never change


def ended_at(repo: Repository, blob: Oid) -> Oid | None:
    """The commit a tombstone names (None: `nothing`); raises `Unreadable` when `blob` is none."""
    if blob in _ENDED:
        return _ENDED[blob]
    _ENDED[blob] = _ended_at(repo, blob)
    return _ENDED[blob]


def _ended_at(repo: Repository, blob: Oid) -> Oid | None:
    try:
        text = repo.read_blob(blob, limit=_TOMBSTONE_MAX).decode("ascii")
    except (Unreadable, UnicodeDecodeError):
        raise Unreadable(f"{LEDGER_REF} points at a blob that is no gitbus tombstone") from None
    name = text[len(TOMBSTONE) : -1] if text.startswith(TOMBSTONE) and text.endswith("\n") else ""
    if name == "nothing":
        return None
    if len(name) in (40, 64) and all(c in "0123456789abcdef" for c in name):
        return Oid(name)
    raise Unreadable(f"{LEDGER_REF} points at a blob that is no gitbus tombstone")


def load_entry(repo: Repository, oid: Oid, path: str) -> dict[str, Any] | None:
    """The JSON object in blob `oid`, or None when it is none (skipped, and counted)."""
    try:
        obj = json.loads(repo.read_blob(oid, limit=MAX_ENTRY_BYTES).decode("utf-8"))
    except (ValueError, Unreadable, RecursionError) as e:
        repo.skipped[f"{oid} {path}"] = f"the ledger entry {path} is not valid JSON ({type(e).__name__})"
        return None
    if not isinstance(obj, dict):
        repo.skipped[f"{oid} {path}"] = f"the ledger entry {path} is not a JSON object"
        return None
    return obj


def tree_of(repo: Repository, tip: Oid | None, ref: str = MAIN_LEDGER) -> Oid | None:
    """The state at ledger commit `tip`: None (empty) for no ledger, and for a ledger ref that is no
    commit (counted in `repo.skipped`): a ledger a peer broke holds no claims."""
    if tip is None:
        return None
    try:
        return repo.read_commit(tip).tree
    except Unreadable as e:
        repo.skipped[ref] = str(e)
        return None


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


# Keyed by repository too: a carried state is a tree written into one repository, missing in another.
_CARRIED: dict[tuple[str, Oid, str], Oid | None] = {}  # (repo, ended at, shard) -> its state; never stale
_CARRIED_TOPS: dict[tuple[str, Oid], dict[str, list[str]]] = {}  # (repo, ended at) -> shard -> top folders


def carried_tops(repo: Repository, ended: Oid | None) -> dict[str, list[str]]:
    """The top folders of the claims the single ledger ended with, by shard: one listing, hashed once."""
    if ended is None:
        return {}
    key = (str(repo.common_dir), ended)
    if key not in _CARRIED_TOPS:
        tree = tree_of(repo, ended, LEDGER_REF)
        by_shard: dict[str, list[str]] = {}
        for name in Ledger(repo, tree).folders(CLAIMS):
            by_shard.setdefault(route(f"{CLAIMS}/{name}/@"), []).append(name)
        if len(_CARRIED_TOPS) > 64:
            _CARRIED_TOPS.clear()
        _CARRIED_TOPS[key] = by_shard
    return _CARRIED_TOPS[key]


def carried(repo: Repository, ended: Oid | None, ref: str) -> Oid | None:
    """The state shard `ref` starts from: the claims of its paths in the single ledger's last state."""
    if ended is None or ref == MAIN_LEDGER:
        return None
    key = (str(repo.common_dir), ended, ref)
    if key not in _CARRIED:
        names = carried_tops(repo, ended).get(ref)
        tree = tree_of(repo, ended, LEDGER_REF) if names else None
        _CARRIED[key] = repo.tree_pick(tree, CLAIMS, names) if tree and names else None
    return _CARRIED[key]


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


# A ref update a step publishes: (ref, new value, the value it replaces; None: it must not exist).
Update = tuple[str, Oid, Oid | None]


class Arbiter(Protocol):
    """Who decides the ledgers: this clone (`LocalArbiter`) or a remote (`gitbus.sync.RemoteArbiter`)."""

    def tips(self, want: set[str] | None = None) -> Tips:
        """The ledgers to decide on; `want`, when known, names those the step reads (the others
        may be as they were)."""
        ...

    def publish(self, updates: list[Update], log: str) -> None:
        """Make every update or none, each only if its ref still holds what it replaces; raise
        `RefMoved` when someone won the race."""
        ...

    @property
    def notices(self) -> list[str]:
        """One line each the command should show about how the step was published."""
        ...


class LocalArbiter:
    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.notices: list[str] = []

    def tips(self, want: set[str] | None = None) -> Tips:
        return read_tips(self.repo, want=want)

    def publish(self, updates: list[Update], log: str) -> None:
        self.repo.update_refs(updates, log)


def moving(repo: Repository, tips: Tips) -> list[Update]:
    """What moves the single ledger `tips` still has (nothing once it moved): `ledgers/main` continues
    its chain and `refs/bus/ledger` becomes the tombstone naming its last commit. Published with the
    first step decided on it, so an older gitbus never sees a step it could overwrite."""
    if tips.moved:
        return []
    stone = repo.blob(tombstone(tips.old))
    if tips.old is None:
        return [(LEDGER_REF, stone, None)]
    main = tips.refs.get(MAIN_LEDGER)
    if main is not None and main != tips.old and not repo.is_ancestor(main, tips.old):
        raise GitbusError(
            f"Both {LEDGER_REF} and {MAIN_LEDGER} hold ledger steps the other lacks; gitbus cannot "
            f"tell which holds the claims. Keep one: git update-ref -d {MAIN_LEDGER}, or move "
            f"{LEDGER_REF} aside."
        )
    return [(MAIN_LEDGER, tips.old, main), (LEDGER_REF, stone, tips.old)]


def write_change(repo: Repository, state: State, change: Change) -> tuple[list[Update], list[Oid]]:
    """The commits for `change` on the ledgers of `state`, one per ledger it writes, as ref updates
    (no ref moves), and the commits themselves, the one carrying the message first."""
    tips = state.tips
    if tips.broken is not None:
        # The damaged ref, as `read_tips` counted it: a shard, the tombstone, or packed-refs itself
        # (whose own repair `broken` says); else the tombstone, which `tips_of` judged by its value
        # (a tree, a missing object, missing beside the shards). Not `git update-ref`: git refuses
        # to update a ref it cannot read, and follows a symbolic one to the ref it names.
        found = (r for r, why in repo.skipped.items() if why == tips.broken)
        bad = inert(next(found, LEDGER_REF), 200)
        again = f" Put the last good one back into {bad} (git reflog {bad} lists them where kept)."
        raise GitbusError(
            f"{inert(tips.broken, 200)}; no claim can be decided.{again if bad != PACKED else ''}"
        )
    groups: dict[str, dict[str, Oid | None]] = {}
    for path, obj in change.writes.items():
        groups.setdefault(route(path), {})[path] = None if obj is None else repo.blob(_dump(obj))
    if not groups:
        groups[change.home or MAIN_LEDGER] = {}
    lead = change.message
    updates: list[Update] = []
    commits: list[Oid] = []
    for i, ref in enumerate(sorted(groups)):
        tip = tips.tip(ref)
        tree = state.tree(ref)
        if tip is not None and tree is None:
            # Replacing it would drop every claim on it, and the guard would let edits into them through.
            raise GitbusError(
                f"The ledger {ref} points at {inert(repo.skipped.get(ref, 'no commit'), 200)}; no claim "
                f"can be decided on it. Put the last good one back: git update-ref {ref} <commit> "
                f"(git reflog {ref} lists them)."
            )
        msg = lead if i == 0 else _part(lead, ref)
        oid = repo.commit(
            tree=repo.tree_update(tree, groups[ref]),
            parents=[tip] if tip else [],
            message=encode(msg),
            author=msg.sender,
            time_ms=msg.time,
        )
        updates.append((ref, oid, tips.refs.get(ref)))
        commits.append(oid)
    written = {ref for ref, _, _ in updates}
    updates += [u for u in moving(repo, tips) if u[0] not in written]
    if tips.moved and tips.old is not None and any(tips.refs.get(r) is None for r in written):
        # A shard's first commit builds on the claims the tombstone carries: it must still be it.
        updates.append((LEDGER_REF, tips.old, tips.old))
    return updates, commits


def _part(lead: Message, ref: str) -> Message:
    """The message of a step's commit on another ledger than its first: its own id, the paths that
    ledger holds, and `part=<the first's id>`, so readers show the step once."""
    paths = tuple(p for p in lead.paths if shard_of_path(p) == ref)
    return replace(lead, id=new_message_id(), paths=paths, meta=(*lead.meta, ("part", lead.id)))


def is_part(msg: Message) -> bool:
    """True for a step's commit on another ledger than its first (see `_part`): readers leave it out."""
    return any(k == "part" for k, _ in msg.meta)


def written_refs(change: Change) -> set[str]:
    """The ledgers `change` writes."""
    return {route(p) for p in change.writes} or {change.home or MAIN_LEDGER}


def decide_past(repo: Repository, tips: Tips, decide: Callable[[int], Change | None]) -> Change | None:
    """`decide(min_time)`, stamped past the tip of every ledger its change writes: each ledger's
    times rise along its chain. Decided again past them when the first decision was not."""
    floor = 0
    for _ in range(2):
        change = decide(floor + 1)
        if change is None:
            return None
        floor = max(chain_time(repo, tips.tip(r)) for r in written_refs(change))  # cached reads
        if change.message.time > floor:
            return change
    raise GitbusError("A ledger step could not be stamped past the ledgers it writes.")


def transact(
    repo: Repository,
    decide: Callable[[State, int], Change | None],
    arbiter: Arbiter | None = None,
    want: set[str] | None = None,
) -> Message | None:
    """Apply `decide(state, min_time)` to the ledgers atomically, re-deciding on lost races
    (`Repository.retry_cas`, with the remote's backoff when a remote arbitrates). `want` names the
    ledgers `decide` reads, when the step knows them (`steps.Step.ledgers`).

    `decide` may raise to refuse (nothing is written) or return None when there is nothing to do.
    Its time must pass the tip of every ledger it writes: decided again past them when it does not.
    """
    arbiter = arbiter or LocalArbiter(repo)

    def attempt() -> Message | None:
        tips = arbiter.tips(want)
        state = State(repo, tips)
        change = decide_past(repo, tips, lambda min_time: decide(state, min_time))
        if change is None:
            return None
        updates, commits = write_change(repo, state, change)
        msg = change.message
        arbiter.publish(updates, f"gitbus: {msg.kind.value} {msg.id}")
        for oid in commits:
            remember_time(oid, msg.time)
        return msg

    # One turn (`Repository.retry_cas`) per set of ledgers: a writer starved on one shard holds
    # back only the writers of that shard.
    turn = ",".join(sorted(want)) if want else LEDGERS_PREFIX.rstrip("/")
    return repo.retry_cas(turn, attempt, "updating the ledger", remote=not isinstance(arbiter, LocalArbiter))


def _dump(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, sort_keys=True, ensure_ascii=False) + "\n").encode()
