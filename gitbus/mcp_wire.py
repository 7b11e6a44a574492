"""The wire under `gitbus mcp`: what the stdio transport reads and cannot parse gets an answer.

The MCP SDK's stdio transport reads each line with a JSON parser stricter than JSON (it refuses a
lone surrogate escape, nesting 200 deep, an integer past its range) and hands what it refuses to its
dispatcher as an exception, which drops it: the client would wait for its own timeout. `Answering`
wraps the transport's read stream, answers each such line with a JSON-RPC 2.0 error (and a line on
stderr) and passes every message on; the SDK stays as it is.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from types import TracebackType
from typing import Any

import anyio
from mcp.shared.message import SessionMessage
from mcp.types import INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError
from mcp.types import RequestId as WireId
from pydantic import ValidationError


def _request_id(message: object) -> WireId | None:
    """The id of `message` (a request: a JSON object with a method) when it has a usable one."""
    if not isinstance(message, dict) or "method" not in message:
        return None  # no request (a client's response to us, say): its id is not ours to answer
    rid = message.get("id")
    if isinstance(rid, bool) or not isinstance(rid, int | str):
        return None
    if isinstance(rid, str) and (len(rid) > 200 or not rid.isprintable() or not rid.isascii()):
        return None  # echoed back, it must encode, and it is a peer string: only a plain one is
    return rid


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_SCALAR = re.compile(r'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null', re.S)
# A string, a bracket, or a quote that opens a string never closed: the line ends inside it. Without
# that last one, every escaped quote in such a string started a new match to the end of the line.
_BRACKET_OR_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|"|[\[\]{}]', re.S)
_SPACE = re.compile(r"[ \t\r\n]+")
_NESTED = object()  # the value of a member that is an object or an array, skipped


def _space(line: str, at: int) -> int:
    """Where the white space (JSON's) from `at` ends."""
    m = _SPACE.match(line, at)
    return m.end() if m else at


def _skip_nested(line: str, at: int) -> int:
    """Where the object or array opening at `at` ends, found by counting brackets outside strings
    (no recursion: the SDK refused this line perhaps for its depth); -1 if it never closes."""
    depth = 0
    for m in _BRACKET_OR_STRING.finditer(line, at):
        c = m.group()
        if c == '"':  # a string that never closes: so neither does this
            return -1
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth == 0:
                return m.end()
    return -1


def _members(line: str) -> dict[str, object]:
    """The members of the JSON object `line` up to the first fault (none when it is no object), each
    nested value read as `_NESTED` and a long integer as None. It reads what the SDK's parser refuses
    (a lone surrogate, deep nesting, a 5,000-digit number, a line cut short) in one pass without
    recursion, so that a request's id can be read and the client told which request failed."""
    out: dict[str, object] = {}
    at = _space(line, 0)
    if not line.startswith("{", at):
        return out
    at = _space(line, at + 1)
    while (key := _STRING.match(line, at)) is not None:
        at = _space(line, key.end())
        if not line.startswith(":", at):
            break
        at = _space(line, at + 1)
        if line.startswith(("{", "["), at):
            at, value = _skip_nested(line, at), _NESTED
        else:
            scalar = _SCALAR.match(line, at)
            if scalar is None:
                break
            at, value = scalar.end(), _scalar(scalar.group())
        try:
            out[json.loads(key.group())] = value
        except ValueError:  # an escape JSON does not have
            break
        at = _space(line, at) if at >= 0 else -1
        if at < 0 or not line.startswith(",", at):
            break
        at = _space(line, at + 1)
    return out


def _scalar(text: str) -> object:
    """A JSON string, number, true, false or null as Python has it; a long integer or a string with
    an escape JSON does not have as None."""
    digits = text.lstrip("-")
    if digits.isdigit() and len(digits) > 30:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _answer_for(e: Exception) -> tuple[JSONRPCError, str]:
    """The JSON-RPC error for a message the transport could not take (JSON-RPC 2.0: a parse error,
    or an invalid request for JSON that is no message), and the line saying so on stderr."""
    errors = e.errors() if isinstance(e, ValidationError) else []
    if errors and errors[0]["type"] == "json_invalid":
        line = errors[0].get("input")
        rid = _request_id(_members(line)) if isinstance(line, str) else None
        why = errors[0]["msg"].removeprefix("Invalid JSON: ")[:200]
        code, said = PARSE_ERROR, f"Parse error: the message is no JSON this server reads ({why})"
    elif errors:  # JSON, but no JSON-RPC message: the whole object is the input of some error
        found = [err.get("input") for err in errors if len(err["loc"]) <= 2]
        rid = next((r for r in map(_request_id, found) if r is not None), None)
        code, said = INVALID_REQUEST, "Invalid Request: the message is no JSON-RPC 2.0 message"
    else:
        rid, code, said = None, PARSE_ERROR, f"Parse error: {type(e).__name__}"
    answer = JSONRPCError(jsonrpc="2.0", id=rid, error=ErrorData(code=code, message=said))
    return answer, f"gitbus mcp: answered a message it could not read (id {json.dumps(rid)}): {said}."


class Answering:
    """The stdio transport's read stream, less what it could not parse. The SDK passes such a line on
    as an exception, which its dispatcher drops, so the client would wait for its own timeout: here
    each is answered with a JSON-RPC error and a line on stderr, and the next message is read."""

    def __init__(self, inner: Any, write: Any) -> None:
        self._inner, self._write = inner, write

    @property
    def last_context(self) -> Any:  # the sender's context, which the dispatcher runs handlers in
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage:
        while True:
            item = await self._inner.receive()
            if not isinstance(item, Exception):
                return item  # type: ignore[no-any-return]
            errors = item.errors() if isinstance(item, ValidationError) else []
            if errors and isinstance(errors[0].get("input"), str) and not errors[0]["input"].strip():
                continue  # a blank line is no message
            answer, line = _answer_for(item)
            print(line, file=sys.stderr, flush=True)
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                await self._write.send(SessionMessage(answer))  # unless the client left

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> Answering:
        return self

    async def __anext__(self) -> SessionMessage:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Answering:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
