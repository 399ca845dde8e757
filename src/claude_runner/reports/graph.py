"""The plan's graph for the HTML report: needs resolved to tasks, layered, drawn as SVG.

Refs follow the plan format (``stage/task``, ``stage/*``, a bare task id unique in the
plan, else a stage id; a fan-out parent stands for its instances). Each task sits in
the layer after its deepest need. A graph with more edges than a page can show
(``MAX_EDGES``: a v1 plan's stage of 500 tasks needs every task of the previous one)
is drawn one level up, as stages, each with its tasks' status counts.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape

from claude_runner.reports.rundir import RunView, TaskView

MAX_EDGES = 2000
_COL, _ROW, _NODE_W, _NODE_H = 190, 30, 160, 22


def resolve_needs(view: RunView) -> dict[str, list[str]]:
    """Each task's needs as task keys (unknown refs dropped)."""
    keys = {t.key for t in view.tasks}
    by_id: dict[str, list[str]] = {}
    by_stage: dict[str, list[str]] = {}
    by_parent: dict[str, list[str]] = {}
    for t in view.tasks:
        by_id.setdefault(t.task_id, []).append(t.key)
        by_stage.setdefault(t.stage_id, []).append(t.key)
        if t.instance_of:
            by_parent.setdefault(f"{t.stage_id}/{t.instance_of}", []).append(t.key)

    def one(ref: str) -> list[str]:
        if ref in keys:
            return [ref]
        if ref in by_parent:
            return by_parent[ref]
        stage, slash, task = ref.partition("/")
        if slash:
            return by_stage.get(stage, []) if task == "*" else []
        if len(by_id.get(ref, [])) == 1:
            return by_id[ref]
        return by_stage.get(ref, [])

    return {t.key: [k for ref in t.needs for k in one(ref) if k != t.key] for t in view.tasks}


def layers(needs: dict[str, list[str]]) -> dict[str, int]:
    """Longest-path layer of each node (a cycle, which the loader forbids, is cut)."""
    depth: dict[str, int] = {}
    for start in needs:
        if start in depth:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        on_path: set[str] = set()
        while stack:
            node, i = stack.pop()
            deps = needs.get(node, [])
            if i == 0:
                on_path.add(node)
            while i < len(deps) and (deps[i] in depth or deps[i] in on_path):
                i += 1
            if i < len(deps):
                stack.append((node, i + 1))
                stack.append((deps[i], 0))
                continue
            on_path.discard(node)
            depth[node] = 1 + max((depth.get(d, -1) for d in deps if d in depth), default=-1)
    return depth


def _svg(
    nodes: list[tuple[str, str, str, str]],
    edges: list[tuple[str, str]],
    depth: dict[str, int],
) -> str:
    """nodes: (key, label, css class, href); positions from ``depth``."""
    rows: dict[int, int] = {}
    pos: dict[str, tuple[int, int]] = {}
    for key, *_ in nodes:
        col = depth.get(key, 0)
        row = rows.get(col, 0)
        rows[col] = row + 1
        pos[key] = (10 + col * _COL, 10 + row * _ROW)
    width = 20 + (max(rows, default=0) + 1) * _COL
    height = 20 + max(rows.values(), default=1) * _ROW
    out = [
        f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">'
    ]
    half = _NODE_H // 2
    for a, b in edges:
        if a in pos and b in pos:
            (x1, y1), (x2, y2) = pos[a], pos[b]
            out.append(
                f'<path class="edge" d="M{x1 + _NODE_W} {y1 + half} C{x1 + _NODE_W + 15} '
                f'{y1 + half} {x2 - 15} {y2 + half} {x2} {y2 + half}"/>'
            )
    for key, label, css, href in nodes:
        x, y = pos[key]
        short = label if len(label) <= 22 else label[:21] + "…"
        out.append(
            f'<a href="{href}" class="node {css}" data-key="{escape(key)}"><title>'
            f"{escape(label)}</title>"
            f'<rect x="{x}" y="{y}" width="{_NODE_W}" height="{_NODE_H}" rx="4"/>'
            f'<text x="{x + 8}" y="{y + 15}">{escape(short)}</text></a>'
        )
    out.append("</svg>")
    return "".join(out)


def render_graph(view: RunView, anchor: Callable[[TaskView], str]) -> str:
    """The plan graph as inline SVG: tasks, or stages when the edges are too many."""
    needs = resolve_needs(view)
    edge_count = sum(len(v) for v in needs.values())
    if edge_count <= MAX_EDGES:
        depth = layers(needs)
        nodes = [(t.key, t.key, f"st-{t.status}", "#" + anchor(t)) for t in view.tasks]
        edges = [(d, k) for k, ds in needs.items() for d in ds]
        return _svg(nodes, edges, depth)
    stage_of = {t.key: t.stage_id for t in view.tasks}
    stage_needs: dict[str, set[str]] = {s.id: set() for s in view.stages}
    for key, deps in needs.items():
        for d in deps:
            if stage_of[d] != stage_of[key]:
                stage_needs[stage_of[key]].add(stage_of[d])
    depth = layers({s: sorted(d) for s, d in stage_needs.items()})
    stage_nodes = []
    for s in view.stages:
        tasks = [t for t in view.tasks if t.stage_id == s.id]
        worst = next(
            (
                st
                for st in ("failed", "cancelled", "unfinished")
                if any(t.status == st for t in tasks)
            ),
            "succeeded" if all(t.status == "succeeded" for t in tasks) else "skipped",
        )
        label = f"{s.id} ({len(tasks)} tasks)"
        stage_nodes.append((s.id, label, f"st-{worst}", f"#stage-{escape(s.id)}"))
    return _svg(stage_nodes, [(d, s) for s, ds in stage_needs.items() for d in ds], depth)
