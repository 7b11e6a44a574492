"""`gitbus hook`: the Claude Code hook handler (a face: JSON in on stdin, JSON out on stdout).

It reads one call, hands it to its event's handler (`hook_start`, `hook_session`, `hook_guard`,
`hook_stop`) and writes the answer. The answer is written as soon as it is made and the session's
cursor moves only when it went out, so a hook that cannot write its stdout loses nothing; the edit
guard is asked before anything that could fail, since it fails closed. The contract:
docs/claude-code.md.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any

from gitbus.errors import GitbusError
from gitbus.hook_guard import pre_tool_use
from gitbus.hook_session import session_of
from gitbus.hook_start import session_start
from gitbus.hook_stop import session_end, stop


def handle(
    data: Mapping[str, Any],
    env: Mapping[str, str],
    wake_mode: bool = False,
    send: Callable[[str], bool] | None = None,
) -> tuple[int, str]:
    """Answer one hook call: (exit code, stdout). `send`, when given, writes news to the client at
    once and says whether it went out: the session's cursor moves only over what did. Without it,
    the news is returned as stdout, and counts as gone out."""
    if data.get("hook_event_name") == "PreToolUse" and not wake_mode:
        return 0, pre_tool_use(data, env)  # before anything that could fail: the guard fails closed
    s = session_of(data, env)
    if s is None:
        return 0, ""
    if wake_mode:
        from gitbus.waiter import wake

        return wake(s, env), ""
    kept: list[str] = []
    if send is None:
        send = _keep(kept)
    event = data.get("hook_event_name")
    if event == "SessionStart":
        session_start(s, str(data.get("source") or "startup"), send)
    elif event in ("UserPromptSubmit", "PostToolUse", "PostToolBatch"):
        s.deliver(str(event), send)
    elif event == "Stop":
        stop(s, data, send)
    elif event == "SessionEnd":
        return 0, session_end(s)
    return 0, "\n".join(kept)


def _keep(kept: list[str]) -> Callable[[str], bool]:
    """A `send` that keeps each answer in `kept`, for `handle` to return: it always goes out."""

    def send(out: str) -> bool:
        kept.append(out)
        return True

    return send


def main(argv: list[str]) -> int:
    wake_mode = argv[:1] == ["wake"]
    client = argv[0] if len(argv) == 1 and argv[0] in ("codex", "gemini") else None  # gitbus.agentcli
    # an unknown mode is a usage error, as the CLI shows one: what is wrong, then the usage
    if argv and not (wake_mode or client):
        sys.stderr.write(f"gitbus: {argv[0]!r} is not a hook mode.\nusage: gitbus hook [wake|codex|gemini]\n")
        return 2
    try:
        if sys.stdin is None:  # started with stdin closed (`<&-`)
            raise ValueError("stdin is closed")
        data = json.loads(sys.stdin.buffer.read() or b"{}")
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except RecursionError:
        sys.stderr.write("gitbus hook: the input is not hook JSON (it is nested too deep to read).\n")
        return 1
    except (ValueError, OSError) as e:
        sys.stderr.write(f"gitbus hook: the input is not hook JSON ({e}).\n")
        return 1
    stdout = _Stdout()
    try:
        if client:
            from gitbus import agentcli

            m = agentcli.client_map(client)
            assert m is not None
            code, out = agentcli.answer(m, data, os.environ)
        else:
            code, out = handle(data, os.environ, wake_mode, send=stdout)
    except GitbusError as e:
        sys.stderr.write(f"gitbus hook: {e}\n")
        return 1
    if out:
        stdout(out)
    if not stdout.ok:  # told again at the next call: the cursor moved only over what went out
        with suppress(OSError, ValueError, AttributeError):
            sys.stderr.write(f"gitbus hook: could not write the answer ({stdout.why}).\n")
        return 1
    return code


class _Stdout:
    """The hook's stdout as `send` for `handle`: writes one answer, flushed, and says whether it
    went out. A closed stdout or a reader gone (EPIPE) is False, never a traceback; stdout is then
    pointed at /dev/null, so Python's own flush at exit does not fail again."""

    def __init__(self) -> None:
        self.ok, self.why = True, ""

    def __call__(self, text: str) -> bool:
        try:
            if sys.stdout is None:
                raise OSError("stdout is closed")
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
            return True
        except (OSError, ValueError) as e:
            self.ok, self.why = False, (e.strerror if isinstance(e, OSError) and e.strerror else str(e))
            with suppress(OSError, ValueError, AttributeError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
            return False
