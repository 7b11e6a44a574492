"""`gitbus install` / `uninstall` refuse, in one line and with nothing written, what they cannot
change safely: a link out of the repository, a file that is not a regular file, JSON they could
not write back as valid JSON, a gitbus whose path no config can hold; and they keep the user's
own server named gitbus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gitbus.cli import app

from .conftest import git, make_repo

GITBUS = Path(sys.executable).parent / "gitbus"
# What each client's install writes, per worktree (the settings file of claude is the main checkout's)
FILES = {
    "claude": (".claude/settings.local.json", ".mcp.json", "CLAUDE.local.md"),
    "codex": (".codex/hooks.json", ".codex/config.toml", "AGENTS.md"),
    "gemini": (".gemini/settings.json", "GEMINI.md"),
}


def gb(wt: Path, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, ["-C", str(wt), *args], env={"COLUMNS": "200"})
    return r.exit_code, r.stdout, r.stderr


def tree(root: Path) -> dict[str, bytes | str]:
    """Every entry under `root` (git's own dir aside), links as their target, files as bytes."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            out[str(p)] = (
                f"-> {os.readlink(p)}" if p.is_symlink() else (p.read_bytes() if p.is_file() else "dir")
            )
    exclude = root / ".git" / "info" / "exclude"
    out["exclude"] = exclude.read_bytes() if exclude.is_file() else b""
    return out


def everything(*roots: Path) -> dict[str, bytes | str]:
    return {k: v for r in roots for k, v in tree(r).items()}


def refused(code: int, out: str, err: str, *said: str) -> bool:
    return code == 1 and out == "" and err.count("\n") == 1 and all(s in err for s in said)


# -- links out of the repository ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "folder", "wt"), [("codex", ".codex", 1), ("gemini", ".gemini", 1), ("claude", ".claude", 0)]
)
def test_a_folder_linked_out_of_the_repository_is_refused_and_nothing_is_written(
    worktrees: list[Path], tmp_path: Path, client: str, folder: str, wt: int
) -> None:
    outside = tmp_path / "outside" / client
    outside.mkdir(parents=True)
    (outside / "keep.txt").write_text("mine\n")
    link = worktrees[wt] / folder
    link.symlink_to(outside)
    before = everything(tmp_path / "outside", *worktrees)
    code, out, err = gb(worktrees[0], "install", client)
    assert refused(code, out, err, str(link), "outside the repository"), (code, out, err)
    assert everything(tmp_path / "outside", *worktrees) == before


@pytest.mark.parametrize("client", ["codex", "gemini", "claude"])
def test_uninstall_through_a_folder_relinked_out_of_the_repository_deletes_nothing_there(
    worktrees: list[Path], tmp_path: Path, client: str
) -> None:
    assert gb(worktrees[0], "install", client)[0] == 0
    folder = worktrees[1] / FILES[client][0].split("/")[0] if client != "claude" else worktrees[0] / ".claude"
    outside = tmp_path / "outside"
    outside.mkdir()
    folder.rename(outside / folder.name)
    folder.symlink_to(outside / folder.name)
    before = everything(outside, *worktrees)
    code, out, err = gb(worktrees[0], "uninstall", client)
    assert refused(code, out, err, str(folder), "outside the repository"), (code, out, err)
    assert everything(outside, *worktrees) == before


@pytest.mark.parametrize(
    ("client", "name"), [("codex", "AGENTS.md"), ("claude", ".mcp.json"), ("claude", "CLAUDE.local.md")]
)
def test_a_file_linked_out_of_the_repository_is_refused_and_stays_a_link(
    worktrees: list[Path], tmp_path: Path, client: str, name: str
) -> None:
    outside = tmp_path / "outside" / name
    outside.parent.mkdir()
    outside.write_text("{}\n" if name.endswith(".json") else "# mine\n")
    (worktrees[1] / name).symlink_to(outside)
    before = everything(tmp_path / "outside", *worktrees)
    code, out, err = gb(worktrees[0], "install", client)
    assert refused(code, out, err, str(worktrees[1] / name), "outside the repository"), (code, out, err)
    assert everything(tmp_path / "outside", *worktrees) == before
    assert gb(worktrees[0], "uninstall", client)[0] == 1
    assert everything(tmp_path / "outside", *worktrees) == before


@pytest.mark.parametrize("dangling", [False, True], ids=["to a file", "to no file yet"])
@pytest.mark.parametrize(
    ("client", "name"), [("codex", "AGENTS.md"), ("claude", ".mcp.json"), ("claude", "CLAUDE.local.md")]
)
def test_a_file_linked_within_the_worktree_is_written_through_and_stays_a_link(
    worktrees: list[Path], client: str, name: str, dangling: bool
) -> None:
    """Install writes the file the link names; uninstall gives that file back (removes it, when
    install made it), never the user's link."""
    wt = worktrees[1]
    (wt / "shared").mkdir()
    target = wt / "shared" / name
    original = b'{"mcpServers": {"docs": {"command": "npx"}}}' if name.endswith(".json") else b"# mine\n"
    if not dangling:
        target.write_bytes(original)
    (wt / name).symlink_to(Path("shared") / name)
    assert gb(worktrees[0], "install", client)[0] == 0
    assert (wt / name).is_symlink() and b"gitbus" in target.read_bytes()
    assert gb(worktrees[0], "uninstall", client)[0] == 0
    assert (wt / name).is_symlink() and os.readlink(wt / name) == str(Path("shared") / name)
    if dangling:
        assert not target.exists() or b"gitbus" not in target.read_bytes()
    else:
        assert target.read_bytes() == original


@pytest.mark.parametrize(("client", "name"), [("codex", "AGENTS.md"), ("claude", ".mcp.json")])
def test_a_link_to_a_file_git_tracks_counts_as_that_file_and_is_left_alone(
    tmp_path: Path, client: str, name: str
) -> None:
    repo = make_repo(tmp_path / "main")
    (repo / "team").mkdir()
    team = repo / "team" / name
    team.write_text('{"mcpServers": {}}\n' if name.endswith(".json") else "# Team rules\n")
    git(repo, "add", "team")
    git(repo, "commit", "-qm", "the team's file")
    git(repo, "worktree", "add", "-q", "-b", "wt-b", str(tmp_path / "wt-b"))
    (tmp_path / "wt-b" / name).symlink_to(Path("team") / name)
    assert gb(repo, "install", client)[0] == 0
    assert git(tmp_path / "wt-b", "diff", "--stat") == "" and git(repo, "diff", "--stat") == ""
    assert gb(repo, "uninstall", client)[0] == 0
    assert (tmp_path / "wt-b" / name).is_symlink()


def test_the_users_own_claude_json_may_be_a_link_out_of_home_and_stays_one(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "main")
    (repo / ".mcp.json").write_text('{"mcpServers": {}}\n')
    git(repo, "add", ".mcp.json")
    git(repo, "commit", "-qm", "the team's MCP servers")
    dotfiles = tmp_path / "dotfiles" / "claude.json"
    dotfiles.parent.mkdir()
    dotfiles.write_text('{"numStartups": 3}')
    home_file = Path(os.environ["HOME"]) / ".claude.json"
    home_file.symlink_to(dotfiles)
    assert gb(repo, "install", "claude")[0] == 0
    assert home_file.is_symlink() and "gitbus" in dotfiles.read_text()
    assert gb(repo, "uninstall", "claude")[0] == 0
    assert home_file.is_symlink() and json.loads(dotfiles.read_text()) == {"numStartups": 3}


# -- the user's own server named gitbus ---------------------------------------------------------

USERS_GITBUS = {"command": "/opt/my/gitbus", "args": ["-a", "boss", "mcp"]}


@pytest.mark.parametrize(("client", "rel"), [("claude", ".mcp.json"), ("gemini", ".gemini/settings.json")])
def test_the_users_own_gitbus_server_comes_back_after_they_changed_the_file(
    worktrees: list[Path], client: str, rel: str
) -> None:
    f = worktrees[1] / rel
    f.parent.mkdir(exist_ok=True)
    f.write_text(json.dumps({"mcpServers": {"gitbus": USERS_GITBUS}}))
    assert gb(worktrees[0], "install", client)[0] == 0
    assert json.loads(f.read_text())["mcpServers"]["gitbus"] != USERS_GITBUS
    config = json.loads(f.read_text())
    config["mcpServers"]["other"] = {"command": "other"}
    f.write_text(json.dumps(config))
    assert gb(worktrees[0], "install", client)[0] == 0  # a second install keeps theirs aside still
    assert gb(worktrees[0], "uninstall", client)[0] == 0
    servers = json.loads(f.read_text())["mcpServers"]
    assert servers == {"gitbus": USERS_GITBUS, "other": {"command": "other"}}


@pytest.mark.parametrize(("client", "rel"), [("claude", ".mcp.json"), ("gemini", ".gemini/settings.json")])
def test_a_gitbus_server_the_user_wrote_over_ours_is_theirs_and_survives_install_and_uninstall(
    worktrees: list[Path], client: str, rel: str
) -> None:
    f = worktrees[1] / rel
    f.parent.mkdir(exist_ok=True)
    f.write_text(json.dumps({"mcpServers": {"docs": {"command": "npx"}}}))
    assert gb(worktrees[0], "install", client)[0] == 0
    config = json.loads(f.read_text())
    config["mcpServers"]["gitbus"] = USERS_GITBUS
    f.write_text(json.dumps(config))
    assert gb(worktrees[0], "install", client)[0] == 0
    assert json.loads(f.read_text())["mcpServers"]["gitbus"] != USERS_GITBUS
    assert gb(worktrees[0], "uninstall", client)[0] == 0
    assert json.loads(f.read_text())["mcpServers"] == {"docs": {"command": "npx"}, "gitbus": USERS_GITBUS}


def test_a_gitbus_server_the_user_wrote_over_ours_in_claude_codes_local_scope_survives(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "main")
    (repo / ".mcp.json").write_text('{"mcpServers": {}}\n')
    git(repo, "add", ".mcp.json")
    git(repo, "commit", "-qm", "the team's MCP servers")
    home_file = Path(os.environ["HOME"]) / ".claude.json"
    assert gb(repo, "install", "claude")[0] == 0
    state = json.loads(home_file.read_text())
    state["projects"][str(repo)]["mcpServers"]["gitbus"] = USERS_GITBUS
    home_file.write_text(json.dumps(state))
    assert gb(repo, "install", "claude")[0] == 0
    assert gb(repo, "uninstall", "claude")[0] == 0
    assert json.loads(home_file.read_text())["projects"][str(repo)]["mcpServers"] == {"gitbus": USERS_GITBUS}


@pytest.mark.parametrize(("client", "rel"), [("claude", ".mcp.json"), ("gemini", ".gemini/settings.json")])
def test_after_an_install_by_an_older_gitbus_the_users_server_still_comes_back(
    worktrees: list[Path], client: str, rel: str
) -> None:
    f = worktrees[1] / rel
    f.parent.mkdir(exist_ok=True)
    f.write_text(json.dumps({"mcpServers": {"gitbus": USERS_GITBUS, "docs": {"command": "npx"}}}))
    assert gb(worktrees[0], "install", client)[0] == 0
    record = worktrees[0] / ".git" / "gitbus" / "created.json"
    saved = json.loads(record.read_text())  # as an older gitbus left it: only the file's original text
    saved["originals"] = {k: v for k, v in saved["originals"].items() if "server:" not in k}
    saved["items"] = [x for x in saved["items"] if not x.endswith(".mcp.json#mcpServers.gitbus")]
    record.write_text(json.dumps(saved))
    assert gb(worktrees[0], "install", client)[0] == 0  # the upgrade
    config = json.loads(f.read_text())
    config["mcpServers"]["other"] = {"command": "other"}
    f.write_text(json.dumps(config))
    assert gb(worktrees[0], "uninstall", client)[0] == 0
    servers = json.loads(f.read_text())["mcpServers"]
    assert servers == {"gitbus": USERS_GITBUS, "docs": {"command": "npx"}, "other": {"command": "other"}}


# -- JSON that could not be written back as it was ---------------------------------------------


@pytest.mark.parametrize("value", ["\\ud800", "\\udcff", "\\udbff\\udfff"])
def test_escaped_surrogates_are_written_back_as_escapes_in_valid_utf8(
    worktrees: list[Path], value: str
) -> None:
    f = worktrees[0] / ".claude" / "settings.local.json"
    f.parent.mkdir()
    original = f'{{\n  "name": "café",\n  "odd": "{value}"\n}}\n'.encode()
    f.write_bytes(original)
    code, _, err = gb(worktrees[0], "install", "claude")
    assert code == 0, err
    written = f.read_bytes()
    written.decode("utf-8")  # strict: no raw surrogate bytes
    assert json.loads(written)["odd"] == json.loads(original)["odd"]
    assert gb(worktrees[0], "uninstall", "claude")[0] == 0
    assert f.read_bytes() == original


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (b'{"n": 1e999}', "1e999"),
        (b'{"n": -1E400}', "-1E400"),
        (b'{"n": NaN}', "not valid JSON"),
        (b'{"n": -Infinity}', "not valid JSON"),
        (b'{"name": "caf\xe9"}', "not UTF-8"),
    ],
)
def test_json_gitbus_could_not_write_back_is_refused_in_one_line(
    worktrees: list[Path], text: bytes, said: str
) -> None:
    f = worktrees[0] / ".claude" / "settings.local.json"
    f.parent.mkdir()
    f.write_bytes(text)
    before = everything(*worktrees)
    code, out, err = gb(worktrees[0], "install", "claude")
    assert refused(code, out, err, str(f), said), (code, out, err)
    assert everything(*worktrees) == before


def test_a_claude_json_gitbus_could_not_write_back_is_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "main")
    (repo / ".mcp.json").write_text('{"mcpServers": {}}\n')
    git(repo, "add", ".mcp.json")
    git(repo, "commit", "-qm", "the team's MCP servers")
    home_file = Path(os.environ["HOME"]) / ".claude.json"
    home_file.write_bytes(b'{"numStartups": 1e999}')
    code, out, err = gb(repo, "install", "claude")
    assert refused(code, out, err, str(home_file), "1e999"), (code, out, err)
    assert home_file.read_bytes() == b'{"numStartups": 1e999}'
    assert not (repo / ".claude").exists() and not (repo / "CLAUDE.local.md").exists()


# -- a gitbus whose path is not UTF-8 ----------------------------------------------------------


@pytest.mark.parametrize("client", ["claude", "codex", "gemini"])
def test_a_gitbus_whose_path_is_not_utf8_is_refused_saying_why(
    worktrees: list[Path], tmp_path: Path, client: str
) -> None:
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))
    folder.mkdir()
    (folder / "gitbus").symlink_to(GITBUS)
    before = everything(*worktrees)
    p = subprocess.run(
        [str(folder / "gitbus"), "-C", str(worktrees[0]), "install", client],
        capture_output=True,
        timeout=60,
    )
    err = p.stderr.decode("utf-8", "replace")
    assert refused(p.returncode, p.stdout.decode(), err, "not UTF-8"), (p.returncode, p.stdout, err)
    assert "config.toml" not in err
    assert everything(*worktrees) == before


# -- a path that is not a regular file ----------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "rel", "wt"),
    [
        ("claude", ".claude/settings.local.json", 0),
        ("claude", ".mcp.json", 1),
        ("gemini", ".gemini/settings.json", 2),
    ],
)
def test_a_fifo_where_a_settings_file_goes_is_refused_without_hanging(
    worktrees: list[Path], client: str, rel: str, wt: int
) -> None:
    f = worktrees[wt] / rel
    f.parent.mkdir(exist_ok=True)
    os.mkfifo(f)
    for verb in ("install", "uninstall"):
        p = subprocess.run(
            [str(GITBUS), "-C", str(worktrees[0]), verb, client], capture_output=True, text=True, timeout=60
        )
        assert refused(p.returncode, p.stdout, p.stderr, str(f), "not a regular file"), (verb, p)
    assert not (worktrees[0] / "CLAUDE.local.md").exists() and not (worktrees[0] / "GEMINI.md").exists()
