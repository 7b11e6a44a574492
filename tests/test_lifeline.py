"""Telling a headless session from an attended one, and a live client from a gone one."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gitbus.lifeline import Lifeline, headless

CLAUDE = "/home/u/.local/bin/claude"
NODE_CLAUDE = ["node", "/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js"]


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        ([CLAUDE, "-p", "fix the tests"], {"CLAUDE_CODE_SESSION_ATTENDED": "1"}),
        ([*NODE_CLAUDE, "--print", "hi"], {}),
        ([CLAUDE], {"CLAUDE_CODE_SESSION_ATTENDED": "0"}),
        ([], {"CLAUDE_CODE_ENTRYPOINT": "sdk-cli"}),
    ],
)
def test_print_mode_an_unattended_session_or_an_sdk_is_headless(argv: list[str], env: dict[str, str]) -> None:
    assert headless(env, argv)


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        # an interactive client started by an SDK orchestrator inherits its entrypoint
        ([CLAUDE], {"CLAUDE_CODE_ENTRYPOINT": "sdk-py", "CLAUDE_CODE_SESSION_ATTENDED": "1"}),
        ([CLAUDE, "--continue"], {"CLAUDE_CODE_ENTRYPOINT": "cli"}),
        (["python", "-m", "pytest", "-p", "no:cacheprovider"], {}),  # a -p that is not Claude Code's
        ([], {}),
    ],
)
def test_an_interactive_session_is_not_headless(argv: list[str], env: dict[str, str]) -> None:
    assert not headless(env, argv)


def test_the_client_claude_code_names_is_watched_until_it_exits() -> None:
    client = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        life = Lifeline({"CLAUDE_PID": str(client.pid)})
        assert life.client is not None and life.client.pid == client.pid
        assert life.alive()
        client.kill()
        client.wait(10)
        assert not life.alive()
    finally:
        client.kill()
        client.wait(10)


def test_a_named_pid_that_is_gone_falls_back_to_the_ancestors() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(10)
    life = Lifeline({"CLAUDE_PID": str(gone.pid)})
    assert life.client is not None and life.client.pid != gone.pid
    assert life.alive()
