"""The watcher as a process: one per repository, found by its lock, run here or in the background.

`gitbus watch` runs one watcher per repository. It holds an exclusive `flock` on
`<common>/gitbus/watch.lock` (`Watcher.acquire`) with its pid in the file; this module finds it by
probing that lock with a shared one (`running_pid`), runs a watcher in this process until a signal
(`serve`), and starts and stops one in the background (`start_daemon`, `stop_daemon`, which log to
`watch.log`). The trade-off: the kernel releases the lock when a watcher dies, so a dead one never
blocks the next, at the price of a probe that can see a lock whose holder has not yet written its pid
(-1: waited on until the pid is there, never taken for a live watcher).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gitbus import state
from gitbus.errors import GitbusError
from gitbus.git import Repository
from gitbus.watch import Watcher


def running_pid(common_dir: Path) -> int | None:
    """The pid of the live watcher of this repository, -1 while one starts, or None.

    The probe takes a *shared* lock: probes never hold each other off, so two callers asking at
    once never mistake each other for a watcher (whose lock is exclusive) and report the pid a dead
    watcher left in the file. `acquire` retries briefly, as a probe may hold the lock for an instant."""
    try:
        handle = state.watch_lock(common_dir).open()
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read().strip()
            # A watcher that has just taken the lock has not yet replaced the pid a dead one left.
            return int(text) if text.isdigit() and int(text) > 0 and _alive(int(text)) else -1
    return None  # closing the file released the probe's lock


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _wait_for_pid(common_dir: Path, deadline: float) -> int | None:
    """The running watcher's pid once it has written it, or None if none runs."""
    pid = running_pid(common_dir)
    while pid == -1 and time.monotonic() < deadline:
        time.sleep(0.02)
        pid = running_pid(common_dir)
    if pid == -1:
        raise GitbusError("A watcher holds the lock but never wrote its pid; try again.")
    return pid


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
    deadline = time.monotonic() + timeout
    pid = _wait_for_pid(repo.common_dir, deadline)
    if pid is not None:
        return pid
    log = state.watch_log(repo.common_dir)
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
    while time.monotonic() < deadline:
        pid = running_pid(repo.common_dir)
        if pid and pid > 0:
            return pid
        time.sleep(0.05)
    raise GitbusError(f"The background watcher did not start; see {log}.")


def stop_daemon(repo: Repository, timeout: float = 10.0) -> int | None:
    """Stop the running watcher; returns its pid, or None if none was running."""
    deadline = time.monotonic() + timeout
    pid = _wait_for_pid(repo.common_dir, deadline)
    if pid is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    while time.monotonic() < deadline and running_pid(repo.common_dir) is not None:
        time.sleep(0.05)
    if running_pid(repo.common_dir) is not None:
        raise GitbusError(f"The watcher (pid {pid}) did not stop within {timeout:.0f}s.")
    return pid
