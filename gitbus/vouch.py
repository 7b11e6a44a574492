"""What sync takes in from a remote: only what it can vouch for, ref by ref.

The remote is untrusted: anyone who can push to it can write anything under `refs/bus/`. After each
fetch, every bus ref that moved is checked before it is integrated: it must point at a commit, still
contain the tip last fetched from it (else the remote's history was rewritten), and no new message
on it may be stamped more than a day ahead of this machine's clock. On an agent chain, a new commit
that is no message gitbus takes there (a foreign commit, a newer format version, a forged sender,
text that breaks the rules) is taken in and skipped by every reader, which counts it: refusing it
would stop the chain there, and one peer's push would silence the chain's owner. On the ledger,
whose state is its tip's tree, every new commit must be a ledger step whose tree changes only what
that step by its sender may change (`gitbus.step_rules`): a peer cannot plant, drop or alter claims in
another agent's name. A ref that fails is taken in
only up to its newest commit that holds nothing bad (or not at all), its tracking ref is put back
there, and the report says which ref and why, in one line; the rest of the bus is taken in as usual.
The walk is iterative and costs what is new; on an agent chain it reads only each new commit's
parents and its time line (`message.stamped_after`), and decodes a message only when that line is late.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gitbus import ledger_shards, ledger_state, step_rules, vouch_move
from gitbus.chains import FUTURE_MS, is_ledger_chain, is_sync_merge, read_message
from gitbus.errors import GitbusError, Unreadable
from gitbus.gitfiles import Oid, RefMoved
from gitbus.gitobjects import commits_read_once
from gitbus.ids import (
    AGENTS_PREFIX,
    BUS_PREFIX,
    LEDGER_REF,
    LEDGERS_PREFIX,
    MAIN_LEDGER,
    agent_name,
    ledger_ref,
)
from gitbus.inert import inert
from gitbus.message import stamped_after
from gitbus.request_lookup import RequestLookup

if TYPE_CHECKING:
    from gitbus.git import Repository


@dataclass(frozen=True)
class Refusal:
    """A remote bus ref sync would not take in as it stands: which, why, and how far it went."""

    ref: str  # the local bus ref, e.g. refs/bus/agents/bob
    remote: str
    reason: str
    kept: Oid | None  # the tracking ref now (what was taken in), None: nothing
    fetched: Oid | None = None  # what the remote holds there, which was refused

    def line(self) -> str:
        upto = f"; taken in up to {self.kept[:12]}" if self.kept else ""
        return inert(f"refused {self.ref} from {self.remote}: {self.reason}{upto}", 400)


def check(
    repo: Repository,
    remote: str,
    ref: str,
    tracking_ref: str,
    before: Oid | None,
    now_ms: int | None = None,
    require_signed: bool = False,
    stone_before: Oid | None = None,
) -> Refusal | None:
    """Vouch for the fetched `tracking_ref` (which held `before` until the fetch), or refuse it and
    put the tracking ref back to what can be taken in. With `require_signed`, every new commit must
    also carry a signature git verifies as good, by a signer named as its sender (see `signed_by`).
    `stone_before`: what this side's `refs/bus/ledger` held until the fetch (for the main ledger:
    whether this clone had taken a move of the remote's in already)."""
    after = repo.ref(tracking_ref)
    if after is None or after == before:
        return None
    kind = repo.object_kind(after)
    if ref == LEDGER_REF and (kind == "blob" or (before is not None and repo.object_kind(before) == "blob")):
        why = vouch_move.moved_problem(repo, tracking_ref, before, after)
        return _put_back(repo, remote, ref, tracking_ref, after, before, why) if why else None
    if kind != "commit":
        what = f"it points at a {kind}, not a commit" if kind else "it points at a missing object"
        return _put_back(repo, remote, ref, tracking_ref, after, before, what)
    if ref == LEDGER_REF and any(not t.endswith("/main") for t in repo.refs(tracking_ref + "s/")):
        # A claim shard is only made once the tombstone is there (a migration pushes `ledgers/main`
        # first, then the tombstone): a single ledger beside one is a tombstone replaced, and taking
        # it would hide every claim the shards hold.
        why = (
            f"it holds a single ledger beside the claim shards {LEDGERS_PREFIX}*: the tombstone was replaced"
        )
        return _put_back(repo, remote, ref, tracking_ref, after, before, why)
    if before is not None and repo.object_kind(before) == "commit" and not _keeps(repo, ref, before, after):
        return _put_back(
            repo,
            remote,
            ref,
            tracking_ref,
            after,
            before,
            f"its history was rewritten: it no longer contains {before[:12]}, fetched from it before",
        )
    stops = {o for o in (before, repo.ref(ref)) if o is not None}
    signatures = None
    if require_signed:
        hide = [o for o in stops if repo.object_kind(o) == "commit"]
        signatures = repo.signers(after, hide)
    if not ref.startswith(BUS_PREFIX):  # the notes: a commit, never rewritten; their text is no message
        unsigned = _unsigned_notes(signatures) if signatures is not None else None
        return _put_back(repo, remote, ref, tracking_ref, after, before, unsigned) if unsigned else None
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    root = tracking_ref[: len(tracking_ref) - len(ref) + len(BUS_PREFIX)]
    # A long agent chain is read once, commit by commit: libgit2 need not keep them (`commits_read_once`).
    once = commits_read_once() if ref.startswith(AGENTS_PREFIX) and signatures is None else nullcontext()
    with once:
        bad, keep = _walk(repo, ref, after, stops, now, signatures, root, stone_before)
    if bad is None:
        return None
    return _put_back(repo, remote, ref, tracking_ref, after, keep if keep is not None else before, bad)


def _keeps(repo: Repository, ref: str, old: Oid, tip: Oid) -> bool:
    """True when `tip` still holds `old`: as an ancestor, and on a ledger by first parents."""
    return _on_first_parents(repo, old, tip) if is_ledger_chain(ref) else repo.is_ancestor(old, tip)


def _on_first_parents(repo: Repository, old: Oid, tip: Oid) -> bool:
    """True when ledger commit `old` is reached from `tip` by first parents: the ledger is one line
    of steps, so an old tip reached only through a merge's other parent was dropped from its state."""
    at: Oid | None = tip
    while at is not None and at != old:  # iterative; each step is a new commit the walk reads anyway
        try:
            parents = repo.read_commit(at).parents
        except Unreadable:
            return False
        at = parents[0] if parents else None
    return at == old


def signed_by(signer: str, sender: str) -> bool:
    """True when git's signer name `signer` (`%GS`) names agent `sender`: the SSH principal in
    `gpg.ssh.allowedSignersFile` is the agent name (or `<name>@gitbus.invalid`), or the OpenPGP user
    id's address is `<name>@gitbus.invalid`."""
    return signer in (sender, f"{sender}@gitbus.invalid") or signer.endswith(f"<{sender}@gitbus.invalid>")


def _unsigned(signatures: Mapping[Oid, tuple[str, str]], oid: Oid, sender: str | None) -> str | None:
    """Why commit `oid` fails the signature requirement, or None."""
    verdict, signer = signatures.get(oid, ("N", ""))
    if verdict == "N":
        return "an unsigned commit (this clone requires signatures: gitbus config require_signed)"
    if verdict != "G":
        return f"a commit whose signature git does not verify as good (%G? = {verdict})"
    if sender is not None and not signed_by(signer, sender):
        return f"a message from {sender} signed by {signer or 'an unnamed key'}"
    return None


def _unsigned_notes(signatures: Mapping[Oid, tuple[str, str]]) -> str | None:
    """Why new notes commits fail the signature requirement, or None. A notes commit names no
    sender (each note inside names its agent), so any signer git verifies as good will do."""
    for oid, (verdict, _) in signatures.items():
        if verdict != "G":
            why = _unsigned(signatures, oid, None) or "an unsigned commit"
            return f"{why.rstrip('.')} at {oid[:12]}"
    return None


def _walk(
    repo: Repository,
    ref: str,
    tip: Oid,
    stops: set[Oid],
    now_ms: int,
    signatures: Mapping[Oid, tuple[str, str]] | None = None,
    root: str = BUS_PREFIX,
    stone_before: Oid | None = None,
) -> tuple[str | None, Oid | None]:
    """Check every commit reachable from `tip` and not from `stops`: (why the first bad one is bad,
    or None; the newest first-parent commit from `tip` with nothing bad below it, or None). `root`
    is where the ref's side keeps its ledgers: a claim shard's first commit builds on the claims its
    side's tombstone carries."""
    parents: dict[Oid, tuple[Oid, ...]] = {}
    bad: dict[Oid, str] = {}
    relaxed: dict[Oid, str] = {}  # main steps after this clone's own move, before the remote's
    owner = ref[len(AGENTS_PREFIX) :] if ref.startswith(AGENTS_PREFIX) else None
    lean = owner is not None and signatures is None  # then only a stamp far ahead can be bad (below)
    requests = RequestLookup(repo, root)  # what a take names, looked up only for takes
    todo = [tip]
    while todo:  # iterative: any number of commits in a row
        oid = todo.pop()
        if oid in parents or oid in stops:
            continue
        try:
            if lean:  # of nearly every commit, its parents and its time line are all that is read
                links, text = repo.read_links(oid)
                if not stamped_after(text, now_ms + FUTURE_MS):
                    parents[oid] = links
                    todo.extend(links)
                    continue  # as the checks below would: a sync merge, or nothing stamped far ahead
            commit = repo.read_commit(oid)
        except Unreadable as e:
            parents[oid] = ()
            bad[oid] = str(e)
            continue
        parents[oid] = commit.parents
        todo.extend(commit.parents)
        if owner is not None and is_sync_merge(commit):
            # A sync merge joins two histories of one agent's chain: only that agent writes one.
            unsigned = _unsigned(signatures, oid, owner) if signatures is not None else None
            if unsigned:
                bad[oid] = unsigned
            continue
        if owner is not None and signatures is None and not stamped_after(commit.message, now_ms + FUTURE_MS):
            continue  # on an agent chain only a stamp far ahead is refused: nothing here can be
        msg = read_message(repo, commit, ref, parts=True)
        if msg is None and not is_ledger_chain(ref):
            # Not a message gitbus takes on this agent chain (a foreign commit, a newer format
            # version, a forged sender): every reader skips it and counts it, so it is taken in as
            # it is. Refusing it would stop the chain there, and every later message of its owner.
            # The ledger is different: its state is its tip's tree, so only steps are taken there.
            unsigned = _unsigned(signatures, oid, owner) if signatures is not None else None
            if unsigned:
                bad[oid] = unsigned
            continue
        unsigned = _unsigned(signatures, oid, msg.sender if msg else None) if signatures is not None else None
        if msg is not None and unsigned:
            bad[oid] = unsigned
        elif msg is None:
            bad[oid] = repo.skipped.get(oid, "not a gitbus message")
            for prefix in ("A bus commit ", "A bus message "):  # message.decode's reasons, as one clause
                if bad[oid].startswith(prefix):
                    bad[oid] = "a commit that " + bad[oid][len(prefix) :].rstrip(".")
        elif msg.time > now_ms + FUTURE_MS:
            bad[oid] = f"a message stamped more than a day ahead of this machine's clock ({msg.id})"
        elif ref == LEDGER_REF:
            why = step_rules.problem(repo, commit, msg, now_ms, find_request=requests)
            if why is not None:
                bad[oid] = why
        elif ref.startswith(LEDGERS_PREFIX):
            carried, why = None, None
            if not commit.parents and ref != MAIN_LEDGER:
                side = ledger_state.read_tips(repo, root)
                if side.broken is not None:  # what it builds on is unknown: vouched for once it is known
                    why = f"it builds on the claims {LEDGER_REF} carries, and {side.broken}"
                carried = ledger_shards.carried(repo, side.ended, ref)
            why = why or step_rules.problem(repo, commit, msg, now_ms, ref, carried, requests)
            if why is None and ref == MAIN_LEDGER:
                why, after_ours = vouch_move.claims_after_move(repo, commit, msg)
                if after_ours and vouch_move.before_their_move(repo, commit, root, stone_before):
                    relaxed[oid], why = why or "", None
            if why is not None:
                bad[oid] = why
    if relaxed and (bad or not vouch_move.their_move_stands(repo, root, tip, stone_before)):
        bad.update(relaxed)  # taken on the strength of a move that will not be vouched for: not at all
    if not bad:
        return None, None
    tainted = _descendants(parents, set(bad))
    at: Oid | None = tip
    while at is not None and at in tainted:
        first = parents.get(at, ())
        at = first[0] if first else None
    worst = next(iter(bad.items()))
    more = f" and {len(bad) - 1} more bad commit(s)" if len(bad) > 1 else ""
    return f"{worst[1].rstrip('.')} at {worst[0][:12]}{more}", at


def _descendants(parents: Mapping[Oid, tuple[Oid, ...]], roots: set[Oid]) -> set[Oid]:
    """`roots` and every walked commit that has one of them as an ancestor."""
    children: dict[Oid, list[Oid]] = {}
    for child, ps in parents.items():
        for p in ps:
            children.setdefault(p, []).append(child)
    out, todo = set(roots), list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _put_back(
    repo: Repository,
    remote: str,
    ref: str,
    tracking_ref: str,
    fetched: Oid,
    keep: Oid | None,
    reason: str,
) -> Refusal:
    """Point the tracking ref back at `keep` (what was vouched for), naming the value it replaces."""
    try:
        if keep is None:
            repo.delete_ref(tracking_ref, fetched)
        else:
            repo.update_ref(tracking_ref, keep, fetched, "gitbus sync: refused what came after")
    except RefMoved:
        pass  # another fetch moved it meanwhile; it is checked again at its own sync
    return Refusal(ref, remote, reason, keep, fetched)


def bus_ref_of(tracking_prefix: str, tracking_ref: str) -> str | None:
    """The local bus ref a tracking ref stands for, or None when gitbus takes no such ref."""
    rest = tracking_ref[len(tracking_prefix) :]
    if rest == LEDGER_REF[len(BUS_PREFIX) :]:
        return LEDGER_REF
    if rest.startswith("ledgers/"):
        return ledger_ref(rest[len("ledgers/") :])
    if rest.startswith("agents/"):
        try:
            return AGENTS_PREFIX + agent_name(rest[len("agents/") :])
        except GitbusError:  # a name no agent can have is simply not ours
            return None
    return None
