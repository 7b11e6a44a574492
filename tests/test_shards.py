"""Sharded ledgers: claims on unrelated top folders live on their own refs, a step on several shards
is one step, and the single ledger of an older gitbus is moved without losing a claim.

Real repositories, real clones over file://, real git; an older gitbus is the project's own code
from before the shards, taken from git history.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gitbus import ledger_cas, ledger_shards, ledger_state, remote, remote_fetch, steps, sync
from gitbus.bus import Bus
from gitbus.claims import Claim
from gitbus.clock import FakeClock
from gitbus.errors import ClaimConflict, GitbusError
from gitbus.git import Oid, Repository
from gitbus.ids import LEDGER_REF, LEDGERS_PREFIX, MAIN_LEDGER, AgentName, MessageId
from gitbus.ledger_shards import shard_of_path, tombstone
from gitbus.message import Kind, Message, decode, encode
from gitbus.remote import RemoteError

from .conftest import git, raw_git
from .test_cli import gb
from .test_sync import Net, clone, offline, sharing

# The last commit of gitbus with one ledger ref: an older gitbus a bus may still meet.
BEFORE_SHARDS = "951810d"
SRC, DOCS = shard_of_path("src/"), shard_of_path("docs/")
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def ledgers(path: Path) -> dict[str, str]:
    """Every ref under refs/bus/ledgers/ and refs/bus/ledger, by plain git."""
    out = git(
        path, "for-each-ref", "--format=%(refname) %(objectname)", "refs/bus/ledger", "refs/bus/ledgers"
    )
    return dict(line.split() for line in out.splitlines())


def as_single_ledger(path: Path) -> str:
    """Lay this clone's ledgers out as a gitbus before shards did: its one claim step becomes the
    single ledger `refs/bus/ledger`, and no ledger has moved. Returns that commit."""
    refs = ledgers(path)
    steps = {r: o for r, o in refs.items() if r.startswith(LEDGERS_PREFIX)}
    assert len(steps) == 1, steps
    ((shard, commit),) = steps.items()
    git(path, "update-ref", LEDGER_REF, commit)
    git(path, "update-ref", "-d", shard)
    return commit


def single_ledger_on_remote(tmp_path: Path, clock: FakeClock) -> tuple[Net, Bus, str]:
    """A remote whose single ledger holds alice's claim on `docs/`, as a gitbus before shards left
    it (alice's clone has no bus remote yet); returns that commit too."""
    net = Net.make(tmp_path)
    a = net.clones[0]
    alice = sharing(a, "alice", clock, remote=None)
    alice.claim(["docs/"])
    end = as_single_ledger(a)
    git(
        a, "push", "-q", "origin", f"{LEDGER_REF}:{LEDGER_REF}", "refs/bus/agents/alice:refs/bus/agents/alice"
    )
    return net, alice, end


def counted_listings(repo: Repository) -> list[int]:
    """Count the folder listings `repo` makes from now on (each a tree git opens)."""
    calls = [0]
    original = repo.tree_list

    def spy(tree: Oid, path: str) -> list[tuple[str, str]]:
        calls[0] += 1
        return original(tree, path)

    repo.tree_list = spy  # type: ignore[method-assign]
    return calls


def offline_on_two_shards(tmp_path: Path, clock: FakeClock) -> tuple[Net, Bus, Bus, Message]:
    """alice and bob sharing a remote, and alice's offline claim of `src/` and `docs/` (one step,
    its first commit on the `docs/` shard), not yet synced."""
    net = Net.make(tmp_path)
    alice, bob = net.pair(clock)
    sync.sync(alice.repo, "origin")
    return net, alice, bob, offline(alice).claim(["src/", "docs/"])


def test_the_two_folders_these_tests_use_fall_on_different_shards() -> None:
    assert SRC != DOCS and SRC == shard_of_path("SRC/x.py") == shard_of_path("src")


def test_claims_on_unrelated_top_folders_are_decided_on_their_own_ledgers(
    repo: Path, clock: FakeClock
) -> None:
    a, b = Bus.open(repo, "a", clock), Bus.open(repo, "b", clock)
    a.claim(["src/"])
    b.claim(["docs/"])
    refs = ledgers(repo)
    assert {SRC, DOCS} <= set(refs) and MAIN_LEDGER not in refs
    assert git(repo, "ls-tree", "-r", "--name-only", SRC).split() == ["claims/_src/@"]
    assert git(repo, "ls-tree", "-r", "--name-only", DOCS).split() == ["claims/_docs/@"]
    with pytest.raises(ClaimConflict, match="a holds src/"):
        b.claim(["SRC/main.py"])  # the same folder in another case: the same shard, refused there
    assert ledgers(repo) == refs


def test_a_claim_on_several_shards_is_one_step_shown_once(repo: Path, clock: FakeClock) -> None:
    a, b = Bus.open(repo, "a", clock), Bus.open(repo, "b", clock)
    msg = a.claim(["src/", "docs/"])
    lead, part = (decode(git(repo, "log", "-1", "--format=%B", ref)) for ref in sorted([SRC, DOCS]))
    assert lead.id == msg.id and set(lead.paths) == {"src/", "docs/"}
    assert part.id != msg.id and part.get("part") == msg.id and len(part.paths) == 1
    assert [m.id for m in b.log(kinds=["claim"])] == [msg.id]
    assert {c.path for c in b.claims()} == {"src/", "docs/"}
    with pytest.raises(ClaimConflict):
        b.claim(["docs/guide.md"])
    a.release(["src/", "docs/"])
    assert b.claims() == []
    assert git(repo, "ls-tree", "-r", SRC) == "" and git(repo, "ls-tree", "-r", DOCS) == ""


def test_a_claim_refused_on_one_shard_writes_on_none(repo: Path, clock: FakeClock) -> None:
    a, b = Bus.open(repo, "a", clock), Bus.open(repo, "b", clock)
    b.claim(["docs/"])
    before = ledgers(repo)
    with pytest.raises(ClaimConflict, match="b holds docs/"):
        a.claim(["src/", "docs/guide.md"])
    assert ledgers(repo) == before and SRC not in before


def test_the_single_ledger_moves_at_the_first_step_and_its_claims_are_carried(
    repo: Path, clock: FakeClock
) -> None:
    old = Bus.open(repo, "old", clock)
    old.claim(["docs/"])
    end = as_single_ledger(repo)
    new = Bus.open(repo, "new", clock)
    assert [c.path for c in new.claims()] == ["docs/"]  # read before anything moved
    with pytest.raises(ClaimConflict, match="old holds docs/"):
        new.claim(["docs/guide.md"])
    assert ledgers(repo) == {LEDGER_REF: end}  # a refused step moves nothing
    new.claim(["src/"])
    refs = ledgers(repo)
    assert refs[MAIN_LEDGER] == end and DOCS not in refs
    assert git(repo, "cat-file", "-t", LEDGER_REF).strip() == "blob"
    assert git(repo, "cat-file", "blob", LEDGER_REF).encode() == tombstone(
        Repository.open(repo).ref(MAIN_LEDGER)
    )
    with pytest.raises(ClaimConflict, match="old holds docs/"):
        new.claim(["docs/guide.md"])  # carried
    old.release(["docs/"])  # the shard's first commit builds on what it carried
    assert [c.path for c in new.claims()] == ["src/"]
    assert git(repo, "ls-tree", "-r", DOCS) == ""
    assert [m.kind for m in new.log()].count(Kind.CLAIM) == 2  # the old step is still in the history, once


def _before_shards(tmp_path: Path) -> Path:
    """The gitbus package from before the shards, from this checkout's git history."""
    here = Path(__file__).resolve().parents[1]
    found = subprocess.run(
        ["git", "-C", str(here), "cat-file", "-e", f"{BEFORE_SHARDS}^{{commit}}"], check=False
    )
    if found.returncode != 0:
        pytest.skip(f"this checkout's history lacks {BEFORE_SHARDS}, the gitbus before shards")
    dest = tmp_path / "older-gitbus"
    dest.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(here), "archive", BEFORE_SHARDS, "gitbus"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def test_an_older_gitbus_is_refused_in_one_line_once_the_ledger_moved(
    tmp_path: Path, clock: FakeClock
) -> None:
    older = _before_shards(tmp_path)
    net = Net.make(tmp_path)
    alice = sharing(net.clones[0], "alice", clock)
    alice.claim(["src/"])  # the remote's ledger moves with this step
    on_remote = ledgers(net.bare)
    env = {**os.environ, "PYTHONPATH": str(older), "GITBUS_AGENT": "bob"}
    run = [sys.executable, "-m", "gitbus", "-C", str(net.clones[1])]
    # run from the clone: `python -m` puts the working folder first on the import path
    kw = {"env": env, "cwd": net.clones[1], "capture_output": True, "text": True, "timeout": 60}
    subprocess.run([*run, "init", "--remote", "origin"], check=True, **kw)  # type: ignore[call-overload]
    p = subprocess.run([*run, "claim", "docs/"], **kw)  # type: ignore[call-overload]
    assert p.returncode != 0 and p.stderr.count("\n") == 1, p.stderr
    assert "points at a blob" in p.stderr and "Traceback" not in p.stderr
    assert ledgers(net.bare) == on_remote  # it wrote nothing the shards would not see


def test_a_remote_single_ledger_is_moved_by_the_first_step_and_keeps_its_claims(
    tmp_path: Path, clock: FakeClock
) -> None:
    net, alice, end = single_ledger_on_remote(tmp_path, clock)
    a, b = net.clones
    bob = sharing(b, "bob", clock)
    with pytest.raises(ClaimConflict, match="alice holds docs/"):
        bob.claim(["docs/guide.md"])
    bob.claim(["src/"])
    remote = ledgers(net.bare)
    assert remote[MAIN_LEDGER] == end and SRC in remote
    assert git(net.bare, "cat-file", "blob", LEDGER_REF).encode() == tombstone(end)
    alice.init("origin")
    report = sync.sync(alice.repo, "origin")
    assert report.dropped == [] and ledgers(a) == ledgers(net.bare)
    assert {c.path for c in alice.claims()} == {"docs/", "src/"}


def test_an_offline_claim_on_two_shards_keeps_the_one_that_stands_and_tells_the_other(
    tmp_path: Path, clock: FakeClock
) -> None:
    _, alice, bob, mine = offline_on_two_shards(tmp_path, clock)
    bob.claim(["docs/"])
    report = sync.sync(alice.repo, "origin")
    assert [c.path for c in alice.claims() if c.owner == "alice"] == ["src/"]
    assert [c.path for c in bob.claims() if c.owner == "bob"] == ["docs/"]
    (note,) = report.dropped  # told once, as the step alice knows, naming what it lost
    assert note.reply_to == mine.id and note.get("dropped") == mine.id
    assert "docs/" in note.text and "bob holds docs/" in note.text
    shown = [m for m in alice.log(kinds=["claim"]) if m.sender == "alice"]
    assert [m.paths for m in shown] == [("src/",)]  # what stands of it shows in the log


def _plant(path: Path, ref: str, msg: Message, entries: dict[str, bytes]) -> str:
    """A commit by hand on `ref` (on its tip), setting `entries`: what a peer with push access can do."""
    tip = git(path, "rev-parse", ref).strip()
    index = path / ".git" / "plant-index"
    env = {"GIT_INDEX_FILE": str(index)}
    raw_git(path, "read-tree", tip, env=env)
    for where, data in entries.items():
        blob = raw_git(path, "hash-object", "-w", "--stdin", input=data)
        raw_git(path, "update-index", "--add", "--cacheinfo", f"100644,{blob},{where}", env=env)
    tree = raw_git(path, "write-tree", env=env)
    index.unlink()
    commit = raw_git(path, "commit-tree", tree, "-p", tip, input=encode(msg).encode())
    git(path, "update-ref", ref, commit, tip)
    return commit


def test_a_shard_step_that_writes_another_shards_claim_is_refused_at_sync(
    tmp_path: Path, clock: FakeClock
) -> None:
    net = Net.make(tmp_path)
    alice, bob = net.pair(clock)
    alice.claim(["src/"])
    now = clock.now_ms() + 1000
    forged = Claim("docs/", AgentName("alice"), "", now, now + 60_000, 60_000, MessageId("00000000000000f1"))
    msg = Message(forged.id, Kind.CLAIM, AgentName("alice"), AgentName("*"), "", now, ("src/", "docs/"))
    _plant(
        net.clones[0],
        SRC,
        msg,
        {"claims/_docs/@": (__import__("json").dumps(forged.to_json()) + "\n").encode()},
    )
    git(net.clones[0], "push", "-q", "origin", f"{SRC}:{SRC}")
    report = sync.sync(bob.repo, "origin")
    (refusal,) = report.refused
    assert refusal.ref == SRC and f"writes claims/_docs/@, which {SRC} does not hold" in refusal.line()
    assert [c.path for c in bob.claims()] == ["src/"]
    bob.claim(["docs/"])  # the forged claim holds nothing


def test_a_tombstone_replaced_on_the_remote_is_refused(tmp_path: Path, clock: FakeClock) -> None:
    net = Net.make(tmp_path)
    alice, bob = net.pair(clock)
    alice.claim(["src/"])
    sync.sync(bob.repo, "origin")
    assert git(net.bare, "cat-file", "blob", LEDGER_REF).encode() == tombstone(None)  # a bus born sharded
    head = Oid(git(net.clones[0], "rev-parse", "HEAD").strip())
    other = raw_git(net.clones[0], "hash-object", "-w", "--stdin", input=tombstone(head))
    git(net.clones[0], "push", "-q", "--force", "origin", f"{other}:{LEDGER_REF}")
    assert git(net.bare, "rev-parse", LEDGER_REF).strip() == other
    report = sync.sync(bob.repo, "origin")
    assert len(report.refused) == 1, (report, ledgers(net.clones[1]))
    (refusal,) = report.refused
    assert refusal.ref == LEDGER_REF and "tombstone was replaced" in refusal.line()
    with pytest.raises(ClaimConflict):
        bob.claim(["src/x"])  # nothing was lost: the ledgers stand as they were, and decide online
    bob.claim(["docs/"])  # a shard's first step leases the tombstone: the one vouched for goes back
    assert git(net.bare, "cat-file", "blob", LEDGER_REF).encode() == tombstone(None)
    assert any("replaced" in n and LEDGER_REF in n for n in bob.notices), bob.notices


def test_a_tombstone_naming_a_forged_main_is_refused_with_it(tmp_path: Path, clock: FakeClock) -> None:
    """A peer moves the ledger itself, naming a commit that releases another agent's claim: the main
    ledger is vouched for first, and the tombstone is held to what it vouched for."""
    net, _, end = single_ledger_on_remote(tmp_path, clock)
    a, b = net.clones
    bob = sharing(b, "bob", clock)
    sync.sync(bob.repo, "origin")
    now = clock.now_ms() + 1000
    release = Message(
        MessageId("00000000000000f1"), Kind.RELEASE, AgentName("mallory"), AgentName("*"), "", now, ("docs/",)
    )
    forged = raw_git(a, "commit-tree", EMPTY_TREE, "-p", end, input=encode(release).encode())
    stone = raw_git(a, "hash-object", "-w", "--stdin", input=tombstone(Oid(forged)))
    git(a, "push", "-q", "--force", "origin", f"{forged}:{MAIN_LEDGER}", f"{stone}:{LEDGER_REF}")
    report = sync.sync(bob.repo, "origin")
    assert {r.ref for r in report.refused} == {MAIN_LEDGER, LEDGER_REF}, [r.line() for r in report.refused]
    assert [(c.path, c.owner) for c in bob.claims()] == [("docs/", "alice")]
    with pytest.raises(ClaimConflict, match="alice holds docs/"):
        offline(bob).claim(["docs/x"])


def test_a_tombstone_naming_an_older_commit_than_the_last_claims_is_refused(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Naming an earlier commit of the single ledger would drop the claims granted after it: the
    tombstone must name the main ledger's last step that changed claims."""
    net = Net.make(tmp_path)
    a = net.clones[0]
    alice = sharing(a, "alice", clock, remote=None)
    alice.claim(["docs/"])
    first = as_single_ledger(a)
    alice.claim(["docs/more/"])  # a second step: laid on top of the first, as a single ledger
    step = git(a, "rev-parse", DOCS).strip()
    message = git(a, "log", "-1", "--format=%B", step).encode()
    second = raw_git(a, "commit-tree", f"{step}^{{tree}}", "-p", first, input=message)
    git(a, "update-ref", "-d", DOCS)
    git(a, "update-ref", "-d", MAIN_LEDGER)
    git(a, "update-ref", LEDGER_REF, second)  # the single ledger of two steps: first, then second
    stone = raw_git(a, "hash-object", "-w", "--stdin", input=tombstone(Oid(first)))
    git(
        a,
        "push",
        "-q",
        "origin",
        f"{second}:{MAIN_LEDGER}",
        f"{stone}:{LEDGER_REF}",
        "refs/bus/agents/alice:refs/bus/agents/alice",
    )
    carol = sharing(clone(net.url, tmp_path / "c"), "carol", clock)
    report = sync.sync(carol.repo, "origin")
    (refusal,) = report.refused
    assert refusal.ref == LEDGER_REF and "changes claims after it" in refusal.line()
    with pytest.raises(RemoteError, match="changes claims after it"):
        carol.claim(["docs/more/x"])  # decided on nothing it cannot vouch for


def test_an_online_step_beside_an_offline_step_on_several_shards_keeps_that_step_whole(
    tmp_path: Path, clock: FakeClock
) -> None:
    _, alice, bob, mine = offline_on_two_shards(tmp_path, clock)
    bob.claim(["docs/a"])
    alice.claim(["docs/b"])  # online, on one shard: the offline step is followed whole first
    sync.sync(alice.repo, "origin")
    sync.sync(bob.repo, "origin")
    held = {(c.path, c.owner) for c in bob.claims()}
    shown = {m.paths for m in bob.log(kinds=["claim"]) if m.sender == "alice"}
    assert ("docs/b", "alice") in held
    for path, owner in held:  # whatever alice holds, the log shows
        if owner == "alice":
            assert any(path in paths for paths in shown), (path, shown)
    notes = [m for m in bob.log(n=None) if m.get("dropped") == mine.id]
    assert notes and all("docs/" in m.text for m in notes)


def test_a_step_decided_again_on_two_shards_still_names_both(tmp_path: Path, clock: FakeClock) -> None:
    _, alice, bob, mine = offline_on_two_shards(tmp_path, clock)
    other = next(f"d{i}/" for i in range(100_000) if shard_of_path(f"d{i}/") == DOCS)
    bob.claim([other])  # the docs shard moves, with nothing in alice's way
    report = sync.sync(alice.repo, "origin")
    assert report.dropped == []
    sync.sync(bob.repo, "origin")
    assert {c.path for c in bob.claims() if c.owner == "alice"} == {"src/", "docs/"}
    (shown,) = [m for m in bob.log(kinds=["claim"]) if m.sender == "alice"]
    assert shown.id == mine.id and set(shown.paths) == {"src/", "docs/"}


def test_a_shard_built_on_a_forged_tombstone_is_refused_with_it(tmp_path: Path, clock: FakeClock) -> None:
    """A peer swaps the tombstone for one that carries nothing and starts the `docs/` shard empty,
    dropping alice's carried claim: the shard is held to the tombstone as vouched for, after it."""
    net, _, end = single_ledger_on_remote(tmp_path, clock)
    a, b = net.clones
    bob = sharing(b, "bob", clock)
    bob.claim(["src/"])  # the remote's ledger moves; alice's docs/ is carried from `end`
    assert DOCS not in ledgers(net.bare) and ledgers(net.bare)[MAIN_LEDGER] == end
    now = clock.now_ms() + 1000
    release = Message(
        MessageId("00000000000000f1"), Kind.RELEASE, AgentName("mallory"), AgentName("*"), "", now, ("docs/",)
    )
    empty = raw_git(a, "commit-tree", EMPTY_TREE, input=encode(release).encode())  # the shard's first
    stone = raw_git(a, "hash-object", "-w", "--stdin", input=tombstone(None))
    git(a, "push", "-q", "--force", "origin", f"{empty}:{DOCS}", f"{stone}:{LEDGER_REF}")
    report = sync.sync(bob.repo, "origin")
    assert {r.ref for r in report.refused} == {LEDGER_REF, DOCS}, [r.line() for r in report.refused]
    with pytest.raises(ClaimConflict, match="alice holds docs/"):
        offline(bob).claim(["docs/x"])


def test_a_claim_among_many_carried_top_folders_reads_only_its_own(tmp_path: Path, clock: FakeClock) -> None:
    """Claims the single ledger held under 300 top folders are carried into as many shards; a claim
    reads its own shard's folder, never every carried shard (it did: quadratic in top folders)."""
    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", str(repo))
    git(repo, "commit", "-q", "--allow-empty", "-m", "init")
    old = Bus.open(repo, "old", clock)
    old.claim([f"top{i}/" for i in range(300)])
    one = Repository.open(repo)
    shards = [r for r in one.refs(LEDGERS_PREFIX) if r != MAIN_LEDGER]
    lead = next(r for r in shards if decode(git(repo, "log", "-1", "--format=%B", r)).get("part") is None)
    # one single ledger holding all 300, as a gitbus before shards wrote it (`git mktree`)
    lines = [
        line.replace("\tclaims/", "\t")
        for r in shards
        for line in git(repo, "ls-tree", r, "claims/").splitlines()
    ]
    claims_tree = raw_git(repo, "mktree", input="\n".join(lines).encode() + b"\n")
    root_tree = raw_git(repo, "mktree", input=f"040000 tree {claims_tree}\tclaims\n".encode())
    message = git(repo, "log", "-1", "--format=%B", lead).encode()
    single = raw_git(repo, "commit-tree", root_tree, input=message)
    for r in [*shards, MAIN_LEDGER]:
        git(repo, "update-ref", "-d", r)
    git(repo, "update-ref", LEDGER_REF, single)
    new = Bus.open(repo, "new", clock)
    assert len(new.claims()) == 300
    listed = counted_listings(new.repo)
    new.claim(["elsewhere/"])
    with pytest.raises(ClaimConflict, match="old holds top7/"):
        new.claim(["top7/x"])
    assert listed[0] <= 40, f"{listed[0]} folder listings for two claims among 300 carried top folders"


def test_a_ref_under_ledgers_that_names_no_ledger_is_ignored_and_named(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A peer pushes refs under `refs/bus/ledgers/` that no gitbus writes: sync takes none of them in,
    counts them, and says which in one line each; claims go on."""
    net = Net.make(tmp_path)
    alice, bob = net.pair(clock)
    alice.claim(["src/"])
    tip = git(net.clones[0], "rev-parse", SRC).strip()
    git(
        net.clones[0],
        "push",
        "-q",
        "origin",
        f"{tip}:refs/bus/ledgers/nothex",
        f"{tip}:refs/bus/ledgers/abcd/x",
    )
    report = sync.sync(bob.repo, "origin")
    junk = {"refs/bus/ledgers/nothex", "refs/bus/ledgers/abcd/x"}
    assert set(report.ignored) == junk and report.refused == []
    assert not git(net.clones[1], "for-each-ref", "refs/bus/ledgers/nothex", "refs/bus/ledgers/abcd")
    code, _, err = gb(net.clones[1], "bob", "sync")
    assert code == 0 and "ignored refs/bus/ledgers/nothex: not a ledger" in err, err
    with pytest.raises(ClaimConflict, match="alice holds src/"):
        bob.claim(["src/x"])


def test_a_migration_half_pushed_to_a_host_without_atomic_push_is_finished_by_a_new_clone(
    tmp_path: Path, clock: FakeClock
) -> None:
    """`migrate_remote` pushes `ledgers/main` first and the tombstone second where the host offers no
    atomic push; if the second push failed, the remote holds the single ledger E beside `ledgers/main`
    = E. That is no replaced tombstone: a new clone takes it in and moves it."""
    net, _alice, end = single_ledger_on_remote(tmp_path, clock)
    git(net.clones[0], "push", "-q", "origin", f"{end}:{MAIN_LEDGER}")
    bob = sharing(net.clones[1], "bob", clock)
    report = sync.sync(bob.repo, "origin")
    assert not report.refused, report.refused
    with pytest.raises(ClaimConflict):
        bob.claim(["docs/x.md"])  # alice's claim, carried
    bob.claim(["src/"])
    assert git(net.bare, "cat-file", "-t", LEDGER_REF).strip() == "blob"  # moved


@pytest.mark.parametrize("damaged", ["a shard", "the tombstone", "packed-refs"])
def test_a_step_on_a_damaged_ledger_ref_names_that_ref_in_its_hint(
    repo: Path, clock: FakeClock, damaged: str
) -> None:
    """A step decided on ledgers one of whose refs is damaged is refused, and the hint on putting the
    last good value back names the ref that is damaged: not the tombstone when a shard is; and no
    ref command at all when `packed-refs` itself cannot be read (its own repair is said)."""
    a = Bus.open(repo, "a", clock)
    a.claim(["src/"])
    a.claim(["docs/"])
    common = a.repo.common_dir
    bad = {"a shard": SRC, "the tombstone": LEDGER_REF, "packed-refs": "packed-refs"}[damaged]
    if damaged == "packed-refs":
        git(repo, "pack-refs", "--all", "--prune")
        packed = common / "packed-refs"
        packed.write_bytes(packed.read_bytes().replace(b"\n", b"\r\n"))  # git reads no CRLF
    else:
        (common / bad).write_bytes(b"")  # emptied: a crash, a full disk
    reader = Repository.open(repo)
    state = ledger_state.current(reader)
    assert state.tips.broken is not None
    change = steps.Claim(AgentName("a"), ("lib/",)).decide(
        state, clock.now_ms(), MessageId("0123456789abcdef")
    )
    with pytest.raises(GitbusError) as refused:
        ledger_cas.write_change(reader, state, change)
    text = str(refused.value)
    assert "\n" not in text and "no claim can be decided" in text, text
    hint = text[text.index("no claim can be decided") :]
    if damaged == "packed-refs":
        assert "refs/bus/" not in hint and "CRLF" in text, text
    else:
        assert hint.count(bad) == 2 and f"{bad} <" not in hint, hint  # put back into it; its reflog
        if bad != LEDGER_REF:
            assert f"{LEDGER_REF} " not in hint, hint


@pytest.mark.parametrize("kind", ["a tree", "a missing object"])
def test_a_tombstone_pointing_at_no_blob_keeps_its_repair_hint(
    repo: Path, clock: FakeClock, kind: str
) -> None:
    """The tombstone pointed at a tree (or at nothing there) is no damaged file but a wrong value:
    the refusal still says to put the last good one back into it."""
    a = Bus.open(repo, "a", clock)
    a.claim(["src/"])
    common = a.repo.common_dir
    target = git(repo, "rev-parse", f"{SRC}^{{tree}}").strip() if kind == "a tree" else "1" * 40
    (common / LEDGER_REF).write_text(target + "\n")
    with pytest.raises(GitbusError) as refused:
        Bus.open(repo, "a", clock).claim(["lib/"])
    text = str(refused.value)
    assert "\n" not in text and f"Put the last good one back into {LEDGER_REF}" in text, text


def older_step_between_two_moves(tmp_path: Path, clock: FakeClock, mine: str = "src/") -> tuple[Net, Bus]:
    """Mixed versions: alice moves her single ledger offline (her claim on `mine`); an older gitbus
    then adds bob's `lib/` claim to the remote's single ledger, and carol's newer gitbus moves the
    remote after that step (her `web/` claim). Returns the net and alice, not yet synced."""
    older = _before_shards(tmp_path)
    net, alice, end = single_ledger_on_remote(tmp_path, clock)
    a, b = net.clones
    alice.init("origin")
    sync.sync(alice.repo, "origin")  # she took the remote's single ledger in, at `end`
    offline(alice).claim([mine])  # her ledger moves here, at `end`
    assert git(a, "cat-file", "blob", LEDGER_REF).encode() == tombstone(Oid(end))
    env = {**os.environ, "PYTHONPATH": str(older), "GITBUS_AGENT": "bob"}
    run = [sys.executable, "-m", "gitbus", "-C", str(b)]
    kw = {"env": env, "cwd": b, "capture_output": True, "text": True, "timeout": 60}
    subprocess.run([*run, "init", "--remote", "origin"], check=True, **kw)  # type: ignore[call-overload]
    p = subprocess.run([*run, "claim", "lib/"], **kw)  # type: ignore[call-overload]
    assert p.returncode == 0, p.stderr
    stepped = git(net.bare, "rev-parse", LEDGER_REF).strip()  # the older gitbus's step, after `end`
    assert git(net.bare, "rev-parse", f"{stepped}^").strip() == end
    carol = sharing(clone(net.url, tmp_path / "c"), "carol", clock)
    carol.claim(["web/"])  # the remote's ledger moves here, after the older gitbus's step
    assert git(net.bare, "cat-file", "blob", LEDGER_REF).encode() == tombstone(Oid(stepped))
    return net, alice


def test_a_sync_settles_after_an_older_gitbus_stepped_between_two_moves(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The older gitbus's step came before the move that stands (the remote's): alice's sync takes
    it in and settles, her offline claim decided again on the remote's ledgers, nothing lost."""
    net, alice = older_step_between_two_moves(tmp_path, clock)
    report = sync.sync(alice.repo, "origin")
    assert report.refused == [] and report.dropped == [], [r.line() for r in report.refused]
    assert ledgers(net.clones[0]) == ledgers(net.bare)
    held = {(c.path, c.owner) for c in alice.claims()}
    assert held == {("docs/", "alice"), ("src/", "alice"), ("lib/", "bob"), ("web/", "carol")}, held


def test_a_shard_made_while_sync_swaps_the_tombstone_is_decided_again(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A grant on a new shard, made on this clone while its sync rebuilt the ledgers on the remote's
    tombstone, was decided on the claims the old tombstone carries (no `lib/` claim). Swapping the
    tombstone under it would let it stand beside bob's `lib/`: the swap sees the new shard, and the
    grant is decided again, and dropped."""
    net, alice = older_step_between_two_moves(tmp_path, clock)
    a = net.clones[0]
    real = alice.repo.update_refs
    raced: list[Message] = []

    def racing(changes: Any, log: str, check: Any = None) -> None:
        if not raced and any(r == LEDGER_REF for r, _, _ in changes):  # the rebuild's swap, about to lock
            raced.append(offline(Bus.open(a, "dave", clock)).claim(["lib/x.py"]))
        real(changes, log, check)

    alice.repo.update_refs = racing  # type: ignore[method-assign]
    report = sync.sync(alice.repo, "origin")
    assert raced, "the race was not run"
    assert [m.get("dropped") for m in report.dropped] == [raced[0].id], report.dropped
    holders = {(c.path, c.owner) for c in Bus.open(a, "dave", clock).claims()}
    assert ("lib/", "bob") in holders and not any(p.startswith("lib/x") for p, _ in holders), holders


@pytest.mark.parametrize("stray", [False, True], ids=["plain", "a stray ref under ledgers/"])
def test_an_offline_claim_under_a_claim_the_remote_s_move_carries_is_dropped_never_pushed(
    tmp_path: Path, clock: FakeClock, stray: bool
) -> None:
    """alice's offline `lib/a.py` was decided on her own tombstone's claims; the remote's carries
    bob's `lib/`. Her claim is decided again there and dropped, never pushed, and a ref under
    refs/bus/ledgers/ that names no ledger (read by no one) changes nothing of that."""
    net, alice = older_step_between_two_moves(tmp_path, clock, mine="lib/a.py")
    a = net.clones[0]
    if stray:
        git(a, "update-ref", f"{LEDGERS_PREFIX}nothex", git(a, "rev-parse", MAIN_LEDGER).strip())
    report = sync.sync(alice.repo, "origin")
    assert [m.paths for m in report.dropped] == [("lib/a.py",)], report.dropped
    held = {(c.path, c.owner) for c in alice.claims()}
    assert ("lib/", "bob") in held and not any(p == "lib/a.py" for p, _ in held), held
    assert git(a, "cat-file", "blob", LEDGER_REF) == git(net.bare, "cat-file", "blob", LEDGER_REF)
    fresh = sharing(clone(net.url, tmp_path / "d"), "dave", clock)
    assert sync.sync(fresh.repo, "origin").refused == []
    assert {(c.path, c.owner) for c in fresh.claims()} == held


def test_main_steps_taken_on_a_tombstone_that_is_then_refused_are_not_taken_at_all(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The main ledger is vouched for before the tombstone. A peer offers main = E, K (a valid
    claim), W (a forged release) with a tombstone naming W, to a clone that moved at E offline:
    K must not stand on the strength of a tombstone that is refused, or the clone could never take
    the honest ledgers in again once they are put back."""
    net, alice, _ = single_ledger_on_remote(tmp_path, clock)
    a, b = net.clones
    alice.init("origin")
    sync.sync(alice.repo, "origin")
    offline(alice).claim(["src/"])  # alice's ledger moves at the remote's single ledger tip
    bob = sharing(b, "bob", clock)
    bob.claim(["web/"])  # the remote moves at `end` too
    honest = ledgers(net.bare)
    git(b, "update-ref", "refs/forged", git(b, "rev-parse", MAIN_LEDGER).strip())
    now = clock.now_ms() + 1000
    c = Claim("zzz/", AgentName("mallory"), "", now, now + 60_000, 60_000, MessageId("00000000000000e1"))
    claim = Message(c.id, Kind.CLAIM, AgentName("mallory"), AgentName("*"), "", now, ("zzz/",))
    k = _plant(b, "refs/forged", claim, {"claims/_zzz/@": (json.dumps(c.to_json()) + "\n").encode()})
    mallory, everyone = AgentName("mallory"), AgentName("*")
    release = Message(MessageId("00000000000000f1"), Kind.RELEASE, mallory, everyone, "", now + 1, ("docs/",))
    w = raw_git(b, "commit-tree", EMPTY_TREE, "-p", k, input=encode(release).encode())  # drops every claim
    stone = raw_git(b, "hash-object", "-w", "--stdin", input=tombstone(Oid(w)))
    git(b, "push", "-q", "--force", "origin", f"{w}:{MAIN_LEDGER}", f"{stone}:{LEDGER_REF}")
    with contextlib.suppress(RemoteError):  # her steps cannot go out against what she refuses
        sync.sync(alice.repo, "origin")
    vouched = "refs/gitbus/vouched/origin/bus/ledgers/main"
    assert git(a, "rev-parse", vouched).strip() != k, "K was taken in on the refused tombstone"
    git(b, "push", "-q", "--force", "origin", *[f"{o}:{r}" for r, o in honest.items()])  # put back
    report = sync.sync(alice.repo, "origin")
    assert report.refused == [], [r.line() for r in report.refused]
    assert ledgers(a) == ledgers(net.bare) and SRC in ledgers(net.bare)  # her src/ went out


def test_main_steps_taken_on_a_tombstone_that_lacks_the_single_ledger_fetched_before_are_not_taken(
    tmp_path: Path, clock: FakeClock
) -> None:
    """alice fetched the remote's single ledger at S (bob's `lib/` step) but moved her own ledger
    offline at the commit before it. A remote whose main ledger skips S (end, then mallory's claim K)
    and whose tombstone names K is refused (it lacks S); K, taken only on the strength of that
    tombstone, must be refused with it, as the tombstone's own vouching asks."""
    net, alice, end = single_ledger_on_remote(tmp_path, clock)  # alice's clone holds `end` already
    a, b = net.clones
    git(b, "fetch", "-q", "origin", f"{LEDGER_REF}:refs/single")
    now = clock.now_ms() + 1000
    lib = Claim("lib/", AgentName("bob"), "", now, now + 60_000, 60_000, MessageId("00000000000000d1"))
    step = Message(lib.id, Kind.CLAIM, AgentName("bob"), AgentName("*"), "", now, ("lib/",))
    s = _plant(b, "refs/single", step, {"claims/_lib/@": (json.dumps(lib.to_json()) + "\n").encode()})
    git(b, "push", "-q", "origin", f"{s}:{LEDGER_REF}")  # the remote's single ledger: end, then S
    alice.init("origin")
    fetched = remote.Report("origin")
    remote_fetch.fetch_vouched(alice.repo, "origin", fetched)  # fetched and vouched for, not taken in
    assert fetched.refused == [], [r.line() for r in fetched.refused]
    assert git(a, "rev-parse", "refs/gitbus/vouched/origin/bus/ledger").strip() == s
    offline(alice).claim(["src/"])  # her ledger moves at `end`, her own tip
    assert git(a, "cat-file", "blob", LEDGER_REF).encode() == tombstone(Oid(end))
    git(b, "update-ref", "refs/forged", end)
    c = Claim("zzz/", AgentName("mallory"), "", now, now + 60_000, 60_000, MessageId("00000000000000e1"))
    claim = Message(c.id, Kind.CLAIM, AgentName("mallory"), AgentName("*"), "", now, ("zzz/",))
    k = _plant(b, "refs/forged", claim, {"claims/_zzz/@": (json.dumps(c.to_json()) + "\n").encode()})
    stone = raw_git(b, "hash-object", "-w", "--stdin", input=tombstone(Oid(k)))
    git(b, "push", "-q", "--force", "origin", f"{k}:{MAIN_LEDGER}", f"{stone}:{LEDGER_REF}")
    report = remote.Report("origin")
    remote_fetch.fetch_vouched(alice.repo, "origin", report)
    lines = [r.line() for r in report.refused]
    vouched = "refs/gitbus/vouched/origin/bus/ledgers/main"
    assert git(a, "for-each-ref", "--format=%(objectname)", vouched).strip() != k, lines
    assert {r.ref for r in report.refused} == {MAIN_LEDGER, LEDGER_REF}, lines
    assert all("\n" not in line and "Traceback" not in line for line in lines), lines


def test_a_claim_shard_s_carried_state_is_read_in_its_own_repository(tmp_path: Path) -> None:
    """The carried state is a tree written into the repository that asked; another repository in the
    same process (a second clone) must get its own, never an id only the first holds."""
    a_path, b_path = tmp_path / "a", tmp_path / "b"
    for p in (a_path, b_path):
        git(tmp_path, "init", "-q", str(p))
    a, b = Repository.open(a_path), Repository.open(b_path)
    entry = a.blob(b"{}\n")
    tree = a.tree_update(None, {"claims/_docs/@": entry, "claims/_src/@": entry})
    end = a.commit(tree=tree, parents=[], message="single ledger\n", author="a", time_ms=1_700_000_000_000)
    git(a_path, "update-ref", "refs/ended", end)
    git(b_path, "fetch", "-q", str(a_path), "refs/ended:refs/ended")
    first = ledger_shards.carried(a, end, DOCS)
    second = ledger_shards.carried(b, end, DOCS)
    assert first is not None and first == second
    assert b.object_kind(second) == "tree"  # written into b as well, not only remembered from a


def test_a_tree_that_is_missing_is_never_diffed_as_empty(repo: Path) -> None:
    r = Repository.open(repo)
    tree = r.tree_update(None, {"claims/_x/@": r.blob(b"{}\n")})
    with pytest.raises(GitbusError, match="missing"):
        r.tree_diff(Oid("1" * 40), tree, 100)
