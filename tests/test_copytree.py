"""copy_tree / copy_tree_many: fidelity, writability, destination rules, errors."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_runner import proc
from claude_runner.copytree import copy_tree, copy_tree_many, remove_tree
from claude_runner.errors import WorkspaceError

IS_ROOT = os.geteuid() == 0
NOBODY = 65534

# An entry as a faithful copy must reproduce it: kind, mode, mtime (ns), content or
# link target. Modes are compared after adding u+w, the copy's one deliberate change.
Entry = tuple[str, int, int, str]


def snapshot(root: Path, *, add_uw: bool = False) -> dict[str, Entry]:
    found: dict[str, Entry] = {}

    def visit(path: Path, rel: str) -> None:
        st_ = os.lstat(path)
        mode = stat.S_IMODE(st_.st_mode) | (stat.S_IWUSR if add_uw else 0)
        if stat.S_ISLNK(st_.st_mode):
            found[rel] = ("link", 0, 0, os.readlink(path))
        elif stat.S_ISDIR(st_.st_mode):
            found[rel] = ("dir", mode, st_.st_mtime_ns, "")
            for name in sorted(os.listdir(path)):
                visit(path / name, f"{rel}/{name}" if rel else name)
        elif stat.S_ISREG(st_.st_mode):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[rel] = ("file", mode, st_.st_mtime_ns, digest)
        elif stat.S_ISFIFO(st_.st_mode):
            found[rel] = ("fifo", mode, st_.st_mtime_ns, "")
        elif stat.S_ISSOCK(st_.st_mode):
            found[rel] = ("socket", mode, 0, "")

    visit(root, "")
    return found


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    # safe.directory: the copy may belong to another user than the one running git.
    done = proc.run(["git", "-c", "safe.directory=*", *args], cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def rich_tree(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A source tree with every kind of entry the copy must handle, and an outside file
    a symlink points at. Yields (source, outside file)."""
    outside = tmp_path / "outside" / "secret.txt"
    outside.parent.mkdir()
    outside.write_text("outside the tree\n")
    src = tmp_path / "src"
    src.mkdir()
    git(src, "init", "-q", "-b", "main")
    (src / "README.md").write_text("hello\n")
    (src / ".hidden").write_text("dotfile\n")
    (src / ".config").mkdir()
    (src / ".config" / "settings.json").write_text("{}\n")
    (src / "bin").mkdir()
    (src / "bin" / "run.sh").write_text("#!/bin/sh\necho run\n")
    (src / "bin" / "run.sh").chmod(0o755)
    (src / "docs").mkdir()
    (src / "docs" / "guide.txt").write_text("guide\n")
    (src / "docs" / "guide.txt").chmod(0o644)
    (src / "docs" / "frozen.txt").write_text("read only\n")
    (src / "docs" / "frozen.txt").chmod(0o444)
    (src / "docs" / "private.txt").write_text("private\n")
    (src / "docs" / "private.txt").chmod(0o600)
    (src / "empty" / "nested").mkdir(parents=True)
    os.symlink("docs/guide.txt", src / "link-inside")
    os.symlink("docs", src / "link-dir")
    os.symlink(str(outside), src / "link-outside")
    os.symlink("../../nowhere", src / "link-dangling")
    os.link(src / "README.md", src / "hardlink.md")
    os.mkfifo(src / "pipe")
    git(src, "add", "README.md", ".hidden", ".config", "bin", "docs", "hardlink.md")
    git(src, "add", "link-inside", "link-dir", "link-outside", "link-dangling")
    git(src, "commit", "-q", "-m", "initial")
    # A listening-style socket file (skipped by design).
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "agent.sock"))
    sock.close()
    # Distinct, sub-second timestamps everywhere (set last, directories deepest first).
    stamp = 1_600_000_000_123_456_789
    paths = sorted((p for p in src.rglob("*") if not p.is_symlink()), key=lambda p: -len(p.parts))
    for i, path in enumerate([*paths, src]):
        os.utime(path, ns=(stamp + i * 1_000_001, stamp + i * 1_000_001))
    # Read-only directories (after touching their contents).
    (src / "docs").chmod(0o555)
    (src / "empty").chmod(0o555)
    yield src, outside
    for d in (src / "docs", src / "empty"):
        d.chmod(0o755)


def test_copy_is_faithful(rich_tree: tuple[Path, Path], tmp_path: Path) -> None:
    src, _ = rich_tree
    dst = tmp_path / "copy"
    copy_tree(src, dst)

    source = snapshot(src, add_uw=True)
    copied = snapshot(dst)
    assert copied == source
    # Spot checks of what the snapshot equality covers, for readable failures.
    assert stat.S_IMODE((dst / "bin" / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((dst / "docs" / "frozen.txt").stat().st_mode) == 0o644  # + u+w
    assert stat.S_IMODE((dst / "docs").stat().st_mode) == 0o755  # 0555 + u+w
    assert (dst / "empty" / "nested").is_dir()
    assert (dst / ".hidden").read_text() == "dotfile\n"
    assert stat.S_ISFIFO(os.lstat(dst / "pipe").st_mode)
    assert stat.S_ISSOCK(os.lstat(dst / "agent.sock").st_mode)  # recreated, like cp -a
    assert os.stat(dst / "README.md").st_ino != os.stat(src / "README.md").st_ino
    assert os.stat(dst).st_mtime_ns == os.stat(src).st_mtime_ns


def test_symlinks_are_never_followed(rich_tree: tuple[Path, Path], tmp_path: Path) -> None:
    src, outside = rich_tree
    before = snapshot(outside.parent)
    dst = tmp_path / "copy"
    copy_tree(src, dst)
    link = dst / "link-outside"
    assert link.is_symlink()
    assert os.readlink(link) == str(outside)  # the link, not a copy of its target
    assert os.readlink(dst / "link-dangling") == "../../nowhere"
    assert not (dst / "link-dangling").exists()
    assert (dst / "link-dir").is_symlink()
    # Writing through the copy's own inner links stays inside the copy.
    (dst / "link-inside").write_text("changed in copy\n")
    assert (src / "docs" / "guide.txt").read_text() == "guide\n"
    assert snapshot(outside.parent) == before


def test_git_repository_is_clean_in_the_copy(rich_tree: tuple[Path, Path], tmp_path: Path) -> None:
    src, _ = rich_tree
    (src / "README.md").write_text("uncommitted change\n")
    dst = tmp_path / "copy"
    copy_tree(src, dst)
    assert git(dst, "status", "--porcelain") == git(src, "status", "--porcelain")
    assert " M README.md" in git(dst, "status", "--porcelain")
    git(dst, "checkout", "--", "README.md")
    assert "README.md" not in git(dst, "status", "--porcelain")
    assert git(dst, "log", "--format=%s") == "initial\n"
    assert git(dst, "rev-parse", "HEAD") == git(src, "rev-parse", "HEAD")


def test_copy_is_writable_everywhere(rich_tree: tuple[Path, Path], tmp_path: Path) -> None:
    src, _ = rich_tree
    dst = tmp_path / "copy"
    copy_tree(src, dst)
    for path in [dst, *dst.rglob("*")]:
        if not path.is_symlink():
            assert os.lstat(path).st_mode & stat.S_IWUSR, path


def _as_nobody(action: Callable[[], None]) -> tuple[int, str]:
    """Run ``action`` in a forked child that became uid/gid 65534 (root only): the
    non-root runner's view. Returns (exit code, message): 0 ok, 3 WorkspaceError."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code, message = 1, ""
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            action()
            code = 0
        except WorkspaceError as exc:
            code, message = 3, str(exc)
        except BaseException as exc:  # reported to the parent
            message = f"{type(exc).__name__}: {exc}"
        finally:
            os.write(write_end, message.encode())
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        message = reader.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), message


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary directory other users can reach (pytest's own base is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="copytree-test-"))
    path.chmod(0o755)
    yield path
    remove_tree(path)


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="needs root to run the copy as another user")
def test_read_only_tree_copied_by_a_non_root_user_is_theirs_and_writable(
    open_tmp: Path,
) -> None:
    tmp_path = open_tmp
    src = tmp_path / "ro"
    (src / "sub" / "deep").mkdir(parents=True)
    (src / "sub" / "deep" / "f.txt").write_text("x\n")
    (src / "tool").write_text("#!/bin/sh\n")
    for path, mode in (
        (src / "sub" / "deep" / "f.txt", 0o444),
        (src / "tool", 0o555),
        (src / "sub" / "deep", 0o555),
        (src / "sub", 0o555),
        (src, 0o555),
    ):
        path.chmod(mode)
    work = tmp_path / "work"
    work.mkdir()
    os.chown(work, NOBODY, NOBODY)
    dst = work / "out"

    def copy_then_write() -> None:
        copy_tree(src, dst)
        (dst / "sub" / "deep" / "new.txt").write_text("new")
        (dst / "sub" / "deep" / "f.txt").write_text("edited")
        (dst / "added").mkdir()

    code, message = _as_nobody(copy_then_write)
    assert code == 0, message
    for path in [dst, *dst.rglob("*")]:
        assert os.lstat(path).st_uid == NOBODY
    assert stat.S_IMODE((dst / "tool").stat().st_mode) == 0o755  # exec bits kept
    assert (src / "sub" / "deep" / "f.txt").read_text() == "x\n"
    src.chmod(0o755)


@pytest.mark.skipif(IS_ROOT, reason="root bypasses permissions; the root variant covers it")
def test_read_only_tree_is_writable_after_copy_non_root(tmp_path: Path) -> None:
    src = tmp_path / "ro"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f.txt").write_text("x\n")
    (src / "sub" / "f.txt").chmod(0o444)
    (src / "sub").chmod(0o555)
    dst = tmp_path / "out"
    copy_tree(src, dst)
    (dst / "sub" / "f.txt").write_text("edited")
    (dst / "sub" / "new").write_text("new")
    (src / "sub").chmod(0o755)


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="needs root for a read-only bind mount")
def test_read_only_bind_mount_source(rich_tree: tuple[Path, Path], tmp_path: Path) -> None:
    src, _ = rich_tree
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    bind = proc.run(["mount", "--bind", str(src), str(mnt)])
    if bind.returncode != 0:
        pytest.fail(f"mount --bind failed: {bind.stderr}")
    try:
        ro = proc.run(["mount", "-o", "remount,ro,bind", str(mnt)])
        assert ro.returncode == 0, ro.stderr
        with pytest.raises(OSError, match="Read-only file system"):
            (mnt / "probe").write_text("x")
        dst = tmp_path / "copy"
        copy_tree(mnt, dst)
        assert snapshot(dst) == snapshot(src, add_uw=True)
        (dst / "docs" / "frozen.txt").write_text("writable now\n")
        (dst / "docs" / "new.txt").write_text("new\n")
        (dst / "empty" / "new").mkdir()
    finally:
        proc.run(["umount", str(mnt)])


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="needs root to own files as another user")
def test_root_keeps_ownership(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "mine").write_text("x")
    (src / "sub" / "deeper").mkdir(parents=True)
    os.symlink("../mine", src / "sub" / "link")
    for path in (src / "mine", src / "sub", src / "sub" / "deeper", src / "sub" / "link"):
        os.lchown(path, 1234, 5678)
    dst = tmp_path / "dst"
    copy_tree(src, dst)
    for rel in ("mine", "sub", "sub/deeper", "sub/link"):
        st_ = os.lstat(dst / rel)
        assert (st_.st_uid, st_.st_gid) == (1234, 5678), rel
    assert os.lstat(dst).st_uid == os.lstat(src).st_uid


def test_wide_tree_split_among_workers_keeps_hard_links_within_a_unit(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(100):  # more top-level entries than units wanted: no deeper split
        (src / f"d{i:03d}" / "sub").mkdir(parents=True)
        (src / f"d{i:03d}" / "sub" / "f.txt").write_text(f"{i}\n")
    os.link(src / "d007" / "sub" / "f.txt", src / "d007" / "twin.txt")
    dst = tmp_path / "dst"
    copy_tree(src, dst)
    assert snapshot(dst) == snapshot(src, add_uw=True)
    assert os.stat(dst / "d007" / "twin.txt").st_ino == os.stat(dst / "d007/sub/f.txt").st_ino


def test_deep_narrow_tree_keeps_attributes_of_split_directories(tmp_path: Path) -> None:
    src = tmp_path / "src"
    level = src
    for depth in range(10):
        level = level / f"level{depth}"
        level.mkdir(parents=True)
        (level / f"file{depth}").write_text(str(depth))
    stamp = 1_234_567_890_987_654_321
    for i, path in enumerate(sorted(src.rglob("*"), key=lambda p: -len(p.parts))):
        os.utime(path, ns=(stamp + i, stamp + i))
    for depth, path in enumerate(sorted(p for p in src.rglob("*") if p.is_dir())):
        path.chmod(0o555 if depth % 2 else 0o750)
    dst = tmp_path / "dst"
    try:
        copy_tree(src, dst)
        assert snapshot(dst) == snapshot(src, add_uw=True)
    finally:
        for path in src.rglob("*"):
            if path.is_dir():
                path.chmod(0o755)


# --- destination and source rules ------------------------------------------------------


def test_into_existing_empty_directory(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "f").write_text("f")
    dst = tmp_path / "dst"
    dst.mkdir()
    copy_tree(src, dst)
    assert (dst / "a" / "f").read_text() == "f"


def test_missing_parents_are_created(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("f")
    copy_tree(src, tmp_path / "x" / "y" / "dst")
    assert (tmp_path / "x" / "y" / "dst" / "f").read_text() == "f"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("nonempty", "is not empty"),
        ("file", "exists and is not a directory"),
        ("inside", "one directory lies inside the other"),
        ("outside", "one directory lies inside the other"),
        ("same", "it is the same directory"),
        ("dangling", "dangling symlink"),
    ],
)
def test_bad_destination_is_refused(tmp_path: Path, setup: str, message: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("f")
    dst = {
        "nonempty": tmp_path / "dst",
        "file": tmp_path / "dst",
        "inside": src / "sub" / "copy",
        "outside": tmp_path,
        "same": src,
        "dangling": tmp_path / "dst",
    }[setup]
    if setup == "nonempty":
        dst.mkdir()
        (dst / "existing").write_text("keep me")
    elif setup == "file":
        dst.write_text("a file")
    elif setup == "dangling":
        os.symlink(tmp_path / "nowhere", dst)
    before = snapshot(tmp_path)
    with pytest.raises(WorkspaceError, match=message) as info:
        copy_tree(src, dst)
    assert str(dst) in str(info.value) or str(src) in str(info.value)
    assert info.value.exit_code == 2
    assert snapshot(tmp_path) == before  # nothing written, nothing removed


def test_destination_through_symlink_into_source_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "inner").mkdir(parents=True)
    os.symlink(src / "inner", tmp_path / "alias")
    with pytest.raises(WorkspaceError, match="lies inside"):
        copy_tree(src, tmp_path / "alias")


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_bad_source_is_refused(tmp_path: Path, kind: str) -> None:
    src = tmp_path / "src"
    if kind == "file":
        src.write_text("not a dir")
    expected = "does not exist" if kind == "missing" else "not a directory"
    with pytest.raises(WorkspaceError, match=expected):
        copy_tree(src, tmp_path / "dst")
    assert not (tmp_path / "dst").exists()


def test_failure_to_start_cp_removes_the_partial_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("f")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    with pytest.raises(WorkspaceError, match=r"cannot start cp: No such file"):
        copy_tree(src, tmp_path / "dst")
    assert not (tmp_path / "dst").exists()


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="needs root to run the copy as another user")
def test_unreadable_file_fails_with_path_and_reason_and_cleans_up(open_tmp: Path) -> None:
    tmp_path = open_tmp
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.txt").write_text("ok")
    (src / "secret.txt").write_text("root only")
    (src / "secret.txt").chmod(0o600)
    work = tmp_path / "work"
    work.mkdir()
    os.chown(work, NOBODY, NOBODY)
    dst = work / "dst"
    code, message = _as_nobody(lambda: copy_tree(src, dst))
    assert code == 3, message
    assert str(src) in message
    assert "secret.txt" in message
    assert "Permission denied" in message
    assert not dst.exists()


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="needs root to mount a small tmpfs")
@pytest.mark.parametrize("count", [1, 3])
def test_full_disk_fails_with_the_reason_and_removes_every_copy(tmp_path: Path, count: int) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "small.txt").write_text("fits\n")
    (src / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    small = tmp_path / "small-fs"
    small.mkdir()
    mounted = proc.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)])
    assert mounted.returncode == 0, mounted.stderr
    try:
        dsts = [small / f"w{i}" for i in range(count)]
        # Which file meets the full disk first depends on the workers' order.
        with pytest.raises(WorkspaceError, match=r"\.(bin|txt).*No space left on device") as info:
            copy_tree_many(src, dsts)
        assert str(src) in str(info.value)
        assert list(small.iterdir()) == []
    finally:
        proc.run(["umount", str(small)])


def test_unreadable_file_fails_non_root(tmp_path: Path) -> None:
    if IS_ROOT:
        pytest.skip("root reads everything; the root test runs the copy as nobody")
    src = tmp_path / "src"
    src.mkdir()
    (src / "secret.txt").write_text("x")
    (src / "secret.txt").chmod(0)
    with pytest.raises(WorkspaceError, match=r"secret\.txt.*Permission denied"):
        copy_tree(src, tmp_path / "dst")
    assert not (tmp_path / "dst").exists()


# --- fan-out ------------------------------------------------------------------------------


def test_copy_tree_many_gives_independent_faithful_copies(
    rich_tree: tuple[Path, Path], tmp_path: Path
) -> None:
    src, _ = rich_tree
    dsts = [tmp_path / "many" / f"w{i}" for i in range(4)]
    dsts[1].mkdir(parents=True)  # one already exists, empty
    copy_tree_many(src, dsts)
    expected = snapshot(src, add_uw=True)
    for dst in dsts:
        assert snapshot(dst) == expected
    (dsts[0] / "README.md").write_text("only in w0\n")
    (dsts[0] / "docs" / "new.txt").write_text("new\n")
    os.chmod(dsts[0] / "bin" / "run.sh", 0o600)
    for dst in dsts[1:]:
        assert snapshot(dst) == expected
    assert os.stat(dsts[0] / "README.md").st_ino != os.stat(dsts[1] / "README.md").st_ino


def test_copy_tree_many_checks_every_destination_first(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("f")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x").write_text("x")
    with pytest.raises(WorkspaceError, match="not empty"):
        copy_tree_many(src, [tmp_path / "a", bad, tmp_path / "c"])
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "c").exists()
    with pytest.raises(WorkspaceError, match="not distinct"):
        copy_tree_many(src, [tmp_path / "a", tmp_path / "b" / ".." / "a"])


def test_copy_tree_many_with_no_destinations_does_nothing(tmp_path: Path) -> None:
    copy_tree_many(tmp_path / "does-not-matter", [])


# --- random trees -------------------------------------------------------------------------

_names = st.text(alphabet=st.sampled_from("abcXYZ019 -_.é漢\t"), min_size=1, max_size=12).filter(
    lambda n: n not in {".", ".."}
)
_modes = st.sampled_from([0o644, 0o755, 0o444, 0o600, 0o700, 0o555, 0o640])
_node = st.recursive(
    st.one_of(
        st.tuples(st.just("file"), st.binary(max_size=3000), _modes),
        st.tuples(st.just("link"), _names, st.just(0)),
    ),
    lambda children: st.tuples(
        st.just("dir"), st.dictionaries(_names, children, max_size=5), _modes
    ),
    max_leaves=25,
)
_trees = st.dictionaries(_names, _node, max_size=8)


def _build(path: Path, tree: dict[str, tuple[str, object, int]], mtime: list[int]) -> None:
    dirs: list[tuple[Path, int]] = []
    for name, (kind, payload, mode) in tree.items():
        target = path / name
        if kind == "file":
            assert isinstance(payload, bytes)
            target.write_bytes(payload)
            target.chmod(mode)
        elif kind == "link":
            assert isinstance(payload, str)
            os.symlink(payload, target)
        else:
            assert isinstance(payload, dict)
            target.mkdir()
            _build(target, payload, mtime)
            dirs.append((target, mode))
        if kind != "link":
            mtime[0] += 7_000_003
            os.utime(target, ns=(mtime[0], mtime[0]), follow_symlinks=False)
    for target, mode in dirs:
        target.chmod(mode | stat.S_IXUSR | stat.S_IRUSR)  # readable for a non-root run


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(tree=_trees)
def test_random_trees_copy_faithfully(
    tree: dict[str, tuple[str, object, int]], tmp_path: Path
) -> None:
    base = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
    src = base / "src"
    src.mkdir(parents=True)
    _build(src, tree, [1_500_000_000_000_000_000])
    dst = base / "dst"
    copy_tree(src, dst)
    assert snapshot(dst) == snapshot(src, add_uw=True)
