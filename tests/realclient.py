"""Real agent clients against a mock model: the harness of tests/test_claude_code.py.

The client binary is the real one, pinned in `clients.json` at the repository root and installed by
`.ci/install-clients` into `~/.cache/gitbus-clients/<client>@<version>/`. The model is a loopback
mock of the Anthropic Messages API (`MockAPI`): it answers from a script the test writes and records
every request body, which is exactly what the model was given; the tests assert on those bodies.

Nothing here talks to anything but 127.0.0.1, every wait is bounded, and the only processes ever
signalled are the ones a test started (a client's process group, a private tmux server, and hook
waiters whose environment names the test's own home).

bench/realclient.py drives the same harness outside pytest (it loads this file by its path), so pytest
is imported only where a test skips or fails.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PINS = ROOT / "clients.json"
# Read once at import, before the hermetic fixture points HOME at a temporary folder.
CACHE = Path(os.environ.get("GITBUS_CLIENTS_CACHE") or Path.home() / ".cache" / "gitbus-clients")
API_KEY = "sk-ant-gitbus-realclient-test-0123456789"
VENV_BIN = Path(sys.executable).parent


# -- the pinned client -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    """One agent client as `clients.json` pins it."""

    name: str
    package: str
    version: str
    bin: str

    @property
    def prefix(self) -> Path:
        return CACHE / f"{self.name}@{self.version}"

    @property
    def binary(self) -> Path:
        return self.prefix / "node_modules" / ".bin" / self.bin


def pinned(name: str) -> Client:
    entry = json.loads(PINS.read_text())[name]
    return Client(name, entry["package"], entry["version"], entry["bin"])


def installed_version(binary: Path) -> str:
    """The version the binary says it is ("" when it cannot say)."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    # "2.1.328 (Claude Code)", "codex-cli 0.169.0", "0.61.0": the first word that reads as a version
    return next((w for w in out.split() if w[:1].isdigit() and "." in w), "")


def missing(name: str) -> str:
    """Why the pinned client `name` cannot run here ("" when it can)."""
    c = pinned(name)
    if not shutil.which("node") or not shutil.which("npm"):
        return "node/npm not found"
    if not c.binary.exists():
        return f"{c.package}@{c.version} not installed at {c.prefix} (run .ci/install-clients)"
    if installed_version(c.binary) != c.version:
        return f"{c.binary} is not version {c.version} (run .ci/install-clients)"
    return ""


def require(name: str) -> Client:
    """The pinned client, installed; else a failure when `CI` is set, a skip otherwise."""
    import pytest

    why = missing(name)
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"real client {name}: {why}", pytrace=False)
        pytest.skip(f"real client {name}: {why}")
    return pinned(name)


# -- what the model received -------------------------------------------------------------------------


def block_text(block: Any) -> str:
    """The text of one content block as the model reads it (tool_use input as JSON)."""
    if isinstance(block, str):
        return block
    if not isinstance(block, dict):
        return ""
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "tool_result":
        return content_text(block.get("content"))
    if kind == "tool_use":
        return json.dumps(block.get("input"))
    return ""


def content_text(content: Any) -> str:
    if isinstance(content, list):
        return "\n".join(block_text(b) for b in content)
    return block_text(content)


_SECTION = re.compile(r"\n\n(?=# |\S+ hook additional context: )")


def _as_list(content: Any) -> list[Any]:
    if content is None:
        return []
    return content if isinstance(content, list) else [content]


@dataclass(frozen=True)
class Block:
    """One content block of a request: which message (-1: the system prompt), whose, what kind."""

    message: int
    role: str
    kind: str
    text: str


@dataclass
class Request:
    """One recorded request to the mock."""

    n: int
    path: str
    body: dict[str, Any]
    at: float  # time.monotonic()

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    @property
    def tool_names(self) -> list[str]:
        return [str(t.get("name")) for t in self.body.get("tools") or [] if isinstance(t, dict)]

    @property
    def main(self) -> bool:
        """The agent loop itself (not a title, a token count or a quick side question): it offers the
        model the coding tools."""
        return (
            self.path.startswith("/v1/messages")
            and "count_tokens" not in self.path
            and ("Bash" in self.tool_names)
        )

    def system_text(self) -> str:
        return content_text(self.body.get("system"))

    def received(self) -> str:
        """Everything the model was given in this request: the system prompt and every message that is
        not its own (user turns, tool results, mid-conversation system turns)."""
        parts = [self.system_text()]
        parts += [content_text(m.get("content")) for m in self.messages if m.get("role") != "assistant"]
        return "\n".join(parts)

    def blocks(self) -> list[Block]:
        """Every block the model was given, in order: the system prompt's (message -1), then each
        message's; the model's own turns are included (role "assistant") so callers can tell them apart."""
        out = [Block(-1, "system", "system", block_text(b)) for b in _as_list(self.body.get("system"))]
        for i, m in enumerate(self.messages):
            for b in _as_list(m.get("content")):
                kind = b.get("type", "text") if isinstance(b, dict) else "text"
                out.append(Block(i, str(m.get("role")), str(kind), block_text(b)))
        return out

    def where(self, text: str) -> list[Block]:
        """The blocks given to the model (not its own) that hold `text`."""
        return [b for b in self.blocks() if b.role != "assistant" and text in b.text]

    def hook_context(self, event: str) -> list[str]:
        """What hooks of `event` added for the model, as Claude Code labels it ("SessionStart hook
        additional context: …", "PostToolUse:Bash hook additional context: …"). Claude Code joins its
        own sections to the same block after a blank line, each opening with a `# ` heading or another
        hook's label: the context ends before the first of those."""
        return [
            _SECTION.split(b.text, maxsplit=1)[0]
            for b in self.blocks()
            if b.role != "assistant" and b.text.startswith(event) and "hook additional context:" in b.text
        ]

    def tail(self) -> list[dict[str, Any]]:
        """The messages after the model's last turn: what this request adds to the conversation."""
        msgs = self.messages
        last = max((i for i, m in enumerate(msgs) if m.get("role") == "assistant"), default=-1)
        return msgs[last + 1 :]

    def tail_text(self) -> str:
        return "\n".join(content_text(m.get("content")) for m in self.tail())

    def tool_results(self) -> list[dict[str, Any]]:
        """Every tool_result block in the conversation, in order."""
        return [
            b
            for m in self.messages
            if m.get("role") == "user" and isinstance(m.get("content"), list)
            for b in m["content"]
            if isinstance(b, dict) and b.get("type") == "tool_result"
        ]

    def tool_uses(self) -> list[dict[str, Any]]:
        return [
            b
            for m in self.messages
            if m.get("role") == "assistant" and isinstance(m.get("content"), list)
            for b in m["content"]
            if isinstance(b, dict) and b.get("type") == "tool_use"
        ]

    def result_for(self, tool_use_id: str) -> dict[str, Any] | None:
        return next((b for b in self.tool_results() if b.get("tool_use_id") == tool_use_id), None)

    def prompt(self) -> str:
        """The text of the latest user turn that is more than tool results (what starts a turn)."""
        for m in reversed(self.messages):
            content = m.get("content")
            if m.get("role") != "user":
                continue
            if isinstance(content, str):
                return content
            if isinstance(content, list) and not any(
                isinstance(b, dict) and b.get("type") == "tool_result" for b in content
            ):
                return content_text(content)
        return ""

    def step(self) -> int:
        """How many tool calls the model made since the turn began (the last user turn that is not
        tool results: a prompt, or a wake-up), counted as the assistant turns after it."""
        msgs = self.messages
        start = max(
            (
                i
                for i, m in enumerate(msgs)
                if m.get("role") == "user"
                and not any(
                    isinstance(b, dict) and b.get("type") == "tool_result" for b in m.get("content") or []
                )
            ),
            default=0,
        )
        return sum(1 for m in msgs[start:] if m.get("role") == "assistant")


# -- replies -----------------------------------------------------------------------------------------


@dataclass
class Reply:
    """What the mock model says: text, then tool calls (each (name, input))."""

    text: str = ""
    tools: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def say(text: str) -> Reply:
    return Reply(text=text)


def use(name: str, **tool_input: Any) -> Reply:
    return Reply(tools=[(name, tool_input)])


Script = Callable[[Request], Reply | None]


def _message(n: int, model: str, reply: Reply) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    blocks: list[dict[str, Any]] = []
    if reply.text or not reply.tools:
        blocks.append({"type": "text", "text": reply.text or "OK."})
    for i, (name, tool_input) in enumerate(reply.tools):
        blocks.append({"type": "tool_use", "id": f"toolu_{n:04d}_{i}", "name": name, "input": tool_input})
    stop = "tool_use" if reply.tools else "end_turn"
    head: dict[str, Any] = {
        "id": f"msg_mock_{n:04d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 100, "output_tokens": 1},
    }
    return head, blocks, stop


def _sse(n: int, model: str, reply: Reply) -> Iterator[bytes]:
    head, blocks, stop = _message(n, model, reply)

    def event(kind: str, data: dict[str, Any]) -> bytes:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

    yield event("message_start", {"message": head})
    for i, b in enumerate(blocks):
        if b["type"] == "text":
            yield event("content_block_start", {"index": i, "content_block": {"type": "text", "text": ""}})
            delta = {"type": "text_delta", "text": b["text"]}
        else:
            start = {**b, "input": {}}
            yield event("content_block_start", {"index": i, "content_block": start})
            delta = {"type": "input_json_delta", "partial_json": json.dumps(b["input"])}
        yield event("content_block_delta", {"index": i, "delta": delta})
        yield event("content_block_stop", {"index": i})
    yield event(
        "message_delta",
        {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 10}},
    )
    yield event("message_stop", {})


class MockAPI:
    """A loopback Anthropic Messages API: `script` answers the agent loop, every request is recorded.

    `script(request)` returns the `Reply` for a main-loop request (None: a plain "OK."); anything else
    (titles, quota checks, side questions) gets plain text. The script runs before the reply is sent,
    so a script that posts a peer's message does so between two of the model's tool calls.
    A mock of another vendor's API (tests/vendorapis.py) overrides `request_class` and `_answer`."""

    request_class: type[Request] = Request

    def __init__(self, script: Script | None = None) -> None:
        self.script: Script = script or (lambda r: None)
        self.requests: list[Request] = []
        self.errors: list[str] = []
        self.turn_over = False  # the last main-loop request was answered with the end of the turn
        self._cond = threading.Condition()
        self._n = itertools.count()
        mock = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                mock._record(self.path, {"method": "GET"})
                self._send(404, b"{}")

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"unparsed": raw.decode(errors="replace")}
                req = mock._record(self.path, body)
                try:
                    mock._answer(self, req)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                except Exception as e:  # a broken script must fail the test, not hang the client
                    mock.errors.append(f"request {req.n}: {type(e).__name__}: {e}")
                    self._send(500, json.dumps({"type": "error", "error": {"message": str(e)}}).encode())

            def _send(self, code: int, data: bytes, kind: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> MockAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        keep = os.environ.get("GITBUS_REALCLIENT_DUMP")
        if keep:  # a debugging aid: every body this mock received, one file per mock
            test = os.environ.get("PYTEST_CURRENT_TEST", "mock").split(" ")[0]
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", test) + f"-{self.server.server_address[1]}.json"
            Path(keep).mkdir(parents=True, exist_ok=True)
            (Path(keep) / name).write_text(
                json.dumps([{"n": r.n, "path": r.path, "body": r.body} for r in self.requests], indent=1)
            )

    def _record(self, path: str, body: dict[str, Any]) -> Request:
        with self._cond:
            req = self.request_class(next(self._n), path, body, time.monotonic())
            self.requests.append(req)
            self._cond.notify_all()
        return req

    def _answer(self, h: BaseHTTPRequestHandler, req: Request) -> None:
        send = h._send  # type: ignore[attr-defined]
        if "count_tokens" in req.path:
            send(200, json.dumps({"input_tokens": 100}).encode())
            return
        if not req.path.startswith("/v1/messages"):
            send(404, b"{}")
            return
        if req.main:
            self.turn_over = False
        reply = (self.script(req) if req.main else None) or say("OK.")
        model = str(req.body.get("model") or "claude-mock")
        if not req.body.get("stream"):
            head, blocks, stop = _message(req.n, model, reply)
            send(200, json.dumps({**head, "content": blocks, "stop_reason": stop}).encode())
        else:
            h.send_response(200)
            h.send_header("content-type", "text/event-stream")
            h.send_header("cache-control", "no-cache")
            h.send_header("connection", "close")
            h.end_headers()
            for chunk in _sse(req.n, model, reply):
                h.wfile.write(chunk)
                h.wfile.flush()
            h.close_connection = True
        if req.main and not reply.tools:
            self.turn_over = True

    # -- reading what was recorded

    def main_requests(self) -> list[Request]:
        with self._cond:
            return [r for r in self.requests if r.main]

    def wait_for(self, pred: Callable[[Request], bool], timeout: float, after: int = 0) -> Request | None:
        """The first recorded request numbered `after` or later for which `pred` holds, waiting up to
        `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hit = next((r for r in self.requests if r.n >= after and pred(r)), None)
                if hit is not None:
                    return hit
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def count(self) -> int:
        with self._cond:
            return len(self.requests)


def once_per_step(plan: Mapping[int, Reply], final: str = "Done.") -> Script:
    """A script for one turn: at step k (k tool calls made so far) say `plan[k]`; past the plan, `final`."""

    def script(req: Request) -> Reply:
        return plan.get(req.step(), say(final))

    return script


# -- the client's environment ----------------------------------------------------------------------------


def client_env(home: Path, api: MockAPI, **extra: str) -> dict[str, str]:
    """The environment a client runs in: this test's home, the mock as the API, the venv's gitbus first
    on PATH, nothing sent anywhere else."""
    env = dict(os.environ)
    for var in list(env):
        if var.startswith(("ANTHROPIC_", "CLAUDE_", "CLAUDECODE", "TMUX")):
            del env[var]
    env.update(
        HOME=str(home),
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        ANTHROPIC_BASE_URL=api.url,
        ANTHROPIC_API_KEY=API_KEY,
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
        DISABLE_TELEMETRY="1",
        DISABLE_ERROR_REPORTING="1",
        IS_SANDBOX="1",  # bypass-permissions mode is refused to root otherwise
        # The client waits 5 s for MCP servers before its first request; `gitbus mcp` answers in
        # about 0.4 s, but on a loaded CI machine the SDK's import alone can take longer than that.
        MCP_CONNECT_TIMEOUT_MS="30000",
        NO_PROXY="127.0.0.1,localhost",
        TERM="xterm-256color",
        **extra,
    )
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(var, None)
    return env


def seed_home(home: Path, trusted: Iterable[Path]) -> None:
    """What a person's first interactive run would have left in `home` (each key found needed by
    experiment with 2.1.328; without one, the session stops at a screen): onboarding done (else it
    tries the network and exits), the folders trusted (else the trust dialog; settings hooks are held
    back until then; trusting the main checkout covers its worktrees), the API key approved (else "Do
    you want to use this API key?", default No), and bypass-permissions mode accepted (else its warning
    screen, default "No, exit")."""
    home.mkdir(parents=True, exist_ok=True)
    state = {
        "hasCompletedOnboarding": True,
        "customApiKeyResponses": {"approved": [API_KEY[-20:]], "rejected": []},
        "bypassPermissionsModeAccepted": True,
        "projects": {str(p): {"hasTrustDialogAccepted": True} for p in trusted},
    }
    (home / ".claude.json").write_text(json.dumps(state, indent=2))


# -- running the client --------------------------------------------------------------------------------


@dataclass
class Run:
    code: int | None  # None: still running at the deadline, so killed with its group
    stdout: str
    stderr: str
    seconds: float  # from the spawn to the exit (or to the deadline)
    started: float = 0.0  # time.monotonic() just before the spawn, the clock of Request.at

    @property
    def result(self) -> dict[str, Any]:
        """`--output-format json`'s result object ({} when stdout is not one)."""
        try:
            out = json.loads(self.stdout)
        except ValueError:
            return {}
        return out if isinstance(out, dict) else {}


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal the process group led by `pid`, a process this test started in a session of its own."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def run_print(
    client: Client,
    cwd: Path,
    prompt: str,
    env: Mapping[str, str],
    timeout: float,
    done: Callable[[], bool] | None = None,
    grace: float = 10.0,
    args: Iterable[str] = (),
) -> Run:
    """`claude -p PROMPT` in `cwd`, in a session of its own, killed with its group at `timeout`; or,
    once `done()` holds (the mock answered the turn's end), when `grace` more seconds have passed."""
    cmd = [
        str(client.binary),
        "-p",
        prompt,
        "--output-format",
        "json",
        "--dangerously-skip-permissions",
        *args,
    ]
    return run_argv(cmd, cwd, env, timeout, done, grace)


def run_argv(
    cmd: list[str],
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    done: Callable[[], bool] | None = None,
    grace: float = 10.0,
) -> Run:
    """`cmd` in `cwd`, in a session of its own, stdin closed, killed with its group at `timeout`; or,
    once `done()` holds, when `grace` more seconds have passed."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        deadline, code = t0 + timeout, None
        try:
            if done is None:  # nothing to watch: wait for the exit itself (its time to the ms)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = proc.wait(timeout=timeout)
            while code is None and (code := proc.poll()) is None and time.monotonic() < deadline:
                if done is not None and done():
                    deadline, done = min(deadline, time.monotonic() + grace), None
                time.sleep(0.05)
            ended = time.monotonic()
        finally:
            kill_group(proc.pid)  # at the deadline, and whatever it left behind in its group
            proc.wait(timeout=10)
        out.seek(0)
        err.seek(0)
        return Run(code, out.read(), err.read(), ended - t0, t0)


class Tmux:
    """A private tmux server (its own socket name) running one interactive client; killed at exit."""

    def __init__(self, env: Mapping[str, str], cwd: Path, width: int = 160, height: int = 50) -> None:
        self.socket = f"gitbus-rc-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.env, self.cwd, self.size = dict(env), cwd, (width, height)

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=20,
            check=check,
        )

    def start(self, argv: list[str]) -> None:
        w, h = self.size
        self.tmux("new-session", "-d", "-s", "t", "-x", str(w), "-y", str(h), shlex.join(["exec", *argv]))

    def pane_pid(self) -> int:
        return int(self.tmux("display-message", "-p", "-t", "t", "#{pane_pid}").stdout.strip())

    def screen(self) -> str:
        r = self.tmux("capture-pane", "-p", "-t", "t", check=False)
        return "\n" + "\n".join(line.rstrip() for line in r.stdout.rstrip().splitlines())

    def send(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def type_line(self, text: str) -> None:
        """Type `text` literally, then Enter as a key of its own (a paste would not submit)."""
        self.tmux("send-keys", "-t", "t", "-l", text)
        time.sleep(0.3)
        self.tmux("send-keys", "-t", "t", "Enter")

    def wait_screen(self, pred: Callable[[str], bool], timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.screen()
            if pred(s):
                return s
            time.sleep(0.25)
        return None

    def kill_server(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.tmux("kill-server", check=False)

    def __enter__(self) -> Tmux:
        import pytest

        if not shutil.which("tmux"):
            if os.environ.get("CI"):
                pytest.fail("tmux not found (CI installs it in .ci/run)", pytrace=False)
            pytest.skip("tmux not found")
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill_server()


# -- processes tied to this test --------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    cmdline: list[str]


def _read_proc(pid: int) -> tuple[list[str], dict[str, str], int] | None:
    """(argv, environment, parent pid) of a live process; None when gone, a zombie, or not ours to read."""
    base = Path("/proc") / str(pid)
    try:
        stat = (base / "stat").read_text()
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        cmd = [a.decode(errors="replace") for a in (base / "cmdline").read_bytes().split(b"\0") if a]
        env_raw = (base / "environ").read_bytes()
    except (OSError, ValueError):
        return None
    if state in ("Z", "X"):
        return None
    env = {}
    for item in env_raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            env[k.decode(errors="replace")] = v.decode(errors="replace")
    return cmd, env, int(ppid)


def processes_under(home: Path, needle: str = "") -> list[Proc]:
    """Live processes started under this test's home (their environment's HOME is it: every test has
    its own) whose command line holds `needle`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        info = _read_proc(int(entry.name))
        if info is not None and info[1].get("HOME") == str(home) and needle in " ".join(info[0]):
            found.append(Proc(int(entry.name), info[2], info[0]))
    return found


def waiters(home: Path) -> list[Proc]:
    """Live `gitbus hook wake` processes (the asyncRewake waiter and its `/bin/sh -c`) under this test's
    home."""
    return [p for p in processes_under(home, "hook wake") if "gitbus" in " ".join(p.cmdline)]


def clients(home: Path, client: Client) -> list[Proc]:
    """Live processes of `client` itself started under this test's home."""
    return [p for p in processes_under(home, str(client.binary)) if p.cmdline[:1] == [str(client.binary)]]


def wait_until(pred: Callable[[], bool], timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)


def reap(home: Path) -> None:
    """Kill what a test's clients left running under its home (hook waiters, MCP servers, clients)."""
    for p in processes_under(home):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p.pid, signal.SIGKILL)
