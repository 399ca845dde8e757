"""The redaction policy: known values in every form and piece, token shapes, JSON escapes,
and a streaming masker whose output equals the one-shot result for any chunking."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_runner import proc
from claude_runner.redact import MASK, Redactor, secrets_from_env
from claude_runner.redact.forms import threshold
from claude_runner.redact.shapes import SHAPES

GH_TOKEN = "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
API_KEY = "sk-ant-api03-SECRETVALUEforTESTSonly-000111222333"
ODD = 'p@ss"w\\ord/é-with-some-length'  # escaped in JSON, percent-encoded in URLs
SECRETS = {"GH_TOKEN": GH_TOKEN, "ANTHROPIC_API_KEY": API_KEY, "ODD": ODD}
REDACT = Redactor(SECRETS)


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


# One token of each shape (built so that no scanner mistakes this file for a leak).
SHAPE_TOKENS = {
    "github-token": "gh" + "s_" + "Ab1" * 12,
    "github-pat": "github_" + "pat_11AAAA_" + "b" * 59,
    "anthropic-key": "sk-" + "ant-oat01-" + "x_y-" * 20,
    "openai-key": "sk-" + "proj-" + "Ab1_-" * 10,
    "aws-access-key-id": "AK" + "IA" + "ABCDEFGH23456789",
    "slack-token": "xo" + "xb-" + "1234567890-abcdefABCDEF",
    "gitlab-token": "gl" + "pat-" + "a1B2_c3D4-e5F6g7H8i9J0",
    "npm-token": "np" + "m_" + "a1B2c3" * 6,
    "pypi-token": "pypi-" + "AgEIcHlwaS5vcmc" + "CJ-_a1" * 10,
    "google-api-key": "AI" + "za" + "Sy" + "a1B2c3D4e5" * 3 + "_-x",
    "huggingface-token": "h" + "f_" + "aBcDeFgHiJ" * 4,
    "stripe-key": "sk" + "_live_" + "a1B2c3D4e5" * 3,
    "docker-hub-token": "dckr" + "_pat_" + "a1B2c3D4e5-_" * 3,
    "jwt": "eyJhbGci" + "OiJIUzI1NiJ9" + "." + "eyJzdWIiOiIxMjM0In0" + "." + "sig-_nature1",
    "private-key": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA=\n"
    "-----END OPENSSH PRIVATE KEY-----",
}


def test_every_shape_has_a_sample() -> None:
    assert {s.name for s in SHAPES} == set(SHAPE_TOKENS)


@pytest.mark.parametrize("name", sorted(SHAPE_TOKENS))
def test_each_token_shape_alone_is_masked_also_in_json(name: str) -> None:
    token = SHAPE_TOKENS[name]
    redact = Redactor([])
    assert redact(f"use {token} now") == f"use {MASK} now"
    # Inside a JSON string, after an escape, next to quotes.
    encoded = json.dumps({"result": f"x\n{token}\t"})
    assert token.replace("\n", "\\n") not in redact(encoded)
    assert redact(encoded) == json.dumps({"result": "x\n***\t"})


@pytest.mark.parametrize(
    "before",
    ["x\n", "x\r", "x\t", "\\u000a", "%0A", "\\x0a", "=", '"', "(", "/", " ", "_", ""],
)
def test_a_token_after_an_escape_or_separator_is_masked(before: str) -> None:
    token = "ghp_" + "Z" * 36
    text = before + token + "\n"
    masked = Redactor([])(json.dumps(text))
    assert "Z" * 10 not in masked, masked
    assert Redactor([])(text) == before + MASK + "\n"


@pytest.mark.parametrize(
    "text",
    [
        "laughs_AbcdefghijklmnopqrstuvwxyzABCD and highs_01234567890123456789012",
        "sk-ant (the prefix alone), ghp_short, AKIA lowercase akiaabcdefghijklmnop",
        "base64 of JSON: eyJ0b2tlbiI6IDF9 and a commit 3f2c9a1e4b5d6c7e8f9a0b1c2d3e4f5a6b7c8d9e",
        "npm_config_cache=/tmp/npm and xoxo-hugs and -----BEGIN CERTIFICATE-----",
    ],
)
def test_ordinary_text_is_byte_identical(text: str) -> None:
    assert REDACT(text) == text
    assert REDACT.mask_bytes(text.encode()) == text.encode()


def test_forms_of_a_value_are_masked() -> None:
    escaped = json.dumps(ODD)[1:-1]
    assert escaped != ODD
    assert REDACT(f'{{"v":"{escaped}"}}') == '{"v":"***"}'
    assert REDACT(json.dumps(ODD, ensure_ascii=False)) == '"***"'
    assert (
        REDACT(f"https://x.invalid/?k={quote(ODD, safe='')}&a=1") == "https://x.invalid/?k=***&a=1"
    )
    # git's http.extraheader of a CI checkout: base64 of "x-access-token:<token>".
    header = base64.b64encode(f"x-access-token:{GH_TOKEN}".encode()).decode()
    # 15 bytes of prefix are 20 characters; the token's 53 follow; "A==" mixes its end
    # with the padding.
    assert REDACT(f"basic {header}") == f"basic {header[:20]}***{header[-3:]}"


@pytest.mark.parametrize("secret", [GH_TOKEN, API_KEY, ODD])
def test_start_and_end_pieces_down_to_the_threshold_are_masked(secret: str) -> None:
    raw = secret.encode()
    cut = threshold(len(raw))
    for length in range(cut, len(raw)):
        head, tail = raw[:length], raw[-length:]
        assert REDACT.mask_bytes(b"[" + head + b"]") == b"[***]", head
        assert REDACT.mask_bytes(b"[" + tail + b"]") == b"[***]", tail
    # Shorter pieces stay (as a shape they may still be masked: sk-ant-...).
    redact = Redactor(SECRETS, shapes=())
    for piece in (raw[: cut - 1], raw[1 - cut :]):
        assert redact.mask_bytes(b"[" + piece + b"]") == b"[" + piece + b"]"


def test_threshold_is_half_the_value_between_6_and_16_bytes() -> None:
    assert [threshold(n) for n in (4, 6, 7, 12, 20, 32, 40, 108)] == [4, 6, 6, 6, 10, 16, 16, 16]


def test_a_secret_cut_mid_way_like_the_clis_truncation_leaves_no_long_piece() -> None:
    # `yes "$GH_TOKEN" | head -c 200000`, then cut at an arbitrary byte.
    data = (GH_TOKEN + "\n") * 5000
    for cut in range(123_400, 123_441):
        masked = REDACT(data[:cut])
        rest = masked[masked.rfind("***\n") + 4 :]
        assert set(masked[: -len(rest) or None].split("\n")) <= {"***", ""}
        # What is left is a start shorter than the threshold, or masked whole.
        assert rest in ("", "***") or (GH_TOKEN.startswith(rest) and len(rest) < 16), rest


def test_names_in_reports_known_names_and_pieces_not_shapes() -> None:
    assert REDACT.names_in(f"a {GH_TOKEN[:20]} b") == ["GH_TOKEN"]
    assert REDACT.names_in(json.dumps({"k": API_KEY, "o": ODD}).encode()) == [
        "ANTHROPIC_API_KEY",
        "ODD",
    ]
    assert REDACT.names_in(SHAPE_TOKENS["npm-token"] + " nothing known") == []
    assert REDACT.names_in("") == []


def test_secrets_from_env_takes_the_known_names_and_long_values_of_secret_names() -> None:
    env = {
        "GH_TOKEN": "short",
        "NPM_TOKEN": "npm-value-0123456789",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "MY_PASSWORD": "hunter2",  # too short to mask safely
        "TOKENIZERS_PARALLELISM": "false-but-long-enough",
        "HOME": "/home/someone/with/a/long/path",
    }
    assert secrets_from_env(env) == {
        "GH_TOKEN": "short",
        "NPM_TOKEN": "npm-value-0123456789",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    }


def test_with_secrets_adds_values_at_run_time() -> None:
    more = REDACT.with_secrets({"primaryApiKey": "sk-primary-value-000111"})
    assert more("k=sk-primary-value-000111") == "k=***"
    assert REDACT("k=sk-primary-value-000111") == "k=sk-primary-value-000111"
    assert more.names_in("sk-primary-value-000111 " + GH_TOKEN) == ["GH_TOKEN", "primaryApiKey"]


def test_a_non_ascii_secret_cut_inside_a_character_still_gives_text() -> None:
    redact = Redactor({"S": "ééééééééééééééééé-long"})
    assert redact("x ééééééééééééééééé-long y") == "x *** y"
    assert isinstance(redact("ééééééé" + "é"[:1]), str)


# --- streaming ------------------------------------------------------------------------
def stream(redact: Redactor, data: bytes, cuts: list[int]) -> tuple[bytes, list[bytes]]:
    """``data`` fed in pieces cut at ``cuts``; the whole output and each feed's output."""
    masker = redact.stream()
    outs, at = [], 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        outs.append(masker.feed(data[at:cut]))
        at = max(at, cut)
    outs.append(masker.close())
    return b"".join(outs), outs


PIECES = [
    GH_TOKEN,
    API_KEY,
    ODD,
    json.dumps(ODD)[1:-1],
    GH_TOKEN[:18],
    GH_TOKEN[-18:],
    API_KEY[:40],
    "ghp_",
    "\\n",
    "\n",
    " ",
    '"',
    "lorem ipsum dolor sit amet, " * 6,
    "A1b2C3d4",
    SHAPE_TOKENS["jwt"],
    SHAPE_TOKENS["private-key"],
    base64.b64encode(b"x-access-token:" + GH_TOKEN.encode()).decode(),
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=12)), max_size=60),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_streaming_equals_one_shot_for_any_chunking(parts: list[str], cuts: list[int]) -> None:
    data = "".join(parts).encode("utf-8", "surrogatepass")
    whole, _ = stream(REDACT, data, cuts)
    assert whole == REDACT.mask_bytes(data)
    for secret in SECRETS.values():
        raw = secret.encode()
        assert raw[: threshold(len(raw))] not in whole
        assert raw[-threshold(len(raw)) :] not in whole


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=300), st.integers(min_value=0, max_value=40))
def test_a_secret_across_any_chunk_boundary_is_never_released(size: int, offset: int) -> None:
    data = (("x" * offset + GH_TOKEN + "\n") * 20).encode()
    whole, outs = stream(REDACT, data, list(range(size, len(data), size)))
    assert GH_TOKEN[:16].encode() not in whole
    assert whole == REDACT.mask_bytes(data)
    assert b"".join(outs).count(b"***") == 20


def test_an_endless_line_is_masked_with_bounded_memory() -> None:
    masker = REDACT.stream()
    chunk = ("a" * 1000 + GH_TOKEN) * 64  # no newline, ever; a token every 1 kB
    out = []
    for _ in range(200):  # ~7 MB
        out.append(masker.feed(chunk.encode()))
        assert masker.held < 4096
    out.append(masker.close())
    data = b"".join(out)
    assert GH_TOKEN[:16].encode() not in data
    assert data.count(b"***") == 200 * 64


def test_output_streams_up_to_what_could_begin_a_secret() -> None:
    masker = Redactor({"GH_TOKEN": GH_TOKEN}).stream()
    assert masker.feed(b"Hello, world\nHalf a line ") == b"Hello, world\nHalf a line "
    # "e" may begin a JWT (eyJ...), "ne" may be inside the token: 2 bytes wait.
    assert masker.feed(b"ne") == b""
    assert masker.feed(b" then gh") == b"ne then "  # "gh" may begin a token
    assert masker.feed(b"p_") == b""
    assert masker.feed(GH_TOKEN[4:].encode() + b" done\n") == b"*** done\n"
    assert masker.feed(b"and " + GH_TOKEN[:10].encode()) == b"and "
    assert masker.close() == GH_TOKEN[:10].encode()  # too short a piece to mask


def test_a_childs_stderr_piped_through_the_masker_into_a_log(tmp_path: Path) -> None:
    """How a task's stderr log is to be written: read the pipe, feed, write, close."""
    script = (
        "import os, sys\n"
        "data = ('warn: token=' + sys.argv[1] + '\\n') * 3 + 'cut ' + sys.argv[1][:30]\n"
        "for i in range(0, len(data), 3):\n"
        "    os.write(2, data[i : i + 3].encode())\n"
    )
    child = proc.spawn([sys.executable, "-c", script, GH_TOKEN], stderr=subprocess.PIPE)
    assert child.stderr is not None
    masker = REDACT.stream()
    log = tmp_path / "t.stderr.log"
    with log.open("wb") as f:
        while chunk := os.read(child.stderr.fileno(), 65536):
            f.write(masker.feed(chunk))
        f.write(masker.close())
    assert child.wait(timeout=30) == 0
    assert log.read_text() == "warn: token=***\n" * 3 + "cut ***"
