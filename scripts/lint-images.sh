#!/usr/bin/env bash
# Lint the image sources: hadolint over every tracked Dockerfile (rules in
# docker/hadolint.yaml), shellcheck over every tracked shell script (*.sh, and files
# under scripts/, docker/ and .ci/ whose first line names sh or bash).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

command -v shellcheck >/dev/null || {
	echo "lint-images: shellcheck not found: apt-get install -y shellcheck" >&2
	exit 1
}
ensure_uv

mapfile -t dockerfiles < <(git ls-files -- 'Dockerfile' '*/Dockerfile' '*.Dockerfile')
scripts=()
while IFS= read -r f; do
	case "$f" in
	*.sh) scripts+=("$f") ;;
	*) head -n1 "$f" 2>/dev/null | grep -Eq '^#!.*\b(ba)?sh\b' && scripts+=("$f") ;;
	esac
done < <(git ls-files -- '*.sh' 'scripts/*' 'docker/*' '.ci/*')

status=0
if [ "${#dockerfiles[@]}" -gt 0 ]; then
	"$UV" run --locked hadolint --config docker/hadolint.yaml "${dockerfiles[@]}" || status=1
fi
if [ "${#scripts[@]}" -gt 0 ]; then
	shellcheck --external-sources "${scripts[@]}" || status=1
fi
echo "lint-images: ${#dockerfiles[@]} Dockerfiles (hadolint), ${#scripts[@]} shell scripts (shellcheck):" \
	"$([ "$status" = 0 ] && echo clean || echo FINDINGS ABOVE)"
exit "$status"
