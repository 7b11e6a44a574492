"""MCP Agent Mail as a baseline: sending messages and reserving files through its MCP tools, in process.

Agent Mail (PyPI `mcp-agent-mail`) keeps messages and file reservations in SQLite and mirrors each one
as files committed to a git archive. It is installed by the bench into its own virtual environment,
`bench/.venv-agentmail` (git-ignored; its dependencies would not fit gitbus's), and driven there by
this same file run as `python agentmail.py serve DIR`: one Agent Mail server built with
`mcp_agent_mail.app.build_mcp_server()` and one in-memory MCP client (`fastmcp.Client(server)`), so a
call costs what the server does plus MCP's in-process JSON-RPC, without HTTP. The server is Agent
Mail's unit of deployment (one server for every agent), so "8 agents at once" here is 8 calls in
flight on one server, not 8 servers on one store.

The tools timed: `send_message` (one recipient, like a gitbus message to one agent) and
`file_reservation_paths` (one fresh `pkg<i>/**` pattern, exclusive). Project and agents are
registered before timing (`ensure_project`, `register_agent`), LLM features off.

The driver speaks lines: `send K OPS` or `reserve K OPS` runs a warm-up, then OPS calls split over K
concurrent callers, and answers the aggregate calls/s as JSON. Nothing here may import gitbus: it runs
in Agent Mail's environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

PACKAGE, VERSION = "mcp-agent-mail", "0.1.0"
VENV = Path(__file__).resolve().parent / ".venv-agentmail"
AGENTS = (
    "BlueLake",
    "GreenCastle",
    "RedStone",
    "SilverFox",
    "AmberHill",
    "CopperRiver",
    "JadeMoon",
    "OakField",
)
RECIPIENT = "QuietHarbor"
WARMUP = 3


# -- the host side (gitbus's bench environment) ------------------------------------------------------


@dataclass(frozen=True)
class Install:
    python: Path | None  # None: could not be installed or imported here
    version: str
    seconds: float  # spent installing (0 when the environment was already there)
    tried: str  # what was done, for the report
    error: str  # the failure, if any


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _probe(python: Path) -> subprocess.CompletedProcess[str]:
    # The version only: importing the app takes seconds (litellm); the servers' start shows if it fails.
    code = "import importlib.metadata as m; print(m.version('mcp-agent-mail'), m.version('fastmcp'))"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False, timeout=300)


def ensure_installed(venv: Path = VENV) -> Install:
    """Agent Mail in `venv`, installed from PyPI with pip if it is not there yet."""
    python = venv / "bin" / "python"
    if python.exists():
        probe = _probe(python)
        if probe.returncode == 0:
            return Install(python, probe.stdout.split()[0], 0.0, f"reused {venv}", "")
    t0 = time.perf_counter()
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", f"{PACKAGE}=={VERSION}"],
    ]
    tried = " && ".join(" ".join(s) for s in steps)
    for step in steps:
        try:
            r = subprocess.run(step, capture_output=True, text=True, check=False, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as e:
            return Install(None, VERSION, time.perf_counter() - t0, tried, str(e))
        if r.returncode != 0:
            return Install(None, VERSION, time.perf_counter() - t0, tried, _tail(r.stderr or r.stdout))
    probe = _probe(python)
    if probe.returncode != 0:
        return Install(None, VERSION, time.perf_counter() - t0, tried, _tail(probe.stderr))
    return Install(python, probe.stdout.split()[0], time.perf_counter() - t0, tried, "")


@dataclass
class Outcome:
    """What happened with Agent Mail in one bench run, for the report."""

    install: Install
    started: float = 0.0  # seconds to start the servers
    probe: str = ""  # 8 callers on one server: its result or its error
    errors: list[str] = field(default_factory=list)


class Driver:
    """A running `agentmail.py serve` process in Agent Mail's environment."""

    def __init__(self, python: Path, d: Path, log: Path, register: bool = True) -> None:
        d.mkdir(parents=True, exist_ok=True)
        self.log = log
        self._err = log.open("w")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "GITBUS_"))}
        env.update(HOME=str(d / "home"), GIT_CONFIG_NOSYSTEM="1")
        self.proc = subprocess.Popen(
            [str(python), str(Path(__file__).resolve()), "serve", str(d), "register" if register else "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            env=env,
            cwd=d,
        )

    def expect(self, what: str) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith(what):
            self.close()
            raise RuntimeError(
                f"Agent Mail's driver said {line!r}; its log ends:\n{_tail(self.log.read_text())}"
            )
        return line

    def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()


class Servers:
    """`k` Agent Mail servers (one process each, as each agent's stdio MCP server) on one store in `d`."""

    def __init__(self, python: Path, d: Path, k: int) -> None:
        self.drivers: list[Driver] = []
        try:  # the first registers the project and the agents, then the others start together
            self.drivers.append(Driver(python, d, d.parent / f"{d.name}-0.log"))
            self.drivers[0].expect("ready")
            self.drivers += [Driver(python, d, d.parent / f"{d.name}-{j}.log", False) for j in range(1, k)]
            for drv in self.drivers[1:]:
                drv.expect("ready")
        except Exception:
            self.close()
            raise

    def run(self, what: str, k: int, ops: int) -> float:
        """Aggregate calls/s of `k` servers making `ops` calls of `what` ("send"/"reserve") each."""
        group = self.drivers[:k]
        for j, drv in enumerate(group):
            drv.say(f"prep {what} {j} {ops}")
        for drv in group:
            drv.expect("set")
        for drv in group:
            drv.say("go")
        spans = [json.loads(drv.expect("{")) for drv in group]
        return float(k * ops / (max(s["end"] for s in spans) - min(s["start"] for s in spans)))

    def gather(self, what: str, k: int, ops: int) -> tuple[float | None, str]:
        """`k` concurrent callers in the first server: (calls/s, "") or (None, the error)."""
        self.drivers[0].say(f"gather {what} {k} {ops}")
        got = json.loads(self.drivers[0].expect("{"))
        if "error" in got:
            return None, f"{got['error']} (after {got['after']:.0f} s)"
        return k * ops / (got["end"] - got["start"]), ""

    def close(self) -> None:
        for drv in self.drivers:
            drv.close()


# -- the driver side (Agent Mail's environment) ----------------------------------------------------


def _settings_env(d: Path) -> None:
    os.environ.update(
        STORAGE_ROOT=str(d / "archive"),
        DATABASE_URL=f"sqlite+aiosqlite:///{d / 'mail.sqlite3'}",
        LLM_ENABLED="false",
        MCP_TOOLS_MODE="extended",  # expose the reservation tools directly
        TOOLS_LOG_ENABLED="false",
        LOG_RICH_ENABLED="false",
        LOG_LEVEL="WARNING",
        FASTMCP_LOG_LEVEL="WARNING",
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # no network fetch at import
    )


async def _serve(d: Path, register: bool, out: IO[str]) -> None:
    import asyncio

    from fastmcp import Client  # type: ignore[import-not-found]
    from mcp_agent_mail.app import build_mcp_server  # type: ignore[import-not-found]

    async def quiet(_message: Any) -> None:
        return None

    project = str(d / "project")
    server = build_mcp_server()
    async with Client(server, log_handler=quiet) as client:
        if register:
            await client.call_tool("ensure_project", {"human_key": project})
            for name in (*AGENTS, RECIPIENT):
                await client.call_tool(
                    "register_agent",
                    {"project_key": project, "program": "bench", "model": "none", "name": name},
                )
        counter = iter(range(10**9))

        async def send(agent: str) -> None:
            i = next(counter)
            await client.call_tool(
                "send_message",
                {
                    "project_key": project,
                    "sender_name": agent,
                    "to": [RECIPIENT],
                    "subject": f"finding {i}",
                    "body_md": f"message {i}: the handler retries {i % 9} times",
                },
            )

        async def reserve(agent: str) -> None:
            i = next(counter)
            r = await client.call_tool(
                "file_reservation_paths",
                {
                    "project_key": project,
                    "agent_name": agent,
                    "paths": [f"{agent.lower()}/pkg{i}/**"],
                    "ttl_seconds": 3600,
                },
            )
            if not r.structured_content or len(r.structured_content.get("granted", ())) != 1:
                raise RuntimeError(f"file_reservation_paths granted nothing: {r.structured_content}")

        ops = {"send": send, "reserve": reserve}

        async def caller(op: Any, agent: str, n: int) -> None:
            for _ in range(n):
                await op(agent)

        print("ready", file=out, flush=True)
        while line := await asyncio.to_thread(sys.stdin.readline):
            what, k, n = line.split()[1:]
            op = ops[what]
            if line.startswith("prep "):  # one caller in this process, started with the others by `go`
                for _j in range(WARMUP):
                    await op(AGENTS[int(k)])
                print("set", file=out, flush=True)
                await asyncio.to_thread(sys.stdin.readline)
                t0 = time.monotonic()
                await caller(op, AGENTS[int(k)], int(n))
                print(json.dumps({"start": t0, "end": time.monotonic()}), file=out, flush=True)
            else:  # "gather": k callers at once in this one server
                t0 = time.monotonic()
                try:
                    await asyncio.gather(*(caller(op, AGENTS[j], int(n)) for j in range(int(k))))
                    done: dict[str, object] = {"start": t0, "end": time.monotonic()}
                except Exception as e:
                    done = {"error": f"{type(e).__name__}: {e}", "after": time.monotonic() - t0}
                print(json.dumps(done), file=out, flush=True)


def serve(d: Path, register: bool) -> None:
    import asyncio

    _settings_env(d)
    out = sys.stdout
    sys.stdout = sys.stderr  # whatever Agent Mail prints must not reach the protocol
    asyncio.run(_serve(d, register, out))


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(Path(sys.argv[2]), sys.argv[3] == "register")
