"""Who may change what on the ledger, and whose a message id is: a peer with plain git cannot plant,
drop or alter claims in another agent's name, nor take over a message by reusing its id, and a
foreign commit on the remote's ledger does not stop online claims."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gitbus.bus import Bus
from gitbus.claims import all_claims
from gitbus.git import Repository
from gitbus.ledger import current

from .conftest import git
from .conftest import raw_git as run_git
from .test_hostile_remote import (
    BASE_TIME,
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


def _refused_and_kept(w: World, bad: str, reason: str) -> None:
    """The honest clone refuses the peer's ledger commit in one line and keeps its own tip; a fresh
    clone takes in the ledger only up to the honest tip."""
    honest_tip = git(w.honest, "rev-parse", "refs/bus/ledger").strip()
    w.peer.push(bad, "refs/bus/ledger")
    code, _, err = gb(w.honest, "alice", "sync")
    lines = [line for line in err.splitlines() if "refs/bus/ledger" in line]
    assert code == 0 and len(lines) == 1 and reason in lines[0], err
    assert git(w.honest, "rev-parse", "refs/bus/ledger").strip() == honest_tip
    b = fresh_clone(w, "b")
    code, _, err = gb(b, "carol", "sync")
    assert code == 0 and "refs/bus/ledger" in err, err
    assert git(b, "rev-parse", "refs/bus/ledger").strip() == honest_tip
    held = {(c.owner, c.path) for c in all_claims(current(Repository.open(b)))}
    assert held == {("alice", "internal/api/")}, held


def test_a_peers_ledger_commit_planting_a_claim_in_alices_name_is_refused(world: World) -> None:
    entry = {**alice_claim(world), "path": "docs/", "expires_at": BASE_TIME * 2, "id": "00000000000000b1"}
    tree = claim_tree(world, ["claims", "_docs", "@"], entry)
    msg = trailers(kind="claim", sender="mallory", paths=("docs/",), meta=("expires=1",))
    _refused_and_kept(world, ledger_on_top(world, tree, msg), "in alice's name")


def test_a_peers_release_of_alices_live_claim_is_refused(world: World) -> None:
    tree = tree_without(world, "claims/_internal/_api/@")
    msg = trailers(kind="release", sender="mallory", paths=("internal/api/",))
    _refused_and_kept(world, ledger_on_top(world, tree, msg), "removes alice's claim on internal/api/")


def test_a_peers_claim_that_drops_alices_live_claim_is_refused(world: World) -> None:
    entry = {**alice_claim(world), "owner": "mallory", "expires_at": BASE_TIME * 2}
    tree = claim_tree(world, ["claims", "_internal", "_api", "@"], entry)
    msg = trailers(kind="claim", sender="mallory", paths=("internal/api/",), meta=("expires=1",))
    _refused_and_kept(world, ledger_on_top(world, tree, msg), "removes alice's claim")


def test_a_peers_renew_of_alices_claim_is_refused(world: World) -> None:
    entry = {**alice_claim(world), "expires_at": BASE_TIME * 2}
    tree = claim_tree(world, ["claims", "_internal", "_api", "@"], entry)
    msg = trailers(kind="renew", sender="mallory", paths=("internal/api/",))
    _refused_and_kept(world, ledger_on_top(world, tree, msg), "alice")


def test_a_ledger_step_with_too_many_entries_is_refused_without_reading_them_all(world: World) -> None:
    p = world.peer
    blob = p.blob(b"{}\n")
    flat = "".join(f"100644 blob {blob}\t_f{i}\n" for i in range(25_000))
    many = run_git(p.work, "mktree", input=flat.encode())
    tree = p.tree({"claims": ("tree", p.tree({"_docs": ("tree", many)}))})
    msg = trailers(kind="claim", sender="mallory", paths=("docs/",), meta=("expires=1",))
    _refused_and_kept(world, ledger_on_top(world, tree, msg), "more than 20000 entries")


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
    bad = ledger_on_top(world, tree, msg)
    world.peer.push(bad, "refs/bus/ledger")
    code, _, err = gb(world.honest, "alice", "sync")
    assert code == 0 and "refused" not in err, err
    assert git(world.honest, "rev-parse", "refs/bus/ledger").strip() == bad


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
    assert (
        git(world.honest, "rev-parse", "refs/bus/ledger").strip()
        == git(b, "rev-parse", "refs/bus/ledger").strip()
    )


def test_an_online_claim_replaces_a_foreign_commit_on_the_remotes_ledger(world: World) -> None:
    p = world.peer
    honest_tip = git(world.honest, "rev-parse", "refs/bus/ledger").strip()
    tip = p.remote_ref("refs/bus/ledger")
    assert tip == honest_tip
    foreign = p.commit("not a ledger step\n", (tip,), run_git(p.work, "rev-parse", f"{tip}^{{tree}}"))
    p.push(foreign, "refs/bus/ledger")
    alice = Bus.open(world.honest, "alice")
    alice.claim(["config/"])
    assert len(alice.notices) == 1 and foreign[:12] in alice.notices[0], alice.notices
    assert "refs/bus/ledger" in alice.notices[0] and "\n" not in alice.notices[0]
    new = p.remote_ref("refs/bus/ledger")
    assert new is not None and new != foreign
    assert run_git(p.work, "rev-parse", f"{new}^") == honest_tip  # built on the last vouched step
    assert git(world.honest, "rev-parse", "refs/bus/ledger").strip() == new
    b = fresh_clone(world, "b")
    code, _, err = gb(b, "carol", "sync")
    assert code == 0 and "refused" not in err, err
    held = {(c.owner, c.path) for c in all_claims(current(Repository.open(b)))}
    assert held == {("alice", "internal/api/"), ("alice", "config/")}, held
    code, _, err = gb(b, "carol", "claim", "docs/")
    assert code == 0 and "Traceback" not in err, err


def test_the_command_whose_step_replaced_a_foreign_ledger_commit_says_so(world: World) -> None:
    """On stderr, in one line, for the quick path (a whole process) and the typer path alike."""
    p = world.peer
    for args in (["claim", "config/"], ["release", "config/"]):
        tip = p.remote_ref("refs/bus/ledger")
        assert tip is not None
        foreign = p.commit("not a ledger step\n", (tip,), run_git(p.work, "rev-parse", f"{tip}^{{tree}}"))
        p.push(foreign, "refs/bus/ledger")
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
        assert code == 0 and len(told) == 1 and "refs/bus/ledger" in told[0], (args, err)


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
