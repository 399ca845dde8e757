"""What the task-workspace tests share: the repository every method starts from, the
changes made in it, and the ways the results are compared."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from claude_runner import proc

SYSTEM_PYTHON = "/usr/bin/python3"  # readable by any user, unlike the runner's own

# The changes every method must carry the same way: content, deletion, renames of a file
# and of a directory, a mode change, new and retargeted symlinks, a nested directory
# replaced by a file, a file replaced by a directory, a directory replaced by a new one,
# a new deep tree, binary content, untracked and ignored files, odd names, and a file
# only opened (its metadata changes, its content does not).
SCRIPT = r"""
set -e
echo changed > tracked.txt
rm gone.txt
echo new > new.txt
mv old-name.txt new-name.txt
mv olddir renamed-dir
chmod +x script.sh
ln -s tracked.txt link-new
rm link-old && ln -s new.txt link-old
rm -rf nested && echo now-a-file > nested
rm file-to-dir && mkdir file-to-dir && echo inner > file-to-dir/inner
rm -rf wipe && mkdir wipe && echo fresh > wipe/fresh
mkdir -p brand/new/deep && echo d > brand/new/deep/f
printf '\000\001\002' > blob.bin
rm untracked-gone.txt
echo more >> untracked.txt
echo log > ignored.log
echo star >> 'star*[x].txt'
echo s >> 'sp ace.txt'
touch opened.txt
"""


def require_root() -> None:
    """Skip without root, except in CI (root), where these tests must run."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the workspace mount tests need root in CI")
        pytest.skip("needs root (mounts, loop devices, other users)")


def public_dir(prefix: str, owner: int | None = None) -> Path:
    """A directory any user can traverse (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    if owner is not None:
        os.chown(path, owner, owner)
    return path


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    base = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    done = proc.run(["git", "-c", "safe.directory=*", *args], cwd=cwd, env={**base, **(env or {})})
    assert done.returncode == 0, f"git {args}: {done.stderr}"
    return done.stdout


def make_repo(ws: Path) -> Path:
    files = {
        "tracked.txt": "original\n",
        "gone.txt": "bye\n",
        "old-name.txt": "moving\n",
        "olddir/a": "a\n",
        "olddir/b/c": "c\n",
        "script.sh": "#!/bin/sh\necho hi\n",
        "nested/x": "x\n",
        "nested/deeper/y": "y\n",
        "file-to-dir": "file\n",
        "wipe/old1": "1\n",
        "wipe/old2": "2\n",
        "opened.txt": "same\n",
        "keepdir/k": "kept\n",
        "star*[x].txt": "glob\n",
        "sp ace.txt": "space\n",
        ".gitignore": "*.log\n",
    }
    for name, text in files.items():
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_text(text)
    (ws / "link-old").symlink_to("tracked.txt")
    git(ws, "init", "-q", "-b", "main")
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "base")
    (ws / "untracked.txt").write_text("untracked\n")
    (ws / "untracked-gone.txt").write_text("going\n")
    return ws


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``root``: type, permission bits, content digest or link target.
    Owner-write is left out of the bits: a copy adds it everywhere by design."""
    found: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("l", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("d", stat.S_IMODE(st.st_mode) | stat.S_IWUSR)
            elif stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                found[rel] = ("f", stat.S_IMODE(st.st_mode) | stat.S_IWUSR, digest)
            else:  # devices (an overlay's whiteouts), FIFOs, sockets
                found[rel] = ("o", stat.S_IFMT(st.st_mode), st.st_rdev)
    return found


def differing(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def covered(path: str, listed: list[str]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in listed)


class Trees:
    """Git trees of a workspace's state, as preservation builds them: from the task's
    start state (the source's files, untracked included) plus either a full scan of the
    work tree or only the listed paths. Objects go to a copy of the source's git
    directory, never to the source."""

    def __init__(self, source: Path, scratch: Path) -> None:
        self.scratch = scratch
        self.git_dir = scratch / "git"
        shutil.copytree(source / ".git", self.git_dir, symlinks=True)
        self.base_index = scratch / "base.index"
        git(source, "read-tree", "HEAD", env=self._env(source, self.base_index))
        git(source, "add", "-A", "--", ".", env=self._env(source, self.base_index))
        self.tracked = set(
            git(source, "ls-files", "-z", env=self._env(source, self.base_index)).split("\0")
        )
        self._n = 0

    def _env(self, work: Path, index: Path) -> dict[str, str]:
        return {
            "GIT_DIR": str(self.git_dir),
            "GIT_WORK_TREE": str(work),
            "GIT_INDEX_FILE": str(index),
            "GIT_LITERAL_PATHSPECS": "1",
        }

    def tree(self, work: Path, paths: list[str] | None) -> str:
        self._n += 1
        index = self.scratch / f"{self._n}.index"
        shutil.copyfile(self.base_index, index)
        env = self._env(work, index)
        if paths is None:
            git(work, "add", "-A", "--", ".", env=env)
        else:
            # `git add` refuses a pathspec that matches nothing (a deleted path git never
            # knew: an ignored or untracked file) and one that names an ignored path.
            known = [
                p
                for p in paths
                if os.path.lexists(work / p)
                or p in self.tracked
                or any(t.startswith(p + "/") for t in self.tracked)
            ]
            ignored = self._ignored(work, env, known)
            wanted = [p for p in known if p not in ignored]
            if wanted:
                git(work, "add", "-A", "--", *wanted, env=env)
        return git(work, "write-tree", env=env).strip()

    @staticmethod
    def _ignored(work: Path, env: dict[str, str], paths: list[str]) -> set[str]:
        done = subprocess.run(
            ["git", "-c", "safe.directory=*", "check-ignore", "-z", "--stdin"],
            input="\0".join(paths).encode() if paths else b"",
            cwd=work,
            # check-ignore refuses literal pathspecs (and reads --stdin paths as paths).
            env={
                "PATH": os.environ["PATH"],
                "GIT_CONFIG_NOSYSTEM": "1",
                **{k: v for k, v in env.items() if k != "GIT_LITERAL_PATHSPECS"},
            },
            capture_output=True,
            check=False,
        )
        assert done.returncode in (0, 1), done.stderr  # 1: nothing is ignored
        return {p for p in done.stdout.decode().split("\0") if p}


def hold_driver(
    argv: list[str], env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start a ``workspaces_driver`` with ``hold``; it and its ready line."""
    child = proc.spawn(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line, "the driver exited before it was ready"
    return child, dict(json.loads(line))
