"""Gemini CLI (`.gemini/settings.json` hooks) on gitbus's hook contract.

Gemini names its events differently (BeforeAgent, BeforeTool, AfterTool, AfterAgent) and refuses a
tool call with a top-level `decision: deny` and a reason. Text reaches the model from SessionStart,
BeforeAgent and AfterTool (`hookSpecificOutput.additionalContext`), not from BeforeTool: a guard
warning in `guard = warn` mode is not shown. AfterAgent with `decision: deny` runs the agent loop
again with the reason, which is how the Stop reminder is given; Gemini sets `stop_hook_active`
(true on the run a refusal started), which keeps the reminder from looping, as what it tells is
marked told would anyway. Files are written by
`write_file` and `replace` (`file_path`, relative to the session's folder or absolute); shell
commands are not read (docs/agents.md). No asyncRewake: an idle session is not woken.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gitbus.agentcli import ClientMap, Out, Writes

EVENTS = {
    "SessionStart": "SessionStart",
    "BeforeAgent": "UserPromptSubmit",
    "BeforeTool": "PreToolUse",
    "AfterTool": "PostToolUse",
    "AfterAgent": "Stop",
    "SessionEnd": "SessionEnd",
}
EDIT_TOOLS = ("write_file", "replace")


def edit_paths(tool: str, tool_input: Mapping[str, Any]) -> Writes:
    path = tool_input.get("file_path")
    return Writes([path] if tool in EDIT_TOOLS and isinstance(path, str) and path else [])


def context(event: str, text: str) -> Out:
    return {"hookSpecificOutput": {"hookEventName": event, "additionalContext": text}}


def deny(reason: str) -> Out:
    return {"decision": "deny", "reason": reason}


def carry_on(text: str) -> Out:
    return {"decision": "deny", "reason": text}


MAP = ClientMap("gemini", EVENTS, edit_paths, context, deny, carry_on)
