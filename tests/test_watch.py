"""`gitbus watch`: context files kept current in every worktree, one watcher per repository.

Watchers run for real: in a thread of this process (`Watcher.acquire/run/stop`) or as `gitbus watch`
subprocesses, against real repositories and real `git worktree add`. Every wait is bounded; every
process a test starts is stopped by that test, whatever happens.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gitbus import context, context_text, housekeeping, watch
from gitbus.bus import Bus
from gitbus.git import Repository
from gitbus.watch import Watcher
from gitbus.watch_daemon import running_pid

from .conftest import git
from .test_git import odd_worktrees

WAIT = 10.0  # the longest any condition is waited for
NAMES = ("api-1", "web-1", "db-1")


def wait_for(what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"waited {timeout:.0f}s for {what}")


def context_of(wt: Path) -> str:
    try:
        return (wt / context.FILE).read_text()
    except FileNotFoundError:
        return ""


def says(wt: Path, text: str) -> Callable[[], bool]:
    return lambda: text in context_of(wt)


def section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"## {title}"))
    out: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith(("## ", "More: ")):
            break
        if line:
            out.append(line)
    return out


def gitbus(cwd: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """The real `gitbus` entry point in a subprocess (this test's hermetic environment)."""
    return subprocess.run(
        [sys.executable, "-m", "gitbus", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie left for a non-reaping init counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


class Running:
    """A `Watcher` running in a thread of this process; counts its updates and keeps its errors."""

    def __init__(self, root: Path, limits: housekeeping.Limits | None = None) -> None:
        self.updates = 0
        self.errors: list[BaseException] = []
        self.problems: list[str] = []
        self.watcher = Watcher(
            Repository.open(root), on_update=self._updated, on_problem=self.problems.append, limits=limits
        )
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.root = root

    def _updated(self, _written: list[Path]) -> None:
        self.updates += 1

    def _run(self) -> None:
        try:
            self.watcher.run()
        except BaseException as e:
            self.errors.append(e)
            raise

    def wait_started(self) -> None:
        """Until the first update, which a watcher makes as soon as its file watches are in place."""
        wait_for("the first update", lambda: self.updates > 0 or bool(self.errors))
        assert self.updates > 0, f"the watcher never updated: {self.errors}"


@contextmanager
def watching(root: Path, limits: housekeeping.Limits | None = None) -> Iterator[Running]:
    r = Running(root, limits)
    assert r.watcher.acquire()
    r.thread.start()
    try:
        r.wait_started()
        yield r
        assert r.thread.is_alive(), f"the watcher died: {r.errors!r}"
    finally:
        r.watcher.stop()
        r.thread.join(WAIT)
    assert not r.thread.is_alive(), "the watcher did not stop"
    assert not r.errors


@pytest.fixture
def events_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Take the slow safety poll out of play: only file events can wake the watcher now."""
    monkeypatch.setattr(watch, "POLL_SECONDS", 60.0)


@pytest.fixture
def trio(worktrees: list[Path]) -> tuple[Bus, Bus, Bus]:
    """Three agents on the real clock that joined by name (the watcher finds them by worktree)."""
    out = []
    for wt, name in zip(worktrees, NAMES, strict=True):
        bus = Bus.open(wt, name)
        bus.join(name)
        out.append(bus)
    return out[0], out[1], out[2]


def roots(trio: tuple[Bus, Bus, Bus]) -> list[Path]:
    return [b.repo.root for b in trio]


# -- context files --------------------------------------------------------------------------------


def test_a_post_in_one_worktree_reaches_the_context_file_of_every_worktree(
    trio: tuple[Bus, Bus, Bus],
) -> None:
    api, web, _ = trio
    with watching(api.repo.root):
        web.claim(["config/"], reason="new pool settings")  # shown to everyone, web-1 included
        for wt, name in zip(roots(trio), NAMES, strict=True):
            wait_for(f"{name}'s context file", says(wt, "web-1 holds config/ until"))
            assert context_of(wt).startswith(f"# gitbus context for agent {name}\n")
    for wt in roots(trio):
        assert git(wt, "status", "--porcelain") == ""
    assert "/.gitbus/" in (api.repo.common_dir / "info" / "exclude").read_text().splitlines()


def test_the_context_file_tells_an_agent_what_it_should_know_now(trio: tuple[Bus, Bus, Bus]) -> None:
    api, web, db = trio
    with watching(api.repo.root):
        web.discover("handlers retry twice", ["internal/api/handler.go"])
        api.claim(["internal/api/"], reason="splitting handlers")
        web.claim(["config/"], reason="new pool settings")
        mine = api.ask("where are migrations run?", to="db-1")
        db.answer(mine.id, "at boot, from config/db.yaml")
        to_me = web.ask("when is internal/api/ free?", to="api-1")
        to_all = db.ask("who reviews schema changes?")
        db.ask("is the CSS frozen?", to="web-1")
        request = web.request("add CORS headers to the API")
        db.discover("the pool size is set in config/db.yaml", ["config/db.yaml"])
        wait_for("the last post in api-1's file", says(api.repo.root, "the pool size is set"))
    text = context_of(api.repo.root)

    assert "You are agent **api-1**" in text
    [claim] = section(text, "My claims")
    assert claim.startswith("- api-1 holds internal/api/ until ")
    assert re.search(r"\((30|29)m left\)", claim), claim  # 29m once a second has passed (a busy machine)
    [theirs] = section(text, "Others' claims")
    assert theirs.startswith("- web-1 holds config/ until ") and "new pool settings" in theirs
    assert section(text, "Open questions") == [
        f'- [{to_all.id[:8]}] db-1 asks: "who reviews schema changes?"',
        f'- [{to_me.id[:8]}] web-1 asks me: "when is internal/api/ free?"',
    ]
    assert section(text, "Answers to my questions") == [
        f'- db-1 on [{mine.id[:8]}]: "at boot, from config/db.yaml"'
    ]
    assert section(text, "Open requests") == [
        f'- [{request.id[:8]}] from web-1: "add CORS headers to the API"'
    ]
    assert section(text, "Recent discoveries") == [  # the older one is on a path api-1 claims
        '- web-1 on internal/api/handler.go: "handlers retry twice"',
        '- db-1 on config/db.yaml: "the pool size is set in config/db.yaml"',
    ]
    assert text.endswith("More: `gitbus inbox`, `gitbus log`, `gitbus status`.\n")
    assert len(text) <= context_text.MAX_CHARS


# -- what moves under a running watcher ----------------------------------------------------------


def test_a_worktree_moved_while_it_runs_keeps_getting_its_context_file(trio: tuple[Bus, Bus, Bus]) -> None:
    api, web, _ = trio
    old = web.repo.root
    new = old.parent / "moved-web"
    with watching(api.repo.root):
        git(api.repo.root, "worktree", "move", str(old), str(new))
        api.discover("after the move")
        wait_for("the moved worktree's context file", says(new, "after the move"))


@pytest.mark.usefixtures("events_only")
def test_it_keeps_working_after_the_bus_refs_are_packed(trio: tuple[Bus, Bus, Bus]) -> None:
    api, web, db = trio
    with watching(api.repo.root):
        web.discover("before packing")
        wait_for("the first post", says(db.repo.root, "before packing"))
        git(api.repo.root, "pack-refs", "--all")
        assert [p for p in (api.repo.common_dir / "refs" / "bus").rglob("*") if p.is_file()] == []
        assert "refs/bus/agents/web-1" in (api.repo.common_dir / "packed-refs").read_text()
        web.request("after packing")
        for wt in roots(trio):
            wait_for(f"the post after packing in {wt.name}", says(wt, "after packing"))
        git(api.repo.root, "pack-refs", "--all")
        db.discover("packed again")
        wait_for("a post after packing twice", says(web.repo.root, "packed again"))


def test_it_packs_the_bus_in_the_background_when_housekeeping_is_due(trio: tuple[Bus, Bus, Bus]) -> None:
    api, web, db = trio
    packed = api.repo.common_dir / "packed-refs"
    with watching(api.repo.root, housekeeping.Limits(loose_refs=2)) as r:  # the three agents' chains
        wait_for("the refs packed", lambda: packed.exists() and "refs/bus/agents/web-1" in packed.read_text())
        web.discover("after the watcher packed")
        for wt in (api.repo.root, db.repo.root):  # a discovery is news to the others
            wait_for(f"the post after packing in {wt.name}", says(wt, "after the watcher packed"))
        assert r.problems == []
    assert [m.text for m in db.log(1)] == ["after the watcher packed"]


@pytest.mark.parametrize("others", [2, 0], ids=["beside-worktrees", "first-worktree"])
@pytest.mark.usefixtures("events_only")
def test_a_worktree_added_while_it_runs_gets_its_context_file(repo: Path, others: int) -> None:
    for i in range(others):
        git(repo, "worktree", "add", "-q", "-b", f"old-{i}", str(repo.parent / f"old-{i}"))
    Bus.open(repo, "api-1").join("api-1")

    def add(name: str) -> Path:
        """`--detach` writes no ref under `.git/refs`: only `.git/worktrees` shows the new one."""
        wt = repo.parent / name
        git(repo, "worktree", "add", "-q", "--detach", str(wt))
        wait_for(f"{name}'s context file", lambda: context_of(wt) != "")
        assert context_of(wt).startswith(f"# gitbus context for agent {name}\n")
        return wt

    with watching(repo):
        new = add("wt-new")
        Bus.open(repo, "api-1").discover("welcome aboard")
        wait_for("a post in the new worktree's file", says(new, "welcome aboard"))
        assert git(new, "status", "--porcelain") == ""
        add("wt-second")  # `.git/worktrees` may have appeared only while it ran
        # Removing the last linked worktree removes `.git/worktrees`; the next one brings it back.
        for name in ("wt-new", "wt-second"):
            git(repo, "worktree", "remove", str(repo.parent / name))
        assert (repo / ".git" / "worktrees").exists() == bool(others)
        add("wt-third")
        assert "welcome aboard" in context_of(add("wt-fourth"))


@pytest.mark.usefixtures("events_only")
def test_an_idle_watcher_is_not_woken_by_reading_the_bus(
    trio: tuple[Bus, Bus, Bus], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watcher reads the refs it watches (and so do hooks and `gitbus inbox`): reads must not
    wake it, or it spins on its own reads instead of resting until the next write or safety poll."""
    api, web, _ = trio
    looks: list[float] = []
    signature = watch._signature

    def counted(common: Path) -> tuple[object, ...]:
        looks.append(time.monotonic())
        return signature(common)

    monkeypatch.setattr(watch, "_signature", counted)
    with watching(api.repo.root):
        web.discover("something to read")
        wait_for("the post", says(api.repo.root, "something to read"))
        time.sleep(0.3)  # the last wake-ups of the post settle
        before = len(looks)
        for _ in range(5):
            web.inbox()
            time.sleep(0.15)
        assert len(looks) - before <= 1, f"{len(looks) - before} looks at the bus while nothing changed"


def test_a_removed_worktree_is_left_alone_and_the_others_keep_updating(trio: tuple[Bus, Bus, Bus]) -> None:
    api, web, db = trio
    with watching(api.repo.root) as running:
        api.discover("first")
        wait_for("db-1's file", says(db.repo.root, "first"))
        # The context file is ignored by git, so removing the worktree needs no --force.
        git(api.repo.root, "worktree", "remove", str(db.repo.root))
        api.discover("second")
        wait_for("web-1's file", says(web.repo.root, "second"))
        assert not db.repo.root.exists()
        before = running.updates
        subprocess.run(["rm", "-rf", str(web.repo.root)], check=True)  # gone, but still listed by git
        Bus.open(api.repo.root, "ops-1").discover("third")
        wait_for("api-1's file", says(api.repo.root, "third"))
        assert running.updates > before
        assert not web.repo.root.exists() and not db.repo.root.exists()


def test_a_worktree_replaced_by_a_clone_at_its_path_is_located_again(trio: tuple[Bus, Bus, Bus]) -> None:
    """A watcher remembers where each worktree's git dirs are while its listing of worktrees stands:
    a worktree folder deleted and replaced by a clone must be looked at again, or its file would go
    on naming the agent that worked there before."""
    api, web, _ = trio
    w = Watcher(Repository.open(api.repo.root))
    w.update(watch._signature(api.repo.common_dir)[1])
    assert says(web.repo.root, "agent web-1")()
    subprocess.run(["rm", "-rf", str(web.repo.root)], check=True)
    git(api.repo.root.parent, "clone", "-q", str(api.repo.root), str(web.repo.root))
    Bus.open(web.repo.root, "web-2").join("web-2")  # the clone's own agent
    w.update(watch._signature(api.repo.common_dir)[1])
    assert says(web.repo.root, "agent web-2")(), (web.repo.root / context.FILE).read_text()[:200]


def test_a_worktree_whose_path_ends_in_a_line_separator_gets_its_context_file(repo: Path) -> None:
    """Its `.git` file ends in that character too: read with str.strip(), it named no git dir."""
    added = [repo.parent / "web\u2028", repo.parent / "db\x85"]
    for wt in added:
        git(repo, "worktree", "add", "-q", "--detach", str(wt))
    r = gitbus(repo, "watch", "--once")
    assert r.returncode == 0 and r.stdout.strip() == "updated 3 context file(s)", r
    for wt in added:
        assert context_of(wt).startswith("# gitbus context for agent "), repr(wt)


def test_a_worktree_it_cannot_write_to_does_not_stop_the_others(trio: tuple[Bus, Bus, Bus]) -> None:
    api, web, db = trio
    (db.repo.root / ".gitbus").write_text("not a folder\n")  # any OSError in one worktree will do
    with watching(api.repo.root) as running:
        web.request("still delivered")
        wait_for("api-1's file", says(api.repo.root, "still delivered"))
        api.request("and again")
        wait_for("web-1's file", says(web.repo.root, "and again"))
        # Said once, naming the worktree, not again on every update while it lasts.
        assert running.problems == [
            f"the context file of {db.repo.root} was not updated: File exists: {db.repo.root / '.gitbus'}"
        ]
        (db.repo.root / ".gitbus").unlink()
        web.discover("fixed")
        wait_for("db-1's file once it can be written", says(db.repo.root, "fixed"))
    assert len(running.problems) == 1


def test_a_context_file_that_is_a_fifo_does_not_hold_up_the_watcher(trio: tuple[Bus, Bus, Bus]) -> None:
    """Opening a FIFO to compare it waited for a writer forever: no worktree was updated again."""
    api, web, db = trio
    (db.repo.root / ".gitbus").mkdir()
    os.mkfifo(db.repo.root / context.FILE)
    web.request("still delivered")
    r = gitbus(api.repo.root, "watch", "--once", timeout=WAIT)  # killed at WAIT if it hangs
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "updated 2 context file(s)"
    assert r.stderr == (
        f"gitbus watch: the context file of {db.repo.root} was not updated: "
        f"Not a regular file: {db.repo.root / context.FILE}\n"
    )
    assert says(api.repo.root, "still delivered")() and says(web.repo.root, "still delivered")()
    assert stat.S_ISFIFO(os.lstat(db.repo.root / context.FILE).st_mode)


# -- one watcher per repository ------------------------------------------------------------------


def test_a_second_watcher_says_one_is_running_and_exits_0(trio: tuple[Bus, Bus, Bus]) -> None:
    api, web, _ = trio
    with watching(api.repo.root):
        r = gitbus(web.repo.root, "watch")
    assert r.returncode == 0, r.stderr
    assert f"a watcher is already running for this repository (pid {os.getpid()})" in r.stdout


def test_a_stopped_watcher_lets_the_next_one_start(trio: tuple[Bus, Bus, Bus]) -> None:
    api = trio[0]
    with watching(api.repo.root):
        pass
    assert running_pid(api.repo.common_dir) is None
    after = Watcher(Repository.open(api.repo.root))
    try:
        assert after.acquire()
        assert running_pid(api.repo.common_dir) == os.getpid()
    finally:
        after.release()
    assert running_pid(api.repo.common_dir) is None


def test_a_watcher_killed_with_sigkill_does_not_block_the_next(trio: tuple[Bus, Bus, Bus]) -> None:
    api, web, _ = trio
    proc = subprocess.Popen(
        [sys.executable, "-m", "gitbus", "watch"],
        cwd=api.repo.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for("the watcher's lock", lambda: running_pid(api.repo.common_dir) == proc.pid)
        r = gitbus(web.repo.root, "watch")
        assert f"already running for this repository (pid {proc.pid})" in r.stdout
    finally:
        proc.kill()
        proc.wait(WAIT)
    assert proc.returncode == -signal.SIGKILL
    assert running_pid(api.repo.common_dir) is None
    with watching(api.repo.root):
        web.discover("after the kill")
        wait_for("the next watcher's update", says(api.repo.root, "after the kill"))


def test_asking_whether_a_watcher_runs_never_reports_a_dead_one(trio: tuple[Bus, Bus, Bus]) -> None:
    """`watch --stop` signals the pid this answer names; two callers asking at once (two agents, or
    `--daemon` polling while its child starts) must not see each other's probe as a live watcher."""
    api = trio[0]
    proc = subprocess.Popen([sys.executable, "-m", "gitbus", "watch"], cwd=api.repo.root)
    try:
        wait_for("the watcher's lock", lambda: running_pid(api.repo.common_dir) == proc.pid)
    finally:
        proc.kill()
        proc.wait(WAIT)
    seen: list[int | None] = []
    together = threading.Barrier(2, timeout=WAIT)

    def ask() -> None:
        together.wait()
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            seen.append(running_pid(api.repo.common_dir))

    askers = [threading.Thread(target=ask) for _ in range(2)]
    for t in askers:
        t.start()
    for t in askers:
        t.join(WAIT)
    wrong = [p for p in seen if p is not None]
    assert wrong == [], f"{len(wrong)} of {len(seen)} answers named the dead watcher {proc.pid} as running"


def test_the_daemon_runs_in_the_background_until_stopped(trio: tuple[Bus, Bus, Bus]) -> None:
    api, web, db = trio
    r = gitbus(web.repo.root, "watch", "--daemon")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("watcher running in the background (pid ")
    pid = int(r.stdout.split("(pid ")[1].split(")")[0])
    try:
        assert alive(pid) and running_pid(api.repo.common_dir) == pid
        again = gitbus(db.repo.root, "watch", "--daemon")
        assert again.returncode == 0 and f"(pid {pid})" in again.stdout  # the one that runs
        db.discover("seen by the daemon")
        wait_for("the daemon's update", says(api.repo.root, "seen by the daemon"))
        stopped = gitbus(api.repo.root, "watch", "--stop")
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.strip() == f"stopped the watcher (pid {pid})"
        wait_for("the daemon to exit", lambda: not alive(pid))
        assert running_pid(api.repo.common_dir) is None
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert gitbus(api.repo.root, "watch", "--stop").stdout.strip() == "no watcher was running"
    log = api.repo.common_dir / "gitbus" / "watch.log"
    assert "Traceback" not in (log.read_text() if log.exists() else "")


def test_a_reftable_repository_is_refused_with_a_clear_message(repo: Path) -> None:
    """libgit2 cannot read reftable refs. The git here may be too old to make such a repository,
    so make what `git init --ref-format=reftable` leaves: the extension and a `reftable/` folder."""
    git(repo, "config", "core.repositoryformatversion", "1")
    git(repo, "config", "extensions.refstorage", "reftable")
    (repo / ".git" / "reftable").mkdir()
    for args in (("watch",), ("watch", "--daemon")):
        r = gitbus(repo, *args)
        assert r.returncode == 1
        assert "stores refs in reftable format, which libgit2 cannot read" in r.stderr
        assert "Traceback" not in r.stderr
    assert not (repo / ".git" / "gitbus" / "watch.lock").exists()


def test_watch_once_updates_every_worktree_once_and_exits(trio: tuple[Bus, Bus, Bus]) -> None:
    api, web, _ = trio
    web.request("for the record")  # open requests are shown to everyone, the sender included
    r = gitbus(api.repo.root, "watch", "--once")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "updated 3 context file(s)"
    for wt in roots(trio):
        assert "for the record" in context_of(wt)
        assert git(wt, "status", "--porcelain") == ""
    assert running_pid(api.repo.common_dir) is None


def test_watch_once_writes_worktrees_whose_paths_hold_line_breaks_and_no_folder_a_cut_names(
    tmp_path: Path,
) -> None:
    main, decoy, added = odd_worktrees(tmp_path)
    r = gitbus(main, "watch", "--once")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.strip() == f"updated {1 + len(added)} context file(s)"
    for wt in added:
        assert context_of(wt).startswith("# gitbus context for agent "), repr(wt)
        assert git(wt, "status", "--porcelain") == "", repr(wt)
    assert not (decoy / ".gitbus").exists() and git(decoy, "status", "--porcelain") == ""


def test_watch_once_names_a_worktree_whose_path_is_not_utf8_and_updates_the_others(repo: Path) -> None:
    odd = repo.parent / os.fsdecode(b"caf\xe9")
    git(repo, "worktree", "add", "-q", "--detach", str(odd))
    r = gitbus(repo, "watch", "--once")
    assert r.returncode == 0 and r.stdout.strip() == "updated 1 context file(s)", r
    (said,) = r.stderr.splitlines()
    assert said.startswith("gitbus watch: the worktree ") and "caf\\udce9" in said and "not UTF-8" in said
    assert not (odd / ".gitbus").exists()
