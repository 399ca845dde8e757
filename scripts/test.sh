#!/usr/bin/env bash
# The project's checks: lint, types, image lint, then the whole test suite.
# Extra arguments go to pytest (for example: scripts/test.sh -m "not image").
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
ensure_uv

"$UV" run --locked ruff check .
"$UV" run --locked ruff format --check .
"$UV" run --locked mypy
bash scripts/lint-images.sh
"$UV" run --locked pytest "$@"
