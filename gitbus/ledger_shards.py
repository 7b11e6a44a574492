"""Ledger shards: which ledger holds an entry, and the move from the single ledger of old.

Each claim shard `refs/bus/ledgers/<hhhh>` holds the `claims/…/@` blobs of the paths whose top
component, case-folded, hashes to `hhhh` (`shard`); anything else lives on `refs/bus/ledgers/main`
(`route`). Two claims overlap only when their top components fold alike, so a claim is decided on its
own shard alone and claims on other top folders go on in parallel; the price is that a step on several
top folders writes several ledgers at once (`gitbus.ledger_cas`).

`refs/bus/ledger` was the single ledger of gitbus before shards. The first writer that finds it a
commit moves it, in the same transaction as its step: `ledgers/main` continues its chain, and
`refs/bus/ledger` is set to a blob (the tombstone) naming the commit it ended at. The claims held
there are carried: a shard that has no ref yet has, as its state, those claims of its paths
(`carried`), and its first commit builds on them. An older gitbus refuses a ledger ref that points at
a blob with one line, so it can no longer grant claims the shards would not see (docs/format.md).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from gitbus.errors import Unreadable
from gitbus.gitfiles import Oid
from gitbus.ids import LEDGER_REF, LEDGERS_PREFIX, MAIN_LEDGER, RefName
from gitbus.ledger import CLAIMS, Ledger, tree_of

if TYPE_CHECKING:
    from gitbus.git import Repository

TOMBSTONE = "gitbus: this ledger moved to refs/bus/ledgers/ (docs/format.md); it ended at "
_TOMBSTONE_MAX = len(TOMBSTONE) + 66


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
