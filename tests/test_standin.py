"""The stand-in's own parts: schema examples, the rehearsal script model, script answers,
and the server's HTTP behaviour (headers, usage, delays, the concurrency limit, routing
by API key). The real CLI against these features is in ``test_standin_cli.py``."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from typing import Any

import jsonschema
import pydantic
import pytest

from claude_runner.standin import answer, env, schemagen, script
from claude_runner.standin.replies import GENERATE, HttpError, Output, Text, ToolUse
from claude_runner.standin.server import StandinAPI

# --- schema examples -----------------------------------------------------------------

SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"approved": {"type": "boolean"}}, "required": ["approved"]},
    {"type": "string"},
    {"type": "string", "minLength": 20},
    {"type": "string", "maxLength": 3},
    {"type": "string", "format": "date-time"},
    {"type": "string", "format": "email"},
    {"type": "integer", "minimum": 5, "maximum": 5},
    {"type": "integer", "exclusiveMinimum": 5},
    {"type": "integer", "exclusiveMaximum": -3},
    {"type": "number", "minimum": 0.5, "multipleOf": 0.25},
    {"type": "number", "exclusiveMinimum": 1.5, "exclusiveMaximum": 2.5},
    {"type": "integer", "maximum": -10},
    {"type": ["null", "integer"], "minimum": 3},
    {"type": "boolean"},
    {"type": "null"},
    {"const": {"fixed": [1, 2]}},
    {"enum": ["red", "green"]},
    {"type": "array", "items": {"type": "string"}, "minItems": 3, "uniqueItems": True},
    {
        "type": "array",
        "items": {"type": "integer", "minimum": 1},
        "minItems": 2,
        "uniqueItems": True,
    },
    {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 3, "uniqueItems": True},
    {"type": "array", "maxItems": 0},
    {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False},
    {"anyOf": [{"type": "string", "minLength": 2}, {"type": "integer"}]},
    {"oneOf": [{"type": "integer", "minimum": 10}, {"type": "string"}]},
    {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"type": "integer", "minimum": 2}}, "required": ["b"]},
        ]
    },
    {
        "$defs": {"port": {"type": "object", "properties": {"name": {"type": "string"}}}},
        "type": "object",
        "properties": {"ports": {"type": "array", "items": {"$ref": "#/$defs/port"}}},
        "required": ["ports"],
        "additionalProperties": False,
    },
    {
        "definitions": {"node": {"type": "object", "properties": {"next": {"$ref": "#"}}}},
        "$ref": "#/definitions/node",
    },
    {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
                "required": ["name", "children"],
            }
        },
        "$ref": "#/$defs/node",
    },
    {"type": "object", "required": ["x"], "additionalProperties": {"type": "integer"}},
    {
        "type": "object",
        "properties": {
            "files": {
                "type": "array",
                "minItems": 2,
                "items": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "minLength": 1},
                        "risk": {"enum": ["low", "high"]},
                        "score": {"type": "number", "minimum": 0, "maximum": 1},
                    },
                    "required": ["path", "risk"],
                },
            }
        },
        "required": ["files"],
    },
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=[json.dumps(s)[:60] for s in SCHEMAS])
def test_example_satisfies_the_schema(schema: dict[str, Any]) -> None:
    value = schemagen.example(schema)
    jsonschema.Draft202012Validator(schema).validate(value)


def test_example_fills_every_property_and_a_list_to_fan_out_over() -> None:
    schema = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"type": "string"}}, "n": {}},
    }
    assert schemagen.example(schema) == {"items": ["example"], "n": None}


def test_example_survives_a_reference_cycle_and_a_non_mapping() -> None:
    assert schemagen.example({"$ref": "#"}) is None  # a schema that accepts anything
    assert schemagen.example("not a schema") is None


# --- the rehearsal script model --------------------------------------------------------


def test_script_of_the_spec_example_loads() -> None:
    loaded = script.load(
        {
            "tools": [{"bash": "pytest -q"}, {"write": {"path": "notes.md", "content": "x"}}],
            "result": "done",
            "output": {"approved": False},
            "error": {"status": 429, "retry_after": "3s", "message": "slow down"},
            "errors_before_success": 2,
            "usage": {"input_tokens": 2_000_000, "output_tokens": 100},
            "delay": "1m30s",
        }
    )
    assert loaded.tools[0].bash == "pytest -q"
    assert loaded.tools[1].write == script.WriteFile(path="notes.md", content="x")
    assert loaded.error == script.ApiError(status=429, retry_after=3, message="slow down")
    assert loaded.delay == 90
    assert loaded.usage is not None
    assert loaded.usage.counts() == {"input_tokens": 2_000_000, "output_tokens": 100}
    assert script.load({"error": 529}).error == script.ApiError(status=529)
    assert script.load({}) == script.Script()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"errors_before_success": 2}, "errors_before_success needs error"),
        ({"tools": [{"bash": "a", "write": {"path": "p"}}]}, "exactly one key"),
        ({"tools": [{}]}, "exactly one key"),
        ({"tools": [{"python": "x"}]}, "Extra inputs are not permitted"),
        ({"error": 200}, "greater than or equal to 400"),
        ({"error": True}, "valid"),
        ({"delay": "30 seconds"}, "a duration is"),
        ({"delay": -1}, "a duration is"),
        ({"delay": True}, "a duration is"),
        ({"usage": {"input_tokens": -1}}, "greater than or equal to 0"),
        ({"usage": {"tokens": 1}}, "Extra inputs are not permitted"),
        ({"reslt": "typo"}, "Extra inputs are not permitted"),
        ({"tools": [{"write": {"path": ""}}]}, "at least 1 character"),
    ],
)
def test_script_rejects(data: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        script.load(data)


@pytest.mark.parametrize(
    ("text", "seconds"), [(0, 0), (45, 45), ("90s", 90), ("30m", 1800), ("1h30m", 5400)]
)
def test_durations(text: object, seconds: int) -> None:
    assert script.parse_duration(text) == seconds


def test_script_schema_is_closed_and_documents_durations() -> None:
    schema = script.Script.model_json_schema()
    assert schema["additionalProperties"] is False
    assert {"integer", "string"} <= {b["type"] for b in schema["properties"]["delay"]["anyOf"]}


def test_importing_the_script_model_starts_nothing_and_loads_no_server() -> None:
    code = (
        "import sys, threading; import claude_runner.standin.script; "
        "assert 'claude_runner.standin.server' not in sys.modules; "
        "assert 'http.server' not in sys.modules; "
        "assert threading.active_count() == 1"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- a script's answers ----------------------------------------------------------------


def _body(*, turns: int = 0, prompt: str = "the task", schema: Any = None) -> dict[str, Any]:
    reminder = {"type": "text", "text": "<system-reminder>\nnoise\n</system-reminder>"}
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [reminder, {"type": "text", "text": prompt}]}
    ]
    for _ in range(turns):
        messages += [
            {"role": "assistant", "content": [{"type": "tool_use"}]},
            {"role": "user", "content": [{"type": "tool_result"}]},
        ]
    tools: list[dict[str, Any]] = [{"name": "Bash"}]
    if schema is not None:
        tools.append({"name": "StructuredOutput", "input_schema": schema})
    return {"model": "m", "messages": messages, "tools": tools}


def test_answers_follow_the_tools_then_the_result() -> None:
    plan = script.load(
        {
            "tools": [{"bash": "make"}, {"write": {"path": "a.md", "content": "A"}}],
            "result": "done",
            "usage": {"output_tokens": 7},
            "delay": 2,
        }
    )
    usage = {"output_tokens": 7}
    assert answer.reply_for(plan, _body()) == ToolUse("Bash", {"command": "make"}, usage, 2.0)
    write = ToolUse("Write", {"file_path": "a.md", "content": "A"}, usage, 2.0)
    assert answer.reply_for(plan, _body(turns=1)) == write
    assert answer.reply_for(plan, _body(turns=2)) == Text("done", usage, 2.0)
    assert answer.reply_for(plan, _body(turns=5)) == Text("done", usage, 2.0)


def test_default_answer_echoes_the_prompt_or_gives_a_structured_output() -> None:
    assert answer.reply_for(script.Script(), _body(prompt="fix the bug")) == Text("fix the bug")
    schema = {"type": "object"}
    assert answer.reply_for(script.Script(), _body(schema=schema)) == Output(GENERATE)
    given = script.load({"output": {"approved": False}, "result": "ignored"})
    assert answer.reply_for(given, _body(schema=schema)) == Output({"approved": False})


def test_errors_before_success_counts_attempts() -> None:
    flaky = script.load(
        {"error": {"status": 429, "retry_after": "1m", "message": "m"}, "errors_before_success": 2}
    )
    failing = HttpError(429, message="m", headers={"retry-after": "60"})
    assert answer.reply_for(flaky, _body(), attempt=1) == failing
    assert answer.reply_for(flaky, _body(), attempt=2) == failing
    assert answer.reply_for(flaky, _body(), attempt=3) == Text("the task")
    always = script.load({"error": 529})
    reply = answer.reply_for(always, _body(), attempt=9)
    assert isinstance(reply, HttpError)
    assert (reply.status, reply.error_type, reply.headers) == (529, "overloaded_error", {})


# --- the environment of a rehearsing agent ---------------------------------------------


def test_agent_env_keeps_no_credential() -> None:
    base = {
        "PATH": "/bin",
        "ANTHROPIC_API_KEY": "real-key",
        "CLAUDE_CODE_OAUTH_TOKEN": "real-token",
        "ANTHROPIC_AUTH_TOKEN": "t",
        "GH_TOKEN": "gh",
        "CLAUDE_CODE_USE_BEDROCK": "1",
        "MY_SECRET": "s",
        "NO_PROXY": "corp.example",
    }
    key = env.new_api_key()
    got = env.agent_env(base, url="http://127.0.0.1:9", api_key=key, remove=["MY_SECRET"])
    assert got == {
        "PATH": "/bin",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
        "ANTHROPIC_API_KEY": key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "NO_PROXY": "127.0.0.1,localhost,corp.example",
        "no_proxy": "127.0.0.1,localhost",
    }
    assert env.new_api_key() != key
    kept = env.agent_env({"CLAUDE_CODE_MAX_RETRIES": "3"}, url="u", api_key="k", max_retries=None)
    assert kept["CLAUDE_CODE_MAX_RETRIES"] == "3"


# --- the server over HTTP --------------------------------------------------------------


def _post(
    url: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(  # noqa: S310
        url + "/v1/messages?beta=true",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def _ask(text: str) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}]}


def test_http_error_headers_and_default_type(fake_api: StandinAPI) -> None:
    headers = {"retry-after": "7", "anthropic-ratelimit-requests-remaining": "0"}
    fake_api.on("limited", HttpError(429, message="slow down", headers=headers))
    fake_api.on("busy", HttpError(529))
    status, got, body = _post(fake_api.url, _ask("limited"))
    assert status == 429
    assert got["retry-after"] == "7"
    assert got["anthropic-ratelimit-requests-remaining"] == "0"
    assert body == {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    status, _, body = _post(fake_api.url, _ask("busy"))
    assert (status, body["error"]["type"]) == (529, "overloaded_error")


def test_usage_overrides_and_streamed_usage(fake_api: StandinAPI) -> None:
    fake_api.on("big", Text("t", usage={"input_tokens": 2_000_000, "cache_read_input_tokens": 5}))
    _, _, message = _post(fake_api.url, _ask("big"))
    assert message["usage"] == {
        "input_tokens": 2_000_000,
        "output_tokens": 30,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 5,
    }
    request = urllib.request.Request(  # noqa: S310
        fake_api.url + "/v1/messages",
        data=json.dumps({**_ask("big"), "stream": True}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        events = [
            json.loads(line[len("data: ") :])
            for line in response.read().decode().splitlines()
            if line.startswith("data: ")
        ]
    start = events[0]["message"]["usage"]
    assert (start["input_tokens"], start["cache_read_input_tokens"]) == (2_000_000, 5)
    assert events[-2]["usage"] == {"output_tokens": 30}


def test_output_is_a_structured_output_call_or_json_text(fake_api: StandinAPI) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}}
    fake_api.on("gen", Output())
    fake_api.on("given", Output({"n": 1}))
    offered = {**_ask("gen"), "tools": [{"name": "StructuredOutput", "input_schema": schema}]}
    _, _, message = _post(fake_api.url, offered)
    assert message["stop_reason"] == "tool_use"
    assert message["content"][0]["name"] == "StructuredOutput"
    assert message["content"][0]["input"] == {"n": 3}
    _, _, message = _post(fake_api.url, _ask("given"))
    assert message["content"][0] == {"type": "text", "text": '{"n": 1}'}


def test_requests_are_routed_by_api_key_then_marker_then_default(fake_api: StandinAPI) -> None:
    fake_api.on("marker", Text("by marker"))
    fake_api.assign("key-a", script.load({"result": "script a"}), task="s/a")
    fake_api.assign("key-b", script.load({"error": 503, "errors_before_success": 1}), attempt=2)
    fake_api.on("pinned", Text("by model"), model="haiku")

    def text(prompt: str, key: str = "other", model: str = "m") -> Any:
        body = {**_ask(prompt), "model": model}
        status, _, message = _post(fake_api.url, body, {"x-api-key": key})
        return message["content"][0]["text"] if status == 200 else status

    assert text("marker", "key-a") == "script a"
    assert text("marker", "key-b") == "marker"  # attempt 2 is past the error: echoes
    fake_api.assign("key-b", script.load({"error": 503, "errors_before_success": 1}), attempt=1)
    assert text("marker", "key-b") == 503
    assert text("marker") == "by marker"
    assert text("pinned", model="claude-haiku-5-5") == "by model"
    assert text("pinned") == "ok"
    fake_api.default_script(script.Script())
    assert text("nothing matches: echo me") == "nothing matches: echo me"
    assignment = fake_api.assignment("key-a")
    assert assignment is not None
    assert assignment.task == "s/a"
    fake_api.release("key-a")
    assert text("marker", "key-a") == "by marker"
    with pytest.raises(ValueError, match="1-based"):
        fake_api.assign("k", script.Script(), attempt=0)


def test_an_assigned_script_counts_the_replies_delivered_to_its_key(fake_api: StandinAPI) -> None:
    fake_api.assign("key", script.load({"tools": [{"bash": "a"}, {"bash": "b"}], "result": "r"}))
    # The same (first-turn) conversation three times: the script still moves on, as it
    # must after the CLI compacts a conversation and its history starts again.
    answers = [
        _post(fake_api.url, _ask("go"), {"x-api-key": "key"})[2]["content"][0] for _ in range(3)
    ]
    assert [a.get("input", a.get("text")) for a in answers] == [
        {"command": "a"},
        {"command": "b"},
        "r",
    ]
    fake_api.assign("key", script.load({"result": "again"}))  # a new attempt starts over
    assert _post(fake_api.url, _ask("go"), {"x-api-key": "key"})[2]["content"][0]["text"] == (
        "again"
    )


def test_compaction_requests_get_a_summary_outside_any_script(fake_api: StandinAPI) -> None:
    fake_api.default(HttpError(500))
    compaction = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "the task"},
            {"role": "assistant", "content": [{"type": "text", "text": "working"}]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "content": "x"},
                    {
                        "type": "text",
                        "text": "CRITICAL: Respond with TEXT ONLY. Your task is to create a "
                        "detailed summary of the conversation so far ... <summary> ...",
                    },
                ],
            },
        ],
    }
    status, _, message = _post(fake_api.url, compaction)
    assert status == 200
    assert "<summary>" in message["content"][0]["text"]
    assert fake_api.requests == []
    assert fake_api.stats().compactions == 1


def test_concurrency_limit_answers_429_while_the_limit_is_busy(fake_api: StandinAPI) -> None:
    fake_api.limit_concurrency(1, retry_after=4)
    fake_api.on("hold", ToolUse("Bash", {"command": "true"}, delay=600))
    fake_api.on("next", Text("served"))
    held: list[object] = []

    def hold() -> None:
        try:
            held.append(_post(fake_api.url, _ask("hold"))[0])
        except OSError as err:  # stop() drops the held connection
            held.append(type(err).__name__)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        fake_api.wait_for_requests(1)
        status, headers, body = _post(fake_api.url, _ask("next"))
        assert (status, headers["retry-after"]) == (429, "4")
        assert body["error"]["type"] == "rate_limit_error"
        stats = fake_api.stats()
        assert (stats.answered, stats.rejected, stats.in_flight) == (1, 1, 1)
        fake_api.limit_concurrency(2)
        assert _post(fake_api.url, _ask("next"))[0] == 200
        assert fake_api.stats().peak_in_flight == 2
        assert len(fake_api.requests) == 2  # a refused request is not recorded
    finally:
        fake_api.stop()  # releases the held request: its connection is dropped
        holder.join(timeout=30)
    assert not holder.is_alive()
    assert held == ["RemoteDisconnected"]
    assert fake_api.stats().in_flight == 0
    assert fake_api.errors == []
    with pytest.raises(ValueError, match="at least 1"):
        fake_api.limit_concurrency(0)


def test_delay_is_released_by_stop() -> None:
    api = StandinAPI().start()
    api.on("slow", Text("late", delay=600))
    outcome: list[object] = []

    def ask() -> None:
        try:
            outcome.append(_post(api.url, _ask("slow"))[0])
        except OSError as err:  # the dropped connection
            outcome.append(type(err).__name__)

    asker = threading.Thread(target=ask)
    asker.start()
    api.wait_for_requests(1)
    api.stop()
    asker.join(timeout=30)
    assert not asker.is_alive()
    assert outcome == ["RemoteDisconnected"]
    assert api.live_threads() == []
