"""`gitbus install codex|gemini`: wire gitbus into Codex CLI and Gemini CLI, reversibly.

Both clients read their project files in the worktree a session starts in, so each worktree gets
its own: Codex reads MCP servers from `.codex/config.toml` (ours in a marked block) and
instructions from `AGENTS.md` there, but hooks from the main checkout's `.codex/hooks.json` (a
worktree's own is read only when the main repository is bare; both are written); Gemini reads
hooks and MCP servers from `.gemini/settings.json` and instructions from `GEMINI.md`. The
guarantees are `install claude`'s (gitbus.install): merged with what is there, written only when
the text changes, recorded so that uninstall takes out exactly what install added and gives back
the user's bytes. A file git tracks is the team's: a tracked hooks or settings file stops the
install with a hint before anything is written; a tracked instructions file is left alone (the
session-start context, which names gitbus, stands in for it). What install makes is kept out of
`git status` through `info/exclude`.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
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
    take_marked,
    take_section,
    tracked,
    unexclude,
    with_section,
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
    write_text,
)

TOML_START = "# gitbus:start (managed by gitbus install; edit outside these marks)"
TOML_END = "# gitbus:end"

CODEX_TRUST_HINT = (
    "Codex runs a project's hooks only in a trusted project, and each hook only once you trust it; "
    "in every worktree it runs the hooks of the main checkout's .codex/hooks.json: start codex in the "
    "repository once, trust the folder, and answer its 'Hooks need review' prompt with 'Trust all "
    "and continue' (or run codex with --dangerously-bypass-hook-trust). Until then gitbus reaches "
    "Codex through MCP and AGENTS.md only."
)


@dataclass(frozen=True)
class Target:
    """Where one client reads what gitbus installs, and what it installs there."""

    client: str
    hooks_file: str  # relative to a worktree
    instructions: str  # the instructions file, relative to a worktree
    hooks: Callable[[str], dict[str, list[dict[str, Any]]]]  # gitbus's command -> hook entries
    mcp_in_json: bool  # the MCP server goes in the hooks file (else in a TOML file: Codex)

    def is_ours(self, hook: Any) -> bool:
        return (
            isinstance(hook, dict)
            and isinstance(hook.get("command"), str)
            and bool(re.search(rf"(^|[\s/])(gitbus'?|-m gitbus)\s+hook\s+{self.client}\s*$", hook["command"]))
        )


def _codex_hooks(cmd: str) -> dict[str, list[dict[str, Any]]]:
    one = {"type": "command", "command": f"{cmd} hook codex", "timeout": 10}  # seconds
    return {
        "SessionStart": [{"hooks": [one]}],
        "UserPromptSubmit": [{"hooks": [one]}],
        "PreToolUse": [{"matcher": "apply_patch|Bash", "hooks": [one]}],
        "PostToolUse": [{"hooks": [one]}],
        "Stop": [{"hooks": [one]}],
    }


def _gemini_hooks(cmd: str) -> dict[str, list[dict[str, Any]]]:
    one = {"type": "command", "command": f"{cmd} hook gemini", "timeout": 10000}  # milliseconds
    return {
        "SessionStart": [{"hooks": [one]}],
        "BeforeAgent": [{"hooks": [one]}],
        "BeforeTool": [{"matcher": "write_file|replace", "hooks": [one]}],
        "AfterTool": [{"hooks": [one]}],
        "AfterAgent": [{"hooks": [one]}],
        "SessionEnd": [{"hooks": [one]}],
    }


CODEX = Target("codex", ".codex/hooks.json", "AGENTS.md", _codex_hooks, mcp_in_json=False)
GEMINI = Target("gemini", ".gemini/settings.json", "GEMINI.md", _gemini_hooks, mcp_in_json=True)
CODEX_CONFIG = ".codex/config.toml"
TARGETS = {"codex": CODEX, "gemini": GEMINI}


def _tracked(repo: Repository, worktree: Path, rel: str) -> bool:
    """Whether git tracks `rel` in `worktree` (its folder need not exist), or the file it links to."""
    return tracked(repo, worktree / rel, worktree)


def _shared_files(t: Target) -> list[str]:
    return [t.hooks_file] + ([] if t.mcp_in_json else [CODEX_CONFIG])


def _mcp_entry() -> dict[str, Any]:
    exe, *args = shlex.split(gitbus_command())
    return {"command": exe, "args": [*args, "mcp"]}


def install(repo: Repository, t: Target) -> list[Path]:
    """Add gitbus's hooks, MCP server and instructions for `t` in every worktree; idempotent.
    Returns the files it changed (none when everything was in place already)."""
    _check_places(repo, t)
    for wt in repo.worktrees():  # refuse before writing anything
        for rel in _shared_files(t):
            if _tracked(repo, wt, rel):
                raise GitbusError(
                    f"{wt / rel} is tracked by git: gitbus will not change a file your team shares. "
                    f"Untrack it, or add gitbus's entries to it yourself (docs/agents.md)."
                )
        settings = _read_settings(wt / t.hooks_file, t)  # each file readable as what it must be, everywhere
        check_hooks(wt / t.hooks_file, settings, list(t.hooks("gitbus")))
        if t.mcp_in_json:
            check_servers(wt / t.hooks_file, settings)
        text_of(wt / t.instructions)
        if not t.mcp_in_json:
            _with_our_block(wt / CODEX_CONFIG, _codex_mcp_block())
    record, changed, cmd = Record(repo), [], gitbus_command()
    made_instructions = False
    for wt in repo.worktrees():
        f = wt / t.hooks_file
        if _merge_json(f, t, t.hooks(cmd), record):
            changed.append(f)
        if not t.mcp_in_json and _put_toml_block(wt / CODEX_CONFIG, _codex_mcp_block(), record):
            changed.append(wt / CODEX_CONFIG)
        mem = wt / t.instructions
        if not _tracked(repo, wt, t.instructions):  # a team's AGENTS.md / GEMINI.md is theirs
            made_instructions |= not mem.exists() or str(mem) in record.items
            if put_section(mem, instructions(cmd), record):
                changed.append(mem)
    exclude(repo, _excluded(t, made_instructions), record)
    return changed


def _check_places(repo: Repository, t: Target) -> None:
    """Refuse a file of a worktree that a link puts outside the repository (see `check_inside`)."""
    roots = repo.worktrees()
    for wt in roots:
        for rel in [*_shared_files(t), t.instructions]:
            check_inside(wt / rel, roots)


def _excluded(t: Target, with_instructions: bool) -> list[str]:
    return [f"/{rel}" for rel in _shared_files(t)] + ([f"/{t.instructions}"] if with_instructions else [])


def uninstall(repo: Repository, t: Target) -> list[Path]:
    """Remove exactly what `install` added for `t`, in every worktree. Every file is read and
    checked first: a bad one in any worktree stops the uninstall with nothing changed."""
    _check_places(repo, t)
    for wt in repo.worktrees():
        _read_settings(wt / t.hooks_file, t)
        text_of(wt / t.instructions)
        if not t.mcp_in_json:
            text_of(wt / CODEX_CONFIG)
    record = Record(repo)
    ours = set(record.items)
    changed: list[Path] = []
    for wt in repo.worktrees():
        f = wt / t.hooks_file
        if _unmerge_json(f, t, record, ours):
            changed.append(f)
        if not t.mcp_in_json and _take_toml_block(wt / CODEX_CONFIG, record, ours):
            changed.append(wt / CODEX_CONFIG)
        mem = wt / t.instructions
        if not _tracked(repo, wt, t.instructions) and take_section(mem, record, ours):
            changed.append(mem)
    unexclude(repo, record, tuple(_excluded(t, True)))
    return changed


# -- JSON: hooks (and Gemini's MCP server) ------------------------------------------------------


def _read_settings(f: Path, t: Target) -> dict[str, Any]:
    """`read_json`, saying so when the file is JSON but for comments: Gemini CLI reads its settings
    with `//` and `/* */` comments allowed, and gitbus, which writes the file back as JSON, would
    lose them, so such a file is refused with the reason rather than called broken."""
    try:
        return read_json(f)
    except GitbusError as e:
        if t is not GEMINI:
            raise
        try:
            json.loads(_without_comments((text_of(f) or "").removeprefix("\ufeff")))
        except (ValueError, RecursionError):
            raise e from None
        raise GitbusError(
            f"{f} has comments (// or /* */), which Gemini CLI reads but gitbus cannot keep when it "
            "merges its entries: move them out of the file, or add gitbus's entries yourself "
            "(docs/agents.md)."
        ) from None


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|//[^\n]*|/\*.*?\*/|[^"/]+|/', re.S)


def _without_comments(text: str) -> str:
    """JSON text with its comments taken out (strings kept whole, as Gemini's reader does)."""
    return "".join(t if not t.startswith(("//", "/*")) else " " for t in _JSON_TOKEN.findall(text))


def _strip(f: Path, settings: dict[str, Any], t: Target, created: set[str], record: Record) -> dict[str, Any]:
    """`settings` (of `f`) without gitbus's hooks and MCP server (the keys install made go with
    them, the user's own server of our name comes back)."""
    out = strip_hooks(settings, created, t.is_ours)
    if t.mcp_in_json and f"mcpServers.{MCP_SERVER}" in created:
        out = without_server(f, out, created, record)
    return out


def _merge_json(f: Path, t: Target, entries: dict[str, list[dict[str, Any]]], record: Record) -> bool:
    text = text_of(f)
    if text is not None and not record.knows(f):  # before any key is recorded: all in it is theirs
        record.keep_original(str(f), text)
    if not f.parent.exists():
        record.add(folder(f.parent))
    if text is None:
        record.add(str(f))
    current = parse(f, text) if text is not None else {}
    created = record.keys(f)
    settings = _strip(f, current, t, created, record)
    if text is not None and settings == current:
        record.keep_original(str(f), text)  # nothing of ours in it: the user's own bytes
    if "hooks" not in settings:
        record.add(f"{f}#hooks")
    if not isinstance(settings.setdefault("hooks", {}), dict):
        raise GitbusError(f"{f} has a hooks entry that is not an object; fix it first.")
    hooks = settings["hooks"]
    for event, groups in entries.items():
        if event not in hooks:
            record.add(f"{f}#hooks.{event}")
        if not isinstance(hooks.setdefault(event, []), list):
            raise GitbusError(f"{f} has a hooks.{event} entry that is not a list; fix it first.")
        hooks[event].extend(json.loads(json.dumps(groups)))
    if t.mcp_in_json:
        if "mcpServers" not in settings:
            record.add(f"{f}#mcpServers")
        servers = settings.setdefault("mcpServers", {})
        if not isinstance(servers, dict):
            raise GitbusError(f"{f} has an mcpServers entry that is not an object; fix it first.")
        put_server(f, servers, _mcp_entry(), record, first=f"mcpServers.{MCP_SERVER}" not in created)
        record.add(f"{f}#mcpServers.{MCP_SERVER}")
    return write_json(f, settings)


def _unmerge_json(f: Path, t: Target, record: Record, ours: set[str]) -> bool:
    if not f.exists() or not record.knows(f):  # in a file install never touched, all is the user's
        return False
    before = read_json(f)
    created = record.keys(f)
    aside = set_aside(f, record)  # the user's own entries that look like ours come back
    after = hooks_set_aside(_strip(f, before, t, created, record), aside, t.is_ours)
    if after == before:
        record.forget_original(str(f))  # what is there is the user's: no copy of it to go stale
        record.forget_keys(f)
        return False
    if not after and str(f) in ours:
        remove_made(f, record, ours)  # and the folder install made, left empty
    else:

        def users(original: dict[str, Any]) -> dict[str, Any]:
            hooks_out = hooks_set_aside(strip_hooks(original, created, t.is_ours), aside, t.is_ours)
            return original_servers(f, hooks_out, record) if t.mcp_in_json else hooks_out

        give_back_json(f, after, record, users)
    forget_server(f, record)
    record.forget_keys(f)  # nothing of ours is left in it: what is there now is the user's
    return True


# -- TOML: Codex's MCP server -------------------------------------------------------------------


def _codex_mcp_block() -> str:
    entry = _mcp_entry()
    args = ", ".join(json.dumps(a) for a in entry["args"])  # a JSON string is a TOML basic string
    return f"[mcp_servers.{MCP_SERVER}]\ncommand = {json.dumps(entry['command'])}\nargs = [{args}]"


def _with_toml_block(text: str, block: str | None) -> str:
    """`text` with our marked block replaced (or removed, for None), between TOML comment marks."""
    return with_section(text, block, TOML_START, TOML_END)


def _toml(f: Path, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise GitbusError(f"{f} is not valid TOML ({e}); fix it first, gitbus won't overwrite it.") from None


def _users_toml(f: Path) -> str:
    """The user's part of `f` (all but our block), checked: valid TOML, no server of our name."""
    users = _with_toml_block(text_of(f) or "", None)
    servers = _toml(f, users).get("mcp_servers")
    if isinstance(servers, dict) and MCP_SERVER in servers:
        raise GitbusError(f"{f} already defines an MCP server named {MCP_SERVER}; remove it first.")
    return users


def _put_toml_block(f: Path, block: str, record: Record) -> bool:
    """Our MCP server as a marked block at the end of `f` (a table of its own, so it cannot change
    the meaning of the user's keys). Refused if the user's part defines a server of our name."""
    if not f.parent.exists():
        record.add(folder(f.parent))
    text = text_of(f)
    new = _with_our_block(f, block)
    if text is None:
        record.add(str(f))
    if text is not None and TOML_START not in text:
        record.keep_original(str(f), text)
    return write_text(f, new)


def _with_our_block(f: Path, block: str) -> str:
    """The text of `f` with our block in place of any old one. Refused in one sentence when the
    user's part is not TOML, names our server, or cannot take our table: TOML lets no table header
    extend an inline `mcp_servers = { … }`, nor a `mcp_servers` that is not a table at all."""
    users = _users_toml(f)
    new = _with_toml_block(users, block)
    try:
        tomllib.loads(new)
    except tomllib.TOMLDecodeError:
        servers = tomllib.loads(users).get("mcp_servers")
        how = (
            "an inline table (mcp_servers = { … }), which no [table] may extend; write its servers as "
            "[mcp_servers.NAME] tables"
            if isinstance(servers, dict)
            else "not a table; fix it"
        )
        raise GitbusError(
            f"{f} is valid TOML, but its mcp_servers is {how}, so that gitbus can add its "
            f"[mcp_servers.{MCP_SERVER}] table (or add the server yourself: docs/agents.md)."
        ) from None
    return new


def _take_toml_block(f: Path, record: Record, ours: set[str]) -> bool:
    return take_marked(f, lambda text: _with_toml_block(text, None), record, ours)
