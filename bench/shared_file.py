"""The shared-file alternative, written fairly: a JSON-lines log and a claims file under `flock`.

What a team would build instead of a bus: every agent appends one JSON line per message to
`messages.jsonl`, holding an exclusive `flock` on the file for the write, and claims a path by a
read-check-append on `claims.jsonl` under the same kind of lock. It is given every advantage that keeps
it correct: one `os.write` of a whole line on an `O_APPEND` descriptor kept open (no partial lines, no
reopen per message), and a claimer that keeps its parsed state and reads only the bytes appended since
its last look (a fresh process reads the file once). Durability matches gitbus's: libgit2 does not
fsync unless asked (`pygit2.settings.enable_fsync_gitdir`) and gitbus does not ask, so
the reference does not fsync either; `durable=True` adds an `fsync` per write, for scale.

It is a reference, not a product: no ids across clones, no sync, a claim check that scans every live
claim (gitbus reads only the path's ancestors and subtree in the ledger tree).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MESSAGES, CLAIMS = "messages.jsonl", "claims.jsonl"
TTL_MS = 30 * 60_000


class Refused(Exception):
    """The path overlaps another agent's live claim."""


@contextmanager
def locked(fd: int) -> Iterator[None]:
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def overlaps(a: str, b: str) -> bool:
    """Same path, or one is a directory (`x/`) holding the other."""
    return a == b or (a.endswith("/") and b.startswith(a)) or (b.endswith("/") and a.startswith(b))


def line(obj: dict[str, object]) -> bytes:
    return (json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


class SharedFile:
    """One agent's handle on the shared files in `root`."""

    def __init__(self, root: Path, agent: str, durable: bool = False) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.agent = agent
        self.durable = durable
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        self.log_fd = os.open(root / MESSAGES, flags, 0o644)
        self.claims_fd = os.open(root / CLAIMS, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        self.offset = 0  # how much of claims.jsonl `self.live` reflects
        self.live: dict[str, tuple[str, int]] = {}  # path -> (owner, expires_at ms)

    def close(self) -> None:
        os.close(self.log_fd)
        os.close(self.claims_fd)

    def _append(self, fd: int, data: bytes) -> None:
        os.write(fd, data)
        if self.durable:
            os.fsync(fd)

    def post(self, i: int) -> None:
        """Append a discovery, shaped like gitbus's message JSON."""
        ms = time.time_ns() // 1_000_000
        data = line(
            {
                "id": f"{i & 0xFFFFFFFFFFFFFFFF:016x}",
                "kind": "discovery",
                "from": self.agent,
                "to": "*",
                "text": f"message {i}",
                "time": ms,
                "paths": [],
            }
        )
        with locked(self.log_fd):
            self._append(self.log_fd, data)

    def _catch_up(self) -> None:
        """Apply the claims appended since the last look (the caller holds the lock)."""
        size = os.fstat(self.claims_fd).st_size
        if size == self.offset:
            return
        fresh = os.pread(self.claims_fd, size - self.offset, self.offset)
        for raw in fresh.splitlines():
            c = json.loads(raw)
            if c["kind"] == "claim":
                self.live[c["path"]] = (c["owner"], c["expires_at"])
            else:
                self.live.pop(c["path"], None)
        self.offset = size

    def blocking(self, path: str, now: int) -> tuple[str, str] | None:
        """(path, owner) of a live claim of another agent overlapping `path`."""
        for held, (owner, expires) in self.live.items():
            if owner != self.agent and expires > now and overlaps(held, path):
                return held, owner
        return None

    def claim_path(self, path: str) -> None:
        """Grant `path` or raise `Refused`: read, check and append under one lock."""
        with locked(self.claims_fd):
            self._catch_up()
            now = time.time_ns() // 1_000_000
            hit = self.blocking(path, now)
            if hit:
                raise Refused(f"{path}: {hit[1]} holds {hit[0]}")
            data = line(
                {
                    "kind": "claim",
                    "path": path,
                    "owner": self.agent,
                    "claimed_at": now,
                    "expires_at": now + TTL_MS,
                }
            )
            self._append(self.claims_fd, data)
            self.offset += len(data)
            self.live[path] = (self.agent, now + TTL_MS)

    def claim(self, i: int) -> None:
        self.claim_path(f"pkg{i}/")

    def check(self, path: str) -> tuple[str, str] | None:
        """The guard's question, read-only: is `path` inside another agent's live claim?"""
        with locked(self.claims_fd):
            self._catch_up()
        return self.blocking(path, time.time_ns() // 1_000_000)


def tail(path: Path, n: int, block: int = 16384) -> list[dict[str, object]]:
    """The last `n` messages, newest first, reading backwards from the end of the file."""
    with path.open("rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_SH)
        end = f.seek(0, os.SEEK_END)
        data, pos = b"", end
        while pos > 0 and data.count(b"\n") <= n:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    lines = data.splitlines()[-n:]
    return [json.loads(raw) for raw in reversed(lines)]


def read_all(path: Path) -> list[dict[str, object]]:
    """Every message, newest first."""
    with path.open("rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_SH)
        data = f.read()
    return [json.loads(raw) for raw in reversed(data.splitlines())]
