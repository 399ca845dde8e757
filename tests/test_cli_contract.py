"""The CLI contract the runner relies on, checked against the real pinned CLI.

Each failure case of ``tests/cli_cases.py`` is provoked through the stand-in API and
must print what ``docs/cli-behaviour.md`` says and classify as the case expects; the
agent-control flags must keep their spelling and visible effect. Run after upgrading
the pinned CLI; ``CLAUDE_RUNNER_CAPTURE_CLI=1`` also rewrites the recordings in
``tests/data/cli/`` (then ``tests/test_classify.py`` replays them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from claude_runner.pipeline.classify import classify
from claude_runner.standin.server import StandinAPI
from tests.cli_cases import CASES, DATA, Case, run_case

pytestmark = pytest.mark.cli

CAPTURE = os.environ.get("CLAUDE_RUNNER_CAPTURE_CLI") == "1"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_failure_case(
    case: Case,
    fake_api: StandinAPI,
    claude_bin: str,
    claude_env: dict[str, str],
    tmp_path: Path,
) -> None:
    seen = run_case(case, fake_api, claude_bin, claude_env, tmp_path)
    if CAPTURE:
        port = fake_api.url.rsplit(":", 1)[1]
        doc = seen.recording(
            case, {str(tmp_path): "<tmp>", f"127.0.0.1:{port}": "127.0.0.1:<port>"}
        )
        (DATA / f"{case.name}.json").write_text(
            json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
        )
    if case.check is not None:
        case.check(seen)
    verdict = classify(
        seen.result,
        returncode=seen.exit_code,
        stderr_tail=seen.stderr,
        output_required=case.output_required,
        last_api_retry=seen.api_retries[-1] if seen.api_retries else None,
    )
    assert verdict.kind == case.kind, (verdict, seen)
    if case.interrupt is not None:
        stopped = classify(seen.result, returncode=seen.exit_code, stopped="cancelled")
        assert stopped.kind == "cancelled"
