"""`gitbus install claude` / `uninstall claude`: hooks merged into Claude Code's settings, reversibly."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gitbus.cli import app
from gitbus.git import Repository
from gitbus.install_files import MARK_END, MARK_START, gitbus_command
from gitbus.install_record import Record

from .conftest import git, make_repo
from .test_git import odd_worktrees

EVENTS = {"SessionStart", "UserPromptSubmit", "PostToolUse", "PreToolUse", "Stop", "SessionEnd"}
USER_SETTINGS: dict[str, Any] = {
    "model": "opus",
    "permissions": {"allow": ["Bash(make test)"], "deny": ["Read(./.env)"]},
    "env": {"FOO": "bar"},
    "hooks": {
        "PostToolUse": [
            {"matcher": "Write|Edit", "hooks": [{"type": "command", "command": "./scripts/format.sh"}]}
        ],
        "Stop": [{"hooks": [{"type": "command", "command": "notify-send done", "timeout": 5}]}],
        "Notification": [{"hooks": [{"type": "command", "command": "say hello"}]}],
    },
}


def gb(wt: Path, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, ["-C", str(wt), *args], env={"COLUMNS": "200"})
    return r.exit_code, r.stdout, r.stderr


def local_settings(worktrees: list[Path]) -> Path:
    return worktrees[0] / ".claude" / "settings.local.json"


def read(f: Path) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(f.read_text())
    return obj


def commands(settings: dict[str, Any]) -> dict[str, list[str]]:
    """Every hook command per event."""
    return {
        event: [h["command"] for group in groups for h in group["hooks"]]
        for event, groups in settings.get("hooks", {}).items()
    }


def ours(settings: dict[str, Any]) -> dict[str, list[str]]:
    """The hook commands that run gitbus, per event."""
    found = {
        e: [c for c in cs if c.endswith((" hook", " hook wake"))] for e, cs in commands(settings).items()
    }
    return {e: cs for e, cs in found.items() if cs}


def test_install_claude_writes_every_hook_into_the_main_checkouts_local_settings(
    worktrees: list[Path],
) -> None:
    code, out, _ = gb(worktrees[0], "install", "claude")
    assert code == 0 and str(local_settings(worktrees)) in out
    settings = read(local_settings(worktrees))
    assert set(ours(settings)) == EVENTS
    assert all(len(cs) == 1 for e, cs in ours(settings).items() if e != "Stop")
    [pre] = settings["hooks"]["PreToolUse"]
    assert set(pre["matcher"].split("|")) == {"Write", "Edit", "MultiEdit", "NotebookEdit"}
    [stop] = settings["hooks"]["Stop"]
    wake = [h for h in stop["hooks"] if h["command"].endswith(" hook wake")]
    assert wake and wake[0]["asyncRewake"] is True
    assert not (worktrees[0] / ".claude" / "settings.json").exists()


def test_install_claude_approves_its_mcp_server_and_uninstall_takes_the_approval_back(
    worktrees: list[Path],
) -> None:
    gb(worktrees[0], "install", "claude")
    assert read(local_settings(worktrees))["enabledMcpjsonServers"] == ["gitbus"]
    gb(worktrees[0], "uninstall", "claude")
    assert not local_settings(worktrees).exists()


def test_install_adds_its_mcp_approval_beside_the_users_and_uninstall_leaves_theirs(
    worktrees: list[Path],
) -> None:
    mine = {**USER_SETTINGS, "enabledMcpjsonServers": ["github"]}
    local_settings(worktrees).parent.mkdir()
    local_settings(worktrees).write_text(json.dumps(mine, indent=2) + "\n")
    gb(worktrees[0], "install", "claude")
    assert read(local_settings(worktrees))["enabledMcpjsonServers"] == ["github", "gitbus"]
    gb(worktrees[0], "install", "claude")
    assert read(local_settings(worktrees))["enabledMcpjsonServers"] == ["github", "gitbus"]
    gb(worktrees[0], "uninstall", "claude")
    assert read(local_settings(worktrees)) == mine


def test_an_approval_the_user_gave_gitbus_survives_uninstall(worktrees: list[Path]) -> None:
    mine = {"enabledMcpjsonServers": ["gitbus"]}
    local_settings(worktrees).parent.mkdir()
    local_settings(worktrees).write_text(json.dumps(mine))
    gb(worktrees[0], "install", "claude")
    gb(worktrees[0], "uninstall", "claude")
    assert read(local_settings(worktrees)) == mine


def test_an_approval_given_by_hand_after_an_uninstall_survives_the_next_uninstall(
    worktrees: list[Path],
) -> None:
    local_settings(worktrees).parent.mkdir()
    local_settings(worktrees).write_text(json.dumps({"model": "opus"}))
    gb(worktrees[0], "install", "claude")
    gb(worktrees[0], "uninstall", "claude")
    approved = {"model": "opus", "enabledMcpjsonServers": ["gitbus"]}  # as Claude Code's dialog writes it
    local_settings(worktrees).write_text(json.dumps(approved))
    gb(worktrees[0], "install", "claude")
    gb(worktrees[0], "uninstall", "claude")
    assert read(local_settings(worktrees)) == approved


def test_the_installed_hook_command_runs_without_gitbus_on_the_path(worktrees: list[Path]) -> None:
    gb(worktrees[1], "join", "--name", "web-1")
    gb(worktrees[0], "install", "claude")
    [command] = ours(read(local_settings(worktrees)))["SessionStart"]
    hook_input = {
        "session_id": "s1",
        "transcript_path": "/tmp/t.jsonl",
        "cwd": str(worktrees[1]),
        "hook_event_name": "SessionStart",
        "source": "startup",
    }
    p = subprocess.run(
        ["/bin/sh", "-c", command],
        input=json.dumps(hook_input),
        capture_output=True,
        text=True,
        cwd=worktrees[0],
        env={**os.environ, "PATH": "/usr/bin:/bin"},
        timeout=30,
    )
    assert p.returncode == 0, p.stderr
    assert "you are agent web-1" in json.loads(p.stdout)["hookSpecificOutput"]["additionalContext"]


def test_install_claude_twice_leaves_the_same_files(worktrees: list[Path]) -> None:
    local_settings(worktrees).parent.mkdir()
    local_settings(worktrees).write_text(json.dumps(USER_SETTINGS))
    gb(worktrees[0], "install", "claude")
    first = [f.read_bytes() for f in (local_settings(worktrees), *(w / "CLAUDE.local.md" for w in worktrees))]
    assert gb(worktrees[1], "install", "claude")[0] == 0
    again = [f.read_bytes() for f in (local_settings(worktrees), *(w / "CLAUDE.local.md" for w in worktrees))]
    assert again == first


def test_install_merges_with_the_users_settings_and_never_touches_them(worktrees: list[Path]) -> None:
    local_settings(worktrees).parent.mkdir()
    local_settings(worktrees).write_text(json.dumps(USER_SETTINGS, indent=4))
    gb(worktrees[0], "install", "claude")
    settings = read(local_settings(worktrees))
    for key in ("model", "permissions", "env"):
        assert settings[key] == USER_SETTINGS[key]
    for event, groups in USER_SETTINGS["hooks"].items():
        assert [g for g in settings["hooks"][event] if g in groups] == groups
    assert set(ours(settings)) == EVENTS


def test_uninstall_gives_back_the_users_settings_exactly(worktrees: list[Path]) -> None:
    local_settings(worktrees).parent.mkdir()
    local_settings(worktrees).write_text(json.dumps(USER_SETTINGS))
    gb(worktrees[0], "install", "claude")
    gb(worktrees[0], "install", "claude")
    code, out, _ = gb(worktrees[2], "uninstall", "claude")
    assert code == 0 and "cleaned" in out
    assert read(local_settings(worktrees)) == USER_SETTINGS


def test_uninstall_takes_out_of_info_exclude_only_the_lines_install_put_there(worktrees: list[Path]) -> None:
    exclude = worktrees[0] / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    exclude.write_text("# mine\n/.mcp.json\n*.swp\n")  # the user ignores their own .mcp.json already
    gb(worktrees[0], "install", "claude")
    lines = exclude.read_text().splitlines()
    assert {"/.claude/settings.local.json", "/CLAUDE.local.md", "/.mcp.json", "*.swp"} <= set(lines)
    gb(worktrees[1], "uninstall", "claude")
    left = exclude.read_text().splitlines()
    assert "/.claude/settings.local.json" not in left and "/CLAUDE.local.md" not in left
    assert [x for x in left if x != "/.gitbus/"] == ["# mine", "/.mcp.json", "*.swp"]


@pytest.mark.parametrize(
    "existing",
    [{}, {"hooks": {}}, {"model": "opus", "hooks": {"PostToolUse": []}}],
    ids=["an-empty-object", "an-empty-hooks-object", "an-empty-event-list"],
)
def test_uninstall_gives_back_a_users_nearly_empty_settings_file_exactly(
    worktrees: list[Path], existing: dict[str, Any]
) -> None:
    local_settings(worktrees).parent.mkdir()
    local_settings(worktrees).write_text(json.dumps(existing))
    gb(worktrees[0], "install", "claude")
    gb(worktrees[0], "uninstall", "claude")
    assert local_settings(worktrees).exists(), "uninstall deleted a settings file the user had"
    assert read(local_settings(worktrees)) == existing


def test_uninstall_removes_a_settings_file_that_install_created(worktrees: list[Path]) -> None:
    gb(worktrees[0], "install", "claude")
    gb(worktrees[0], "uninstall", "claude")
    assert not local_settings(worktrees).exists()
    assert not (worktrees[0] / ".claude").exists(), "an empty .claude/ that install made was left"
    assert not any((w / "CLAUDE.local.md").exists() for w in worktrees)
    assert gb(worktrees[0], "uninstall", "claude")[1].strip() == "nothing to remove"


def test_uninstall_keeps_a_claude_folder_the_user_had_or_filled(worktrees: list[Path]) -> None:
    claude = worktrees[0] / ".claude"
    claude.mkdir()
    gb(worktrees[0], "install", "claude")
    gb(worktrees[0], "uninstall", "claude")
    assert claude.is_dir() and list(claude.iterdir()) == []  # the user's (empty) folder stays
    claude.rmdir()
    gb(worktrees[0], "install", "claude")
    (claude / "agents.md").write_text("mine\n")
    gb(worktrees[0], "uninstall", "claude")
    assert [p.name for p in claude.iterdir()] == ["agents.md"]


def test_a_file_made_after_uninstall_is_the_users_not_gitbuss(worktrees: list[Path]) -> None:
    gb(worktrees[0], "install", "claude")
    gb(worktrees[0], "uninstall", "claude")
    local_settings(worktrees).parent.mkdir()
    local_settings(worktrees).write_text('{"hooks": {}}')
    gb(worktrees[0], "install", "claude")
    gb(worktrees[0], "uninstall", "claude")
    assert read(local_settings(worktrees)) == {"hooks": {}}


def test_every_worktree_gets_a_marked_section_in_claude_local_md(worktrees: list[Path]) -> None:
    gb(worktrees[0], "install", "claude")
    for wt in worktrees:
        text = (wt / "CLAUDE.local.md").read_text()
        assert text.startswith(MARK_START + "\n") and text.endswith(MARK_END + "\n")
        assert "gitbus claim" in text and "gitbus ask" in text


def test_user_text_around_the_section_is_kept(worktrees: list[Path]) -> None:
    memo = worktrees[1] / "CLAUDE.local.md"
    memo.write_text("# My notes\n\nUse tabs.\n")
    gb(worktrees[0], "install", "claude")
    memo.write_text(memo.read_text() + "\nAdded after the section.\n")
    gb(worktrees[0], "install", "claude")
    text = memo.read_text()
    assert text.startswith("# My notes\n\nUse tabs.\n") and "Added after the section.\n" in text
    assert text.count(MARK_START) == 1 and text.count(MARK_END) == 1
    gb(worktrees[0], "uninstall", "claude")
    assert MARK_START not in memo.read_text()
    assert "# My notes\n\nUse tabs.\n" in memo.read_text() and "Added after the section." in memo.read_text()


def test_uninstall_gives_back_the_users_claude_local_md_byte_for_byte(worktrees: list[Path]) -> None:
    memo = worktrees[1] / "CLAUDE.local.md"
    memo.write_text("# My notes\n\nUse tabs.\n")
    gb(worktrees[0], "install", "claude")
    gb(worktrees[0], "uninstall", "claude")
    assert memo.read_text() == "# My notes\n\nUse tabs.\n"


def test_install_shared_writes_settings_json_and_claude_md_in_this_worktree(worktrees: list[Path]) -> None:
    here = worktrees[1]
    code, _, _ = gb(here, "install", "claude", "--shared")
    assert code == 0
    assert set(ours(read(here / ".claude" / "settings.json"))) == EVENTS
    assert MARK_START in (here / "CLAUDE.md").read_text()
    assert not local_settings(worktrees).exists()
    assert not (worktrees[0] / ".claude" / "settings.json").exists()
    assert not any((w / "CLAUDE.local.md").exists() for w in worktrees)
    gb(here, "uninstall", "claude", "--shared")
    assert not (here / ".claude" / "settings.json").exists() and not (here / "CLAUDE.md").exists()


def test_install_from_a_secondary_worktree_writes_to_the_main_checkout(worktrees: list[Path]) -> None:
    assert gb(worktrees[2], "install", "claude")[0] == 0
    assert set(ours(read(local_settings(worktrees)))) == EVENTS
    assert not (worktrees[2] / ".claude").exists()
    assert all(MARK_START in (w / "CLAUDE.local.md").read_text() for w in worktrees)


def test_a_personal_install_leaves_git_status_clean_in_every_worktree(worktrees: list[Path]) -> None:
    gb(worktrees[1], "install", "claude")
    for wt in worktrees:
        assert git(wt, "status", "--porcelain", "--untracked-files=all") == "", wt


def test_settings_that_are_not_json_are_refused_in_one_line_and_left_alone(worktrees: list[Path]) -> None:
    f = local_settings(worktrees)
    f.parent.mkdir()
    f.write_bytes(b'{"model": "opus",,}\n')
    code, out, err = gb(worktrees[0], "install", "claude")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("gitbus: ") and "not valid JSON" in err
    assert f.read_bytes() == b'{"model": "opus",,}\n'
    assert not any((w / "CLAUDE.local.md").exists() for w in worktrees)
    assert gb(worktrees[0], "uninstall", "claude")[0] == 1
    assert f.read_bytes() == b'{"model": "opus",,}\n'


def test_install_refuses_a_target_it_does_not_know_as_a_usage_error(worktrees: list[Path]) -> None:
    code, _, err = gb(worktrees[0], "install", "vscode")
    assert code == 2 and "'vscode' is not one of 'claude', 'codex', 'gemini', 'git-hooks'" in err


# -- which gitbus the hooks run ------------------------------------------------------------------------

VENV_BIN = Path(sys.executable).parent


def another_gitbus_first_on_path(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH finds some other `gitbus` before this one."""
    other = tmp_path / "other-bin"
    other.mkdir()
    (other / "gitbus").write_text("#!/bin/sh\necho 'the wrong gitbus' >&2\nexit 1\n")
    (other / "gitbus").chmod(0o755)
    return {**os.environ, "PATH": f"{other}{os.pathsep}{VENV_BIN}{os.pathsep}/usr/bin:/bin", "COLUMNS": "200"}


def installed_commands(worktrees: list[Path]) -> set[str]:
    """Every command install wired in: the hooks, and the MCP server of each worktree."""
    found = {c for cs in ours(read(local_settings(worktrees))).values() for c in cs}
    for wt in worktrees:
        entry = read(wt / ".mcp.json")["mcpServers"]["gitbus"]
        found.add(shlex.join([entry["command"], *entry["args"]]))
    return found


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        ([str(VENV_BIN / "gitbus")], shlex.quote(str(VENV_BIN / "gitbus"))),
        ([sys.executable, "-m", "gitbus"], f"{shlex.quote(sys.executable)} -m gitbus"),
    ],
    ids=["the-console-script", "python-m-gitbus"],
)
def test_the_hooks_and_the_mcp_server_run_the_gitbus_that_ran_install(
    worktrees: list[Path], tmp_path: Path, argv: list[str], named: str
) -> None:
    env = another_gitbus_first_on_path(tmp_path)
    p = subprocess.run(
        [*argv, "install", "claude"], cwd=worktrees[1], env=env, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
    commands = installed_commands(worktrees)
    assert commands and all(c.startswith(named + " ") for c in commands), commands


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        ([str(VENV_BIN / "gitbus")], shlex.quote(str(VENV_BIN / "gitbus"))),
        ([sys.executable, "-m", "gitbus"], f"{shlex.quote(sys.executable)} -m gitbus"),
    ],
    ids=["the-console-script", "python-m-gitbus"],
)
def test_the_instructions_name_the_gitbus_that_ran_install_when_path_finds_another(
    worktrees: list[Path], tmp_path: Path, argv: list[str], named: str
) -> None:
    env = another_gitbus_first_on_path(tmp_path)
    p = subprocess.run(
        [*argv, "install", "claude"], cwd=worktrees[1], env=env, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
    for wt in worktrees:
        text = (wt / "CLAUDE.local.md").read_text()
        assert f"`{named} claim " in text and f"`{named} status`" in text
        assert "`gitbus " not in text, text


def test_the_instructions_say_plain_gitbus_when_path_finds_the_one_that_ran_install(
    worktrees: list[Path],
) -> None:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}/usr/bin:/bin"}
    p = subprocess.run(
        [str(VENV_BIN / "gitbus"), "install", "claude"],
        cwd=worktrees[0],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert "`gitbus claim " in (worktrees[0] / "CLAUDE.local.md").read_text()


def test_a_second_install_changes_nothing_and_says_so_in_one_line(worktrees: list[Path]) -> None:
    first = gb(worktrees[0], "install", "claude")[1]
    assert first.count("wrote ") == 1 + len(worktrees) * 2, first
    code, out, err = gb(worktrees[1], "install", "claude")
    assert (code, err) == (0, "")
    assert out == "gitbus is installed for Claude Code already; nothing changed\n"
    (worktrees[2] / "CLAUDE.local.md").unlink()
    assert gb(worktrees[0], "install", "claude")[1] == f"wrote {worktrees[2] / 'CLAUDE.local.md'}\n"


# -- uninstall gives every file back byte for byte -------------------------------------------------------

ODD_SETTINGS = (
    '{\n\t"zeta" : 1,\n\t"hooks": {"Stop": [ {"hooks": [{"type": "command", "command": "say done"}]} ]},\n'
    '\t"alpha": "caf\\u00e9",  "enabledMcpjsonServers": ["docs"]\n}'
)
ODD_MCP = (
    '{"x-note":"kept",\n    "mcpServers" : { "docs": {"command": "npx", "args": ["-y","docs-mcp"]}}}\n\n'
)


def test_uninstall_gives_back_files_of_unusual_formatting_byte_for_byte(worktrees: list[Path]) -> None:
    settings, mcp_json, memo = (
        local_settings(worktrees),
        worktrees[1] / ".mcp.json",
        worktrees[2] / "CLAUDE.local.md",
    )
    settings.parent.mkdir()
    settings.write_text(ODD_SETTINGS)
    mcp_json.write_text(ODD_MCP)
    memo.write_text("# notes without a final newline")
    gb(worktrees[0], "install", "claude")
    gb(worktrees[0], "install", "claude")
    assert gb(worktrees[1], "uninstall", "claude")[0] == 0
    assert settings.read_bytes() == ODD_SETTINGS.encode()
    assert mcp_json.read_bytes() == ODD_MCP.encode()
    assert memo.read_bytes() == b"# notes without a final newline"


def snapshot(worktrees: list[Path]) -> dict[str, bytes]:
    """Every file of every worktree (git's own dir aside), info/exclude and the record, as bytes."""
    files = {}
    for wt in worktrees:
        for f in wt.rglob("*"):
            if f.is_file() and ".git" not in f.relative_to(wt).parts:
                files[str(f)] = f.read_bytes()
    for f in (worktrees[0] / ".git" / "info" / "exclude", worktrees[0] / ".git" / "gitbus" / "created.json"):
        files[str(f)] = f.read_bytes() if f.exists() else b""
    return files


CRLF_SETTINGS = b'{\r\n  "model": "opus",\r\n  "hooks": {}\r\n}\r\n'
BOM_MCP = b'\xef\xbb\xbf{\r\n\t"mcpServers": {"docs": {"command": "npx"}}\r\n}'
CRLF_MEMO = b"# notes\r\n\r\nUse tabs.\r\n"


def test_uninstall_gives_back_crlf_and_bom_files_byte_for_byte(worktrees: list[Path]) -> None:
    settings, mcp_json, memo = (
        local_settings(worktrees),
        worktrees[1] / ".mcp.json",
        worktrees[2] / "CLAUDE.local.md",
    )
    settings.parent.mkdir()
    settings.write_bytes(CRLF_SETTINGS)
    mcp_json.write_bytes(BOM_MCP)  # a BOM is read, not refused
    memo.write_bytes(CRLF_MEMO)
    assert gb(worktrees[0], "install", "claude")[0] == 0
    assert (
        read(settings)["model"] == "opus" and "gitbus" in json.loads(mcp_json.read_bytes()[3:])["mcpServers"]
    )
    assert mcp_json.read_bytes().startswith(
        b"\xef\xbb\xbf{\r\n"
    ) and b"\n" not in mcp_json.read_bytes().replace(b"\r\n", b"")
    assert settings.read_bytes().count(b"\n") == settings.read_bytes().count(b"\r\n")
    assert gb(worktrees[0], "install", "claude")[1].endswith("nothing changed\n")
    assert gb(worktrees[0], "uninstall", "claude")[0] == 0
    assert (settings.read_bytes(), mcp_json.read_bytes(), memo.read_bytes()) == (
        CRLF_SETTINGS,
        BOM_MCP,
        CRLF_MEMO,
    )


def test_an_empty_mcp_servers_object_of_the_users_comes_back(worktrees: list[Path]) -> None:
    mcp_json = worktrees[1] / ".mcp.json"
    mcp_json.write_bytes(b'{"mcpServers": {}}')
    gb(worktrees[0], "install", "claude")
    gb(worktrees[0], "uninstall", "claude")
    assert mcp_json.read_bytes() == b'{"mcpServers": {}}'


def test_a_shared_install_and_uninstall_leave_a_tracked_mcp_json_unmodified(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "main")
    (repo / ".mcp.json").write_bytes(b'{\n  "mcpServers": {}\n}\n')
    git(repo, "add", ".mcp.json")
    git(repo, "commit", "-qm", "the team's MCP servers")
    assert gb(repo, "install", "claude", "--shared")[0] == 0
    assert gb(repo, "uninstall", "claude", "--shared")[0] == 0
    assert git(repo, "status", "--porcelain", "--", ".mcp.json") == ""


USERS_GITBUS = {"command": "/opt/my/gitbus", "args": ["mcp"], "env": {"GITBUS_AGENT": "me"}}
HAND_HOOKS = {"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "/opt/my/gitbus hook"}]}]}}


def test_the_users_own_gitbus_server_and_hooks_come_back_after_uninstall(worktrees: list[Path]) -> None:
    mcp_json, settings = worktrees[1] / ".mcp.json", local_settings(worktrees)
    mine = json.dumps({"mcpServers": {"gitbus": USERS_GITBUS}}, indent=3).encode()
    mcp_json.write_bytes(mine)
    settings.parent.mkdir()
    hand = json.dumps(HAND_HOOKS, indent=2).encode()
    settings.write_bytes(hand)
    gb(worktrees[0], "install", "claude")
    gb(worktrees[0], "install", "claude")
    assert gb(worktrees[0], "uninstall", "claude")[0] == 0
    assert (mcp_json.read_bytes(), settings.read_bytes()) == (mine, hand)


def test_the_users_own_gitbus_hooks_come_back_after_uninstall_beside_their_other_edits(
    worktrees: list[Path],
) -> None:
    """Install sets the user's own `gitbus hook` entries aside (ours stand in for them); they come
    back at uninstall even when the user changed the rest of the file meanwhile, which is kept."""
    settings = local_settings(worktrees)
    settings.parent.mkdir()
    mine = {
        "model": "opus",
        "hooks": {
            "Stop": [
                {
                    "hooks": [
                        {"type": "command", "command": "notify-send done"},
                        {"type": "command", "command": "/opt/my/gitbus hook"},
                    ]
                }
            ],
            "SessionStart": [{"hooks": [{"type": "command", "command": "/opt/my/gitbus hook"}]}],
        },
    }
    settings.write_text(json.dumps(mine, indent=2))
    assert gb(worktrees[0], "install", "claude")[0] == 0
    edited = read(settings) | {"model": "sonnet", "env": {"FOO": "bar"}}
    settings.write_text(json.dumps(edited, indent=2))
    assert gb(worktrees[0], "uninstall", "claude")[0] == 0
    assert read(settings) == mine | {"model": "sonnet", "env": {"FOO": "bar"}}


def test_the_users_own_gitbus_hooks_come_back_each_to_its_own_group_in_order(worktrees: list[Path]) -> None:
    """Groups alike before install (the same entries, or the same but for a `gitbus hook`) each take
    back their own entries, in their own places, however many there are."""
    settings = local_settings(worktrees)
    settings.parent.mkdir()
    x, u = (
        {"type": "command", "command": "notify-send done"},
        {"type": "command", "command": "/opt/my/gitbus hook"},
    )
    mine = {
        "model": "opus",
        "hooks": {
            "Stop": [{"hooks": [x, u]}, {"hooks": [x, u]}],
            "SessionStart": [{"hooks": [x]}, {"hooks": [x, u]}],
        },
    }
    settings.write_text(json.dumps(mine, indent=2))
    assert gb(worktrees[0], "install", "claude")[0] == 0
    settings.write_text(json.dumps(read(settings) | {"model": "sonnet"}, indent=2))  # the user's edit
    assert gb(worktrees[0], "uninstall", "claude")[0] == 0
    assert read(settings) == mine | {"model": "sonnet"}


def without_gitbus(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` with every gitbus entry taken out by hand (as Claude Code's /hooks would), the
    user's own `gitbus hook` entries among them: hooks, and the MCP server's enabling."""
    hooks = {
        event: kept
        for event, groups in settings["hooks"].items()
        if (kept := [g for g in groups if not any("gitbus hook" in h["command"] for h in g["hooks"])])
    }
    return {k: v for k, v in settings.items() if k != "enabledMcpjsonServers"} | {"hooks": hooks}


def test_the_users_own_gitbus_hooks_come_back_when_every_gitbus_entry_was_taken_out_by_hand(
    worktrees: list[Path],
) -> None:
    """Nothing of ours is left to take out, yet the entries install set aside are the user's: they
    come back, and no stale copy of the file is kept for a later install to lose."""
    settings = local_settings(worktrees)
    settings.parent.mkdir()
    mine = {
        "model": "opus",
        "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "/opt/my/gitbus hook"}]}]},
    }
    settings.write_text(json.dumps(mine, indent=2))
    assert gb(worktrees[0], "install", "claude")[0] == 0
    settings.write_text(json.dumps(without_gitbus(read(settings)) | {"model": "sonnet"}, indent=2))
    assert gb(worktrees[0], "uninstall", "claude")[0] == 0
    assert read(settings) == mine | {"model": "sonnet"}
    assert str(settings) not in Record(Repository.open(worktrees[0])).originals


def test_info_exclude_without_a_final_newline_comes_back_exactly(worktrees: list[Path]) -> None:
    exclude = worktrees[0] / ".git" / "info" / "exclude"
    exclude.write_bytes(b"# mine\r\n*.log\n/.gitbus/\nbuild")
    gb(worktrees[0], "install", "claude")
    assert "/.mcp.json" in exclude.read_text().splitlines()
    gb(worktrees[0], "uninstall", "claude")
    assert exclude.read_bytes() == b"# mine\r\n*.log\n/.gitbus/\nbuild"


@pytest.mark.parametrize(
    ("bad", "said"),
    [(b'{"mcpServers": []}', "not an object"), (b"{,}", "not valid JSON")],
    ids=["servers-a-list", "not-json"],
)
def test_a_bad_file_in_one_worktree_stops_install_and_uninstall_before_anything_is_written(
    worktrees: list[Path], bad: bytes, said: str
) -> None:
    (worktrees[2] / ".mcp.json").write_bytes(bad)
    before = snapshot(worktrees)
    code, _, err = gb(worktrees[0], "install", "claude")
    assert code == 1 and said in err and err.count("\n") == 1, err
    assert snapshot(worktrees) == before
    (worktrees[2] / ".mcp.json").unlink()
    assert gb(worktrees[0], "install", "claude")[0] == 0
    (worktrees[2] / ".mcp.json").write_bytes(b"{,}")  # uninstall can leave a list alone, not this
    installed = snapshot(worktrees)
    code, _, err = gb(worktrees[0], "uninstall", "claude")
    assert code == 1 and "not valid JSON" in err and err.count("\n") == 1, err
    assert snapshot(worktrees) == installed


def test_a_bad_settings_entry_stops_the_install_before_anything_is_written(worktrees: list[Path]) -> None:
    settings = local_settings(worktrees)
    settings.parent.mkdir()
    settings.write_bytes(b'{"enabledMcpjsonServers": "gitbus"}')
    before = snapshot(worktrees)
    code, _, err = gb(worktrees[0], "install", "claude")
    assert code == 1 and "not a list" in err, err
    assert snapshot(worktrees) == before


def test_a_setting_the_user_changed_meanwhile_survives_uninstall_in_their_indentation(
    worktrees: list[Path],
) -> None:
    settings = local_settings(worktrees)
    settings.parent.mkdir()
    settings.write_text(json.dumps({"model": "opus"}, indent=4) + "\n")
    gb(worktrees[0], "install", "claude")
    changed = read(settings) | {"model": "sonnet"}
    settings.write_text(json.dumps(changed, indent=4) + "\n")
    gb(worktrees[0], "uninstall", "claude")
    assert settings.read_text() == json.dumps({"model": "sonnet"}, indent=4) + "\n"


# -- a tracked .mcp.json ---------------------------------------------------------------------------------

TRACKED_MCP = '{\n  "mcpServers": {"docs": {"command": "npx", "args": ["docs-mcp"]}}\n}\n'


@pytest.fixture
def tracked(tmp_path: Path) -> list[Path]:
    """A repository whose `.mcp.json` is committed, and two more worktrees of it."""
    repo = make_repo(tmp_path / "main")
    (repo / ".mcp.json").write_text(TRACKED_MCP)
    git(repo, "add", ".mcp.json")
    git(repo, "commit", "-qm", "the team's MCP servers")
    out = [repo]
    for name in ("wt-b", "wt-c"):
        git(repo, "worktree", "add", "-q", "-b", name, str(tmp_path / name))
        out.append(tmp_path / name)
    return out


def claude_json() -> Path:
    return Path(os.environ["HOME"]) / ".claude.json"


def test_a_tracked_mcp_json_is_never_touched_the_server_goes_to_claude_codes_local_scope(
    tracked: list[Path],
) -> None:
    home_state = {"numStartups": 3, "projects": {str(tracked[0]): {"hasTrustDialogAccepted": True}}}
    claude_json().write_text(json.dumps(home_state, indent=2))
    code, out, _ = gb(tracked[1], "install", "claude")
    assert code == 0 and str(claude_json()) in out and ".mcp.json" not in out
    for wt in tracked:
        assert (wt / ".mcp.json").read_text() == TRACKED_MCP
        assert git(wt, "status", "--porcelain") == "", wt
    exe, *args = shlex.split(gitbus_command())
    project = read(claude_json())["projects"][str(tracked[0])]  # Claude Code's key for every worktree
    server = {"type": "stdio", "command": exe, "args": [*args, "mcp"], "alwaysLoad": True}
    assert project["mcpServers"] == {"gitbus": server}
    assert project["hasTrustDialogAccepted"] is True and read(claude_json())["numStartups"] == 3
    assert gb(tracked[2], "install", "claude")[1].endswith("nothing changed\n")
    gb(tracked[2], "uninstall", "claude")
    assert claude_json().read_text() == json.dumps(home_state, indent=2)
    assert all((wt / ".mcp.json").read_text() == TRACKED_MCP for wt in tracked)


def test_without_a_claude_json_the_local_scope_entry_is_made_and_taken_back(tracked: list[Path]) -> None:
    gb(tracked[0], "install", "claude")
    assert set(read(claude_json())["projects"][str(tracked[0])]) == {"mcpServers"}
    gb(tracked[0], "uninstall", "claude")
    assert not claude_json().exists()


def test_a_personal_uninstall_leaves_a_tracked_mcp_json_alone_even_with_gitbus_in_it(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "main")
    assert gb(repo, "install", "claude", "--shared")[0] == 0  # the team commits gitbus's server
    git(repo, "add", ".mcp.json")
    git(repo, "commit", "-qm", "gitbus for the team")
    shared = (repo / ".mcp.json").read_bytes()
    gb(repo, "install", "claude")
    gb(repo, "uninstall", "claude")
    assert (repo / ".mcp.json").read_bytes() == shared
    assert git(repo, "status", "--porcelain", "--", ".mcp.json") == ""


def test_claude_codes_private_state_file_stays_private(tracked: list[Path]) -> None:
    claude_json().write_text("{}")
    claude_json().chmod(0o600)
    gb(tracked[0], "install", "claude")
    assert claude_json().stat().st_mode & 0o777 == 0o600
    gb(tracked[0], "uninstall", "claude")
    assert claude_json().stat().st_mode & 0o777 == 0o600 and claude_json().read_text() == "{}"
    claude_json().unlink()
    gb(tracked[0], "install", "claude")
    assert claude_json().stat().st_mode & 0o777 == 0o600


def test_the_local_scope_follows_claude_config_dir(
    tracked: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude-config"))
    gb(tracked[0], "install", "claude")
    state = read(tmp_path / "claude-config" / ".claude.json")
    assert "gitbus" in state["projects"][str(tracked[0])]["mcpServers"]
    assert not claude_json().exists()


def test_the_users_own_gitbus_server_in_claude_codes_local_scope_comes_back(tracked: list[Path]) -> None:
    project = str(tracked[0])
    home_state = {"projects": {project: {"mcpServers": {"gitbus": USERS_GITBUS}}}}
    claude_json().write_text(json.dumps(home_state, indent=2))
    assert gb(tracked[1], "install", "claude")[0] == 0
    assert read(claude_json())["projects"][project]["mcpServers"]["gitbus"] != USERS_GITBUS
    assert gb(tracked[1], "install", "claude")[1].endswith("nothing changed\n")
    assert gb(tracked[2], "uninstall", "claude")[0] == 0
    assert read(claude_json()) == home_state


def test_install_writes_into_worktrees_whose_paths_hold_line_breaks_and_no_folder_a_cut_names(
    tmp_path: Path,
) -> None:
    main, decoy, added = odd_worktrees(tmp_path)
    code, _, err = gb(main, "install", "claude")
    assert code == 0, err
    for wt in [main, *added]:
        assert MARK_START in (wt / "CLAUDE.local.md").read_text(), repr(wt)
    assert not (decoy / "CLAUDE.local.md").exists() and not (decoy / ".mcp.json").exists()
    assert git(decoy, "status", "--porcelain", "--untracked-files=all") == ""


def test_install_refuses_in_one_line_when_a_worktree_path_cannot_be_read(worktrees: list[Path]) -> None:
    odd = worktrees[0].parent / os.fsdecode(b"caf\xe9")
    git(worktrees[0], "worktree", "add", "-q", "--detach", str(odd))
    code, out, err = gb(worktrees[0], "install", "claude")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "caf\\udce9" in err, (code, out, err)
    assert not any((wt / "CLAUDE.local.md").exists() for wt in [*worktrees, odd])
    assert not local_settings(worktrees).exists()
