"""The `gitbus` executable: `gitbus hook [MODE]` goes straight to the light hook handler (which
refuses an unknown mode as a usage error; a `hook` line with an option, `--help`, goes to the typer
CLI, for its help and usage errors), the everyday
commands (log, status, claims, discover, claim, inbox) and push, pull and sync to `gitbus.quick`; all
else, and anything `quick` does not take, to the typer CLI.

Claude Code runs the hook on every tool call, and agents the everyday commands on every step, so
neither may import typer (with pydantic) and rich (~130 ms). A plain `gitbus hook` call is first
offered to `gitbus.fastpath`, which answers "nothing new" from files before `json`, `re`, `typing`
or `pathlib` load (each costs more than the answer); anything else goes to `gitbus.hooks` with the
same input.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] == ["hook"]:
        _hook_fast_path()
    if sys.argv[1:2] == ["hook"] and not any(a.startswith("-") for a in sys.argv[2:]):  # --help: typer's
        from gitbus.hooks import main as hook_main

        sys.exit(hook_main(sys.argv[2:]))
    from gitbus.quick_parse import early_fetch

    early = early_fetch(sys.argv[1:])  # a sync's fetch runs while the rest loads
    try:
        from gitbus.quick import run

        code = run(sys.argv[1:], early)
    except BaseException:  # Ctrl-C while loading: the fetch ends, and what it took is undone
        if early is not None:
            early.close(stop=True)
        raise
    if early is not None:
        early.close()
    if code is not None:
        sys.exit(code)
    from gitbus.cli import main as cli_main

    cli_main()


def _hook_fast_path() -> None:
    """Exit at once when the hook call has nothing to say; else leave its input, read here, for
    `gitbus.hooks` to read as it reads stdin."""
    import io
    import os

    from gitbus.fastpath import nothing_new

    if sys.stdin is None:  # started with stdin closed (`<&-`): no input at all, as `hooks.main` says
        sys.stderr.write("gitbus hook: the input is not hook JSON (stdin is closed).\n")
        sys.exit(1)
    raw = sys.stdin.buffer.read()
    if nothing_new(raw, os.environ):
        sys.exit(0)
    sys.stdin = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8")
