"""The door to git: compare-and-swap ref writes, the one retry loop over them, the worktree listing."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitbus import git, races
from gitbus.bus import Bus
from gitbus.errors import GitbusError
from gitbus.git import LostRaces, RefMoved, Repository
from gitbus.gitfiles import DamagedRef

from .conftest import git as run_git
from .conftest import make_repo
from .test_fastpath import DAMAGES, damage

REF = "refs/bus/test"


def _commit(repo: Repository, text: str) -> git.Oid:
    return repo.commit(tree=repo.empty_tree, parents=[], message=text, author="t", time_ms=1_000_000)


def test_a_ref_write_that_names_a_stale_value_loses_and_names_the_winner(repo: Path) -> None:
    r = Repository.open(repo)
    first, second, mine = (_commit(r, t) for t in ("first\n", "second\n", "mine\n"))
    r.update_ref(REF, first, None, "test")
    r.update_ref(REF, second, first, "test")
    with pytest.raises(RefMoved) as lost:
        r.update_ref(REF, mine, first, "test")
    assert (lost.value.name, lost.value.actual) == (REF, second)
    assert r.ref(REF) == second


def test_retry_cas_decides_again_on_the_winners_value(repo: Path) -> None:
    r = Repository.open(repo)
    rival = _commit(r, "rival\n")
    seen: list[git.Oid | None] = []

    def attempt() -> str:
        tip = r.ref(REF)
        seen.append(tip)
        if tip is None:
            r.update_ref(REF, rival, None, "another writer gets there first")
        mine = r.commit(
            tree=r.empty_tree, parents=[tip or rival], message="m\n", author="t", time_ms=1_000_000
        )
        r.update_ref(REF, mine, tip, "test")
        return mine

    won = r.retry_cas(REF, attempt, f"writing {REF}")
    assert seen == [None, rival] and r.ref(REF) == won


def test_retry_cas_gives_up_after_the_one_limit_naming_the_ref_and_its_winner(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(races, "MAX_RACES", 5)
    r = Repository.open(repo)
    calls = 0

    def always_beaten() -> None:
        nonlocal calls
        calls += 1
        tip = r.ref(REF)
        r.update_ref(REF, _commit(r, f"rival {calls}\n"), tip, "a rival")
        r.update_ref(REF, _commit(r, "mine\n"), tip, "test")

    with pytest.raises(LostRaces) as gave_up:
        r.retry_cas(REF, always_beaten, f"writing {REF}")
    assert calls == 5
    assert (gave_up.value.ref, gave_up.value.winner) == (REF, r.ref(REF))
    assert f"Gave up writing {REF} after 5 lost races" in str(gave_up.value)
    assert gave_up.value.exit_code == 4  # a `Contended`: one line at the CLI


# -- damage and errors that never clear ------------------------------------------------------------


@pytest.mark.parametrize("how", sorted(DAMAGES))
def test_a_damaged_agent_ref_is_counted_and_never_written_over(agents: list[Bus], how: str) -> None:
    """An agent's ref emptied, cut short, made symbolic or a symbolic link, or its packed-refs line
    damaged: status counts it, and a post by that agent is refused in one sentence naming the file,
    which stays as it is (no fresh chain is started over it)."""
    api, _, _ = agents
    api.discover("before the damage")
    common = api.repo.common_dir
    ref = "refs/bus/agents/api-1"
    damage(common, ref, how)
    files = _ref_files(common)
    reader = Bus.open(agents[1].repo.root, "web-1")
    assert reader.status().skipped >= 1
    with pytest.raises(GitbusError) as refused:
        Bus.open(api.repo.root, "api-1").discover("after the damage")
    text = str(refused.value)
    assert "\n" not in text and ("packed-refs" in text or str(common / ref) in text), text
    assert _ref_files(common) == files


def _ref_files(common: Path) -> dict[Path, bytes | str]:
    """Every bus ref file and packed-refs, with its bytes (a symbolic link: where it points)."""
    found = [common / "packed-refs", *(common / "refs" / "bus").rglob("*")]
    return {
        p: os.readlink(p) if p.is_symlink() else p.read_bytes()
        for p in found
        if p.is_symlink() or p.is_file()
    }


@pytest.fixture
def short_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lock waits of 2 s: an error that never clears must not be waited on even that long."""
    monkeypatch.setattr(git, "_LOCK_DEADLINE_SECONDS", 2.0)


@pytest.mark.parametrize(
    "blocker", ["a folder for the ref", "a file for its folder", "a folder for its lock"]
)
def test_a_ref_that_can_never_be_locked_fails_at_once_in_one_line(
    repo: Path, short_wait: None, blocker: str
) -> None:
    r = Repository.open(repo)
    ref = "refs/bus/agents/api-1"
    path = r.common_dir / ref
    if blocker == "a folder for the ref":
        path.mkdir(parents=True)
    elif blocker == "a file for its folder":
        path.parent.parent.mkdir(parents=True, exist_ok=True)
        path.parent.write_text("")
    else:
        Path(f"{path}.lock").mkdir(parents=True)
        os.utime(f"{path}.lock", (time.time() - 3600, time.time() - 3600))  # old: as if stale
    began = time.monotonic()
    with pytest.raises(GitbusError) as refused:
        r.update_ref(ref, _commit(r, "x\n"), None, "test")
    assert time.monotonic() - began < 1.5
    text = str(refused.value)
    assert "another writer" not in text and "\n" not in text and str(path) in text, text
    assert not [p for p in (r.common_dir / "refs").rglob("*") if ".stale-" in p.name]


@pytest.mark.parametrize("empty", [True, False])
def test_a_folder_in_a_bus_ref_s_place_is_damage_never_absent(repo: Path, empty: bool) -> None:
    """Found by reading it (no `stat` first): a folder, empty or holding a ref, is named as such."""
    r = Repository.open(repo)
    path = r.common_dir / "refs" / "bus" / "ledger"
    path.mkdir(parents=True)
    if not empty:
        (path / "x").write_text(_commit(r, "x\n") + "\n")
    with pytest.raises(DamagedRef) as refused:
        r.ref("refs/bus/ledger")
    assert "is a folder, not a ref file" in str(refused.value)
    assert r.ref("refs/bus/agents/nobody") is None  # an absent ref is still just absent


def test_a_setting_libgit2_cannot_parse_fails_a_write_at_once_in_one_line(
    repo: Path, short_wait: None
) -> None:
    """A ref that keeps a reflog is libgit2's to write; with core.logAllRefUpdates set to nonsense
    libgit2 refuses every time: that is no lock another writer holds."""
    r = Repository.open(repo)
    (r.common_dir / "logs" / "refs" / "bus").mkdir(parents=True)
    (r.common_dir / "logs" / REF).touch()
    (repo / ".git" / "config").write_text(
        (repo / ".git" / "config").read_text() + "[core]\n\tlogAllRefUpdates = garbage\n"
    )
    r = Repository.open(repo)
    began = time.monotonic()
    with pytest.raises(GitbusError) as refused:
        r.update_ref(REF, _commit(r, "x\n"), None, "test")
    assert time.monotonic() - began < 1.5
    text = str(refused.value)
    assert "another writer" not in text and "\n" not in text and "garbage" in text, text


def test_a_claim_taken_whose_join_cannot_be_written_succeeds_and_says_so(
    agents: list[Bus], short_wait: None
) -> None:
    """The step is on the ledger: the command must not report failure; it says why the agent's
    chain is missing."""
    api, _, _ = agents
    new = Bus.open(api.repo.root, "new-1")
    Path(f"{api.repo.common_dir}/refs/bus/agents/new-1.lock").mkdir()
    msg = new.claim(["lib/"])
    assert msg is not None and [c.path for c in api.claims() if c.owner == "new-1"] == ["lib/"]
    assert any("new-1's chain could not be started" in n and "new-1.lock" in n for n in new.notices)


@pytest.fixture
def immutable_objects(repo: Path) -> Iterator[Path]:
    """The objects folder made immutable (chattr +i: refuses writes even to root), undone at the end."""
    objects = repo / ".git" / "objects"
    if subprocess.run(["chattr", "+i", str(objects)], capture_output=True).returncode:
        pytest.skip("chattr +i is not available here")
    try:
        yield objects
    finally:
        subprocess.run(["chattr", "-i", str(objects)], check=False)


def test_an_objects_folder_that_refuses_writes_fails_in_one_line(repo: Path, immutable_objects: Path) -> None:
    r = Repository.open(repo)
    with pytest.raises(GitbusError) as refused:
        r.blob(b"new content\n")
    assert str(refused.value).startswith("Could not write to the repository:") and "\n" not in str(
        refused.value
    )


# -- the listing of worktrees ---------------------------------------------------------------------

# A newline, and two of the other characters str.splitlines() breaks at (a line separator, NEL).
BREAKS = ("\n", "\u2028", "\x85")


def odd_worktrees(tmp_path: Path) -> tuple[Path, Path, list[Path]]:
    """A repository with a worktree `other<break>feature` for each of BREAKS, beside another
    repository `other`: what a listing cut at the break would name instead."""
    main = make_repo(tmp_path / "main")
    decoy = make_repo(tmp_path / "other")
    added = []
    for brk in BREAKS:
        wt = tmp_path / f"other{brk}feature"
        run_git(main, "worktree", "add", "-q", "--detach", str(wt))
        added.append(wt)
    return main, decoy, added


@pytest.fixture
def git_without_z(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real git on PATH, but refusing `worktree list -z` as gits before 2.36 do (exit 129, usage)."""
    real = shutil.which("git")
    assert real is not None
    folder = tmp_path / "git-before-2.36"
    folder.mkdir()
    (folder / "git").write_text(
        "#!/bin/sh\n"
        'if [ "$1 $2" = "worktree list" ]; then\n'
        '  for a in "$@"; do [ "$a" = -z ] && { echo "error: unknown switch \\`z\'" >&2; exit 129; }; done\n'
        "fi\n"
        f'exec {shlex.quote(real)} "$@"\n'
    )
    (folder / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


def test_a_worktree_whose_path_holds_a_line_break_is_listed_whole(tmp_path: Path) -> None:
    main, _, added = odd_worktrees(tmp_path)
    listing = Repository.open(main).worktree_listing()
    assert listing.paths[0] == main and sorted(listing.paths[1:]) == sorted(added) and listing.skipped == []
    assert Repository.open(added[0]).worktrees() == listing.paths


def test_a_worktree_whose_path_is_not_utf8_is_skipped_and_named_never_read_as_another(tmp_path: Path) -> None:
    main = make_repo(tmp_path / "main")
    (tmp_path / "caf\ufffd").mkdir()  # what the path would read as with its bad byte replaced
    run_git(main, "worktree", "add", "-q", "--detach", str(tmp_path / os.fsdecode(b"caf\xe9")))
    repo = Repository.open(main)
    listing = repo.worktree_listing()
    assert listing.paths == [main] and len(listing.skipped) == 1
    assert "caf\\udce9" in listing.skipped[0] and "not UTF-8" in listing.skipped[0], listing.skipped
    with pytest.raises(GitbusError) as refused:  # a caller that needs every worktree stops, in one line
        repo.worktrees()
    assert "\n" not in str(refused.value) and "caf\\udce9" in str(refused.value)


def test_with_a_git_before_2_36_a_path_with_a_newline_is_skipped_and_said_never_cut(
    tmp_path: Path, git_without_z: None
) -> None:
    main, _, (newline, *others) = odd_worktrees(tmp_path)
    listing = Repository.open(main).worktree_listing()
    assert listing.paths[0] == main and sorted(listing.paths[1:]) == sorted(others)  # only "\n" ends a line
    assert len(listing.skipped) == 1 and "line break" in listing.skipped[0], listing.skipped
    assert newline not in listing.paths


def test_with_a_git_before_2_36_a_path_cannot_pose_as_a_worktree_of_another_repository(
    tmp_path: Path, git_without_z: None
) -> None:
    main = make_repo(tmp_path / "main")
    decoy = make_repo(tmp_path / "other")
    run_git(main, "worktree", "add", "-q", "--detach", f"{tmp_path}/x\n\nworktree {decoy}")
    listing = Repository.open(main).worktree_listing()
    assert listing.paths == [main] and listing.skipped, listing
