"""Read a task's ``prompt_file`` when the task starts (an earlier stage may write it).

The load-time check (relative, no '..') is repeated, then the file must resolve inside
the workspace (symlinks included), be a regular file, at most ``MAX_PROMPT_BYTES``, UTF-8,
without NUL characters, and not blank (``rules.is_blank``: invisible characters alone
are blank too).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from claude_runner.errors import PlanError, Problem
from claude_runner.plan import rules

MAX_PROMPT_BYTES = 1024 * 1024


def _fail(rel: str, message: str) -> PlanError:
    return PlanError([Problem(rel, None, None, "", message)])


def read_prompt_file(workspace: Path, rel: str) -> str:
    """The prompt text of ``rel`` inside ``workspace``; ``PlanError`` if it cannot be used."""
    problem = rules.prompt_path_problem(rel)
    if problem is not None:
        raise _fail(rel, problem)
    root = workspace.resolve()
    target = (root / rel).resolve()
    if not target.is_relative_to(root):
        raise _fail(rel, f"prompt file resolves to {target}, outside the workspace {root}")
    try:
        # O_NOFOLLOW + O_NONBLOCK: the resolved path is opened as-is, a FIFO cannot hang us.
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _fail(
            rel, f"prompt file not found in the workspace {root} (no earlier task created it)"
        ) from None
    except OSError as err:
        raise _fail(rel, f"cannot open the prompt file: {err.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _fail(rel, "the prompt file is not a regular file")
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read(MAX_PROMPT_BYTES + 1)
    if len(raw) > MAX_PROMPT_BYTES:
        raise _fail(rel, f"the prompt file is larger than {MAX_PROMPT_BYTES} bytes, the limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise _fail(
            rel,
            f"the prompt file is not valid UTF-8 (byte 0x{raw[err.start]:02x} on line {line}); "
            "save it as UTF-8",
        ) from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise _fail(
            rel,
            f"the prompt file contains a NUL character (line {line}), which no program can "
            "be given; remove it",
        )
    if rules.is_blank(text):
        raise _fail(rel, "the prompt file is empty; write the task for the agent")
    return text
