"""What every benchmark script shares: the hermetic environment, scratch folders, the `gitbus` command,
the log line and where the report goes.

The driver (run.py) imports every benchmark and each benchmark can run on its own; both take these
helpers from here, so no benchmark imports the driver and the bench has no import circle.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pygit2

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"

_T0 = time.perf_counter()


def log(text: str) -> None:
    print(f"[{time.perf_counter() - _T0:5.1f} s] {text}", file=sys.stderr, flush=True)


def out(*argv: str) -> str:
    """A command's output in the checkout ("?" when it cannot run)."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT).stdout.strip()
    except OSError:
        return "?"


def fstype(path: Path) -> str:
    return out("df", "--output=fstype", str(path)).splitlines()[-1:][0] if path.exists() else "?"


def hermetic_env(home: Path) -> dict[str, str]:
    """Seal subprocesses from the user's git config and identity; pygit2 in-process the same way."""
    home.mkdir(parents=True, exist_ok=True)
    for level in (pygit2.enums.ConfigLevel.GLOBAL, pygit2.enums.ConfigLevel.XDG,
                  pygit2.enums.ConfigLevel.SYSTEM):
        pygit2.settings.search_path[level] = str(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "GITBUS_"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), GIT_CONFIG_NOSYSTEM="1",
               GITBUS_AGENT="reader", LC_ALL="C.UTF-8")
    return env


def gitbus_exe() -> str:
    beside = Path(sys.executable).with_name("gitbus")
    found = str(beside) if beside.exists() else shutil.which("gitbus")
    if not found:
        raise SystemExit("bench: the `gitbus` command is not installed next to this Python.")
    return found


@contextlib.contextmanager
def workdir(parent: str | None = None) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="gitbus-bench-", dir=parent))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def tmpfs() -> str | None:
    """A RAM file system to measure on without disk noise, if this machine has one."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) and fstype(shm) == "tmpfs" else None
