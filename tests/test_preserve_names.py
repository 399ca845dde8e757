"""Branch names: valid refs and distinct for every id the plan loader accepts."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from claude_runner import proc
from claude_runner.pipeline.preserve import branch_name, decode_component, encode_component

IDS = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
# Fan-out instances: "<id>[<n>]"; the awkward endings on purpose.
INSTANCES = st.builds(lambda i, n: f"{i}[{n}]", IDS, st.integers(0, 10_000))
AWKWARD = st.sampled_from(["a.lock", "a..b", "x.", "A.LOCK", "a...", "lock", ".lock.lock"])
NAMES = st.one_of(IDS, INSTANCES, AWKWARD, st.builds(lambda a: a + ".lock", IDS))
RUN_ID = "20261130T000000.000Z-abcdef"


def check_ref_format(branch: str) -> bool:
    env = {"PATH": os.environ["PATH"], "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}
    done = proc.run(["git", "check-ref-format", f"refs/heads/{branch}"], env=env)
    return done.returncode == 0


@settings(max_examples=150, deadline=None)
@given(stage=NAMES, task=NAMES)
def test_branch_names_are_valid_refs(stage: str, task: str) -> None:
    branch = branch_name(RUN_ID, stage, task)
    assert check_ref_format(branch), branch
    prefix, run, enc_stage, enc_task = branch.split("/")
    assert (prefix, run) == ("pipeline", RUN_ID)
    assert (decode_component(enc_stage), decode_component(enc_task)) == (stage, task)


@settings(max_examples=300, deadline=None)
@given(a=st.tuples(NAMES, NAMES), b=st.tuples(NAMES, NAMES))
def test_branch_names_are_injective(a: tuple[str, str], b: tuple[str, str]) -> None:
    if a != b:
        assert branch_name(RUN_ID, *a) != branch_name(RUN_ID, *b)


@given(st.text(min_size=1))
def test_encoding_round_trips_any_text(name: str) -> None:
    assert decode_component(encode_component(name)) == name


def test_ordinary_ids_read_as_themselves() -> None:
    assert branch_name(RUN_ID, "build", "v1.2") == f"pipeline/{RUN_ID}/build/v1.2"
    assert branch_name(RUN_ID, "a.lock", "port[3]") == f"pipeline/{RUN_ID}/a%2Elock/port%5B3%5D"
    assert encode_component("a..b") == "a%2E%2Eb"
    assert encode_component("x.") == "x%2E"
