"""Codex CLI (`.codex/hooks.json`) on gitbus's hook contract.

Codex's payloads and answers are Claude Code's in all gitbus uses (`hookSpecificOutput` with
`additionalContext`, `permissionDecision: deny` with a reason), with three differences: files are
written by `apply_patch`, whose input is the whole patch (`tool_input.command`); the shell tool is
`Bash`, through which a model can also apply a patch (a heredoc to `apply_patch`), so a shell command
holding a patch is guarded by the paths in it; and Stop goes on with `decision: block` and a reason.
Codex has no asyncRewake: an idle session is not woken (docs/agents.md).

A shell command's patch applies in the folder the shell is in when `apply_patch` runs, which the
hook's `cwd` does not say when the command changes folder first. The two forms Codex itself takes
apart (`apply_patch <<'EOF' …` and `cd DIR && apply_patch <<'EOF' …`, each the whole command) are
read with that folder; any other command holding a patch with a relative path is refused, saying
why: the guard cannot tell where it writes, so it fails closed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from gitbus.agentcli import ClientMap, Out, Writes
from gitbus.agentcli.patch import BEGIN, written_paths

EVENTS = {
    "SessionStart": "SessionStart",
    "UserPromptSubmit": "UserPromptSubmit",
    "PreToolUse": "PreToolUse",
    "PostToolUse": "PostToolUse",
    "Stop": "Stop",
}
# `[cd DIR &&] apply_patch <<[-]'TAG'` on the command's first line; DIR a plain word or quoted
# without expansions (anything the shell would expand is a folder gitbus cannot know)
_SHELL_PATCH = re.compile(
    r"""\A\s*(?:cd[ \t]+(?P<dir>[\w./@+,:=%-]+|'[^'\n]*'|"[^"$`\\\n]*")[ \t]*&&[ \t]*)?"""
    r"""(?:apply_patch|applypatch)[ \t]*<<(?P<dash>-?)[ \t]*(?P<q>['"]?)(?P<tag>\w+)(?P=q)[ \t]*\n"""
)
UNKNOWN_FOLDER = (
    "gitbus cannot tell which folder this shell command applies its patch in, so the edit guard "
    "refuses it: use the apply_patch tool, or make the command only `apply_patch <<'EOF' … EOF` "
    "(after at most one `cd DIR &&`)."
)


def shell_patch_folder(command: str) -> str | None:
    """The folder a shell command's patch applies in, relative to the session's ("" for the
    session's own), or None when the command is not one of the forms whose folder is known."""
    m = _SHELL_PATCH.match(command)
    if m is None:
        return None
    tag, rest = m["tag"], command[m.end() :]
    lines = rest.split("\n")
    end = next((i for i, ln in enumerate(lines) if (ln.lstrip("\t") if m["dash"] else ln) == tag), None)
    if end is None or any(ln.strip() for ln in lines[end + 1 :]):
        return None  # more follows the patch: a second command could apply it somewhere else
    if not m["q"] and re.search(r"[$`\\]", "\n".join(lines[:end])):
        return None  # an unquoted heredoc expands its body: the paths are not what they read
    folder = m["dir"] or ""
    return folder[1:-1] if folder[:1] in ("'", '"') else folder


def edit_paths(tool: str, tool_input: Mapping[str, Any]) -> Writes:
    command = tool_input.get("command")
    if not isinstance(command, str):
        return Writes([])
    if tool == "apply_patch":
        return Writes(written_paths(command))
    if tool != "Bash" or BEGIN not in command:
        return Writes([])
    paths = written_paths(command)
    folder = shell_patch_folder(command)
    if folder is None:
        return Writes(paths, "" if all(os.path.isabs(p) for p in paths) else UNKNOWN_FOLDER)
    return Writes([os.path.join(folder, p) for p in paths])


def context(event: str, text: str) -> Out:
    return {"hookSpecificOutput": {"hookEventName": event, "additionalContext": text}}


def deny(reason: str) -> Out:
    return {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": reason,
        }
    }


def carry_on(text: str) -> Out:
    return {"decision": "block", "reason": text}


MAP = ClientMap("codex", EVENTS, edit_paths, context, deny, carry_on)
