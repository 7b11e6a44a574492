"""Agent clients other than Claude Code, each mapped onto gitbus's one hook contract.

`gitbus.hooks` speaks Claude Code's contract, and the bus logic behind it (what is new for a
session, the edit guard, the Stop reminder) is shared. Another client is a `ClientMap`, small and
declarative: which of its events plays which part, which of its tool calls write which files, and
how its output says "tell the model", "refuse this call" and "carry on with this". `answer` turns a
client's payload into the shared one, runs the shared handler, and turns the answer into the
client's shape. Nothing here loads the library: the nothing-new fast path stays as light as
Claude Code's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from gitbus import hook_guard, hook_session, hooks

Out = dict[str, Any]


class Writes(NamedTuple):
    """The files one tool call writes, relative to the session's folder or absolute; or why they
    cannot be told (the call is then refused: the guard fails closed)."""

    paths: list[str]
    unknown: str = ""


class ClientMap(NamedTuple):  # not a dataclass: importing dataclasses costs the hook ~15 ms
    """One client's hook contract, as gitbus uses it."""

    name: str
    # the client's event name -> the part it plays, named by the Claude Code event that plays it
    events: Mapping[str, str]
    # (tool name, tool input) -> the file paths the call writes, as the model wrote them
    edit_paths: Callable[[str, Mapping[str, Any]], Writes]
    context: Callable[[str, str], Out]  # (client event, text) -> text put in front of the model
    deny: Callable[[str], Out]  # reason -> the tool call refused, with the reason for the model
    carry_on: Callable[[str], Out]  # text -> the turn goes on with it (the Stop reminder)


class Said(NamedTuple):
    """What the shared handler answered: a refusal's reason, or text for the model."""

    deny: str
    context: str


def said(out: str) -> Said:
    if not out:
        return Said("", "")
    spec = json.loads(out).get("hookSpecificOutput") or {}
    if spec.get("permissionDecision") == "deny":
        return Said(str(spec.get("permissionDecisionReason") or "refused by gitbus"), "")
    return Said("", str(spec.get("additionalContext") or ""))


def answer(m: ClientMap, data: Mapping[str, Any], env: Mapping[str, str]) -> tuple[int, str]:
    """Answer one of `m`'s hook calls: (exit code, stdout)."""
    event = str(data.get("hook_event_name") or "")
    part = m.events.get(event)
    if part is None:
        return 0, ""
    shared = {**data, "hook_event_name": part}
    if part == "PreToolUse":
        return 0, _guard(m, event, shared, env)
    code, out = hooks.handle(shared, env)
    text = said(out).context
    if not text:
        return code, ""
    return code, json.dumps(m.carry_on(text) if part == "Stop" else m.context(event, text))


def _guard(m: ClientMap, event: str, data: Mapping[str, Any], env: Mapping[str, str]) -> str:
    """The edit guard over every file the call writes, in one check (`hook_guard.guard_writes`)."""
    tool_input = data.get("tool_input")
    writes = m.edit_paths(
        str(data.get("tool_name") or ""), tool_input if isinstance(tool_input, dict) else {}
    )
    if not (writes.paths or writes.unknown):
        return ""

    def judge() -> str:
        s = hook_session.session_of(data, env)
        if s is None:
            return ""
        cwd = str(s.cwd)  # the model's paths are relative to the session's folder
        return hook_guard.guard_writes(s, [os.path.join(cwd, raw) for raw in writes.paths], writes.unknown)

    got = said(hook_guard.fail_closed(judge))  # anything that stops the guard judging refuses the call
    if got.deny:
        return json.dumps(m.deny(got.deny))
    return json.dumps(m.context(event, got.context)) if got.context else ""


def client_map(name: str) -> ClientMap | None:
    if name == "codex":
        from gitbus.agentcli import codex

        return codex.MAP
    if name == "gemini":
        from gitbus.agentcli import gemini

        return gemini.MAP
    return None


CLIENTS = ("codex", "gemini")
