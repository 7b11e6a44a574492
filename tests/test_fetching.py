"""A sync's fetch started before the library loads (gitbus.fetching): it starts before pygit2 does,
only where the library would fetch the same refs, what it brings is vouched for exactly as before,
and a fetch the library does not take leaves no tracking ref unvouched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gitbus import fetching, sync
from gitbus.git import Repository
from gitbus.quick_parse import early_fetch

from .conftest import git
from .test_hostile_remote import World, fresh_clone, trailers
from .test_hostile_remote import world as world
from .test_sync import clone, gb


def run_gitbus(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`gitbus ARGS` as a whole process, through the executable's entry (where the early fetch starts)."""
    code = "import sys; sys.argv[0] = 'gitbus'; from gitbus.entry import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def tracking_refs(path: Path) -> str:
    return git(path, "for-each-ref", "--format=%(refname) %(objectname)", "refs/gitbus/vouched/origin/bus/")


def fetched_refs(path: Path) -> str:
    return git(path, "for-each-ref", "--format=%(refname) %(objectname)", "refs/gitbus/fetched/origin/")


@pytest.fixture
def behind(world: World) -> Path:
    """A clone that set the bus remote and has not fetched the bus yet; the remote has news."""
    path = clone(world.url, world.tmp / "behind")
    code, _, err = gb(path, "carol", "remote", "origin")
    assert code == 0, err
    assert tracking_refs(path) == ""
    return path


def test_a_syncs_fetch_starts_before_pygit2_loads(behind: Path) -> None:
    probe = (
        "import sys; from pathlib import Path; from gitbus.quick_parse import early_fetch; "
        "e = early_fetch(['sync']); print(e is not None, 'pygit2' in sys.modules); e.close()"
    )
    r = subprocess.run([sys.executable, "-c", probe], cwd=behind, capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["True", "False"], r.stderr[-2000:]


def test_what_the_early_fetch_brings_is_vouched_for_as_before(world: World) -> None:
    p = world.peer
    now = int(time.time() * 1000)
    first = p.commit(trailers(sender="mallory", mid="00000000000000c1", time=now))
    ahead = p.commit(trailers(sender="mallory", mid="00000000000000c2", time=now + 2 * 86_400_000), (first,))
    p.push(ahead, "refs/bus/agents/mallory")
    b = fresh_clone(world, "b")
    r = run_gitbus(b, "sync", GITBUS_AGENT="carol")
    assert r.returncode == 0, r.stderr
    assert "refused refs/bus/agents/mallory" in r.stderr and "a day ahead" in r.stderr, r.stderr
    repo = Repository.open(b)
    assert repo.ref("refs/bus/agents/mallory") == first
    assert repo.ref("refs/gitbus/vouched/origin/bus/agents/mallory") == first  # put back: vouched for
    assert repo.ref("refs/bus/agents/alice") is not None


def test_a_sync_that_fails_after_its_fetch_started_takes_nothing_in(behind: Path) -> None:
    r = run_gitbus(behind, "-a", "Not A Name", "sync")
    assert r.returncode != 0 and "Not A Name" in r.stderr, r.stderr
    assert tracking_refs(behind) == ""  # the fetch that started first vouched for nothing


def test_a_fetch_the_sync_does_not_take_leaves_no_tracking_ref(behind: Path) -> None:
    early = fetching.start(behind, None)
    assert early is not None
    sync.sync(Repository.open(behind), "origin", pull=False, early=early)  # a push fetches nothing
    assert tracking_refs(behind) == ""


def test_a_fetch_ended_at_once_leaves_the_tracking_refs_as_they_were(behind: Path) -> None:
    git(behind, "config", "remote.origin.uploadpack", "sleep 30; git-upload-pack")
    early = early_fetch(["-C", str(behind), "pull"])
    assert early is not None
    t0 = time.monotonic()
    early.close(stop=True)  # Ctrl-C while the library loads
    assert time.monotonic() - t0 < 10
    assert tracking_refs(behind) == ""


@pytest.mark.parametrize(
    "how",
    ["no remote set", "a remote git does not know", "a name no remote can have", "GIT_DIR", "push", "log"],
)
def test_no_fetch_starts_where_the_library_would_not_fetch(
    behind: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["-C", str(behind), "sync"]
    if how == "no remote set":
        (Repository.open(behind).common_dir / "gitbus" / "config.json").unlink()
    elif how == "a remote git does not know":
        argv.append("elsewhere")
    elif how == "a name no remote can have":
        argv.append("bad name")
    elif how == "GIT_DIR":
        monkeypatch.setenv("GIT_DIR", str(behind / ".git"))
    else:
        argv[-1] = how
    assert early_fetch(argv) is None
    assert tracking_refs(behind) == ""


@pytest.mark.parametrize("entry", ["gitbus.entry", "gitbus.cli"])
def test_ctrl_c_during_a_syncs_fetch_leaves_nothing_unvouched(behind: Path, entry: str) -> None:
    """git has written the refs it fetched and is still running (here: held in a reference-transaction
    hook) when Ctrl-C comes: git is ended, and no tracking ref holds anything unvouched; for the
    fetch started early (`gitbus.entry`) as for the library's own (typer's `gitbus.cli`)."""
    hook = behind / ".git" / "hooks" / "reference-transaction"
    hook.write_text(
        '#!/bin/sh\nif [ "$1" = committed ] && [ ! -e .git/held ]; then touch .git/held; sleep 30; fi\n'
    )
    hook.chmod(0o755)
    code = f"import sys; sys.argv[0] = 'gitbus'; from {entry} import main; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "sync"],
        cwd=behind,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "GITBUS_AGENT": "carol"},
    )
    deadline = time.monotonic() + 20
    while not (behind / ".git" / "held").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (behind / ".git" / "held").exists(), "the fetch never wrote a ref"
    assert fetched_refs(behind) != "" and tracking_refs(behind) == ""  # git writes only what it fetched
    time.sleep(2)  # the library has loaded meanwhile, and waits for the fetch
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode != 0, err
    assert tracking_refs(behind) == "", err.decode(errors="replace")
