"""The coordination notes store (`gitbus.notes`): notes under refs/notes/gitbus, and search.

Commits are real `git commit`s in real worktrees with the hooks `gitbus install git-hooks` writes, run
with a PATH that has no gitbus on it (the hook names its interpreter itself); notes travel between real
clones through a real bare remote over file://. Concurrent `git notes add` silently loses notes (each
rewrites the notes ref without checking what it replaces), so four worktrees commit at the same moment
and every commit must keep its note. What a note says, and a path's story, are test_story.py's; the
helpers here are shared with it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import traceback
import tracemalloc
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gitbus import notes, render, syncview
from gitbus.bus import OPEN_WINDOW, Bus
from gitbus.cli import app
from gitbus.clock import FakeClock
from gitbus.git import Repository
from gitbus.gitfiles import Oid
from gitbus.notes import MERGED_BYTES, NOTES_REF
from gitbus.remote import Report

from .conftest import git, make_repo, raw_git
from .crowded import bulk_discoveries
from .helpers_proc import FORK, WAIT_SECONDS, Failure, collect, running

NAMES = ("api-1", "web-1", "db-1", "ops-1")
BARE_PATH = "/usr/bin:/bin"


# -- helpers -------------------------------------------------------------------------------------


def gb(wt: Path, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, ["-C", str(wt), *args], env={"COLUMNS": "200"})
    return r.exit_code, r.stdout, r.stderr


def gb_json(wt: Path, *args: str) -> Any:
    code, out, err = gb(wt, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def run_git(wt: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Real git with the hooks live and no gitbus on the PATH."""
    return subprocess.run(
        ["git", *args],
        cwd=wt,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": BARE_PATH, **env},
        timeout=WAIT_SECONDS,
    )


def commit(wt: Path, rel: str, message: str | None = None, **env: str) -> str:
    """Change `rel` in `wt`, commit it with real git (hooks and all) and return the new commit."""
    f = wt / rel
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text((f.read_text() if f.exists() else "") + "more\n")
    git(wt, "add", rel)
    p = run_git(wt, "commit", "-q", "-m", message or f"change {rel}", **env)
    assert p.returncode == 0, p.stderr
    return git(wt, "rev-parse", "HEAD").strip()


def note(wt: Path, rev: str) -> str:
    """The gitbus note on `rev`, read by git itself ("" when there is none)."""
    p = subprocess.run(["git", "notes", "--ref=gitbus", "show", rev], cwd=wt, capture_output=True, text=True)
    return p.stdout if p.returncode == 0 else ""


def at_second(ms: int) -> dict[str, str]:
    """Author and committer dates for a commit made in the same wall-clock second as `ms`."""
    date = f"@{ms // 1000} +0000"
    return {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}


def join_team(worktrees: list[Path]) -> list[Bus]:
    """Four agents in four worktrees (each named by `join`), the git hooks installed."""
    wt = worktrees[0].parent / "wt-d"
    git(worktrees[0], "worktree", "add", "-q", "-b", "wt-d", str(wt))
    buses = []
    for path, name in zip([*worktrees, wt], NAMES, strict=True):
        bus = Bus.open(path)
        bus.join(name)
        buses.append(bus)
    code, out, err = gb(worktrees[0], "install", "git-hooks")
    assert code == 0 and "installed the commit notes hook" in out, err
    return buses


@pytest.fixture
def team(worktrees: list[Path]) -> list[Bus]:
    return join_team(worktrees)


# -- every commit keeps its note ------------------------------------------------------------------


def commit_on_barrier(worktree: str, rel: str, rounds: int, barrier: Barrier, out: Queue[Any]) -> None:
    """Each round: stage a change to `rel`, wait for the others, then `git commit` with the hooks."""
    try:
        wt = Path(worktree)
        for r in range(rounds):
            (wt / rel).write_text(f"round {r}\n")
            git(wt, "add", rel)
            barrier.wait(WAIT_SECONDS)
            p = run_git(wt, "commit", "-q", "-m", f"{rel} round {r}")
            out.put((worktree, r, p.returncode, p.stderr, git(wt, "rev-parse", "HEAD").strip()))
    except BaseException:
        out.put(Failure(worktree, traceback.format_exc()))
        barrier.abort()


def test_four_worktrees_committing_at_the_same_moment_each_keep_their_note(team: list[Bus]) -> None:
    rounds = 2
    for bus in team:
        bus.discover(f"{bus.agent} is about to commit")
    barrier, out = FORK.Barrier(len(team)), FORK.Queue()  # children only run git
    procs = [
        FORK.Process(
            target=commit_on_barrier, args=(str(b.repo.root), f"{b.agent}.txt", rounds, barrier, out)
        )
        for b in team
    ]
    with running(procs, barrier):
        results = collect(out, len(team) * rounds)
    agent_of = {str(b.repo.root): b.agent for b in team}
    main = team[0].repo.root
    for worktree, r, code, err, sha in results:
        assert code == 0, f"{worktree} round {r}: {err}"
        text = note(main, sha)
        assert text.count("gitbus: committed by agent ") == 1, (worktree, r, text)
        assert text.startswith(f"gitbus: committed by agent {agent_of[worktree]}\n"), (worktree, r, text)
    noted = git(main, "notes", "--ref=gitbus", "list").splitlines()
    assert len(noted) == len(team) * rounds == len({sha for *_, sha in results})


# -- notes follow rewritten commits --------------------------------------------------------------


def test_amending_a_commit_keeps_its_note(team: list[Bus]) -> None:
    api = team[0]
    wt = api.repo.root
    assert NOTES_REF in git(wt, "config", "--get-all", "notes.rewriteRef").split()
    found = api.discover("the retry loop lives in handler.go")
    before = commit(wt, "internal/api/handler.go")
    original = note(wt, before)
    assert found.id[:8] in original
    p = run_git(wt, "commit", "-q", "--amend", "-m", "change handler.go, reworded")
    assert p.returncode == 0, p.stderr
    after = git(wt, "rev-parse", "HEAD").strip()
    assert after != before
    assert original.rstrip("\n") in note(wt, after)
    assert found.id[:8] in git(wt, "log", "-1", "--notes=gitbus")


def test_rebasing_commits_onto_another_commit_keeps_their_notes(team: list[Bus]) -> None:
    api, web = team[0], team[1]
    wt = web.repo.root
    m1 = web.discover("first step of the stylesheet work")
    c1 = commit(wt, "web/a.css")
    m2 = web.discover("second step of the stylesheet work")
    c2 = commit(wt, "web/b.css")
    originals = [note(wt, c1), note(wt, c2)]
    assert m1.id[:8] in originals[0] and m2.id[:8] in originals[1]
    commit(
        api.repo.root,
        "README.md",
        GIT_CONFIG_COUNT="1",
        GIT_CONFIG_KEY_0="core.hooksPath",
        GIT_CONFIG_VALUE_0="/dev/null",
    )  # main moves on (without hooks: not what is tested here)
    p = run_git(wt, "rebase", "main")
    assert p.returncode == 0, p.stdout + p.stderr
    rebased = git(wt, "rev-list", "--reverse", "main..HEAD").split()
    assert len(rebased) == 2 and not {c1, c2} & set(rebased)
    assert git(wt, "rev-parse", "HEAD~2").strip() == git(wt, "rev-parse", "main").strip()
    for original, sha in zip(originals, rebased, strict=True):
        assert original.rstrip("\n") in note(wt, sha)
    shown = git(wt, "log", "--notes=gitbus", "main..HEAD")
    assert m1.id[:8] in shown and m2.id[:8] in shown


# -- notes travel with sync ----------------------------------------------------------------------


@pytest.fixture
def clones(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A bare remote and two clones of it (agents ann and ben), each with the bus remote set to origin
    and the git hooks installed."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(make_repo(tmp_path / "seed"), "push", "-q", bare.as_uri(), "main")
    out = []
    for name in ("ann", "ben"):
        path = tmp_path / name
        git(tmp_path, "clone", "-q", bare.as_uri(), str(path))
        Bus.open(path).join(name)
        assert gb(path, "remote", "origin")[0] == 0
        assert gb(path, "install", "git-hooks")[0] == 0
        out.append(path)
    return bare, out[0], out[1]


def sync(*clones: Path) -> None:
    for path in clones:
        code, _, err = gb(path, "sync")
        assert code == 0, err


def test_notes_sync_both_ways_and_a_commit_noted_on_both_sides_keeps_both_texts(
    clones: tuple[Path, Path, Path],
) -> None:
    bare, a, b = clones
    base = git(a, "rev-parse", "HEAD").strip()
    Bus.open(a).discover("the parser drops byte-order marks")
    a1 = commit(a, "README.md")
    Bus.open(b).discover("config/db.yaml is read twice at start-up")
    b1 = commit(b, "config/db.yaml")
    git(a, "push", "-q", "origin", "HEAD:refs/heads/ann")
    git(b, "push", "-q", "origin", "HEAD:refs/heads/ben")
    for path in (a, b):
        git(path, "fetch", "-q", "origin")
        assert gb(path, "note", base)[0] == 0  # both sides note the commit they share
    texts = {"a1": note(a, a1), "b1": note(b, b1), "ann base": note(a, base), "ben base": note(b, base)}
    assert texts["ann base"].startswith("gitbus: committed by agent ann\n")
    assert texts["ben base"].startswith("gitbus: committed by agent ben\n")
    assert note(b, a1) == note(a, b1) == ""

    sync(a, b, a, b, a, b)  # both sides, then again: nothing may be lost or doubled
    for path in (a, b):
        assert note(path, a1) == texts["a1"]
        assert note(path, b1) == texts["b1"]
        both = note(path, base)
        for side in ("ann base", "ben base"):
            assert both.count(texts[side].rstrip("\n")) == 1, both
        assert "Notes (gitbus):" in git(path, "log", "-1", "--notes=gitbus", a1 if path == b else b1)
    tips = {git(p, "rev-parse", NOTES_REF).strip() for p in (a, b, bare)}
    assert len(tips) == 1, "the two clones and the remote did not settle on one notes commit"


def test_a_note_added_to_after_a_sync_is_not_doubled_by_the_next_merge(
    clones: tuple[Path, Path, Path],
) -> None:
    _, a, b = clones
    Bus.open(a).discover("the parser drops byte-order marks")
    a1 = commit(a, "README.md")
    git(a, "push", "-q", "origin", "HEAD:refs/heads/ann")
    ann_text = note(a, a1)
    sync(a, b)  # ben now has ann's note on a1
    git(b, "fetch", "-q", "origin")
    assert gb(b, "note", a1)[0] == 0  # ben adds to it: a1's note is now ann's text, then ben's
    added = note(b, a1)
    assert added.startswith(ann_text.rstrip("\n") + "\n\ngitbus: committed by agent ben\n")
    commit(a, "config/db.yaml")  # meanwhile ann notes another commit: the two notes refs diverge
    sync(b, a, b)
    for path in (a, b):
        text = note(path, a1)
        assert text.count("gitbus: committed by agent ann") == 1, (
            f"ann's text doubled in {path.name}:\n{text}"
        )
        assert text == added


def test_a_notes_merge_passes_over_entries_of_a_peers_notes_tree_that_are_no_notes_and_counts_them(
    clones: tuple[Path, Path, Path],
) -> None:
    _, a, b = clones
    b1 = commit(b, "config/db.yaml")  # ben's note on b1, by the hook
    initial = git(b, "rev-list", "--max-parents=0", "HEAD").strip()
    tip = git(b, "rev-parse", NOTES_REF).strip()
    listing = git(b, "ls-tree", tip)
    blob = raw_git(b, "hash-object", "-w", "--stdin", input=b"not a note\n")
    deep = raw_git(b, "mktree", input=f"100644 blob {blob}\tx\n".encode())
    odd = f"040000 tree {deep}\tdeep\n120000 blob {blob}\tlink\n160000 commit {initial}\tsub\n"
    tree = raw_git(b, "mktree", input=(listing + odd).encode())
    crafted = raw_git(b, "commit-tree", tree, "-p", tip, "-m", "Notes added by hand")
    git(b, "update-ref", NOTES_REF, crafted, tip)
    sync(b)
    a1 = commit(a, "README.md")  # ann's own note: the two notes refs have diverged
    code, out, err = gb(a, "sync", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert NOTES_REF in report["merged"]
    assert sorted(report["passed"]) == [
        f"{NOTES_REF}: deep/x is no note",
        f"{NOTES_REF}: link is no note",
        f"{NOTES_REF}: sub is no note",
    ], report
    names = git(a, "ls-tree", "-r", "--name-only", NOTES_REF).split()
    assert sorted(names) == sorted([a1, b1]), names  # no `deepx`, no `link` made a file
    assert note(a, b1).startswith("gitbus: committed by agent ben\n")
    assert note(a, a1).startswith("gitbus: committed by agent ann\n")
    code, _, err = gb(a, "sync")  # nothing new: the merged notes hold none of them
    assert code == 0 and "deep/x" not in err, err


def huge_note(wt: Path, rev: str, size: int) -> None:
    """Replace the note on `rev` with one of `size` bytes, by plain git (what any peer can push)."""
    blob = raw_git(wt, "hash-object", "-w", "--stdin", input=(b"x" * 99 + b"\n") * (size // 100))
    git(wt, "notes", "--ref=gitbus", "add", "-f", "-C", blob, rev)


def test_a_peers_note_too_large_to_merge_is_never_read_whole_and_is_passed_over_and_told(
    clones: tuple[Path, Path, Path],
) -> None:
    _, a, b = clones
    b1 = commit(b, "config/db.yaml")  # ben's note on b1, by the hook
    git(b, "push", "-q", "origin", "HEAD:refs/heads/ben")
    git(a, "fetch", "-q", "origin")
    sync(b, a)  # ann has ben's note too
    assert gb(a, "note", b1)[0] == 0  # ann adds to it: both sides now change the note on b1
    mine = note(a, b1)
    size = 240 * 100 * 1024  # ben's side: a note far over what a merge reads
    huge_note(b, b1, size)
    sync(b)
    git(a, "fetch", "-q", "origin", f"+{NOTES_REF}:refs/theirs-notes")
    repo = Bus.open(a).repo
    ours, theirs = repo.ref(NOTES_REF), repo.ref("refs/theirs-notes")
    assert ours is not None and theirs is not None
    tracemalloc.start()
    try:
        merged = notes.merge(repo, ours, theirs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MERGED_BYTES, f"the merge held {peak} bytes of a {size}-byte note"
    why = f"their note on {b1[:12]}, {size} bytes, is over the {MERGED_BYTES} a merge reads"
    assert merged.passed == [f"{NOTES_REF}: {why}"], merged.passed

    code, out, err = gb(a, "sync", "--json")  # the same, through sync
    assert code == 0 and "Traceback" not in err, err
    report = json.loads(out)
    assert NOTES_REF in report["merged"] and len(report["passed"]) == 1, report
    assert f"their note on {b1[:12]}, " in report["passed"][0]
    assert note(a, b1) == mine  # ours kept as it was
    # nothing lost: ben's note stays in the notes history, the merge's second parent
    git(a, "merge-base", "--is-ancestor", theirs, NOTES_REF)


def test_adding_to_a_note_too_large_to_read_is_refused_in_one_line_and_writes_nothing(
    clones: tuple[Path, Path, Path],
) -> None:
    _, a, _ = clones
    a1 = commit(a, "README.md")
    huge_note(a, a1, MERGED_BYTES + 100)
    tip = git(a, "rev-parse", NOTES_REF).strip()
    code, _, err = gb(a, "note", a1)
    assert code == 1 and err.count("\n") == 1, err
    assert f"The note on {a1[:12]} is " in err and "nothing written" in err, err
    assert git(a, "rev-parse", NOTES_REF).strip() == tip


def test_an_add_that_would_make_a_note_too_large_to_read_is_refused_in_one_line_and_writes_nothing(
    clones: tuple[Path, Path, Path],
) -> None:
    """A note just under the limit can be read, but this add would take it over: no note is written
    that no later add or merge could read."""
    _, a, _ = clones
    a1 = commit(a, "README.md")
    near = b"x" * (MERGED_BYTES - 11) + b"\n"  # 10 bytes short of the limit
    blob = raw_git(a, "hash-object", "-w", "--stdin", input=near)
    git(a, "notes", "--ref=gitbus", "add", "-f", "-C", blob, a1)
    tip = git(a, "rev-parse", NOTES_REF).strip()
    code, _, err = gb(a, "note", a1)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"The note on {a1[:12]} would be " in err and f"over the {MERGED_BYTES}" in err, err
    assert "nothing written" in err, err
    assert git(a, "rev-parse", NOTES_REF).strip() == tip


def both_noted(repo: Path, ours: bytes, theirs: bytes | None) -> tuple[Repository, Oid, Oid, str]:
    """Notes refs on one commit of `repo`, by plain git: a base note, `ours` in its place, and `theirs`
    in its place (None: removed), what any peer can push; the handle, the two notes commits and the
    noted commit."""
    rev = git(repo, "rev-parse", "HEAD").strip()

    def noted(text: bytes | None, ref: str) -> Oid:
        if text is None:
            git(repo, "notes", "--ref=gitbus", "remove", rev)
        else:
            blob = raw_git(repo, "hash-object", "-w", "--stdin", input=text)
            git(repo, "notes", "--ref=gitbus", "add", "-f", "-C", blob, rev)
        git(repo, "update-ref", ref, NOTES_REF)
        return Oid(git(repo, "rev-parse", ref).strip())

    base = noted(b"gitbus: committed by agent ann\n", "refs/base-notes")
    mine = noted(ours, "refs/our-notes")
    git(repo, "update-ref", NOTES_REF, base)
    their = noted(theirs, "refs/their-notes")
    git(repo, "update-ref", NOTES_REF, mine)
    return Repository.open(repo), mine, their, rev


def git_traced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a `git` first on the PATH that logs each command line and runs the real git: the log."""
    log, bin_dir, real = tmp_path / "git.log", tmp_path / "traced-bin", shutil.which("git")
    bin_dir.mkdir()
    (bin_dir / "git").write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{real}" "$@"\n')
    (bin_dir / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_a_packed_peer_note_over_the_limit_is_merged_without_reading_any_of_it(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """git inflates a packed blob whole to stream it, so a note over the limit is judged by its
    object header alone: no git child reads it, and this process holds none of it."""
    limit = 256 * 1024
    monkeypatch.setattr(notes, "MERGED_BYTES", limit)
    size = 4 * 1024 * 1024
    handle, ours, theirs, rev = both_noted(repo, b"ann adds\n", (b"x" * 99 + b"\n") * (size // 100))
    git(repo, "repack", "-adfq")  # every object packed, the note too
    assert not list((repo / ".git" / "objects").glob("[0-9a-f][0-9a-f]/*")), "loose objects left"
    log = git_traced(tmp_path, monkeypatch)
    tracemalloc.start()
    try:
        merged = notes.merge(handle, ours, theirs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not log.exists() or "cat-file" not in log.read_text(), log.read_text()
    assert peak < limit, f"the merge held {peak} bytes of a {size}-byte note"
    assert len(merged.passed) == 1 and f"on {rev[:12]}, " in merged.passed[0], merged.passed
    tree_of = [git(repo, "rev-parse", f"{c}^{{tree}}") for c in (merged.commit, ours)]
    assert tree_of[0] == tree_of[1]  # ours kept as it was


def test_a_merge_that_would_join_two_notes_past_the_limit_keeps_ours_and_passes_theirs_over(
    repo: Path,
) -> None:
    theirs = b"y" * (MERGED_BYTES - 1) + b"\n"  # exactly the limit: readable, but not beside ours
    handle, ours, their, rev = both_noted(repo, b"ann adds\n", theirs)
    merged = notes.merge(handle, ours, their)
    tree_of = [git(repo, "rev-parse", f"{c}^{{tree}}") for c in (merged.commit, ours)]
    assert tree_of[0] == tree_of[1]  # ours kept as it was: no note written over the limit
    assert len(merged.passed) == 1 and f"their note on {rev[:12]}, {MERGED_BYTES} bytes" in merged.passed[0]
    assert f"over the {MERGED_BYTES}" in merged.passed[0], merged.passed
    git(repo, "merge-base", "--is-ancestor", their, merged.commit)  # theirs stays in the history


def test_when_our_note_is_too_large_to_merge_theirs_is_passed_over_with_its_own_size(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 4096
    monkeypatch.setattr(notes, "MERGED_BYTES", limit)
    ours, theirs = b"o" * 9999 + b"\n", b"ben adds\n"
    handle, mine, their, rev = both_noted(repo, ours, theirs)
    merged = notes.merge(handle, mine, their)
    why = f"their note on {rev[:12]}, {len(theirs)} bytes, as ours is {len(ours)} bytes, over the {limit}"
    why += " a merge reads"
    assert merged.passed == [f"{NOTES_REF}: {why}"], merged.passed


def test_their_removal_of_a_note_ours_made_too_large_to_merge_is_no_passed_over_note(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notes, "MERGED_BYTES", 4096)
    handle, mine, their, _ = both_noted(repo, b"o" * 9999 + b"\n", None)
    merged = notes.merge(handle, mine, their)
    assert merged.passed == []  # ours stays, as any note both sides changed when theirs removed it
    tree_of = [git(repo, "rev-parse", f"{c}^{{tree}}") for c in (merged.commit, mine)]
    assert tree_of[0] == tree_of[1]


def test_the_overflow_line_of_passed_over_entries_covers_notes_too_large_as_well(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = [
        f"{NOTES_REF}: their note on {i:012x}, 2000000 bytes, is over the 1048576 a merge reads"
        for i in range(9)
    ]
    syncview.report(render.console_for(), Report("origin", passed=lines), json_out=False)
    err = capsys.readouterr().err
    more = [line for line in err.splitlines() if "more" in line]
    assert len(more) == 1 and "that are no gitbus data" not in more[0] and "too large" in more[0], err


LATIN1 = b"gitbus: committed by agent ann\n\n\xff\xfe latin-1 caf\xe9\n"  # no UTF-8: a peer's bytes


def note_bytes(repo: Path, notes_commit: str, rev: str) -> bytes:
    return subprocess.run(
        ["git", "cat-file", "blob", f"{notes_commit}:{rev}"], cwd=repo, capture_output=True, check=True
    ).stdout


def test_a_merge_keeps_the_bytes_of_a_note_that_is_not_utf8(repo: Path) -> None:
    handle, ours, theirs, rev = both_noted(repo, LATIN1, b"gitbus: committed by agent ann\n\nben adds\n")
    merged = notes.merge(handle, ours, theirs)
    assert note_bytes(repo, merged.commit, rev) == LATIN1 + b"\nben adds\n"


def test_adding_to_a_note_that_is_not_utf8_keeps_its_bytes(repo: Path) -> None:
    handle, _, _, rev = both_noted(repo, LATIN1, None)
    notes.add(handle, rev, "ann adds\n", 1_700_000_000_000)
    assert note_bytes(repo, NOTES_REF, rev) == LATIN1 + b"\nann adds\n"


# -- search --------------------------------------------------------------------------------------


@pytest.fixture
def searchable(repo: Path, bus_for: Any, clock: FakeClock) -> dict[str, Any]:
    """A bus whose oldest messages lie behind more than OPEN_WINDOW newer ones."""
    api, zephyr, filler = bus_for(repo, "api-1"), bus_for(repo, "zephyr"), bus_for(repo, "filler")
    old = api.discover("Flaky Migration in payments: the lock times out")
    clock.advance(1000)
    trailer_only = zephyr.discover("the cache warms in three seconds", ["internal/zork.go"])
    clock.advance(1000)
    named = api.discover("ask Zephyr about the cache")
    clock.advance(1000)
    claim = api.claim(["internal/api/"], reason="splitting handlers")
    filler_msgs = bulk_discoveries(
        filler.repo, "filler", [f"routine note {k}" for k in range(OPEN_WINDOW + 100)], clock
    )
    return {
        "bus": api,
        "old": old,
        "trailer_only": trailer_only,
        "named": named,
        "claim": claim,
        "filler": filler_msgs,
    }


def found_ids(wt: Path, *args: str) -> list[str]:
    return [m["id"] for m in gb_json(wt, *args)]


def test_search_and_log_grep_find_any_case_over_the_whole_history(
    repo: Path, searchable: dict[str, Any]
) -> None:
    old = searchable["old"]
    assert old.id not in {m.id for m in searchable["bus"].log(OPEN_WINDOW)}  # older than any window
    for text in ("flaky migration", "FLAKY MIGRATION", "fLaKy MiGrAtIoN in PAYMENTS"):
        assert found_ids(repo, "search", text) == [old.id], text
        assert found_ids(repo, "log", "--grep", text) == [old.id], text
    hit = gb_json(repo, "search", "Flaky")[0]
    assert (hit["type"], hit["from"], hit["text"]) == (
        "discovery",
        "api-1",
        "Flaky Migration in payments: the lock times out",
    )
    claim = searchable["claim"]
    assert found_ids(repo, "search", "SPLITTING HANDLERS") == [claim.id]  # ledger messages too
    assert found_ids(repo, "log", "--grep", "splitting handlers") == [claim.id]


def test_search_and_log_grep_match_message_text_not_trailers(repo: Path, searchable: dict[str, Any]) -> None:
    named, trailer_only = searchable["named"], searchable["trailer_only"]
    # zephyr's own discovery names zephyr only in its Gitbus-From trailer (and internal/zork.go only in
    # Gitbus-Path); api-1's message and zephyr's join say "zephyr" in their text.
    for command in (["log", "--grep"], ["search"]):
        hits = gb_json(repo, *command, "zephyr")
        assert named.id in [m["id"] for m in hits], command
        assert trailer_only.id not in [m["id"] for m in hits], f"{command} matched a trailer: {hits}"
        assert all("zephyr" in m["text"].casefold() for m in hits), hits
        for word in ("zork", "Gitbus-From", "Gitbus-Id", "discovery", searchable["old"].id):
            assert found_ids(repo, *command, word) == [], (command, word)


def test_search_is_newest_first_capped_by_n_and_plain_text_by_default(
    repo: Path, searchable: dict[str, Any]
) -> None:
    newest = [m.id for m in reversed(searchable["filler"][-3:])]
    assert found_ids(repo, "search", "ROUTINE NOTE", "-n", "3") == newest
    assert len(found_ids(repo, "search", "routine note")) == 50  # the default -n
    assert found_ids(repo, "search", "no such words anywhere") == []
    code, out, _ = gb(repo, "search", "flaky")
    assert code == 0 and searchable["old"].id[:8] in out and "Flaky Migration" in out


def test_search_for_nothing_is_refused(repo: Path, bus_for: Any) -> None:
    bus_for(repo, "api-1").discover("something to find")
    for text in ("", "   "):
        code, out, err = gb(repo, "search", text)
        assert code == 1 and out == "" and "Search for some text." in err, repr(text)


def test_log_grep_for_nothing_is_refused(repo: Path, bus_for: Any) -> None:
    bus_for(repo, "api-1").discover("something to find")
    for text in ("   ", ""):
        code, _, err = gb(repo, "log", "--grep", text)
        assert code == 1, f"`gitbus log --grep {text!r}` exited {code} instead of refusing"
        assert "Search for some text." in err


def test_the_search_index_follows_the_bus_and_rebuilds_itself_when_lost(
    repo: Path, searchable: dict[str, Any], clock: FakeClock
) -> None:
    bus = searchable["bus"]
    index = bus.repo.common_dir / "gitbus" / "search" / "index.tsv"
    assert found_ids(repo, "search", "flaky migration", "--json") == [searchable["old"].id]
    lines = index.read_text().count("\n")
    later = bus.discover("a second flaky migration, in billing")
    assert found_ids(repo, "search", "flaky migration", "--json") == [later.id, searchable["old"].id]
    assert index.read_text().count("\n") == lines + 1  # only what was new was added
    index.unlink()  # the index is never the source of truth
    assert found_ids(repo, "search", "flaky migration", "--json") == [later.id, searchable["old"].id]
    index.write_text(index.read_text() + index.read_text())  # a crash wrote lines twice
    assert found_ids(repo, "search", "flaky migration", "--json") == [later.id, searchable["old"].id]
    (bus.repo.common_dir / "gitbus" / "search" / "covered.json").write_text("not json")
    assert found_ids(repo, "search", "billing", "--json") == [later.id]


def test_a_search_matches_newlines_and_tabs_only_where_the_text_has_them(repo: Path, bus_for: Any) -> None:
    bus = bus_for(repo, "api-1")
    tabbed = bus.discover("first line\nsecond\tline with a back\\slash")
    assert [m.id for m in bus.log(None, grep="line\nsecond\tline")] == [tabbed.id]
    assert [m.id for m in bus.log(None, grep="back\\slash")] == [tabbed.id]
    assert bus.log(None, grep="\\nsecond") == []  # an escape in the index is not text
