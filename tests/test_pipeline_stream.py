"""Bounded, line-aligned stream handling and finding the init and result messages."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_runner.pipeline.stream import PumpStats, StreamSink, session_id_of_init
from claude_runner.redact import Redactor


def pump(data: bytes, log: io.BytesIO, **kw: Any) -> PumpStats:
    """Feed ``data`` as the stage loop does: reads of at most ``read_size`` bytes."""
    sink = StreamSink(log.write, **kw)
    for at in range(0, len(data), sink.read_size):
        sink.feed(data[at : at + sink.read_size])
    return sink.close()


def through(data: bytes, limit: int) -> tuple[bytes, list[int]]:
    log = io.BytesIO()
    stats = pump(data, log, on_message=lambda m: None, limit=limit)
    return log.getvalue(), stats.overlong


def test_lines_up_to_the_limit_are_whole_and_a_last_line_gets_its_newline() -> None:
    assert through(b"abcd\nef\n\nlast", 4) == (b"abcd\nef\n\nlast\n", [])


def test_a_longer_line_is_logged_whole_and_reading_goes_on() -> None:
    assert through(b"abcdefgh\nnext\n", 4) == (b"abcdefgh\nnext\n", [8])
    assert through(b"abcdefgh", 4) == (b"abcdefgh\n", [8])


@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=20))
def test_the_log_is_the_input_whatever_the_line_lengths(lines: list[bytes]) -> None:
    data = b"\n".join(lines) + b"\n" if lines else b""
    log, overlong = through(data, 8)
    assert log == data
    assert overlong == [len(x) for x in lines if len(x) > 8]


@pytest.mark.parametrize(
    ("init", "result"),
    [
        (b'{"type":"system","subtype":"init","session_id":"s"}', b'{"type":"result"}'),
        (
            b'{ "session_id" : "s", "subtype":"init",\t"type" : "system" }',
            b'{"is_error": false, "type" : "result"}',
        ),
    ],
)
def test_init_and_result_are_found_whatever_the_key_order_and_spacing(
    init: bytes, result: bytes
) -> None:
    _, messages, _, _ = run_pump(init + b"\n" + b'{"type":"assistant"}\n' + result + b"\n")
    assert [m["type"] for m in messages] == ["system", "result"]


def test_quoted_words_inside_strings_are_not_messages() -> None:
    line = json.dumps(
        {"type": "assistant", "message": {"content": [{"type": "text", "text": 'a "result"'}]}}
    ).encode()
    assert b'"result"' not in line  # the quotes inside a string are escaped
    _, messages, _, _ = run_pump(line + b"\n")
    assert messages == []


def test_session_id_only_from_system_init() -> None:
    assert session_id_of_init({"type": "system", "subtype": "init", "session_id": "x"}) == "x"
    assert session_id_of_init({"type": "system", "subtype": "api_retry", "session_id": "x"}) is None
    assert session_id_of_init({"type": "assistant", "session_id": "x"}) is None


def run_pump(data: bytes, **kw: Any) -> tuple[bytes, list[dict[str, object]], list[bytes], Any]:
    log = io.BytesIO()
    messages: list[dict[str, object]] = []
    lines: list[bytes] = []
    stats = pump(data, log, on_message=messages.append, on_line=lines.append, **kw)
    return log.getvalue(), messages, lines, stats


def test_pump_logs_everything_and_reports_only_init_and_result() -> None:
    stream = (
        b'{"type":"system","subtype":"init","session_id":"s1"}\n'
        b'{"type":"system","subtype":"init","session_id":"s2"}\n'
        b'{"type":"system","subtype":"status"}\n'
        b"garbage\n"
        b'{"type":"assistant","message":{}}\n'
        b'{"result":"done","type":"result","is_error":false}\n'
    )
    log, messages, lines, stats = run_pump(stream)
    assert log == stream
    assert [m.get("session_id", m.get("result")) for m in messages] == ["s1", "done"]
    assert len(lines) == 6
    assert (stats.lines, stats.bytes, stats.overlong) == (6, len(stream), [])


def test_pump_masks_secrets_in_the_log() -> None:
    masker = Redactor(["sk-secret-value"]).stream()
    log, _, lines, _ = run_pump(b"key sk-secret-value here\n", masker=masker)
    assert log == b"key *** here\n"
    # Lines go on unmasked: the event writer masks what it writes.
    assert lines == [b"key sk-secret-value here"]


def test_pump_streams_an_overlong_line_to_the_log_without_parsing_it() -> None:
    big = b'{"type":"result","result":"' + b"x" * 100 + b'"}'
    log, messages, lines, stats = run_pump(big + b"\nok\n", limit=50)
    assert log == big + b"\nok\n"
    assert messages == []
    assert lines == [b"ok"]
    assert stats.overlong == [len(big)]


def test_a_result_key_in_another_message_is_not_the_result() -> None:
    stream = (
        b'{"type":"system","subtype":"init","session_id":"s"}\n'
        b'{"type":"assistant","input":{"result":"x","system":"y"}}\n'
        b'{"type":"user","content":[{"type":"tool_result","result":"z"}]}\n'
        b'{"type":"result","result":"final","is_error":false}\n'
    )
    _, messages, _, _ = run_pump(stream)
    assert [m["type"] for m in messages] == ["system", "result"]
    assert messages[1]["result"] == "final"


@given(
    st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=30),
    st.integers(min_value=1, max_value=12),
)
def test_every_line_is_forwarded_or_counted_overlong(lines: list[bytes], limit: int) -> None:
    data = b"".join(x + b"\n" for x in lines)
    log, _, forwarded, stats = run_pump(data, limit=limit)
    assert log == data
    assert forwarded == [x for x in lines if len(x) <= limit]
    assert stats.overlong == [len(x) for x in lines if len(x) > limit]
    assert (stats.lines, stats.bytes) == (len(lines), len(data))


def test_a_line_longer_than_the_limit_is_masked_across_every_chunk() -> None:
    # A line too long to parse is still logged whole; a chunk boundary may fall inside
    # any copy of the secret (the limit is small here: the path is the 64 MiB one).
    secret = b"ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    line = b"x" * 7 + secret * 1000  # 40 kB, no newline; copies straddle the 1000 B reads
    masker = Redactor({"GH_TOKEN": secret.decode()}, shapes=()).stream()
    log, _, lines, stats = run_pump(line + b"\nok\n", masker=masker, limit=1000)
    assert stats.overlong == [len(line)]
    assert log == b"xxxxxxx***\nok\n"  # adjacent copies are one mask
    assert lines == [b"ok"]


def test_a_token_after_an_escaped_newline_is_masked_in_the_log() -> None:
    line = json.dumps({"type": "user", "text": "x\nghp_" + "Z" * 36}).encode()
    log, _, _, _ = run_pump(line + b"\n", masker=Redactor([]).stream())
    assert b"Z" * 10 not in log
    assert log == b'{"type": "user", "text": "x\\n***"}\n'
