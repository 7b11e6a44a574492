"""Delegated requests: one agent asks for work, exactly one agent takes it, the taker finishes it.

The request itself is an ordinary message on its sender's chain; who took it and whether it is done
is ledger state at `requests/<id[:2]>/<id>`, so `take` is decided by the ledger's single
compare-and-swap and two agents can never both take one request. The steps themselves (`Take`,
`Done`) are in `gitbus.steps`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gitbus.clock import sane
from gitbus.errors import GitbusError
from gitbus.ids import AgentName, MessageId, agent_name
from gitbus.ledger import View as Ledger
from gitbus.message import full_id


@dataclass(frozen=True)
class RequestState:
    request: MessageId
    taker: AgentName
    taken_at: int
    done_at: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "request": self.request,
            "taker": self.taker,
            "taken_at": self.taken_at,
            "done_at": self.done_at,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> RequestState:
        """A request's state from its ledger entry; `GitbusError` when it breaks the rules."""
        try:
            request, taker, taken, done = obj["request"], obj["taker"], obj["taken_at"], obj.get("done_at")
        except KeyError as e:
            raise GitbusError(f"A request entry lacks {e}.") from None
        if not isinstance(request, str) or not isinstance(taker, str):
            raise GitbusError("A request entry's request or taker is not a string.")
        for t in (taken, done):
            if t is not None and (type(t) is not int or not sane(t)):
                raise GitbusError("A request entry has a time gitbus does not take.")
        if taken is None:
            raise GitbusError("A request entry lacks taken_at.")
        return cls(MessageId(full_id(request)), agent_name(taker), taken, done)

    @property
    def state(self) -> str:
        return "done" if self.done_at is not None else "taken"


def slot(request: MessageId) -> str:
    return f"requests/{request[:2]}/{request}"


def state_of(ledger: Ledger, request: MessageId) -> RequestState | None:
    """Who took `request` and whether it is done; None when nobody has. An entry that breaks the
    rules is skipped (counted in `repo.skipped`) and the request reads as taken by nobody."""
    obj = ledger.read(slot(request))
    if not obj:
        return None
    try:
        state = RequestState.from_json(obj)
    except GitbusError as e:
        ledger.repo.skipped[slot(request)] = str(e)
        return None
    return state if state.request == request else None
