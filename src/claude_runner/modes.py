"""The agent run modes of a plain (non-pipeline) start: interactive and single prompt.

Single prompt: the CLI's stdout and stderr pass through the runner, masked and streaming
(``relay``). Interactive: the CLI gets the terminal itself and the runner writes nothing
there, so nothing the session shows is masked (a person is watching it, not a log).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from claude_runner import firstrun, proc, relay
from claude_runner.agent import VERBOSITY_FORMATS, build_print_argv, interactive_argv
from claude_runner.reaper import Watchman
from claude_runner.runtime import Runtime

STOP_GRACE = 5.0


# Carried by the CLI of a single-prompt run and everything it starts, so the watchman
# finds them if the runner is killed (the pipeline's tasks carry their own marker).
SINGLE_MARKER = "CLAUDE_RUNNER_SINGLE"


def run_single_prompt(
    runtime: Runtime,
    *,
    prompt: str,
    model: str | None,
    verbosity: str,
    workspace: Path,
) -> int:
    """Run one prompt; the CLI's stdout/stderr reach ours masked and otherwise unchanged,
    as they are written; its exit code is returned. A cancellation stops the CLI and its
    tools (SIGINT first) while their last output is relayed."""
    from claude_runner.pipeline.configdir import UserConfig  # noqa: PLC0415

    # The CLI reads the user's own config here: its credentials are secrets too.
    redactor = runtime.redactor.with_secrets(UserConfig.read(runtime.env).secrets)
    argv = build_print_argv(
        runtime.claude_bin,
        prompt=prompt,
        model=model,
        output_format=VERBOSITY_FORMATS[verbosity],
        verbose=verbosity == "vv",
    )
    marker = f"{os.getpid()}-{time.monotonic_ns()}"
    env = {**runtime.env, SINGLE_MARKER: marker}
    if runtime.rehearsal is not None:
        env = runtime.rehearsal.agent_env(env, runtime.rehearsal.assign(None))
    cancel = runtime.cancel
    with Watchman(f"{SINGLE_MARKER}={marker}") as watchman:
        child = proc.spawn(
            argv, cwd=workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        watchman.group(child.pid)
        stopper: list[threading.Thread] = []

        def on_tick() -> None:
            if cancel.is_set() and not stopper:
                stopper.append(
                    threading.Thread(
                        target=proc.stop, args=(child,), kwargs={"grace": STOP_GRACE}, daemon=True
                    )
                )
                stopper[0].start()

        try:
            relay.relay(child, redactor, tick=on_tick)
        except BaseException:
            proc.stop(child, grace=STOP_GRACE)
            raise
        if stopper:
            stopper[0].join()
            return child.wait()
        return _supervise(child, cancel)


def run_interactive(
    runtime: Runtime,
    *,
    model: str | None,
    workspace: Path,
    supervise: bool,
) -> int:
    """Interactive session. Without a daemon to stop afterwards the runner replaces
    itself with the CLI; otherwise (``supervise``) it stays as the CLI's parent, in the
    same terminal session, so it can stop dockerd when the CLI exits. A fresh config
    gets the first-run dialogs pre-answered (``firstrun``)."""
    env, cancel = runtime.env, runtime.cancel
    firstrun.prepare(env, workspace)
    argv = interactive_argv(runtime.claude_bin, model=model)
    if not supervise:
        proc.exec_replace(argv, env=env, cwd=workspace)
    # The CLI keeps the terminal: same session and process group as the runner, so
    # Ctrl-C reaches it directly; the runner ignores SIGINT meanwhile.
    child = proc.spawn(argv, cwd=workspace, env=env, stdin=None, new_session=False)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return _supervise(child, cancel, forward_only=True)
    finally:
        signal.signal(signal.SIGINT, previous)


def _supervise(
    child: subprocess.Popen[bytes], cancel: threading.Event, *, forward_only: bool = False
) -> int:
    while not cancel.is_set():
        try:
            return child.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            continue
    if forward_only:
        # docker stop: the interactive CLI gets SIGTERM and a grace period of its own.
        return proc.stop(child, grace=STOP_GRACE, first_signal=signal.SIGTERM)
    return proc.stop(child, grace=STOP_GRACE)
