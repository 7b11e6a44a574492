"""`gitbus hook codex|gemini`: each client's payloads answered in its own output shape.

The payloads are as Codex CLI 0.169.0 and Gemini CLI 0.61.0 send them (the fields gitbus reads);
tests/test_codex.py and tests/test_gemini.py run the real clients.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gitbus import agentcli, settings
from gitbus.agentcli.patch import written_paths
from gitbus.bus import Bus
from gitbus.hook_guard import GUARD_PATHS_MAX

AGENTS = ("api-1", "web-1")


@pytest.fixture
def agents(worktrees: list[Path]) -> list[Bus]:
    buses = []
    for wt, name in zip(worktrees, AGENTS, strict=False):
        bus = Bus.open(wt)
        bus.join(name)
        buses.append(bus)
    return buses


def hook(client: str, cwd: Path, event: str, session: str = "s1", **fields: Any) -> dict[str, Any]:
    """One hook call as the client makes it, in-process; its stdout as JSON ({} for silence)."""
    m = agentcli.client_map(client)
    assert m is not None
    data = {
        "session_id": session,
        "transcript_path": "/tmp/t.jsonl",
        "cwd": str(cwd),
        "hook_event_name": event,
    }
    code, out = agentcli.answer(m, {**data, **fields}, {})
    assert code == 0
    return json.loads(out) if out else {}


def context(out: dict[str, Any]) -> str:
    return str((out.get("hookSpecificOutput") or {}).get("additionalContext") or "")


PATCH = """*** Begin Patch
*** Add File: internal/api/routes.go
+package api
*** Update File: README.md
*** Move to: docs/README.md
@@
-x
+y
*** Delete File: old.txt
*** End Patch
"""


def test_a_patch_names_every_file_it_adds_changes_moves_or_deletes() -> None:
    assert written_paths(PATCH) == ["internal/api/routes.go", "README.md", "docs/README.md", "old.txt"]
    assert written_paths("*** Begin Patch\n*** End Patch\n") == []


def test_a_patch_header_is_read_however_it_is_indented() -> None:
    """Codex trims each hunk's header line (tabs, spaces, a CR) before it reads it."""
    patch = (
        "*** Begin Patch\n  *** Add File: a.go\n+x\n\t*** Delete File: b.go\r\n"
        " \t*** Update File: c.go\n@@\n-x\n+y\n*** End Patch\n"
    )
    assert written_paths(patch) == ["a.go", "b.go", "c.go"]


def test_codex_apply_patch_into_a_claim_is_denied_naming_the_holder(agents: list[Bus]) -> None:
    api, web = agents
    api.claim(["internal/api/"], reason="splitting handlers")
    out = hook("codex", web.repo.root, "PreToolUse", tool_name="apply_patch", tool_input={"command": PATCH})
    spec = out["hookSpecificOutput"]
    assert spec["permissionDecision"] == "deny", out
    assert "api-1 holds internal/api/" in spec["permissionDecisionReason"], out


def test_codex_patch_paths_are_read_from_the_sessions_folder(agents: list[Bus]) -> None:
    api, web = agents
    api.claim(["internal/api/"], reason="splitting handlers")
    patch = "*** Begin Patch\n*** Add File: routes.go\n+package api\n*** End Patch\n"
    inside = web.repo.root / "internal" / "api"
    out = hook("codex", inside, "PreToolUse", tool_name="apply_patch", tool_input={"command": patch})
    assert out["hookSpecificOutput"]["permissionDecision"] == "deny", out


def test_codex_shell_commands_are_guarded_only_when_they_carry_a_patch(agents: list[Bus]) -> None:
    api, web = agents
    api.claim(["internal/api/"])
    heredoc = {"command": f"apply_patch <<'EOF'\n{PATCH}EOF"}
    assert hook("codex", web.repo.root, "PreToolUse", tool_name="Bash", tool_input=heredoc)
    plain = {"command": "echo x > internal/api/handler.go"}  # not read: the commit guard's job
    assert hook("codex", web.repo.root, "PreToolUse", tool_name="Bash", tool_input=plain) == {}


def test_gemini_write_into_a_claim_is_denied_in_geminis_shape(agents: list[Bus]) -> None:
    api, web = agents
    api.claim(["internal/api/"], reason="splitting handlers")
    for tool in ("write_file", "replace"):
        tool_input = {"file_path": "internal/api/handler.go", "content": "x"}
        out = hook("gemini", web.repo.root, "BeforeTool", tool_name=tool, tool_input=tool_input)
        assert out["decision"] == "deny" and "api-1 holds internal/api/" in out["reason"], out
    read = hook("gemini", web.repo.root, "BeforeTool", tool_name="read_file", tool_input={"file_path": "x"})
    assert read == {}


def test_news_is_told_once_per_session_in_each_clients_shape(agents: list[Bus]) -> None:
    api, web = agents
    for client, start, after_tool in (
        ("codex", "SessionStart", "PostToolUse"),
        ("gemini", "SessionStart", "AfterTool"),
    ):
        session = f"{client}-1"
        assert "you are agent web-1" in context(hook(client, web.repo.root, start, session, source="startup"))
        api.discover(f"news for {client}")
        told = hook(client, web.repo.root, after_tool, session, tool_name="x", tool_input={})
        assert told["hookSpecificOutput"]["hookEventName"] == after_tool
        assert f'api-1 reported: "news for {client}"' in context(told)
        assert hook(client, web.repo.root, after_tool, session, tool_name="x", tool_input={}) == {}  # once


def test_the_stop_reminder_goes_on_with_the_turn_in_each_clients_shape(agents: list[Bus]) -> None:
    api, web = agents
    for client, stop in (("codex", "Stop"), ("gemini", "AfterAgent")):
        session = f"{client}-1"
        hook(client, web.repo.root, "SessionStart", session, source="startup")
        api.ask(f"question for {client}?", to="web-1")
        out = hook(client, web.repo.root, stop, session, stop_hook_active=False)
        assert set(out) == {"decision", "reason"} and f"question for {client}?" in out["reason"], out
        assert hook(client, web.repo.root, stop, session, stop_hook_active=False) == {}  # no loop


def test_events_gitbus_does_not_use_are_silence(agents: list[Bus]) -> None:
    _, web = agents
    assert hook("gemini", web.repo.root, "PreCompress") == {}
    assert hook("codex", web.repo.root, "PermissionRequest") == {}


def test_the_hook_entry_point_takes_the_client_and_refuses_unknown_ones(agents: list[Bus]) -> None:
    _, web = agents
    data = {
        "session_id": "p",
        "cwd": str(web.repo.root),
        "hook_event_name": "SessionStart",
        "source": "startup",
    }
    r = subprocess.run(
        [sys.executable, "-m", "gitbus", "hook", "gemini"],
        input=json.dumps(data),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "you are agent web-1" in context(json.loads(r.stdout)), r.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "gitbus", "hook", "cursor"],
        input="{}",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 2 and "codex|gemini" in bad.stderr, bad.stderr


@pytest.mark.parametrize(
    "command",
    [
        "cd internal && apply_patch <<'EOF'\n{p}EOF\n",
        'cd "internal" && applypatch <<"EOF"\n{p}EOF',
        "  cd 'internal'&&apply_patch <<-EOF\n{p}\tEOF\n",
    ],
)
def test_codex_a_shell_patch_after_cd_is_read_from_that_folder(agents: list[Bus], command: str) -> None:
    api, web = agents
    api.claim(["internal/api/"], reason="splitting handlers")
    patch = "*** Begin Patch\n*** Add File: api/cd.go\n+package api\n*** End Patch\n"
    out = hook(
        "codex",
        web.repo.root,
        "PreToolUse",
        tool_name="Bash",
        tool_input={"command": command.format(p=patch)},
    )
    spec = out["hookSpecificOutput"]
    assert (
        spec["permissionDecision"] == "deny"
        and "api-1 holds internal/api/" in spec["permissionDecisionReason"]
    ), out


@pytest.mark.parametrize(
    "command",
    [
        "cd internal; apply_patch <<'EOF'\n{p}EOF\n",  # cd may fail, and the patch applies here
        "cd internal\napply_patch <<'EOF'\n{p}EOF\n",
        "pushd internal && apply_patch <<'EOF'\n{p}EOF\n",
        "cd $DIR && apply_patch <<'EOF'\n{p}EOF\n",
        "apply_patch <<'EOF'\n{p}EOF\ncd internal && apply_patch <<'EOF'\n{p}EOF\n",
        "apply_patch <<EOF\n{p}$(true)\nEOF\n",  # an unquoted heredoc expands what it holds
        "bash -c \"cd internal && apply_patch <<'EOF'\n{p}EOF\"",
    ],
)
def test_codex_a_shell_patch_whose_folder_cannot_be_told_is_refused_saying_why(
    agents: list[Bus], command: str
) -> None:
    _, web = agents  # no claim at all: the guard cannot know where the patch lands
    patch = "*** Begin Patch\n*** Add File: api/x.go\n+package api\n*** End Patch\n"
    out = hook(
        "codex",
        web.repo.root,
        "PreToolUse",
        tool_name="Bash",
        tool_input={"command": command.format(p=patch)},
    )
    spec = out["hookSpecificOutput"]
    assert (
        spec["permissionDecision"] == "deny"
        and "cannot tell which folder" in spec["permissionDecisionReason"]
    ), out
    absolute = "*** Begin Patch\n*** Add File: " + str(web.repo.root / "notes.txt") + "\n+x\n*** End Patch\n"
    assert (
        hook(
            "codex",
            web.repo.root,
            "PreToolUse",
            tool_name="Bash",
            tool_input={"command": command.format(p=absolute)},
        )
        == {}
    )


def test_a_refused_patch_claims_none_of_its_other_files(agents: list[Bus]) -> None:
    api, web = agents
    api.claim(["internal/api/"], reason="splitting handlers")
    settings.save(web.repo.common_dir, "autoclaim", True)
    patch = (
        "*** Begin Patch\n*** Add File: src/first.go\n+x\n*** Add File: internal/api/routes.go\n+x\n"
        "*** Add File: src/last.go\n+x\n*** End Patch\n"
    )
    out = hook("codex", web.repo.root, "PreToolUse", tool_name="apply_patch", tool_input={"command": patch})
    assert out["hookSpecificOutput"]["permissionDecision"] == "deny", out
    assert [(c.owner, c.path) for c in web.claims()] == [("api-1", "internal/api/")]
    allowed = patch.replace("internal/api/routes.go", "src/middle.go")
    assert (
        hook("codex", web.repo.root, "PreToolUse", tool_name="apply_patch", tool_input={"command": allowed})
        == {}
    )
    mine = sorted(c.path for c in web.claims() if c.owner == "web-1")
    assert mine == ["src/first.go", "src/last.go", "src/middle.go"]
    assert len(web.log(kinds=["claim"])) == 2  # api-1's, and web-1's three files in one claim


def test_a_patch_of_more_files_than_the_guard_checks_is_refused_in_one_line(agents: list[Bus]) -> None:
    _, web = agents
    many = GUARD_PATHS_MAX + 1
    patch = "*** Begin Patch\n" + "".join(f"*** Add File: gen/f{i}.go\n+x\n" for i in range(many))
    out = hook("codex", web.repo.root, "PreToolUse", tool_name="apply_patch", tool_input={"command": patch})
    reason = out["hookSpecificOutput"]["permissionDecisionReason"]
    assert out["hookSpecificOutput"]["permissionDecision"] == "deny" and "\n" not in reason, out
    assert f"{many} files" in reason and str(GUARD_PATHS_MAX) in reason, reason
    fits = "*** Begin Patch\n" + "".join(f"*** Add File: gen/f{i}.go\n+x\n" for i in range(GUARD_PATHS_MAX))
    assert (
        hook("codex", web.repo.root, "PreToolUse", tool_name="apply_patch", tool_input={"command": fits})
        == {}
    )


@pytest.mark.parametrize("name", ["src/\udc80.go", "internal/api/\udc80.go", "internal/api/x\0.go"])
def test_codex_a_patch_path_the_guard_cannot_judge_is_refused_in_one_line(
    agents: list[Bus], name: str
) -> None:
    api, web = agents
    api.claim(["internal/api/"], reason="splitting handlers")
    patch = f"*** Begin Patch\n*** Add File: {name}\n+x\n*** End Patch\n"
    out = hook("codex", web.repo.root, "PreToolUse", tool_name="apply_patch", tool_input={"command": patch})
    reason = out["hookSpecificOutput"]["permissionDecisionReason"]
    assert out["hookSpecificOutput"]["permissionDecision"] == "deny" and "\n" not in reason
    assert "cannot judge" in reason
