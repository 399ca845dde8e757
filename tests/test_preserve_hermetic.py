"""Preserving a worktree task's work without running anything the workspace controls,
against real git: every attack vector plants a command that would create a marker file;
no marker may appear, and the branch and patch must still be right (the patch applied
to the start commit gives the end tree, byte for byte)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from claude_runner import proc
from claude_runner.copytree import copy_tree
from claude_runner.errors import PreserveError
from claude_runner.pipeline import preserve

IDENTITY = ("Runner Test", "runner@test.invalid")
HOOKS = [
    "applypatch-msg",
    "pre-applypatch",
    "post-applypatch",
    "pre-commit",
    "pre-merge-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
    "pre-rebase",
    "post-checkout",
    "post-merge",
    "pre-push",
    "pre-receive",
    "update",
    "proc-receive",
    "post-receive",
    "post-update",
    "reference-transaction",
    "push-to-checkout",
    "pre-auto-gc",
    "post-rewrite",
    "sendemail-validate",
    "fsmonitor-watchman",
    "p4-changelist",
    "p4-prepare-changelist",
    "p4-post-changelist",
    "p4-pre-submit",
    "post-index-change",
]


def clean_env(home: Path) -> dict[str, str]:
    """The tests' own git: nothing from the machine's configuration."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }


@dataclass
class World:
    tmp: Path
    ws: Path
    marker: Path
    evil: Path  # a script that creates the marker
    env: dict[str, str]  # what the runner is given (HOME may be poisoned)

    def git(self, cwd: Path, *args: str, git_dir: Path | None = None) -> str:
        env = clean_env(self.tmp / "clean-home")
        if git_dir is not None:
            env["GIT_DIR"] = str(git_dir)
        done = proc.run(["git", *args], cwd=cwd, env=env)
        assert done.returncode == 0, (args, done.stderr)
        return done.stdout

    def raw(self, git_dir: Path, *args: str) -> bytes:
        env = {**clean_env(self.tmp / "clean-home"), "GIT_DIR": str(git_dir)}
        done = proc.run_bytes(["git", *args], cwd=self.tmp, env=env)
        assert done.returncode == 0, (args, done.stderr)
        return done.stdout


@pytest.fixture
def world(tmp_path: Path) -> World:
    (tmp_path / "clean-home").mkdir()
    ws = tmp_path / "ws"
    ws.mkdir()
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.sh"
    evil.write_text(f"#!/bin/sh\necho \"$0 $*\" >> '{marker}'\ncat >/dev/null 2>&1\nexit 0\n")
    evil.chmod(0o755)
    w = World(
        tmp_path, ws, marker, evil, {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home")}
    )
    w.git(ws, "init", "-q", "-b", "main")
    (ws / ".gitignore").write_text("ignored.txt\n*.log\n")
    (ws / "tracked.txt").write_text("original\n")
    (ws / "gone.txt").write_text("to be deleted\n")
    (ws / "data.bin").write_bytes(bytes(range(256)) * 4)
    (ws / "tool.sh").write_text("#!/bin/sh\n")
    (ws / "tool.sh").chmod(0o755)
    os.symlink("tracked.txt", ws / "link")
    w.git(ws, "add", "-A")
    w.git(ws, "commit", "-qm", "base")
    (ws / "untracked.txt").write_text("untracked\n")
    (ws / "ignored.txt").write_text("ignored\n")
    return w


def open_repo(w: World, **kw: object) -> preserve.Repository:
    return preserve.open_repository(
        w.ws,
        w.tmp / "runner-git",
        env=w.env,
        identity=IDENTITY,
        **kw,  # type: ignore[arg-type]
    )


def task_changes(copy: Path) -> None:
    """A task's typical work: text, binary, CRLF, mode, symlink, delete, new dir."""
    (copy / "tracked.txt").write_text("changed\n")
    (copy / "gone.txt").unlink()
    (copy / "new.txt").write_bytes(b"line one\r\nline two\r\n$Id: keep me $\n")
    (copy / "blob.bin").write_bytes(b"\0\1\2\xff" * 100)
    (copy / "data.bin").write_bytes(bytes(range(255, -1, -1)) * 4)
    (copy / "tool.sh").chmod(0o644)
    (copy / "link").unlink()
    os.symlink("new.txt", copy / "link")
    (copy / "dir" / "sub").mkdir(parents=True)
    (copy / "dir" / "sub" / "deep.txt").write_text("deep\n")
    (copy / "build.log").write_text("ignored by *.log\n")


def run_task(
    w: World,
    name: str = "t",
    change: Callable[[Path], object] = task_changes,
    *,
    repo: preserve.Repository | None = None,
    branch: str | None = None,
    changed_paths: list[str] | None = None,
) -> tuple[preserve.Preserved, preserve.Base, Path]:
    repo = repo or open_repo(w)
    copy = w.tmp / "copies" / name
    copy_tree(w.ws, copy)
    base = repo.snapshot_start(copy)
    change(copy)
    kept = repo.preserve(
        base,
        branch=branch or f"pipeline/run/s/{name}",
        patch=w.tmp / f"{name}.patch",
        changed_paths=changed_paths,
    )
    return kept, base, copy


def materialize(w: World, git_dir: Path, commit: str, dst: Path) -> None:
    """The commit's tree as files, byte for byte (no attribute, no conversion)."""
    dst.mkdir(parents=True)
    listing = w.raw(git_dir, "ls-tree", "-r", "-z", commit)
    for record in filter(None, listing.split(b"\0")):
        meta, _, path = record.partition(b"\t")
        mode, kind, oid = meta.split(b" ")
        assert kind == b"blob", record  # never a gitlink
        target = dst / os.fsdecode(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = w.raw(git_dir, "cat-file", "blob", oid.decode())
        if mode == b"120000":
            os.symlink(os.fsdecode(data), target)
        else:
            target.write_bytes(data)
            target.chmod(0o755 if mode == b"100755" else 0o644)


def tree_bytes(root: Path) -> dict[str, tuple[str, bytes]]:
    """Every file below ``root`` (no .git, nothing ignored is expected here)."""
    out: dict[str, tuple[str, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            if name == ".git":  # a nested repository's gitfile: never preserved
                continue
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path).encode())
            else:
                kind = "exec" if path.stat().st_mode & 0o100 else "file"
                out[rel] = (kind, path.read_bytes())
    return out


def expected_state(
    copy: Path, ignored: tuple[str, ...] = ("ignored.txt", "build.log")
) -> dict[str, tuple[str, bytes]]:
    return {k: v for k, v in tree_bytes(copy).items() if k not in ignored}


def check_patch(w: World, kept: preserve.Preserved, base: preserve.Base, copy: Path) -> None:
    """The branch holds the copy's files exactly, and the patch applied to a checkout of
    the start commit gives the same files, byte for byte."""
    assert kept.repository is not None
    assert kept.commit is not None
    assert kept.patch is not None
    git_dir = kept.repository
    name = kept.commit[:12]
    end = w.tmp / "check" / f"end-{name}"
    materialize(w, git_dir, kept.commit, end)
    assert tree_bytes(end) == expected_state(copy)
    start = w.tmp / "check" / f"start-{name}"
    if base.commit is not None:
        materialize(w, git_dir, base.commit, start)
    else:
        start.mkdir(parents=True)
    env = {**clean_env(w.tmp / "clean-home"), "GIT_CEILING_DIRECTORIES": str(start.parent)}
    done = proc.run(["git", "apply", "--binary", str(kept.patch)], cwd=start, env=env)
    assert done.returncode == 0, done.stderr
    assert tree_bytes(start) == tree_bytes(end)


# --- the attack vectors ----------------------------------------------------------------
def _config(w: World, path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text.replace("EVIL", str(w.evil)))


def _hooks(w: World, hooks_dir: Path) -> None:
    hooks_dir.mkdir(parents=True, exist_ok=True)
    for hook in HOOKS:
        shutil.copy(w.evil, hooks_dir / hook)
        (hooks_dir / hook).chmod(0o755)


EVIL_CONFIG = """
[core]
    fsmonitor = EVIL
    hooksPath = HOOKS
    pager = EVIL
    editor = EVIL
    sshCommand = EVIL
    askPass = EVIL
    alternateRefsCommand = EVIL
    attributesFile = ATTRS
    excludesFile = /dev/null
    untrackedCache = true
    autocrlf = true
    safecrlf = false
    eol = crlf
[filter "x"]
    clean = EVIL
    smudge = EVIL
    process = EVIL
    required = true
[diff "x"]
    textconv = EVIL
    command = EVIL
[diff]
    external = EVIL
    noprefix = true
    mnemonicPrefix = true
    relative = true
    algorithm = patience
[color]
    ui = always
[pager]
    diff = EVIL
    log = EVIL
[commit]
    gpgSign = true
[gpg]
    program = EVIL
    format = openpgp
[credential]
    helper = !EVIL
[sequence]
    editor = EVIL
[merge "x"]
    driver = EVIL
[uploadpack]
    packObjectsHook = EVIL
[gc]
    auto = 1
[maintenance]
    auto = true
[alias]
    ls-files = !EVIL
    diff = !EVIL
"""


def _evil_config(w: World, path: Path) -> None:
    hooks = w.tmp / "evil-hooks"
    _hooks(w, hooks)
    attrs = w.tmp / "evil-attributes"
    attrs.write_text("* filter=x diff=x text eol=crlf ident\n")
    _config(w, path, EVIL_CONFIG.replace("HOOKS", str(hooks)).replace("ATTRS", str(attrs)))


def v_hooks(w: World) -> None:
    _hooks(w, w.ws / ".git" / "hooks")


def v_repo_config(w: World) -> None:
    _evil_config(w, w.ws / ".git" / "config")


def v_include(w: World) -> None:
    included = w.tmp / "included.cfg"
    _evil_config(w, included)
    _config(w, w.ws / ".git" / "config", f"[include]\n    path = {included}\n")
    _config(w, w.ws / ".git" / "config", f'[includeIf "gitdir:/"]\n    path = {included}\n')
    _config(w, w.ws / ".git" / "config", f'[includeIf "onbranch:*"]\n    path = {included}\n')


def v_user_config(w: World) -> None:
    home = Path(w.env["HOME"])
    home.mkdir(exist_ok=True)
    _evil_config(w, home / ".gitconfig")
    (home / ".config" / "git").mkdir(parents=True)
    _evil_config(w, home / ".config" / "git" / "config")
    (home / ".config" / "git" / "attributes").write_text("* filter=x diff=x\n")
    (home / ".config" / "git" / "ignore").write_text("*\n")  # would hide every new file


def v_xdg_config(w: World) -> None:
    xdg = w.tmp / "xdg"
    (xdg / "git").mkdir(parents=True)
    _evil_config(w, xdg / "git" / "config")
    (xdg / "git" / "attributes").write_text("* filter=x diff=x\n")
    w.env["XDG_CONFIG_HOME"] = str(xdg)


def v_environment(w: World) -> None:
    """The runner's own environment carries git settings: none may reach its git."""
    w.env.update(
        GIT_EXTERNAL_DIFF=str(w.evil),
        GIT_PAGER=str(w.evil),
        GIT_EDITOR=str(w.evil),
        GIT_SSH_COMMAND=str(w.evil),
        GIT_ASKPASS=str(w.evil),
        GIT_CONFIG_PARAMETERS=f"'core.fsmonitor'='{w.evil}' 'core.hooksPath'='{w.tmp}/h'",
        GIT_CONFIG_COUNT="1",
        GIT_CONFIG_KEY_0="filter.x.clean",
        GIT_CONFIG_VALUE_0=str(w.evil),
        GIT_TRACE=str(w.marker),
        GIT_DIR=str(w.tmp / "elsewhere"),
        GIT_INDEX_FILE=str(w.tmp / "elsewhere-index"),
        GIT_CONFIG=str(w.tmp / "nothing"),
        GIT_CONFIG_SYSTEM=str(w.tmp / "nothing"),
        GIT_CONFIG_GLOBAL=str(w.tmp / "nothing"),
    )
    _evil_config(w, w.tmp / "nothing")
    _hooks(w, w.tmp / "h")


def v_attributes(w: World) -> None:
    """Attributes that name drivers, convert bytes, or hide content (in the tree, in
    info/attributes, and macro-defined)."""
    _evil_config(w, w.ws / ".git" / "config")
    (w.ws / ".gitattributes").write_text(
        "[attr]evil filter=x diff=x text eol=crlf ident\n"
        "* evil\n*.txt working-tree-encoding=UTF-16 filter=x diff=x\n"
        "*.bin diff=x -binary text\n"
    )
    (w.ws / ".git" / "info").mkdir(exist_ok=True)
    (w.ws / ".git" / "info" / "attributes").write_text("* filter=x diff=x text ident\n")


def v_fsmonitor_index(w: World) -> None:
    """An index carrying an untracked cache, and a config that asks for fsmonitor."""
    w.git(w.ws, "-c", "core.untrackedCache=true", "update-index", "--untracked-cache")
    w.git(w.ws, "-c", "core.untrackedCache=true", "status")
    _evil_config(w, w.ws / ".git" / "config")


def v_worktree_and_alternates(w: World) -> None:
    other = w.tmp / "elsewhere"
    other.mkdir()
    _config(w, w.ws / ".git" / "config", f"[core]\n    worktree = {other}\n")
    (w.ws / ".git" / "objects" / "info" / "alternates").write_text(f"{w.tmp}/no-such-objects\n")


def v_partial_clone(w: World) -> None:
    """A promisor remote whose transport runs a command: git must never fetch."""
    _config(
        w,
        w.ws / ".git" / "config",
        '[extensions]\n    partialClone = origin\n[remote "origin"]\n'
        f"    url = ext::{w.evil} %S\n    promisor = true\n"
        "    fetch = +refs/heads/*:refs/remotes/origin/*\n"
        "[protocol]\n    allow = always\n",
    )
    env = clean_env(w.tmp / "clean-home")
    proc.run(["git", "config", "core.repositoryformatversion", "1"], cwd=w.ws, env=env)


def v_nested_repos(w: World) -> None:
    """Nested repositories with hooks and an fsmonitor of their own, one with a
    gitfile pointing at the workspace's own .git."""
    for name in ("vendor/lib", "empty"):
        nested = w.ws / name
        nested.mkdir(parents=True)
        w.git(nested, "init", "-q")
    (w.ws / "vendor" / "lib" / "code.py").write_text("print(1)\n")
    w.git(w.ws / "vendor" / "lib", "add", "-A")
    w.git(w.ws / "vendor" / "lib", "commit", "-qm", "x")
    for name in ("vendor/lib", "empty"):
        _hooks(w, w.ws / name / ".git" / "hooks")
        _evil_config(w, w.ws / name / ".git" / "config")
    (w.ws / "pointer").mkdir()
    (w.ws / "pointer" / ".git").write_text(f"gitdir: {w.ws / '.git'}\n")
    (w.ws / "pointer" / "p.txt").write_text("p\n")


VECTORS = {
    f.__name__[2:]: f
    for f in (
        v_hooks,
        v_repo_config,
        v_include,
        v_user_config,
        v_xdg_config,
        v_environment,
        v_attributes,
        v_fsmonitor_index,
        v_worktree_and_alternates,
        v_partial_clone,
        v_nested_repos,
    )
}


def plant_in_copy(w: World) -> Callable[[Path], object]:
    """The agent plants every vector in its own copy, then does its work."""

    def change(copy: Path) -> None:
        _hooks(w, copy / ".git" / "hooks")
        _evil_config(w, copy / ".git" / "config")
        (copy / ".gitattributes").write_text("* filter=x diff=x text eol=crlf ident\n")
        task_changes(copy)

    return change


@pytest.mark.parametrize("vector", sorted(VECTORS))
def test_nothing_the_workspace_controls_runs(world: World, vector: str) -> None:
    VECTORS[vector](world)
    kept, base, copy = run_task(world, change=plant_in_copy(world))
    assert not world.marker.exists(), world.marker.read_text()
    if vector == "environment":
        assert not (world.tmp / "elsewhere").exists()
    check_patch(world, kept, base, copy)
    assert kept.branch == "pipeline/run/s/t"
    assert world.git(world.ws, "rev-parse", kept.branch).strip() == kept.commit
    if vector == "nested_repos":
        names = world.git(world.ws, "ls-tree", "-r", "--name-only", kept.branch).split()
        assert {"vendor/lib/code.py", "pointer/p.txt"} <= set(names)
        assert not [n for n in names if "/.git/" in n or n.endswith("/.git")]


def test_the_workspace_checkout_index_and_head_are_untouched(world: World) -> None:
    index = (world.ws / ".git" / "index").read_bytes()
    status = world.git(world.ws, "status", "--porcelain", "--untracked-files=all")
    head = world.git(world.ws, "rev-parse", "HEAD")
    kept, base, _ = run_task(world)
    assert (world.ws / ".git" / "index").read_bytes() == index
    assert world.git(world.ws, "status", "--porcelain", "--untracked-files=all") == status
    assert world.git(world.ws, "rev-parse", "HEAD") == head
    assert world.git(world.ws, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    # The start commit: HEAD plus the untracked file, ignored files left out.
    start = f"{kept.branch}^"
    assert world.git(world.ws, "rev-parse", start).strip() == base.commit
    assert world.git(world.ws, "rev-parse", f"{start}^").strip() == head.strip()
    assert world.git(world.ws, "show", f"{start}:untracked.txt") == "untracked\n"
    names = world.git(world.ws, "ls-tree", "-r", "--name-only", f"{kept.branch}").split()
    assert "ignored.txt" not in names
    assert "build.log" not in names
    assert kept.changed_files == len(
        world.git(world.ws, "diff", "--name-only", "--no-renames", start, f"{kept.branch}").split()
    )
    world.git(world.ws, "fsck", "--strict", "--no-dangling")


def test_nothing_changed_gives_no_branch_and_no_patch(world: World) -> None:
    kept, _, _ = run_task(world, change=lambda copy: None)
    assert kept == preserve.Preserved(None, None, 0)
    assert not (world.tmp / "t.patch").exists()
    assert "pipeline" not in world.git(world.ws, "branch", "--all")


def test_a_clean_workspace_branches_from_head(world: World) -> None:
    (world.ws / "untracked.txt").unlink()
    kept, base, copy = run_task(world)
    assert base.commit == world.git(world.ws, "rev-parse", "HEAD").strip()
    check_patch(world, kept, base, copy)


def test_a_rewrite_at_the_same_size_in_the_same_second_is_seen(world: World) -> None:
    """Racy git: the task's index compares sizes and whole-second mtimes. A file
    recorded with mtime x.2 s, the index written at x.5 s, the file rewritten at the same
    size at x.9 s: it must still be preserved. (The times are set explicitly, as if the
    snapshot and the rewrite fell in one second.)"""
    second = (time.time_ns() // 1_000_000_000 - 10) * 1_000_000_000
    tracked = world.ws / "tracked.txt"
    os.utime(tracked, ns=(second + 200_000_000, second + 200_000_000))
    world.git(world.ws, "update-index", "--refresh")
    repo = open_repo(world)
    copy = world.tmp / "copy"
    copy_tree(world.ws, copy)
    base = repo.snapshot_start(copy)
    os.utime(base.index, ns=(second + 500_000_000, second + 500_000_000))
    (copy / "tracked.txt").write_text("ORIGINAL\n")  # the same size
    os.utime(copy / "tracked.txt", ns=(second + 900_000_000, second + 900_000_000))
    kept = repo.preserve(base, branch="pipeline/run/s/t", patch=world.tmp / "t.patch")
    assert world.git(world.ws, "show", f"{kept.branch}:tracked.txt") == "ORIGINAL\n"
    check_patch(world, kept, base, copy)


# --- nested repositories, bad paths ----------------------------------------------------
def test_nested_repositories_are_files_and_siblings_are_kept(world: World) -> None:
    def change(copy: Path) -> None:
        (copy / "empty").mkdir()
        world.git(copy / "empty", "init", "-q")  # no commit: git add -A fails on it
        (copy / "full").mkdir()
        world.git(copy / "full", "init", "-q")
        (copy / "full" / "f.txt").write_text("f\n")
        (copy / "full" / "x.log").write_text("ignored\n")
        (copy / "full" / ".gitignore").write_text("local-ignored\n")
        (copy / "full" / "local-ignored").write_text("ignored by the nested .gitignore\n")
        world.git(copy / "full", "add", "-A")
        world.git(copy / "full", "commit", "-qm", "nested")
        (copy / "w.txt").write_text("w\n")

    kept, _, copy = run_task(world, change=change)
    listing = world.git(world.ws, "ls-tree", "-r", f"{kept.branch}")
    assert "160000" not in listing  # never a gitlink
    names = world.git(world.ws, "ls-tree", "-r", "--name-only", f"{kept.branch}").split()
    assert {"w.txt", "full/f.txt", "full/.gitignore"} <= set(names)
    assert not {"full/x.log", "full/local-ignored"} & set(names)
    assert not [n for n in names if ".git/" in n]
    ignored = ("ignored.txt", "full/x.log", "full/local-ignored")
    end = world.tmp / "end"
    assert kept.commit is not None
    materialize(world, world.ws / ".git", kept.commit, end)
    assert tree_bytes(end) == expected_state(copy, ignored)


def test_a_registered_submodule_stays_a_gitlink_until_its_files_change(world: World) -> None:
    sub_src = world.tmp / "sub-src"
    sub_src.mkdir()
    world.git(sub_src, "init", "-q", "-b", "main")
    (sub_src / "s.txt").write_text("s\n")
    world.git(sub_src, "add", "-A")
    world.git(sub_src, "commit", "-qm", "s")
    world.git(
        world.ws, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub_src), "sub"
    )
    world.git(world.ws, "commit", "-qm", "submodule")
    gitlink = world.git(world.ws, "rev-parse", "HEAD:sub").strip()
    repo = open_repo(world)
    kept, _, _ = run_task(world, "a", lambda c: (c / "top.txt").write_text("t\n"), repo=repo)
    assert world.git(world.ws, "rev-parse", f"{kept.branch}:sub").strip() == gitlink
    kept, _, _ = run_task(world, "b", lambda c: (c / "sub" / "s.txt").write_text("S\n"), repo=repo)
    assert "160000" not in world.git(world.ws, "ls-tree", "-r", f"{kept.branch}")
    assert world.git(world.ws, "show", f"{kept.branch}:sub/s.txt") == "S\n"


def test_one_path_git_refuses_does_not_lose_the_others(world: World) -> None:
    def change(copy: Path) -> None:
        (copy / ".GIT").mkdir()
        (copy / ".GIT" / "x").write_text("a name git refuses\n")
        (copy / "git~1").write_text("so is this one\n")
        (copy / "w.txt").write_text("w\n")

    with pytest.raises(PreserveError) as caught:
        run_task(world, change=change)
    assert ".GIT/x" in str(caught.value)
    assert "git~1" in str(caught.value)
    kept = caught.value.kept
    assert isinstance(kept, preserve.Preserved)
    assert kept.branch is not None
    assert world.git(world.ws, "show", f"{kept.branch}:w.txt") == "w\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_reported(world: World) -> None:
    def change(copy: Path) -> None:
        (copy / "secret.txt").write_text("s\n")
        (copy / "secret.txt").chmod(0)
        (copy / "w.txt").write_text("w\n")

    with pytest.raises(PreserveError, match=r"secret\.txt"):
        run_task(world, change=change)


# --- the workspace's .git is hostile: never written through --------------------------
def test_a_symlinked_refs_directory_is_not_written_through(world: World) -> None:
    outside = world.tmp / "outside"
    outside.mkdir()
    heads = world.ws / ".git" / "refs" / "heads"
    (outside / "main").write_text((heads / "main").read_text())
    shutil.rmtree(heads)
    os.symlink(outside, heads)
    with pytest.raises(PreserveError, match="symlink") as caught:
        run_task(world)
    assert sorted(p.name for p in outside.iterdir()) == ["main"]
    kept = caught.value.kept
    assert isinstance(kept, preserve.Preserved)
    assert kept.patch is not None
    assert kept.patch.read_bytes()  # the work is still kept as a patch


def test_symlinked_object_directories_are_not_written_through(world: World) -> None:
    outside = world.tmp / "outside"
    outside.mkdir()
    objects = world.ws / ".git" / "objects"
    for i in range(256):
        fan = objects / f"{i:02x}"
        if not fan.exists():
            os.symlink(outside, fan)
    with pytest.raises(PreserveError, match="symlink"):
        run_task(world)
    assert list(outside.iterdir()) == []


def test_a_gitfile_workspace_is_not_followed(world: World) -> None:
    """A .git file pointing at another repository: that repository is never touched;
    the work is kept as a patch and a commit in the runner's repository."""
    other = world.ws
    ws = world.tmp / "linked"
    world.git(other, "worktree", "add", "-q", str(ws))
    refs_before = world.git(other, "for-each-ref")
    world.ws = ws
    kept, base, copy = run_task(world)
    assert kept.branch is None
    assert kept.repository == world.tmp / "runner-git"
    assert world.git(other, "for-each-ref") == refs_before
    check_patch(world, kept, base, copy)


# --- not a git repository --------------------------------------------------------------
def test_a_workspace_without_git_gets_a_patch_against_its_starting_copy(world: World) -> None:
    shutil.rmtree(world.ws / ".git")
    repo = open_repo(world)
    assert repo.note == "the workspace is not the top of a git repository"
    kept, base, copy = run_task(world, repo=repo)
    assert kept.branch is None
    assert kept.repository == world.tmp / "runner-git"
    assert kept.commit is not None
    runner_git = world.tmp / "runner-git"
    ref = world.raw(runner_git, "rev-parse", "refs/heads/pipeline/run/s/t").strip()
    assert ref.decode() == kept.commit
    check_patch(world, kept, base, copy)
    # A second task starts from the same state (the first one's index is the cache).
    kept2, base2, copy2 = run_task(world, "u", repo=repo)
    assert base2.tree == base.tree
    check_patch(world, kept2, base2, copy2)


def test_a_subdirectory_of_a_repository_is_not_a_repository(world: World) -> None:
    sub = world.ws / "dir"
    sub.mkdir()
    (sub / "a.txt").write_text("a\n")
    world.ws = sub
    repo = open_repo(world)
    assert repo.note is not None
    kept, base, copy = run_task(world, repo=repo, change=lambda c: (c / "a.txt").write_text("b\n"))
    assert kept.branch is None
    assert kept.changed_files == 1
    check_patch(world, kept, base, copy)


# --- branch names ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("stage", "task_id"), [("a.lock", "a..b"), ("x.", "port[3]"), ("s", "A.LOCK"), ("v1.2", ".x")]
)
def test_every_accepted_id_gets_a_branch(world: World, stage: str, task_id: str) -> None:
    branch = preserve.branch_name("20261130T000000.000Z-abcdef", stage, task_id)
    kept, base, copy = run_task(world, branch=branch)
    assert kept.branch == branch
    assert world.git(world.ws, "rev-parse", f"refs/heads/{branch}").strip() == kept.commit
    check_patch(world, kept, base, copy)


# --- bounded time and cancellation ------------------------------------------------------
def _fifo_alternates(world: World) -> None:
    """git blocks opening a FIFO: a step that would never end."""
    os.mkfifo(world.ws / ".git" / "objects" / "info" / "alternates")


def test_a_git_step_that_hangs_is_stopped_at_its_time_limit(world: World) -> None:
    _fifo_alternates(world)
    repo = open_repo(world, timeout=1.0)
    copy = world.tmp / "copy"
    copy_tree(world.ws, copy)
    with pytest.raises(PreserveError, match="did not finish within 1 s"):
        repo.snapshot_start(copy)
    assert _git_children() == []


def _git_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.name() == "git"]


def test_cancellation_stops_a_running_git_step(world: World) -> None:
    _fifo_alternates(world)
    cancel = threading.Event()
    repo = open_repo(world, cancel=cancel)
    copy = world.tmp / "copy"
    copy_tree(world.ws, copy)

    def cancel_once_git_blocks() -> None:
        end = time.monotonic() + 30
        while not _git_children() and time.monotonic() < end:
            time.sleep(0.01)
        cancel.set()

    watcher = threading.Thread(target=cancel_once_git_blocks)
    watcher.start()
    with pytest.raises(PreserveError, match="cancelled"):
        repo.snapshot_start(copy)
    watcher.join()
    assert _git_children() == []


def test_run_bytes_stops_the_child_when_cancelled() -> None:
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    with pytest.raises(proc.Cancelled):
        proc.run_bytes(["sh", "-c", "sleep 30 & wait"], timeout=60, cancel=cancel)


def test_run_bytes_sends_input_and_keeps_it_across_polls() -> None:
    data = os.urandom(1 << 20)
    done = proc.run_bytes(
        ["sh", "-c", "sleep 0.2; cat"], input=data, timeout=30, cancel=threading.Event()
    )
    assert done.stdout == data


# --- changed_paths ---------------------------------------------------------------------
def test_changed_paths_gives_the_same_branch_and_patch_as_a_full_scan(world: World) -> None:
    (world.ws / "old").mkdir()
    (world.ws / "old" / "a.txt").write_text("a\n")
    (world.ws / "old" / "b.txt").write_text("b\n")
    (world.ws / "swap").write_text("a file that becomes a directory\n")
    world.git(world.ws, "add", "-A")
    world.git(world.ws, "commit", "-qm", "more")

    def change(copy: Path) -> None:
        task_changes(copy)
        shutil.rmtree(copy / "old")
        (copy / "swap").unlink()
        (copy / "swap").mkdir()
        (copy / "swap" / "inner.txt").write_text("inner\n")
        (copy / "nest").mkdir()
        world.git(copy / "nest", "init", "-q")
        (copy / "nest" / "n.txt").write_text("n\n")

    changed = [
        "tracked.txt", "gone.txt", "new.txt", "blob.bin", "data.bin", "tool.sh", "link",
        "dir", "build.log", "old", "swap", "nest/n.txt",
    ]  # fmt: skip
    env = {"GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}
    world.env.update(env)
    repo = open_repo(world)
    full, base_full, _ = run_task(world, "full", change, repo=repo)
    hinted, base_hinted, _ = run_task(world, "hinted", change, repo=repo, changed_paths=changed)
    assert base_full.commit == base_hinted.commit
    assert full.commit is not None
    assert hinted.commit is not None
    tree = world.git(world.ws, "rev-parse", f"{full.commit}^{{tree}}")
    assert world.git(world.ws, "rev-parse", f"{hinted.commit}^{{tree}}") == tree
    assert full.patch is not None
    assert hinted.patch is not None
    assert hinted.patch.read_bytes() == full.patch.read_bytes()
    assert hinted.changed_files == full.changed_files
    # Paths outside the hint are taken from the start, even when they changed.
    partial, _, _ = run_task(world, "partial", change, repo=repo, changed_paths=["tracked.txt"])
    assert partial.changed_files == 1


def test_a_submodule_hint_and_errors_are_precise(world: World) -> None:
    with pytest.raises(PreserveError, match="not a path inside"):
        run_task(world, changed_paths=["../escape"])


# --- concurrency ---------------------------------------------------------------------------
def test_parallel_tasks_share_the_runner_repository(world: World) -> None:
    repo = open_repo(world)
    results: dict[str, tuple[preserve.Preserved, preserve.Base, Path]] = {}

    def one(name: str) -> None:
        def change(copy: Path) -> None:
            (copy / f"{name}.txt").write_text(f"{name}\n")
            (copy / "untracked.txt").write_text(f"changed by {name}\n")

        results[name] = run_task(world, name, change, repo=repo)

    threads = [threading.Thread(target=one, args=(f"p{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6
    for name, (kept, _, copy) in results.items():
        assert world.git(world.ws, "show", f"{kept.branch}:{name}.txt") == f"{name}\n"
        assert kept.changed_files == 2
        del copy
    world.git(world.ws, "fsck", "--strict", "--no-dangling")


def test_process_tree_is_clean_after_preserving(world: World) -> None:
    run_task(world)
    assert _git_children() == []
