"""Codex CLI (`.codex/hooks.json`) on gitbus's hook contract.

Codex's payloads and answers are Claude Code's in all gitbus uses (`hookSpecificOutput` with
`additionalContext`, `permissionDecision: deny` with a reason), with three differences: files are
written by `apply_patch`, whose input is the whole patch (`tool_input.command`); the shell tool is
`Bash`, through which a model can also apply a patch (a heredoc to `apply_patch`), so a shell command
holding a patch is guarded by the paths in it; and Stop goes on with `decision: block` and a reason.
Codex has no asyncRewake: an idle session is not woken (docs/agents.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gitbus.agentcli import ClientMap, Out
from gitbus.agentcli.patch import BEGIN, written_paths

EVENTS = {
    "SessionStart": "SessionStart",
    "UserPromptSubmit": "UserPromptSubmit",
    "PreToolUse": "PreToolUse",
    "PostToolUse": "PostToolUse",
    "Stop": "Stop",
}


def edit_paths(tool: str, tool_input: Mapping[str, Any]) -> list[str]:
    command = tool_input.get("command")
    if not isinstance(command, str):
        return []
    if tool == "apply_patch" or (tool == "Bash" and BEGIN in command):
        return written_paths(command)
    return []


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
