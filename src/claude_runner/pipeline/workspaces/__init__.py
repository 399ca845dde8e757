"""Task workspaces: an overlay mount, a reflink copy, or the faithful copy, chosen once
per run and reported.

- ``methods.py``: the choice (``PIPELINE_WORKSPACE_METHOD``) and the probe;
- ``taskws.py``: ``Workspaces`` (one run) and ``TaskWorkspace`` (one task);
- ``upper.py``: what a task changed, from its overlay's upper layer;
- ``cleanup.py``: the run's claim, leftover mounts, ``has_mounts``;
- ``mounts.py``: the mount system calls (and the namespace helper, run as a script);
- ``namespace.py``: the user namespace of an unprivileged runner.
"""

from claude_runner.pipeline.workspaces.cleanup import (
    Leftovers,
    clean_leftovers,
    has_mounts,
)
from claude_runner.pipeline.workspaces.methods import (
    ENV_VAR,
    REQUESTS,
    Guarantee,
    Method,
    Methods,
    requested_method,
)
from claude_runner.pipeline.workspaces.taskws import (
    StageSource,
    TaskWorkspace,
    Workspaces,
)

__all__ = [
    "ENV_VAR",
    "REQUESTS",
    "Guarantee",
    "Leftovers",
    "Method",
    "Methods",
    "StageSource",
    "TaskWorkspace",
    "Workspaces",
    "clean_leftovers",
    "has_mounts",
    "requested_method",
]
