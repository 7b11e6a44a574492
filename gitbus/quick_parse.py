"""Reading an everyday command line as typer would, without typer (for `gitbus.quick`); and, for
`gitbus sync` and `gitbus pull`, starting their fetch before the library loads (`early_fetch`).

`parse` takes a command line of `quick_args.COMMANDS` exactly as click reads it, or gives None for
anything it might read otherwise (then typer reads it). It imports neither pygit2 nor the library, so
the executable can read the command line first: a sync's `git fetch` then runs while the rest loads
(`gitbus.fetching`; issue 16).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gitbus import fetching
from gitbus.quick_args import COMMANDS, ROOT, Param

_COUNT = re.compile(r"[1-9][0-9]{0,17}")  # an INTEGER both parsers read alike; anything else goes to typer

Values = dict[str, Any]


def sharing(argv: Sequence[str]) -> bool:
    """True for a well-formed `gitbus sync`, `pull` or `push` (the light path runs it)."""
    if "_GITBUS_COMPLETE" in os.environ:  # shell completion is typer's
        return False
    parsed = parse(argv)
    return parsed is not None and parsed[0] in ("sync", "pull", "push")


def early_fetch(argv: Sequence[str]) -> fetching.Early | None:
    """For a well-formed `gitbus sync` or `gitbus pull`: its first fetch, started now (else None).
    `quick.run` hands it to the sync, which takes it or lets go of it; whoever started it closes it."""
    if "_GITBUS_COMPLETE" in os.environ:  # shell completion is typer's
        return None
    parsed = parse(argv)
    if parsed is None or parsed[0] not in ("sync", "pull"):
        return None
    _name, root, values = parsed
    return fetching.start(Path(root["directory"]), values["remote_name"])


def _value(param: Param, raw: str) -> Any:
    """`raw` as `param` takes it, or None where typer might read it otherwise."""
    if param.kind == "int":
        if not _COUNT.fullmatch(raw) or (param.min is not None and int(raw) < param.min):
            return None
        return int(raw)
    if param.kind == "path":
        return Path(raw) if raw else None
    return raw


def _options(
    params: Sequence[Param], argv: Sequence[str], interspersed: bool
) -> tuple[Values, list[str]] | None:
    """Click's reading of `argv` against `params`: (values by name, the positional words); None for
    anything click would refuse or read in a way this does not (then typer reads it).

    Options may come between positional words unless `interspersed` is false (a group: the first
    word is the command, and it and all after it are returned)."""
    by_flag = {flag: p for p in params for flag in p.flags}
    values: Values = {}
    words: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token == "--":
            if not interspersed:
                return None
            words += argv[i:]
            break
        if token[:1] != "-" or token == "-":
            words.append(token)
            if not interspersed:
                words += argv[i:]
                break
            continue
        if token.startswith("--"):
            flag, eq, attached = token.partition("=")
        else:  # -n5, -tclaim: a short option's value may be attached
            flag, attached = token[:2], token[2:]
            eq = "=" if attached else ""
        param = by_flag.get(flag)
        if param is None:
            return None
        if param.kind == "flag":
            if eq:
                return None
            values[param.name] = True
            continue
        if eq:
            raw = attached
        elif i < len(argv):
            raw, i = argv[i], i + 1
        else:
            return None
        value = _value(param, raw)
        if value is None:
            return None
        if param.kind == "list":
            values.setdefault(param.name, []).append(value)
        else:
            values[param.name] = value
    return values, words


def parse(argv: Sequence[str]) -> tuple[str, Values, Values] | None:
    """(command, root values, command values) for a well-formed everyday command line, else None."""
    if any(not a.isascii() and not _utf8(a) for a in argv):
        return None
    root = _options(ROOT, argv, interspersed=False)
    if root is None or not root[1] or root[1][0] not in COMMANDS:
        return None
    name, rest = root[1][0], root[1][1:]
    params = COMMANDS[name]
    got = _options(params, rest, interspersed=True)
    if got is None:
        return None
    values, words = got
    for p in params:
        if p.kind == "args":
            if not words:
                return None
            values[p.name], words = list(words), []
        elif p.kind == "arg":
            if not words:
                return None
            values[p.name], words = words[0], words[1:]
        elif p.kind == "word":
            values[p.name], words = (words[0], words[1:]) if words else (p.default, words)
        else:
            values.setdefault(p.name, p.default)
    if words or (name == "log" and values.pop("follow")):  # too many words; log -f stays in cli
        return None
    return name, {p.name: root[0].get(p.name, p.default) for p in ROOT}, values


def _utf8(word: str) -> bool:
    """False for a word holding bytes that were not UTF-8 (surrogate escapes): typer's to judge."""
    try:
        word.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
