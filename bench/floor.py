"""Raw pygit2 floors: the least git work a post and a claim need, with no gitbus code in the loop.

Each floor does what any correct multi-writer append must do with libgit2: read the tip, write the
objects, then compare-and-swap the ref under its lock (`transaction()` → `lock_ref` → read → compare
→ `set_target`). Whatever gitbus spends beyond this is its own Python.
"""

from __future__ import annotations

import time
from pathlib import Path

import pygit2

_BLOB = pygit2.enums.FileMode.BLOB
_TREE = pygit2.enums.FileMode.TREE
LEDGER_REF = "refs/bus/ledgers/0000"  # one claim shard: a claim moves one ref

# About the size of what gitbus.message.encode writes for a short discovery / claim.
_POST_MESSAGE = (
    "discovery: message {i}\n\nmessage {i}\n\nGitbus-Version: 1\nGitbus-Id: {i:016x}\n"
    "Gitbus-Type: discovery\nGitbus-From: {agent}\nGitbus-To: *\nGitbus-Time: {ms}\n"
)
_CLAIM_MESSAGE = (
    "claim: pkg{i}/\n\nGitbus-Version: 1\nGitbus-Id: {i:016x}\nGitbus-Type: claim\n"
    "Gitbus-From: {agent}\nGitbus-To: *\nGitbus-Time: {ms}\nGitbus-Path: pkg{i}/\n"
    "Gitbus-Meta: expires={ms}\n"
)
_CLAIM_BLOB = (
    '{{"claimed_at": {ms}, "expires_at": {ms}, "id": "{i:016x}", "owner": "{agent}", '
    '"path": "pkg{i}/", "reason": "", "ttl_ms": 1800000}}\n'
)


class RaceLost(Exception):
    """The ref moved between the read and the compare-and-swap (never expected in one process)."""


def target(repo: pygit2.Repository, name: str) -> pygit2.Oid | None:
    """The object a direct ref points at, or None."""
    found = repo.references.get(name)
    if found is None:
        return None
    oid = found.target
    assert isinstance(oid, pygit2.Oid), f"{name} is symbolic"
    return oid


def cas(repo: pygit2.Repository, name: str, new: pygit2.Oid, expected: pygit2.Oid | None) -> None:
    """Point `name` at `new` if it still holds `expected`, deciding under the ref lock."""
    with repo.transaction() as txn:
        txn.lock_ref(name)
        if target(repo, name) != expected:
            raise RaceLost(name)
        txn.set_target(name, new, message="bench")


class PostFloor:
    """Append a message commit to one agent chain: read tip, commit (one reused tree), CAS."""

    def __init__(self, path: Path, agent: str) -> None:
        self.repo = pygit2.Repository(str(path))
        self.agent = agent
        self.email = f"{agent}@gitbus.invalid"
        self.ref = f"refs/bus/agents/{agent}"
        self.tree = self.repo.TreeBuilder().write()

    def post(self, i: int) -> None:
        repo = self.repo
        tip = target(repo, self.ref)
        ms = time.time_ns() // 1_000_000
        sig = pygit2.Signature(self.agent, self.email, ms // 1000, 0)
        message = _POST_MESSAGE.format(i=i, agent=self.agent, ms=ms)
        oid = repo.create_commit(None, sig, sig, message, self.tree, [tip] if tip else [])
        cas(repo, self.ref, oid, tip)


class ClaimFloor:
    """Grant `pkg<i>/` on a ledger laid out like gitbus's (`claims/_pkg<i>/@`), then CAS.

    Per claim: read the tip and its tree, check the slot is free, write one blob and three trees
    (slot, `claims`, root) and a commit, then the compare-and-swap.
    """

    def __init__(self, path: Path, agent: str) -> None:
        self.repo = pygit2.Repository(str(path))
        self.agent = agent
        self.email = f"{agent}@gitbus.invalid"

    def claim(self, i: int) -> None:
        repo = self.repo
        tip = target(repo, LEDGER_REF)
        root = repo[tip].peel(pygit2.Tree) if tip else None
        claims = root["claims"].peel(pygit2.Tree) if root is not None and "claims" in root else None
        slot = f"_pkg{i}"
        if claims is not None and slot in claims:
            raise RaceLost(f"pkg{i}/ is already claimed")
        ms = time.time_ns() // 1_000_000
        blob = repo.create_blob(_CLAIM_BLOB.format(i=i, agent=self.agent, ms=ms).encode())
        tb = repo.TreeBuilder()
        tb.insert("@", blob, _BLOB)
        sub = tb.write()
        cb = repo.TreeBuilder(claims) if claims is not None else repo.TreeBuilder()
        cb.insert(slot, sub, _TREE)
        claims_tree = cb.write()
        rb = repo.TreeBuilder(root) if root is not None else repo.TreeBuilder()
        rb.insert("claims", claims_tree, _TREE)
        tree = rb.write()
        sig = pygit2.Signature(self.agent, self.email, ms // 1000, 0)
        message = _CLAIM_MESSAGE.format(i=i, agent=self.agent, ms=ms)
        oid = repo.create_commit(None, sig, sig, message, tree, [tip] if tip else [])
        cas(repo, LEDGER_REF, oid, tip)
