"""The bus fetch's command line, and a sync's fetch started before pygit2 loads (issue 16).

A 10,000-message sync spends most of its time in `git fetch`, and a tenth of it importing pygit2
and the library; the two need not wait for each other. So the light path (`gitbus.quick_parse`)
starts the fetch from git's files and the git CLI alone, and the library loads while it runs:
`remote_fetch.fetch_vouched` then takes this fetch's outcome as its first try, with the tracking refs
read just before it started, and vouches for what came exactly as for a fetch of its own.

Nothing changes what is taken in. The fetch starts only where the library would fetch the same
refs of the same remote into the same repository (the remote named or set, a name `settings`
takes, that git knows; no reftable, no `GIT_DIR`); where it would not, it does not start, and the
library goes its usual way. A fetch writes only `fetched(remote)`, the remote as it was (pruned),
never the tracking refs, which hold what sync vouched for: a started fetch the library does not
take (an error first, Ctrl-C, a repository pygit2 finds elsewhere) leaves nothing to undo.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from gitbus import settings
from gitbus.errors import GitbusError
from gitbus.gitcli import finish, network_env, network_timeout, start_network
from gitbus.gitfiles import locate
from gitbus.ids import BUS_PREFIX, KEPT_PREFIX
from gitbus.reffiles import read_refs

# What makes git find another repository than the worktree around the directory: then no early fetch.
_ELSEWHERE = ("GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR")


def tracking(remote: str) -> str:
    """Where what sync vouched for of the remote's bus refs is kept. Not under `refs/remotes/`:
    git's default fetch refspec writes `refs/remotes/<remote>/*` from the remote's branches, so a
    branch a peer names `bus/ledgers/9f33` would overwrite it at the user's next plain `git fetch`."""
    return f"{KEPT_PREFIX}vouched/{remote}/bus/"


def notes_tracking(remote: str) -> str:
    """Where the remote's coordination notes are fetched to."""
    return f"{KEPT_PREFIX}vouched/{remote}/notes/gitbus"


def fetched(remote: str) -> str:
    """Where each fetch leaves the remote's bus refs as the remote holds them, pruned: what a push
    leases. A peer may delete a ref, or put a name under it (`agents/alice/x`) that git cannot keep
    beside it; here that never fails a fetch, and the tracking namespace keeps what was vouched for."""
    return f"{KEPT_PREFIX}fetched/{remote}/bus/"


def fetched_notes(remote: str) -> str:
    return f"{KEPT_PREFIX}fetched/{remote}/notes/gitbus"


def fetch_args(remote: str, what: str = "*", ledgers: Iterable[str] | None = None) -> list[str]:
    """`git fetch`'s arguments to copy the remote's bus refs (all, or the ledgers: `ledger`; with
    `ledgers`, only those beside `refs/bus/ledger`) into `fetched(remote)`, pruned there: what the
    remote deleted goes too, before what it added, so no name clashes."""
    if what == "ledger" and ledgers is not None:  # a glob each: a shard the remote lacks is no error
        names = ["ledger", *(f"{ref[len(BUS_PREFIX) :]}*" for ref in sorted(ledgers))]
    else:
        names = ["ledger*" if what == "ledger" else what]  # `ledger*`: `refs/bus/ledger` and `ledgers/…`
    specs = [f"+{BUS_PREFIX}{n}:{fetched(remote)}{n}" for n in names]
    if what == "*":  # coordination notes travel with the bus (a glob: the remote may have none yet)
        specs.append(f"+refs/notes/gitbus*:{fetched_notes(remote)}*")
    # packing is housekeeping's (`--no-auto-gc`): a gc here would race sync's own push
    flags = ["--quiet", "--prune", "--no-tags", "--no-write-fetch-head", "--no-auto-gc"]
    return ["fetch", *flags, remote, *specs]


def tracked(common_dir: Path, remote: str) -> tuple[dict[str, str], str | None]:
    """What the tracking refs of `remote` hold now: the bus refs, and the notes ref (or None)."""
    notes = notes_tracking(remote)
    return read_refs(common_dir, tracking(remote)), read_refs(common_dir, notes).get(notes)


class Early:
    """A whole-bus fetch of `remote` under way in the worktree at `root`, and what its tracking refs
    held when it started (`before`, `before_notes`). `result` waits for it, once, and hands it over:
    from then on vouching for what came is the caller's. `close` lets go of one never handed over."""

    def __init__(self, root: Path, common_dir: Path, remote: str) -> None:
        self.root, self.common_dir, self.remote = root, common_dir, remote
        self.before, self.before_notes = tracked(common_dir, remote)
        self.limit = network_timeout(whole_bus=True)
        self.deadline = time.monotonic() + self.limit
        self._child: subprocess.Popen[bytes] | None = None
        self._outcome: tuple[int, str, str] | None = None
        self.taken = False

    def serves(self, common_dir: Path, remote: str) -> bool:
        """True when this is the fetch the library would start now: the same remote, the same repository."""
        return not self.taken and remote == self.remote and common_dir == self.common_dir

    def result(self) -> tuple[int, str, str]:
        """git's (exit code, stdout, stderr), once the fetch ended; what it wrote is now the caller's
        to vouch for (not if Ctrl-C came first: then nothing is vouched for)."""
        outcome = self._wait()
        self.taken = True
        return outcome

    def _wait(self) -> tuple[int, str, str]:
        if self._outcome is None:
            assert self._child is not None
            try:
                self._outcome = finish(self._child, self.limit, self.deadline)
            except BaseException:  # Ctrl-C: `finish` ended git; nothing more to wait for
                self._outcome = (130, "", "interrupted")
                raise
        return self._outcome

    def begin(self, env: Mapping[str, str]) -> None:
        """Start the fetch (once `before` is read)."""
        self._child = start_network(fetch_args(self.remote), self.root, env)

    def close(self, stop: bool = False) -> None:
        """Let go of a fetch never handed over: wait for it (`stop`: end it at once). It wrote only
        `fetched(remote)`, which is true whatever became of it; nothing was vouched for."""
        if self.taken:
            return
        self.taken = True
        if stop:
            self.deadline = time.monotonic()
        if self._child is not None:
            self._wait()


def start(directory: Path, explicit: str | None) -> Early | None:
    """Start `gitbus sync`'s first fetch in the worktree around `directory`, from the remote named
    (`explicit`) or set, or return None where the library would not fetch (it then says why)."""
    if any(v in os.environ for v in _ELSEWHERE):
        return None
    try:
        where = locate(directory)
    except (GitbusError, OSError):
        return None
    if where is None or (where.common_dir / "reftable").is_dir():
        return None
    name = explicit or settings.load(where.common_dir)["remote"]
    try:
        remote = str(settings.parse("remote", name)) if isinstance(name, str) and name else None
    except GitbusError:
        return None
    if remote is None:
        return None
    url = subprocess.run(
        ["git", "remote", "get-url", remote], cwd=where.root, capture_output=True, check=False
    )
    if url.returncode != 0:
        return None
    env = network_env(lambda: _ssh_configured(where.root, url.stdout))
    early = Early(where.root, where.common_dir, remote)
    early.begin(env)
    return early


def _ssh_configured(root: Path, url: bytes) -> bool:
    """Whether git has `core.sshCommand` here. A local remote (a path or file:// URL) never runs ssh,
    so what it holds makes no difference there, and git is not asked."""
    if url.startswith((b"/", b"file://", b"./", b"../")):
        return False
    found = subprocess.run(
        ["git", "config", "--get", "core.sshCommand"], cwd=root, capture_output=True, check=False
    )
    return found.returncode == 0
