"""The runner's own git: a runner-owned repository and an environment nothing else
configures.

Every git process the preservation runs goes through ``Git``: ``GIT_DIR`` is the
runner-owned bare repository (created here, empty template: no hooks, no
``info/attributes``); the environment is built from nothing but ``PATH`` (no inherited
``GIT_*``, a runner-owned empty ``HOME`` and ``XDG_CONFIG_HOME``,
``GIT_CONFIG_NOSYSTEM=1``, ``GIT_CONFIG_GLOBAL=/dev/null``, ``GIT_ATTR_NOSYSTEM=1``), so
no system, user or XDG configuration, attributes or ignore file is read; and every
command line repeats the settings that could start a program or change bytes, so even a
tampered runner-owned config cannot turn them on (``-c`` wins over every file). Each
process has a bounded time and is stopped as soon as the run's ``cancel`` event is set.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from claude_runner import proc
from claude_runner.errors import PreserveError

# Settings given on every command line. Hooks: none (hooksPath names an empty place).
# No fsmonitor, no attributes or ignore file but the repository's own, no signing, no
# pager, no automatic gc, no transport at all.
_OVERRIDES = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.untrackedCache=false",
    "core.attributesFile=/dev/null",
    "core.excludesFile=/dev/null",
    "core.autocrlf=false",
    "core.safecrlf=false",
    "core.pager=cat",
    "core.sshCommand=false",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "protocol.allow=never",
    "credential.helper=",
    "i18n.commitEncoding=UTF-8",
    # The temporary index is a stat cache made from another directory's files: compare
    # size and modification time only (ctime and inode differ in a copy).
    "core.checkStat=minimal",
    "core.trustCtime=false",
    "core.splitIndex=false",
    "core.sparseCheckout=false",
    "core.ignoreCase=false",
    "core.symlinks=true",
    "core.fileMode=true",
    "core.protectNTFS=true",
    "core.protectHFS=true",
    "log.showSignature=false",
)
ARGV_PREFIX = ("git", "--no-pager", *(arg for kv in _OVERRIDES for arg in ("-c", kv)))

DEFAULT_TIMEOUT = 600.0
_POLL = 0.05


class Stopped(PreserveError):
    """A git step ran out of time or was cancelled (the process was stopped)."""


def hermetic_env(
    base: Mapping[str, str], private: Path, identity: tuple[str, str]
) -> dict[str, str]:
    """The whole environment of the runner's git: ``PATH`` from ``base`` and nothing
    else of it."""
    home = str(private / "home")
    return {
        "PATH": base.get("PATH") or os.defpath,
        "HOME": home,
        "XDG_CONFIG_HOME": home,
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_SYSTEM": "/dev/null",
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_OPTIONAL_LOCKS": "0",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_NO_LAZY_FETCH": "1",
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_PAGER": "cat",
        "PAGER": "cat",
        "GIT_EDITOR": "false",
        "EDITOR": "false",
        "GIT_AUTHOR_NAME": identity[0],
        "GIT_AUTHOR_EMAIL": identity[1],
        "GIT_COMMITTER_NAME": identity[0],
        "GIT_COMMITTER_EMAIL": identity[1],
    }


class Git:
    """Runs git against the runner-owned repository ``git_dir``."""

    def __init__(
        self,
        git_dir: Path,
        env: Mapping[str, str],
        *,
        cancel: threading.Event | None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.git_dir = git_dir
        self.cancel = cancel
        self.timeout = timeout
        self._env = {**env, "GIT_DIR": str(git_dir)}

    def env(self, work_tree: Path | None = None, index: Path | None = None) -> dict[str, str]:
        env = dict(self._env)
        if work_tree is not None:
            env["GIT_WORK_TREE"] = str(work_tree)
        if index is not None:
            env["GIT_INDEX_FILE"] = str(index)
        return env

    def argv(self, args: Sequence[str]) -> list[str]:
        return [*ARGV_PREFIX, *args]

    def run(
        self,
        args: Sequence[str],
        *,
        input: bytes | None = None,
        work_tree: Path | None = None,
        index: Path | None = None,
        literal: bool = False,
        ok: Sequence[int] = (0,),
    ) -> bytes:
        """Run one git command to completion; its stdout. A failure, a timeout or a
        cancellation raises ``PreserveError`` naming the command."""
        what = f"git {args[0]}"
        try:
            env = self.env(work_tree, index)
            if literal:
                env["GIT_LITERAL_PATHSPECS"] = "1"
            done = proc.run_bytes(
                self.argv(args),
                cwd=work_tree or self.git_dir,
                env=env,
                input=input,
                timeout=self.timeout,
                cancel=self.cancel,
            )
        except subprocess.TimeoutExpired:
            raise Stopped(f"{what} did not finish within {self.timeout:g} s") from None
        except proc.Cancelled:
            raise Stopped(f"{what} stopped: the run was cancelled") from None
        except OSError as exc:
            raise PreserveError(f"cannot run {what}: {exc.strerror or exc}") from None
        if done.returncode not in ok:
            err = done.stderr.decode("utf-8", "replace").strip()[-500:]
            raise PreserveError(f"{what} failed (exit {done.returncode}): {err}")
        return done.stdout

    def run_to(self, args: Sequence[str], out_fd: int) -> None:
        """Run one git command with its stdout going to ``out_fd`` (a patch can be much
        larger than memory should hold); same rules as ``run``."""
        what = f"git {args[0]}"
        errors = self.git_dir / "tmp" / f"stderr-{os.getpid()}-{threading.get_ident()}"
        err = os.open(errors, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            try:
                child = proc.spawn(
                    self.argv(args), cwd=self.git_dir, env=self.env(), stdout=out_fd, stderr=err
                )
            except OSError as exc:
                raise PreserveError(f"cannot run {what}: {exc.strerror or exc}") from None
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    code = child.wait(timeout=_POLL)
                    break
                except subprocess.TimeoutExpired:
                    if self.cancel is not None and self.cancel.is_set():
                        proc.stop(child, grace=1.0)
                        raise Stopped(f"{what} stopped: the run was cancelled") from None
                    if time.monotonic() > deadline:
                        proc.stop(child, grace=1.0)
                        raise Stopped(f"{what} did not finish within {self.timeout:g} s") from None
                except BaseException:
                    proc.stop(child, grace=1.0)
                    raise
            if code != 0:
                why = errors.read_text("utf-8", "replace").strip()[-500:]
                raise PreserveError(f"{what} failed (exit {code}): {why}")
        finally:
            os.close(err)
            errors.unlink(missing_ok=True)


class Budget:
    """A deadline and the run's cancel event, for loops of the runner's own."""

    def __init__(self, cancel: threading.Event | None, timeout: float) -> None:
        self.cancel = cancel
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout

    def check(self, what: str) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Stopped(f"{what} stopped: the run was cancelled")
        if time.monotonic() > self.deadline:
            raise Stopped(f"{what} did not finish within {self.timeout:g} s")


def init_private_repo(git_dir: Path, env: Mapping[str, str], *, object_format: str) -> None:
    """Create the runner-owned bare repository (nothing from a template)."""
    git_dir.mkdir(parents=True, exist_ok=True)
    (git_dir / "home").mkdir(exist_ok=True)
    argv = [
        *ARGV_PREFIX,
        "init",
        "--quiet",
        "--bare",
        "--template=",
        f"--object-format={object_format}",
        str(git_dir),
    ]
    try:
        done = proc.run(argv, env=env, cwd=git_dir, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PreserveError(f"cannot create the runner's git repository {git_dir}: {exc}") from None
    if done.returncode != 0:
        raise PreserveError(
            f"cannot create the runner's git repository {git_dir}: {done.stderr.strip()[-500:]}"
        )
