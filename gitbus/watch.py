"""`gitbus watch`: one watcher per repository turns bus ref changes into fresh context files.

It follows writes (not reads: it reads what it watches) under `<common>/refs` (recursively: ref
writes are lock-then-rename, new directories appear), in `<common>` itself (`packed-refs` is
replaced whole by pack-refs and gc) and under `<common>/worktrees`, debounces bursts, compares a
snapshot of the bus refs and worktrees with the last one, and only then rewrites context files and
the claims snapshot. A slow poll backs up the file events, and also keeps lease times
in the context files current. After an update it packs the repository in the background when
`gitbus.housekeeping` finds it due. One watcher per repository: an exclusive `flock` on
`<common>/gitbus/watch.lock`, released by the kernel when a watcher dies, so a dead one never
blocks the next (`gitbus.watch_daemon` finds, starts and stops it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from gitbus import context, guard, housekeeping, state
from gitbus.clock import Clock, SystemClock
from gitbus.errors import GitbusError
from gitbus.git import Repository
from gitbus.gitcli import Worktrees
from gitbus.gitfiles import Location, locate, read_refs

if TYPE_CHECKING:
    from watchdog.observers.api import ObservedWatch

DEBOUNCE_SECONDS = 0.05  # at most one update per window while writes keep coming
SETTLE_SECONDS = 0.003  # an idle watcher's wait after the first event of a burst
POLL_SECONDS = 2.0
REFRESH_SECONDS = 30.0
ACQUIRE_SECONDS = 0.25  # how long `acquire` outlasts `running_pid` probes before giving up


def _signature(common_dir: Path) -> tuple[tuple[object, ...], tuple[object, ...]]:
    """What the context files depend on that a file event can miss: the bus refs' values, and
    which linked worktrees can take a file (`git worktree add` makes `worktrees/<name>` before
    the worktree's `.git`; `rm -rf` of a worktree leaves its entry behind), each `.git` by its
    inode and time (`Watcher._place` keeps what it found there while they stay the same)."""
    refs = read_refs(common_dir, "refs/bus/")
    wts: list[tuple[str, str, tuple[int, int] | None]] = []
    with contextlib.suppress(FileNotFoundError):  # no linked worktree (left)
        for entry in sorted((common_dir / "worktrees").iterdir()):
            try:  # where it is (`git worktree move` changes it)
                where = entry.joinpath("gitdir").read_text().strip()
            except (OSError, UnicodeDecodeError):
                wts.append((entry.name, "", None))
                continue
            try:  # and which `.git` is there, if any: a clone put in its place is another one
                st = os.stat(where)
                there: tuple[int, int] | None = (st.st_ino, st.st_mtime_ns)
            except OSError:
                there = None
            wts.append((entry.name, where, there))
    return (tuple(sorted(refs.items())), tuple(wts))


class Watcher:
    """Keeps every worktree's context file current until `stop()` is called."""

    def __init__(
        self,
        repo: Repository,
        clock: Clock | None = None,
        on_update: Callable[[list[Path]], None] | None = None,
        on_problem: Callable[[str], None] | None = None,
        limits: housekeeping.Limits | None = None,
    ) -> None:
        self.repo, self.clock = repo, clock or SystemClock()
        self.limits = limits  # when housekeeping is due (None: git's own gc.auto defaults)
        self.on_update = on_update
        self.on_problem = on_problem or _to_stderr
        self._problems: set[str] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock: IO[str] | None = None
        self._last_sync = self._last_pull = 0.0
        self._changed = context.ChangedPaths(stale_ok=True)  # refreshed by `_refresh_changed`
        self._refresher: threading.Thread | None = None
        self._housekeeper: threading.Thread | None = None
        self._syncer: threading.Thread | None = None
        self._push_pending = False
        self._worktrees: tuple[tuple[object, ...], Worktrees] | None = None
        self._places: dict[Path, Location | None] = {}  # `locate` of each listed worktree

    def acquire(self) -> bool:
        """Take the one-watcher lock; False if another live watcher holds it."""
        f = state.watch_lock(self.repo.common_dir)
        f.parent.mkdir(parents=True, exist_ok=True)
        handle = f.open("a+")
        deadline = time.monotonic() + ACQUIRE_SECONDS
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.close()
                    return False
                time.sleep(0.01)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock = handle
        return True

    def release(self) -> None:
        """Give up the one-watcher lock (the kernel also does when the process ends)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def stop(self) -> None:
        """Ask `run` to return; it releases the lock on its way out."""
        self._stop.set()
        self._wake.set()

    def update(self, worktrees_sig: tuple[object, ...] | None = None) -> list[Path]:
        """Rewrite every worktree's context file and the edit guard's claims cache.

        `worktrees_sig` is the worktree part of `_signature`: while it stays the same, the listing
        of worktrees (a `git worktree list`) is reused. A worktree that cannot be written, or whose
        path the listing cannot give whole, is skipped; its problem goes to `on_problem` once, not
        again on every update while it lasts."""
        if worktrees_sig is None or self._worktrees is None or self._worktrees[0] != worktrees_sig:
            listing = self.repo.worktree_listing()
            self._changed.forget_except(listing.paths)
            self._places.clear()  # where each worktree's git dirs are: as the listing, until it changes
            self._worktrees = (worktrees_sig, listing) if worktrees_sig is not None else None
        else:
            listing = self._worktrees[1]
        problems = list(listing.skipped)  # a worktree whose path git's listing cannot give whole
        written = context.update_all(
            self.repo,
            self.clock.now_ms(),
            on_problem=problems.append,
            worktrees=listing.paths,
            changed=self._changed,
            place=self._place,
        )
        for problem in problems:
            if problem not in self._problems:
                self.on_problem(problem)
        self._problems = set(problems)
        guard.snapshot(self.repo.root, self.repo.common_dir)  # refresh the edit guard's claims cache
        if self.on_update:
            self.on_update(written)
        self._refresh_changed()
        return written

    def _place(self, worktree: Path) -> Location | None:
        """`locate(worktree)`, remembered while the listing stands: the worktrees' part of the
        signature (each one's gitdir, and the inode and time of the `.git` there) changes whenever
        the answer can (a move, a repair, a clone put in a worktree's place)."""
        if worktree not in self._places:
            try:
                self._places[worktree] = locate(worktree)
            except GitbusError:  # its `.git` names a git dir that is gone: no agent to update there
                self._places[worktree] = None
        return self._places[worktree]

    def _refresh_changed(self) -> threading.Thread | None:
        """Look the worktrees' changed files up again where they are older than their time to live,
        on a thread of its own (one `git status` each, ~3 ms apiece: at 64 worktrees longer than an
        update), so no update waits for them; the thread started, if any."""
        stale = self._changed.stale()
        if not stale or (self._refresher is not None and self._refresher.is_alive()):
            return None
        root = self.repo.root

        def run() -> None:
            try:
                self._changed.refresh(Repository.open(root), stale)
            except (GitbusError, OSError) as e:  # the old values stay; the next update tries again
                self.on_problem(f"changed files: {e}")

        self._refresher = _background("gitbus-changed-files", run)
        return self._refresher

    def housekeep(self) -> threading.Thread | None:
        """Pack the repository in the background when it is due (`housekeeping.maybe_run`: one
        `stat` when it looked recently), never two at once; the thread started, if any."""
        if self._housekeeper is not None and self._housekeeper.is_alive():
            return None

        def run() -> None:
            outcome = housekeeping.maybe_run(self.repo, limits=self.limits)
            for problem in outcome.failed if outcome else ():
                self.on_problem(f"housekeeping: {problem}")

        self._housekeeper = _background("gitbus-housekeeping", run)
        return self._housekeeper

    def sync_soon(self, changed: bool) -> threading.Thread | None:
        """Pull every `sync_interval` seconds and push soon after local writes, when a remote is set;
        the thread started, if any.

        On a thread of its own, with its own repository handle: a slow or stalled remote never holds
        up the context files (what it fetches wakes the watcher like any ref write). Its error is
        recorded for `gitbus status`. A local write while a sync runs is pushed by the next one."""
        from gitbus import settings, sync
        from gitbus.remote import record_status

        conf = settings.load(self.repo.common_dir)
        remote, interval = conf["remote"], int(conf["sync_interval"])
        if not remote or not interval:
            return None
        changed = changed or self._push_pending
        now = time.monotonic()
        if not changed and now - self._last_sync < interval:
            return None
        if self._syncer is not None and self._syncer.is_alive():
            self._push_pending = changed
            return None
        self._last_sync, self._push_pending = now, False
        pull = not changed or now - self._last_pull >= interval
        if pull:
            self._last_pull = now

        def run() -> None:
            try:
                sync.sync(Repository.open(self.repo.root), str(remote), pull=pull)
                error = None
            except GitbusError as e:
                error = str(e)
            record_status(self.repo, str(remote), self.clock.now_ms(), error)

        self._syncer = _background("gitbus-sync", run)
        return self._syncer

    def run(self) -> None:
        """Watch until stopped (the caller took the lock with `acquire`; it is released here)."""
        common = self.repo.common_dir
        (common / "refs" / "bus").mkdir(parents=True, exist_ok=True)
        events = _Events(common, self._wake)
        self._wake.set()  # the first look right away, not after a poll interval
        try:
            last_sig: tuple[tuple[object, ...], tuple[object, ...]] | None = None
            last_update = 0.0
            while not self._stop.is_set():
                self._wake.wait(POLL_SECONDS)
                if self._stop.is_set():
                    break
                if self._wake.is_set():
                    # Leading edge: an idle watcher looks after a brief settle (a ref write is a
                    # lock, then a rename); a busy one at most once per debounce, so a burst of
                    # writes costs one update per window, not one per write.
                    idle = time.monotonic() - last_update
                    time.sleep(SETTLE_SECONDS if idle >= DEBOUNCE_SECONDS else DEBOUNCE_SECONDS - idle)
                    self._wake.clear()
                events.follow_worktrees()  # watch first, then look: nothing falls in between
                sig = _signature(common)
                self.sync_soon(sig != last_sig)
                if sig != last_sig or time.monotonic() - last_update > REFRESH_SECONDS:
                    try:
                        self.update(sig[1])
                    except (GitbusError, OSError) as e:  # keep watching: the next change may work
                        self.on_problem(str(e))
                    last_sig, last_update = sig, time.monotonic()
                    self.housekeep()
        finally:
            events.stop()
            for worker in (self._housekeeper, self._syncer, self._refresher):  # let a gc or a push finish;
                if worker is not None:  # not for long: both are safe to cut off (git's own locks)
                    worker.join(timeout=3)
            self.release()


def _background(name: str, work: Callable[[], None]) -> threading.Thread:
    """`work` on a daemon thread of its own, started: the watcher's loop never waits on it."""
    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    return thread


class _Events:
    """The file events that wake a watcher: writes under `<common>/refs` (recursively), in
    `<common>` itself (`packed-refs`), and under `<common>/worktrees`, which comes with the first
    linked worktree and goes with the last, so it is watched again whenever it (re)appears."""

    def __init__(self, common: Path, wake: threading.Event) -> None:
        from watchdog import events as E
        from watchdog.observers import Observer

        self.common, self._again = common, threading.Event()
        worktrees = str(common / "worktrees")
        again = self._again

        class Handler(E.FileSystemEventHandler):
            def on_any_event(self, event: E.FileSystemEvent) -> None:
                path = str(event.src_path) + " " + str(getattr(event, "dest_path", ""))
                if "refs" in path or "packed-refs" in path or "worktrees" in path:
                    wake.set()
                if worktrees in (event.src_path, getattr(event, "dest_path", None)):
                    again.set()  # the folder itself came or went (inode numbers get reused)

        self._handler = Handler()
        # Writes only: the watcher reads the refs it watches, and the open/close-without-write
        # events of its own reads would wake it again and again.
        self._writes: list[type[E.FileSystemEvent]] = [
            E.FileCreatedEvent,
            E.DirCreatedEvent,
            E.FileDeletedEvent,
            E.DirDeletedEvent,
            E.FileMovedEvent,
            E.DirMovedEvent,
            E.FileClosedEvent,
        ]
        self._observer = Observer()
        for folder, recursive in ((common / "refs", True), (common, False)):
            self._observer.schedule(
                self._handler, str(folder), recursive=recursive, event_filter=self._writes
            )
        self._worktrees: ObservedWatch | None = None
        self._observer.start()
        self.follow_worktrees()

    def follow_worktrees(self) -> None:
        """(Re)watch `<common>/worktrees` recursively if it appeared or was replaced; recursively, so
        a worktree still being added (`worktrees/<name>` first, its `.git` later) wakes us again."""
        if self._worktrees is not None and not self._again.is_set():
            return
        self._again.clear()
        if self._worktrees is not None:
            with contextlib.suppress(KeyError):
                self._observer.unschedule(self._worktrees)
            self._worktrees = None
        if (self.common / "worktrees").is_dir():
            self._worktrees = self._observer.schedule(
                self._handler, str(self.common / "worktrees"), recursive=True, event_filter=self._writes
            )

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)


def _to_stderr(problem: str) -> None:
    """Where a watcher's problems go by default: its stderr (`watch.log` for `--daemon`)."""
    print(f"gitbus watch: {problem}", file=sys.stderr, flush=True)
