"""`gitbus install` / `uninstall`: wire gitbus into Claude Code and into git's hooks, reversibly.

Claude Code: hook entries merged into `.claude/settings.local.json` at the main checkout (sessions in
any worktree read it there) or, with `--shared`, into this worktree's `.claude/settings.json`; a
marked section in `CLAUDE.local.md` (each worktree) or `CLAUDE.md`; the MCP server in each
worktree's `.mcp.json`, or, when a `.mcp.json` is tracked by git, in Claude Code's local scope
(`~/.claude.json`, under the main checkout: every worktree's sessions read it there), so a file the
team shares is never touched. The commands name the gitbus that ran `install`, not whichever is first
on PATH. Our entries are recognised by their command (`… hook`), so the user's own hooks are never
touched; a file is written only when its text changes, and uninstall removes exactly what install
added, giving back the original bytes of a file whose content comes back to what it was. Git's hooks
are `gitbus.githooks`.
"""

from __future__ import annotations

import os
import shlex
from functools import partial
from pathlib import Path
from typing import Any

from gitbus.errors import GitbusError
from gitbus.git import Repository
from gitbus.install_files import (
    MCP_SERVER,
    check_hooks,
    check_servers,
    exclude,
    forget_server,
    gitbus_command,
    hooks_set_aside,
    instructions,
    original_servers,
    put_section,
    put_server,
    set_aside,
    strip_hooks,
    take_section,
    take_server,
    tracked,
    unexclude,
    without_server,
)
from gitbus.install_record import (
    Record,
    check_inside,
    folder,
    give_back_json,
    parse,
    read_json,
    remove_made,
    text_of,
    write_json,
)

ENABLED = "enabledMcpjsonServers"  # the settings key that approves `.mcp.json` servers by name


def _hook_entries(cmd: str) -> dict[str, list[dict[str, Any]]]:
    def one(command: str, **extra: Any) -> dict[str, Any]:
        return {"type": "command", "command": command, "timeout": 10, **extra}

    return {
        "SessionStart": [{"hooks": [one(f"{cmd} hook")]}],
        "UserPromptSubmit": [{"hooks": [one(f"{cmd} hook")]}],
        "PostToolUse": [{"matcher": "*", "hooks": [one(f"{cmd} hook")]}],
        "PreToolUse": [{"matcher": "Write|Edit|MultiEdit|NotebookEdit", "hooks": [one(f"{cmd} hook")]}],
        "Stop": [
            {
                "hooks": [
                    one(f"{cmd} hook"),
                    {"type": "command", "command": f"{cmd} hook wake", "asyncRewake": True},
                ]
            }
        ],
        "SessionEnd": [{"hooks": [one(f"{cmd} hook")]}],  # ends the session's waiter
    }


def _strip_ours(settings: dict[str, Any], created: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """`settings` without any hook entry gitbus added, nor its approval of our MCP server.

    A group left empty goes; an event list or the `hooks` object left empty goes only if install
    created it (`created` holds keys like `hooks` and `hooks.Stop`), so the user's shape comes back."""
    out = strip_hooks(settings, created)
    enabled = out.get(ENABLED)
    if f"{ENABLED}.{MCP_SERVER}" in created and isinstance(enabled, list):
        rest = [x for x in enabled if x != MCP_SERVER]
        out = {k: v for k, v in out.items() if k != ENABLED or rest or ENABLED not in created}
        if ENABLED in out:
            out[ENABLED] = rest
    return out


def _enable_mcp(settings: dict[str, Any], f: Path, record: Record) -> None:
    """Approve our `.mcp.json` server: Claude Code leaves project servers pending until approved."""
    if ENABLED not in settings:
        record.add(f"{f}#{ENABLED}")
        settings[ENABLED] = []
    enabled = settings[ENABLED]
    if not isinstance(enabled, list):
        raise GitbusError(f"{f} has an {ENABLED} entry that is not a list; fix it first.")
    if MCP_SERVER not in enabled:
        record.add(f"{f}#{ENABLED}.{MCP_SERVER}")
        enabled.append(MCP_SERVER)


def _settings_file(repo: Repository, shared: bool) -> Path:
    main_root = repo.worktrees()[0] if not shared else repo.root
    return main_root / ".claude" / ("settings.json" if shared else "settings.local.json")


def _memory_files(repo: Repository, shared: bool) -> list[Path]:
    if shared:
        return [repo.root / "CLAUDE.md"]
    return [wt / "CLAUDE.local.md" for wt in repo.worktrees()]


def _check_claude(repo: Repository, shared: bool, local: bool) -> None:
    """Read and check every file install or uninstall would write, in every worktree, before any
    is written: a bad one stops everything with nothing changed."""
    f = _settings_file(repo, shared)
    _check_places(repo, shared, [] if local else _mcp_files(repo, shared))
    settings = read_json(f)
    check_hooks(f, settings, list(_hook_entries("gitbus")))
    if not isinstance(settings.get(ENABLED, []), list):
        raise GitbusError(f"{f} has an {ENABLED} entry that is not a list; fix it first.")
    for mcp_file in [] if local else _mcp_files(repo, shared):
        check_servers(mcp_file, read_json(mcp_file))
    for mem in _memory_files(repo, shared):
        text_of(mem)
    if local:
        _local_servers(claude_state_file(), read_json(claude_state_file()), str(repo.worktrees()[0]))


def _check_places(repo: Repository, shared: bool, mcp_files: list[Path]) -> None:
    """Refuse a file of a worktree that a link puts outside the repository (see `check_inside`)."""
    roots = repo.worktrees()
    for f in [_settings_file(repo, shared), *mcp_files, *_memory_files(repo, shared)]:
        check_inside(f, roots)


def install_claude(repo: Repository, shared: bool = False) -> list[Path]:
    """Add gitbus's hooks, instructions and MCP server; idempotent. Returns the files it changed
    (none when everything was in place already)."""
    local = not shared and _tracked_mcp_json(repo)
    _check_claude(repo, shared, local)
    record = Record(repo)
    changed: list[Path] = []
    cmd = gitbus_command()
    f = _settings_file(repo, shared)
    if not f.parent.exists():
        record.add(folder(f.parent))
    text = text_of(f)
    if text is None:
        record.add(str(f))
    current = parse(f, text) if text is not None else {}
    settings = _strip_ours(current, record.keys(f))
    if text is not None and (settings == current or not record.knows(f)):
        record.keep_original(str(f), text)  # nothing of ours in it: the user's own bytes
    if "hooks" not in settings:
        record.add(f"{f}#hooks")
    hooks = settings.setdefault("hooks", {})
    for event, groups in _hook_entries(cmd).items():
        if event not in hooks:
            record.add(f"{f}#hooks.{event}")
        hooks.setdefault(event, []).extend(groups)
    _enable_mcp(settings, f, record)
    if write_json(f, settings):
        changed.append(f)
    for mem in _memory_files(repo, shared):
        if put_section(mem, instructions(cmd), record):
            changed.append(mem)
    exe, *args = shlex.split(cmd)
    entry = {"command": exe, "args": [*args, "mcp"], "alwaysLoad": True}
    if local:
        changed += _register_locally(repo, entry, record)
    else:
        for mcp_file in _mcp_files(repo, shared):
            text, known = text_of(mcp_file), record.knows(mcp_file)
            if text is None:
                record.add(str(mcp_file))
            config = parse(mcp_file, text) if text is not None else {}
            if "mcpServers" not in config:
                record.add(f"{mcp_file}#mcpServers")
            servers = config.setdefault("mcpServers", {})
            if text is not None and (MCP_SERVER not in servers or not known):
                record.keep_original(str(mcp_file), text)  # a server named gitbus here is the user's
            mark = f"mcpServers.{MCP_SERVER}"
            left = known and servers.get(MCP_SERVER) == entry  # by an install from before the mark
            put_server(mcp_file, servers, entry, record, first=mark not in record.keys(mcp_file) and not left)
            record.add(f"{mcp_file}#{mark}")
            if write_json(mcp_file, config):
                changed.append(mcp_file)
    if not shared:
        exclude(repo, list(EXCLUDED), record)
    return changed


def _mcp_files(repo: Repository, shared: bool) -> list[Path]:
    """`.mcp.json` where sessions start: this worktree (shared), else every worktree."""
    return [repo.root / ".mcp.json"] if shared else [wt / ".mcp.json" for wt in repo.worktrees()]


def _tracked_mcp_json(repo: Repository) -> bool:
    """Whether any worktree's `.mcp.json` is tracked by git: a file the team shares, not ours to edit."""
    return any(_tracked(repo, wt / ".mcp.json") for wt in repo.worktrees())


def _tracked(repo: Repository, f: Path) -> bool:
    return tracked(repo, f, f.parent)


def claude_state_file() -> Path:
    """Claude Code's own state file, which holds its local-scope MCP servers per project."""
    config_dir = os.environ.get("CLAUDE_CONFIG_DIR")
    return Path(config_dir) / ".claude.json" if config_dir else Path.home() / ".claude.json"


def _register_locally(repo: Repository, entry: dict[str, Any], record: Record) -> list[Path]:
    """Our MCP server in Claude Code's local scope (what `claude mcp add --scope local` writes):
    `projects[<main checkout>].mcpServers`, the key Claude Code uses for every worktree."""
    f, project = claude_state_file(), str(repo.worktrees()[0])
    text = text_of(f)
    if text is None:
        record.add(str(f))
    state = parse(f, text) if text is not None else {}
    _local_servers(f, state, project)
    made = {
        "projects": "projects" not in state,
        f"project:{project}": project not in state.get("projects", {}),
    }
    projects = state.setdefault("projects", {})
    mine = projects.setdefault(project, {}) if isinstance(projects, dict) else None
    if isinstance(mine, dict):
        made[f"servers:{project}"] = "mcpServers" not in mine
    servers = mine.setdefault("mcpServers", {}) if isinstance(mine, dict) else None
    if not isinstance(servers, dict):
        raise GitbusError(f"{f} has no object for the MCP servers of {project}; fix it first.")
    first = f"local:{project}" not in record.keys(f)
    if first:  # no copy of this file is kept: it is Claude Code's
        for key, was_made in made.items():
            if was_made:
                record.add(f"{f}#{key}")
    put_server(f, servers, {"type": "stdio", **entry}, record, first, where=project)
    record.add(f"{f}#local:{project}")
    return [f] if write_json(f, state, new_mode=0o600) else []  # private, as Claude Code keeps it


def _local_servers(f: Path, state: dict[str, Any], project: str) -> None:
    """Refuse, in one sentence, a Claude Code state file with no room for `project`'s servers."""
    projects = state.get("projects", {})
    mine = projects.get(project, {}) if isinstance(projects, dict) else None
    if not isinstance(mine, dict) or not isinstance(mine.get("mcpServers", {}), dict):
        raise GitbusError(f"{f} has no object for the MCP servers of {project}; fix it first.")


def _unregister_locally(record: Record) -> list[Path]:
    """Take our local-scope MCP server out of Claude Code's state file, with what install made for it."""
    f = claude_state_file()
    made = record.keys(f)
    places = [k[len("local:") :] for k in made if k.startswith("local:")]
    if not places or not f.exists():
        return []
    state = read_json(f)
    projects = state.get("projects")
    for project in places:
        mine = projects.get(project) if isinstance(projects, dict) else None
        servers = mine.get("mcpServers") if isinstance(mine, dict) else None
        if not (isinstance(projects, dict) and isinstance(mine, dict) and isinstance(servers, dict)):
            continue
        take_server(f, servers, record, where=project)
        forget_server(f, record, where=project)
        if not servers and f"servers:{project}" in made:
            del mine["mcpServers"]
        if not mine and f"project:{project}" in made:
            del projects[project]
    if isinstance(projects, dict) and not projects and "projects" in made:
        del state["projects"]
    gone = not state and str(f) in record.items
    if gone:
        remove_made(f, record)
    changed = gone or give_back_json(f, state, record)
    record.forget(str(f))  # what is left of the file is the user's (or Claude Code's)
    return [f] if changed else []


def uninstall_claude(repo: Repository, shared: bool = False) -> list[Path]:
    """Remove exactly what `install_claude` added (files left empty by it are removed, files it
    changed get their original bytes back when their content is the user's again). Every file is
    read and checked first: a bad one stops the uninstall with nothing changed."""
    changed: list[Path] = []
    record = Record(repo)
    ours = set(record.items)  # as install left it; `forget` below updates the record itself
    f = _settings_file(repo, shared)
    mcp_files = [m for m in _mcp_files(repo, shared) if shared or not _tracked(repo, m)]  # a team's is theirs
    _check_places(repo, shared, mcp_files)
    read = {m: read_json(m) for m in [f, *mcp_files] if m.exists()}  # every one readable, or none written
    read = {m: obj for m, obj in read.items() if record.knows(m)}  # in a file install never touched, a
    # server or hook named gitbus is the user's own
    if not shared and record.keys(claude_state_file()):
        read_json(claude_state_file())
    if f in read:
        before = read[f]
        created = record.keys(f)
        aside = set_aside(f, record)  # the user's own `gitbus hook` entries come back

        def leave(x: dict[str, Any]) -> dict[str, Any]:
            return hooks_set_aside(_strip_ours(x, created), aside)

        after = leave(before)
        if after != before:
            if not after and str(f) in ours:
                remove_made(f, record, ours)  # and the `.claude/` install made, left empty
            else:
                give_back_json(f, after, record, leave)
            changed.append(f)
        record.forget_original(str(f))  # what is there now is the user's: no copy of it to go stale
        record.forget_keys(f)  # nothing of ours is left in it: what is there now is the user's
    for mcp_file in mcp_files:
        config = read.get(mcp_file)
        servers = config.get("mcpServers") if config is not None else None
        if config is not None and isinstance(servers, dict) and MCP_SERVER in servers:
            created = record.keys(mcp_file)

            config = without_server(mcp_file, config, created, record)
            if not config and str(mcp_file) in ours:
                remove_made(mcp_file, record)
            else:
                give_back_json(mcp_file, config, record, partial(original_servers, mcp_file, record=record))
            forget_server(mcp_file, record)
            record.forget_keys(mcp_file)
            changed.append(mcp_file)
    if not shared:
        changed += _unregister_locally(record)
    for mem in _memory_files(repo, shared):
        if take_section(mem, record, ours):
            changed.append(mem)
    if not shared:
        unexclude(repo, record, EXCLUDED)
    return changed


EXCLUDED = ("/.claude/settings.local.json", "/CLAUDE.local.md", "/.mcp.json")  # personal files
