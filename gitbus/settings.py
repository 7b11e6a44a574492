"""Per-repository gitbus settings, shared by every worktree: `<common git dir>/gitbus/config.json`.

A small JSON file rather than git config, because hooks read it on every tool call and must not
pay for a git config parser. Every key is validated here, so a bad value is one clear error.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from gitbus import state
from gitbus.errors import GitbusError
from gitbus.ids import agent_name
from gitbus.inert import inert

DEFAULTS: dict[str, Any] = {
    "remote": None,  # the git remote that carries the bus (docs/sync.md)
    "guard": "deny",  # what the edit and commit guards do about another agent's claim: deny | warn | off
    "autoclaim": False,  # claim a file on an agent's first edit of it
    "operator": "operator",  # the human's agent name in the TUI
    "sync_interval": 30,  # seconds between background pulls by `gitbus watch` (0: never)
    "require_signed": False,  # sync takes in only commits signed by their sender (docs/sync.md)
}


def load(common_dir: Path) -> dict[str, Any]:
    """Settings with defaults filled in. A file that cannot be read counts as empty, and a stored
    value of the wrong kind as its key's default (`problems` names both): the defaults are the
    careful choices (guard: deny), so a damaged file never opens the edit guard."""
    return {**DEFAULTS, **_stored(common_dir)[0]}


def problems(common_dir: Path) -> list[str]:
    """One sentence for each thing in the settings file that `load` could not use."""
    return _stored(common_dir)[1]


def _stored(common_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """The stored settings `load` uses, and what it skipped."""
    f = state.settings(common_dir)
    stored, problem = _file_object(f)
    if problem:
        return {}, [problem]
    good: dict[str, Any] = {}
    bad: list[str] = []
    for k, v in stored.items():
        if k not in DEFAULTS:
            continue
        if _valid(k, v):
            good[k] = v
        else:
            shown = inert(json.dumps(v)[:40], 40)
            bad.append(f"{f} holds {shown} for {k}, not a valid value; {k} is at its default.")
    return good, bad


def _file_object(f: Path) -> tuple[dict[str, Any], str | None]:
    """The JSON object settings file `f` holds ({} when there is no file), or {} and why it is
    none: what `load` and `save` both read."""
    try:
        stored = json.loads(_read(os.fspath(f)).decode("utf-8"))
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError, RecursionError):
        return {}, f"{f} cannot be read as JSON, so every setting is at its default."
    if not isinstance(stored, dict):
        return {}, f"{f} holds no JSON object, so every setting is at its default."
    return stored, None


def _read(path: str) -> bytes:
    """The file's bytes, by plain `os` calls: read before every ledger step (is a remote set?),
    where pathlib's text file cost more than the read. A folder there is an `OSError` as ever."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _valid(key: str, value: Any) -> bool:
    """Whether a stored `value` is one `parse` could have produced for `key`."""
    if key == "remote":
        return value is None or (isinstance(value, str) and bool(_REMOTE.fullmatch(value)))
    if key == "guard":
        return value in ("deny", "warn", "off") and isinstance(value, str)
    if key in ("autoclaim", "require_signed"):
        return isinstance(value, bool)
    if key == "sync_interval":
        return type(value) is int and value >= 0
    if not isinstance(value, str):
        return False
    try:
        agent_name(value)
    except GitbusError:
        return False
    return True


_REMOTE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")


def parse(key: str, value: str) -> Any:
    """Validate `value` for `key` as typed by a person."""
    if key not in DEFAULTS:
        raise GitbusError(f"'{key}' is not a gitbus setting; use one of {', '.join(DEFAULTS)}.")
    if key == "remote":
        if not _REMOTE.fullmatch(value):
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
    """Set one key (already validated by `parse`), atomically, under the settings lock: two
    writers of different keys each read the other's change before writing their own. Every other
    stored key is kept as it was, a bad value too (it is named by `problems`, not dropped)."""
    f = state.settings(common_dir)
    with state.locked(state.settings_lock(common_dir)):
        stored, _ = _file_object(f)
        stored[key] = value
        kept = {k: v for k, v in stored.items() if k not in DEFAULTS or v != DEFAULTS[k]}
        state.write_atomic(f, json.dumps(kept, indent=2, sort_keys=True), prefix=".config-")
