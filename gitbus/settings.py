"""Per-repository gitbus settings, shared by every worktree: `<common git dir>/gitbus/config.json`.

A small JSON file rather than git config, because hooks read it on every tool call and must not
pay for a git config parser. Every key is validated here, so a bad value is one clear error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from gitbus import state
from gitbus.errors import GitbusError

DEFAULTS: dict[str, Any] = {
    "remote": None,  # the git remote that carries the bus (docs/sync.md)
    "guard": "deny",  # what the edit and commit guards do about another agent's claim: deny | warn | off
    "autoclaim": False,  # claim a file on an agent's first edit of it
    "operator": "operator",  # the human's agent name in the TUI
    "sync_interval": 30,  # seconds between background pulls by `gitbus watch` (0: never)
    "require_signed": False,  # sync takes in only commits signed by their sender (docs/sync.md)
}


def load(common_dir: Path) -> dict[str, Any]:
    """Settings with defaults filled in; an unreadable file counts as empty."""
    try:
        stored = json.loads(state.settings(common_dir).read_text())
    except (OSError, ValueError):
        stored = {}
    if not isinstance(stored, dict):
        stored = {}
    return {**DEFAULTS, **{k: v for k, v in stored.items() if k in DEFAULTS}}


def parse(key: str, value: str) -> Any:
    """Validate `value` for `key` as typed by a person."""
    if key not in DEFAULTS:
        raise GitbusError(f"'{key}' is not a gitbus setting; use one of {', '.join(DEFAULTS)}.")
    if key == "remote":
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$", value):
            raise GitbusError(f"'{value}' is not a valid remote name.")
        return value
    if key == "guard":
        if value not in ("deny", "warn", "off"):
            raise GitbusError(f"guard must be deny, warn or off, not '{value}'.")
        return value
    if key == "sync_interval":
        return _seconds(value)
    if key in ("autoclaim", "require_signed"):
        if value.lower() not in ("true", "false", "on", "off", "1", "0"):
            raise GitbusError(f"{key} must be true or false, not '{value}'.")
        return value.lower() in ("true", "on", "1")
    from gitbus.ids import agent_name

    return agent_name(value)


def _seconds(value: str) -> int:
    """`sync_interval` as typed (`0`, `30`, `90s`, `10m`) to the whole seconds it is stored in."""
    from gitbus.clock import parse_duration

    if value.strip() == "0":
        return 0
    try:
        ms = parse_duration(value)
    except GitbusError:
        ms = -1
    if ms < 1000 or ms % 1000:
        raise GitbusError(
            f"sync_interval is 0 (never) or a whole number of seconds (30, 90s, 10m), not '{value}'."
        )
    return ms // 1000


def save(common_dir: Path, key: str, value: Any) -> None:
    """Set one key (already validated by `parse`), atomically."""
    current = load(common_dir)
    current[key] = value
    kept = {k: v for k, v in current.items() if v != DEFAULTS[k]}
    text = json.dumps(kept, indent=2, sort_keys=True)
    state.write_atomic(state.settings(common_dir), text, prefix=".config-")
