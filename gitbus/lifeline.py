"""Is the agent client that started this hook still there, and is anyone attending it?

A background hook (Claude Code's asyncRewake Stop hook, `gitbus hook wake`) must end with its
session however the session ends. Claude Code starts hooks as `/bin/sh -c '<command>'`, so our parent
is that shell, not the client: after a SIGKILL of the client the shell is reparented and lives on,
and "my parent changed" never fires. So the waiter watches two things instead: the client (the pid
it names in `CLAUDE_PID`, else the first ancestor that is not a shell; pid and start time, so a
reused pid does not count) and its own stderr, the pipe the client reads the wake text from (the
client's end closing shows as POLLERR/POLLHUP on fd 2). Linux has /proc; elsewhere the pid the
client names is watched, else the parent pid.

A headless run (`claude -p`, an SDK session) waits for its background hooks before it exits, so a
waiter there would keep it alive for hours: such runs are recognised and not waited in.
"""

from __future__ import annotations

import os
import select
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "fish", "busybox"})
_PROC = Path("/proc")
_MAX_DEPTH = 8  # shells between the hook and its client, at the most


def headless(env: Mapping[str, str], client_argv: list[str] | None = None) -> bool:
    """True when no person attends the session: Claude Code's print mode (`-p`), an SDK, a
    background session.

    First the client's own command line (`-p`, `--print`). Then `CLAUDE_CODE_SESSION_ATTENDED`,
    which Claude Code sets for each hook it runs (`1` interactive, `0` otherwise) and does not pass
    down to processes it starts. `CLAUDE_CODE_ENTRYPOINT` (`cli`; `sdk-cli` in print mode, `sdk-ts`,
    `sdk-py`) comes last: the client keeps one it inherited, so an interactive session started by an
    SDK orchestrator carries `sdk-…` too."""
    argv = client_argv or []
    if any("claude" in a for a in argv[:2]) and any(a in ("-p", "--print") for a in argv[1:]):
        return True
    attended = env.get("CLAUDE_CODE_SESSION_ATTENDED")
    if attended in ("0", "1"):
        return attended == "0"
    return env.get("CLAUDE_CODE_ENTRYPOINT", "").startswith("sdk")


@dataclass(frozen=True)
class _Proc:
    pid: int
    ppid: int
    start: str  # clock ticks since boot: with the pid, names one process for its whole life
    comm: str
    zombie: bool


def _stat(pid: int) -> _Proc | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except (OSError, UnicodeDecodeError):
        return None
    # "pid (comm) state ppid ..."; comm may itself hold spaces and parentheses.
    head, _, rest = raw.rpartition(")")
    fields = rest.split()
    if len(fields) < 20 or "(" not in head:
        return None
    return _Proc(pid, int(fields[1]), fields[19], head.partition("(")[2], fields[0] in ("Z", "X"))


def _argv(pid: int) -> list[str]:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


class Lifeline:
    """What ties this process to its session: the client ancestor and our stderr.

    Claude Code names itself in its hooks' environment (`CLAUDE_PID`); without that, the client is
    the first ancestor that is not a shell."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.parent = os.getppid()
        named = env.get("CLAUDE_PID", "")
        self.named = int(named) if named.isdigit() and int(named) > 1 else None
        self.client = (_stat(self.named) if self.named else None) or self._find_client()
        self._poll = select.poll()
        self._poll.register(2, 0)  # no events asked for: only POLLERR, POLLHUP and POLLNVAL come back

    def _find_client(self) -> _Proc | None:
        pid = self.parent
        for _ in range(_MAX_DEPTH):
            proc = _stat(pid)
            if proc is None:
                return None
            if Path(proc.comm).name not in SHELLS or proc.ppid <= 1:
                return proc
            pid = proc.ppid
        return None

    def client_argv(self) -> list[str]:
        return _argv(self.client.pid) if self.client else []

    def alive(self) -> bool:
        """False once the client has gone or nobody reads our stderr any more."""
        if any(ev & (select.POLLERR | select.POLLHUP | select.POLLNVAL) for _, ev in self._poll.poll(0)):
            return False
        if self.client is not None:
            now = _stat(self.client.pid)
            return now is not None and now.start == self.client.start and not now.zombie
        if self.named is not None:  # no /proc (macOS): the pid the client named, still there
            try:
                os.kill(self.named, 0)
            except ProcessLookupError:
                return False
            except OSError:
                pass  # there, but not ours to signal
            return True
        return os.getppid() == self.parent
