"""A crowded ledger, a crowded history and a call counter: tests that count the work a decision does
(entries read, claims parsed) among many claims, never its time (issue 16: costs that do not grow
with the crowd), and tests that need thousands of messages behind the one they look for."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from gitbus.bus import Bus
from gitbus.clock import FakeClock
from gitbus.git import Repository
from gitbus.gitfiles import Oid
from gitbus.ids import EVERYONE, LEDGER_REF, AgentName, MessageId, agent_ref, new_message_id
from gitbus.message import Kind, Message, encode

HOLDERS = ("api-1", "web-1", "db-1", "ops-1")
PER_HOLDER = 100


def crowd(root: Path, bus_for: Callable[[Path, str], Bus]) -> list[Bus]:
    """Four holders with a hundred `area<k>/mod<j>/` claims each, granted in one step each."""
    buses = [bus_for(root, name) for name in HOLDERS]
    for k, bus in enumerate(buses):
        bus.claim([f"area{k}/mod{j}/" for j in range(PER_HOLDER)], reason="crowd")
    return buses


def counted(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[int]:
    """Count the calls of `owner.name` from now on (the real one still runs)."""
    calls = [0]
    original = getattr(owner, name)

    def spy(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return calls


def entries_read(monkeypatch: pytest.MonkeyPatch, repo: Repository) -> list[int]:
    """Count the blobs read from now on, but for the tombstone at `refs/bus/ledger`: reading where the
    single ledger ended costs the same whatever the crowd (it holds no entry)."""
    stone = repo.ref(LEDGER_REF)
    assert stone is not None and repo.object_kind(stone) == "blob"
    calls = [0]
    original = Repository.read_blob

    def spy(self: Repository, oid: Oid, limit: int | None = None) -> bytes:
        calls[0] += oid != stone
        return original(self, oid, limit)

    monkeypatch.setattr(Repository, "read_blob", spy)
    return calls


def bulk_discoveries(
    repo: Repository,
    agent: str,
    texts: list[str],
    clock: FakeClock,
    reply_to: Message | None = None,
) -> list[Message]:
    """Append discoveries to `agent`'s chain as `chains.append` writes them (empty tree, the encoded
    message, the agent as author and committer), through one `git fast-import`: posting thousands one
    by one takes seconds. With `reply_to` (a question), they are answers to it instead."""
    ref = agent_ref(AgentName(agent))
    tip = repo.ref(ref)
    assert tip is not None
    out, stream = [], [f"reset {ref}\nfrom {tip}\n\n".encode()]
    for text in texts:
        clock.advance(1)
        if reply_to is None:
            msg = Message(new_message_id(), Kind.DISCOVERY, AgentName(agent), EVERYONE, text, clock.now_ms())
        else:
            msg = Message(
                new_message_id(),
                Kind.ANSWER,
                AgentName(agent),
                reply_to.sender,
                text,
                clock.now_ms(),
                reply_to.paths,
                MessageId(reply_to.id),
            )
        data, sig = encode(msg).encode(), f"{agent} <{agent}@gitbus.invalid> {msg.time // 1000} +0000"
        stream.append(f"commit {ref}\nauthor {sig}\ncommitter {sig}\ndata {len(data)}\n".encode())
        stream.append(data + b"\n")
        out.append(msg)
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo.root, input=b"".join(stream), check=True)
    return out
