"""Pushing the bus to its remote: each ref on a lease, all at once where the host allows.

Pushes use the git CLI with a `--force-with-lease` per ref and no `+`, leased on what the remote held
at the fetch: a ref the remote lost (deleted, or rewound to an ancestor) goes back with the next push,
and a name no gitbus writes that is in its way is removed first, on its own lease. Several refs go in
one `--atomic` push where the host offers it, else each on its own lease: the remote may then take
some and refuse others, which is safe since every bus ref is a stream of its own. A push the remote
refused because it moved raises `RefMoved`, for the caller to pull and try again.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from gitbus.chains import all_tips
from gitbus.fetching import fetched, fetched_notes
from gitbus.git import network_timeout
from gitbus.gitfiles import Oid, RefMoved
from gitbus.ids import BUS_PREFIX, LEDGER_REF, is_ledger
from gitbus.notes import NOTES_REF
from gitbus.remote import RemoteError, Report, reason
from gitbus.remote_fetch import fetched_of, tracking_of

if TYPE_CHECKING:
    from gitbus.git import Repository


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
