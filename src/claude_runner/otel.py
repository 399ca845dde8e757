"""OpenTelemetry traces of a pipeline run (optional, off by default): another observer of
the event stream (see ``claude_runner.progress`` for the observer calls).

On only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``)
is set and ``OTEL_SDK_DISABLED`` is not ``true``; the SDK and the OTLP/HTTP exporter are
imported only then. The exporter reads the standard variables itself (headers, timeout,
certificates); ``OTEL_SERVICE_NAME`` defaults to ``claude-runner``. The agents' own
telemetry is the CLI's business: its ``OTEL_*`` and ``CLAUDE_CODE_ENABLE_TELEMETRY``
variables reach every agent unchanged, like the rest of the environment.

Spans, nested, with the events' times: ``pipeline <run id>`` > ``stage <id>`` > ``task
<stage>/<task>`` > ``invoke_agent <stage>/<task>`` (one per attempt). Attempts and tasks
carry the GenAI semantic conventions (``gen_ai.operation.name``, ``gen_ai.provider.name``,
``gen_ai.agent.name``, ``gen_ai.request.model``, ``gen_ai.response.model``,
``gen_ai.usage.input_tokens`` / ``output_tokens``, ``gen_ai.conversation.id``) and the
cost as ``claude_runner.cost_usd`` (the conventions have no cost attribute). Tokens and
the models used come from the ``result`` message at the end of each attempt's log (its
tail only), read when the attempt ends. A failed attempt or task has status ERROR and
``error.type`` set to its failure kind; a check run is a span event on its task.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claude_runner import __version__
from claude_runner.progress.state import _epoch
from claude_runner.reports.rundir import log_result

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

_PREFIX = "pipeline_event."
FLUSH_TIMEOUT_MS = 5000


def enabled(env: Mapping[str, str]) -> bool:
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def traces_endpoint(env: Mapping[str, str]) -> str:
    """The OTLP/HTTP traces URL, as the specification derives it."""
    explicit = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if explicit:
        return explicit
    return env["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"


def make_otel_observer(env: Mapping[str, str]) -> OtelObserver | None:
    """The tracing observer when OTLP export is configured, else None."""
    if not enabled(env):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    resource = Resource.create(
        {
            "service.name": env.get("OTEL_SERVICE_NAME") or "claude-runner",
            "service.version": __version__,
        }
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_endpoint(env))))
    return OtelObserver(provider)


def _ns(ts: float | None) -> int | None:
    return None if ts is None else int(ts * 1e9)


def _usage(log: Path | None) -> dict[str, Any]:
    """GenAI attributes from the result message at the end of an attempt's log."""
    message = log_result(log) if log is not None and log.is_file() else None
    if message is None:
        return {}
    attrs: dict[str, Any] = {}
    usage = message.get("usage")
    if isinstance(usage, dict):
        for key, attr in (
            ("input_tokens", "gen_ai.usage.input_tokens"),
            ("output_tokens", "gen_ai.usage.output_tokens"),
            ("cache_read_input_tokens", "gen_ai.usage.cache_read.input_tokens"),
            ("cache_creation_input_tokens", "gen_ai.usage.cache_creation.input_tokens"),
        ):
            if isinstance(usage.get(key), int):
                attrs[attr] = usage[key]
    models = message.get("modelUsage")
    if isinstance(models, dict) and models:
        attrs["gen_ai.response.model"] = next(iter(models))
        attrs["claude_runner.models"] = sorted(str(m) for m in models)
    cost = message.get("total_cost_usd")
    if isinstance(cost, int | float):
        attrs["claude_runner.cost_usd"] = float(cost)
    turns = message.get("num_turns")
    if isinstance(turns, int):
        attrs["claude_runner.num_turns"] = turns
    return attrs


class _Task:
    def __init__(self, span: Span, name: str) -> None:
        self.span = span
        self.name = name
        self.attempt: Span | None = None
        self.attempt_log: Path | None = None
        self.attempt_number = 0
        self.totals: dict[str, float] = {}


class OtelObserver:
    """Turns events into spans (see the module docstring)."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import trace  # noqa: PLC0415
        from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415

        self._trace = trace
        self._status = Status
        self._code = StatusCode
        self.provider = provider
        self.tracer: Tracer = provider.get_tracer("claude_runner", __version__)
        self.run: Span | None = None
        self.run_dir: Path | None = None
        self.origin: str | None = None
        self.stages: dict[str, Span] = {}
        self.tasks: dict[tuple[str, str], _Task] = {}

    # -- helpers ------------------------------------------------------------------------

    def _start(self, name: str, parent: Span | None, ts: float | None, **attrs: Any) -> Span:
        context = self._trace.set_span_in_context(parent) if parent is not None else None
        return self.tracer.start_span(
            name,
            context=context,
            start_time=_ns(ts),
            attributes={k: v for k, v in attrs.items() if v is not None},
        )

    def _fail(self, span: Span, kind: str | None, reason: object) -> None:
        span.set_attribute("error.type", kind or "failed")
        span.set_status(self._status(self._code.ERROR, str(reason or kind or "failed")[:500]))

    def _path(self, value: object) -> Path | None:
        if not isinstance(value, str) or not value:
            return None
        if self.origin and self.run_dir and value.startswith(self.origin.rstrip("/") + "/"):
            return self.run_dir / value[len(self.origin.rstrip("/")) + 1 :]
        return Path(value)

    def _task(self, e: dict[str, Any], ts: float | None) -> _Task:
        key = (str(e.get("stage_id")), str(e.get("task_id")))
        found = self.tasks.get(key)
        if found is None:
            name = f"{key[0]}/{key[1]}"
            span = self._start(
                f"task {name}",
                self.stages.get(key[0]) or self.run,
                ts,
                **{"claude_runner.stage_id": key[0], "claude_runner.task_id": key[1]},
            )
            found = self.tasks[key] = _Task(span, name)
        return found

    def _end_attempt(
        self, task: _Task, ts: float | None, status: str, kind: object, reason: object
    ) -> None:
        span = task.attempt
        if span is None:
            return
        attrs = _usage(task.attempt_log)
        for name, value in attrs.items():
            span.set_attribute(name, value)
            if isinstance(value, int | float) and name != "claude_runner.num_turns":
                task.totals[name] = task.totals.get(name, 0) + value
        span.set_attribute("claude_runner.status", status)
        if status != "succeeded":
            self._fail(span, kind if isinstance(kind, str) else None, reason)
        span.end(end_time=_ns(ts))
        task.attempt = None

    # -- the observer API ---------------------------------------------------------------

    def event(self, body: dict[str, Any]) -> None:
        kind = body.get("type")
        if (
            not isinstance(kind, str)
            or not kind.startswith(_PREFIX)
            or kind.endswith("task_output")
        ):
            return
        handler = getattr(self, "_on_" + kind[len(_PREFIX) :], None)
        if handler is not None:
            handler(body, _epoch(body.get("ts")))

    def activity(
        self,
        stage_id: str,
        task_id: str,
        tool: str | None,
        turns: int | None,
        cost_usd: float | None,
    ) -> None:
        return None  # spans are made of whole attempts; tool calls are the CLI's telemetry

    def close(self) -> None:
        """End whatever is still open (a run cut short) and flush to the collector."""
        for task in self.tasks.values():
            if task.attempt is not None:
                self._end_attempt(task, None, "unfinished", "unfinished", "the run ended first")
            if task.span.is_recording():
                task.span.end()
        for span in self.stages.values():
            if span.is_recording():
                span.end()
        if self.run is not None and self.run.is_recording():
            self.run.end()
        self.provider.force_flush(timeout_millis=FLUSH_TIMEOUT_MS)
        self.provider.shutdown()

    # -- events -------------------------------------------------------------------------

    def _on_plan_start(self, e: dict[str, Any], ts: float | None) -> None:
        run_dir = e.get("run_dir")
        self.origin = run_dir if isinstance(run_dir, str) else None
        self.run_dir = Path(run_dir) if isinstance(run_dir, str) else None
        self.run = self._start(
            f"pipeline {e.get('plan_run_id')}",
            None,
            ts,
            **{
                "claude_runner.plan_run_id": e.get("plan_run_id"),
                "claude_runner.plan_path": e.get("plan_path"),
                "claude_runner.task_count": e.get("task_count"),
                "claude_runner.rehearsal": e.get("rehearsal"),
                "claude_runner.budget_usd": e.get("budget_usd"),
            },
        )

    def _on_stage_start(self, e: dict[str, Any], ts: float | None) -> None:
        sid = str(e.get("stage_id"))
        self.stages[sid] = self._start(
            f"stage {sid}",
            self.run,
            ts,
            **{"claude_runner.stage_id": sid, "claude_runner.stage_mode": e.get("mode")},
        )

    def _on_stage_finish(self, e: dict[str, Any], ts: float | None) -> None:
        span = self.stages.get(str(e.get("stage_id")))
        if span is not None:
            span.set_attribute("claude_runner.status", str(e.get("status")))
            if e.get("status") != "succeeded":
                self._fail(span, None, e.get("status"))
            span.end(end_time=_ns(ts))

    def _on_task_start(self, e: dict[str, Any], ts: float | None) -> None:
        task = self._task(e, ts)
        if task.attempt is not None:  # no task_retry came between two attempts
            self._end_attempt(task, ts, "failed", None, "a new attempt started")
        number = e.get("attempt")
        task.attempt_number = number if isinstance(number, int) else task.attempt_number + 1
        task.attempt_log = self._path(e.get("log"))
        model = e.get("model")
        if isinstance(model, str) and model:
            task.span.set_attribute("gen_ai.request.model", model)
        task.attempt = self._start(
            f"invoke_agent {task.name}",
            task.span,
            ts,
            **{
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.provider.name": "anthropic",
                "gen_ai.system": "anthropic",
                "gen_ai.agent.name": task.name,
                "gen_ai.request.model": model if isinstance(model, str) and model else None,
                "claude_runner.attempt": task.attempt_number,
            },
        )

    def _on_task_session_bind(self, e: dict[str, Any], ts: float | None) -> None:
        task = self.tasks.get((str(e.get("stage_id")), str(e.get("task_id"))))
        if task is not None and task.attempt is not None and isinstance(e.get("session_id"), str):
            task.attempt.set_attribute("gen_ai.conversation.id", e["session_id"])

    def _on_task_retry(self, e: dict[str, Any], ts: float | None) -> None:
        task = self.tasks.get((str(e.get("stage_id")), str(e.get("task_id"))))
        if task is None:
            return
        if self.run_dir is not None and task.attempt_log is not None:
            moved = task.attempt_log.parent / f"attempt-{task.attempt_number}" / "agent.log"
            if moved.is_file():  # the log was moved aside before the event
                task.attempt_log = moved
        self._end_attempt(task, ts, "failed", e.get("kind"), e.get("reason"))

    def _on_task_check(self, e: dict[str, Any], ts: float | None) -> None:
        task = self.tasks.get((str(e.get("stage_id")), str(e.get("task_id"))))
        if task is not None:
            task.span.add_event(
                "check",
                {
                    "claude_runner.check.run": int(e.get("attempt") or 0),
                    "claude_runner.check.exit_code": int(e.get("exit_code") or 0),
                    "claude_runner.check.passed": e.get("passed") is True,
                },
                timestamp=_ns(ts),
            )

    def _on_task_finish(self, e: dict[str, Any], ts: float | None) -> None:
        task = self._task(e, ts)
        status = str(e.get("status"))
        self._end_attempt(task, ts, status, e.get("failure_kind"), e.get("reason"))
        span = task.span
        span.set_attribute("claude_runner.status", status)
        span.set_attribute("claude_runner.attempts", task.attempt_number)
        for name, value in task.totals.items():
            span.set_attribute(name, value)
        if isinstance(e.get("cost_usd"), int | float):
            span.set_attribute("claude_runner.cost_usd", float(e["cost_usd"]))
        if isinstance(e.get("session_id"), str):
            span.set_attribute("gen_ai.conversation.id", e["session_id"])
        if status in ("failed", "cancelled"):
            self._fail(span, e.get("failure_kind") or status, e.get("reason"))
        span.end(end_time=_ns(ts))

    def _on_plan_finish(self, e: dict[str, Any], ts: float | None) -> None:
        if self.run is None:
            return
        self.run.set_attribute("claude_runner.status", str(e.get("status")))
        spent = sum(t.totals.get("claude_runner.cost_usd", 0.0) for t in self.tasks.values())
        self.run.set_attribute("claude_runner.cost_usd", round(spent, 6))
        if e.get("status") != "succeeded":
            self._fail(self.run, None, e.get("status"))
        self.run.end(end_time=_ns(ts))
