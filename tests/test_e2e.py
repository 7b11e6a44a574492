"""One end-to-end scenario: three agents in three worktrees, each seen only through its hooks.

gitbus is installed into Claude Code the way a user would (`gitbus install claude`); every hook call
then runs the exact command written into `.claude/settings.local.json`, with Claude Code's JSON on
stdin, in a fresh process. The agents post with the CLI, as a model would through its Bash tool.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from gitbus.cli import app


def gb(wt: Path, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, ["-C", str(wt), *args], env={"COLUMNS": "200"})
    return r.exit_code, r.stdout, r.stderr


class Claude:
    """One Claude Code session in one worktree, running the hooks that `gitbus install claude` wrote."""

    def __init__(self, settings: Path, worktree: Path, session: str) -> None:
        self.hooks: dict[str, Any] = json.loads(settings.read_text())["hooks"]
        self.worktree, self.session = worktree, session

    def _run(self, event: str, tool_name: str | None = None, **fields: Any) -> dict[str, Any]:
        """Run every command hook registered for `event` (and matching `tool_name`); merge their output."""
        said: dict[str, Any] = {}
        for group in self.hooks.get(event, []):
            matcher = group.get("matcher", "")
            if tool_name is not None and matcher not in ("", "*") and not re.fullmatch(matcher, tool_name):
                continue
            for hook in group["hooks"]:
                if hook.get("asyncRewake"):
                    continue  # runs in the background in Claude Code; tested in test_hooks.py
                data = {
                    "session_id": self.session,
                    "transcript_path": f"/tmp/claude/{self.session}.jsonl",
                    "cwd": str(self.worktree),
                    "hook_event_name": event,
                    **({"tool_name": tool_name} if tool_name else {}),
                    **fields,
                }
                p = subprocess.run(
                    ["/bin/sh", "-c", hook["command"]],
                    input=json.dumps(data),
                    capture_output=True,
                    text=True,
                    cwd=self.worktree,
                    env={**os.environ, "PATH": "/usr/bin:/bin"},
                    timeout=hook.get("timeout", 60),
                )
                assert (p.returncode, p.stderr) == (0, ""), p.stderr
                if p.stdout.strip():
                    out = json.loads(p.stdout)["hookSpecificOutput"]
                    assert out["hookEventName"] == event
                    said.update(out)
        return said

    def starts(self) -> str:
        return str(self._run("SessionStart", source="startup").get("additionalContext", ""))

    def runs_bash(self, command: str) -> str:
        out = self._run(
            "PostToolUse",
            "Bash",
            tool_input={"command": command},
            tool_response={"stdout": "", "stderr": "", "interrupted": False},
        )
        return str(out.get("additionalContext", ""))

    def wants_to_edit(self, rel: str) -> dict[str, Any]:
        file = str(self.worktree / rel)
        return self._run(
            "PreToolUse", "Edit", tool_input={"file_path": file, "old_string": "a", "new_string": "b"}
        )

    def stops(self) -> str:
        return str(self._run("Stop", stop_hook_active=False).get("additionalContext", ""))


def test_three_agents_coordinate_only_through_their_hooks(worktrees: list[Path]) -> None:
    main, wt_b, wt_c = worktrees
    for wt, name in zip(worktrees, ("api-1", "web-1", "db-1"), strict=True):
        assert gb(wt, "join", "--name", name)[0] == 0
    assert gb(wt_b, "install", "claude")[0] == 0
    settings = main / ".claude" / "settings.local.json"
    a, b, c = (Claude(settings, wt, f"session-{wt.name}") for wt in worktrees)
    for claude in (a, b, c):
        assert "you are agent" in claude.starts()

    # A discovery by api-1 reaches web-1 and db-1 exactly once, and never api-1 itself.
    code, out, _ = gb(
        main, "discover", "the db config is config/db.yaml", "--path", "config/db.yaml", "--json"
    )
    found = json.loads(out)["id"][:8]
    seen = {name: [claude.runs_bash("ls") for _ in range(3)] for name, claude in (("b", b), ("c", c))}
    for name, texts in seen.items():
        assert "\n".join(texts).count(f"[{found}]") == 1, name
        assert 'api-1 reported on config/db.yaml: "the db config is config/db.yaml"' in texts[0]
    assert a.runs_bash("ls") == ""

    # api-1's claim makes web-1's edit there denied, naming the holder; elsewhere edits are free.
    assert gb(main, "claim", "internal/api/", "--reason", "splitting handlers")[0] == 0
    denied = b.wants_to_edit("internal/api/handler.go")
    assert denied["permissionDecision"] == "deny"
    assert "api-1 holds internal/api/" in denied["permissionDecisionReason"]
    assert "gitbus ask --to api-1" in denied["permissionDecisionReason"]
    assert b.wants_to_edit("internal/apis/x.go") == {}
    assert a.wants_to_edit("internal/api/handler.go") == {}
    assert "api-1 claimed internal/api/" in b.runs_bash("git status")

    # db-1 asks api-1; api-1 is told, answers; the answer reaches db-1.
    code, out, _ = gb(wt_c, "ask", "where are migrations run?", "--to", "api-1", "--json")
    assert code == 0
    question = json.loads(out)["id"][:8]
    told_a = a.runs_bash("make test")
    assert f'db-1 asked you: "where are migrations run?" [{question}' in told_a
    assert f"[{question}" not in b.runs_bash("ls")
    assert gb(main, "answer", question, "in db/migrate.go, at start-up")[0] == 0
    told_c = c.runs_bash("ls")
    assert f'api-1 answered question {question}: "in db/migrate.go, at start-up"' in told_c
    assert c.stops() == "" and a.stops() == ""
    assert all(claude.runs_bash("ls") == "" for claude in (a, b, c))
