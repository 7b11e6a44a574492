"""The spelling of an agent name, by plain string rules: what is reserved, what is certainly valid,
and how a worktree folder's name becomes one.

`gitbus.ids` validates names with regular expressions; the nothing-new hook (`gitbus.fastpath`) must
answer before `re` loads, so the rules both need are written here once with sets and string methods,
and `ids` takes them from here. The trade-off: `plain_agent_name` is narrower than `ids.agent_name`
(it may say False for a name the library accepts, never True for one it refuses).
"""

from __future__ import annotations

RESERVED = frozenset({"all", "everyone", "ledger", "head", "operator-all"})  # = gitbus.ids.RESERVED

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")


def derive_name(text: str) -> str:
    """A worktree folder's name made into an agent name: lowercase, each run of characters outside
    a-z 0-9 _ . - one '-', each run of dots one dot, no leading or trailing '-', '.', '_', at most
    63, no `.lock` ending, not reserved (`ids.derive_agent_name` validates what this returns)."""
    out: list[str] = []
    in_run = False  # inside a run of other characters, already written as one '-'
    for ch in text.lower():
        if ch in _NAME_CHARS:
            in_run = False
            if not (ch == "." and out and out[-1] == "."):
                out.append(ch)
        elif not in_run:
            out.append("-")
            in_run = True
    name = "".join(out).strip("-._")[:63].rstrip("-._")
    if name.endswith(".lock"):
        name = name[: -len(".lock")] + "-lock"
    if not name or name in RESERVED:
        name = f"agent-{name}" if name else "agent"
    return name


def plain_agent_name(text: str) -> bool:
    """True for an agent name `ids.agent_name` certainly accepts as it is: 1-63 of a-z 0-9 . _ -,
    starting with a letter or digit, no '..', not ending in '.' or `.lock`, not reserved."""
    return (
        0 < len(text) <= 63
        and set(text) <= _NAME_CHARS
        and text[0] not in "._-"
        and ".." not in text
        and not text.endswith((".", ".lock"))
        and text not in RESERVED
    )
