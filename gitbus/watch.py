"""`gitbus watch`: one watcher per repository turns bus ref changes into fresh context files.

It follows `<common>/refs` (recursively: ref writes are lock-then-rename, new directories appear)
and `<common>` itself (`packed-refs` is replaced whole by pack-refs and gc), debounces bursts,
compares a snapshot of the bus refs with the last one, and only then rewrites context files and the
claims snapshot. A slow poll backs up the file events (field notes §4), and also keeps lease times
in the context files current. One watcher per repository: an exclusive `flock` on
`<common>/gitbus/watch.lock`, released by the kernel when a watcher dies, so a dead one never
blocks the next.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from gitbus.clock import Clock, SystemClock
from gitbus.errors import GitbusError
from gitbus.git import Repository
from gitbus.gitfiles import read_refs

DEBOUNCE_SECONDS = 0.05
POLL_SECONDS = 2.0
REFRESH_SECONDS = 30.0


def _lock_file(common_dir: Path) -> Path:
    return common_dir / "gitbus" / "watch.lock"


def running_pid(common_dir: Path) -> int | None:
    """The pid of the live watcher of this repository, or None."""
    f = _lock_file(common_dir)
    if not f.exists():
        return None
    with f.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            text = handle.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def _signature(common_dir: Path) -> tuple[object, ...]:
    refs = read_refs(common_dir, "refs/bus/")
    wts = (
        sorted(p.name for p in (common_dir / "worktrees").iterdir())
        if (common_dir / "worktrees").is_dir()
        else []
    )
    return (tuple(sorted(refs.items())), tuple(wts))


class Watcher:
    """Keeps every worktree's context file current until `stop()` is called."""

    def __init__(
        self,
        repo: Repository,
        clock: Clock | None = None,
        on_update: Callable[[list[Path]], None] | None = None,
    ) -> None:
        self.repo, self.clock = repo, clock or SystemClock()
        self.on_update = on_update
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock: IO[str] | None = None
        self._last_sync = self._last_pull = 0.0

    def acquire(self) -> bool:
        """Take the one-watcher lock; False if another live watcher holds it."""
        f = _lock_file(self.repo.common_dir)
        f.parent.mkdir(parents=True, exist_ok=True)
        handle = f.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock = handle
        return True

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def update(self) -> list[Path]:
        from gitbus import context, guard

        written = context.update_all(self.repo, self.clock.now_ms())
        guard.snapshot(self.repo.root, self.repo.common_dir)  # refresh the edit guard's claims cache
        if self.on_update:
            self.on_update(written)
        return written

    def _sync_due(self, changed: bool) -> bool:
        """Pull every `sync_interval` seconds and push soon after local writes, when a remote is set.

        A remote that is down never blocks local work: the error is recorded for `gitbus status`."""
        from gitbus import settings, sync

        conf = settings.load(self.repo.common_dir)
        remote, interval = conf["remote"], int(conf["sync_interval"])
        if not remote or not interval:
            return False
        now = time.monotonic()
        if not changed and now - self._last_sync < interval:
            return False
        self._last_sync = now
        try:
            sync.sync(self.repo, str(remote), pull=not changed or now - self._last_pull >= interval)
            error = None
        except GitbusError as e:
            error = str(e)
        if not changed:
            self._last_pull = now
        sync.record(self.repo, str(remote), self.clock.now_ms(), error)
        return True

    def run(self) -> None:
        """Watch until stopped (the caller holds the lock, see `acquire`)."""
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        wake = self._wake

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                path = str(event.src_path) + " " + str(getattr(event, "dest_path", ""))
                if "refs" in path or "packed-refs" in path or "worktrees" in path:
                    wake.set()

        common = self.repo.common_dir
        (common / "refs" / "bus").mkdir(parents=True, exist_ok=True)
        observer = Observer()
        observer.schedule(Handler(), str(common / "refs"), recursive=True)
        observer.schedule(Handler(), str(common), recursive=False)
        if (common / "worktrees").is_dir():
            observer.schedule(Handler(), str(common / "worktrees"), recursive=False)
        observer.start()
        try:
            last_sig: tuple[object, ...] | None = None
            last_update = 0.0
            while not self._stop.is_set():
                self._wake.wait(POLL_SECONDS)
                if self._stop.is_set():
                    break
                if self._wake.is_set():
                    time.sleep(DEBOUNCE_SECONDS)  # let a burst of writes settle
                    self._wake.clear()
                sig = _signature(common)
                if self._sync_due(sig != last_sig):
                    sig = _signature(common)
                if sig != last_sig or time.monotonic() - last_update > REFRESH_SECONDS:
                    try:
                        self.update()
                    except GitbusError as e:
                        print(f"gitbus watch: {e}", file=sys.stderr, flush=True)
                    last_sig, last_update = sig, time.monotonic()
        finally:
            observer.stop()
            observer.join(timeout=5)


def serve(repo: Repository) -> bool:
    """Run the watcher in this process until SIGTERM/SIGINT; False if one is already running."""
    w = Watcher(repo)
    if not w.acquire():
        return False
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: w.stop())
    w.run()
    return True


def start_daemon(repo: Repository, timeout: float = 10.0) -> int:
    """Start a background watcher; returns its pid (or the running one's)."""
    pid = running_pid(repo.common_dir)
    if pid is not None:
        return pid
    log = repo.common_dir / "gitbus" / "watch.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        subprocess.Popen(
            [sys.executable, "-m", "gitbus", "watch"],
            cwd=repo.root,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = running_pid(repo.common_dir)
        if pid and pid > 0:
            return pid
        time.sleep(0.05)
    raise GitbusError(f"The background watcher did not start; see {log}.")


def stop_daemon(repo: Repository, timeout: float = 10.0) -> int | None:
    """Stop the running watcher; returns its pid, or None if none was running."""
    pid = running_pid(repo.common_dir)
    if pid is None or pid <= 0:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running_pid(repo.common_dir) is not None:
        time.sleep(0.05)
    if running_pid(repo.common_dir) is not None:
        raise GitbusError(f"The watcher (pid {pid}) did not stop within {timeout:.0f}s.")
    return pid
