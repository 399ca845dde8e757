"""A stand-in for the Claude Code CLI, for fault injection only.

Invoked like the real CLI (``fake_agent.py -p ... --output-format stream-json -- <prompt>``,
or the prompt on stdin);
the first word of the prompt picks the behaviour:

    ok                  init + a successful result
    sleep <s>           init, sleep, success
    crash [path]        init, (wait until path exists,) then SIGKILL itself
    hang [path]         init, start a grandchild in its own session (its pid in an
                        assistant line and in path), then sleep forever
    flood <bytes>       init, that many bytes of assistant lines, then success
    invalid             init, invalid JSON lines, then success
    noresult            init, then exit 0 without a result message
    bigline <bytes>     init, one assistant line of that size, then success
    error               init, a result with is_error true, exit 1
    secret              init, prints $ANTHROPIC_API_KEY in a line and in the result
    stderr-secret       init, prints $ANTHROPIC_API_KEY on stderr (split across writes)
    config              init, an assistant line with $CLAUDE_CONFIG_DIR and its files
    daemon              init, a grandchild that keeps stdout open and lives on, success
    daemon-unmarked     the same, but the grandchild wipes its environment (no task
                        marker) and writes its pid to the path given
    write <name>        init, writes the file <name> in its cwd, success
    silent              init, then nothing ever again (a hang before any answer)
    linger              init, a successful result, then never exits
    drip <n> <secs>     init, n assistant lines <secs> apart, success
    flaky <path> <n>    crashes (no result) the first n times (counted in <path>), then
                        succeeds
    argv                init, an assistant line with its own argv, success
    output <json>       init, a successful result whose structured_output is <json>
    spend <n> <usd> [<secs>]
                        the CLI's budget behaviour: init, then n turns (assistant
                        messages: tool calls, the last one text) costing <usd> each,
                        <secs> apart; with --max-budget-usd C it stops after the first
                        turn that brings the total to C or more (a result with subtype
                        error_max_budget_usd, exit 1), else a successful result; the
                        result's total_cost_usd is what the turns cost (see _spend)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def _emit(obj: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _init() -> str:
    session = f"fake-{os.getpid()}"
    _emit({"subtype": "init", "type": "system", "session_id": session, "cwd": os.getcwd()})
    return session


def _result(session: str, *, is_error: bool = False, text: str, **extra: object) -> None:
    _emit(
        {
            "type": "result",
            "subtype": "success",
            "is_error": is_error,
            "result": text,
            "session_id": session,
            "num_turns": 1,
            "total_cost_usd": 0.001,
            "usage": {"input_tokens": 10, "output_tokens": 5},
            **extra,
        }
    )


def _assistant_line(size: int) -> bytes:
    head = b'{"type":"assistant","message":{"content":[{"type":"text","text":"'
    tail = b'"}]}}\n'
    return head + b"x" * max(0, size - len(head) - len(tail)) + tail


def _crash(words: list[str]) -> None:
    deadline = time.monotonic() + 30
    while len(words) > 1 and not Path(words[1]).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGKILL)


def _hang(words: list[str]) -> None:
    child = subprocess.Popen(  # a Bash-tool-like grandchild in a session of its own
        [sys.executable, "-c", "import time; time.sleep(3600)"], start_new_session=True
    )
    _emit({"type": "assistant", "grandchild_pid": child.pid})
    if len(words) > 1:
        Path(words[1]).write_text(str(child.pid))
    while True:
        time.sleep(3600)


def _daemon() -> None:
    # A grandchild in its own session that inherits stdout and outlives the agent.
    subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(3600)"], start_new_session=True
    )


def _daemon_unmarked(words: list[str]) -> None:
    # Escapes the task marker: only the pipe it holds gives it away.
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(3600)"], start_new_session=True, env={}
    )
    Path(words[1]).write_text(str(child.pid))


def _write(data: bytes, times: int = 1) -> None:
    for _ in range(times):
        sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _config() -> None:
    config = os.environ.get("CLAUDE_CONFIG_DIR", "")
    files = sorted(Path(config).iterdir())
    seen = {f.name: f.read_text() for f in files if f.is_file()}
    _emit({"type": "assistant", "config_dir": config, "files": seen})


def _nothing() -> None:
    return None


def _forever() -> None:
    while True:
        time.sleep(3600)


def _drip(words: list[str], count: int) -> None:
    for _ in range(count):
        time.sleep(float(words[2]))
        _emit({"type": "assistant", "message": {"content": []}})


def _flaky(words: list[str]) -> None:
    counter = Path(words[1])
    seen = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(seen + 1))
    if seen < int(words[2]):
        os.kill(os.getpid(), signal.SIGKILL)


def _limited(session: str, words: list[str]) -> int:
    """``limited COUNTER N``: the first N runs end as the pinned CLI ends on an HTTP 429
    (tests/data/cli/retries_429.json), later ones succeed."""
    counter = Path(words[1])
    seen = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(seen + 1))
    if seen >= int(words[2]):
        _result(session, text="got through")
        return 0
    _result(
        session,
        is_error=True,
        text="API Error: Request rejected (429) · rate limited",
        api_error_status=429,
        api_error_type="rate_limit_error",
        terminal_reason="api_error",
        total_cost_usd=0,
    )
    return 1


def _stderr_secret(session: str) -> int:
    value = os.environ.get("ANTHROPIC_API_KEY", "")
    half = len(value) // 2
    for part in (f"warning: key {value[:half]}", f"{value[half:]} rejected\n"):
        sys.stderr.write(part)
        sys.stderr.flush()
        time.sleep(0.05)  # two writes, so two reads on the runner's side
    _result(session, text="ok")
    return 0


def _secret(session: str) -> int:
    value = os.environ.get("ANTHROPIC_API_KEY", "")
    _emit({"type": "assistant", "text": f"the key is {value}"})
    _result(session, text=f"key={value}")
    return 0


def _error(session: str) -> int:
    _result(session, is_error=True, text="API Error: 500 overloaded")
    return 1


def _output(session: str, prompt: str) -> int:
    _result(session, text="structured", structured_output=json.loads(prompt.split(" ", 1)[1]))
    return 0


# What the pinned CLI does with --max-budget-usd (measured against the stand-in API with
# turns of $1.00048, docs/cli-behaviour.md): it prices each reply's usage itself, lets
# the turn that reaches the cap finish and then stops before the next request; the check
# is total >= cap (caps 2.00096 and 2.0005 stopped after 2 turns, 2.00097 after 3, 0.5
# after 1), also when that turn was the final answer. It then prints a result with
# subtype error_max_budget_usd, is_error true, the turns so far in num_turns, the spend in
# total_cost_usd, errors ["Reached maximum budget ($<cap>)"], no result text, and exits 1.
# Its stream's assistant lines carry each reply's usage as of message_start (output
# tokens 1): the real total is only in the result.
def _spend(session: str, words: list[str], argv: list[str]) -> int:
    turns, usd = int(words[1]), float(words[2])
    pause = float(words[3]) if len(words) > 3 else 0.0
    flag = "--max-budget-usd"
    cap = float(argv[argv.index(flag) + 1]) if flag in argv else None
    total = 0.0
    for turn in range(1, turns + 1):
        time.sleep(pause)
        block: dict[str, object] = (
            {"type": "text", "text": "spent"}
            if turn == turns
            else {"type": "tool_use", "id": f"toolu_{turn}", "name": "Bash", "input": {}}
        )
        message = {
            "id": f"msg_{session}_{turn}",
            "role": "assistant",
            "model": "claude-opus-5-5",
            "content": [block],
            "usage": {"input_tokens": 120, "output_tokens": 1},
        }
        _emit({"type": "assistant", "message": message, "session_id": session})
        total += usd
        if cap is not None and total >= cap:
            _emit(
                {
                    "type": "result",
                    "subtype": "error_max_budget_usd",
                    "is_error": True,
                    "session_id": session,
                    "num_turns": turn,
                    "total_cost_usd": total,
                    "errors": [f"Reached maximum budget (${cap:g})"],
                    "terminal_reason": "budget_exhausted",
                }
            )
            return 1
    _result(session, text="spent", num_turns=turns, total_cost_usd=total)
    return 0


def _linger(session: str) -> int:
    _result(session, text="done, but lingering")
    _forever()
    return 0


def main(argv: list[str]) -> int:
    # As the runner calls the real CLI: the prompt is the operand after "--", else stdin.
    prompt = argv[argv.index("--") + 1] if "--" in argv else sys.stdin.read()
    words = prompt.split()
    mode = words[0] if words else "ok"
    arg = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
    session = _init()
    block = _assistant_line(1024) * 1024
    # Modes that end the run their own way, with their exit code.
    endings: dict[str, Callable[[str], int]] = {
        "noresult": lambda _: 0,
        "error": _error,
        "linger": _linger,
        "stderr-secret": _stderr_secret,
        "secret": _secret,
        "output": lambda session: _output(session, prompt),
        "spend": lambda session: _spend(session, words, argv),
        "limited": lambda session: _limited(session, words),
    }
    # Modes that do something, then succeed.
    actions: dict[str, Callable[[], object]] = {
        "sleep": lambda: time.sleep(arg),
        "crash": lambda: _crash(words),
        "hang": lambda: _hang(words),
        "flood": lambda: _write(block, arg // len(block)),
        "invalid": lambda: _write(
            b'{"type": "result", broken\nnot json at all\n{"type":"system"\n'
        ),
        "bigline": lambda: _write(_assistant_line(arg)),
        "config": _config,
        "daemon": _daemon,
        "daemon-unmarked": lambda: _daemon_unmarked(words),
        "write": lambda: Path(words[1]).write_text("written by the agent\n"),
        "silent": _forever,
        "drip": lambda: _drip(words, arg),
        "flaky": lambda: _flaky(words),
        "argv": lambda: _emit({"type": "assistant", "argv": argv}),
    }
    if mode in endings:
        return endings[mode](session)
    actions.get(mode, _nothing)()
    _result(session, text=f"done: prompt of {len(prompt)} characters")
    return 0


def install(directory: os.PathLike[str] | str) -> str:
    """Write an executable ``claude`` wrapper running this script; return its path."""
    path = os.path.join(directory, "claude")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f'#!/bin/sh\nexec {sys.executable} {os.path.abspath(__file__)} "$@"\n')
    os.chmod(path, 0o755)  # noqa: S103 - an executable for the tests
    return path


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
