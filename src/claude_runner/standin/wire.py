"""The Messages API as the CLI speaks it: reading requests, writing responses.

Observed with the pinned CLI: the prompt is the last text block of the first user
message (``<system-reminder>`` blocks come before it); ``--json-schema`` adds a
``StructuredOutput`` tool whose ``input_schema`` is the schema; replies are streamed as
server-sent events. The session-title side request (interactive mode only, when
non-essential traffic is on) has no tools and asks for a JSON ``title``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from claude_runner.standin.replies import (
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    STRUCTURED_OUTPUT_TOOL,
    USAGE_KEYS,
)

_REMINDER = "<system-reminder>"


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            str(block.get("text", ""))
            for block in content
            if isinstance(block, dict) and block.get("type") == "text"
        ]
    return []


def _first_user(body: Mapping[str, Any]) -> Any:
    for message in body.get("messages") or []:
        if isinstance(message, dict) and message.get("role") == "user":
            return message.get("content")
    return None


def first_user_text(body: Mapping[str, Any]) -> str:
    """All text of the conversation's first user message (reminders included)."""
    return "\n".join(_texts(_first_user(body)))


def prompt_of(body: Mapping[str, Any]) -> str:
    """The task's prompt: the first user message without the CLI's system reminders."""
    texts = [t for t in _texts(_first_user(body)) if not t.lstrip().startswith(_REMINDER)]
    return "\n".join(texts)


def turn_of(body: Mapping[str, Any]) -> int:
    """How many assistant messages the conversation already holds."""
    return sum(
        1
        for m in body.get("messages") or []
        if isinstance(m, dict) and m.get("role") == "assistant"
    )


def tool_results(bodies: list[dict[str, Any]], marker: str = "") -> str:
    """Every tool_result the CLI sent back in conversations about ``marker`` (all when
    empty), as text: what the tools printed, not the commands themselves."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "tool_result":
                found.append(json.dumps(node.get("content")))
                return
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk([body for body in bodies if marker in first_user_text(body)])
    return "\n".join(found)


def tool_names(body: Mapping[str, Any]) -> list[str]:
    """The names of the tools the request offers the model."""
    return [
        str(tool.get("name"))
        for tool in body.get("tools") or []
        if isinstance(tool, dict) and "name" in tool
    ]


def output_schema(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON Schema of the ``StructuredOutput`` tool, when the request offers it."""
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and tool.get("name") == STRUCTURED_OUTPUT_TOOL:
            schema = tool.get("input_schema")
            return schema if isinstance(schema, dict) else {}
    return None


def system_text(body: Mapping[str, Any]) -> str:
    """The system prompt's text blocks, joined."""
    return "\n".join(_texts(body.get("system")))


def _schema_properties(body: Mapping[str, Any]) -> Mapping[str, Any]:
    for key in ("output_config", "output_format"):
        spec = body.get(key)
        if isinstance(spec, dict):
            fmt = spec.get("format", spec)
            schema = fmt.get("schema") if isinstance(fmt, dict) else None
            if isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
                properties: Mapping[str, Any] = schema["properties"]
                return properties
    return {}


def is_title_request(body: Mapping[str, Any]) -> bool:
    """The CLI's tool-free side request for a session title: no tools, and a JSON schema
    with a ``title`` property or a system prompt asking for a "title" field."""
    if body.get("tools"):
        return False
    return "title" in _schema_properties(body) or 'single "title" field' in system_text(body)


def is_compaction_request(body: Mapping[str, Any]) -> bool:
    """The CLI asking for a summary of the conversation, to replace its history (it does
    so before a turn when the reported context nears the model's window)."""
    users = [
        m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"
    ]
    if not users:
        return False
    text = "\n".join(_texts(users[-1].get("content")))
    return "<summary>" in text and "summary of the conversation" in text


def usage(overrides: Mapping[str, int] | None = None) -> dict[str, int]:
    """The usage block of a reply: the defaults, with ``overrides`` applied."""
    counts = dict.fromkeys(USAGE_KEYS, 0)
    counts.update(input_tokens=INPUT_TOKENS, output_tokens=OUTPUT_TOKENS)
    counts.update(overrides or {})
    return counts


def message(
    body: Mapping[str, Any],
    block: dict[str, Any],
    msg_id: str,
    usage_overrides: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """A complete assistant message holding ``block`` (a text or tool_use block)."""
    return {
        "id": f"msg_fake_{msg_id}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "claude-fake"),
        "content": [block],
        "stop_reason": "tool_use" if block["type"] == "tool_use" else "end_turn",
        "stop_sequence": None,
        "usage": usage(usage_overrides),
    }


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def tool_use_block(name: str, tool_input: Any, msg_id: str) -> dict[str, Any]:
    """A tool call; ``tool_input`` is sent as given (a structured output need not be an
    object: the CLI then reports what it makes of it)."""
    value = dict(tool_input) if isinstance(tool_input, Mapping) else tool_input
    return {"type": "tool_use", "id": f"toolu_fake_{msg_id}", "name": name, "input": value}


def sse_events(msg: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The server-sent events that stream ``msg`` (one content block). Input-side
    counts go in ``message_start``, the output count in ``message_delta``, as the real
    API does (the CLI adds them up for its cost)."""
    block = msg["content"][0]
    if block["type"] == "text":
        start: dict[str, Any] = {"type": "text", "text": ""}
        delta = {"type": "text_delta", "text": block["text"]}
    else:
        start = {**block, "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
    head_usage = {**msg["usage"], "output_tokens": 1}
    head = {**msg, "content": [], "stop_reason": None, "usage": head_usage}
    return [
        ("message_start", {"type": "message_start", "message": head}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": start},
        ),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": msg["usage"]["output_tokens"]},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def error_body(error_type: str, text: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": text}}
