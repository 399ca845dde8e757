"""The project's one error tree.

Every error the runner raises on purpose derives from ``RunnerError``; each area has its
own subclass that also inherits the matching builtin, so callers can catch either::

    RunnerError                     exit 2 unless said otherwise
    ├── UsageError(ValueError)      bad command line or environment variable
    ├── PlanError(ValueError)       the pipeline plan is invalid (carries every problem)
    ├── ExpressionError(ValueError) a ``${{ }}`` expression or template is invalid, or its
    │                               evaluation failed (carries the offset in its text)
    ├── WorkspaceError(OSError)     source/target directories, copies, task workspaces
    │   └── PreserveError           a task's changes could not be saved
    ├── GitError(RuntimeError)      gh authentication (when required), git configuration
    ├── AgentError(RuntimeError)    the Claude Code CLI cannot be started at all
    ├── DaemonError(RuntimeError)   Docker-in-Docker did not start
    └── RunDirError(OSError)        claude-pipeline: a run directory or task not found

Only ``claude_runner.cli`` (and ``claude_runner.pipectl`` for ``claude-pipeline``)
catches them: it prints ``claude-runner: error: <message>`` on stderr and exits with
``exit_code``. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
SIGNAL_EXIT_BASE = 128


class RunnerError(Exception):
    """Base of every error the runner reports to the user."""

    exit_code: int = EXIT_USAGE


class UsageError(RunnerError, ValueError):
    """The command line or an environment variable is wrong."""


@dataclass(frozen=True)
class Problem:
    """One problem found in a plan file, located as precisely as the loader can."""

    file: str
    line: int | None
    column: int | None
    location: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        loc = f" {self.location}:" if self.location else ""
        return f"{where}:{loc} {self.message}"


class PlanError(RunnerError, ValueError):
    """The pipeline plan is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem], *, more: bool = False) -> None:
        self.problems = problems
        self.more = more  # there are more problems than listed
        count = len(problems)
        head = f"invalid pipeline plan ({count} problem{'s' if count != 1 else ''})"
        if more:
            head = f"invalid pipeline plan (more than {count} problems; the first are listed)"
        super().__init__(head + "".join(f"\n  {p}" for p in problems))


class ExpressionError(RunnerError, ValueError):
    """An expression or template cannot be parsed or evaluated.

    ``offset`` is the 0-based index in ``text`` (the whole expression or template that was
    parsed) where the problem is; ``line`` and ``column`` (1-based) say the same for a
    reader, and the plan loader adds them to the position where ``text`` starts in its
    file. ``detail`` is the message without the position. Messages name types and the
    plan's own text, never a value from the evaluation context (it may hold secrets).
    """

    def __init__(self, problem: str, *, text: str, offset: int, hint: str = "") -> None:
        self.problem = problem
        self.hint = hint
        self.text = text
        self.offset = offset
        self.line = text.count("\n", 0, offset) + 1
        self.column = offset - text.rfind("\n", 0, offset)
        where = self.position(text, offset)
        super().__init__(f"{problem} at {where}" + (f"; {hint}" if hint else ""))

    @staticmethod
    def position(text: str, offset: int) -> str:
        """``column C``, or ``line L, column C`` when ``text`` has several lines."""
        column = f"column {offset - text.rfind(chr(10), 0, offset)}"
        if "\n" not in text:
            return column
        return f"line {text.count(chr(10), 0, offset) + 1}, {column}"

    @property
    def detail(self) -> str:
        """The message without its position, for callers that print their own."""
        return self.problem + (f"; {self.hint}" if self.hint else "")


class WorkspaceError(RunnerError, OSError):
    """A workspace directory is missing, misplaced, or could not be copied."""


class PreserveError(WorkspaceError):
    """A worktree task's changes could not all be preserved (branch or patch).

    ``kept`` is what was preserved all the same (a ``pipeline.preserve.Preserved``: the
    branch and patch of every path that could be saved), or None."""

    def __init__(self, message: str, *, kept: object = None) -> None:
        super().__init__(message)
        self.kept = kept

    def __str__(self) -> str:
        return str(self.args[0])


class GitError(RunnerError, RuntimeError):
    """GitHub authentication is required but absent, or git could not be configured."""


class AgentError(RunnerError, RuntimeError):
    """The Claude Code CLI cannot be started (missing binary, refused as root)."""


class DaemonError(RunnerError, RuntimeError):
    """The Docker-in-Docker daemon could not be started."""


class RunDirError(RunnerError, OSError):
    """A run directory, or a task in it, cannot be found or read (``claude-pipeline``)."""
