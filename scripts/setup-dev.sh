#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian 12 machine (idempotent):
# Debian packages, the Python environment from uv.lock, the pinned Claude Code CLI,
# and (as root) Docker's engine, started in the background.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_packages=(git tmux util-linux procps debootstrap shellcheck)
command -v node >/dev/null && command -v npm >/dev/null || apt_packages+=(nodejs npm)
missing=()
for pkg in "${apt_packages[@]}"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v uv >/dev/null || [ "$(uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
	python3 -m pip install --quiet --disable-pip-version-check "uv==${UV_VERSION}"
fi
uv sync --locked --quiet

# The Claude Code CLI the integration tests drive, pinned by tools/claude-code/package-lock.json.
if ! tools/claude-code/node_modules/.bin/claude --version >/dev/null 2>&1; then
	npm ci --prefix tools/claude-code --no-audit --no-fund --loglevel=error
fi
tools/claude-code/node_modules/.bin/claude --version

if [ "$(id -u)" -eq 0 ]; then
	bash scripts/install-docker-engine.sh
else
	echo "setup-dev: not root: Docker's engine not installed; docker/root tests will skip" >&2
fi
