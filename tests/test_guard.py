"""The commit guard: `gitbus install git-hooks`, then real `git commit`s in real worktrees.

Edits made through Bash never reach Claude Code's PreToolUse hook, so the pre-commit
hook is the guard of last resort. Commits here run with a PATH that has no gitbus on it: the hook must
name its interpreter itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gitbus import claimsindex, guard, ledger_shards, ledger_state, state
from gitbus import paths as P
from gitbus.bus import Bus
from gitbus.claims import Claim, all_claims
from gitbus.cli import app
from gitbus.clock import FakeClock
from gitbus.ids import agent_name

from .conftest import git, make_repo
from .conftest import raw_git as run_git
from .crowded import HOLDERS, PER_HOLDER, counted, crowd, entries_read
from .test_fastpath import DAMAGES, damage

BusFor = Callable[[Path, str], Bus]

BARE_PATH = "/usr/bin:/bin"


def gb(wt: Path, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, ["-C", str(wt), *args], env={"COLUMNS": "200"})
    return r.exit_code, r.stdout, r.stderr


def commit(wt: Path, rel: str, *flags: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Change `rel` in worktree `wt` and try to commit it with real git."""
    f = wt / rel
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(f.read_text() + "more\n" if f.exists() else "new\n")
    git(wt, "add", rel)
    return subprocess.run(
        ["git", "commit", "-q", "-m", f"change {rel}", *flags],
        cwd=wt,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": BARE_PATH, **env},
        timeout=60,
    )


def head_subject(wt: Path) -> str:
    return git(wt, "log", "-1", "--format=%s").strip()


@pytest.fixture
def guarded(agents: list[Bus]) -> list[Bus]:
    """The three agents, with the commit guard installed (from the main checkout)."""
    code, out, _ = gb(agents[0].repo.root, "install", "git-hooks")
    assert code == 0 and "installed the commit guard" in out
    return agents


def test_a_commit_inside_another_agents_claim_is_refused_naming_the_holder(guarded: list[Bus]) -> None:
    api, web, _ = guarded
    api.claim(["internal/api/"], reason="splitting handlers")
    before = git(web.repo.root, "rev-parse", "HEAD")
    p = commit(web.repo.root, "internal/api/handler.go")
    assert p.returncode != 0
    assert "api-1 holds internal/api/" in p.stderr and "splitting handlers" in p.stderr
    assert "gitbus ask --to api-1" in p.stderr and "commit refused" in p.stderr
    assert git(web.repo.root, "rev-parse", "HEAD") == before


def test_a_commit_elsewhere_goes_through(guarded: list[Bus]) -> None:
    api, web, _ = guarded
    api.claim(["internal/api/"])
    p = commit(web.repo.root, "internal/apis/x.go")
    assert p.returncode == 0, p.stderr
    assert head_subject(web.repo.root) == "change internal/apis/x.go"


def test_the_holder_itself_commits_inside_its_claim(guarded: list[Bus]) -> None:
    api, _, _ = guarded
    api.claim(["internal/api/"])
    assert commit(api.repo.root, "internal/api/handler.go").returncode == 0


def test_moving_a_file_out_of_a_claimed_directory_is_refused(guarded: list[Bus]) -> None:
    api, web, _ = guarded
    api.claim(["internal/api/"])
    git(web.repo.root, "mv", "internal/api/handler.go", "handler.go")
    p = subprocess.run(
        ["git", "commit", "-q", "-m", "move"],
        cwd=web.repo.root,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": BARE_PATH},
        timeout=60,
    )
    assert p.returncode != 0 and "api-1 holds internal/api/" in p.stderr


def test_gitbus_no_guard_and_no_verify_bypass_the_guard(guarded: list[Bus]) -> None:
    api, web, _ = guarded
    api.claim(["internal/api/"])
    assert commit(web.repo.root, "internal/api/handler.go", GITBUS_NO_GUARD="1").returncode == 0
    assert commit(web.repo.root, "internal/api/handler.go", "--no-verify").returncode == 0
    assert git(web.repo.root, "rev-list", "--count", "HEAD").strip() == "3"


def test_the_committing_agent_comes_from_gitbus_agent_or_the_worktrees_joined_name(
    guarded: list[Bus],
) -> None:
    api, web, _ = guarded
    web.claim(["config/"])
    assert commit(web.repo.root, "config/db.yaml").returncode == 0
    p = commit(web.repo.root, "config/db.yaml", GITBUS_AGENT="api-1")
    assert p.returncode != 0 and "web-1 holds config/" in p.stderr
    git(web.repo.root, "reset", "-q")  # the refused change stays staged; leave it out of the next commit
    api.claim(["internal/api/"])
    assert commit(web.repo.root, "internal/api/handler.go", GITBUS_AGENT="api-1").returncode == 0


def test_guard_warn_lets_the_commit_through_and_says_why(guarded: list[Bus]) -> None:
    api, web, _ = guarded
    api.claim(["internal/api/"])
    gb(web.repo.root, "config", "guard", "warn")
    p = commit(web.repo.root, "internal/api/handler.go")
    assert p.returncode == 0 and "api-1 holds internal/api/" in p.stderr
    assert "commit refused" not in p.stderr


def test_guard_off_lets_the_commit_through_silently(guarded: list[Bus]) -> None:
    api, web, _ = guarded
    api.claim(["internal/api/"])
    gb(web.repo.root, "config", "guard", "off")
    p = commit(web.repo.root, "internal/api/handler.go")
    assert (p.returncode, p.stderr) == (0, "")


def test_the_guard_works_in_every_worktree(guarded: list[Bus]) -> None:
    api, web, db = guarded
    db.claim(["config/"])
    for bus in (api, web):
        p = commit(bus.repo.root, "config/db.yaml")
        assert p.returncode != 0 and "db-1 holds config/" in p.stderr, bus.agent
    assert commit(db.repo.root, "config/db.yaml").returncode == 0
    hooks = Path(git(web.repo.root, "rev-parse", "--git-common-dir").strip())
    assert (api.repo.root / hooks / "hooks" / "pre-commit").is_file()


def test_a_users_pre_commit_hook_still_runs_and_comes_back_on_uninstall(agents: list[Bus]) -> None:
    api, web, _ = agents
    hooks = api.repo.common_dir / "hooks"
    log = api.repo.root.parent / "user-hook.log"
    original = f'#!/bin/sh\necho "user hook ran in $(pwd)" >> {log}\n'
    (hooks / "pre-commit").write_text(original)
    (hooks / "pre-commit").chmod(0o755)
    assert gb(web.repo.root, "install", "git-hooks")[0] == 0
    assert gb(web.repo.root, "install", "git-hooks")[0] == 0  # idempotent: the user's hook is kept once
    api.claim(["internal/api/"])
    assert commit(web.repo.root, "README.md").returncode == 0
    assert log.read_text() == f"user hook ran in {web.repo.root}\n"
    assert commit(web.repo.root, "internal/api/handler.go").returncode != 0
    code, out, _ = gb(web.repo.root, "uninstall", "git-hooks")
    assert code == 0 and "removed the commit guard" in out
    assert (hooks / "pre-commit").read_text() == original
    left = sorted(p.name for p in hooks.iterdir() if p.name.startswith("pre-commit"))
    assert left in (["pre-commit"], ["pre-commit", "pre-commit.sample"])
    assert commit(web.repo.root, "internal/api/handler.go").returncode == 0
    assert log.read_text().count("user hook ran") == 2


def test_installing_the_git_hooks_again_changes_nothing_and_says_so(guarded: list[Bus]) -> None:
    api = guarded[0]
    hook = api.repo.common_dir / "hooks" / "pre-commit"
    before = hook.stat().st_mtime_ns
    code, out, _ = gb(api.repo.root, "install", "git-hooks")
    said = "the commit guard and notes hook are installed already; nothing changed"
    assert (code, out.strip()) == (0, said)
    code, out, _ = gb(api.repo.root, "install", "git-hooks", "--json")
    assert code == 0 and json.loads(out)["wrote"] == []
    assert hook.stat().st_mtime_ns == before


def test_uninstall_without_a_users_hook_removes_the_guard(guarded: list[Bus]) -> None:
    api, web, _ = guarded
    api.claim(["internal/api/"])
    assert gb(api.repo.root, "uninstall", "git-hooks")[0] == 0
    assert not (api.repo.common_dir / "hooks" / "pre-commit").exists()
    assert commit(web.repo.root, "internal/api/handler.go").returncode == 0
    assert gb(api.repo.root, "uninstall", "git-hooks")[1].strip() == "nothing to remove"


def test_core_hooks_path_is_respected(agents: list[Bus], tmp_path: Path) -> None:
    api, web, _ = agents
    custom = tmp_path / "team-hooks"
    custom.mkdir()
    git(api.repo.root, "config", "core.hooksPath", str(custom))
    code, out, _ = gb(web.repo.root, "install", "git-hooks")
    assert code == 0 and str(custom / "pre-commit") in out
    assert not (api.repo.common_dir / "hooks" / "pre-commit").exists()
    api.claim(["internal/api/"])
    p = commit(web.repo.root, "internal/api/handler.go")
    assert p.returncode != 0 and "api-1 holds internal/api/" in p.stderr
    gb(web.repo.root, "uninstall", "git-hooks")
    assert not (custom / "pre-commit").exists()


def test_a_relative_core_hooks_path_is_guarded_in_every_worktree_without_touching_tracked_hooks(
    agents: list[Bus],
) -> None:
    api, web, db = agents
    main = api.repo.root
    log = main.parent / "team-hook.log"
    (main / ".githooks").mkdir()
    team_hook = f'#!/bin/sh\necho "team pre-commit in $(pwd)" >> {log}\n'
    (main / ".githooks" / "pre-commit").write_text(team_hook)
    (main / ".githooks" / "pre-commit").chmod(0o755)
    (main / ".githooks" / "commit-msg").write_text(f'#!/bin/sh\necho "team commit-msg" >> {log}\n')
    (main / ".githooks" / "commit-msg").chmod(0o755)
    git(main, "add", ".githooks")
    git(main, "commit", "-q", "-m", "team hooks, tracked")
    for other in (web, db):
        git(other.repo.root, "merge", "-q", "--ff-only", "main")
    git(main, "config", "core.hooksPath", ".githooks")  # husky-style: resolved in each worktree

    assert gb(main, "install", "git-hooks")[0] == 0
    assert gb(main, "install", "git-hooks")[0] == 0  # idempotent
    for b in (api, web, db):
        assert git(b.repo.root, "status", "--porcelain").strip() == "", "install changed a worktree"
    api.claim(["internal/api/"])
    p = commit(web.repo.root, "internal/api/handler.go")
    assert p.returncode != 0 and "api-1 holds internal/api/" in p.stderr
    assert commit(db.repo.root, "README.md").returncode == 0  # elsewhere: through, team hooks run
    assert log.read_text().splitlines() == [f"team pre-commit in {db.repo.root}", "team commit-msg"]

    assert gb(web.repo.root, "uninstall", "git-hooks")[0] == 0
    assert git(main, "config", "core.hooksPath").strip() == ".githooks"
    assert not (api.repo.common_dir / "gitbus" / "hooks").exists()
    assert commit(web.repo.root, "internal/api/handler.go").returncode == 0


# -- failing closed ------------------------------------------------------------------------------------


def edit_hook(wt: Path, rel: str, agent: str) -> dict[str, object]:
    from gitbus.hooks import handle

    data = {
        "session_id": "g1",
        "cwd": str(wt),
        "hook_event_name": "PreToolUse",
        "tool_name": "Edit",
        "tool_input": {"file_path": str(wt / rel)},
    }
    code, out = handle(data, {"GITBUS_AGENT": agent})
    assert code == 0
    return json.loads(out)["hookSpecificOutput"] if out else {}


@pytest.mark.parametrize("broken", ["ledger-blob", "shard-blob", "shard-tree"])
def test_a_ledger_that_is_no_commit_makes_both_guards_refuse_and_say_why(
    agents: list[Bus], broken: str
) -> None:
    """`refs/bus/ledger` at a blob that is no tombstone, or the shard of a claim at a blob or a tree:
    the claims there cannot be read, so an edit into them is refused."""
    api, web, _ = agents
    root = api.repo.root
    api.claim(["config/"])
    blob = subprocess.run(
        ["git", "hash-object", "-w", "--stdin"], cwd=root, input="x", capture_output=True, text=True
    ).stdout.strip()
    if broken == "ledger-blob":
        ref, path = "refs/bus/ledger", "README.md"
        git(root, "update-ref", ref, blob)
    else:
        ref, path = ledger_shards.shard_of_path("config/"), "config/db.yaml"
        git(root, "update-ref", ref, blob if broken == "shard-blob" else git(root, "write-tree").strip())
    out = edit_hook(web.repo.root, path, "web-1")
    assert out["permissionDecision"] == "deny"
    assert "could not read the claims" in str(out["permissionDecisionReason"])
    code, _, err = gb(web.repo.root, "-a", "web-1", "guard", path)
    assert code == 3 and "could not read the claims" in err and len(err.strip().splitlines()) == 1, err


def fill(disk: Path) -> None:
    with (disk / "filler").open("wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)


def leftovers(repo: Path) -> list[str]:
    return [
        str(p) for p in (repo / ".git").rglob("*") if p.name.startswith((".claims-", ".cursor-", ".config-"))
    ]


def test_on_a_full_disk_the_edit_guard_decides_at_once_says_why_and_leaves_no_temp_file(
    small_disk: Path,
) -> None:
    repo = make_repo(small_disk / "r")
    api = Bus.open(repo, "api-1")
    api.init()
    web = Bus.open(repo, "web-1")
    web.init()
    api.claim(["config/"])
    fill(small_disk)
    started = time.monotonic()
    denied = edit_hook(repo, "config/db.yaml", "web-1")
    allowed = edit_hook(repo, "README.md", "web-1")
    assert time.monotonic() - started < 5
    assert denied["permissionDecision"] == "deny" and "api-1 holds config/" in str(
        denied["permissionDecisionReason"]
    )
    assert "the disk is full" in str(allowed["additionalContext"])
    code, _, err = gb(repo, "-a", "web-1", "discover", "hello")
    assert code == 1 and err.strip().splitlines() == [err.strip()] and "the disk is full" in err, err
    assert time.monotonic() - started < 10
    assert leftovers(repo) == []


def test_on_a_read_only_disk_the_guards_still_decide_and_writes_fail_in_one_line(small_disk: Path) -> None:
    repo = make_repo(small_disk / "r")
    api = Bus.open(repo, "api-1")
    api.init()
    Bus.open(repo, "web-1").init()
    api.claim(["config/"])
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    started = time.monotonic()
    denied = edit_hook(repo, "config/db.yaml", "web-1")
    assert denied["permissionDecision"] == "deny"
    code, _, err = gb(repo, "-a", "web-1", "guard", "config/db.yaml")
    assert code == 3 and "api-1 holds config/" in err, err
    code, _, err = gb(repo, "-a", "web-1", "claim", "README.md")
    assert code == 1 and "read-only" in err and len(err.strip().splitlines()) == 1, err
    assert time.monotonic() - started < 10


# -- the claims index: a check costs the path's depth, not the number of claims (issue 16) ----------


def test_a_guard_check_among_many_claims_reads_only_the_claims_along_its_path(
    worktrees: list[Path], bus_for: BusFor, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = worktrees[0]
    crowd(root, bus_for)
    common = Bus.open(root).repo.common_dir
    guard.snapshot(root, common)  # the index is current, as after any earlier check
    parsed = counted(monkeypatch, Claim, "from_json")
    hit = guard.conflicts(
        root, common, agent_name("me-1"), ["area2/mod7/x.py", "src/free.py"], clock.now_ms()
    )
    assert [(p, c.owner, c.path) for p, c in hit] == [("area2/mod7/x.py", "db-1", "area2/mod7/")]
    assert parsed[0] <= 2, f"{parsed[0]} claims read for two checks among {len(HOLDERS) * PER_HOLDER}"


def test_after_a_ledger_step_the_guard_reads_only_the_entries_that_changed(
    worktrees: list[Path], bus_for: BusFor, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = worktrees[0]
    api = crowd(root, bus_for)[0]
    common = api.repo.common_dir
    guard.snapshot(root, common)
    api.claim(["extra/"])
    api.release(["area0/mod3/"])
    blobs = entries_read(monkeypatch, api.repo)
    snap = guard.snapshot(root, common)
    assert blobs[0] <= 2, f"{blobs[0]} ledger entries read to follow two steps"
    now = clock.now_ms()
    assert [c.path for c in snap.blocking(agent_name("me-1"), "extra/x.py", now)] == ["extra/"]
    assert snap.blocking(agent_name("me-1"), "area0/mod3/x.py", now) == []
    assert [c.path for c in snap.blocking(agent_name("me-1"), "area0/mod4/x.py", now)] == ["area0/mod4/"]
    assert guard.cached(common) is not None
    whole = guard.from_ledger(root, snap.ledger, None)  # the same index as one read whole
    assert bytes(snap.index.data) == bytes(whole.index.data)


def test_the_index_answers_as_a_scan_of_every_claim_would(
    worktrees: list[Path], bus_for: BusFor, clock: FakeClock
) -> None:
    """Every way a path can meet a claim: above, below, the same path in another case, a name that
    only starts like a claimed one, a file and a folder of one name, a claim in an older slot."""
    root = worktrees[0]
    api, web, db, ops = crowd(root, bus_for)
    web.claim(["Docs/Guide.md", "docs/api/", "lib/a b/ü.py", "area1/mod3/deep/x.py"])
    db.claim(["area10/", "tmp/"], ttl_ms=1000)
    ops.claim(["zz/"])
    clock.advance(5000)
    paths = [
        f"{top}{rest}"
        for top in (
            "area1/",
            "AREA1/",
            "area10/",
            "area1",
            "docs/",
            "DOCS/",
            "lib/",
            "lib/A B/",
            "zz",
            "tmp/",
        )
        for rest in ("", "mod3/", "mod3", "mod3/deep/", "mod3/deep/x.py", "guide.md", "API/v1.py", "Ü.py")
    ]
    every = all_claims(ledger_state.current(api.repo))
    snap = guard.snapshot(root, api.repo.common_dir)
    now = clock.now_ms()
    for me in (agent_name("web-1"), agent_name("me-1")):
        for p in paths:
            scan = [c for c in every if c.owner != me and c.live(now) and P.overlaps(c.path, p, True)]
            assert snap.blocking(me, p, now) == scan, p
            mine = [c for c in every if c.owner == me and P.covers(c.path, p, True)]
            assert snap.mine_covering(me, p) == mine, p


def test_a_damaged_index_is_read_again_from_the_ledger_never_guessed_at(
    worktrees: list[Path], bus_for: BusFor, clock: FakeClock
) -> None:
    root = worktrees[0]
    crowd(root, bus_for)
    common = Bus.open(root).repo.common_dir
    guard.snapshot(root, common)
    f = state.claims_cache(common)
    lines = f.read_bytes().split(b"\n")
    hit = next(i for i, line in enumerate(lines) if line.startswith(b"area2/mod7/\t"))
    lines[hit] = b"area2/mod7/\tgarbage"
    f.write_bytes(b"\n".join(lines))
    hit_now = guard.conflicts(root, common, agent_name("me-1"), ["area2/mod7/x.py"], clock.now_ms())
    assert [c.owner for _, c in hit_now] == ["db-1"]
    assert b"garbage" not in f.read_bytes()


def write_through_the_hook(wt: Path, agent: str, rel: str) -> subprocess.CompletedProcess[bytes]:
    """Claude Code's PreToolUse call for a Write of `rel`, to the real `gitbus hook` process."""
    call = {
        "hook_event_name": "PreToolUse",
        "session_id": "s1",
        "cwd": str(wt),
        "tool_name": "Write",
        "tool_input": {"file_path": str(wt / rel), "content": "x"},
    }
    return subprocess.run(
        [sys.executable, "-m", "gitbus", "hook"],
        input=json.dumps(call).encode(),
        cwd=wt,
        env={**os.environ, "GITBUS_AGENT": agent},
        capture_output=True,
        timeout=60,
    )


def test_a_ledger_folder_named_in_bytes_that_are_not_utf8_keeps_the_edit_guard_closed(
    agents: list[Bus], clock: FakeClock
) -> None:
    """A peer's tree (plain git) may name a slot in any bytes: the index, brought up by a tree diff
    from the one before, must still deny the edit into the live claim, not crash and let it through."""
    api, web = agents[0], agents[1]
    root, common = api.repo.root, api.repo.common_dir
    api.claim(["docs/"])
    guard.snapshot(root, common)  # an index at this tip: the next is brought up by a diff

    def mktree(entries: bytes) -> str:
        return (
            subprocess.run(["git", "mktree"], cwd=root, input=entries, capture_output=True, check=True)
            .stdout.decode()
            .strip()
        )

    shard = ledger_shards.shard_of_path("docs/")
    tip = git(root, "rev-parse", shard).strip()
    entry = git(root, "rev-parse", f"{shard}:claims/_docs/@").strip()
    docs = git(root, "rev-parse", f"{shard}:claims/_docs").strip()
    odd = mktree(f"100644 blob {entry}\t@\n".encode())
    claims = mktree(f"040000 tree {docs}\t_docs\n040000 tree {odd}\t_".encode() + b"\xff\n")
    hostile = git(
        root, "commit-tree", mktree(f"040000 tree {claims}\tclaims\n".encode()), "-p", tip, "-m", "x"
    )
    git(root, "update-ref", shard, hostile.strip(), tip)
    done = write_through_the_hook(web.repo.root, "web-1", "docs/a.md")
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode()[-600:]
    decision = json.loads(done.stdout)["hookSpecificOutput"]
    assert decision["permissionDecision"] == "deny" and "api-1" in decision["permissionDecisionReason"]


def test_a_damaged_index_whose_ledger_cannot_be_read_again_refuses_the_edit(
    agents: list[Bus], clock: FakeClock
) -> None:
    api, web = agents[0], agents[1]
    root, common = api.repo.root, api.repo.common_dir
    api.claim(["docs/"])
    guard.snapshot(root, common)
    f = state.claims_cache(common)
    f.write_bytes(
        b"\n".join(b"docs/\tgarbage" if x.startswith(b"docs/\t") else x for x in f.read_bytes().split(b"\n"))
    )
    tip = git(root, "rev-parse", ledger_shards.shard_of_path("docs/")).strip()
    (common / "objects" / tip[:2] / tip[2:]).unlink()  # the claim's shard commit is gone from disk
    done = write_through_the_hook(web.repo.root, "web-1", "docs/a.md")
    assert done.returncode == 0, done.stderr.decode()[-600:]
    assert json.loads(done.stdout)["hookSpecificOutput"]["permissionDecision"] == "deny"


def test_a_claim_in_an_older_slot_is_followed_by_the_index_through_release_and_claim_again(
    agents: list[Bus], clock: FakeClock
) -> None:
    """A gitbus that folded case only with core.ignorecase wrote `claims/_Docs/@`: the index brought
    up by tree diffs must hold it, drop it on release and take the folded slot after, as a whole read."""
    api = agents[0]
    root, common = api.repo.root, api.repo.common_dir
    api.claim(["Docs/"])
    guard.snapshot(root, common)
    shard = ledger_shards.shard_of_path("docs/")
    assert ledger_shards.route("claims/_Docs/@") == shard
    tip = git(root, "rev-parse", shard).strip()
    entry = git(root, "rev-parse", f"{shard}:claims/_docs/@").strip()
    env = {"GIT_INDEX_FILE": str(common / "older-index")}
    run_git(root, "read-tree", "--empty", env=env)
    run_git(root, "update-index", "--add", "--cacheinfo", f"100644,{entry},claims/_Docs/@", env=env)
    slots = run_git(root, "write-tree", env=env)
    older = git(root, "commit-tree", slots, "-p", tip, "-m", "older slot").strip()
    git(root, "update-ref", shard, older, tip)
    now, web = clock.now_ms(), agent_name("web-1")

    def as_read_whole(snap: guard.Snapshot) -> bool:
        return bytes(snap.index.data) == bytes(guard.from_ledger(root, snap.ledger, None).index.data)

    snap = guard.snapshot(root, common)
    assert [c.where for c in snap.blocking(web, "docs/readme.md", now)] == ["claims/_Docs/@"]
    assert as_read_whole(snap)
    api.release(["docs/"])
    snap = guard.snapshot(root, common)
    assert snap.blocking(web, "docs/readme.md", now) == [] and as_read_whole(snap)
    api.claim(["Docs/"])
    snap = guard.snapshot(root, common)
    assert [c.where for c in snap.blocking(web, "docs/readme.md", now)] == ["claims/_docs/@"]
    assert as_read_whole(snap)


def test_a_check_reads_two_refs_however_many_shards_and_never_misses_a_move(
    agents: list[Bus], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index is current for a path when its top folder's shard and the tombstone are as it was
    taken at: other shards moving does not make a check read them all, or read the ledgers again;
    its own shard moving does, and the new claim is seen."""
    api, web, _ = agents
    api.claim([f"top{i}/" for i in range(60)])  # 60 top folders: dozens of shards
    root, common = web.repo.root, web.repo.common_dir
    assert guard.snapshot(root, common).blocking(web.agent, "top3/x.py", web.clock.now_ms())
    api.claim(["elsewhere/"])  # one more shard moves: unrelated to top3/
    reads = counted(monkeypatch, guard, "read_refs")
    index_reads = counted(monkeypatch, claimsindex, "read_refs")  # the index's key (`ledger_tip`)
    rebuilt = counted(monkeypatch, guard, "from_ledger")
    snap = guard.snapshot(root, common, ["top3/x.py"])
    assert snap.blocking(web.agent, "top3/x.py", web.clock.now_ms())
    assert rebuilt[0] == 0 and reads[0] + index_reads[0] <= 2, (rebuilt, reads, index_reads)
    api.release(["top5/"])  # its own shard moves
    snap = guard.snapshot(root, common, ["top5/y.py"])
    assert rebuilt[0] == 1 and snap.blocking(web.agent, "top5/y.py", web.clock.now_ms()) == []
    api.claim(["top5/z/"])
    assert guard.snapshot(root, common, ["top5/z/a.py"]).blocking(
        web.agent, "top5/z/a.py", web.clock.now_ms()
    )


@pytest.mark.parametrize("header", ["a" * 40, "ledgers/0a1b", "ledger=" + "b" * 40 + ",,"])
def test_an_index_from_before_shards_or_damaged_is_read_again_not_trusted(
    agents: list[Bus], header: str
) -> None:
    """An index an older gitbus wrote keys its claims by one ledger commit; a damaged header may say
    anything: neither reads as the ledgers now, so the guard reads them again, and stays closed."""
    api, web, _ = agents
    api.claim(["docs/"])
    root, common = web.repo.root, web.repo.common_dir
    state.claims_cache(common).parent.mkdir(parents=True, exist_ok=True)
    state.claims_cache(common).write_bytes(claimsindex.render(header, web.repo.ignorecase, []))
    assert guard.snapshot(root, common, ["docs/x.md"]).blocking(web.agent, "docs/x.md", web.clock.now_ms())
    state.claims_cache(common).write_bytes(claimsindex.render(header, web.repo.ignorecase, []))
    data = {
        "hook_event_name": "PreToolUse",
        "cwd": str(root),
        "session_id": "s1",
        "tool_name": "Write",
        "tool_input": {"file_path": str(root / "docs" / "x.md"), "content": "x"},
    }
    p = subprocess.run(
        [sys.executable, "-m", "gitbus", "hook"],
        input=json.dumps(data),
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "GITBUS_AGENT": web.agent},
        timeout=60,
    )
    assert p.returncode == 0 and p.stderr == "", p.stderr
    decision = json.loads(p.stdout)["hookSpecificOutput"]
    assert decision["permissionDecision"] == "deny" and "api-1" in decision["permissionDecisionReason"]


@pytest.mark.parametrize("how", sorted(DAMAGES))
def test_a_damaged_ledger_ref_makes_both_guards_refuse_and_claims_fail_in_one_line(
    guarded: list[Bus], how: str
) -> None:
    """A claim's shard ref emptied, cut short, symbolic, a symbolic link, or its packed-refs line
    damaged: its claims are unknown, never read as none. Both guards refuse with the reason, a claim
    fails in one sentence naming the file, and status counts the damage."""
    api, web, _ = guarded
    api.claim(["config/"])
    shard = ledger_shards.shard_of_path("config/")
    damage(api.repo.common_dir, shard, how)
    out = edit_hook(web.repo.root, "config/db.yaml", "web-1")
    assert out["permissionDecision"] == "deny"
    assert "could not read the claims" in str(out["permissionDecisionReason"])
    done = commit(web.repo.root, "config/db.yaml", GITBUS_AGENT="web-1")
    assert done.returncode != 0 and "could not read the claims" in done.stderr, done.stderr
    code, _, err = gb(web.repo.root, "-a", "web-1", "claim", "config/db.yaml")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "packed-refs" in err or shard in err, err
    code, _, err = gb(web.repo.root, "-a", "web-1", "claims")  # unknown, not none
    assert code == 1 and len(err.strip().splitlines()) == 1 and "cannot be read" in err, err
    code, _, err = gb(api.repo.root, "-a", "api-1", "release", "--all")  # not "you hold none"
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "cannot be read" in err or "CRLF" in err, err
    code, out_json, _ = gb(web.repo.root, "-a", "web-1", "status", "--json")
    assert code == 0 and json.loads(out_json)["skipped"] >= 1
