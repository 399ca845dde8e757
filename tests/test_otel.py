"""OpenTelemetry export: off by default, and with an endpoint, spans for the run, stages,
tasks and attempts, received by a stand-in OTLP/HTTP collector on 127.0.0.1 that decodes
the protobuf it gets (opentelemetry-proto); the agents keep the CLI's own telemetry
variables."""

from __future__ import annotations

import gzip
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from claude_runner import otel
from claude_runner.pipeline.executor import run_pipeline
from claude_runner.plan.models import Plan, resolve
from tests.fakeapi import FakeMessagesAPI, Text, ToolUse, tool_results
from tests.rundirs import sample_run
from tests.runs import stage
from tests.test_pipeline_faults import Runner, plan_of, task


class Collector:
    """An OTLP/HTTP receiver: every POST /v1/traces body, decoded."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                collector.requests.append(request)
                collector.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[dict[str, Any]]:
        found = []
        for request in self.requests:
            for rs in request.resource_spans:
                resource = {a.key: _value(a.value) for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        found.append(
                            {
                                "name": span.name,
                                "id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(),
                                "trace": span.trace_id.hex(),
                                "start": span.start_time_unix_nano,
                                "end": span.end_time_unix_nano,
                                "error": span.status.code == 2,
                                "attrs": {a.key: _value(a.value) for a in span.attributes},
                                "events": [e.name for e in span.events],
                                "resource": resource,
                            }
                        )
        return found

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    try:
        yield c
    finally:
        c.stop()


def test_off_without_an_endpoint_and_when_disabled() -> None:
    assert otel.make_otel_observer({}) is None
    assert (
        otel.make_otel_observer(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "true"}
        )
        is None
    )
    assert otel.traces_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4318/"}) == (
        "http://h:4318/v1/traces"
    )


def test_spans_for_the_run_stages_tasks_and_attempts(tmp_path: Path, collector: Collector) -> None:
    run = sample_run(tmp_path)
    observer = otel.make_otel_observer(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_SERVICE_NAME": "ci-agents"}
    )
    assert observer is not None
    # The recorded run ran in /runs/<id>: its paths, as a live run here would have them.
    events = (run / "events.jsonl").read_text().replace(f"/runs/{run.name}", str(run))
    for line in events.splitlines():
        observer.event(json.loads(line))
    observer.close()
    assert set(collector.paths) == {"/v1/traces"}
    spans = collector.spans()
    by_name = {s["name"]: s for s in spans}
    run_span = by_name["pipeline 20261130T120000.000Z-abc123"]
    assert run_span["resource"]["service.name"] == "ci-agents"
    assert run_span["parent"] == ""
    assert run_span["error"]
    assert run_span["attrs"]["claude_runner.cost_usd"] == pytest.approx(0.074)
    assert len({s["trace"] for s in spans}) == 1
    stage = by_name["stage build"]
    assert stage["parent"] == run_span["id"]
    code = by_name["task build/code"]
    assert code["parent"] == stage["id"]
    assert code["events"] == ["check", "check"]
    assert code["attrs"]["claude_runner.attempts"] == 2
    assert not code["error"]
    attempts = sorted(
        (s for s in spans if s["name"] == "invoke_agent build/code"),
        key=lambda s: s["attrs"]["claude_runner.attempt"],
    )
    assert [a["parent"] for a in attempts] == [code["id"], code["id"]]
    first, second = attempts
    assert first["error"]
    assert first["attrs"]["error.type"] == "rate_limited"
    assert first["end"] <= second["start"]
    attrs = second["attrs"]
    assert attrs["gen_ai.operation.name"] == "invoke_agent"
    assert attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["gen_ai.agent.name"] == "build/code"
    assert attrs["gen_ai.request.model"] == "sonnet"
    assert attrs["gen_ai.response.model"] == "claude-sonnet-4-5"
    assert attrs["claude_runner.models"] == ["claude-haiku-4-5", "claude-sonnet-4-5"]
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (3000, 600)
    assert attrs["claude_runner.cost_usd"] == pytest.approx(0.05)
    assert attrs["gen_ai.conversation.id"] == "sess-build-code-2"
    docs = by_name["task build/docs"]
    assert docs["error"]
    assert docs["attrs"]["error.type"] == "agent_error"
    skipped = by_name["task ship/release"]
    assert skipped["attrs"]["claude_runner.status"] == "skipped"
    assert not [s for s in spans if s["name"] == "invoke_agent ship/release"]


def test_a_run_cut_short_still_ends_and_exports_its_spans(collector: Collector) -> None:
    observer = otel.make_otel_observer({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url})
    assert observer is not None
    envelope = {"ts": "2026-11-30T12:00:00.000Z", "schema_version": 1, "plan_run_id": "r"}
    observer.event({"type": "pipeline_event.plan_start", **envelope, "run_dir": "/nowhere"})
    observer.event({"type": "pipeline_event.stage_start", **envelope, "stage_id": "s"})
    observer.event(
        {"type": "pipeline_event.task_start", **envelope, "stage_id": "s", "task_id": "t"}
    )
    observer.close()
    names = {s["name"]: s for s in collector.spans()}
    assert set(names) == {"pipeline r", "stage s", "task s/t", "invoke_agent s/t"}
    assert names["invoke_agent s/t"]["attrs"]["error.type"] == "unfinished"


@pytest.mark.cli
def test_agents_keep_the_clis_own_telemetry_variables(
    tmp_path: Path, claude_bin: str, claude_env: dict[str, str], fake_api: FakeMessagesAPI
) -> None:
    runner = Runner(tmp_path)
    runner.claude_bin = claude_bin
    runner.env = {
        **claude_env,
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9/otel-marker",
        "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    # The CLI keeps OTEL_* from its tools' environment (measured: printenv in a Bash
    # call finds no OTEL_EXPORTER_OTLP_ENDPOINT), so read the CLI's own, its tool's parent.
    command = (
        "tr '\\0' '\\n' < /proc/$PPID/environ | "
        "grep -E '^(OTEL_EXPORTER_OTLP_ENDPOINT|CLAUDE_CODE_ENABLE_TELEMETRY)=' | sort"
    )
    fake_api.on("marker-otel-env", ToolUse("Bash", {"command": command}), Text("done"))
    plan = plan_of({"id": "s", "tasks": [{"id": "t", "prompt": "marker-otel-env"}]})
    code, events = runner.run(plan)
    assert code == 0, task(events, "s", "t")["reason"]
    printed = tool_results(fake_api.requests, "marker-otel-env")
    expected = "CLAUDE_CODE_ENABLE_TELEMETRY=1\\nOTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:9/otel-marker"
    assert expected in printed


def test_spans_from_the_executors_listeners(tmp_path: Path, collector: Collector) -> None:
    """The observer as the executor calls it (a listener of every masked event), on a
    run of the fault agent: a task that succeeds and one that crashes."""
    runner = Runner(tmp_path)
    observer = otel.make_otel_observer({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url})
    assert observer is not None
    plan = plan_of(stage("s", "ok", "crash"), on_error="continue")
    with open(os.devnull, "w") as out:
        code = run_pipeline(
            resolve(Plan.model_validate(plan)),
            runner.runtime(),
            workspace=runner.workspace,
            plan_path=Path("plan.yml"),
            out=out,
            listeners=(observer.event,),
        )
    observer.close()
    assert code == 1
    spans = {s["name"]: s for s in collector.spans()}
    ok = spans["invoke_agent s/t0"]["attrs"]
    # The fault agent's result: 10 input and 5 output tokens, $0.001.
    assert (ok["gen_ai.usage.input_tokens"], ok["gen_ai.usage.output_tokens"]) == (10, 5)
    assert ok["claude_runner.cost_usd"] == pytest.approx(0.001)
    crashed = spans["task s/t1"]
    assert crashed["error"]
    assert crashed["attrs"]["error.type"] == "crash"
