"""The stand-in Messages API server: enough of Anthropic's API for the real CLI.

A request is answered, in this order of precedence, by:

1. the concurrency limit (``limit_concurrency``): a 429 with ``retry-after`` when the
   limit's worth of message requests are already being answered;
2. the script registered for its ``x-api-key`` (``assign``: a rehearsal gives every task
   attempt its own dummy key);
3. the first rule whose marker is a substring of the conversation's first user message
   (``on``: turn ``i`` gets the rule's ``i``-th reply, later turns its last);
4. the default script (``default_script``), else the default replies (``default``).

Rules find their turn in the conversation itself (how many assistant messages it
holds), so parallel CLIs sharing one server each follow their own script. A script
assigned to a key counts the replies delivered to that key instead: the CLI compacts a
conversation whose reported context nears the model's window (it rewrites the history,
so the count in it starts again), and a resumed session continues where it stopped.

Side requests are answered outside any script and not recorded: the session title
(interactive mode) with a JSON title, a compaction (the CLI asks for a ``<summary>``)
with a short summary.

Threads: one accept loop plus one per connection, all named after the server and all
joined by ``stop()``, which also releases held (``Hang``/``delay``) requests.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from claude_runner.standin import wire
from claude_runner.standin.answer import reply_for
from claude_runner.standin.replies import (
    GENERATE,
    INPUT_TOKENS,
    STRUCTURED_OUTPUT_TOOL,
    Hang,
    HttpError,
    Output,
    Reply,
    Text,
    ToolUse,
)
from claude_runner.standin.schemagen import example
from claude_runner.standin.script import Script

TITLE = "Fake session title"
SUMMARY = (
    "<analysis>\nA rehearsal.\n</analysis>\n<summary>\nThe stand-in model's summary.\n</summary>"
)


@dataclass(frozen=True)
class _Rule:
    marker: str
    replies: tuple[Reply, ...]
    model: str | None = None

    def matches(self, text: str, model: str) -> bool:
        return self.marker in text and (self.model is None or self.model in model)


@dataclass(frozen=True)
class Assignment:
    """The script a task attempt's API key gets."""

    script: Script
    attempt: int = 1
    task: str = ""


@dataclass(frozen=True)
class Stats:
    """Counts of message requests (title requests excluded)."""

    answered: int
    rejected: int  # refused by the concurrency limit
    in_flight: int
    peak_in_flight: int  # most answered at once
    compactions: int  # compaction requests answered (not in ``answered``)


@dataclass
class _State:
    rules: list[_Rule] = field(default_factory=list)
    default: tuple[Reply, ...] = (Text("ok"),)
    default_script: Script | None = None
    assignments: dict[str, Assignment] = field(default_factory=dict)
    turns: dict[str, int] = field(default_factory=dict)  # replies delivered per key
    limit: int | None = None
    limit_retry_after: int = 1
    in_flight: int = 0
    peak: int = 0
    answered: int = 0
    rejected: int = 0
    compactions: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    connections: set[socket.socket] = field(default_factory=set)
    ids: Iterator[int] = field(default_factory=itertools.count)


def resolve_output(reply: Output, body: Mapping[str, Any]) -> Text | ToolUse:
    """A structured output as the CLI expects it: the ``StructuredOutput`` tool call
    when offered (a generated value fits the tool's schema), else JSON text."""
    schema = wire.output_schema(body)
    value = example(schema or {}) if reply.value is GENERATE else reply.value
    if schema is None:
        return Text(json.dumps(value), usage=reply.usage)
    return ToolUse(STRUCTURED_OUTPUT_TOOL, value, usage=reply.usage)


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
        """Quiet: a test or a rehearsal would show every request on stderr."""

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
        elif wire.is_title_request(body):
            self._answer(body, Text(json.dumps({"title": TITLE})))
        elif wire.is_compaction_request(body):
            with self.server.state.lock:
                self.server.state.compactions += 1
            self._answer(body, Text(SUMMARY))
        else:
            self._message_request(body)

    def _message_request(self, body: dict[str, Any]) -> None:
        state = self.server.state
        headers = {k.lower(): v for k, v in self.headers.items()}
        with state.lock:
            if state.limit is not None and state.in_flight >= state.limit:
                state.rejected += 1
                refused = HttpError(
                    429,
                    message="stand-in: too many concurrent requests",
                    headers={"retry-after": str(state.limit_retry_after)},
                )
            else:
                refused = None
                reply, counted = self.server.pick(body, headers)
                state.in_flight += 1
                state.peak = max(state.peak, state.in_flight)
                state.answered += 1
        if refused is not None:
            self._answer(body, refused)
            return
        delivered = False
        try:
            delivered = self._answer(body, reply)
        finally:
            with state.lock:
                state.in_flight -= 1
                if counted is not None and delivered:
                    state.turns[counted] = state.turns.get(counted, 0) + 1

    def _hold(self, seconds: float) -> bool:
        """Wait ``seconds``; False (and the connection dropped) if the server stops."""
        if seconds > 0 and self.server.state.stopping.wait(seconds):
            self.close_connection = True
            return False
        return True

    def _answer(self, body: dict[str, Any], reply: Reply) -> bool:
        """Send ``reply``; True when a model message (not an error) was delivered whole."""
        state = self.server.state
        if isinstance(reply, Hang):
            if not self._hold(reply.seconds) or reply.then is None:
                self.close_connection = True
                return False
            reply = reply.then
        if not self._hold(reply.delay):
            return False
        if isinstance(reply, HttpError):
            error = wire.error_body(reply.error_type, reply.message)
            self._json(reply.status, error, reply.headers)
            return False
        if isinstance(reply, Output):
            reply = resolve_output(reply, body)
        with state.lock:
            msg_id = str(next(state.ids))
        if isinstance(reply, Text):
            block = wire.text_block(reply.text)
        else:
            block = wire.tool_use_block(reply.name, reply.input, msg_id)
        message = wire.message(body, block, msg_id, reply.usage)
        if not body.get("stream"):
            return self._json(200, message)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for event, data in wire.sse_events(message):
                self.wfile.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()
        except OSError:
            return False
        return True

    def _json(
        self, status: int, payload: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> bool:
        """Send a JSON response; False when the client was gone."""
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("request-id", "req_fake")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            return False
        return True


class _Server(ThreadingHTTPServer):
    # Handler threads are joined by server_close(), so none outlives stop().
    daemon_threads = False
    block_on_close = True

    def __init__(self, state: _State, host: str) -> None:
        self.state = state
        super().__init__((host, 0), _Handler)
        self.thread_prefix = f"fakeapi-{self.server_address[1]}"

    def handle_error(self, request: object, client_address: object) -> None:
        """A failure while answering is recorded (``StandinAPI.errors``), not printed:
        a rehearsal's output belongs to the runner."""
        with self.state.lock:
            self.state.errors.append(traceback.format_exc())

    def pick(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[Reply, str | None]:
        """Record the request and choose its reply (the caller holds the lock); the key
        whose delivered replies count turns, for an assigned script."""
        state = self.state
        state.requests.append(body)
        state.headers.append(headers)
        key = headers.get("x-api-key", "")
        assigned = state.assignments.get(key)
        if assigned is not None:
            turn = state.turns.get(key, 0)
            return reply_for(assigned.script, body, attempt=assigned.attempt, turn=turn), key
        text, model = wire.first_user_text(body), str(body.get("model", ""))
        rule = next((r.replies for r in state.rules if r.matches(text, model)), None)
        if rule is None and state.default_script is not None:
            return reply_for(state.default_script, body), None
        replies = rule or state.default
        return replies[min(wire.turn_of(body), len(replies) - 1)], None


class StandinAPI:
    """The stand-in server; ``start()`` binds a free port on 127.0.0.1."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self._state = _State()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # Names of this server's threads start with it, so tests can prove none leaked.
        self.thread_prefix = "fakeapi-unstarted"

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the stand-in API is not running; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The /v1/messages bodies received so far (title requests and requests refused
        by the concurrency limit excluded)."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def headers(self) -> list[dict[str, str]]:
        """The HTTP headers (lower-cased names) of each entry of ``requests``, in order."""
        with self._state.lock:
            return list(self._state.headers)

    def stats(self) -> Stats:
        with self._state.lock:
            s = self._state
            return Stats(s.answered, s.rejected, s.in_flight, s.peak, s.compactions)

    @property
    def errors(self) -> list[str]:
        """Tracebacks of failures while answering (a bug of the stand-in; empty normally)."""
        with self._state.lock:
            return list(self._state.errors)

    def on(self, marker: str, *replies: Reply, model: str | None = None) -> None:
        """Script conversations whose first user message contains ``marker`` (and, with
        ``model``, whose request names a model containing it); the first rule
        registered wins when several match."""
        if not replies:
            raise ValueError("on() needs at least one reply")
        with self._state.lock:
            self._state.rules.append(_Rule(marker, replies, model))

    def default(self, *replies: Reply) -> None:
        """Script conversations no rule matches (``Text("ok")`` until set)."""
        if not replies:
            raise ValueError("default() needs at least one reply")
        with self._state.lock:
            self._state.default = replies

    def default_script(self, script: Script | None) -> None:
        """Answer conversations that no key or rule matches by ``script`` (None: by the
        default replies again)."""
        with self._state.lock:
            self._state.default_script = script

    def assign(self, api_key: str, script: Script, *, attempt: int = 1, task: str = "") -> None:
        """Answer requests sent with ``api_key`` by ``script`` as the task's ``attempt``
        (1-based: ``errors_before_success`` counts attempts), from its first turn.
        ``task`` names it in ``assignment()`` for whoever inspects the server."""
        if attempt < 1:
            raise ValueError("attempt is 1-based")
        with self._state.lock:
            self._state.assignments[api_key] = Assignment(script, attempt, task)
            self._state.turns.pop(api_key, None)

    def release(self, api_key: str) -> None:
        """Forget ``api_key``'s assignment (a finished attempt)."""
        with self._state.lock:
            self._state.assignments.pop(api_key, None)
            self._state.turns.pop(api_key, None)

    def assignment(self, api_key: str) -> Assignment | None:
        with self._state.lock:
            return self._state.assignments.get(api_key)

    def limit_concurrency(self, limit: int | None, *, retry_after: int = 1) -> None:
        """Answer 429 (``retry-after: <retry_after>``) to a message request that arrives
        while ``limit`` others are being answered; None lifts the limit."""
        if limit is not None and limit < 1:
            raise ValueError("the concurrency limit is at least 1")
        with self._state.lock:
            self._state.limit = limit
            self._state.limit_retry_after = retry_after

    def wait_for_requests(self, count: int, *, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll until ``count`` requests arrived; TimeoutError names what was awaited."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.requests
            if len(seen) >= count:
                return seen
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"stand-in API got {len(seen)} of {count} requests within {timeout}s"
                )
            time.sleep(0.02)

    def start(self) -> StandinAPI:
        if self._server is not None:
            return self
        self._state.stopping.clear()
        self._server = _Server(self._state, self._host)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self._server.thread_prefix}-serve",
        )
        self.thread_prefix = self._server.thread_prefix
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release held requests, close open connections and join every thread."""
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

    def __enter__(self) -> StandinAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
