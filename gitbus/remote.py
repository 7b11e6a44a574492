"""The bus remote: which git remote carries the bus, fetch and push over git, and what its errors mean.

Fetches go into `refs/gitbus/fetched/<remote>/` with an explicit refspec and `--prune` (the user's
fetch config is never touched): that namespace is the remote as it was at the last fetch, deletions
included. A fetched ref is copied to `refs/gitbus/vouched/<remote>/` and taken in only as far as
`gitbus.vouch` can vouch for it there, so a ref the remote lost keeps what was vouched for. Pushes use
the git CLI with a `--force-with-lease` per ref and no `+`, leased on what the remote held at the
fetch: a ref the remote lost (deleted, or rewound to an ancestor) goes back with the next push, and
a name no gitbus writes that is in its way is removed. Several refs go in one `--atomic` push where
the host offers it, else each on its own lease. git's failures are
turned into one sentence each: unreachable, refusing bus refs, or moved under us (`RefMoved`, for the
caller to pull and try again). What the last pull refused and how the last background sync went are
remembered here for `gitbus status`. Taking in what was fetched is `gitbus.sync`.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitbus import settings, state, vouch
from gitbus.chains import all_tips
from gitbus.errors import GitbusError
from gitbus.fetching import Early, fetch_args, fetched, fetched_notes, notes_tracking, tracked, tracking
from gitbus.git import STALE_LOCK_SECONDS, network_timeout
from gitbus.gitfiles import Oid, RefMoved
from gitbus.ids import BUS_PREFIX, LEDGER_REF, LEDGERS_PREFIX, is_ledger
from gitbus.message import Message
from gitbus.notes import NOTES_REF

if TYPE_CHECKING:
    from gitbus.git import Repository

ROUNDS = 8  # how often a fetch, a push or a sync is tried again after losing a race


class RemoteError(GitbusError):
    """The bus remote could not be reached or refused the bus refs."""


@dataclass
class Report:
    """What one sync did."""

    remote: str
    updated: list[str] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)
    dropped: list[Message] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # remote refs that no gitbus could have written
    refused: list[vouch.Refusal] = field(default_factory=list)  # remote refs sync could not vouch for
    restored: list[str] = field(default_factory=list)  # one line each: a ref the remote lost, put back
    passed: list[str] = field(
        default_factory=list
    )  # one line each: an entry of theirs that is no gitbus data or too large to merge

    def refuse(self, refusal: vouch.Refusal) -> None:
        self.refused = [r for r in self.refused if r.ref != refusal.ref] + [refusal]

    def refused_refs(self) -> set[str]:
        return {r.ref for r in self.refused}

    def settled(self) -> Report:
        """This report with each ref, and each dropped step, told once: a sync takes the remote in
        again in every round it needs, and a ref moved or passed over in two rounds is one fact."""
        for refs in (self.updated, self.merged, self.pushed, self.ignored, self.restored, self.passed):
            refs[:] = dict.fromkeys(refs)
        self.dropped[:] = {m.id: m for m in self.dropped}.values()
        return self


# -- which remote --------------------------------------------------------------------------------------


def bus_remote(repo: Repository, explicit: str | None = None) -> str | None:
    """The remote named on the command line, else the configured one, else None (local bus)."""
    name = explicit or settings.load(repo.common_dir)["remote"]
    return str(name) if name else None


def require_remote(repo: Repository, explicit: str | None, known: str | None = None) -> str:
    """The bus remote (`bus_remote`), refused in one sentence when none is set or git has no such
    remote. `known`: a remote git named a moment ago (`fetching.start` asked it), not asked again."""
    name = bus_remote(repo, explicit)
    if not name:
        raise GitbusError("No bus remote is set; run `gitbus remote NAME` (a git remote) first.")
    settings.parse("remote", name)
    code = 0 if name == known else repo.git_result("remote", "get-url", name)[0]
    if code != 0:
        raise GitbusError(f"git has no remote named '{name}'; add it with `git remote add {name} URL`.")
    return name


# `gitbus init` asks the remote once whether it carries a bus; a dead host must not hold it up long.
DISCOVER_TIMEOUT_SECONDS = 10.0


def remote_carrying_bus(repo: Repository, name: str = "origin") -> str | None:
    """`name` when git knows that remote and it holds refs under refs/bus/ (one `git ls-remote`), else
    None: a clone of a repository that already carries a bus shares it without `gitbus remote`. Any
    failure (no network, no such remote) is None, and the bus stays local."""
    if repo.git_result("remote", "get-url", name)[0] != 0:
        return None
    code, out, _ = repo.git_result(
        "ls-remote", "--refs", name, "refs/bus/*", network=True, timeout=DISCOVER_TIMEOUT_SECONDS
    )
    return name if code == 0 and out.strip() else None


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


_NOISE = (
    "Please make sure you have",
    "and the repository exists",
    "Could not read from remote",
    "To ",
    "Done",
)


def reason(err: str) -> str:
    """git's own reason for a failed fetch or push, in one line, without its boilerplate."""
    lines = [line.strip() for line in err.strip().splitlines() if line.strip()]
    lines = [x for x in lines if not x.startswith(_NOISE) and "failed to push some refs" not in x] or lines
    return (
        " ".join(x.removeprefix("fatal: ").removeprefix("error: ") for x in lines).rstrip(".") or "no answer"
    )


def push_failed(remote: str, ref: str, out: str, err: str) -> None:
    """Raise what a failed push means when git says: the host refuses bus refs (`RemoteError`), or
    the remote moved under us (`RefMoved`, so the caller pulls and tries again); else return."""
    text = out + err
    if "funny refname" in text or "deny" in text.lower() or "hook declined" in text:
        raise RemoteError(
            f"The bus remote '{remote}' refused refs under refs/bus/ ({reason(out + err)}); "
            "some hosts accept only branches and tags. See docs/sync.md for the fallback."
        )
    if any(
        k in text
        for k in (
            "stale info",
            "fetch first",
            "non-fast-forward",
            "atomic transaction failed",
            "failed to update ref",
            "cannot lock ref",
            "failed to lock",
        )
    ):
        raise RefMoved(ref, None)


# -- push ----------------------------------------------------------------------------------------------


def push(repo: Repository, remote: str, report: Report, only: list[str] | None = None) -> None:
    """Push every bus ref that is ahead of the remote, all or nothing, each leased on what the
    remote held at the fetch. A ref the remote lost goes back (`_lost`), even one sync refused
    as rewritten: ours only adds to what the remote holds there."""
    local = all_tips(repo)
    note_tip = repo.ref(NOTES_REF)
    if note_tip:
        local[NOTES_REF] = note_tip
    specs: list[tuple[str, Oid, Oid | None]] = []
    told: dict[str, str] = {}  # ref -> the line that says it goes back, told once the remote took it
    for lref, ours in sorted(local.items()):
        if only is not None and lref not in only:
            continue
        theirs = repo.ref(fetched_of(remote, lref))
        if lref == LEDGER_REF:
            # The single ledger of old goes out only as the tombstone that moves it
            # (`ledger_sync.migrate_remote`). A tombstone the remote lost, deleted or turned back
            # into a commit (the ledger moves once), goes back as vouched for; one replaced by
            # another tombstone is refused at sync and replaced by the next ledger step that leases it.
            vouched = repo.object_kind(ours) == "blob" and repo.ref(tracking_of(remote, lref)) == ours
            if vouched and theirs != ours and (theirs is None or repo.object_kind(theirs) != "blob"):
                lost = "it was deleted there" if theirs is None else f"it was replaced there by {theirs[:12]}"
                told[lref] = f"put back {lref} on {remote}: {lost}"
                specs.append((lref, ours, theirs))
            continue
        if theirs == ours or (theirs is not None and not repo.is_ancestor(theirs, ours)):
            continue  # up to date, or the remote has more (or what sync refused): pull first
        how = _lost(repo, remote, lref, ours)
        if how is not None:
            told[lref] = f"put back {lref} on {remote}: {how}"
        specs.append((lref, ours, theirs))
    if not specs:
        return
    timeout = network_timeout(whole_bus=only is None or not all(is_ledger(r) for r in only))
    removed, failed = _clear_the_way(repo, remote, [lref for lref, _, _ in specs], timeout)
    report.restored += removed
    atomic = len(specs) > 1  # one ref needs no `--atomic`, so hosts without it take it at once
    code, out, err = failed or _push_leased(repo, remote, specs, timeout, atomic=atomic)
    if atomic and not failed and code != 0 and NO_ATOMIC in out + err:
        # The host does not offer atomic pushes: each ref goes on its own lease, and the remote may
        # take some and refuse others. Safe all the same, since every ref is a stream of its own.
        atomic = False
        code, out, err = _push_leased(repo, remote, specs, timeout, atomic=False)
    everything = {lref for lref, _, _ in specs}
    taken = everything if code == 0 else _taken(out) & everything if not atomic else set()
    report.restored += [line for lref, line in told.items() if lref in taken]
    for lref, ours, _ in specs:
        if lref not in taken:
            continue
        landed(repo, remote, lref, ours)
        report.pushed.append(lref)
    if code != 0:
        push_failed(remote, specs[0][0], out, err)
        raise RemoteError(f"Pushing the bus to '{remote}' failed: {reason(err or out)}.")


def _lost(repo: Repository, remote: str, lref: str, ours: Oid) -> str | None:
    """How the remote lost what sync last vouched for at `lref`, when it did and `ours` holds it all
    (our push puts it back): a peer deleted it, or rewound it to an ancestor. Else None."""
    vouched = repo.ref(tracking_of(remote, lref))
    theirs = repo.ref(fetched_of(remote, lref))
    if vouched is None or theirs == vouched or not (vouched == ours or repo.is_ancestor(vouched, ours)):
        return None
    if theirs is None:
        return "it was deleted there"
    if repo.is_ancestor(theirs, vouched):
        return f"it was rewound there to {theirs[:12]}"
    return None


def landed(repo: Repository, remote: str, lref: str, new: Oid) -> None:
    """Record that the remote took `new` at `lref`: its tracking ref and what was fetched move there,
    unless a concurrent fetch recorded a commit `new` does not build on (the next fetch sorts it out)."""
    for ref in (tracking_of(remote, lref), fetched_of(remote, lref)):
        current = repo.ref(ref)
        if current == new or (
            current is not None and repo.object_kind(new) == "commit" and not repo.is_ancestor(current, new)
        ):
            continue  # a fetch recorded something else meanwhile: the next one sorts it out
        with contextlib.suppress(RefMoved):
            repo.update_ref(ref, new, current, "gitbus push")


# What git says when the remote does not advertise `atomic` (`receive.advertiseAtomic=false`).
NO_ATOMIC = "does not support --atomic push"


def _push_leased(
    repo: Repository, remote: str, specs: list[tuple[str, Oid, Oid | None]], timeout: float, *, atomic: bool
) -> tuple[int, str, str]:
    """One `git push` of `specs` (ref, ours, the remote tip it must still be), each with its lease."""
    # Without `--atomic`, not `--quiet`: git then names each ref it took or refused (`_taken`).
    args = ["push", "--porcelain", *(["--atomic", "--quiet"] if atomic else []), remote]
    args += [f"--force-with-lease={lref}:{theirs or ''}" for lref, _, theirs in specs]
    args += [f"{ours}:{lref}" for lref, ours, _ in specs]
    return repo.git_result(*args, network=True, timeout=timeout)


def _clear_the_way(
    repo: Repository, remote: str, lrefs: list[str], timeout: float
) -> tuple[list[str], tuple[int, str, str] | None]:
    """Remove the names the remote holds that git cannot keep beside `lrefs` (`agents/alice/x` beside
    `agents/alice`: no gitbus writes such a name), each on its own lease, in a push of their own
    before ours: git's atomic transaction refuses a removal and a clashing name together. Returns a
    line per name removed, or git's (code, stdout, stderr) when that push failed (moved meanwhile:
    `push_failed` fetches again; or unreachable)."""
    in_the_way = _in_the_way(repo, remote, lrefs)
    if not in_the_way:
        return [], None
    leases = [f"--force-with-lease={name}:{oid}" for name, oid in in_the_way]
    removals = [f":{name}" for name, _ in in_the_way]
    code, out, err = repo.git_result(
        "push", "--porcelain", remote, *leases, *removals, network=True, timeout=timeout
    )
    if code != 0:
        return [], (code, out, err)
    lines = []
    for name, oid in in_the_way:
        with contextlib.suppress(RefMoved):  # gone there, so from what was fetched too
            repo.update_refs([(fetched_of(remote, name), None, oid)], "gitbus push")
        mine = next(r for r in lrefs if name.startswith(f"{r}/") or r.startswith(f"{name}/"))
        lines.append(f"removed {name} from {remote}: a name no gitbus writes, in the way of {mine}")
    return lines, None


def _in_the_way(repo: Repository, remote: str, lrefs: list[str]) -> list[tuple[str, Oid]]:
    """The remote's refs (as last fetched) whose names clash with `lrefs` in git's ref store: one
    is a folder of the other. No two names gitbus writes clash, so each is a name no gitbus wrote."""
    mine = {lref for lref in lrefs if lref.startswith(BUS_PREFIX) or lref == NOTES_REF}
    if not mine:
        return []
    there = {BUS_PREFIX + m[len(fetched(remote)) :]: oid for m, oid in repo.refs(fetched(remote)).items()}
    if NOTES_REF in mine:  # `refs/notes/gitbus/x`, which the notes' glob brings too
        below = fetched_notes(remote) + "/"
        under = {m: oid for m, oid in repo.refs(below).items() if len(m) > len(below)}  # not the notes ref
        there |= {f"{NOTES_REF}/{m[len(below) :]}": oid for m, oid in under.items()}
    return sorted(
        (name, oid)
        for name, oid in there.items()
        if name not in mine and any(name.startswith(f"{r}/") or r.startswith(f"{name}/") for r in mine)
    )


def _taken(porcelain: str) -> set[str]:
    """The refs a non-atomic `git push --porcelain` says the remote took (or already had)."""
    taken: set[str] = set()
    for line in porcelain.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0] in (" ", "+", "*", "=") and ":" in parts[1]:
            taken.add(parts[1].rsplit(":", 1)[1])
    return taken


def push_ledgers(
    repo: Repository, remote: str, specs: list[tuple[str, Oid, Oid | None]]
) -> tuple[int, str, str, set[str]]:
    """Offer each (ref, new, expected) of `specs` to the remote, each leased on `expected` (None: the
    remote has none): git's (exit code, stdout, stderr) and the refs the remote took. Several refs
    go in one atomic push; a host that offers none takes them one by one, in the order given, up to
    the first it refuses. 124: it timed out, and the remote may have taken them anyway."""
    timeout = network_timeout(whole_bus=False)
    specs = [(ref, new, _lease(repo, remote, ref, expected)) for ref, new, expected in specs]
    _removed, failed = _clear_the_way(repo, remote, [ref for ref, _, _ in specs], timeout)
    if failed is not None:
        return (*failed, set())
    atomic = len(specs) > 1
    if atomic:
        code, out, err = _push_leased(repo, remote, specs, timeout, atomic=True)
        if code == 0 or NO_ATOMIC not in out + err:
            return code, out, err, {lref for lref, _, _ in specs} if code == 0 else set()
    taken: set[str] = set()
    code, out, err = 0, "", ""
    for spec in specs:
        code, out, err = _push_leased(repo, remote, [spec], timeout, atomic=False)
        if code != 0:
            break
        taken.add(spec[0])
    return code, out, err, taken


def _lease(repo: Repository, remote: str, ref: str, expected: Oid | None) -> Oid | None:
    """What a push of `ref` leases: `expected` (what sync vouched for), or what the remote held at the
    fetch when it lost some of that (a peer deleted it, or rewound it): the push puts it back."""
    theirs = repo.ref(fetched_of(remote, ref))
    if expected is not None and theirs != expected and (theirs is None or repo.is_ancestor(theirs, expected)):
        return theirs
    return expected


# -- what the last sync did, for `gitbus status` ------------------------------------------------------


def record_refused(repo: Repository, remote: str, report: Report) -> None:
    """Remember what the last pull refused, for `gitbus status` (cleared by a pull that refused
    nothing). A disk that cannot take the file loses only this reminder."""
    f = state.refused(repo.common_dir)
    lines = [r.line() for r in report.refused]
    if not lines and not f.exists():
        return
    with contextlib.suppress(GitbusError):
        state.write_atomic(f, json.dumps({"remote": remote, "refused": lines}), prefix=".refused-")


def last_refused(repo: Repository) -> list[str]:
    """The refusal lines of the last pull (see `record_refused`)."""
    try:
        obj = json.loads(state.refused(repo.common_dir).read_text())
        lines = obj["refused"] if isinstance(obj, dict) else []
    except (OSError, ValueError, KeyError, RecursionError):  # a damaged reminder is none
        return []
    return [str(x) for x in lines] if isinstance(lines, list) else []


def record_status(repo: Repository, remote: str, now_ms: int, error: str | None) -> None:
    """Remember how the last background sync went, for `gitbus status`."""
    f = state.sync_status(repo.common_dir)
    status = json.dumps({"remote": remote, "at": now_ms, "error": error})
    state.write_atomic(f, status, prefix=".sync-status-")


def last_status(repo: Repository) -> dict[str, Any] | None:
    """How the last background sync went (`remote`, `at`, `error`), or None if none was recorded."""
    try:
        obj = json.loads(state.sync_status(repo.common_dir).read_text())
    except (OSError, ValueError, RecursionError):  # a damaged record is none
        return None
    return obj if isinstance(obj, dict) else None
