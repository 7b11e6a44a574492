"""Fetching the bus from its remote, and taking in only what can be vouched for.

Fetches go into `refs/gitbus/fetched/<remote>/` with an explicit refspec and `--prune` (the user's
fetch config is never touched): that namespace is the remote as it was at the last fetch, deletions
included. A fetched ref is copied to `refs/gitbus/vouched/<remote>/` and taken in only as far as
`gitbus.vouch` can vouch for it there, so a ref the remote lost keeps what was vouched for (and a
push puts it back, `gitbus.remote_push`). A fetch that loses a race for a local tracking ref, or
meets the stale lock of a killed git, is tried again, a bounded number of times.
"""

from __future__ import annotations

import contextlib
import random
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from gitbus import settings, vouch
from gitbus.fetching import Early, fetch_args, fetched, fetched_notes, notes_tracking, tracked, tracking
from gitbus.git import STALE_LOCK_SECONDS, network_timeout
from gitbus.gitfiles import Oid, RefMoved
from gitbus.ids import BUS_PREFIX, LEDGER_REF, LEDGERS_PREFIX
from gitbus.notes import NOTES_REF
from gitbus.remote import ROUNDS, RemoteError, Report, reason

if TYPE_CHECKING:
    from gitbus.git import Repository

# -- where fetched refs go -----------------------------------------------------------------------------


def fetched_of(remote: str, lref: str) -> str:
    """Where the fetch left the remote's value of local bus ref (or notes ref) `lref`."""
    if lref.startswith(NOTES_REF):  # the notes ref, or a name under it (`_in_the_way`)
        return fetched_notes(remote) + lref[len(NOTES_REF) :]
    return fetched(remote) + lref[len(BUS_PREFIX) :]


def tracking_of(remote: str, lref: str) -> str:
    """The tracking ref of the local bus ref (or notes ref) `lref`."""
    if lref == NOTES_REF:
        return notes_tracking(remote)
    return tracking(remote) + lref[len(BUS_PREFIX) :]


# -- fetch ---------------------------------------------------------------------------------------------


def fetch(
    repo: Repository,
    remote: str,
    what: str = "*",
    ledgers: Iterable[str] | None = None,
    first: Callable[[], tuple[int, str, str]] | None = None,
) -> None:
    """Copy the remote's bus refs (all, or the ledgers: `ledger`) into the tracking namespace. With
    `ledgers`, only those ledger refs come, beside `refs/bus/ledger` (which says whether it moved):
    a step costs what its own ledgers hold, not what every other clone did meanwhile. `first`: the
    outcome of this same fetch, started already (`fetching.Early`), as the first try."""
    args = fetch_args(remote, what, ledgers)
    for attempt in range(ROUNDS):
        if first is not None:
            (code, _, err), first = first(), None
        else:
            code, _, err = repo.git_result(
                *args, network=True, timeout=network_timeout(whole_bus=what == "*")
            )
        if code == 0:
            return
        if what != "*" and "couldn't find remote ref" in err:
            args = [a for a in args if not a.startswith(f"+{LEDGER_REF}:")]
            gone = repo.ref(fetched_of(remote, LEDGER_REF))
            if gone is not None:  # the remote has none (now): the one name a prune cannot reach
                with contextlib.suppress(RefMoved):
                    repo.update_refs([(fetched_of(remote, LEDGER_REF), None, gone)], "gitbus fetch")
            if not any(a.startswith("+") for a in args):
                return  # the remote has no ledger yet
            continue
        stale = _STALE_LOCK.search(err)
        if stale:
            # A git killed mid-fetch left a tracking ref's lock, and git never removes one itself:
            # once it is clearly stale (no live writer holds a lock that long), move it aside.
            deadline = time.monotonic() + STALE_LOCK_SECONDS + 2
            while not repo.recover_stale_lock(Path(stale.group(1))) and time.monotonic() < deadline:
                time.sleep(0.1)
            continue
        if not _lost_local_race(err):
            break
        # Another process of this repository fetched the same tracking ref first (git's own CAS on it
        # failed): what it wrote is as new as what we got, so fetch again after a short jittered wait.
        time.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
    raise RemoteError(f"The bus remote '{remote}' could not be reached: {reason(err)}.")


def fetch_vouched(
    repo: Repository,
    remote: str,
    report: Report,
    what: str = "*",
    ledgers: Iterable[str] | None = None,
    early: Early | None = None,
) -> None:
    """`fetch`, then vouch for every bus ref that moved (`gitbus.vouch`): what cannot be vouched for
    is refused in `report`, its tracking ref put back to what can. `early`: this fetch, started
    before the library loaded (`gitbus.fetching`), taken when it is the one this would start, else
    let go of (it wrote only what the remote holds, `fetching.fetched`)."""
    if early is not None and not (what == "*" and ledgers is None and early.serves(repo.common_dir, remote)):
        early.close()
        early = None
    if early is not None:
        before, before_notes = early.before, early.before_notes
    else:
        before, before_notes = tracked(repo.common_dir, remote)
    signed = bool(settings.load(repo.common_dir)["require_signed"])
    fetch(repo, remote, what, ledgers, early.result if early is not None else None)
    _take_fetched(repo, remote, before, report, what, ledgers)
    # `refs/bus/ledger` last: its tombstone is vouched for against the main ledger as vouched for.
    for tref in sorted(repo.refs(tracking(remote)), key=lambda t: (_vouch_order(remote, t), t)):
        ref = vouch.bus_ref_of(tracking(remote), tref)
        if ref is None:
            continue
        old, stone = before.get(tref), before.get(tracking(remote) + "ledger")
        refusal = vouch.check(
            repo,
            remote,
            ref,
            tref,
            Oid(old) if old else None,
            require_signed=signed,
            stone_before=Oid(stone) if stone else None,
        )
        if refusal is not None:
            report.refuse(refusal)
    if what == "*":
        refusal = vouch.check(
            repo,
            remote,
            NOTES_REF,
            notes_tracking(remote),
            Oid(before_notes) if before_notes else None,
            require_signed=signed,
        )
        if refusal is not None:
            report.refuse(refusal)


def _take_fetched(
    repo: Repository,
    remote: str,
    before: dict[str, str],
    report: Report,
    what: str,
    ledgers: Iterable[str] | None,
) -> None:
    """Copy what this fetch brought (`fetched`; `what` and `ledgers` as for `fetch`) to the tracking
    refs, to be vouched for there. A name no gitbus writes is passed over and told; a ref the remote
    no longer has keeps its tracking ref (what was vouched for, which a push puts back)."""
    wanted = None if what == "*" else {LEDGER_REF, *(ledgers or ())}
    pairs = []
    for m, oid in sorted(repo.refs(fetched(remote)).items()):
        lref = BUS_PREFIX + m[len(fetched(remote)) :]
        if wanted is None or lref in wanted or (ledgers is None and lref.startswith(LEDGERS_PREFIX)):
            pairs.append((tracking(remote) + m[len(fetched(remote)) :], oid))
    theirs_notes = repo.ref(fetched_notes(remote)) if what == "*" else None
    if theirs_notes is not None:
        pairs.append((notes_tracking(remote), theirs_notes))
    for tref, oid in pairs:
        if tref != notes_tracking(remote) and vouch.bus_ref_of(tracking(remote), tref) is None:
            report.ignored.append(BUS_PREFIX + tref[len(tracking(remote)) :])  # the remote's name
            continue
        held = before.get(tref) if tref != notes_tracking(remote) else repo.ref(tref)
        current = Oid(held) if held is not None else None
        if current != oid:
            with contextlib.suppress(RefMoved):  # a concurrent sync copied it first
                repo.update_refs([(tref, oid, current)], "gitbus fetch")


def _vouch_order(remote: str, tref: str) -> int:
    """The main ledger first, then `refs/bus/ledger` (whose tombstone must name what the vouched main
    ledger holds), then everything else (a claim shard's first commit builds on the vouched
    tombstone's carried claims)."""
    return {tracking(remote) + "ledgers/main": 0, tracking(remote) + "ledger": 1}.get(tref, 2)


# -- what git's errors mean ----------------------------------------------------------------------------

_STALE_LOCK = re.compile(r"Unable to create '([^']+\.lock)': File exists")


def _lost_local_race(err: str) -> bool:
    """git fetch failed on a local tracking ref moved or locked by a concurrent fetch, not on the remote."""
    return "cannot lock ref" in err or "unable to update local ref" in err
