"""What a task changed, read from its overlay's upper layer instead of the whole tree.

The upper layer holds exactly what was written through the overlay: a changed or new
file or symlink is there whole (``metacopy=off``; a user namespace has no metacopy), a
deleted entry is a whiteout (a 0/0 character device) of the same name, and a directory is
either merged with the workspace's directory of the same name (then only its changed
entries are in it) or replaces it entirely: "opaque" (created where something was
deleted), "redirected" (a renamed workspace directory, whose contents still come from
the old name), or new (nothing of that name in the workspace).

``changed_paths`` lists the paths to examine, relative, with ``/``: every non-directory
entry of the upper layer (changed, new, or deleted), and every directory that replaces
the workspace's (standing for everything under it). A merged directory is walked
instead; a merged directory whose mode or times changed is not listed (git records
neither). The list may hold paths that did not change in the end (a file opened for
writing and left as it was, a whiteout over a file that was created and deleted again):
it is the set of paths worth examining, never missing one. Symlinks are never followed,
in either layer: every workspace directory the walk looks into was checked with
``lstat`` to be a real directory.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from claude_runner.errors import WorkspaceError


def _replaces(path: str, xattrs: str) -> bool:
    """Whether the upper directory ``path`` hides the workspace's directory."""
    try:
        if os.getxattr(path, xattrs + "opaque", follow_symlinks=False) == b"y":
            return True
    except OSError as exc:
        if exc.errno != errno.ENODATA:
            return True  # cannot tell: examine all of it
    try:
        os.getxattr(path, xattrs + "redirect", follow_symlinks=False)
    except OSError as exc:
        return exc.errno != errno.ENODATA
    return True


def _is_real_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def changed_paths(upper: Path, lower: Path, xattrs: str) -> list[str]:
    """The paths to examine (see the module docstring), sorted. ``xattrs`` is the prefix
    of the overlay's markers (``trusted.overlay.``, or ``user.overlay.`` in a user
    namespace)."""
    found: list[str] = []
    pending = [""]
    while pending:
        rel = pending.pop()
        here = os.path.join(upper, rel)
        try:
            with os.scandir(here) as it:
                entries = list(it)
        except OSError as exc:
            if not rel:
                raise WorkspaceError(
                    f"cannot read the changes in {upper}: {exc.strerror}"
                ) from None
            found.append(rel)  # unreadable: examine all of it
            continue
        for entry in entries:
            name = f"{rel}/{entry.name}" if rel else entry.name
            # A directory replacing the workspace's stands for all of it; a merged one is
            # walked.
            if (
                entry.is_dir(follow_symlinks=False)
                and not _replaces(entry.path, xattrs)
                and _is_real_dir(os.path.join(lower, name))
            ):
                pending.append(name)
            else:
                found.append(name)
    found.sort()
    return found
