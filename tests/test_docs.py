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
