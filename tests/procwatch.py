"""Bounded waits on processes and files for the process-control tests."""

from __future__ import annotations

import time
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def wait_for_text(path: Path, deadline: float = 20.0) -> str:
    """The stripped, non-empty text of ``path`` once a child has written it."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.01)
    raise AssertionError(f"{path} not written within {deadline}s")


def wait_gone(pid: int, deadline: float = 5.0) -> bool:
    """Poll until ``pid`` is gone; False if it still runs at the deadline."""
    end = time.monotonic() + deadline
    while alive(pid) and time.monotonic() < end:
        time.sleep(0.01)
    return not alive(pid)
