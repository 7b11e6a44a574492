"""Shared fixtures: a hermetic environment and real repositories with real worktrees."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from gitbus.bus import Bus
from gitbus.clock import FakeClock
from gitbus.message import Message

# Property tests are reproducible: a fixed derivation of examples, no wall-clock deadline.
settings.register_profile("gitbus", derandomize=True, deadline=None)
settings.load_profile("gitbus")


def git(cwd: Path, *args: str) -> str:
    """Run real git in `cwd` and return its stdout."""
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def raw_git(cwd: Path, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> str:
    """Run real git with bytes on stdin, as a peer writing objects by hand would; its stdout, stripped."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True, check=True, env=full_env)
    return proc.stdout.decode().strip()


@pytest.fixture(autouse=True)
def hermetic(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seal tests from the user's git config, home and agent identity."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_EDITOR", "false")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "test@example.invalid")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "test@example.invalid")
    monkeypatch.delenv("GITBUS_AGENT", raising=False)
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)  # Claude Code's state is under HOME then
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)


def make_repo(path: Path) -> Path:
    """A real repository at `path` with one commit on main and a few files."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for rel in ("internal/api/handler.go", "internal/apis/x.go", "config/db.yaml", "README.md"):
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(f"{rel}\n")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "initial")
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "main")


@pytest.fixture
def worktrees(repo: Path) -> list[Path]:
    """The main checkout and two more real worktrees of it."""
    out = [repo]
    for name in ("wt-b", "wt-c"):
        wt = repo.parent / name
        git(repo, "worktree", "add", "-q", "-b", name, str(wt))
        out.append(wt)
    return out


NAMES = ("api-1", "web-1", "db-1")  # the agents of `agents`, one per worktree


@pytest.fixture
def agents(worktrees: list[Path]) -> list[Bus]:
    """api-1 in the main checkout, web-1 and db-1 in two more worktrees; each joined by name."""
    buses = []
    for wt, name in zip(worktrees, NAMES, strict=True):
        bus = Bus.open(wt)
        bus.join(name)
        buses.append(bus)
    return buses


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def bus_for(clock: FakeClock) -> Iterator[Callable[[Path, str], Bus]]:
    """Open a bus as a named agent in a worktree, all sharing one fake clock; joined already."""

    def make(path: Path, agent: str) -> Bus:
        bus = Bus.open(path, agent, clock)
        bus.init()
        return bus

    yield make


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", help="Run stress and fault-injection tests at full size.")


@pytest.fixture
def long_mode(request: pytest.FixtureRequest) -> bool:
    """True under --long: stress tests scale their rounds up from the short CI mode."""
    return bool(request.config.getoption("--long"))


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many commit messages the chain walks decode from here on (one-element list): what a read
    costs, counted, never timed (issue 16: a flood must not be decoded whole)."""
    from gitbus import chains

    count = [0]
    real = chains.decode

    def counting(raw: str) -> Message:
        count[0] += 1
        return real(raw)

    monkeypatch.setattr(chains, "decode", counting)
    return count


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only; skipped elsewhere), unmounted at the end."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True
    ).returncode:
        pytest.skip("mounting a small file system needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
