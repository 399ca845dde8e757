"""Small formatting helpers shared by the reports and the progress views."""

from __future__ import annotations

from datetime import UTC, datetime

STATUS_MARK = {
    "succeeded": "✅",
    "failed": "❌",
    "cancelled": "⛔",
    "skipped": "⏭️",
    "unfinished": "⏳",
    "pending": "·",
    "incomplete": "⏳",
}


def duration(seconds: float | None) -> str:
    """``4.2s``, ``3m05s``, ``1h02m``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def money(usd: float | None, *, estimated: bool = False) -> str:
    if usd is None:
        return "-"
    text = f"${usd:.4f}" if usd < 1 else f"${usd:.2f}"
    return ("~" + text) if estimated else text


def tokens(count: int | None) -> str:
    if count is None:
        return "-"
    if count < 10_000:
        return str(count)
    if count < 10_000_000:
        return f"{count / 1000:.1f}k"
    return f"{count / 1_000_000:.1f}M"


def clock(epoch: float | None) -> str:
    """UTC wall-clock time of an epoch, ISO 8601 to the second."""
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def tail(text: str | None, *, lines: int = 20, chars: int = 2000) -> str:
    """The end of ``text``: at most ``lines`` lines and ``chars`` characters."""
    if not text:
        return ""
    cut = "\n".join(text.rstrip().splitlines()[-lines:])
    return cut[-chars:]
