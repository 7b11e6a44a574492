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

`gitbus sync` and `pull` start their fetch before `gitbus.quick` loads (`quick_parse.early_fetch`),
and push, pull and sync end without Python's teardown (`_leave`): issue 16's 10,000-message trip
beside plain git.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] == ["hook"]:
        _hook_fast_path()
    if sys.argv[1:2] == ["hook"] and not any(a.startswith("-") for a in sys.argv[2:]):  # --help: typer's
        from gitbus.hooks import main as hook_main

        sys.exit(hook_main(sys.argv[2:]))
    _closed_as_nothing()
    import gc

    # push, pull and sync run for a moment and drop what they read by reference counting: Python's
    # cycle collector only walked the objects of the ~200 modules they load, again and again (issue
    # 16: 5 ms of the start-up). Every other command turns it back on at once.
    gc.disable()
    from gitbus.quick_parse import early_fetch, sharing

    if not sharing(sys.argv[1:]):
        gc.enable()
    early = early_fetch(sys.argv[1:])  # a sync's fetch runs while the rest loads
    try:
        from gitbus.quick import run

        code = run(sys.argv[1:], early)
    except BaseException:  # Ctrl-C while loading: the fetch ends, and nothing it took is vouched for
        if early is not None:
            early.close(stop=True)
        raise
    if early is not None:
        early.close()
    if code is not None:
        if sharing(sys.argv[1:]):
            _leave(code)
        sys.exit(code)
    from gitbus.cli import main as cli_main

    cli_main()


def _closed_as_nothing() -> None:
    """A stream the caller closed (`gitbus discover x >&-`) reads and writes as /dev/null: Python
    starts with no `sys.stdout` then, and a post already made must not end in a traceback (a retry
    would post it twice). Not for the hook, whose cursor moves only over what it could write."""
    import os

    for name, mode in (("stdin", "r"), ("stdout", "w"), ("stderr", "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, mode))  # noqa: SIM115  (for the whole process)


def _leave(code: int) -> None:
    """End a sync, pull or push at once, without Python's teardown of pygit2 and the library (about
    13 ms; issue 16's trip pays it twice). All it wrote is written by then (ref and state files are
    written whole and renamed into place, git ran to its end), so only stdout and stderr wait in
    buffers: they are flushed first. If that fails, or another thread runs, the ordinary exit does
    all of it instead."""
    import os
    import threading

    if threading.active_count() > 1:
        return
    try:
        for f in (sys.stdout, sys.stderr):
            if f is not None:
                f.flush()
    except (OSError, ValueError):
        return
    os._exit(code)


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
