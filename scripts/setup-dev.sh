#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian 12 machine (idempotent):
# Debian packages, the Python environment with dev tools, the pinned Claude Code CLI,
# the pinned JSON Schema validator (tools/schema-check), and (as root) Docker's engine,
# started in the background.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# xfsprogs: the reflink tests make an XFS on a loop device; python3: tests run Debian's
# interpreter as an unprivileged user (the runner's own may be unreadable to it).
apt_packages=(git tmux util-linux procps debootstrap shellcheck chromium xfsprogs python3)
command -v node >/dev/null && command -v npm >/dev/null || apt_packages+=(nodejs npm)
missing=()
for pkg in "${apt_packages[@]}"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

bash scripts/setup.sh
# Ajv, the JavaScript JSON Schema validator the tests check the shipped schemas with
npm ci --prefix tools/schema-check --no-audit --no-fund --loglevel=error

if [ "$(id -u)" -eq 0 ]; then
	bash scripts/install-docker-engine.sh
else
	echo "setup-dev: not root: Docker's engine not installed; docker/root tests will skip" >&2
fi
