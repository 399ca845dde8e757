"""v2 plans for the benches, written as the plain data of a v2 YAML plan and put
through the real loader (models, cascade, graph and rules), as a user's plan would be."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from claude_runner.plan.loader import load_plan_bytes
from claude_runner.plan.models import resolve
from claude_runner.plan.resolved import ResolvedPlan


def resolved(data: Mapping[str, Any]) -> ResolvedPlan:
    """The resolved plan of ``data`` (a v2 plan as plain data)."""
    return resolve(load_plan_bytes(json.dumps(dict(data)).encode(), "plan.yml"))
