"""The root of the `gitbus` command: the typer app, its global options, the consoles, the option types
the commands share, and the one place a failure becomes an exit code.

Exit codes: 0 success, 1 a user error (any `GitbusError`), 2 a malformed command line, 3 a conflict
(claim or request held by another agent), 4 the bus stayed locked; the table is `EXIT_CODES`, and
docs/cli.md's table is checked against it. `quick.fail` is the one place that turns a `GitbusError`
into its line and exit code (`_Group.invoke` calls it here, `quick.run` for the everyday commands);
`_Group.main` handles a malformed command line (click's `UsageError`).

The commands live beside this module, grouped by concept, and `gitbus.cli` registers them on `app`
in the order `--help` lists them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.core import TyperArgument, TyperGroup, TyperOption

from gitbus import quick
from gitbus.bus import Bus
from gitbus.errors import ClaimConflict, Conflict, Contended, GitbusError, NotFound


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """Rich exits 1 when the reader of a pipe goes away; for gitbus that is a quiet success."""
        self.quiet = True
        quick.reader_gone()
        raise SystemExit(0)


out = _Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, emoji=False)


USAGE = 2  # a malformed command line: unknown command or option, a missing or invalid argument

EXIT_CODES: dict[int, tuple[type[GitbusError], ...]] = {
    1: (GitbusError, NotFound),
    3: (Conflict, ClaimConflict),
    4: (Contended,),
}  # and 0 for success, USAGE for a malformed command line


class _Argument(TyperArgument):
    """An argument shown as click shows one: `PATH...`, `[PATH]...`, never `{PATH...}...` and a
    Python type beside it (typer 0.29's `<list[str]>`)."""

    def _base(self) -> str:
        return (self.metavar or str(self.name).upper()).strip("[]").removesuffix("...").strip("[]")

    def _rich_display_name(self) -> str:
        return self._base() + ("..." if self.nargs != 1 else "")

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self._rich_display_name()
        return name if self.required else f"[{self._base()}]" + ("..." if self.nargs != 1 else "")


_VALUE_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "Path": "PATH"}


class _Option(TyperOption):
    """An option's value named in capitals (`--ttl DURATION`, `-n INTEGER`), not `<str>`."""

    def display_type_rich(self, ctx: Any) -> str | None:
        bare = self.bare_type().removeprefix("list[").removesuffix("]")
        return self.metavar or _VALUE_NAMES.get(bare, bare.upper())


def _readable(params: list[Any]) -> list[Any]:
    """`params` with gitbus's help display (the classes differ only in how they print)."""
    for p in params:
        if type(p) is TyperArgument:
            p.__class__ = _Argument
        elif type(p) is TyperOption:
            p.__class__ = _Option
    return params


class _Group(TyperGroup):
    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _readable(command.params)
        return command

    def get_params(self, ctx: Any) -> list[Any]:
        return _readable(super().get_params(ctx))

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Click's own handling, except a malformed command line: one `gitbus:` line saying what is
        wrong, one usage line, exit 2 (click prints four lines, typer with rich a box)."""
        try:
            rv = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except NoArgsIsHelpError as e:  # bare `gitbus`: the help, exit 2
            if not standalone_mode:
                raise
            e.show()
            sys.exit(e.exit_code)
        except UsageError as e:  # typer vendors click (typer._click), pinned in pyproject.toml
            if not standalone_mode:
                raise
            usage = e.ctx.get_usage() if e.ctx else "Usage: gitbus [OPTIONS] COMMAND [ARGS]..."
            err.print(f"gitbus: {_usage_sentence(e)}", markup=False, highlight=False, soft_wrap=True)
            usage = "usage: " + usage.removeprefix("Usage: ")
            err.print(usage, markup=False, highlight=False, soft_wrap=True)
            sys.exit(USAGE)
        except ClickException as e:
            if not standalone_mode:
                raise
            e.show()
            sys.exit(e.exit_code)
        except typer.Abort:
            if not standalone_mode:
                raise
            err.print("gitbus: aborted", markup=False)
            sys.exit(1)
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except GitbusError as e:
            raise typer.Exit(quick.fail(e, out, err, bool(ctx.obj and ctx.obj.get("json")))) from None
        except BrokenPipeError:  # a plain write to a closed pipe (`gitbus show … | head -1`)
            quick.reader_gone()
            raise typer.Exit(0) from None


def _usage_sentence(e: UsageError) -> str:
    """Click's message for a malformed command line as one plain sentence: typer 0.29 checks values
    with pydantic, whose words ("Value error, …", "Input should be …") and line breaks leak through."""
    message = e.format_message()
    cause = e.__cause__
    errors = getattr(cause, "errors", None)
    if callable(errors) and errors():
        first = errors()[0]
        got, limits = first.get("input"), first.get("ctx") or {}
        plain = {
            "greater_than_equal": f"{got} is less than the minimum, {limits.get('ge')}.",
            "int_parsing": f"{got!r} is not a whole number.",
            "value_error": str(limits.get("error", "")),
        }.get(first.get("type"), str(first.get("msg", "")).replace("Input", repr(got), 1))
        message = message.replace(str(first.get("msg", "")), plain)
    message = " ".join(message.split())  # "Choose from:\n\tclaude,\n\tgit-hooks" on one line
    return message if message.endswith((".", "?", "!")) else message + "."


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    add_completion=True,  # typer's --install-completion and --show-completion; the check costs ~1 ms
    rich_markup_mode=None,
    help="A git-native coordination bus for agents working in parallel worktrees.",
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for programs.")]
OfflineOpt = Annotated[
    bool,
    typer.Option("--offline", help="Decide locally even with a bus remote; reconciled at the next sync."),
]
PathsOpt = Annotated[
    list[str] | None, typer.Option("--path", "-p", metavar="PATH", help="A path this is about (repeatable).")
]

ToOpt = Annotated[
    str | None, typer.Option("--to", metavar="AGENT", help="An agent's name; everyone when omitted.")
]


def _version(shown: bool) -> None:
    if shown:
        from gitbus import __version__

        out.print(f"gitbus {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent", "-a", envvar=None, metavar="AGENT", help="Act as this agent (overrides GITBUS_AGENT)."
        ),
    ] = None,
    directory: Annotated[
        Path, typer.Option("-C", metavar="PATH", help="Run as if started in this directory.")
    ] = Path("."),
    _: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print gitbus's version.")
    ] = False,
) -> None:
    ctx.obj = {"agent": agent, "dir": directory}


def open_bus(ctx: typer.Context, json_out: bool = False, offline: bool = False) -> Bus:
    """The bus the root options name; `json_out` also tells the error handler to answer in JSON."""
    ctx.obj["json"] = json_out
    bus = Bus.open(ctx.obj["dir"], ctx.obj["agent"], offline=offline)
    ctx.call_on_close(lambda: quick.tell_notices(bus))  # what a ledger step noticed, said once done
    return bus
