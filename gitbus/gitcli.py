"""The git CLI side of the door to git: what gitbus asks of git itself, never of libgit2.

libgit2 cannot push with leases, sign commits with the user's configured key, verify signatures, run gc
or list worktrees, so these run `git` as a subprocess: a fetch or push with a bounded time and no
prompt (`git_result(network=True)`), signing through `git commit-tree -S`, git's verdicts on signatures.
It also owns git's own lock files as git leaves them: a `.lock` older than any live writer holds one is
a killed process's, and `recover_stale_lock` removes it safely. `Repository` (gitbus.git) takes these
verbs from `GitCli`, so callers see one door; this module never imports pygit2.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from gitbus.errors import GitbusError
from gitbus.gitfiles import Oid

STALE_LOCK_SECONDS = 3.0
NETWORK_TIMEOUT_SECONDS = 30.0  # a claim's fetch or push that takes longer: the remote is unreachable
SYNC_TIMEOUT_SECONDS = 300.0  # a whole-bus fetch or push may carry thousands of messages


def network_timeout(whole_bus: bool = False) -> float:
    """Seconds a fetch or push may take: `GITBUS_NETWORK_TIMEOUT` if set, else a claim's 30 or a whole
    bus's 300."""
    default = SYNC_TIMEOUT_SECONDS if whole_bus else NETWORK_TIMEOUT_SECONDS
    try:
        value = float(os.environ.get("GITBUS_NETWORK_TIMEOUT", ""))
    except ValueError:
        return default
    return value if 0 < value < 86_400 else default  # nan, inf, 0 and negatives: the default


def _kind(mode: int) -> str:
    return "folder" if stat.S_ISDIR(mode) else "symbolic link" if stat.S_ISLNK(mode) else "special file"


def network_env(has_ssh_config: Callable[[], bool]) -> dict[str, str]:
    """The environment of a fetch or push, which must fail rather than wait: no prompt for
    credentials, and ssh in batch mode with bounded waits unless the user set their own ssh command
    (`GIT_SSH_COMMAND`, `GIT_SSH`, or `core.sshCommand`: `has_ssh_config`, asked only then)."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    if "GIT_SSH_COMMAND" not in env and "GIT_SSH" not in env and not has_ssh_config():
        env["GIT_SSH_COMMAND"] = (
            "ssh -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=10 -o ServerAliveCountMax=3"
        )
    return env


def start_network(args: Sequence[str], cwd: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start `git ARGS` (a fetch or push) in `cwd`, in a session of its own, so that `finish` can end
    git *and* its ssh or remote helper, not git alone."""
    return subprocess.Popen(
        ["git", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )


def finish(child: subprocess.Popen[bytes], limit: float, deadline: float) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a `start_network` child, which may run until `deadline`
    (`time.monotonic`); 124 when it had no answer by then (`limit`, the seconds it was given, is
    named). A timeout or Ctrl-C ends its whole session."""
    with child:
        try:
            out, err = child.communicate(timeout=max(deadline - time.monotonic(), 0.0))
        except BaseException as e:  # the timeout, or Ctrl-C: git and its helpers go too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            if isinstance(e, subprocess.TimeoutExpired):
                return 124, "", f"fatal: no answer within {limit:g}s"
            raise
    return child.returncode, out.decode(errors="replace"), err.decode(errors="replace")


class GitCli:
    """The verbs of `Repository` that run git itself (a mixin: `Repository` supplies `root` and
    `_has_config`)."""

    root: Path

    def _has_config(self, key: str) -> bool:
        raise NotImplementedError

    def recover_stale_lock(self, lock: Path) -> bool:
        """Remove the lock file `lock` (a ref's `.lock`) when it is older than any live writer holds
        one: a killed process, ours or git's, left it. True if it is gone now.

        The lock is first moved aside under a unique name and checked to be the same old file: two
        recoverers racing never delete a lock that a live writer has just taken."""
        try:
            seen = lock.lstat()
        except FileNotFoundError:
            return True
        if not stat.S_ISREG(seen.st_mode):  # no writer makes this: it blocks every writer for good
            raise GitbusError(
                f"{lock} is no lock file but a {_kind(seen.st_mode)}, and no writer can take the lock "
                f"while it is there; remove it."
            )
        if time.time() - seen.st_mtime <= STALE_LOCK_SECONDS:
            return False
        aside = lock.with_name(f"{lock.name}.stale-{os.getpid()}-{random.getrandbits(32):08x}")
        try:
            os.rename(lock, aside)
        except FileNotFoundError:
            return True
        fresh = aside.stat().st_ino != seen.st_ino
        if fresh:  # we moved a fresh lock: give it back if still free
            with contextlib.suppress(FileExistsError):
                os.link(aside, lock)
        aside.unlink()
        return not fresh

    def _signed_commit(self, tree: Oid, parents: list[Oid], message: str, author: str, time_ms: int) -> Oid:
        who = {"NAME": author, "EMAIL": f"{author}@gitbus.invalid", "DATE": f"@{time_ms // 1000} +0000"}
        env = {
            **os.environ,
            **{f"GIT_{role}_{k}": v for role in ("AUTHOR", "COMMITTER") for k, v in who.items()},
        }
        args = ["git", "commit-tree", tree, *(a for p in parents for a in ("-p", p)), "-S", "-F", "-"]
        proc = subprocess.run(
            args, cwd=self.root, input=message.encode(), env=env, capture_output=True, check=False
        )
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            why = err[-1] if err else f"exit {proc.returncode}"
            raise GitbusError(
                f"git could not sign the bus commit ({why}); fix the signing setup or unset commit.gpgsign."
            )
        return Oid(proc.stdout.decode().strip())

    def signers(self, tip: Oid, hide: list[Oid]) -> dict[Oid, tuple[str, str]]:
        """For every commit reachable from `tip` and not from `hide`: git's verdict on its signature
        (`%G?`: G good, B bad, U unknown validity, N none, …) and the signer git names (`%GS`: an SSH
        principal from `gpg.ssh.allowedSignersFile`, or an OpenPGP user id)."""
        return self._signatures(tip, *(f"^{h}" for h in hide))

    def verdicts(self, commits: list[Oid]) -> dict[Oid, tuple[str, str]]:
        """git's verdict and signer (as in `signers`) for each of `commits`, in one `git log`."""
        if not commits:
            return {}
        return self._signatures("--no-walk=unsorted", *commits)

    def _signatures(self, *revs: str) -> dict[Oid, tuple[str, str]]:
        """`git log` of `revs`: each commit's signature verdict and signer (empty when git fails)."""
        code, out, _ = self.git_result("log", "--format=%H%x00%G?%x00%GS", *revs, "--")
        result: dict[Oid, tuple[str, str]] = {}
        for line in out.splitlines() if code == 0 else ():
            oid, _, rest = line.partition("\0")
            verdict, _, signer = rest.partition("\0")
            result[Oid(oid)] = (verdict, signer)
        return result

    def git(self, *args: str, check: bool = True, input: bytes | None = None) -> str:
        """Run the git CLI in this worktree (for what libgit2 lacks: leases, gc, worktree lists)."""
        proc = subprocess.run(["git", *args], cwd=self.root, input=input, capture_output=True, check=False)
        if check and proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            raise GitbusError(f"git {args[0]} failed: {err[-1] if err else proc.returncode}.")
        return proc.stdout.decode(errors="replace")

    def git_result(
        self, *args: str, network: bool = False, timeout: float | None = None
    ) -> tuple[int, str, str]:
        """Run the git CLI and return (exit code, stdout, stderr) for callers that read failures.

        `network`: a fetch or push, which must fail rather than wait: no prompt for credentials, ssh
        in batch mode (unless the user set their own ssh command), and at most `timeout` seconds for
        a remote that accepts a connection and never answers."""
        limit = network_timeout() if timeout is None else timeout
        if not network:
            proc = subprocess.run(["git", *args], cwd=self.root, capture_output=True, check=False)
            return proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
        env = network_env(lambda: self._has_config("core.sshCommand"))
        return finish(start_network(args, self.root, env), limit, time.monotonic() + limit)

    def blob_start(self, oid: Oid, limit: int) -> bytes:
        """The first `limit` bytes of blob `oid` (fewer when it is shorter or missing), streamed from
        `git cat-file`, which is ended once they are read: the rest is never held here."""
        with subprocess.Popen(
            ["git", "cat-file", "blob", oid],
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        ) as child:
            assert child.stdout is not None
            data = child.stdout.read(limit)
            if child.poll() is None:
                child.kill()
        return data

    def staged_paths(self) -> list[str]:
        """Paths the next commit of this worktree changes (old and new names of renames)."""
        out = self.git("diff", "--cached", "--name-only", "--no-renames", "-z")
        return [p for p in out.split("\0") if p]

    def worktrees(self) -> list[Path]:
        """Every worktree of this repository that still exists on disk, the main one first; a bare
        main repository is no worktree (`bare` in its porcelain entry): nothing is checked out there."""
        out: list[Path] = []
        for entry in self.git("worktree", "list", "--porcelain").split("\n\n"):
            lines = entry.splitlines()
            if lines and lines[0].startswith("worktree ") and "bare" not in lines[1:]:
                p = Path(lines[0][len("worktree ") :])
                if p.is_dir():
                    out.append(p)
        return out
