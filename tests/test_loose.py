"""Loose objects written without libgit2: byte for byte what git writes, read back by git itself."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from gitbus import git, loose
from gitbus.errors import GitbusError
from gitbus.git import Repository
from gitbus.gitfiles import DamagedRef
from gitbus.gittrees import _SMALL_TREE

from .conftest import git as run_git
from .conftest import raw_git
from .test_fastpath import damage


def _objects_left_over(repo: Path) -> list[str]:
    return [str(p) for p in (repo / ".git" / "objects").rglob("tmp_obj_*")]


def test_blobs_trees_and_commits_are_the_objects_git_writes(repo: Path) -> None:
    r = Repository.open(repo)
    blob = r.blob(b'{"owner": "a"}\n')
    assert blob == raw_git(repo, "hash-object", "--stdin", input=b'{"owner": "a"}\n')
    tree = r.tree_update(None, {"claims/_src/@": blob, "claims/_docs/_a/@": blob, "requests/x": blob})
    assert run_git(repo, "ls-tree", "-r", "--name-only", tree).split() == [
        "claims/_docs/_a/@",
        "claims/_src/@",
        "requests/x",
    ]
    parent = r.commit(tree=tree, parents=[], message="first\n", author="a", time_ms=1_700_000_000_000)
    who = {"NAME": "a", "EMAIL": "a@gitbus.invalid", "DATE": "1700000000 +0000"}
    env = {f"GIT_{role}_{k}": v for role in ("AUTHOR", "COMMITTER") for k, v in who.items()}
    assert raw_git(repo, "commit-tree", tree, input=b"first\n", env=env) == parent
    tip = r.commit(tree=tree, parents=[parent], message="second ü\n", author="a", time_ms=1_700_000_001_000)
    assert run_git(repo, "rev-parse", f"{tip}^") == parent + "\n"
    assert (
        run_git(repo, "log", "-1", "--format=%an <%ae> %at%n%B", tip)
        == "a <a@gitbus.invalid> 1700000001\nsecond ü\n\n"
    )
    run_git(repo, "fsck", "--strict", "--no-dangling")
    assert _objects_left_over(repo) == []


def test_trees_laid_out_here_are_the_trees_libgit2_lays_out(repo: Path) -> None:
    """Git's order puts a folder `a` after a file `a.b` and before `a0` (it sorts as `a/`)."""
    rng = random.Random(16)
    names = ["a", "a.b", "a-b", "a0", "a_", "_a", "b", "@", "ab", "ä", "Z", "z.", "x y"]
    steps: list[dict[str, git.Oid | None]] = []
    r = Repository.open(repo)
    blob = r.blob(b"x\n")
    for _ in range(40):
        step: dict[str, git.Oid | None] = {}
        for _ in range(rng.randint(1, 4)):
            depth = rng.randint(1, 3)
            path = "/".join(rng.choice(names) for _ in range(depth))
            step[path] = None if rng.random() < 0.3 else blob
        steps.append(step)

    def run(by_libgit2: bool) -> list[git.Oid]:
        fresh = Repository.open(repo)
        if by_libgit2:
            fresh._objects = None  # every object and tree by libgit2, trees from nothing too
        tree: git.Oid | None = None
        out: list[git.Oid] = []
        for step in steps:
            # A path may not be both a file and a folder in one step: keep the deepest.
            clean = {p: v for p, v in step.items() if not any(q.startswith(p + "/") for q in step)}
            tree = fresh.tree_update(tree, clean)
            out.append(tree)
        return out

    ours = run(by_libgit2=False)
    assert run(by_libgit2=True) == ours
    run_git(repo, "fsck", "--strict", "--no-dangling")


def test_a_tree_not_as_git_writes_trees_is_left_to_libgit2(repo: Path) -> None:
    """A peer's tree with a zero-padded folder mode is kept as libgit2 keeps it, not rewritten here."""
    r = Repository.open(repo)
    blob = r.blob(b"x\n")
    inner = r.tree_update(None, {"@": blob})
    odd = raw_git(
        repo,
        "hash-object",
        "-t",
        "tree",
        "-w",
        "--literally",
        "--stdin",
        input=b"040000 _a\0" + bytes.fromhex(inner),
    )
    assert loose.parse_tree(b"040000 _a\0" + bytes.fromhex(inner)) is None
    new = r.tree_update(git.Oid(odd), {"_b/@": blob})
    assert run_git(repo, "ls-tree", "-r", "--name-only", new).split() == ["_a/@", "_b/@"]


def test_a_large_tree_is_laid_out_by_libgit2_with_the_same_result(repo: Path) -> None:
    r = Repository.open(repo)
    blob = r.blob(b"x\n")
    big = r.tree_update(None, {f"_{i}/@": blob for i in range(_SMALL_TREE + 5)})
    assert len(run_git(repo, "ls-tree", big).splitlines()) == _SMALL_TREE + 5
    grown = r.tree_update(git.Oid(big), {"_new/@": blob})
    expected = r.tree_update(None, {**{f"_{i}/@": blob for i in range(_SMALL_TREE + 5)}, "_new/@": blob})
    assert grown == expected


def test_an_object_already_there_is_written_again_without_error(repo: Path) -> None:
    r = Repository.open(repo)
    first = r.blob(b"same\n")
    assert r.blob(b"same\n") == first
    assert Repository.open(repo).blob(b"same\n") == first
    assert _objects_left_over(repo) == []


def test_named_temp_files_where_unnamed_ones_are_not_offered(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loose, "_tmpfile", False)
    r = Repository.open(repo)
    blob = r.blob(b"named\n")
    tree = r.tree_update(None, {"claims/_x/@": blob})
    assert r.blob(b"named\n") == blob  # already there: the temp file is removed all the same
    r.commit(tree=tree, parents=[], message="m\n", author="a", time_ms=1_700_000_000_000)
    run_git(repo, "fsck", "--strict", "--no-dangling")
    assert _objects_left_over(repo) == []


def test_a_forked_child_links_its_own_files_not_its_parent_s(repo: Path) -> None:
    """An unnamed file is linked in through `/proc/self/fd`, opened once: a child made by fork must
    not use its parent's, whose numbers name the parent's open files."""
    r = Repository.open(repo)
    r.blob(b"parent, before\n")  # the parent has opened its /proc/self/fd
    # a file of the parent's, on the same disk, under the number the child's object file will get
    keep = os.open(repo / "decoy", os.O_RDWR | os.O_CREAT, 0o644)
    os.write(keep, b"decoy")
    try:
        pid = os.fork()
        if pid == 0:  # the child: write, then leave at once (no pytest teardown in here)
            code = 1
            try:
                os.close(keep)
                code = 0 if Repository.open(repo).blob(b"child\n") else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(keep)
    assert os.waitstatus_to_exitcode(status) == 0
    oid, _ = loose.object_id(b"blob", b"child\n")
    assert run_git(repo, "cat-file", "-p", oid) == "child\n"
    assert r.blob(b"parent, after\n")
    run_git(repo, "fsck", "--strict", "--no-dangling")


@pytest.mark.parametrize("unnamed", [True, False])
def test_an_object_folder_gc_removed_is_made_again(
    repo: Path, monkeypatch: pytest.MonkeyPatch, unnamed: bool
) -> None:
    monkeypatch.setattr(loose, "_tmpfile", unnamed and hasattr(os, "O_TMPFILE"))
    r = Repository.open(repo)
    data = b"after gc\n"
    oid, _ = loose.object_id(b"blob", data)
    folder = repo / ".git" / "objects" / oid[:2]
    for f in folder.glob("*") if folder.exists() else ():
        f.unlink()
    if folder.exists():
        folder.rmdir()
    assert r.blob(data) == oid
    assert run_git(repo, "cat-file", "-p", oid) == "after gc\n"


def test_a_commit_on_a_tree_or_parent_that_is_not_there_is_refused_in_one_line(repo: Path) -> None:
    r = Repository.open(repo)
    missing = git.Oid("1" * 40)
    with pytest.raises(GitbusError, match="its tree 111111111111 is not in the repository"):
        r.commit(tree=missing, parents=[], message="m\n", author="a", time_ms=1_700_000_000_000)
    blob = r.blob(b"not a commit\n")
    with pytest.raises(GitbusError, match=f"its parent {blob[:12]} is no commit"):
        r.commit(tree=r.empty_tree, parents=[blob], message="m\n", author="a", time_ms=1_700_000_000_000)


def test_small_objects_are_stored_and_larger_ones_deflated_and_git_reads_both(repo: Path) -> None:
    r = Repository.open(repo)
    small, large = b"s" * 100, bytes(range(256)) * 64
    for data in (small, large):
        oid = r.blob(data)
        assert oid == raw_git(repo, "hash-object", "--stdin", input=data)
        assert run_git(repo, "cat-file", "-s", oid) == f"{len(data)}\n"
    stored = (repo / ".git" / "objects" / r.blob(small)[:2] / r.blob(small)[2:]).read_bytes()
    assert len(stored) > len(small)  # kept as it is, in one stored block
    run_git(repo, "fsck", "--strict", "--no-dangling")


# -- refs --------------------------------------------------------------------------------------------

LEDGER = "refs/bus/ledgers/abcd"
TOMB = "refs/bus/ledger"


def _commits(r: Repository, n: int) -> list[git.Oid]:
    return [
        r.commit(tree=r.empty_tree, parents=[], message=f"c{i}\n", author="a", time_ms=1_700_000_000_000)
        for i in range(n)
    ]


def test_refs_move_by_git_s_lock_protocol_and_git_reads_them(repo: Path) -> None:
    r = Repository.open(repo)
    a, b = _commits(r, 2)
    r.update_refs([(LEDGER, a, None), (TOMB, a, None)], "test")
    assert run_git(repo, "rev-parse", LEDGER, TOMB).split() == [a, a]
    tomb_file = repo / ".git" / TOMB
    before = tomb_file.stat()
    r.update_refs([(LEDGER, b, a), (TOMB, a, a)], "test")  # a lease on the tombstone: compared, not written
    assert run_git(repo, "rev-parse", LEDGER) == b + "\n"
    assert (tomb_file.stat().st_ino, tomb_file.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert list((repo / ".git" / "refs").rglob("*.lock")) == []


def test_a_step_whose_lease_moved_writes_none_of_its_refs(repo: Path) -> None:
    r = Repository.open(repo)
    a, b, c = _commits(r, 3)
    r.update_refs([(LEDGER, a, None), (TOMB, a, None)], "test")
    r.update_ref(TOMB, b, a, "a sync replaced it")
    with pytest.raises(git.RefMoved) as lost:
        r.update_refs([(LEDGER, c, a), (TOMB, a, a)], "test")
    assert (lost.value.name, lost.value.actual) == (TOMB, b)
    assert r.ref(LEDGER) == a
    assert list((repo / ".git" / "refs").rglob("*.lock")) == []


def test_a_packed_ref_is_compared_by_its_packed_value(repo: Path) -> None:
    r = Repository.open(repo)
    a, b = _commits(r, 2)
    r.update_ref(LEDGER, a, None, "test")
    run_git(repo, "pack-refs", "--all")
    assert not (repo / ".git" / LEDGER).exists()
    with pytest.raises(git.RefMoved) as lost:
        r.update_ref(LEDGER, b, None, "test")
    assert lost.value.actual == a
    r.update_ref(LEDGER, b, a, "test")
    assert run_git(repo, "rev-parse", LEDGER) == b + "\n"


@pytest.mark.parametrize("how", ["packed short", "packed CRLF", "symbolic link"])
def test_a_damaged_packed_line_or_a_linked_ref_is_refused_never_started_afresh(repo: Path, how: str) -> None:
    """The plain writer reads a ref it holds the lock of as git would: a damaged packed-refs line is
    no absent ref (a new root chain over it would lose its history), and a symbolic link in a ref's
    place is not followed to the commit it names."""
    r = Repository.open(repo)
    a, b = _commits(r, 2)
    r.update_ref(LEDGER, a, None, "test")
    common = r.common_dir
    head = git.Oid(run_git(repo, "rev-parse", "HEAD").strip())  # what a followed link would give
    damage(common, LEDGER, how)
    before = {
        p: p.read_bytes() for p in (common / "packed-refs", common / "refs" / "heads" / "main") if p.exists()
    }
    for expected in (None, a, head):
        with pytest.raises(DamagedRef) as refused:
            loose.update_refs(str(common), [(LEDGER, b, expected)], False)
        assert ("packed-refs" in str(refused.value)) == how.startswith("packed"), refused.value
    assert {p: p.read_bytes() for p in before} == before
    assert list((common / "refs").rglob("*.lock")) == []


def test_a_symbolic_or_damaged_ref_is_refused_alike_by_both_writers(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A symbolic value in a bus ref is damage (gitbus never writes one): refused in one sentence
    naming the file, by the plain writer and by libgit2's alike, never written over."""
    (a,) = _commits(Repository.open(repo), 1)
    outcomes = []
    for fast in (True, False):
        if not fast:
            monkeypatch.setattr(loose, "plain_ref", lambda name: False)
        r = Repository.open(repo)
        (repo / ".git" / LEDGER).parent.mkdir(parents=True, exist_ok=True)
        (repo / ".git" / LEDGER).write_text("ref: refs/heads/main\n")
        with pytest.raises(DamagedRef) as refused:
            r.update_ref(LEDGER, a, None, "test")
        outcomes.append(str(refused.value))
        assert (repo / ".git" / LEDGER).read_text() == "ref: refs/heads/main\n"
        (repo / ".git" / LEDGER).unlink()
    assert outcomes[0] == outcomes[1]
    assert "symbolic ref" in outcomes[0] and str(repo / ".git" / LEDGER) in outcomes[0]
    assert list((repo / ".git" / "refs").rglob("*.lock")) == []


@pytest.mark.parametrize("how", ["its own reflog", "logAllRefUpdates=always"])
def test_a_ref_that_keeps_a_reflog_still_gets_its_entry(repo: Path, how: str) -> None:
    if how == "logAllRefUpdates=always":
        run_git(repo, "config", "core.logAllRefUpdates", "always")
    else:
        log = repo / ".git" / "logs" / LEDGER
        log.parent.mkdir(parents=True)
        log.touch()
    r = Repository.open(repo)
    a, b = _commits(r, 2)
    r.update_ref(LEDGER, a, None, "gitbus: first")
    r.update_ref(LEDGER, b, a, "gitbus: second")
    assert run_git(repo, "reflog", "show", "--format=%gs", LEDGER).split("\n")[:2] == [
        "gitbus: second",
        "gitbus: first",
    ]


@pytest.mark.parametrize("unnamed", [True, False])
def test_objects_are_fsynced_where_git_is_told_to(
    repo: Path, monkeypatch: pytest.MonkeyPatch, unnamed: bool
) -> None:
    monkeypatch.setattr(loose, "_tmpfile", unnamed and hasattr(os, "O_TMPFILE"))
    run_git(repo, "config", "core.fsyncObjectFiles", "true")
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    r = Repository.open(repo)
    oid = r.blob(b"durable\n")
    assert len(synced) == 2  # the file, then its folder
    assert run_git(repo, "cat-file", "-p", oid) == "durable\n"


def test_a_tree_entry_naming_no_blob_is_refused_as_libgit2_refuses_it(repo: Path) -> None:
    r = Repository.open(repo)
    commit = r.commit(tree=r.empty_tree, parents=[], message="m\n", author="a", time_ms=1_700_000_000_000)
    for bad in (git.Oid("2" * 40), commit):
        with pytest.raises(Exception, match="invalid object specified") as refused:
            r.tree_update(None, {"claims/_x/@": bad})
        assert type(refused.value).__name__ == "GitError"


def test_a_step_that_cannot_write_its_second_ref_moves_neither(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Git's protocol: every lock is written before any is renamed, so a full disk moves nothing."""
    r = Repository.open(repo)
    a, b, c = _commits(r, 3)
    r.update_refs([(LEDGER, a, None), (TOMB, a, None)], "test")
    real_write = os.write

    def full_disk(fd: int, data: bytes) -> int:
        if bytes(data) == f"{b}\n".encode():  # the second lock in name order: the ledger's
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(loose.os, "write", full_disk)
    with pytest.raises(GitbusError) as refused:
        r.update_refs([(LEDGER, b, a), (TOMB, c, a)], "test")
    monkeypatch.undo()
    assert "\n" not in str(refused.value)
    assert run_git(repo, "rev-parse", TOMB, LEDGER).split() == [a, a]
    assert list((repo / ".git" / "refs").rglob("*.lock")) == []


@pytest.mark.parametrize("configured", [True, False])
def test_refs_are_fsynced_where_git_is_told_to(
    repo: Path, monkeypatch: pytest.MonkeyPatch, configured: bool
) -> None:
    """As libgit2 with `core.fsyncObjectFiles`: each lock's data before any rename, the folders after."""
    if configured:
        run_git(repo, "config", "core.fsyncObjectFiles", "true")
    r = Repository.open(repo)
    a, b = _commits(r, 2)
    r.update_refs([(LEDGER, a, None), (TOMB, a, None)], "test")
    events: list[str] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        events.append("folder" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real_fsync(fd)

    def rename(src: str, dst: str) -> None:
        events.append("rename")
        real_rename(src, dst)

    monkeypatch.setattr(loose.os, "fsync", fsync)
    monkeypatch.setattr(loose.os, "rename", rename)
    r.update_refs([(LEDGER, b, a), (TOMB, b, a)], "test")
    monkeypatch.undo()
    synced = ["file", "file", "rename", "rename", "folder", "folder"]
    assert events == (synced if configured else ["rename", "rename"])
    assert run_git(repo, "rev-parse", TOMB, LEDGER).split() == [b, b]


def test_a_new_value_that_is_no_full_object_id_is_refused_and_nothing_written(repo: Path) -> None:
    r = Repository.open(repo)
    a, b = _commits(r, 2)
    for bad in (a[:12], f"{a}\n{b}"):
        with pytest.raises(GitbusError, match="is not a full object id") as refused:
            r.update_ref(LEDGER, git.Oid(bad), None, "test")
        assert "\n" not in str(refused.value)
        assert not (repo / ".git" / LEDGER).exists()
        assert list((repo / ".git" / "refs").rglob("*.lock")) == []
    assert r.ref(LEDGER) is None


def test_a_tree_entry_name_that_is_not_printable_ascii_goes_to_libgit2(repo: Path) -> None:
    """Names libgit2 refuses under core.protectHFS/protectNTFS (`.git` with an invisible joiner) are
    refused as before, and any other such name is written as libgit2 writes it."""
    run_git(repo, "config", "core.protectHFS", "true")
    run_git(repo, "config", "core.protectNTFS", "true")
    outcomes: list[list[str]] = []
    for fast in (True, False):
        r = Repository.open(repo)
        if not fast:
            r._objects = None  # every object by libgit2, as before
        blob = r.blob(b"x\n")
        seen = []
        for name in (".g\u200cit", "\u200c.git", "\u200c", "tab\there"):
            try:
                seen.append(r.tree_update(None, {f"claims/{name}/@": blob}))
            except Exception as e:  # what libgit2 raises, compared as it is
                seen.append(f"{type(e).__name__}: {e}")
        outcomes.append(seen)
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0].startswith("GitError: failed to insert entry: invalid name for a tree entry")
    assert loose.plain("\u200c") is None and loose.plain("tab\there") is None


def test_a_commit_message_holding_nul_is_written_as_libgit2_writes_it(repo: Path) -> None:
    """libgit2 takes the message up to the NUL; a NUL in a commit is what `fsck --strict` refuses."""
    oids = []
    for fast in (True, False):
        r = Repository.open(repo)
        if not fast:
            r._objects = None
        oids.append(r.commit(tree=r.empty_tree, parents=[], message="cut\0here\n", author="a", time_ms=1))
    assert oids[0] == oids[1]
    assert run_git(repo, "cat-file", "commit", oids[0]).endswith("\n\ncut")
    run_git(repo, "fsck", "--strict", "--no-dangling")


def test_a_ref_name_written_here_is_one_git_takes(repo: Path) -> None:
    names = ["refs/bus/x.lock/y", "refs/bus/a/b.lock/c", "refs/bus/x.lock", "refs/bus/a./b", "refs/bus/a.b/c"]
    for name in names:
        if loose.plain_ref(name):
            run_git(repo, "check-ref-format", name)
    assert not loose.plain_ref("refs/bus/x.lock/y")
