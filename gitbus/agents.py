"""Agents: who is speaking in this worktree, and who else is on the bus.

An agent is a worktree. Its name comes from `GITBUS_AGENT`, else from the worktree's own setting
(`gitbus join --name`, kept in the worktree's private git dir so `git status` never shows it), else
from the worktree folder's name. An agent is known to the others once its chain exists.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from gitbus import fastpath, state
from gitbus.errors import GitbusError
from gitbus.gitfiles import read_refs
from gitbus.ids import AGENTS_PREFIX, AgentName, agent_name, derive_agent_name

ENV_VAR = fastpath.ENV_VAR


class Place(Protocol):
    """Where a worktree is; a `Repository` or a `gitfiles.Location` (the hooks' light path)."""

    @property
    def root(self) -> Path: ...
    @property
    def git_dir(self) -> Path: ...
    @property
    def common_dir(self) -> Path: ...


def resolve(repo: Place, explicit: str | None = None, env: Mapping[str, str] | None = None) -> AgentName:
    """This worktree's agent name, by the precedence above; always validated."""
    env = os.environ if env is None else env
    if explicit is not None:  # `-a ""` is a bad name, not "no name given"
        return agent_name(explicit)
    if env.get(ENV_VAR):
        return agent_name(env[ENV_VAR])
    f = state.agent_setting(repo.git_dir)
    if f.is_file():
        return agent_name(_stored_name(f))
    return derive_agent_name(repo.root.name)


NAME_FILE_BYTES = 1024  # read of the agent file: far more than a name (63), never a whole big file


def _stored_name(f: Path) -> str:
    """The name in the worktree's agent file, as text; one sentence when it holds none."""
    try:
        with f.open("rb") as handle:
            raw = handle.read(NAME_FILE_BYTES + 1)
    except OSError as e:
        raise GitbusError(f"Could not read the agent name in {f}: {e.strerror or e}.") from None
    if len(raw) > NAME_FILE_BYTES:
        raise GitbusError(
            f"{f} holds no agent name (it is far too long); set one with gitbus join --name NAME."
        )
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise GitbusError(
            f"{f} holds no agent name (it is not UTF-8 text); set one with gitbus join --name NAME."
        ) from None


def named(repo: Place, explicit: str | None = None, env: Mapping[str, str] | None = None) -> bool:
    """True when this worktree's agent name was asked for (`-a`, `GITBUS_AGENT`, `gitbus join --name`)
    rather than derived from the folder's name."""
    env = os.environ if env is None else env
    return explicit is not None or bool(env.get(ENV_VAR)) or state.agent_setting(repo.git_dir).is_file()


def remember(repo: Place, name: AgentName) -> None:
    """Make `name` this worktree's agent for later commands (no env var needed)."""
    state.write_atomic(state.agent_setting(repo.git_dir), name + "\n", prefix=".agent-")


def known(repo: Place) -> dict[AgentName, str]:
    """Every agent with a chain on the bus, with its chain tip."""
    return {
        AgentName(ref[len(AGENTS_PREFIX) :]): oid
        for ref, oid in read_refs(repo.common_dir, AGENTS_PREFIX).items()
    }
