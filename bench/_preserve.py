"""Preservation for the workspace benchmarks, whichever this tree has.

The hermetic preservation (``pipeline.preserve.open_repository`` whose
``Repository.preserve`` takes ``changed_paths``) examines only the paths an overlay's
upper layer lists; the older module (``preserve.snapshot_start`` and
``preserve.preserve_changes``) scans the whole tree every time. ``open_keeper`` returns
the first that exists; ``hermetic()`` says whether the first does. Looked up by name,
so the benchmarks type-check and run against either tree.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import _repo  # noqa: F401 - first: puts this tree's src/ at the front of sys.path
from claude_runner.pipeline.workspaces import TaskWorkspace

IDENTITY = ("Bench", "bench@example.invalid")


def _preserve_module() -> Any:
    return importlib.import_module("claude_runner.pipeline.preserve")


def hermetic() -> bool:
    """Whether this tree preserves with ``changed_paths``."""
    module = _preserve_module()
    opener = getattr(module, "open_repository", None)
    repository = getattr(module, "Repository", None)
    if opener is None or repository is None:
        return False
    return "changed_paths" in inspect.signature(repository.preserve).parameters


class Keeper:
    """Starts and keeps the work of one run's worktree tasks."""

    def __init__(
        self, workspace: Path, run_dir: Path, env: Mapping[str, str], *, label: str
    ) -> None:
        self.module = _preserve_module()
        self.label = label  # makes the branch names of this run unique
        self.run_dir = run_dir
        self.env = dict(env)
        self.workspace = workspace
        self.hermetic = hermetic()
        self.repo: Any = None
        if self.hermetic:
            self.repo = self.module.open_repository(
                workspace, run_dir / "git", env=self.env, identity=IDENTITY
            )

    def start(self, ws: TaskWorkspace, name: str) -> Any:
        """The task's start state (a base), right after its workspace was made."""
        if self.hermetic:
            return self.repo.snapshot_start(ws.path)
        git_dir = self.workspace / ".git"
        head = self.module.head_of(git_dir, self.env)
        return self.module.snapshot_start(
            git_dir=git_dir,
            head=head,
            copy=ws.path,
            index=self.run_dir / f"{name}.index",
            identity=IDENTITY,
            env=self.env,
        )

    def keep(self, ws: TaskWorkspace, base: Any, name: str) -> int:
        """Commit and write the patch of the task's changes; how many files changed."""
        branch = f"bench/{self.label}/{name}"
        patch = self.run_dir / f"{name}.patch"
        if self.hermetic:
            kept = self.repo.preserve(
                base, branch=branch, patch=patch, changed_paths=ws.changed_paths()
            )
        else:
            kept = self.module.preserve_changes(
                git_dir=self.workspace / ".git",
                base=base,
                copy=ws.path,
                branch=branch,
                patch=patch,
                index=self.run_dir / f"{name}.index",
                identity=IDENTITY,
                env=self.env,
            )
        return int(kept.changed_files)

    def close(self) -> None:
        if self.repo is not None:
            self.repo.close()


def change(ws: TaskWorkspace, i: int) -> None:
    """A few changes, as an agent makes them: two files rewritten, one added, one deleted
    (the same files for every method, so their preservation does the same work)."""
    root = ws.path
    targets = sorted((root / "src" / f"pkg{i % 40:02d}").rglob("*.ts"))[:3]
    for path in targets[:2]:
        path.write_bytes(path.read_bytes() + f"// task {i}\n".encode())
    (root / "src" / f"added-by-task-{i}.ts").write_text(f"export const task = {i};\n")
    if len(targets) > 2:
        os.unlink(targets[2])
