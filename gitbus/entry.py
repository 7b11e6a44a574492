"""The `gitbus` executable: `gitbus hook …` goes straight to the light hook handler; all else to the CLI.

Claude Code runs the hook on every tool call, so it must not import typer and rich (~130 ms).
"""

from __future__ import annotations

import sys


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "hook":
        from gitbus.hooks import main as hook_main

        sys.exit(hook_main(sys.argv[2:]))
    from gitbus.cli import main as cli_main

    cli_main()
