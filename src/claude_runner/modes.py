"""The agent run modes of a plain (non-pipeline) start: interactive and single prompt.

Single prompt: the CLI's stdout and stderr pass through the runner, masked and streaming
(``relay``). Interactive: the CLI gets the terminal itself and the runner writes nothing
there, so nothing the session shows is masked (a person is watching it, not a log).
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path

from claude_runner import proc, relay
from claude_runner.agent import VERBOSITY_FORMATS, build_print_argv, interactive_argv
from claude_runner.redact import Redactor
from claude_runner.signals import Cancellation

STOP_GRACE = 5.0


def run_single_prompt(
    claude_bin: str,
    *,
    prompt: str,
    model: str | None,
    verbosity: str,
    env: Mapping[str, str],
    workspace: Path,
    cancel: Cancellation,
    redactor: Redactor,
) -> int:
    """Run one prompt; the CLI's stdout/stderr reach ours masked by ``redactor`` and
    otherwise unchanged, as they are written; its exit code is returned. A cancellation
    stops the CLI and its tools (SIGINT first) while their last output is relayed."""
    argv = build_print_argv(
        claude_bin,
        prompt=prompt,
        model=model,
        output_format=VERBOSITY_FORMATS[verbosity],
        verbose=verbosity == "vv",
    )
    child = proc.spawn(argv, cwd=workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stopper: list[threading.Thread] = []

    def on_tick() -> None:
        if cancel.event.is_set() and not stopper:
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
    claude_bin: str,
    *,
    model: str | None,
    env: Mapping[str, str],
    workspace: Path,
    cancel: Cancellation | None,
) -> int:
    """Interactive session. Without a daemon to stop afterwards the runner replaces
    itself with the CLI (``cancel is None``); otherwise it stays as the CLI's parent,
    in the same terminal session, so it can stop dockerd when the CLI exits."""
    argv = interactive_argv(claude_bin, model=model)
    if cancel is None:
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
    child: subprocess.Popen[bytes], cancel: Cancellation, *, forward_only: bool = False
) -> int:
    while not cancel.event.is_set():
        try:
            return child.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            continue
    if forward_only:
        # docker stop: the interactive CLI gets SIGTERM and a grace period of its own.
        return proc.stop(child, grace=STOP_GRACE, first_signal=signal.SIGTERM)
    return proc.stop(child, grace=STOP_GRACE)
