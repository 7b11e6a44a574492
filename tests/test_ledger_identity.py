"""Who may change what on the ledger, and whose a message id is: a peer with plain git cannot plant,
drop or alter claims in another agent's name, nor take over a message by reusing its id, and a
foreign commit on the remote's ledger does not stop online claims."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gitbus.bus import Bus
from gitbus.claims import all_claims
from gitbus.git import Repository
from gitbus.ledger_state import current

from .conftest import git
from .conftest import raw_git as run_git
from .test_hostile_remote import (
    API,
    BASE_TIME,
    DOCS,
    EMPTY_TREE,
    World,
    alice_claim,
    claim_tree,
    fresh_clone,
    ledger_on_top,
    make_world,
    trailers,
    tree_without,
)
from .test_sync import gb


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def _tip(path: Path, ref: str) -> str | None:
    return Repository.open(path).ref(ref)


def _refused_and_kept(w: World, bad: str, reason: str, ref: str) -> None:
    """The honest clone refuses the peer's commit on ledger `ref` in one line and keeps its own tip
    (or none); a fresh clone takes in that ledger only up to the honest tip."""
    honest_tip = _tip(w.honest, ref)
    w.peer.push(bad, ref)
    code, _, err = gb(w.honest, "alice", "sync")
    lines = [line for line in err.splitlines() if "refs/bus/ledger" in line]
    assert code == 0 and len(lines) == 1 and ref in lines[0] and reason in lines[0], err
    assert _tip(w.honest, ref) == honest_tip
    b = fresh_clone(w, "b")
    code, _, err = gb(b, "carol", "sync")
    assert code == 0 and ref in err, err
    assert _tip(b, ref) == honest_tip
    held = {(c.owner, c.path) for c in all_claims(current(Repository.open(b)))}
    assert held == {("alice", "internal/api/")}, held


def test_a_peers_ledger_commit_planting_a_claim_in_alices_name_is_refused(world: World) -> None:
    entry = {**alice_claim(world), "path": "docs/", "expires_at": BASE_TIME * 2, "id": "00000000000000b1"}
    tree = claim_tree(world, ["claims", "_docs", "@"], entry)
    msg = trailers(kind="claim", sender="mallory", paths=("docs/",), meta=("expires=1",))
    _refused_and_kept(world, ledger_on_top(world, tree, msg, ref=DOCS), "in alice's name", DOCS)


def test_a_peers_release_of_alices_live_claim_is_refused(world: World) -> None:
    tree = tree_without(world, "claims/_internal/_api/@")
    msg = trailers(kind="release", sender="mallory", paths=("internal/api/",))
    _refused_and_kept(
        world, ledger_on_top(world, tree, msg, ref=API), "removes alice's claim on internal/api/", API
    )


def test_a_peers_claim_that_drops_alices_live_claim_is_refused(world: World) -> None:
    entry = {**alice_claim(world), "owner": "mallory", "expires_at": BASE_TIME * 2}
    tree = claim_tree(world, ["claims", "_internal", "_api", "@"], entry)
    msg = trailers(kind="claim", sender="mallory", paths=("internal/api/",), meta=("expires=1",))
    _refused_and_kept(world, ledger_on_top(world, tree, msg, ref=API), "removes alice's claim", API)


def test_a_peers_renew_of_alices_claim_is_refused(world: World) -> None:
    entry = {**alice_claim(world), "expires_at": BASE_TIME * 2}
    tree = claim_tree(world, ["claims", "_internal", "_api", "@"], entry)
    msg = trailers(kind="renew", sender="mallory", paths=("internal/api/",))
    _refused_and_kept(world, ledger_on_top(world, tree, msg, ref=API), "alice", API)


def test_a_ledger_step_with_too_many_entries_is_refused_without_reading_them_all(world: World) -> None:
    p = world.peer
    blob = p.blob(b"{}\n")
    flat = "".join(f"100644 blob {blob}\t_f{i}\n" for i in range(25_000))
    many = run_git(p.work, "mktree", input=flat.encode())
    tree = p.tree({"claims": ("tree", p.tree({"_docs": ("tree", many)}))})
    msg = trailers(kind="claim", sender="mallory", paths=("docs/",), meta=("expires=1",))
    _refused_and_kept(world, ledger_on_top(world, tree, msg, ref=DOCS), "more than 20000 entries", DOCS)


def test_a_peers_own_claim_written_as_gitbus_writes_it_is_taken_in(world: World) -> None:
    entry = {
        "path": "docs/",
        "owner": "mallory",
        "reason": "",
        "claimed_at": BASE_TIME,
        "expires_at": BASE_TIME * 2,
        "ttl_ms": 60_000,
        "id": "00000000000000b1",
    }
    tree = claim_tree(world, ["claims", "_docs", "@"], entry)
    msg = trailers(
        kind="claim", sender="mallory", paths=("docs/",), meta=("expires=1",), mid="00000000000000b1"
    )
    bad = ledger_on_top(world, tree, msg, ref=DOCS)
    world.peer.push(bad, DOCS)
    code, _, err = gb(world.honest, "alice", "sync")
    assert code == 0 and "refused" not in err, err
    assert _tip(world.honest, DOCS) == bad


def test_honest_claims_releases_and_takes_from_another_clone_are_taken_in(world: World) -> None:
    b = fresh_clone(world, "b")
    assert gb(b, "carol", "sync")[0] == 0
    carol = Bus.open(b, "carol")
    carol.claim(["docs/"], reason="writing")
    carol.renew()
    carol.release(["docs/"])
    req = Bus.open(world.honest, "alice").log(n=None, kinds=["request"])[0]
    carol.take(req.id)
    carol.done(req.id, "added")
    assert gb(b, "carol", "sync")[0] == 0
    code, _, err = gb(world.honest, "alice", "sync")
    assert code == 0 and "refused" not in err, err
    ledgers = git(b, "for-each-ref", "refs/bus/ledger", "refs/bus/ledgers/")
    assert ledgers == git(world.honest, "for-each-ref", "refs/bus/ledger", "refs/bus/ledgers/")
    assert DOCS in ledgers and "refs/bus/ledgers/main" in ledgers, ledgers


def test_an_online_claim_replaces_a_foreign_commit_on_the_remotes_ledger(world: World) -> None:
    p = world.peer
    honest_tip = _tip(world.honest, API)
    tip = p.remote_ref(API)
    assert tip is not None and tip == honest_tip
    foreign = p.commit("not a ledger step\n", (tip,), run_git(p.work, "rev-parse", f"{tip}^{{tree}}"))
    p.push(foreign, API)
    alice = Bus.open(world.honest, "alice")
    alice.claim(["internal/db/"])  # a claim on the shard the foreign commit is on
    assert len(alice.notices) == 1 and foreign[:12] in alice.notices[0], alice.notices
    assert API in alice.notices[0] and "\n" not in alice.notices[0]
    new = p.remote_ref(API)
    assert new is not None and new != foreign
    assert run_git(p.work, "rev-parse", f"{new}^") == honest_tip  # built on the last vouched step
    assert _tip(world.honest, API) == new
    b = fresh_clone(world, "b")
    code, _, err = gb(b, "carol", "sync")
    assert code == 0 and "refused" not in err, err
    held = {(c.owner, c.path) for c in all_claims(current(Repository.open(b)))}
    assert held == {("alice", "internal/api/"), ("alice", "internal/db/")}, held
    code, _, err = gb(b, "carol", "claim", "docs/")
    assert code == 0 and "Traceback" not in err, err


def test_the_command_whose_step_replaced_a_foreign_ledger_commit_says_so(world: World) -> None:
    """On stderr, in one line, for the quick path (a whole process) and the typer path alike."""
    p = world.peer
    for args in (["claim", "internal/db/"], ["release", "internal/db/"]):
        tip = p.remote_ref(API)
        assert tip is not None
        foreign = p.commit("not a ledger step\n", (tip,), run_git(p.work, "rev-parse", f"{tip}^{{tree}}"))
        p.push(foreign, API)
        if args[0] == "claim":
            r = subprocess.run(
                [sys.executable, "-m", "gitbus", "-a", "alice", *args],
                cwd=world.honest,
                capture_output=True,
                text=True,
                timeout=60,
            )
            code, err = r.returncode, r.stderr
        else:
            code, _, err = gb(world.honest, "alice", *args)
        told = [line for line in err.splitlines() if foreign[:12] in line]
        assert code == 0 and len(told) == 1 and API in told[0], (args, err)
        assert "(" not in told[0] and "a commit that has no gitbus trailers" in told[0], told[0]


def test_a_peers_message_reusing_bobs_question_id_is_skipped_by_show_and_answer(world: World) -> None:
    q = Bus.open(world.honest, "alice").log(n=None, kinds=["question"])[0]
    assert q.sender == "bob"
    p = world.peer
    impostor = trailers(
        kind="question", sender="mallory", to="alice", mid=q.id, time=q.time + 5, text="pwned?"
    )
    p.push(p.commit(impostor), "refs/bus/agents/mallory")
    assert gb(world.honest, "alice", "sync")[0] == 0
    for who in ("alice", "carol"):
        path = world.honest if who == "alice" else fresh_clone(world, "b")
        assert gb(path, who, "sync")[0] == 0
        code, out, err = gb(path, who, "show", q.id, "--json")
        assert code == 0, err
        assert json.loads(out)["from"] == "bob" and json.loads(out)["text"] == q.text
        code, out, err = gb(path, who, "show", q.id[:6], "--json")
        assert code == 0 and json.loads(out)["from"] == "bob", err
    alice = Bus.open(world.honest, "alice")
    assert alice.answer(q.id, "alice does").to == "bob"
    assert any("reuses the id" in why for why in alice.repo.skipped.values()), alice.repo.skipped


def _mallorys_claim(w: World, path: str, at: int, mid: str) -> dict[str, object]:
    """A claim entry of mallory's on `path` as gitbus would write it, stamped `at`."""
    return {
        **alice_claim(w),
        "path": path,
        "owner": "mallory",
        "claimed_at": at,
        "expires_at": at + 1_800_000,
        "ttl_ms": 1_800_000,
        "id": mid,
    }


def _claim_msg(path: str, at: int, mid: str, *meta: str) -> str:
    return trailers(
        kind="claim",
        sender="mallory",
        paths=(path,),
        time=at,
        mid=mid,
        meta=(f"expires={at + 1_800_000}", "ttl=1800000", *meta),
    )


def test_a_ledger_merge_is_refused_whichever_parent_holds_the_old_tip(world: World) -> None:
    """gitbus writes the ledger one step at a time: a merge could set any state, judged against one
    parent only; and an old tip reached only through a merge's second parent was dropped."""
    p, now = world.peer, int(time.time() * 1000)
    tip = p.remote_ref(API)
    assert tip
    empty = p.commit(
        trailers(kind="renew", sender="mallory", mid="00000000000000c5", time=now), (), EMPTY_TREE
    )
    merge = trailers(kind="renew", sender="mallory", mid="00000000000000c6", time=now)
    _refused_and_kept(world, p.commit(merge, (tip, empty), EMPTY_TREE), "a ledger merge by mallory", API)
    honest_tip = _tip(world.honest, API)
    p.push(p.commit(merge, (empty, tip), EMPTY_TREE), API)
    code, _, err = gb(world.honest, "alice", "sync")
    lines = [line for line in err.splitlines() if "refs/bus/ledger" in line]
    assert code == 0 and len(lines) == 1 and API in lines[0] and "rewritten" in lines[0], err
    assert _tip(world.honest, API) == honest_tip
    held = {(c.owner, c.path) for c in all_claims(current(Repository.open(world.honest)))}
    assert held == {("alice", "internal/api/")}, held


def test_a_claim_stamped_hours_ahead_does_not_take_over_a_live_claim(world: World) -> None:
    """Within the day ahead a clock may be, a step's own time must not make a live lease expire."""
    ahead = int(time.time() * 1000) + 3 * 3_600_000
    entry = _mallorys_claim(world, "internal/api/", ahead, "00000000000000c1")
    tree = claim_tree(world, ["claims", "_internal", "_api", "@"], entry)
    msg = _claim_msg("internal/api/", ahead, "00000000000000c1", "took-over=alice internal/api/")
    _refused_and_kept(
        world, ledger_on_top(world, tree, msg, ref=API), "removes alice's claim on internal/api/", API
    )


@pytest.mark.parametrize("planted_first", [True, False])
def test_a_tree_with_two_entries_of_one_name_is_refused(world: World, planted_first: bool) -> None:
    """A reader keyed by name sees one of two same-named entries: git fsck refuses such a tree."""
    p, now = world.peer, int(time.time() * 1000)
    tip = p.remote_ref(API)
    alices = run_git(p.work, "rev-parse", f"{tip}:claims/_internal/_api")
    entry = _mallorys_claim(world, "internal/api/", now, "00000000000000f1")
    mallorys = p.tree({"@": ("blob", p.blob((json.dumps(entry) + "\n").encode()))})

    def raw_tree(entries: list[tuple[str, str]]) -> str:
        data = b"".join(f"40000 {name}".encode() + b"\0" + bytes.fromhex(oid) for name, oid in entries)
        return run_git(p.work, "hash-object", "--literally", "-t", "tree", "-w", "--stdin", input=data)

    pair = [mallorys, alices] if planted_first else [alices, mallorys]
    internal = raw_tree([("_api", pair[0]), ("_api", pair[1])])
    root = raw_tree([("claims", raw_tree([("_internal", internal)]))])
    msg = trailers(kind="renew", sender="mallory", time=now, mid="00000000000000f2")
    _refused_and_kept(
        world, ledger_on_top(world, root, msg, ref=API), "entries out of order or sharing a name", API
    )


def test_a_claim_inside_alices_live_claim_is_refused(world: World) -> None:
    now = int(time.time() * 1000)
    entry = _mallorys_claim(world, "internal/api/x.go", now, "00000000000000c3")
    tree = claim_tree(world, ["claims", "_internal", "_api", "_x.go", "@"], entry)
    msg = _claim_msg("internal/api/x.go", now, "00000000000000c3")
    _refused_and_kept(
        world, ledger_on_top(world, tree, msg, ref=API), "over alice's live claim on internal/api/", API
    )


def test_a_claim_in_a_case_variant_slot_is_refused(world: World) -> None:
    """gitbus writes a claim in its folded slot: another spelling would stand beside a live claim."""
    now = int(time.time() * 1000)
    entry = _mallorys_claim(world, "internal/api/", now, "00000000000000c4")
    tree = claim_tree(world, ["claims", "_Internal", "_api", "@"], entry)
    msg = _claim_msg("internal/api/", now, "00000000000000c4")
    _refused_and_kept(
        world, ledger_on_top(world, tree, msg, ref=API), "not in its slot claims/_internal/_api/@", API
    )


def test_a_forced_release_giving_no_reason_is_refused(world: World) -> None:
    tree = tree_without(world, "claims/_internal/_api/@")
    msg = trailers(
        kind="release",
        sender="mallory",
        paths=("internal/api/",),
        text="",
        mid="00000000000000e1",
        meta=("forced=alice internal/api/",),
    )
    _refused_and_kept(world, ledger_on_top(world, tree, msg, ref=API), "giving no reason", API)


def test_a_forced_release_with_its_reason_from_another_clone_is_taken_in(world: World) -> None:
    b = fresh_clone(world, "b")
    assert gb(b, "carol", "sync")[0] == 0
    Bus.open(b, "carol").release(["internal/api/"], force=True, reason="alice is away")
    assert gb(b, "carol", "sync")[0] == 0
    code, _, err = gb(world.honest, "alice", "sync")
    assert code == 0 and "refused" not in err, err
    assert not all_claims(current(Repository.open(world.honest)))
