"""`gitbus install codex|gemini` / `uninstall`: every worktree wired, merged, given back byte for byte."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gitbus.cli import app
from gitbus.git import Repository
from gitbus.install import gitbus_command
from gitbus.install_record import Record

from .conftest import git

# What each client reads, per worktree: (hooks file, instructions file, hook events)
FILES = {
    "codex": (
        ".codex/hooks.json",
        "AGENTS.md",
        {"SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "Stop"},
    ),
    "gemini": (
        ".gemini/settings.json",
        "GEMINI.md",
        {"SessionStart", "BeforeAgent", "BeforeTool", "AfterTool", "AfterAgent", "SessionEnd"},
    ),
}


def gb(wt: Path, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, ["-C", str(wt), *args], env={"COLUMNS": "200"})
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture
def joined(worktrees: list[Path]) -> list[Path]:
    for wt, name in zip(worktrees, ("alice", "bob", "carol"), strict=True):
        assert gb(wt, "join", "--name", name)[0] == 0
    return worktrees


def snapshot(worktrees: list[Path]) -> dict[str, bytes]:
    """Every file of every worktree (git's own dir aside), and info/exclude, as bytes."""
    files = {}
    for wt in worktrees:
        for f in wt.rglob("*"):
            if f.is_file() and ".git" not in f.relative_to(wt).parts:
                files[str(f)] = f.read_bytes()
    exclude = worktrees[0] / ".git" / "info" / "exclude"
    # `/.gitbus/` (the context files' folder) is excluded once for good by any install: not ours to undo
    files["exclude"] = (exclude.read_bytes() if exclude.exists() else b"").replace(b"/.gitbus/\n", b"")
    return files


def our_commands(settings: dict[str, object], client: str) -> dict[str, list[str]]:
    hooks = settings.get("hooks")
    assert isinstance(hooks, dict)
    return {
        event: [h["command"] for g in groups for h in g["hooks"] if h["command"].endswith(f"hook {client}")]
        for event, groups in hooks.items()
    }


@pytest.mark.parametrize("client", ["codex", "gemini"])
def test_install_wires_every_worktree_once_and_dirties_nothing(joined: list[Path], client: str) -> None:
    hooks_file, instructions, events = FILES[client]
    code, out, _ = gb(joined[1], "install", client)
    assert code == 0, out
    for wt in joined:
        settings = json.loads((wt / hooks_file).read_text())
        assert {e: len(c) for e, c in our_commands(settings, client).items()} == dict.fromkeys(events, 1)
        assert "gitbus" in (wt / instructions).read_text()
        assert git(wt, "status", "--porcelain") == ""
    if client == "codex":
        config = tomllib.loads((joined[2] / ".codex/config.toml").read_text())
        assert config["mcp_servers"]["gitbus"]["args"][-1] == "mcp"
        assert "Trust all and continue" in out  # how the user trusts the hooks
        assert "main checkout" in out and "each worktree" not in out  # Codex runs the main checkout's
    else:
        assert settings["mcpServers"]["gitbus"]["args"][-1] == "mcp"
    before = snapshot(joined)
    assert (
        gb(joined[0], "install", client)[1] == f"gitbus is installed for {client} already; nothing changed\n"
    )
    assert snapshot(joined) == before


@pytest.mark.parametrize("client", ["codex", "gemini"])
def test_uninstall_gives_back_the_users_files_byte_for_byte(joined: list[Path], client: str) -> None:
    main = joined[0]
    hooks_file, instructions, _ = FILES[client]
    (main / hooks_file).parent.mkdir()
    mine = '{\n\t"hooks": {"SessionStart": [{"hooks": [{"type": "command", "command": "./mine.sh"}]}]},\n'
    mine += '\t"mcpServers": {"other": {"command": "x"}}\n}'  # tabs, no final newline
    (main / hooks_file).write_text(mine)
    (main / instructions).write_text("# Ours\n\nkeep this\n")
    if client == "codex":
        (main / ".codex/config.toml").write_text('model = "o3"\n\n[mcp_servers.other]\ncommand = "x"\n')
    before = snapshot(joined)
    assert gb(main, "install", client)[0] == 0
    settings = json.loads((main / hooks_file).read_text())
    assert settings["hooks"]["SessionStart"][0]["hooks"][0]["command"] == "./mine.sh"
    assert settings["mcpServers"]["other"] == {"command": "x"}
    assert (main / instructions).read_text().startswith("# Ours\n\nkeep this\n")
    if client == "codex":
        config = tomllib.loads((main / ".codex/config.toml").read_text())
        assert config["model"] == "o3" and set(config["mcp_servers"]) == {"other", "gitbus"}
    assert gb(main, "install", "claude")[0] == 0  # another client's install and uninstall on the side
    assert gb(main, "uninstall", "claude")[0] == 0
    code, out, _ = gb(main, "uninstall", client)
    assert code == 0 and "cleaned" in out
    assert snapshot(joined) == before
    assert gb(main, "uninstall", client)[1] == "nothing to remove\n"


@pytest.mark.parametrize("client", ["codex", "gemini"])
def test_uninstall_gives_back_crlf_and_bom_files_byte_for_byte(joined: list[Path], client: str) -> None:
    main = joined[0]
    hooks_file, instructions, _ = FILES[client]
    (main / hooks_file).parent.mkdir()
    (main / hooks_file).write_bytes(b'\xef\xbb\xbf{\r\n  "model": "x",\r\n  "hooks": {}\r\n}\r\n')
    (main / instructions).write_bytes(b"# Ours\r\n\r\nkeep this")
    if client == "codex":
        (main / ".codex/config.toml").write_bytes(b'model = "o3"\r\n')
    before = snapshot(joined)
    assert gb(main, "install", client)[0] == 0
    settings = (main / hooks_file).read_bytes()
    assert settings.startswith(b"\xef\xbb\xbf{\r\n") and b"\n" not in settings.replace(b"\r\n", b"")
    assert json.loads(settings[3:])["model"] == "x"
    assert gb(main, "install", client)[1].endswith("nothing changed\n")
    assert gb(main, "uninstall", client)[0] == 0
    assert snapshot(joined) == before


@pytest.mark.parametrize("client", ["codex", "gemini"])
def test_the_users_own_gitbus_hooks_and_server_come_back_after_uninstall(
    joined: list[Path], client: str
) -> None:
    main = joined[0]
    hooks_file = FILES[client][0]
    (main / hooks_file).parent.mkdir()
    hand = {"type": "command", "command": f"/opt/my/gitbus hook {client}"}
    mine = {
        "hooks": {"SessionStart": [{"hooks": [hand]}]},
        "mcpServers": {"gitbus": {"command": "/opt/my/gitbus"}},
    }
    (main / hooks_file).write_bytes(json.dumps(mine, indent=3).encode())
    before = snapshot(joined)
    assert gb(main, "uninstall", client)[1] == "nothing to remove\n"  # never installed: all theirs
    assert snapshot(joined) == before
    assert gb(main, "install", client)[0] == 0
    assert gb(main, "install", client)[0] == 0
    assert gb(main, "uninstall", client)[0] == 0
    assert snapshot(joined) == before


@pytest.mark.parametrize("client", ["codex", "gemini"])
def test_the_users_own_gitbus_hooks_come_back_beside_their_other_edits(
    joined: list[Path], client: str
) -> None:
    main = joined[0]
    f = main / FILES[client][0]
    f.parent.mkdir()
    hand = {"type": "command", "command": f"/opt/my/gitbus hook {client}"}
    other = {"type": "command", "command": "notify-send done"}
    mine = {"hooks": {"SessionStart": [{"hooks": [hand]}], "Stop": [{"hooks": [other, hand]}]}}
    f.write_text(json.dumps(mine, indent=3))
    assert gb(main, "install", client)[0] == 0
    f.write_text(json.dumps(json.loads(f.read_text()) | {"theme": "dark"}, indent=3))  # the user's edit
    assert gb(main, "uninstall", client)[0] == 0
    assert json.loads(f.read_text()) == mine | {"theme": "dark"}


@pytest.mark.parametrize("client", ["codex", "gemini"])
def test_the_users_own_gitbus_hooks_come_back_when_every_gitbus_entry_was_taken_out_by_hand(
    joined: list[Path], client: str
) -> None:
    main = joined[0]
    f = main / FILES[client][0]
    f.parent.mkdir()
    hand = {"type": "command", "command": f"/opt/my/gitbus hook {client}"}
    mine = {"hooks": {"Stop": [{"hooks": [hand]}]}}
    f.write_text(json.dumps(mine, indent=3))
    assert gb(main, "install", client)[0] == 0
    edited = json.loads(f.read_text())
    edited["hooks"] = {}  # every hook there looks like gitbus's: all taken out by hand
    edited.pop("mcpServers", None)
    f.write_text(json.dumps(edited | {"theme": "dark"}, indent=3))
    assert gb(main, "uninstall", client)[0] == 0
    assert json.loads(f.read_text()) == mine | {"theme": "dark"}
    assert str(f) not in Record(Repository.open(main)).originals


@pytest.mark.parametrize("client", ["codex", "gemini"])
def test_the_instructions_name_the_gitbus_that_ran_install(joined: list[Path], client: str) -> None:
    assert gb(joined[0], "install", client)[0] == 0
    text = (joined[1] / FILES[client][1]).read_text()
    assert f"`{gitbus_command()} claim " in text and "`gitbus " not in text


@pytest.mark.parametrize("client", ["codex", "gemini"])
def test_a_hooks_entry_of_the_wrong_shape_in_one_worktree_stops_everything(
    joined: list[Path], client: str
) -> None:
    hooks_file = FILES[client][0]
    (joined[2] / hooks_file).parent.mkdir()
    (joined[2] / hooks_file).write_bytes(b'{"hooks": {"SessionStart": {}}}')
    before = snapshot(joined)
    code, _, err = gb(joined[0], "install", client)
    assert code == 1 and "not a list" in err and err.count("\n") == 1, err
    assert snapshot(joined) == before
    (joined[2] / hooks_file).write_bytes(b"{}")
    assert gb(joined[0], "install", client)[0] == 0
    (joined[2] / hooks_file).write_bytes(b"{,}")
    installed = snapshot(joined)
    code, _, err = gb(joined[0], "uninstall", client)
    assert code == 1 and "not valid JSON" in err and err.count("\n") == 1, err
    assert snapshot(joined) == installed


def test_a_tracked_settings_file_refuses_before_anything_is_written(joined: list[Path]) -> None:
    main = joined[0]
    (main / ".gemini").mkdir()
    (main / ".gemini/settings.json").write_text("{}\n")
    git(main, "add", ".gemini/settings.json")
    git(main, "commit", "-qm", "team settings")
    before = snapshot(joined)
    code, _, err = gb(joined[1], "install", "gemini")
    assert code != 0 and "tracked by git" in err and "docs/agents.md" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert snapshot(joined) == before


def test_a_tracked_instructions_file_is_left_alone(joined: list[Path]) -> None:
    main = joined[0]
    (main / "AGENTS.md").write_text("# Team rules\n")
    git(main, "add", "AGENTS.md")
    git(main, "commit", "-qm", "agents")
    assert gb(main, "install", "codex")[0] == 0
    assert (main / "AGENTS.md").read_text() == "# Team rules\n"
    assert git(main, "status", "--porcelain") == ""
    assert gb(main, "uninstall", "codex")[0] == 0
    assert (main / "AGENTS.md").read_text() == "# Team rules\n"


def test_a_codex_config_that_is_not_toml_or_names_our_server_is_refused_in_one_line(
    joined: list[Path],
) -> None:
    main = joined[0]
    (main / ".codex").mkdir()
    for text, said in (
        ("model = \n", "not valid TOML"),
        ('[mcp_servers.gitbus]\ncommand = "x"\n', "already"),
    ):
        (main / ".codex/config.toml").write_text(text)
        code, _, err = gb(main, "install", "codex")
        assert code != 0 and said in err and err.count("\n") == 1, err
        assert (main / ".codex/config.toml").read_text() == text


def test_a_bad_file_in_one_worktree_stops_the_install_before_any_worktree_is_written(
    joined: list[Path],
) -> None:
    (joined[2] / ".codex").mkdir()
    (joined[2] / ".codex/config.toml").write_text("model = \n")
    before = snapshot(joined)
    code, _, err = gb(joined[0], "install", "codex")
    assert code != 0 and "not valid TOML" in err
    assert snapshot(joined) == before


def test_shared_is_for_claude_only(joined: list[Path]) -> None:
    code, _, err = gb(joined[0], "install", "codex", "--shared")
    assert code == 2 and "--shared is for claude only" in err


@pytest.mark.parametrize("client", ["codex", "gemini"])
def test_a_bare_main_repository_gets_nothing_its_worktrees_get_all(tmp_path: Path, client: str) -> None:
    from .conftest import make_repo

    source = make_repo(tmp_path / "source")
    bare = tmp_path / "repo.git"
    git(tmp_path, "clone", "-q", "--bare", str(source), str(bare))
    trees = [tmp_path / "wt-a", tmp_path / "wt-b"]
    for i, wt in enumerate(trees):
        git(bare, "worktree", "add", "-q", "-b", f"b{i}", str(wt))
    code, out, err = gb(trees[0], "install", client)
    assert code == 0, out + err
    hooks_file, instructions, _ = FILES[client]
    for rel in (hooks_file, instructions, ".codex/config.toml"):
        assert not (bare / rel).exists(), rel  # nothing in repo.git/
    for wt in trees:
        assert (wt / hooks_file).is_file() and "gitbus" in (wt / instructions).read_text()


@pytest.mark.parametrize(
    ("client", "rel", "text", "said"),
    [
        ("gemini", ".gemini/settings.json", '{"hooks": []}', "hooks entry that is not an object"),
        ("gemini", ".gemini/settings.json", '{"mcpServers": []}', "mcpServers entry that is not an object"),
        ("codex", ".codex/hooks.json", '{"hooks": {"Stop": 1}}', "not a list"),
        ("codex", ".codex/config.toml", 'mcp_servers = { other = { command = "x" } }\n', "inline"),
        ("codex", ".codex/config.toml", "mcp_servers = 3\n", "[mcp_servers.gitbus]"),
    ],
)
def test_a_file_install_cannot_merge_into_in_the_last_worktree_changes_nothing_anywhere(
    joined: list[Path], client: str, rel: str, text: str, said: str
) -> None:
    last = joined[-1]
    (last / rel).parent.mkdir()
    (last / rel).write_text(text)
    before = snapshot(joined)
    code, _, err = gb(joined[0], "install", client)
    assert code == 1 and said in err and err.count("\n") == 1, err
    assert "not valid TOML" not in err, err  # the user's file is valid: say what is wrong with it
    assert snapshot(joined) == before
    assert [git(wt, "status", "--porcelain") for wt in joined[:-1]] == ["", ""]


def test_gemini_settings_with_comments_are_refused_saying_comments_are_why(joined: list[Path]) -> None:
    """Gemini CLI reads its settings with comments allowed; gitbus cannot merge into them and keep
    them, so it says so rather than calling the file broken."""
    f = joined[1] / ".gemini/settings.json"
    f.parent.mkdir()
    f.write_text('{\n  // the team\'s model\n  "model": {"name": "x // not a comment"} /* end */\n}\n')
    before = snapshot(joined)
    for verb in ("install", "uninstall"):
        code, _, err = gb(joined[0], verb, "gemini")
        assert code == 1 and "comments" in err and err.count("\n") == 1, err
        assert "not valid JSON" not in err, err
        assert snapshot(joined) == before
    f.write_text('{"model": "/* a string, not a comment */", "x": "//"}')
    assert gb(joined[0], "install", "gemini")[0] == 0
