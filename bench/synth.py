"""Synthetic buses built fast with `git fast-import`, byte-identical to what the library writes.

Posting 100,000 messages through `Bus` takes minutes; fast-import writes the same commits in seconds.
Each commit is what `gitbus.git.Repository.commit` would write for the message: the empty tree, the
message exactly as `gitbus.message.encode` makes it, author = committer = `<agent>
<<agent>@gitbus.invalid> <time_ms // 1000> +0000`, parent = the previous message of that agent's
chain. `check_identical` proves it by writing the first messages through the library and comparing
object ids.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from gitbus import chains
from gitbus.git import Oid, init_repository
from gitbus.ids import EVERYONE, AgentName, MessageId, agent_ref
from gitbus.message import Kind, Message, encode

STEP_MS = 1000  # one message a second across the bus: each chain's times strictly increase


def messages(n: int, agents: int, end_ms: int, seed: int = 1) -> list[Message]:
    """`n` messages round-robin over `agents` chains, oldest first: joins, then a realistic mix."""
    rng = random.Random(seed)
    names = [AgentName(f"agent-{k}") for k in range(agents)]
    t0 = end_ms - n * STEP_MS
    out: list[Message] = []
    question: Message | None = None
    for i in range(n):
        who = names[i % agents]
        t = t0 + i * STEP_MS
        mid = MessageId(f"{rng.getrandbits(64):016x}")
        if i < agents:
            msg = Message(mid, Kind.JOIN, who, EVERYONE, f"{who} joined from {who}", t,
                          meta=(("worktree", f"/work/{who}"),))
        elif i % 10 == 3:
            msg = Message(mid, Kind.QUESTION, who, EVERYONE, f"question {i}: who owns pkg{i % 50}/?", t,
                          paths=(f"pkg{i % 50}/",))
            question = msg
        elif i % 10 == 4 and question is not None and question.sender != who:
            msg = Message(mid, Kind.ANSWER, who, question.sender, f"answer {i}: I do, for a while", t,
                          paths=question.paths, reply_to=question.id)
        else:
            paths = (f"pkg{i % 50}/mod{i % 7}.py",) if i % 3 == 0 else ()
            msg = Message(mid, Kind.DISCOVERY, who, EVERYONE,
                          f"finding {i}: the handler in pkg{i % 50} retries {rng.randint(1, 9)} times", t,
                          paths=paths)
        out.append(msg)
    return out


def _signature(msg: Message) -> str:
    return f"{msg.sender} <{msg.sender}@gitbus.invalid> {msg.time // 1000} +0000"


def fast_import_stream(msgs: list[Message]) -> bytes:
    """A fast-import stream with one commit per message on `refs/bus/agents/<sender>`; mark = index+1."""
    parts: list[bytes] = []
    last: dict[str, int] = {}
    for mark, msg in enumerate(msgs, 1):
        ref = agent_ref(msg.sender)
        data = encode(msg).encode()
        sig = _signature(msg)
        head = f"commit {ref}\nmark :{mark}\nauthor {sig}\ncommitter {sig}\ndata {len(data)}\n"
        parts.append(head.encode())
        parts.append(data)
        prev = last.get(ref)
        parts.append(f"from :{prev}\n\n".encode() if prev else b"\n")
        last[ref] = mark
    return b"".join(parts)


def _git(cwd: Path, env: Mapping[str, str], *args: str, stdin: bytes | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env=dict(env), input=stdin, capture_output=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode()


def build(root: Path, stream: bytes, env: Mapping[str, str], *, layout: str) -> dict[int, str]:
    """A worktree at `root` whose bus holds `stream`; returns the marks (mark -> commit id).

    layout "loose": every object loose, as the library leaves them (the pack is exploded);
    layout "gc": after `git gc` (one delta-compressed pack, refs in packed-refs).
    """
    init_repository(root)
    marks_file = root.parent / f"{root.name}.marks"
    _git(root, env, "fast-import", "--quiet", f"--export-marks={marks_file}", stdin=stream)
    marks = {int(m[1:]): oid for m, oid in (line.split() for line in marks_file.read_text().splitlines())}
    marks_file.unlink()
    if layout == "loose":
        pack_dir = root / ".git" / "objects" / "pack"
        for pack in sorted(pack_dir.glob("*.pack")):
            moved = root.parent / f"{root.name}-{pack.name}"
            shutil.move(pack, moved)
            pack.with_suffix(".idx").unlink()
            _git(root, env, "unpack-objects", "-q", stdin=moved.read_bytes())
            moved.unlink()
    elif layout == "gc":
        _git(root, env, "gc", "--quiet")
    else:
        raise ValueError(layout)
    return marks


def _always(msg: Message) -> Callable[[int], Message]:
    return lambda _min_time: msg


def check_identical(scratch: Path, msgs: list[Message], marks: Mapping[int, str], agents: int) -> None:
    """Write agent-0's first two messages through the library; their ids must match fast-import's."""
    repo = init_repository(scratch)
    first, second = msgs[0], msgs[agents]
    assert first.sender == second.sender
    for msg, mark in ((first, 1), (second, agents + 1)):
        chains.append(repo, agent_ref(msg.sender), _always(msg))
        got = repo.ref(agent_ref(msg.sender))
        if got != Oid(marks[mark]):
            raise AssertionError(f"fast-import wrote {marks[mark]} where the library writes {got}")
