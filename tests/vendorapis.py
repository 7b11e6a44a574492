"""Codex CLI and Gemini CLI against loopback mocks of their model APIs (the Claude Code harness is
tests/realclient.py, which this extends).

`OpenAIMock` answers the OpenAI Responses API as Codex calls it (`POST /v1/responses`, streamed as
server-sent events); `GeminiMock` answers the Gemini API as Gemini CLI calls it
(`POST /v1beta/models/<model>:streamGenerateContent?alt=sse`, plus one `:generateContent` for its
model router). Each records every request body, which is exactly what the model was given, and
reads it through the same questions as the Claude mock (`received`, `tail_text`, `step`, `where`).

How each client is run offline (found by running 0.169.0 and 0.61.0): Codex takes a model provider
from `$CODEX_HOME/config.toml` (`wire_api = "responses"`, no OpenAI login), trusts the project
named there, and runs project hooks only when trusted by hash or with
`--dangerously-bypass-hook-trust` (these tests use the flag; people trust them once with /hooks).
Gemini CLI takes its base URL from `GOOGLE_GEMINI_BASE_URL`, an API key from `GEMINI_API_KEY`
(with `security.auth.selectedType` set in the user settings, else `-p` refuses), and trusts the
folder through `GEMINI_CLI_TRUST_WORKSPACE=true` (an untrusted folder's `.gemini/settings.json`,
hooks and MCP servers included, is ignored).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from . import realclient as rc
from .realclient import Block, MockAPI, Reply, Request, say

MOCK_KEY = "gitbus-realclient-test-key"
CODEX_MODEL = "gpt-5.5"  # a model Codex knows: it offers apply_patch (an unknown name gets none)


def strings(obj: Any) -> str:
    """Every string inside `obj`, joined: what a model reads of a structured tool result."""
    if isinstance(obj, str):
        return obj
    if isinstance(obj, dict):
        return "\n".join(strings(v) for v in obj.values())
    if isinstance(obj, list):
        return "\n".join(strings(v) for v in obj)
    return ""


# -- OpenAI Responses API (Codex) ------------------------------------------------------------------


_MODEL_ITEMS = ("function_call", "custom_tool_call", "reasoning")
_CALLS = ("function_call", "custom_tool_call")


class ResponsesRequest(Request):
    """A Responses API request: `instructions` and `input`, a list of items (messages by role, the
    model's tool calls, and their outputs)."""

    @property
    def items(self) -> list[dict[str, Any]]:
        return [i for i in self.body.get("input") or [] if isinstance(i, dict)]

    @property
    def tool_names(self) -> list[str]:
        tools = self.body.get("tools") or []
        return [str(t.get("name") or t.get("type")) for t in tools if isinstance(t, dict)]

    @property
    def main(self) -> bool:
        return self.path.split("?")[0].rstrip("/").endswith("/responses") and bool(self.body.get("tools"))

    @staticmethod
    def from_model(item: dict[str, Any]) -> bool:
        return item.get("type") in _MODEL_ITEMS or item.get("role") == "assistant"

    @staticmethod
    def item_text(item: dict[str, Any]) -> str:
        kind = item.get("type")
        if kind == "message":
            return strings([c.get("text") for c in item.get("content") or [] if isinstance(c, dict)])
        if kind == "function_call":
            return str(item.get("arguments") or "")
        if kind == "custom_tool_call":
            return str(item.get("input") or "")
        if kind in ("function_call_output", "custom_tool_call_output"):
            return strings(item.get("output"))
        return ""

    def blocks(self) -> list[Block]:
        out = [Block(-1, "system", "system", str(self.body.get("instructions") or ""))]
        for i, item in enumerate(self.items):
            role = "assistant" if self.from_model(item) else str(item.get("role") or "tool")
            out.append(Block(i, role, str(item.get("type")), self.item_text(item)))
        return out

    def received(self) -> str:
        return "\n".join(b.text for b in self.blocks() if b.role != "assistant")

    def tail_text(self) -> str:
        items = self.items
        last = max((i for i, it in enumerate(items) if self.from_model(it)), default=-1)
        return "\n".join(self.item_text(it) for it in items[last + 1 :])

    def step(self) -> int:
        items = self.items
        start = max((i for i, it in enumerate(items) if it.get("role") == "user"), default=0)
        return sum(1 for it in items[start:] if it.get("type") in _CALLS)

    def outputs(self) -> dict[str, str]:
        """Each tool call's output by its call id."""
        return {
            str(it.get("call_id")): strings(it.get("output"))
            for it in self.items
            if it.get("type") in ("function_call_output", "custom_tool_call_output")
        }

    def calls(self) -> list[dict[str, Any]]:
        return [it for it in self.items if it.get("type") in _CALLS]


def shell(cmd: str) -> Reply:
    """Codex's shell tool."""
    return Reply(tools=[("exec_command", {"cmd": cmd})])


def apply_patch(patch: str) -> Reply:
    """Codex's edit tool: a freeform tool whose input is the patch."""
    return Reply(tools=[("apply_patch", {"patch": patch})])


class OpenAIMock(MockAPI):
    """A loopback OpenAI Responses API, streamed as Codex asks for it."""

    request_class = ResponsesRequest

    def _answer(self, h: BaseHTTPRequestHandler, req: Request) -> None:
        send = h._send  # type: ignore[attr-defined]
        if not req.path.split("?")[0].rstrip("/").endswith("/responses"):
            send(404, b"{}")
            return
        if req.main:
            self.turn_over = False
        reply = (self.script(req) if req.main else None) or say("OK.")
        items: list[dict[str, Any]] = []
        if reply.text or not reply.tools:
            content = [{"type": "output_text", "text": reply.text or "OK.", "annotations": []}]
            items.append({"type": "message", "role": "assistant", "id": f"msg_{req.n}", "content": content})
        for i, (name, args) in enumerate(reply.tools):
            call_id = f"call_{req.n:04d}_{i}"
            if name == "apply_patch":
                patch = args["patch"]
                items.append({"type": "custom_tool_call", "name": name, "input": patch, "call_id": call_id})
            else:
                items.append(
                    {"type": "function_call", "name": name, "arguments": json.dumps(args), "call_id": call_id}
                )
        rid = f"resp_{req.n:04d}"
        usage = {"input_tokens": 100, "output_tokens": 10, "total_tokens": 110}
        events = [
            {"type": "response.created", "response": {"id": rid}},
            *({"type": "response.output_item.done", "item": it} for it in items),
            {"type": "response.completed", "response": {"id": rid, "usage": usage}},
        ]
        h.send_response(200)
        h.send_header("content-type", "text/event-stream")
        h.send_header("connection", "close")
        h.end_headers()
        for e in events:
            h.wfile.write(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode())
        h.wfile.flush()
        h.close_connection = True
        if req.main and not reply.tools:
            self.turn_over = True


def codex_env(home: Path, api: MockAPI, trusted: list[Path]) -> dict[str, str]:
    """Codex's home pointed at `api`, the projects `trusted` (their worktrees follow the main
    checkout); nothing of the user's own Codex setup."""
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    projects = "".join(f'\n[projects.{json.dumps(str(p))}]\ntrust_level = "trusted"\n' for p in trusted)
    (codex_home / "config.toml").write_text(
        f'model_provider = "mock"\nmodel = "{CODEX_MODEL}"\n'
        "[model_providers.mock]\n"
        f'name = "mock"\nbase_url = "{api.url}/v1"\nwire_api = "responses"\n'
        'env_key = "GITBUS_MOCK_KEY"\nrequires_openai_auth = false\n'
        "request_max_retries = 0\nstream_max_retries = 0\n"
        "[analytics]\nenabled = false\n" + projects
    )
    env = rc.client_env(home, api, CODEX_HOME=str(codex_home), GITBUS_MOCK_KEY=MOCK_KEY)
    for var in list(env):
        if var.startswith(("OPENAI_", "CODEX_")) and var != "CODEX_HOME":
            del env[var]
    return env


def run_codex(client: rc.Client, cwd: Path, prompt: str, env: dict[str, str], api: MockAPI) -> rc.Run:
    cmd = [
        str(client.binary),
        "exec",
        "-m",
        CODEX_MODEL,
        "--skip-git-repo-check",
        "--dangerously-bypass-approvals-and-sandbox",
        "--dangerously-bypass-hook-trust",  # hooks are trusted by hash, once, in /hooks; not here
        prompt,
    ]
    return rc.run_argv(cmd, cwd, env, RUN_TIMEOUT, done=lambda: api.turn_over, grace=GRACE)


# -- Gemini API (Gemini CLI) -----------------------------------------------------------------------


class GeminiRequest(Request):
    """A generateContent request: `systemInstruction` and `contents`, turns of `user` and `model`
    whose parts are text, the model's function calls, and their responses."""

    @property
    def contents(self) -> list[dict[str, Any]]:
        return [c for c in self.body.get("contents") or [] if isinstance(c, dict)]

    @property
    def tool_names(self) -> list[str]:
        return [
            str(f.get("name"))
            for t in self.body.get("tools") or []
            if isinstance(t, dict)
            for f in t.get("functionDeclarations") or []
        ]

    @property
    def main(self) -> bool:
        return "streamGenerateContent" in self.path and bool(self.body.get("tools"))

    @staticmethod
    def part_text(part: Any) -> tuple[str, str]:
        """(kind, text) of one part."""
        if not isinstance(part, dict):
            return "text", ""
        if "text" in part:
            return "text", str(part["text"])
        if "functionCall" in part:
            return "functionCall", json.dumps((part["functionCall"] or {}).get("args"))
        if "functionResponse" in part:
            return "functionResponse", strings((part["functionResponse"] or {}).get("response"))
        return "other", ""

    def blocks(self) -> list[Block]:
        system = (self.body.get("systemInstruction") or {}).get("parts") or []
        out = [Block(-1, "system", "system", self.part_text(p)[1]) for p in system]
        for i, c in enumerate(self.contents):
            role = "assistant" if c.get("role") == "model" else str(c.get("role") or "user")
            for p in c.get("parts") or []:
                kind, text = self.part_text(p)
                out.append(Block(i, role, kind, text))
        return out

    def received(self) -> str:
        return "\n".join(b.text for b in self.blocks() if b.role != "assistant")

    def tail_text(self) -> str:
        contents = self.contents
        last = max((i for i, c in enumerate(contents) if c.get("role") == "model"), default=-1)
        return "\n".join(self.part_text(p)[1] for c in contents[last + 1 :] for p in c.get("parts") or [])

    def _prompt_turn(self, c: dict[str, Any]) -> bool:
        parts = c.get("parts") or []
        results = any(isinstance(p, dict) and "functionResponse" in p for p in parts)
        return c.get("role") == "user" and not results

    def step(self) -> int:
        contents = self.contents
        start = max((i for i, c in enumerate(contents) if self._prompt_turn(c)), default=0)
        return sum(
            1
            for c in contents[start:]
            if c.get("role") == "model"
            for p in c.get("parts") or []
            if isinstance(p, dict) and "functionCall" in p
        )

    def responses(self) -> list[tuple[str, str]]:
        """(tool name, what the model read of its result), in order."""
        return [
            (str(p["functionResponse"].get("name")), self.part_text(p)[1])
            for c in self.contents
            for p in c.get("parts") or []
            if isinstance(p, dict) and isinstance(p.get("functionResponse"), dict)
        ]


def call(name: str, **args: Any) -> Reply:
    """A Gemini function call."""
    return Reply(tools=[(name, args)])


ROUTE = {  # what its router's two classifiers ask for
    "complexity_reasoning": "a small task",
    "complexity_score": 1,
    "reasoning": "a small task",
    "model_choice": "flash",
}


class GeminiMock(MockAPI):
    """A loopback Gemini API, as Gemini CLI calls it."""

    request_class = GeminiRequest

    def _answer(self, h: BaseHTTPRequestHandler, req: Request) -> None:
        send = h._send  # type: ignore[attr-defined]
        if "countTokens" in req.path:
            send(200, b'{"totalTokens": 100}')
            return
        if ":generateContent" in req.path:  # its model router asks which model fits the prompt
            text = json.dumps(ROUTE)
            send(200, json.dumps(_candidate([{"text": text}])).encode())
            return
        if "streamGenerateContent" not in req.path:
            send(404, b"{}")
            return
        if req.main:
            self.turn_over = False
        reply = (self.script(req) if req.main else None) or say("OK.")
        parts: list[dict[str, Any]] = []
        if reply.text or not reply.tools:
            parts.append({"text": reply.text or "OK."})
        parts += [{"functionCall": {"name": n, "args": a}} for n, a in reply.tools]
        h.send_response(200)
        h.send_header("content-type", "text/event-stream")
        h.send_header("connection", "close")
        h.end_headers()
        h.wfile.write(f"data: {json.dumps(_candidate(parts))}\r\n\r\n".encode())
        h.wfile.flush()
        h.close_connection = True
        if req.main and not reply.tools:
            self.turn_over = True


def _candidate(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 10, "totalTokenCount": 110},
    }


def gemini_env(home: Path, api: MockAPI) -> dict[str, str]:
    """Gemini CLI's home pointed at `api`, with an API key, no telemetry, no update checks."""
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    settings = {
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
    }
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings, indent=2))
    env = rc.client_env(
        home,
        api,
        GEMINI_API_KEY=MOCK_KEY,
        GOOGLE_GEMINI_BASE_URL=api.url,
        GEMINI_CLI_TRUST_WORKSPACE="true",
    )
    for var in list(env):
        if var.startswith(("GOOGLE_CLOUD", "GOOGLE_GENAI", "GOOGLE_API_KEY", "GOOGLE_APPLICATION")):
            del env[var]
    return env


def run_gemini(client: rc.Client, cwd: Path, prompt: str, env: dict[str, str], api: MockAPI) -> rc.Run:
    cmd = [str(client.binary), "-p", prompt, "--yolo"]
    return rc.run_argv(cmd, cwd, env, RUN_TIMEOUT, done=lambda: api.turn_over, grace=GRACE)


# -- a team of agents in worktrees ------------------------------------------------------------------

RUN_TIMEOUT = 60.0  # seconds a headless run may take at the most (Codex ~1 s, Gemini ~3 s here)
GRACE = 8.0  # …and after its turn ended, it has this long to exit before it is stopped


@dataclass
class Team:
    """Agents in worktrees of one repository, each joined under its name."""

    home: Path
    worktrees: dict[str, Path]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PATH": f"{rc.VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}

    def gitbus(self, agent: str, *args: str, ok: bool = True) -> str:
        """Run the gitbus CLI as `agent` (in its worktree), as another agent would; its stdout."""
        r = subprocess.run(
            [str(rc.VENV_BIN / "gitbus"), *args],
            cwd=self.worktrees[agent],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if ok:
            assert r.returncode == 0, f"gitbus {' '.join(args)} as {agent}: {r.stdout}{r.stderr}"
        return r.stdout + (r.stderr if not ok else "")


def make_team(tmp_path: Path, agents: list[str], installs: dict[str, str]) -> Iterator[Team]:
    """`agents[0]` in the main checkout, each other in worktree `wt-<name>`; `installs` maps an agent
    to the client gitbus is installed for from its worktree (`gitbus install <client>`)."""
    from .conftest import git, make_repo

    repo = make_repo(tmp_path / "main")
    trees = {agents[0]: repo}
    for a in agents[1:]:
        wt = tmp_path / f"wt-{a}"
        git(repo, "worktree", "add", "-q", "-b", f"wt-{a}", str(wt))
        trees[a] = wt
    t = Team(Path(os.environ["HOME"]), trees)
    for a in agents:
        t.gitbus(a, "join", "--name", a)
    for a, client in installs.items():
        t.gitbus(a, "install", client)
    try:
        yield t
    finally:
        rc.reap(t.home)


def told_once(api: MockAPI, text: str) -> Request:
    """`text` reached the model exactly once over the session: once in the final request, and added
    by exactly one request. Returns the first request that held it."""
    reqs = api.main_requests()
    assert reqs, f"the client never called the model; errors: {api.errors}"
    final = reqs[-1]
    assert final.received().count(text) == 1, f"{text!r} in the final request:\n{seen(api)}"
    added = sum(r.tail_text().count(text) for r in reqs)
    assert added == 1, f"{text!r} was added {added} times:\n{seen(api)}"
    return next(r for r in reqs if text in r.received())


def seen(api: MockAPI) -> str:
    """What the model was given over the session, for failure messages: the last request's parts."""
    reqs = api.main_requests()
    if not reqs:
        return f"(no request reached the mock; errors: {api.errors})"
    return "\n".join(f"{b.message}/{b.role}/{b.kind}: {b.text[:300]!r}" for b in reqs[-1].blocks()[-30:])
