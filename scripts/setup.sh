#!/usr/bin/env bash
# Set up the runner from this checkout: the Python environment from uv.lock (.venv)
# and the pinned Claude Code CLI (tools/claude-code). Idempotent; needs python3 >= 3.11
# and Node.js/npm (only to install the CLI).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
ensure_uv
"$UV" sync --locked --quiet "$@"
if ! tools/claude-code/node_modules/.bin/claude --version >/dev/null 2>&1; then
	npm ci --prefix tools/claude-code --no-audit --no-fund --loglevel=error
fi
echo "claude-runner: $(.venv/bin/claude-runner --version | cut -d' ' -f2)," \
	"Claude Code CLI: $(tools/claude-code/node_modules/.bin/claude --version)"
