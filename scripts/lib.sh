# Shared by the set-up and test scripts: find (or install) the pinned uv.
# shellcheck shell=bash
UV_VERSION=0.13.9

ensure_uv() {
	if command -v uv >/dev/null && [ "$(uv --version | cut -d' ' -f2)" = "$UV_VERSION" ]; then
		export UV; UV=$(command -v uv)
		return
	fi
	# A private venv works everywhere, including Pythons that refuse `pip install`
	# outside a virtual environment (PEP 668).
	if [ ! -x .tools/uv/bin/uv ] || [ "$(.tools/uv/bin/uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
		python3 -m venv .tools/uv
		.tools/uv/bin/pip install --quiet --disable-pip-version-check "uv==${UV_VERSION}"
	fi
	export UV=$PWD/.tools/uv/bin/uv
}
