"""Snapshots of task copies and the commits, branch and patch made from them.

``open_repository`` once per run; ``Repository.snapshot_start`` right after a task's copy
is made (before the agent starts); ``Repository.preserve`` when the task is over. See
the package docstring for what is guaranteed and why it is safe.

Each task has a temporary index in the runner's repository, started from the copy's own
``.git/index`` (so git compares sizes and modification times and hashes only files that
differ). ``git ls-files -m -d -o --exclude-standard`` lists what changed; the runner
checks each listed path itself (no symlink on the way, a regular file or symlink,
readable, a name git accepts) and hands the good ones to ``git update-index``;
directories git reports as nested repositories are walked by the runner and their files
added as ordinary files. ``write-tree`` makes the tree.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from claude_runner.errors import PreserveError
from claude_runner.pipeline.preserve import gitcmd, wsgit
from claude_runner.pipeline.preserve.gitcmd import Budget
from claude_runner.pipeline.preserve.scan import (
    IgnoreOracle,
    Walker,
    fingerprint,
    git_refuses,
    lstat_below,
    readable_below,
)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# How long snapshot_start waits at most for the file system's clock (see _settle).
_SETTLE_LIMIT = 3.0
_START_MESSAGE = "claude-runner: uncommitted workspace state at task start"
_GITLINK = b"160000"
# Attributes that would change bytes between the files and the blobs, switched off for
# every path (info/attributes outranks every .gitattributes); no filter or diff driver
# is configured anywhere, so no attribute can name a program either.
_ATTRIBUTES = b"* -text -eol -crlf -ident -filter -working-tree-encoding\n"

Fingerprints = dict[bytes, frozenset[tuple[bytes, int, int, int, int, int]]]


@dataclass(frozen=True)
class Preserved:
    """What ``preserve`` kept. ``branch`` is a branch of the WORKSPACE's repository (None
    when nothing changed, or when the workspace is not a git repository: the commit is
    then only in the runner's repository, ``repository``, under the same name)."""

    branch: str | None
    patch: Path | None
    changed_files: int
    commit: str | None = None
    repository: Path | None = None


@dataclass
class Base:
    """A task copy as it was before the agent ran (from ``snapshot_start``)."""

    copy: Path
    index: Path  # the task's temporary index (in the runner's repository)
    head: str | None  # HEAD of the copy
    commit: str | None  # the start commit (HEAD, or a commit of the uncommitted state)
    tree: str  # the start tree
    submodules: Fingerprints = field(default_factory=dict)  # gitlink -> its files' stat


class Repository:
    """Preservation for one run: the workspace's repository (or none) and the
    runner-owned one. Safe to use from several task threads at once."""

    def __init__(
        self,
        workspace: Path,
        private_dir: Path,
        *,
        env: Mapping[str, str],
        identity: tuple[str, str],
        cancel: threading.Event | None,
        timeout: float,
    ) -> None:
        self.workspace = workspace
        self.private_dir = private_dir
        self.cancel = cancel
        self.timeout = timeout
        opened = wsgit.open_workspace_git(workspace)
        self.ws: wsgit.WorkspaceGit | None = None if isinstance(opened, str) else opened
        # Why the workspace is not used as a git repository (None: it is).
        self.note: str | None = opened if isinstance(opened, str) else None
        self.object_format = self.ws.object_format if self.ws else "sha1"
        self.oid_size = 32 if self.object_format == "sha256" else 20
        self.empty_tree = hashlib.new(self.object_format, b"tree 0\0").hexdigest()
        self.git = gitcmd.Git(
            private_dir,
            gitcmd.hermetic_env(env, private_dir, identity),
            cancel=cancel,
            timeout=timeout,
        )
        self._ready = False
        self._lock = threading.Lock()
        self._snapshots = threading.Lock()  # one at a time: they share the last index
        self._trees: dict[str, str] = {}  # commit -> its tree
        self._links: dict[bytes, list[bytes]] = {}  # index digest -> its gitlinks
        self._last_index: Path | None = None  # a non-git workspace's latest stat cache

    # --- set-up ----------------------------------------------------------------------
    def _ensure(self) -> None:
        with self._lock:
            if self._ready:
                return
            gitcmd.init_private_repo(
                self.private_dir, self.git.env(), object_format=self.object_format
            )
            info = self.private_dir / "info"
            info.mkdir(exist_ok=True)
            (info / "attributes").write_bytes(_ATTRIBUTES)
            (info / "exclude").write_bytes(self.ws.exclude if self.ws else b"")
            if self.ws is not None:
                (self.private_dir / "objects" / "info").mkdir(exist_ok=True)
                (self.private_dir / "objects" / "info" / "alternates").write_bytes(
                    _alternate_line(self.ws.git_dir / "objects")
                )
            (self.private_dir / "tmp").mkdir(exist_ok=True)
            self._ready = True

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()

    def _tree_of(self, commit: str) -> str:
        with self._lock:
            tree = self._trees.get(commit)
        if tree is None:
            text = self.git.run(["cat-file", "commit", commit])
            first = text.split(b"\n", 1)[0]
            if not first.startswith(b"tree "):
                raise PreserveError(f"{commit} is not a readable commit")
            tree = first[5:].decode("ascii")
            with self._lock:
                self._trees[commit] = tree
        return tree

    # --- start -------------------------------------------------------------------------
    def snapshot_start(self, copy: Path) -> Base:
        """Record the fresh ``copy`` (made from the workspace) before its agent runs."""
        budget = Budget(self.cancel, self.timeout)
        self._ensure()
        with self._snapshots:
            return self._snapshot(copy, budget)

    def _snapshot(self, copy: Path, budget: Budget) -> Base:
        index = self.private_dir / "tmp" / f"index-{secrets.token_hex(8)}"
        head = self._start_index(copy, index)
        links = self._gitlinks(index) or []
        submodules: Fingerprints = {}
        if links:
            # git must not look into them (it would read their .git): the runner
            # watches their files instead (_submodules).
            self.git.run(
                ["update-index", "-z", "--assume-unchanged", "--stdin"],
                input=b"".join(p + b"\0" for p in links),
                work_tree=copy,
                index=index,
            )
            submodules = {p: fingerprint(copy, p, budget) for p in links if _is_dir(copy, p)}
        # A path that cannot be recorded now keeps its entry (or stays out) and is
        # listed again at the end, where it fails the preservation.
        self._update(copy, index, budget, None)
        tree = self.git.run(["write-tree"], index=index).strip().decode("ascii")
        commit = head
        if tree != (self._tree_of(head) if head else self.empty_tree):
            commit = self._commit(tree, head, _START_MESSAGE)
        if submodules:
            self._settle(submodules, budget)
        if self.ws is None:
            self._keep_last(index)
        return Base(copy, index, head, commit, tree, submodules)

    def _start_index(self, copy: Path, index: Path) -> str | None:
        """Fill the task's index from the copy's (its stat data match the copy: sizes and
        modification times are kept); HEAD of the copy."""
        head: str | None = None
        raw: bytes | None = None
        mtime_ns = 0
        if self.ws is not None:
            git_fd = _open_copy_git(copy)
            try:
                oid = wsgit.resolve_head(git_fd, self.oid_size)
                head = oid.hex() if oid is not None else None
                raw = wsgit.read_file(git_fd, "index", limit=1 << 31)
                if raw is not None:
                    mtime_ns = os.stat("index", dir_fd=git_fd, follow_symlinks=False).st_mtime_ns
            finally:
                os.close(git_fd)
        elif self._last_index is not None:
            raw = self._last_index.read_bytes()
            mtime_ns = self._last_index.stat().st_mtime_ns
        if raw is not None:
            index.write_bytes(raw)
            os.utime(index, ns=(mtime_ns, mtime_ns))
            # A split index's shared part is another file of the workspace's .git (not
            # followed): git cannot read it here, so HEAD is the start.
            if self._gitlinks(index) is not None:
                return head
        index.unlink(missing_ok=True)
        if head is not None:
            self.git.run(["read-tree", head], index=index)
        return head

    def _gitlinks(self, index: Path) -> list[bytes] | None:
        """The gitlinks of ``index`` (None: git cannot read it). Copies of one workspace
        state share the answer."""
        if not index.exists():
            return []
        digest = hashlib.sha1(index.read_bytes(), usedforsecurity=False).digest()
        with self._lock:
            cached = self._links.get(digest)
        if cached is None:
            try:
                listing = self.git.run(["ls-files", "--stage", "-z"], index=index)
            except gitcmd.Stopped:
                raise
            except PreserveError:
                return None
            cached = [
                record.split(b"\t", 1)[1]
                for record in listing.split(b"\0")
                if record.startswith(_GITLINK + b" ")
            ]
            with self._lock:
                self._links[digest] = cached
        return cached

    def _keep_last(self, index: Path) -> None:
        """A non-git workspace has no index of its own: the last snapshot's serves the
        next copies of it as their stat cache."""
        if index.exists():
            last = self.private_dir / "tmp" / "workspace-index"
            tmp = last.with_name(f"workspace-index-{secrets.token_hex(4)}")
            tmp.write_bytes(index.read_bytes())
            st = index.stat()
            os.utime(tmp, ns=(st.st_mtime_ns, st.st_mtime_ns))
            os.replace(tmp, last)
            self._last_index = last

    def _settle(self, submodules: Fingerprints, budget: Budget) -> None:
        """Wait until the file system's clock has passed the newest ctime in the
        submodules' fingerprints: a later write then always changes a fingerprint (within
        one clock tick a rewrite at the same size would not)."""
        newest = max((e[4] for fp in submodules.values() for e in fp), default=0)
        probe = self.private_dir / "tmp" / f"clock-{secrets.token_hex(6)}"
        limit = time.monotonic() + _SETTLE_LIMIT
        try:
            while time.monotonic() < limit:
                probe.write_bytes(b".")
                if probe.stat().st_ctime_ns > newest:
                    return
                budget.check("waiting for the file system clock")
                time.sleep(0.002)
        finally:
            probe.unlink(missing_ok=True)

    # --- changes -----------------------------------------------------------------------
    def _update(
        self, copy: Path, index: Path, budget: Budget, only: list[bytes] | None
    ) -> list[str] | None:
        """Bring ``index`` up to date with the copy (or with ``only`` these paths of it);
        the paths that could not be recorded (None: nothing had changed)."""
        _rehash_same_second(index)
        args = ["ls-files", "-z", "-m", "-d", "-o", "--exclude-standard"]
        if only is not None:
            if not only:
                return None
            args += ["--", *(os.fsdecode(p) for p in only)]
        listing = self.git.run(args, work_tree=copy, index=index, literal=True)
        if only is not None:
            listing += self._nested_above(copy, index, only)
        if not listing:
            return None
        problems: list[str] = []
        remove: list[bytes] = []
        add: list[bytes] = []
        nested: list[bytes] = []
        for path in dict.fromkeys(p for p in listing.split(b"\0") if p):
            budget.check("recording the task's changes")
            if path.endswith(b"/"):
                nested.append(path[:-1])
                continue
            why = self._check(copy, path)
            if why == "gone":
                remove.append(path)
            elif why is not None:
                problems.append(f"{os.fsdecode(path)}: {why}")
            else:
                add.append(path)
        if nested:
            add += self._nested_files(copy, nested, budget, problems)
        if remove:
            self.git.run(
                ["update-index", "-z", "--force-remove", "--stdin"],
                input=b"".join(p + b"\0" for p in remove),
                work_tree=copy,
                index=index,
            )
        if add:
            problems += self._add(copy, index, add)
        return problems

    def _nested_above(self, copy: Path, index: Path, only: list[bytes]) -> bytes:
        """Nested repositories that hold a listed path: the full listing reports them
        (``dir/``), a listing limited to the path inside does not."""
        above = {
            head
            for path in only
            for head in _heads(path)
            if lstat_below(copy, head + b"/.git") is not None
        }
        if not above:
            return b""
        args = ["ls-files", "-z", "-o", "--exclude-standard", "--", *map(os.fsdecode, above)]
        listing = self.git.run(args, work_tree=copy, index=index, literal=True)
        found = [p for p in listing.split(b"\0") if p.endswith(b"/") and p[:-1] in above]
        return b"".join(p + b"\0" for p in found)

    def _check(self, copy: Path, path: bytes) -> str | None:
        """None when git can record ``path`` as it is; "gone" when it is to be removed
        (missing, beyond a symlink, or a FIFO, socket or device, which git does not
        store); otherwise why it cannot be recorded."""
        st = lstat_below(copy, path)
        if st is None or not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            return "gone"
        parts = path.split(b"/")
        for i, part in enumerate(parts):
            if git_refuses(part, link=i == len(parts) - 1 and stat.S_ISLNK(st.st_mode)):
                return "git cannot store this name"
        if stat.S_ISREG(st.st_mode):
            why = readable_below(copy, path)
            if why is not None:
                return f"cannot read: {why}"
        return None

    def _nested_files(
        self, copy: Path, dirs: list[bytes], budget: Budget, problems: list[str]
    ) -> list[bytes]:
        """The files of nested repositories, as ordinary files (their .git skipped)."""
        found: list[bytes] = []
        oracle = IgnoreOracle(self.git, copy, budget)
        try:
            walker = Walker(copy, oracle, budget)
            for path in dirs:
                walker.walk_tree(path, lambda p, _fd, _name, _st: found.append(p))
        finally:
            oracle.close()
        problems += walker.problems
        good = []
        for path in found:
            why = self._check(copy, path)
            if why is None:
                good.append(path)
            elif why != "gone":
                problems.append(f"{os.fsdecode(path)}: {why}")
        return good

    def _add(self, copy: Path, index: Path, paths: list[bytes]) -> list[str]:
        """``update-index --add`` of ``paths``; when the batch fails (a file changed
        under it), one path at a time, so one bad path does not lose the others."""
        args = ["update-index", "-z", "--add", "--replace", "--remove", "--stdin"]
        batch = b"".join(p + b"\0" for p in paths)
        try:
            self.git.run(args, input=batch, work_tree=copy, index=index)
        except gitcmd.Stopped:
            raise
        except PreserveError:
            pass
        else:
            return []
        problems = []
        for path in paths:
            try:
                self.git.run(args, input=path + b"\0", work_tree=copy, index=index)
            except gitcmd.Stopped:
                raise
            except PreserveError as exc:
                problems.append(f"{os.fsdecode(path)}: {exc}")
        return problems

    def _commit(self, tree: str, parent: str | None, message: str) -> str:
        args = ["commit-tree", tree, "-m", message]
        if parent is not None:
            args += ["-p", parent]
        return self.git.run(args).strip().decode("ascii")

    def discard(self, base: Base) -> None:
        """Drop a snapshot that will not be preserved (an attempt that is retried)."""
        base.index.unlink(missing_ok=True)

    # --- end ---------------------------------------------------------------------------
    def preserve(
        self,
        base: Base,
        *,
        branch: str,
        patch: Path,
        changed_paths: Iterable[str | bytes] | None = None,
    ) -> Preserved:
        """Commit what the task changed in its copy since ``base`` on ``branch``
        (``refs/heads/<branch>``) and write it as a binary patch to ``patch``.
        ``changed_paths``: only these paths (relative; files or directories, deleted or
        not) are examined, everything else is taken from ``base``. Raises
        ``PreserveError`` when anything could not be preserved (``kept``: what was)."""
        budget = Budget(self.cancel, self.timeout)
        only = None if changed_paths is None else sorted({_relpath(p) for p in changed_paths})
        if only is not None and any(_moves_ignore_rules(p) for p in only):
            # What is ignored may have changed anywhere, unchanged files included: the
            # full scan gives what a copy's preservation gives.
            only = None
        try:
            expanded = self._submodules(base, budget, only)
            updated = self._update(base.copy, base.index, budget, only)
            kept = Preserved(None, None, 0)
            problems = [*(expanded or []), *(updated or [])]
            if expanded is not None or updated is not None:
                tree = self.git.run(["write-tree"], index=base.index).strip().decode("ascii")
                if tree != base.tree:
                    kept = self._record(base, tree, branch, patch)
        finally:
            base.index.unlink(missing_ok=True)
        if problems:
            raise PreserveError(_problem_text(problems), kept=kept)
        return kept

    def _submodules(self, base: Base, budget: Budget, only: list[bytes] | None) -> list[str] | None:
        """A gitlink stays while nothing below it changed; otherwise the files of its
        directory replace it. The paths that could not be recorded (None: no gitlink
        changed)."""
        changed = []
        for link, before in base.submodules.items():
            if only is not None and not any(_overlaps(link, p) for p in only):
                continue
            if fingerprint(base.copy, link, budget) != before:
                changed.append(link)
        if not changed:
            return None
        self.git.run(
            ["update-index", "-z", "--force-remove", "--stdin"],
            input=b"".join(p + b"\0" for p in changed),
            work_tree=base.copy,
            index=base.index,
        )
        problems: list[str] = []
        found = self._nested_files(
            base.copy, [p for p in changed if _is_dir(base.copy, p)], budget, problems
        )
        if found:
            problems += self._add(base.copy, base.index, found)
        return problems

    def _record(self, base: Base, tree: str, branch: str, patch: Path) -> Preserved:
        """The end commit, its ref in the runner's repository, the patch, and (for a git
        workspace) the objects and the branch in the workspace's repository."""
        commit = self._commit(tree, base.commit, f"claude-runner: {branch}")
        ref = f"refs/heads/{branch}"
        self.git.run(["update-ref", ref, commit, ""])
        start = base.commit or self.empty_tree
        names = self.git.run(["diff", "--name-only", "-z", "--no-renames", start, commit])
        count = len([n for n in names.split(b"\0") if n])
        self._write_patch(start, commit, patch)
        private = Preserved(None, patch, count, commit, self.private_dir)
        if self.ws is None:
            return private
        try:
            listing = self.git.run(
                ["rev-list", "--objects", "--no-object-names", commit]
                + ([f"^{base.head}"] if base.head else [])
            )
            wsgit.copy_objects(
                self.ws, self.private_dir / "objects", listing.decode("ascii").split()
            )
            wsgit.create_ref(self.ws, ref, commit)
        except PreserveError as exc:
            exc.kept = private
            raise
        except OSError as exc:
            raise PreserveError(
                f"cannot write the branch into {self.ws.git_dir}: {exc.strerror or exc}",
                kept=private,
            ) from None
        return Preserved(branch, patch, count, commit, self.ws.git_dir)

    def _write_patch(self, old: str, new: str, patch: Path) -> None:
        args = [
            "diff",
            "--binary",
            "--no-renames",
            "--no-ext-diff",
            "--no-textconv",
            "--no-color",
            "--src-prefix=a/",
            "--dst-prefix=b/",
            old,
            new,
        ]
        fd = os.open(patch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            self.git.run_to(args, fd)
        finally:
            os.close(fd)


def _rehash_same_second(index: Path) -> None:
    """Make git re-hash every entry recorded in or after the second the index was
    written ("racy git"): with checkStat=minimal a file rewritten at the same size
    within the same second as its recorded mtime looks unchanged; git re-hashes the
    entries that are not older than the index file, and moving the index file's mtime
    back to the start of its second covers the whole second (whether git compares
    nanoseconds depends on how it was built)."""
    try:
        st = index.stat()
    except FileNotFoundError:
        return
    second = st.st_mtime_ns - st.st_mtime_ns % 1_000_000_000
    os.utime(index, ns=(st.st_atime_ns, second))


def _open_copy_git(copy: Path) -> int:
    try:
        top = os.open(copy, _DIR_FLAGS)
    except OSError as exc:
        raise PreserveError(f"cannot open the task's copy {copy}: {exc.strerror}") from None
    try:
        return os.open(".git", _DIR_FLAGS, dir_fd=top)
    except OSError as exc:
        raise PreserveError(f"the task's copy has no usable .git: {exc.strerror}") from None
    finally:
        os.close(top)


def _is_dir(copy: Path, path: bytes) -> bool:
    st = lstat_below(copy, path)
    return st is not None and stat.S_ISDIR(st.st_mode)


def _moves_ignore_rules(path: bytes) -> bool:
    """Whether a change at ``path`` can change which other paths git ignores: a
    ``.gitignore`` anywhere, or the workspace's own ``.git`` (``info/exclude``)."""
    parts = path.split(b"/")
    return parts[0] == b".git" or b".gitignore" in parts


def _heads(path: bytes) -> list[bytes]:
    """The directories above ``path``: b"a/b/c" -> [b"a", b"a/b"]."""
    parts = path.split(b"/")
    return [b"/".join(parts[:i]) for i in range(1, len(parts))]


def _overlaps(a: bytes, b: bytes) -> bool:
    return a == b or a.startswith(b + b"/") or b.startswith(a + b"/")


def _problem_text(problems: list[str]) -> str:
    shown = "; ".join(problems[:5])
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return f"{len(problems)} path(s) left out: {shown}{more}"


def _relpath(path: str | bytes) -> bytes:
    raw = os.fsencode(path)
    parts = [p for p in raw.split(b"/") if p not in (b"", b".")]
    if not parts or b".." in parts:
        raise PreserveError(f"not a path inside the task's copy: {os.fsdecode(raw)!r}")
    return b"/".join(parts)


def _alternate_line(path: Path) -> bytes:
    raw = os.fsencode(path)
    if b"\n" in raw or raw.startswith(b'"'):
        quoted = raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"\n", b"\\n")
        return b'"' + quoted + b'"\n'
    return raw + b"\n"


def open_repository(
    workspace: Path,
    private_dir: Path,
    *,
    env: Mapping[str, str],
    identity: tuple[str, str],
    cancel: threading.Event | None = None,
    timeout: float = gitcmd.DEFAULT_TIMEOUT,
) -> Repository:
    """Preservation for a run in ``workspace``; ``private_dir`` becomes the
    runner-owned git repository (created on first use). ``timeout`` bounds each git
    process and each loop of the runner's own."""
    return Repository(
        workspace, private_dir, env=env, identity=identity, cancel=cancel, timeout=timeout
    )
