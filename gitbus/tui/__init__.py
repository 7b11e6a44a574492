"""`gitbus tui`: the bus on one terminal screen, for the people overseeing agents (docs/tui.md).

A face: each key parses a little input, calls one `Bus` method and renders what comes back. Three
panes (the feed of recent messages, the claims with their leases ticking down, the agents), a thread
view, and compose dialogs that post as the operator: the `operator` setting, or `gitbus -a NAME tui`.

The package reads from the bottom up:
- `model`: the feed filter and the snapshot of the bus, drawn from the board (`gitbus.board`);
- `cells`: how one value looks (ages, countdowns, badges, a message's detail), every peer string inert;
- `panes`: the three tables with their keys, and the rows and detail text each shows;
- `screens`: the compose form, the thread view, and the form each posting key opens;
- `app`: the app itself (layout, live updates, selection, actions); its styles are `gitbus.tcss`.
"""

from __future__ import annotations

from pathlib import Path

from gitbus.tui.app import GitbusApp
from gitbus.tui.cells import age, badge, describe, who
from gitbus.tui.model import WINDOW, Query, Snapshot
from gitbus.tui.panes import AgentsTable, ClaimsTable, FeedTable
from gitbus.tui.screens import ComposeScreen, ThreadScreen

__all__ = [
    "WINDOW",
    "AgentsTable",
    "ClaimsTable",
    "ComposeScreen",
    "FeedTable",
    "GitbusApp",
    "Query",
    "Snapshot",
    "ThreadScreen",
    "age",
    "badge",
    "describe",
    "run",
    "who",
]


def run(path: str | Path = ".", agent: str | None = None) -> None:
    """Run the app on the terminal until the operator quits."""
    GitbusApp(path, agent).run()
