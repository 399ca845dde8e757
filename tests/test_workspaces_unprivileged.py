"""Task workspaces with an unprivileged runner: no mounts unless asked for, then overlays
in a user namespace of the run (what works there and what does not, measured), the
namespace refused by the kernel or by the rules (sudo), a killed runner's namespace, and
the real CLI inside one.

Each scenario runs in ``tests/workspaces_driver.py`` as a user made for the test, with
Debian's python3 from the public checkout. Needs root to make that user (CI is root:
nothing here is skipped there).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from claude_runner import proc
from claude_runner.copytree import copy_tree
from claude_runner.pipeline.workspaces import ENV_VAR, has_mounts
from tests.conftest import PublicCheckout
from tests.fakeapi import FakeMessagesAPI, Text, ToolUse
from tests.procwatch import wait_gone
from tests.workspaces_helpers import (
    SCRIPT,
    SYSTEM_PYTHON,
    Trees,
    covered,
    differing,
    hold_driver,
    make_repo,
    public_dir,
    require_root,
    snapshot,
)

pytestmark = pytest.mark.root


@pytest.fixture
def user() -> Iterator[tuple[int, int]]:
    require_root()
    if not Path(SYSTEM_PYTHON).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{SYSTEM_PYTHON} missing: scripts/setup-dev.sh installs python3")
        pytest.skip(f"{SYSTEM_PYTHON} missing")
    name = f"crtws{os.getpid()}"
    done = proc.run(["useradd", "--no-create-home", "--home-dir", "/nonexistent", name])
    assert done.returncode == 0, done.stderr
    try:
        import pwd  # noqa: PLC0415

        entry = pwd.getpwnam(name)
        yield entry.pw_uid, entry.pw_gid
    finally:
        proc.run(["userdel", name])


def _drive(
    public: PublicCheckout, spec: dict[str, Any], *, wrap: list[str] | None = None
) -> dict[str, Any]:
    argv = [*(wrap or []), SYSTEM_PYTHON, "-m", "tests.workspaces_driver", json.dumps(spec)]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": f"{public.root / 'src'}:{public.root}"}
    done = proc.run(argv, cwd=public.root, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(json.loads(done.stdout.splitlines()[-1]))


@dataclasses.dataclass(frozen=True)
class Unprivileged:
    """A user, and a workspace and runs root that user owns."""

    uid: int
    gid: int
    repo: Path
    runs: Path

    @property
    def ids(self) -> tuple[int, int]:
        return self.uid, self.gid

    def run_dir(self, name: str) -> Path:
        path = self.runs / name
        path.mkdir()
        os.chown(path, self.uid, self.gid)
        return path


@pytest.fixture
def unpriv(user: tuple[int, int]) -> Iterator[Unprivileged]:
    base = public_dir("crt-ws-user-")
    try:
        repo = make_repo(base / "repo")
        (base / "runs").mkdir()
        proc.run(["chown", "-R", f"{user[0]}:{user[1]}", str(base)])
        yield Unprivileged(user[0], user[1], repo, base / "runs")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _spec(u: Unprivileged, method: str, **extra: Any) -> dict[str, Any]:
    return {
        "uid": u.uid,
        "gid": u.gid,
        "run_dir": str(u.runs / f"run-{method}"),
        "source": str(u.repo),
        "env": {"PATH": os.environ["PATH"], ENV_VAR: method, "HOME": str(u.runs)},
        "modes": ["worktree", "snapshot_ro"],
        "tasks": [],
        **extra,
    }


def test_unprivileged_auto_uses_no_namespace(
    unpriv: Unprivileged, public_checkout: PublicCheckout
) -> None:
    unpriv.run_dir("run-auto")
    out = _drive(public_checkout, _spec(unpriv, "auto"))
    m = out["methods"]
    assert (m["worktree"], m["snapshot_ro"], m["read_only"], m["namespace"]) == (
        "copy",
        "copy",
        "checked",
        False,
    )
    assert any(n.startswith("overlay: not root") for n in m["notes"]), m["notes"]


def test_unprivileged_overlay_in_a_user_namespace(
    unpriv: Unprivileged, public_checkout: PublicCheckout, tmp_path: Path
) -> None:
    repo, runs, user = unpriv.repo, unpriv.runs, unpriv.ids
    unpriv.run_dir("run-overlay")
    dump = runs / "merged.tar"
    tasks = [
        {
            "mode": "worktree",
            "dest": str(runs / "run-overlay" / "tasks" / "s" / "wt" / "workspace"),
            "commands": [
                ["sh", "-c", "id -u; id -g; stat -c %u tracked.txt"],
                ["sh", "-c", SCRIPT],
                ["tar", "-C", ".", "-cf", str(dump), "."],
                ["git", "status", "--porcelain"],
                # The measured limit: a workspace directory cannot be renamed by rename(2).
                ["git", "mv", "keepdir", "moved"],
                ["sh", "-c", "grep -c overlay /proc/self/mountinfo"],
            ],
        },
        {
            "mode": "snapshot_ro",
            "dest": str(runs / "run-overlay" / "tasks" / "s" / "ro" / "workspace"),
            "commands": [["sh", "-c", "chmod u+w . ; echo z > f ; echo z > tracked.txt"]],
        },
    ]
    out = _drive(public_checkout, _spec(unpriv, "overlay", tasks=tasks))
    m = out["methods"]
    assert (m["worktree"], m["snapshot_ro"], m["read_only"], m["namespace"]) == (
        "overlay",
        "overlay",
        "kernel",
        True,
    )
    wt, ro = out["tasks"]
    assert (wt["method"], ro["method"], ro["read_only"]) == ("overlay", "overlay", "kernel")
    ids, script, tar, status, git_mv, mounted = wt["results"]
    assert ids["rc"] == 0
    assert ids["out"].split() == [str(user[0]), str(user[1]), str(user[0])]
    assert script["rc"] == 0, script["err"]
    assert tar["rc"] == 0, tar["err"]
    assert status["rc"] == 0, status["err"]
    assert " M tracked.txt" in status["out"].splitlines()
    assert git_mv["rc"] != 0
    assert "Invalid cross-device link" in git_mv["err"]
    assert int(mounted["out"]) >= 1  # the task sees its overlay ...
    assert not has_mounts(runs)  # ... the runner's namespace never does
    assert ro["results"][0]["rc"] != 0
    assert "Read-only file system" in ro["results"][0]["err"]
    assert not (repo / "f").exists()
    # The merged view holds what a copy holds after the same script, and the changed
    # paths give the same tree.
    merged = tmp_path / "merged"
    merged.mkdir()
    with tarfile.open(dump) as t:
        t.extractall(merged, filter="tar")
    copied = tmp_path / "copied"
    copy_tree(repo, copied)
    assert proc.run(["sh", "-c", SCRIPT], cwd=copied).returncode == 0
    assert snapshot(merged) == snapshot(copied)
    trees = Trees(repo, tmp_path)
    assert trees.tree(merged, wt["changed"]) == trees.tree(copied, None)
    missed = differing(snapshot(repo), snapshot(copied))
    assert [p for p in missed if not covered(p, wt["changed"])] == []
    # read_root: the runner, outside the namespace, reads the upper layer instead; every
    # listed path is there whole, or a whiteout where the path was deleted.
    assert (wt["namespace"], wt["read_root"]) == (True, wt["upper"])
    upper_layer = Path(wt["upper"])
    whole = snapshot(upper_layer)
    for rel in wt["changed"]:
        if rel == ".git/index":
            continue  # rewritten after the dump, by git status
        st = os.lstat(upper_layer / rel)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            assert not os.path.lexists(merged / rel), rel
        elif stat.S_ISDIR(st.st_mode):
            assert snapshot(upper_layer / rel) == snapshot(merged / rel), rel
        else:
            assert whole[rel] == snapshot(merged)[rel], rel


def test_namespace_refused_gives_the_copy_with_a_note(
    unpriv: Unprivileged, public_checkout: PublicCheckout
) -> None:
    run_dir = unpriv.run_dir("run-overlay")
    tasks = [{"mode": "worktree", "dest": str(run_dir / "t" / "workspace")}]
    spec = _spec(unpriv, "overlay", tasks=tasks, no_nested_userns=True)
    out = _drive(public_checkout, spec)
    m = out["methods"]
    assert (m["worktree"], m["snapshot_ro"], m["read_only"], m["namespace"]) == (
        "copy",
        "copy",
        "checked",
        False,
    )
    assert any(n.startswith("overlay: user namespace: refused") for n in m["notes"]), m["notes"]
    assert out["tasks"][0]["method"] == "copy"


@pytest.fixture
def sudo_rule(unpriv: Unprivileged, tmp_path: Path) -> list[str]:
    """A wrapper that runs a command in a private mount namespace where the user may run
    ``sudo -n true`` (``/etc/sudoers.d`` is replaced only there)."""
    if shutil.which("sudo") is None:
        if os.environ.get("CI"):
            pytest.fail("sudo missing: scripts/install-docker-engine.sh installs it")
        pytest.skip("sudo missing")
    import pwd  # noqa: PLC0415

    name = pwd.getpwuid(unpriv.uid).pw_name
    rules = tmp_path / "rules"
    rules.write_text(f"{name} ALL=(root) NOPASSWD: /usr/bin/true\n")
    setup = (
        "set -e\n"
        "mount -t tmpfs -o mode=0755 tmpfs /etc/sudoers.d\n"
        f"install -m 0440 {rules} /etc/sudoers.d/crt-ws-test\n"
        'exec "$@"\n'
    )
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", setup, "sh"]


def test_a_user_with_sudo_gets_no_namespace(
    unpriv: Unprivileged, public_checkout: PublicCheckout, sudo_rule: list[str]
) -> None:
    unpriv.run_dir("run-overlay")
    out = _drive(public_checkout, _spec(unpriv, "overlay"), wrap=sudo_rule)
    m = out["methods"]
    assert (m["worktree"], m["namespace"]) == ("copy", False)
    assert any("may run sudo" in n for n in m["notes"]), m["notes"]


def test_sudo_cannot_work_inside_a_user_namespace(
    unpriv: Unprivileged, public_checkout: PublicCheckout, sudo_rule: list[str]
) -> None:
    """Why the rule above: the same user, allowed ``sudo -n true`` outside, is refused
    inside the namespace (setuid is ignored where uid 0 is not mapped)."""
    run_dir = unpriv.run_dir("run-overlay")
    tasks = [
        {
            "mode": "worktree",
            "dest": str(run_dir / "t" / "workspace"),
            "commands": [["sudo", "-n", "/usr/bin/true"]],
        }
    ]
    spec = _spec(unpriv, "overlay", tasks=tasks, ignore_blockers=True)
    out = _drive(public_checkout, spec, wrap=sudo_rule)
    assert out["methods"]["namespace"] is True
    done = out["tasks"][0]["results"][0]
    assert done["rc"] != 0
    assert "must be owned by uid 0 and have the setuid bit set" in done["err"]
    as_user = ["setpriv", f"--reuid={unpriv.uid}", f"--regid={unpriv.gid}", "--clear-groups", "--"]
    outside = proc.run([*sudo_rule, *as_user, "sudo", "-n", "/usr/bin/true"])
    assert outside.returncode == 0, outside.stderr


def test_a_sigkilled_unprivileged_runner_takes_its_namespace_along(
    unpriv: Unprivileged, public_checkout: PublicCheckout
) -> None:
    run_dir = unpriv.run_dir("run-overlay")
    tasks = [{"mode": "worktree", "dest": str(run_dir / "t" / "workspace")}]
    spec = _spec(unpriv, "overlay", tasks=tasks, hold=True)
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": f"{public_checkout.root / 'src'}:{public_checkout.root}",
    }
    argv = [SYSTEM_PYTHON, "-m", "tests.workspaces_driver", json.dumps(spec)]
    child, ready = hold_driver(argv, env)
    holder = ready["holder"]
    try:
        assert isinstance(holder, int)
        assert not has_mounts(unpriv.runs)  # only the namespace sees the mount
        child.kill()
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            proc.stop(child, grace=1)
    assert wait_gone(holder, deadline=10), "the namespace helper outlived its runner"


@pytest.mark.cli
def test_the_real_cli_works_in_a_user_namespace(
    unpriv: Unprivileged,
    public_checkout: PublicCheckout,
    fake_api: FakeMessagesAPI,
    claude_env: dict[str, str],
    tmp_path: Path,
) -> None:
    repo, runs, user = unpriv.repo, unpriv.runs, unpriv.ids
    unpriv.run_dir("run-overlay")
    fake_api.on(
        "apply-the-script",
        ToolUse(
            "Bash",
            {"command": SCRIPT + "id -u; stat -c %u new.txt; git status --porcelain | wc -l\n"},
        ),
        Text("applied"),
    )
    fake_api.on(
        "try-to-write", ToolUse("Bash", {"command": "chmod u+w . ; echo z > f"}), Text("tried")
    )
    dump = runs / "merged.tar"
    env = {
        k: v
        for k, v in claude_env.items()
        if k.startswith(("ANTHROPIC_", "CLAUDE_CODE_")) or k in ("NO_PROXY", "no_proxy")
    }
    home = runs / "home"
    home.mkdir()
    os.chown(home, *user)
    env.update({"PATH": os.environ["PATH"], "HOME": str(home), ENV_VAR: "overlay"})
    cli = [
        public_checkout.claude_bin,
        "--dangerously-skip-permissions",
        "--output-format",
        "json",
        "-p",
    ]
    tasks = [
        {
            "mode": "worktree",
            "dest": str(runs / "run-overlay" / "tasks" / "s" / "wt" / "workspace"),
            "commands": [[*cli, "apply-the-script"], ["tar", "-C", ".", "-cf", str(dump), "."]],
        },
        {
            "mode": "snapshot_ro",
            "dest": str(runs / "run-overlay" / "tasks" / "s" / "ro" / "workspace"),
            "commands": [[*cli, "try-to-write"]],
        },
    ]
    spec = {**_spec(unpriv, "overlay", tasks=tasks), "env": env}
    out = _drive(public_checkout, spec)
    assert out["methods"]["namespace"] is True
    wt, ro = out["tasks"]
    assert wt["results"][0]["rc"] == 0, wt["results"][0]
    assert json.loads(wt["results"][0]["out"])["result"] == "applied"
    tool_output = json.dumps([r["messages"] for r in fake_api.requests])
    assert f"{user[0]}\\n{user[0]}" in tool_output  # uid and the owner of a new file
    assert ro["results"][0]["rc"] == 0
    assert "Read-only file system" in tool_output
    assert not (repo / "f").exists()
    merged = tmp_path / "merged"
    merged.mkdir()
    with tarfile.open(dump) as t:
        t.extractall(merged, filter="tar")
    trees = Trees(repo, tmp_path)
    copied = tmp_path / "copied"
    copy_tree(repo, copied)
    assert proc.run(["sh", "-c", SCRIPT], cwd=copied).returncode == 0
    assert trees.tree(merged, wt["changed"]) == trees.tree(copied, None)
