from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import typer

from gitbus.cli import app

ROOT = Path(__file__).resolve().parent.parent


def test_the_cli_reference_is_generated_from_the_current_help() -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "gen_cli.py"), "--check"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_command_is_documented() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    for name in typer.main.get_command(app).commands:  # type: ignore[attr-defined]
        assert f"gitbus {name}" in text, name


def test_the_readme_opens_with_the_demo_and_the_ci_test_command() -> None:
    readme = (ROOT / "README.md").read_text().splitlines()
    ci = (ROOT / ".ci" / "run").read_text()
    first = "\n".join(readme[:6])
    assert "gitbus demo" in first
    test_cmd = next(line for line in readme[:6] if "pytest" in line).split("&& ")[-1]
    assert test_cmd in ci


def test_every_example_in_the_library_guide_runs_as_written(tmp_path: Path) -> None:
    """docs/library.md says its examples run as written, one after another: they do."""
    text = (ROOT / "docs" / "library.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    script = tmp_path / "library_examples.py"
    script.write_text("\n\n".join(blocks))
    cmd = [sys.executable, str(script)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_claude_code_page_names_the_version_the_real_client_suite_pins() -> None:
    pinned = json.loads((ROOT / "clients.json").read_text())["claude-code"]["version"]
    page = (ROOT / "docs" / "claude-code.md").read_text()
    tested = page.split("## Tested with the real Claude Code", 1)[1].split("\n## ", 1)[0]
    stated = set(re.findall(r"\b\d+\.\d+\.\d+\b", tested))  # every version that section names
    assert f"**{pinned}**" in tested and stated == {pinned}, stated


# -- docs/cli.md and the code say the same thing ----------------------------------------------------


def cli_md_section(title: str) -> str:
    text = (ROOT / "docs" / "cli.md").read_text()
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_agents_page_names_the_versions_the_real_client_suites_pin() -> None:
    pins = json.loads((ROOT / "clients.json").read_text())
    page = (ROOT / "docs" / "agents.md").read_text()
    for name in ("claude-code", "codex", "gemini"):
        assert f"| {pins[name]['version']} " in page or f" {pins[name]['version']} |" in page, name


def test_the_documented_exit_codes_are_the_ones_the_errors_carry() -> None:
    from gitbus import cli
    from gitbus import errors as E

    rows = [r.split("|")[1:-1] for r in cli_md_section("Exit codes").splitlines() if re.match(r"\| \d ", r)]
    documented = {int(code): set(re.findall(r"`(\w+)`", raised)) for code, _, raised in rows}
    coded = {code: {k.__name__ for k in kinds} for code, kinds in cli.EXIT_CODES.items()}
    assert {k: v for k, v in documented.items() if v} == coded
    assert set(documented) == {0, cli.USAGE, *cli.EXIT_CODES}
    for code, kinds in cli.EXIT_CODES.items():
        assert all(issubclass(k, E.GitbusError) and k.exit_code == code for k in kinds), code


def test_every_error_class_is_in_the_exit_code_table() -> None:
    from gitbus import cli
    from gitbus import errors as E

    tabled = {k for kinds in cli.EXIT_CODES.values() for k in kinds}
    public = {v for v in vars(E).values() if isinstance(v, type) and issubclass(v, E.GitbusError)}
    internal = {E.CorruptMessage, E.Unreadable}  # read damage: shown as GitbusError, exit 1
    assert public - internal <= tabled and all(k.exit_code == 1 for k in internal)


def test_the_commands_said_to_take_json_are_the_ones_that_do() -> None:
    said = cli_md_section("`--json`")
    without = set(re.findall(r"`gitbus (\w+)`", said.split("except", 1)[1].split(".", 1)[0]))
    for name, command in typer.main.get_command(app).commands.items():  # type: ignore[attr-defined]
        takes = any("--json" in p.opts for p in command.params)
        assert takes == (name not in without), name


def test_config_help_names_every_setting() -> None:
    from gitbus import settings

    help_text = (ROOT / "docs" / "cli.md").read_text().split("\n## gitbus config\n", 1)[1]
    assert all(key in help_text.split("```", 2)[1] for key in settings.DEFAULTS)


def test_the_test_index_names_every_module_and_only_test_files_that_exist() -> None:
    index = (ROOT / "tests" / "README.md").read_text()
    listed = set(re.findall(r"`([a-z_]+/?)`", index.split("| module | tests |", 1)[1].split("\n\n", 1)[0]))
    modules = {p.stem for p in (ROOT / "gitbus").glob("*.py") if not p.stem.startswith("__")}
    packages = {f"{p.name}/" for p in (ROOT / "gitbus").iterdir() if (p / "__init__.py").exists()}
    assert modules | packages <= listed, sorted((modules | packages) - listed)
    named = set(re.findall(r"`(test_[a-z_]+\.py)`", index))
    missing = sorted(n for n in named if not (ROOT / "tests" / n).exists())
    assert missing == [], missing
