"""The remote is untrusted: a peer with plain git (commit-tree, mktree, update-ref, push) writes
whatever it likes under `refs/bus/` of the shared remote, and every other clone keeps working.

Each case pushes one kind of bad ref into a bare repository on disk (no network); then another clone
runs `gitbus sync` and every everyday command and every hook event. Each must exit with its normal
code, print no traceback, and lose no message that was valid. A second clone takes the bad refs in
with plain `git fetch` (no sync to refuse them), so the readers themselves are held to the same rules.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitbus import chains, sync
from gitbus.bus import Bus
from gitbus.hooks import handle
from gitbus.ledger_shards import route, shard_of_path
from gitbus.message import Message

from .conftest import git
from .conftest import raw_git as run_git
from .test_sync import bare_remote, clone, gb

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
BASE_TIME = 1_795_000_000_000
API = shard_of_path("internal/api/")  # the claim shard holding alice's claim (and internal/db/)
DOCS = shard_of_path("docs/")  # a claim shard no honest agent wrote yet


# -- a hostile peer: plain git only ------------------------------------------------------------------


def trailers(
    *,
    kind: str = "discovery",
    sender: str = "mallory",
    to: str = "*",
    time: int | str = BASE_TIME,
    mid: str = "00000000000000aa",
    paths: tuple[str, ...] = (),
    meta: tuple[str, ...] = (),
    text: str = "hello",
) -> str:
    """A commit message in gitbus's layout, with whatever values the peer chooses."""
    lines = [
        "Gitbus-Version: 1",
        f"Gitbus-Id: {mid}",
        f"Gitbus-Type: {kind}",
        f"Gitbus-From: {sender}",
        f"Gitbus-To: {to}",
        f"Gitbus-Time: {time}",
        *(f"Gitbus-Path: {p}" for p in paths),
        *(f"Gitbus-Meta: {m}" for m in meta),
    ]
    body = f"{text}\n\n" if text else ""
    return f"{kind}: x\n\n{body}" + "\n".join(lines) + "\n"


@dataclass
class Peer:
    """A clone of the remote that writes with plain git and force-pushes what it made."""

    work: Path
    url: str

    def commit(self, message: str, parents: tuple[str, ...] = (), tree: str = EMPTY_TREE) -> str:
        args = ["commit-tree", tree, *(a for p in parents for a in ("-p", p))]
        return run_git(self.work, *args, input=message.encode("utf-8", "surrogateescape"))

    def commit_bytes(self, message: bytes) -> str:
        """A commit object written byte for byte (commit-tree would re-encode a message not in UTF-8)."""
        head = f"tree {EMPTY_TREE}\nauthor m <m@x> 1700000000 +0000\ncommitter m <m@x> 1700000000 +0000\n\n"
        return run_git(
            self.work, "hash-object", "-t", "commit", "-w", "--stdin", input=head.encode() + message
        )

    def blob(self, data: bytes) -> str:
        return run_git(self.work, "hash-object", "-w", "--stdin", input=data)

    def tree(self, entries: dict[str, tuple[str, str]]) -> str:
        """`git mktree` from name -> (blob|tree, oid)."""
        mode = {"blob": "100644", "tree": "040000"}
        text = "".join(f"{mode[k]} {k} {oid}\t{name}\n" for name, (k, oid) in entries.items())
        return run_git(self.work, "mktree", input=text.encode())

    def nested(self, names: list[str], leaf: tuple[str, str]) -> str:
        """A tree holding `leaf` under the folders `names` (outermost first), built bottom up."""
        entry = leaf
        for name in reversed(names):
            entry = ("tree", self.tree({name: entry}))
        return entry[1]

    def tag(self, target: str) -> str:
        text = f"object {target}\ntype commit\ntag evil\ntagger m <m@x> 1700000000 +0000\n\nevil\n"
        return run_git(self.work, "mktag", input=text.encode())

    def remote_ref(self, ref: str) -> str | None:
        """What the remote's `ref` holds now, fetched so the peer can build on it."""
        out = run_git(self.work, "ls-remote", self.url, ref)
        if not out:
            return None
        run_git(self.work, "fetch", "-q", self.url, f"+{ref}:refs/peer/{ref}")
        return out.split()[0]

    def push(self, oid: str, ref: str) -> None:
        run_git(self.work, "push", "-q", "--force", self.url, f"{oid}:{ref}")


# -- the world ------------------------------------------------------------------------------------------


@dataclass
class World:
    tmp: Path
    bare: Path
    url: str
    honest: Path  # alice and bob post and claim here, then sync
    peer: Peer
    valid: set[str]  # ids of every valid message the honest agents posted


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def make_world(tmp_path: Path) -> World:
    """alice and bob post, ask, claim and request on an honest clone and sync; a peer clones too."""
    bare = bare_remote(tmp_path)
    url = bare.as_uri()
    honest = clone(url, tmp_path / "honest")
    git(honest, "worktree", "add", "-q", "-b", "bob", str(tmp_path / "honest-bob"))
    alice = Bus.open(honest, "alice")
    alice.init("origin")
    bob = Bus.open(tmp_path / "honest-bob", "bob")
    bob.init()
    valid = {
        alice.discover("the db config is config/db.yaml", ["config/db.yaml"]).id,
        bob.ask("who owns the migrations?", to="alice").id,
        alice.claim(["internal/api/"], reason="splitting handlers").id,
        bob.request("add an index on users.email").id,
    }
    gb(honest, "alice", "sync")
    valid |= {m.id for m in alice.log(n=None)}
    peer = Peer(clone(url, tmp_path / "peer"), url)
    return World(tmp_path, bare, url, honest, peer, valid)


def fresh_clone(w: World, name: str) -> Path:
    """A clone of the remote where carol joins and syncs (the bus as gitbus takes it in)."""
    path = clone(w.url, w.tmp / name)
    code, _, err = gb(path, "carol", "init", "--remote", "origin")
    assert code == 0, err
    return path


def plain_fetch_clone(w: World, name: str) -> Path:
    """A clone that took the remote's bus in with plain git, so nothing was refused at sync."""
    path = clone(w.url, w.tmp / name)
    git(path, "fetch", "-q", "origin", "+refs/bus/*:refs/bus/*")
    code, _, err = gb(path, "carol", "init")
    assert code == 0, err
    return path


EVERYDAY: list[tuple[str, ...]] = [
    ("log", "-n", "1000"),
    ("log", "--json"),
    ("status",),
    ("status", "--json"),
    ("inbox",),
    ("claims",),
    ("claims", "--all"),
    ("agents",),
    ("search", "migrations"),
    ("discover", "carol was here", "--path", "README.md"),
    ("claim", "config/", "--reason", "tuning"),
    ("release", "config/"),
    ("ask", "anyone?"),
    ("watch", "--once"),
]


def assert_every_command_works(path: Path, valid: set[str], ledger_broken: bool = False) -> None:
    """Every everyday command and hook event exits normally with no traceback; nothing valid is lost.

    `ledger_broken`: the remote's claim shard of internal/ is one no clone can decide on, so an online
    claim there is refused in one line naming it (its normal code, 1), and the claims are made
    `--offline`."""
    if ledger_broken:
        code, _, err = gb(path, "carol", "claim", "internal/db/")
        assert code == 1 and API in err and len(err.strip().splitlines()) == 1, err
    for args in EVERYDAY:
        if ledger_broken and args[0] in ("claim", "release"):
            args = (*args, "--offline")
        code, out, err = gb(path, "carol", *args)
        assert code == 0, f"gitbus {' '.join(args)} exited {code}: {err}"
        assert "Traceback" not in out + err and "CRASHED" not in err, f"gitbus {' '.join(args)}: {err}"
    code, out, err = gb(path, "carol", "show", sorted(valid)[0])
    assert code == 0 and "CRASHED" not in err, err
    code, out, _ = gb(path, "carol", "log", "-n", "100000", "--json")
    shown = {m["id"] for m in json.loads(out)}
    assert valid <= shown, f"valid messages lost: {valid - shown}"
    for event, extra in HOOK_EVENTS:
        data = {"session_id": "h1", "cwd": str(path), "hook_event_name": event, **extra}
        code, text = handle(data, {"GITBUS_AGENT": "carol"})
        assert code == 0, f"hook {event} exited {code}"
        if text:
            json.loads(text)


HOOK_EVENTS: list[tuple[str, dict[str, object]]] = [
    ("SessionStart", {"source": "startup"}),
    ("UserPromptSubmit", {"prompt": "go"}),
    ("PostToolUse", {"tool_name": "Bash", "tool_input": {"command": "ls"}}),
    ("PreToolUse", {"tool_name": "Edit", "tool_input": {"file_path": "README.md"}}),
    ("PreToolUse", {"tool_name": "Write", "tool_input": {"file_path": "internal/api/handler.go"}}),
    ("Stop", {}),
]


# -- the bad refs -----------------------------------------------------------------------------------------


NOT_TAKEN_IN = {"a blob", "a tree", "a tag", "not an agent name"}  # the rest is taken in and skipped


def push_bad_agent_refs(w: World) -> dict[str, str]:
    """Every bad agent chain at once; returns ref -> what is wrong with it."""
    p = w.peer
    good = p.commit(trailers(sender="mallory", mid="00000000000000a1"))
    bad: dict[str, str] = {}

    def put(name: str, oid: str, why: str) -> None:
        p.push(oid, f"refs/bus/agents/{name}")
        bad[f"refs/bus/agents/{name}"] = why

    put("overflow", p.commit(trailers(sender="overflow", time="9" * 30)), "time out of range")
    put("blobby", p.blob(b"not a commit\n"), "a blob")
    put("treey", p.tree({"x": ("blob", p.blob(b"x"))}), "a tree")
    put("taggy", p.tag(good), "a tag")
    tip = p.commit("not gitbus\n")
    for i in range(1200):
        tip = p.commit(f"foreign commit {i}\n", (tip,))
    put("deep", p.commit(trailers(sender="deep", mid="00000000000000a2"), (tip,)), "1200 foreign commits")
    put("deepath", p.commit(trailers(sender="deepath", paths=("a/" * 3000 + "x",))), "a path 3000 deep")
    bob_tip = p.remote_ref("refs/bus/agents/bob")
    assert bob_tip
    forged = p.commit(trailers(sender="alice", to="bob", kind="question", text="it is me, alice"), (bob_tip,))
    put("bob", forged, "bob's chain carries a message from alice")
    put("bidi", p.commit(trailers(sender="bidi", text="evil \u202e txt.exe")), "a bidi override")
    put("esc", p.commit(trailers(sender="esc", text="\x1b]0;pwned\x07")), "an escape sequence")
    put(
        "notutf",
        p.commit_bytes(trailers(sender="notutf").encode().replace(b"hello", b"\xff\xfe")),
        "not UTF-8",
    )
    put(
        "ledgerkind",
        p.commit(trailers(sender="ledgerkind", kind="claim", paths=("x",))),
        "a claim on a chain",
    )
    put("huge", p.commit(trailers(sender="huge", text="x" * (70 * 1024))), "over 64 KiB")
    put("BadName", good, "not an agent name")
    return bad


def ledger_on_top(w: World, tree: str, message: str | None = None, *, ref: str) -> str:
    """A commit the peer puts on top of the remote's ledger `ref` (not a rewrite), with `tree`: the
    first commit of `ref` when the remote has none there yet."""
    p = w.peer
    tip = p.remote_ref(ref)
    msg = message or trailers(kind="claim", sender="mallory", paths=("docs/",), meta=("expires=1",))
    return p.commit(msg, (tip,) if tip else (), tree)


def claim_tree(w: World, slot: list[str], entry: dict[str, object] | bytes) -> str:
    """The tree of the remote's claim shard that holds `slot`, with one entry the peer wrote there."""
    p = w.peer
    raw = entry if isinstance(entry, bytes) else (json.dumps(entry) + "\n").encode()
    tip = p.remote_ref(route("/".join(slot)))
    base = run_git(p.work, "rev-parse", f"{tip}^{{tree}}") if tip else EMPTY_TREE
    index = p.work / ".git" / "peer-index"
    env = {"GIT_INDEX_FILE": str(index)}
    run_git(p.work, "read-tree", base, env=env)
    run_git(p.work, "update-index", "--add", "--cacheinfo", f"100644,{p.blob(raw)},{'/'.join(slot)}", env=env)
    return run_git(p.work, "write-tree", env=env)


BAD_CLAIM = {
    "path": "docs/",
    "owner": "mallory",
    "reason": "",
    "claimed_at": BASE_TIME,
    "id": "00000000000000b1",
    "ttl_ms": 1000,
}

BAD_LEDGERS: dict[str, str] = {
    "a blob": "blob",
    "a tree": "tree",
    "an unrelated history": "rewrite",
    "an entry with an absurd expiry": "expiry",
    "an entry missing a key": "missing",
    "an entry that is not JSON": "notjson",
    "a claim tree 2000 deep": "deeptree",
    "1200 foreign commits": "deepchain",
    "a claim planted in alice's name": "planted",
    "alice's live claim dropped by a peer's release": "dropped",
}


def alice_claim(w: World) -> dict[str, object]:
    """alice's claim on internal/api/ as the remote's claim shard holds it."""
    tip = w.peer.remote_ref(API)
    blob = run_git(w.peer.work, "rev-parse", f"{tip}:claims/_internal/_api/@")
    return dict(json.loads(run_git(w.peer.work, "cat-file", "-p", blob)))


def tree_without(w: World, slot: str) -> str:
    """The tree of the remote's claim shard that holds `slot`, with the entry at `slot` removed."""
    p = w.peer
    tip = p.remote_ref(route(slot))
    env = {"GIT_INDEX_FILE": str(p.work / ".git" / "peer-index")}
    run_git(p.work, "read-tree", f"{tip}^{{tree}}", env=env)
    run_git(p.work, "update-index", "--force-remove", slot, env=env)
    return run_git(p.work, "write-tree", env=env)


def push_bad_ledger(w: World, how: str) -> str:
    """Push the bad ledger `how` to the remote; returns the ledger ref it went to: the claim shard
    the bad entry belongs on (`docs/`'s, or alice's for a blob, a tree, a rewrite, foreign commits
    or a dropped claim)."""
    p = w.peer
    ref = API
    if how == "blob":
        oid = p.blob(b"{}\n")
    elif how == "tree":
        oid = p.tree({"claims": ("blob", p.blob(b"x"))})
    elif how == "rewrite":
        oid = p.commit(trailers(kind="claim", sender="mallory", paths=("internal/",), meta=("expires=1",)))
    elif how == "expiry":
        ref = DOCS
        tree = claim_tree(w, ["claims", "_docs", "@"], {**BAD_CLAIM, "expires_at": 10**30})
        oid = ledger_on_top(w, tree, ref=ref)
    elif how == "missing":
        ref = DOCS
        tree = claim_tree(w, ["claims", "_docs", "@"], {"path": "docs/", "owner": "mallory"})
        oid = ledger_on_top(w, tree, ref=ref)
    elif how == "notjson":
        ref = DOCS
        oid = ledger_on_top(w, claim_tree(w, ["claims", "_docs", "@"], b"\xff{not json"), ref=ref)
    elif how == "deeptree":
        leaf = ("blob", p.blob((json.dumps({**BAD_CLAIM, "expires_at": BASE_TIME * 2}) + "\n").encode()))
        deep = p.nested(["claims", *["_a"] * 2000], ("tree", p.tree({"@": leaf})))
        ref = shard_of_path("a")  # the shard that path belongs on
        oid = ledger_on_top(w, deep, ref=ref)
    elif how == "deepchain":
        tip = p.remote_ref(ref)
        assert tip
        for i in range(1200):
            tip = p.commit(f"foreign {i}\n", (tip,), run_git(p.work, "rev-parse", f"{tip}^{{tree}}"))
        oid = tip
    elif how == "planted":
        ref = DOCS
        entry = {**alice_claim(w), "path": "docs/", "expires_at": BASE_TIME * 2, "id": "00000000000000b1"}
        oid = ledger_on_top(w, claim_tree(w, ["claims", "_docs", "@"], entry), ref=ref)
    elif how == "dropped":
        msg = trailers(kind="release", sender="mallory", paths=("internal/api/",))
        oid = ledger_on_top(w, tree_without(w, "claims/_internal/_api/@"), msg, ref=ref)
    else:
        raise AssertionError(how)
    p.push(oid, ref)
    return ref


def test_every_command_works_after_syncing_every_kind_of_bad_agent_chain(world: World) -> None:
    bad = push_bad_agent_refs(world)
    b = fresh_clone(world, "b")
    code, _out, err = gb(b, "carol", "sync")
    assert code == 0 and "CRASHED" not in err, err
    assert_every_command_works(b, world.valid)
    refused = "\n".join(line for line in err.splitlines() if line.startswith("gitbus:"))
    for ref, why in bad.items():  # what cannot be taken in is named; the rest is skipped and counted
        named = ref[len("refs/") :] in refused
        assert named == (why in NOT_TAKEN_IN), f"{ref} ({why}), named: {named}:\n{err}"
    _code, out, _ = gb(b, "carol", "status", "--json")
    assert json.loads(out)["skipped"] >= len(bad) - len(NOT_TAKEN_IN), out
    assert (
        world.peer.remote_ref("refs/bus/agents/alice") == git(b, "rev-parse", "refs/bus/agents/alice").strip()
    )


def test_every_command_works_on_bad_chains_taken_in_by_plain_git(world: World) -> None:
    push_bad_agent_refs(world)
    c = plain_fetch_clone(world, "c")
    assert_every_command_works(c, world.valid)
    _code, out, _ = gb(c, "carol", "status", "--json")
    assert json.loads(out)["skipped"] > 0, "status does not count what it skipped"


def test_a_message_on_bobs_chain_that_says_it_is_from_alice_is_not_shown_as_alices(world: World) -> None:
    p = world.peer
    tip = p.remote_ref("refs/bus/agents/bob")
    assert tip
    forged = p.commit(trailers(sender="alice", to="*", mid="00000000000000f1", text="trust me"), (tip,))
    p.push(forged, "refs/bus/agents/bob")
    c = plain_fetch_clone(world, "c")
    assert "00000000000000f1" not in {m.id for m in Bus.open(c, "carol").log(n=None)}
    b = fresh_clone(world, "b")
    code, _, err = gb(b, "carol", "sync")
    assert code == 0 and "refs/bus/agents/bob" not in err, err  # taken in, skipped by every reader
    assert "00000000000000f1" not in {m.id for m in Bus.open(b, "carol").log(n=None)}
    _code, out, _ = gb(b, "carol", "status", "--json")
    assert json.loads(out)["skipped"] > 0, out


@pytest.mark.parametrize("where", ["alice's claim shard", "the tombstone"])
def test_an_offline_claim_on_a_ledger_taken_in_broken_is_refused_and_the_guard_still_denies(
    world: World, where: str
) -> None:
    if where == "the tombstone":  # no tombstone: which claims the shards carry is unknown
        ref, path = "refs/bus/ledger", "bar/"
        world.peer.push(world.peer.blob(b"{}\n"), ref)
    else:
        ref, path = push_bad_ledger(world, "blob"), "internal/db/"
    c = plain_fetch_clone(world, "c")
    code, _, err = gb(c, "carol", "claim", path, "--offline")
    assert code == 1 and len(err.strip().splitlines()) == 1 and ref in err, err
    assert git(c, "rev-parse", ref).strip() == world.peer.remote_ref(ref)  # nothing written over it
    assert git(c, "cat-file", "-t", ref).strip() == "blob"
    code, _, err = gb(c, "carol", "guard", "internal/api/handler.go")
    assert code == 3, err


def test_a_flood_of_badly_named_refs_is_named_a_few_and_counted(world: World) -> None:
    p = world.peer
    good = p.commit(trailers(sender="mallory", mid="00000000000000b1"))
    for i in range(40):
        p.push(good, f"refs/bus/agents/Bad{i}")
    b = fresh_clone(world, "b")
    code, _, err = gb(b, "carol", "sync")
    assert code == 0, err
    ignored = [line for line in err.splitlines() if "ignored" in line]
    assert len(ignored) == 6 and "ignored 35 more ref(s)" in ignored[-1], err


def test_a_peers_commit_on_top_of_an_agents_chain_does_not_silence_that_agent(world: World) -> None:
    p = world.peer
    tip = p.remote_ref("refs/bus/agents/alice")
    assert tip
    p.push(p.commit("not a gitbus message, or a newer format's\n", (tip,)), "refs/bus/agents/alice")
    assert gb(world.honest, "alice", "discover", "posted after the peer's commit")[0] == 0
    code, _, err = gb(world.honest, "alice", "sync")
    assert code == 0 and "refused" not in err, err
    c = fresh_clone(world, "c")
    assert gb(c, "carol", "sync")[0] == 0
    assert "posted after the peer's commit" in {m.text for m in Bus.open(c, "carol").log(n=None)}


@pytest.mark.parametrize("what", list(BAD_LEDGERS))
def test_every_command_works_after_a_bad_ledger(world: World, what: str) -> None:
    how = BAD_LEDGERS[what]
    ledger_ids = {m.id for m in Bus.open(world.honest, "alice").log(n=None) if m.kind.value == "claim"}
    push_bad_ledger(world, how)
    b = fresh_clone(world, "b")
    code, _out, err = gb(b, "carol", "sync")
    assert code == 0 and "CRASHED" not in err, err
    # A first sync has no earlier tip to hold an unrelated ledger to: what the peer threw away on the
    # remote is gone there (the honest clone refuses the rewrite: the next test).
    # Foreign commits on top of vouched steps do not stop online claims: a claim replaces them.
    broken = how in ("blob", "tree")
    valid = world.valid - ledger_ids if how in ("rewrite", "blob", "tree") else world.valid
    assert_every_command_works(b, valid, ledger_broken=broken)
    code, _, err = gb(world.honest, "alice", "sync")  # the clone that held the ledger keeps all of it
    assert code == 0 and "CRASHED" not in err, err
    have = {m.id for m in Bus.open(world.honest, "alice").log(n=None)}
    assert world.valid <= have, f"the honest clone lost {world.valid - have}"
    c = plain_fetch_clone(world, "c")
    for args in EVERYDAY[:9]:
        code, _, err = gb(c, "carol", *args)
        assert code == 0 and "CRASHED" not in err, f"{args}: {err}"
    for event, extra in HOOK_EVENTS:
        data = {"session_id": "h2", "cwd": str(c), "hook_event_name": event, **extra}
        assert handle(data, {"GITBUS_AGENT": "carol"})[0] == 0


def test_a_rewritten_remote_ledger_is_refused_not_adopted_and_pushed_back(world: World) -> None:
    honest_tip = world.peer.remote_ref(API)
    assert push_bad_ledger(world, "rewrite") == API
    code, _, err = gb(world.honest, "alice", "sync")
    assert code == 0, err
    assert API in err and "rewrit" in err, err
    assert git(world.honest, "rev-parse", API).strip() == honest_tip
    assert world.peer.remote_ref(API) != honest_tip  # not pushed back over it either
    code, _, err = gb(world.honest, "alice", "claim", "internal/db/")  # a claim on that shard
    assert code == 1 and "rewrit" in err and "Traceback" not in err, err


def test_a_claim_entry_with_an_absurd_expiry_does_not_stop_its_agents_hooks(world: World) -> None:
    tree = claim_tree(world, ["claims", "_docs", "@"], {**BAD_CLAIM, "owner": "alice", "expires_at": 10**30})
    world.peer.push(ledger_on_top(world, tree, ref=DOCS), DOCS)
    git(world.honest, "fetch", "-q", "origin", f"+{DOCS}:{DOCS}")
    for event, extra in HOOK_EVENTS:
        data = {"session_id": "h3", "cwd": str(world.honest), "hook_event_name": event, **extra}
        assert handle(data, {"GITBUS_AGENT": "alice"})[0] == 0
    data = {
        "session_id": "h3",
        "cwd": str(world.honest),
        "hook_event_name": "PreToolUse",
        "tool_name": "Edit",
        "tool_input": {"file_path": "docs/x.md"},
    }
    assert handle(data, {"GITBUS_AGENT": "bob"})[0] == 0


# -- a stream of malformed messages and ledger entries -------------------------------------------------

_text = st.text(st.characters(codec="utf-8", blacklist_characters="\x00"), max_size=40)
_field = st.one_of(_text, st.integers().map(str), st.just(""), st.sampled_from(["9" * 40, "-1", "0", "1e3"]))


@st.composite
def malformed_messages(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["discovery", "question", "claim", "join", "nope", ""]))
    return trailers(
        kind=kind,
        sender=draw(st.sampled_from(["fuzz", "alice", "", "Fuzz", "../x"])),
        to=draw(st.sampled_from(["*", "alice", "", "x y"])),
        time=draw(_field),
        mid=draw(st.sampled_from(["00000000000000c1", "zz", "", "0" * 17])),
        paths=tuple(draw(st.lists(_text, max_size=2))),
        meta=tuple(draw(st.lists(_text, max_size=2))),
        text=draw(_text),
    )


@st.composite
def malformed_claims(draw: st.DrawFn) -> dict[str, object]:
    values = st.one_of(st.integers(min_value=-(10**30), max_value=10**30), _text, st.none(), st.booleans())
    keys = ["path", "owner", "reason", "claimed_at", "expires_at", "ttl_ms", "id"]
    obj: dict[str, object] = {**BAD_CLAIM, "expires_at": BASE_TIME * 2}
    for k in draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)):
        if draw(st.booleans()):
            obj.pop(k, None)
        else:
            obj[k] = draw(values)
    return obj


@pytest.fixture(scope="module")
def fuzz_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, Path]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    w = make_world(tmp)
    yield w, fresh_clone(w, "b")


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(msgs=st.lists(malformed_messages(), min_size=1, max_size=4), entry=malformed_claims())
def test_a_stream_of_malformed_messages_and_ledger_entries_never_breaks_a_clone(
    fuzz_world: tuple[World, Path], msgs: list[str], entry: dict[str, object]
) -> None:
    w, b = fuzz_world
    p = w.peer
    tip = p.remote_ref("refs/bus/agents/fuzz")
    for m in msgs:
        tip = p.commit(m, (tip,) if tip else ())
    assert tip
    p.push(tip, "refs/bus/agents/fuzz")
    p.push(ledger_on_top(w, claim_tree(w, ["claims", "_docs", "@"], entry), ref=DOCS), DOCS)
    code, _, err = gb(b, "carol", "sync")
    assert code == 0 and "CRASHED" not in err, err
    for args in (("log", "--json"), ("status", "--json"), ("claims", "--all"), ("claim", "config/")):
        code, _, err = gb(b, "carol", *args)
        assert code == 0 and "CRASHED" not in err, f"{args}: {err}"
    gb(b, "carol", "release", "--all")
    data = {"session_id": "f", "cwd": str(b), "hook_event_name": "SessionStart", "source": "startup"}
    assert handle(data, {"GITBUS_AGENT": "carol"})[0] == 0


def test_a_bad_ref_does_not_keep_the_hooks_off_their_fast_path(world: World) -> None:
    """The hooks answer "nothing new" from git's files when a session's cursor is at the bus tips; a
    ref gitbus skips (a blob, a forged tip) must not leave the cursor forever short of them."""
    from gitbus.cursors import load_session
    from gitbus.gitfiles import bus_tips, locate

    push_bad_agent_refs(world)
    c = plain_fetch_clone(world, "c")
    for event, extra in HOOK_EVENTS[:3]:
        data = {"session_id": "fast", "cwd": str(c), "hook_event_name": event, **extra}
        assert handle(data, {"GITBUS_AGENT": "carol"})[0] == 0
    loc = locate(c)
    assert loc is not None
    cursor = load_session(loc.common_dir, "carol", "fast")
    assert cursor is not None and cursor.tips == bus_tips(loc.common_dir)


def test_a_chain_message_stamped_days_ahead_is_refused_and_what_came_before_kept(world: World) -> None:
    p = world.peer
    now = int(time.time() * 1000)
    first = p.commit(trailers(sender="mallory", mid="00000000000000c1", time=now))
    ahead = p.commit(trailers(sender="mallory", mid="00000000000000c2", time=now + 2 * 86_400_000), (first,))
    # Not a message readers take (two time trailers): taken in and skipped, whatever its stamps say.
    twice = trailers(sender="mallory", mid="00000000000000c3", time=now).replace(
        "Gitbus-Time:", f"Gitbus-Time: {now + 9 * 86_400_000}\nGitbus-Time:", 1
    )
    p.push(ahead, "refs/bus/agents/mallory")
    p.push(p.commit(twice, (first,)), "refs/bus/agents/oddone")
    b = fresh_clone(world, "b")
    code, _, err = gb(b, "carol", "sync")
    assert code == 0 and "refused refs/bus/agents/mallory" in err and "a day ahead" in err, err
    assert "oddone" not in err, err
    repo = Bus.open(b, "carol").repo
    assert repo.ref("refs/bus/agents/mallory") == first and repo.ref("refs/bus/agents/oddone") is not None


def test_vouching_a_long_fetched_chain_decodes_none_of_its_messages(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = Bus.open(world.honest, "alice")
    for i in range(60):
        alice.discover(f"finding {i}")
    assert gb(world.honest, "alice", "sync")[0] == 0
    b = clone(world.url, world.tmp / "b")
    carol = Bus.open(b, "carol")
    decoded: list[str] = []
    real = chains.decode

    def counting(raw: str) -> Message:
        decoded.append(raw)
        return real(raw)

    monkeypatch.setattr(chains, "decode", counting)
    report = sync.sync(carol.repo, "origin", send=False)
    assert "refs/bus/agents/alice" in report.updated and not report.refused
    ledger_kinds = [f"Gitbus-Type: {k}\n" for k in ("claim", "release", "renew", "take", "done")]
    agent_messages = [r for r in decoded if not any(k in r for k in ledger_kinds)]
    assert len(agent_messages) < 5, f"{len(agent_messages)} chain messages decoded to vouch for them"


# -- refs a peer deletes, rewinds, or puts in the way ------------------------------------------------------


def _heard_by_a_new_clone(world: World, name: str, text: str) -> bool:
    """True when a fresh clone that syncs sees a message with `text`."""
    c = fresh_clone(world, name)
    code, _, err = gb(c, "carol", "sync")
    assert code == 0, err
    return text in {m.text for m in Bus.open(c, "carol").log(n=None)}


def _remote_tip(world: World, ref: str) -> str | None:
    out = run_git(world.peer.work, "ls-remote", world.url, ref)
    return out.split()[0] if out else None


def test_an_agents_chain_deleted_on_the_remote_is_put_back_at_the_next_sync(world: World) -> None:
    run_git(world.peer.work, "push", "-q", world.url, ":refs/bus/agents/alice")
    assert gb(world.honest, "alice", "discover", "after the deletion")[0] == 0
    code, _, err = gb(world.honest, "alice", "sync")
    assert code == 0 and "CRASHED" not in err, err
    assert "refs/bus/agents/alice" in err and "deleted" in err, err  # said, once
    assert (
        _remote_tip(world, "refs/bus/agents/alice")
        == git(world.honest, "rev-parse", "refs/bus/agents/alice").strip()
    )
    assert _heard_by_a_new_clone(world, "c", "after the deletion")


def test_a_name_pushed_under_a_deleted_chain_neither_stops_sync_nor_keeps_the_chain_off(world: World) -> None:
    """One push deletes alice's chain and puts `agents/alice/x` in its place: a name no gitbus
    writes, which git cannot keep beside `agents/alice`, neither here nor on the remote."""
    p = world.peer
    junk = p.commit(trailers(sender="mallory", mid="00000000000000d1"))
    run_git(
        p.work,
        "push",
        "-q",
        "--force",
        world.url,
        ":refs/bus/agents/alice",
        f"{junk}:refs/bus/agents/alice/x",
    )
    assert gb(world.tmp / "honest-bob", "bob", "discover", "bob after the push")[0] == 0
    assert gb(world.honest, "alice", "discover", "alice after the push")[0] == 0
    code, _, err = gb(world.honest, "alice", "sync")
    assert code == 0 and "CRASHED" not in err, err
    assert "refs/bus/agents/alice/x" in err, err
    assert (
        _remote_tip(world, "refs/bus/agents/alice")
        == git(world.honest, "rev-parse", "refs/bus/agents/alice").strip()
    )
    assert _heard_by_a_new_clone(world, "c", "alice after the push")
    assert _heard_by_a_new_clone(world, "d", "bob after the push")


@pytest.mark.parametrize("which", ["shard", "tombstone"])
def test_a_ledger_ref_deleted_on_the_remote_is_put_back_and_claims_go_on(world: World, which: str) -> None:
    ref = API if which == "shard" else "refs/bus/ledger"
    held = _remote_tip(world, ref)
    assert held is not None
    run_git(world.peer.work, "push", "-q", world.url, f":{ref}")
    started = time.monotonic()
    code, _, err = gb(world.honest, "alice", "renew", "internal/api/")
    assert code == 0 and "CRASHED" not in err, err
    code, _, err = gb(world.tmp / "honest-bob", "bob", "claim", "src/")
    assert code == 0 and "CRASHED" not in err, err
    assert time.monotonic() - started < 30, "a claim spun on a ref the remote no longer has"
    assert _remote_tip(world, ref) is not None  # put back, with what came after it
    code, _, err = gb(world.honest, "alice", "sync")
    assert code == 0, err
    c = fresh_clone(world, "c")
    assert gb(c, "carol", "sync")[0] == 0
    code, _, err = gb(c, "carol", "claim", "internal/api/x.go")
    assert code == 3 and "alice" in err, err  # the new clone sees alice's claim


def test_an_agents_chain_rewound_on_the_remote_is_put_back(world: World) -> None:
    ref = "refs/bus/agents/alice"
    first = git(world.honest, "rev-list", "--max-parents=0", ref).split()[0]
    assert world.peer.remote_ref(ref)  # the peer has the chain's commits
    world.peer.push(first, ref)
    assert gb(world.honest, "alice", "discover", "after the rewind")[0] == 0
    code, _, err = gb(world.honest, "alice", "sync")
    assert code == 0 and "CRASHED" not in err, err
    assert _remote_tip(world, ref) == git(world.honest, "rev-parse", ref).strip()
    assert _heard_by_a_new_clone(world, "c", "after the rewind")


@pytest.mark.parametrize("how", ["deleted", "a commit"])
def test_a_new_clone_is_told_when_the_tombstone_is_gone_and_sees_the_claims_once_it_is_back(
    world: World, how: str
) -> None:
    """The remote's tombstone deleted, or replaced by a single-ledger commit, while the shards hold
    alice's claim: a clone joining then is told it cannot read the remote's claims (it takes none
    in), and an honest clone's next sync puts the tombstone back, so the next sync here sees them."""
    p = world.peer
    if how == "deleted":
        run_git(p.work, "push", "-q", world.url, ":refs/bus/ledger")
    else:
        stray = p.commit(trailers(kind="claim", sender="mallory", mid="00000000000000e1", text=""))
        p.push(stray, "refs/bus/ledger")
    c = fresh_clone(world, "c")
    code, _, err = gb(c, "carol", "sync")
    assert code == 0 and "CRASHED" not in err, err
    assert "refs/bus/ledger" in err, err  # said
    gb(world.honest, "alice", "sync")  # an honest clone puts the tombstone back
    code, _, err = gb(c, "carol", "sync")
    assert code == 0 and "CRASHED" not in err, err
    code, _, err = gb(c, "carol", "claim", "internal/api/x.go")
    assert code == 3 and "alice" in err, err
    code, _, err = gb(c, "carol", "guard", "internal/api/handler.go")
    assert code == 3, err


def test_shards_beside_no_tombstone_are_not_vouched_for_until_it_is_back(world: World) -> None:
    """A shard's first commit builds on the claims the tombstone carries: with the tombstone gone,
    what it builds on is unknown, so a new clone takes no shard in (else one forged on an empty
    base would stand once the tombstone is back, its first commit never checked again)."""
    run_git(world.peer.work, "push", "-q", world.url, ":refs/bus/ledger")
    c = fresh_clone(world, "c")
    code, out, err = gb(c, "carol", "sync", "--json")
    assert code == 0, err
    refused = {r["ref"]: r["reason"] for r in json.loads(out)["refused"]}
    assert "refs/bus/ledger is missing" in refused.get(API, ""), refused
    assert git(c, "for-each-ref", "refs/bus/ledgers/").strip() == "", "a shard was taken in unvouched"
    assert gb(world.honest, "alice", "sync")[0] == 0  # puts the tombstone back
    assert gb(c, "carol", "sync")[0] == 0
    code, _, err = gb(c, "carol", "claim", "internal/api/x.go")
    assert code == 3 and "alice" in err, err


def test_a_clone_that_synced_before_the_fetched_namespace_tells_of_nothing_put_back(world: World) -> None:
    """A clone synced by a gitbus without `refs/gitbus/fetched/` (as after an upgrade): its first
    push loses its lease on what it never fetched, fetches, and puts nothing back that was there."""
    for line in git(world.honest, "for-each-ref", "--format=%(refname)", "refs/gitbus/fetched/").split():
        git(world.honest, "update-ref", "-d", line)
    assert gb(world.honest, "alice", "discover", "after the upgrade")[0] == 0
    code, _, err = gb(world.honest, "alice", "push")
    assert code == 0, err
    assert "put back" not in err, err
    assert _heard_by_a_new_clone(world, "c", "after the upgrade")


def test_a_name_under_the_notes_ref_does_not_block_pushes(world: World) -> None:
    p = world.peer
    alice = Bus.open(world.honest, "alice")
    msg = alice.discover("a note's message")
    commit = git(world.honest, "rev-parse", "HEAD").strip()
    git(world.honest, "notes", "--ref=refs/notes/gitbus", "add", "-m", f"gitbus: {msg.id}", commit)
    assert gb(world.honest, "alice", "sync")[0] == 0
    junk = p.commit(trailers(sender="mallory", mid="00000000000000d2"))
    run_git(p.work, "push", "-q", "--force", world.url, ":refs/notes/gitbus", f"{junk}:refs/notes/gitbus/x")
    git(world.honest, "notes", "--ref=refs/notes/gitbus", "append", "-m", "more", commit)
    assert gb(world.honest, "alice", "discover", "after the notes push")[0] == 0
    code, _, err = gb(world.honest, "alice", "sync")
    assert code == 0 and "refs/notes/gitbus/x" in err, err
    assert _heard_by_a_new_clone(world, "c", "after the notes push")
