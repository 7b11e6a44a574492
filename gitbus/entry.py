"""The `gitbus` executable: `gitbus hook` and `gitbus hook wake` go straight to the light hook handler
(any other `hook` line — `--help`, a typo — to the typer CLI, for its help and usage errors), the everyday
commands (log, status, claims, discover, claim) to `gitbus.quick`; all else, and anything `quick`
does not take, to the typer CLI.

Claude Code runs the hook on every tool call, and agents the everyday commands on every step, so
neither may import typer (with pydantic) and rich (~130 ms).
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] in (["hook"], ["hook", "wake"]):  # anything else (--help, a typo) is typer's
        from gitbus.hooks import main as hook_main

        sys.exit(hook_main(sys.argv[2:]))
    from gitbus.quick import run

    code = run(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from gitbus.cli import main as cli_main

    cli_main()
