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
import re
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from gitbus.errors import GitbusError
from gitbus.gitfiles import Oid, locate, shown

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
    common_dir: Path

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
            raise _failed(args[0], proc)
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

    def worktree_listing(self) -> Worktrees:
        """Every worktree of this repository that still exists on disk, the main one first, and a
        sentence for each one git lists that is skipped because its path cannot be read whole.

        A bare main repository is no worktree (`bare` in its entry): nothing is checked out there.
        git 2.36 and later list NUL-terminated fields (`-z`), so a path may hold any byte but NUL;
        one that is not UTF-8 is skipped, never read with its bad bytes replaced (which can name
        another folder). An older git refuses `-z` (usage, exit 129) and lists one field per line:
        a path holding a newline cannot be told from the next field there, so an entry is kept only
        when every line of it is a field git writes and its folder's `.git` leads back to this
        repository; the others are skipped (see docs/architecture.md, "Listing worktrees")."""
        cmd = ["git", "worktree", "list", "--porcelain"]
        proc = subprocess.run([*cmd, "-z"], cwd=self.root, capture_output=True, check=False)
        lines = proc.returncode == 129
        if lines:
            proc = subprocess.run(cmd, cwd=self.root, capture_output=True, check=False)
        if proc.returncode != 0:
            raise _failed("worktree", proc)
        listing = _by_lines(proc.stdout) if lines else _by_nuls(proc.stdout)
        if lines:
            listing = self._ours(listing)
        return Worktrees([p for p in listing.paths if p.is_dir()], listing.skipped)

    def worktrees(self) -> list[Path]:
        """`worktree_listing`'s worktrees, for a caller that must reach every one (install writes
        into each): one sentence, nothing done, when any is skipped."""
        listing = self.worktree_listing()
        if listing.skipped:
            raise GitbusError(f"{listing.skipped[0]}; gitbus cannot reach every worktree.")
        return listing.paths

    def _ours(self, listing: Worktrees) -> Worktrees:
        """The entries of a listing by lines whose folder is a worktree of this repository: a path
        holding a newline could otherwise forge a whole entry naming any folder."""
        common = self.common_dir.resolve()
        paths, skipped = [], list(listing.skipped)
        for p in listing.paths:
            try:
                where = locate(p)
            except GitbusError:
                where = None
            if where is not None and where.root == p.resolve() and where.common_dir.resolve() == common:
                paths.append(p)
            elif p.is_dir():
                skipped.append(f"the worktree listed as {shown(p)} was skipped: {_ELSEWHERE}")
        return Worktrees(paths, skipped)


class Worktrees(NamedTuple):
    """A listing of worktrees: the paths read whole, and a sentence for each entry skipped."""

    paths: list[Path]
    skipped: list[str]


def _failed(verb: str, proc: subprocess.CompletedProcess[bytes]) -> GitbusError:
    """`git VERB` failed: its last line of stderr (or its exit status), in one sentence."""
    err = proc.stderr.decode(errors="replace").strip().splitlines()
    return GitbusError(f"git {verb} failed: {err[-1] if err else proc.returncode}.")


# What `git worktree list --porcelain` writes after an entry's `worktree <path>` line.
_FIELDS = re.compile(rb"(HEAD [0-9a-f]{40,64}|branch \S.*|detached|bare|locked( .*)?|prunable( .*)?)")
_CUT = (
    "this git lists worktrees one field per line, and its path holds a line break; "
    "git 2.36 or later lists it whole"
)
_ELSEWHERE = (
    "its `.git` does not lead back to this repository (this git lists worktrees one field per "
    "line, which a path holding a line break can cut; git 2.36 or later lists them whole)"
)


def _entry(path: bytes, fields: list[bytes], out: Worktrees) -> None:
    """Add one entry of the listing to `out`: its path when it is a checkout, else nothing."""
    if b"bare" in fields:
        return
    try:
        text = path.decode()
    except UnicodeDecodeError:
        out.skipped.append(f"the worktree {shown(os.fsdecode(path))} was skipped: its path is not UTF-8")
        return
    if os.path.isabs(text):
        out.paths.append(Path(text))


def _by_nuls(data: bytes) -> Worktrees:
    """`git worktree list --porcelain -z`: fields end in NUL, an entry in one more."""
    out = Worktrees([], [])
    for entry in data.split(b"\0\0"):
        fields = entry.split(b"\0")
        if fields[0].startswith(b"worktree "):
            _entry(fields[0][len(b"worktree ") :], fields[1:], out)
    return out


def _by_lines(data: bytes) -> Worktrees:
    """`git worktree list --porcelain` of a git before 2.36: fields end in a newline (and only
    there: never `splitlines`, which also breaks at U+2028 or U+0085 inside a path), an entry in one
    more. An entry with a line that is no field, twice the same field, or neither HEAD nor bare was
    cut by a newline in its path: skipped, and said."""
    out = Worktrees([], [])
    for entry in data.split(b"\n\n"):
        first, *fields = entry.split(b"\n")
        if not first.startswith(b"worktree "):
            continue
        path = first[len(b"worktree ") :]
        keys = [f.split(b" ", 1)[0] for f in fields if f]
        whole = all(_FIELDS.fullmatch(f) for f in fields if f) and len(keys) == len(set(keys))
        if whole and (b"HEAD" in keys or b"bare" in keys):
            _entry(path, fields, out)
        else:
            out.skipped.append(f"the worktree listed as {shown(os.fsdecode(path))} was skipped: {_CUT}")
    return out
