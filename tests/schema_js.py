"""The JavaScript side of the schema tests: Ajv (pinned in tools/schema-check) in one
long-lived node process, asked one JSON line at a time.

Editors validate plans against the shipped schema with ECMA-262 regular expressions; the
tests compare Ajv's verdicts with Python's jsonschema and with the loader. Installed by
``scripts/setup-dev.sh`` (``npm ci``); without it the tests that need it skip, except in
CI, where they fail.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from claude_runner import proc

TOOL = Path(__file__).resolve().parents[1] / "tools" / "schema-check"
WAIT_S = 30.0


class Ajv:
    """``node check.mjs SCHEMA...`` kept running; ``valid`` and ``match`` ask it."""

    def __init__(self, schemas: Sequence[Path]) -> None:
        node = shutil.which("node")
        if node is None or not (TOOL / "node_modules" / "ajv").is_dir():
            reason = "Ajv is not installed: run scripts/setup-dev.sh (npm ci in tools/schema-check)"
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)
        self._proc = proc.spawn(
            [node, str(TOOL / "check.mjs"), *map(str, schemas)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        stdin, stdout = self._proc.stdin, self._proc.stdout
        assert stdin is not None
        assert stdout is not None
        stdin.write(json.dumps(request).encode() + b"\n")
        stdin.flush()
        ready, _, _ = select.select([stdout], [], [], WAIT_S)
        if not ready:
            raise TimeoutError(f"Ajv did not answer within {WAIT_S} s")
        line = stdout.readline()
        if not line:
            err = self._proc.stderr.read().decode() if self._proc.stderr else ""
            raise RuntimeError(f"Ajv exited: {err[-2000:]}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def errors(self, schema: int, data: object) -> list[str]:
        """Ajv's errors for ``data`` against the ``schema``-th schema ([] when valid)."""
        answer = self._ask({"schema": schema, "data": data})
        return [] if answer["valid"] else list(answer["errors"]) or ["invalid"]

    def match(self, pattern: str, text: str) -> bool:
        """``new RegExp(pattern, "u").test(text)``, as Ajv applies a schema's pattern."""
        return bool(self._ask({"pattern": pattern, "text": text})["match"])

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        proc.stop(self._proc, grace=2.0, first_signal=15)
