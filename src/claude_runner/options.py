"""The parsed command line, shared by the front (``cli``) and the start-up flow (``app``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

STDIN_PLAN = Path("-")


@dataclass(frozen=True)
class Args:
    """The parsed command line."""

    debug: bool = False
    model: str | None = None
    pipeline: Path | None = None  # STDIN_PLAN: read the plan from standard input
    dry_run: bool = False
    print_schema: str | None = None  # the plan format version whose schema to print
    verbosity: str = "text"
    rehearse: bool = False  # the real CLI against the built-in stand-in model, for $0
    progress: str = "auto"  # the live view on stderr: auto, live, plain, off
    reports: tuple[str, ...] = ()  # report formats written into the run directory
    graph: Literal["mermaid", "dot"] | None = None  # --dry-run --graph
    task: tuple[str, ...] = field(default_factory=tuple)

    @property
    def prompt(self) -> str:
        return " ".join(self.task)
