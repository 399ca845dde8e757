"""The v1 pipeline plan.

``models`` (pydantic models, the resolved plan), ``rules`` (cross-field rules on plain
data), ``yamlsrc`` (safe YAML with positions and limits), ``loader`` (``load_plan``),
``promptfile`` (``read_prompt_file`` at task start), ``schema`` (JSON Schema, dry-run
document). Nothing here is imported by ``claude_runner.cli`` until a plan is needed.
"""
