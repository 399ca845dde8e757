"""Secrets are masked wherever the runner prints."""

from __future__ import annotations

import pytest

from claude_runner.redact import MASK, Redactor


def test_known_values_are_masked() -> None:
    redact = Redactor.from_env({"GH_TOKEN": "s3cr3t-value", "ANTHROPIC_API_KEY": "key-12345"})
    assert redact("token s3cr3t-value and key-12345.") == f"token {MASK} and {MASK}."


def test_token_shapes_are_masked_without_being_told() -> None:
    redact = Redactor([])
    text = "Token: ghp_abcdefghijklmnop1234 github_pat_11AAAA_bbbb sk-ant-api03-xyzxyzxyz"
    assert redact(text) == f"Token: {MASK} {MASK} {MASK}"


def test_longest_secret_first_and_short_values_ignored() -> None:
    redact = Redactor(["abcd", "abcdefgh", "x"])
    assert redact("abcdefgh abcd x") == f"{MASK} {MASK} x"


@pytest.mark.parametrize(
    "token",
    [
        "ghp_abcdefghijklmnop1234",
        "gho_abcdefghijklmnop1234",
        "ghs_abcdefghijklmnop1234",
        "github_pat_11AAAA_bbbbcccc",
        "sk-ant-api03-xyzxyzxyz",
    ],
)
def test_each_token_shape_alone_is_masked(token: str) -> None:
    # Alone: the cheap substring pre-check must let every shape reach the regex.
    assert Redactor([])(f'{{"result":"use {token} now"}}') == f'{{"result":"use {MASK} now"}}'
