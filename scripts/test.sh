#!/usr/bin/env bash
# The project's checks: lint, types, image lint, then the whole test suite.
# Extra arguments go to pytest (for example: scripts/test.sh -m "not image").
set -euo pipefail
cd "$(dirname "$0")/.."

uv run --locked ruff check .
uv run --locked ruff format --check .
uv run --locked mypy
bash scripts/lint-images.sh
uv run --locked pytest "$@"
