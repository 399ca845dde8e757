"""A stand-in for the Anthropic Messages API, enough for the real Claude Code CLI.

Tests script conversations by rule: a rule matches when its marker is a substring of the
conversation's first user message, and answers turn ``i`` (the request that already holds
``i`` assistant messages) with its ``i``-th reply; later turns repeat the last reply.
Because the state lives in the conversation itself, parallel CLIs sharing one server each
follow their own script.

The session-title side request the CLI may send is answered with a JSON title and is
neither matched against the rules nor recorded in ``requests``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Usage reported with every reply: non-zero so the CLI computes a real cost.
INPUT_TOKENS = 120
OUTPUT_TOKENS = 30
TITLE = "Fake session title"


@dataclass(frozen=True)
class Text:
    """Reply with one text block and ``stop_reason: end_turn``."""

    text: str


@dataclass(frozen=True)
class ToolUse:
    """Reply with one ``tool_use`` block (``stop_reason: tool_use``); the CLI runs the tool
    and sends its ``tool_result`` in the next request."""

    name: str
    input: Mapping[str, Any]


@dataclass(frozen=True)
class HttpError:
    """Answer with ``status`` and an Anthropic-style error body."""

    status: int
    type: str
    message: str


@dataclass(frozen=True)
class Hang:
    """Hold the request open for ``seconds`` (released early when the server stops), then
    answer with ``then``, or drop the connection when ``then`` is None."""

    seconds: float
    then: Text | ToolUse | HttpError | None = None


Reply = Text | ToolUse | HttpError | Hang


@dataclass(frozen=True)
class _Rule:
    marker: str
    replies: tuple[Reply, ...]


@dataclass
class _State:
    rules: list[_Rule] = field(default_factory=list)
    default: tuple[Reply, ...] = (Text("ok"),)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    connections: set[socket.socket] = field(default_factory=set)
    ids: Iterator[int] = field(default_factory=itertools.count)


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


def first_user_text(body: Mapping[str, Any]) -> str:
    """All text of the conversation's first user message (reminders included)."""
    for message in body.get("messages") or []:
        if isinstance(message, dict) and message.get("role") == "user":
            return "\n".join(_texts(message.get("content")))
    return ""


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


def turn_of(body: Mapping[str, Any]) -> int:
    """How many assistant messages the conversation already holds."""
    return sum(
        1
        for m in body.get("messages") or []
        if isinstance(m, dict) and m.get("role") == "assistant"
    )


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
    system = "\n".join(_texts(body.get("system")))
    return "title" in _schema_properties(body) or 'single "title" field' in system


def _message(body: Mapping[str, Any], reply: Text | ToolUse, msg_id: str) -> dict[str, Any]:
    if isinstance(reply, Text):
        block: dict[str, Any] = {"type": "text", "text": reply.text}
        stop_reason = "end_turn"
    else:
        block = {
            "type": "tool_use",
            "id": f"toolu_fake_{msg_id}",
            "name": reply.name,
            "input": dict(reply.input),
        }
        stop_reason = "tool_use"
    return {
        "id": f"msg_fake_{msg_id}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "claude-fake"),
        "content": [block],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": _usage(OUTPUT_TOKENS),
    }


def _usage(output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": INPUT_TOKENS,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def sse_events(message: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The server-sent events that stream ``message`` (one content block)."""
    block = message["content"][0]
    if block["type"] == "text":
        start: dict[str, Any] = {"type": "text", "text": ""}
        delta = {"type": "text_delta", "text": block["text"]}
    else:
        start = {**block, "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
    head = {**message, "content": [], "stop_reason": None, "usage": _usage(1)}
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
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": message["usage"]["output_tokens"]},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    # Backstop: an idle keep-alive read gives up, so stop() can never wait forever.
    timeout = 10.0

    def setup(self) -> None:
        super().setup()
        threading.current_thread().name = f"{self.server.thread_prefix}-handler"
        state = self.server.state
        with state.lock:
            if state.stopping.is_set():
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
            else:
                state.connections.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.server.state.lock:
            self.server.state.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest would show every request on stderr."""

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._json(200, {})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        path = self.path.split("?", 1)[0]
        if path.endswith("/count_tokens"):
            self._json(200, {"input_tokens": INPUT_TOKENS})
        elif path != "/v1/messages" or not isinstance(body, dict) or "messages" not in body:
            self._json(200, {})
        elif is_title_request(body):
            self._answer(body, Text(json.dumps({"title": TITLE})))
        else:
            self._answer(
                body, self.server.pick(body, {k.lower(): v for k, v in self.headers.items()})
            )

    def _answer(self, body: dict[str, Any], reply: Reply) -> None:
        state = self.server.state
        if isinstance(reply, Hang):
            released = state.stopping.wait(reply.seconds)
            if released or reply.then is None:
                self.close_connection = True
                return
            reply = reply.then
        if isinstance(reply, HttpError):
            error = {"type": reply.type, "message": reply.message}
            self._json(reply.status, {"type": "error", "error": error})
            return
        with state.lock:
            msg_id = str(next(state.ids))
        message = _message(body, reply, msg_id)
        if not body.get("stream"):
            self._json(200, message)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        with contextlib.suppress(OSError):
            for event, data in sse_events(message):
                self.wfile.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

    def _json(self, status: int, payload: Mapping[str, Any]) -> None:
        data = json.dumps(payload).encode()
        with contextlib.suppress(OSError):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("request-id", "req_fake")
            self.end_headers()
            self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    # Handler threads are joined by server_close(), so none outlives stop().
    daemon_threads = False
    block_on_close = True

    def __init__(self, state: _State) -> None:
        self.state = state
        super().__init__(("127.0.0.1", 0), _Handler)
        self.thread_prefix = f"fakeapi-{self.server_address[1]}"

    def pick(self, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        """Record the request and choose its reply from the rules."""
        text = first_user_text(body)
        with self.state.lock:
            self.state.requests.append(body)
            self.state.headers.append(headers)
            replies = next(
                (r.replies for r in self.state.rules if r.marker in text), self.state.default
            )
        return replies[min(turn_of(body), len(replies) - 1)]


class FakeMessagesAPI:
    """The stand-in server; ``start()`` binds a free port on 127.0.0.1."""

    def __init__(self) -> None:
        self._state = _State()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # Names of this server's threads start with it, so tests can prove none leaked.
        self.thread_prefix = "fakeapi-unstarted"

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeMessagesAPI is not running; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The /v1/messages bodies received so far (title requests excluded)."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def headers(self) -> list[dict[str, str]]:
        """The HTTP headers (lower-cased names) of each entry of ``requests``, in order."""
        with self._state.lock:
            return list(self._state.headers)

    def on(self, marker: str, *replies: Reply) -> None:
        """Script conversations whose first user message contains ``marker``; the first
        rule registered wins when several match."""
        if not replies:
            raise ValueError("on() needs at least one reply")
        with self._state.lock:
            self._state.rules.append(_Rule(marker, replies))

    def default(self, *replies: Reply) -> None:
        """Script conversations no rule matches (``Text("ok")`` until set)."""
        if not replies:
            raise ValueError("default() needs at least one reply")
        with self._state.lock:
            self._state.default = replies

    def wait_for_requests(self, count: int, *, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll until ``count`` requests arrived; TimeoutError names what was awaited."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.requests
            if len(seen) >= count:
                return seen
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"fake API got {len(seen)} of {count} requests within {timeout}s"
                )
            time.sleep(0.02)

    def start(self) -> FakeMessagesAPI:
        if self._server is not None:
            return self
        self._state.stopping.clear()
        self._server = _Server(self._state)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self._server.thread_prefix}-serve",
        )
        self.thread_prefix = self._server.thread_prefix
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release hung requests, close open connections and join every thread."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._state.stopping.set()
        server.shutdown()
        thread.join()
        with self._state.lock:
            open_connections = list(self._state.connections)
        for conn in open_connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        self._server = self._thread = None

    def live_threads(self) -> list[str]:
        """Names of this server's threads still alive (empty after stop())."""
        return [t.name for t in threading.enumerate() if t.name.startswith(self.thread_prefix)]

    def __enter__(self) -> FakeMessagesAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
