#!/usr/bin/env bash
# Build one image: docker/build.sh DOCKERFILE TAG [NAME=VALUE ...]
# Each NAME=VALUE with a non-empty VALUE becomes --build-arg NAME=VALUE; empty ones are
# dropped so that the Dockerfile's defaults apply (the Taskfile passes every variable).
#
# EXTRA_CA_DIR (environment): a directory whose *.crt files are added to the image's
# trust store. They are copied into a temporary copy of the build context under
# docker/extra-ca/, never into the checkout.
# DOCKER (environment): the docker client (default: docker).
set -euo pipefail

[ "$#" -ge 2 ] || { echo "usage: docker/build.sh DOCKERFILE TAG [NAME=VALUE ...]" >&2; exit 2; }
dockerfile=$1 tag=$2
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
DOCKER=${DOCKER:-docker}

args=()
for pair in "$@"; do
	case "$pair" in
	*=) ;;
	[A-Z]*=*) args+=(--build-arg "$pair") ;;
	*) echo "docker/build.sh: '$pair' is not NAME=VALUE" >&2; exit 2 ;;
	esac
done

context=$root
if [ -n "${EXTRA_CA_DIR:-}" ]; then
	shopt -s nullglob
	certs=("$EXTRA_CA_DIR"/*.crt)
	[ "${#certs[@]}" -gt 0 ] || { echo "docker/build.sh: no *.crt in EXTRA_CA_DIR=$EXTRA_CA_DIR" >&2; exit 2; }
	context=$(mktemp -d /tmp/claude-image-context.XXXXXX)
	trap 'rm -rf "$context"' EXIT
	# Only what .dockerignore lets through (its `!path` lines) is copied; the daemon
	# then applies .dockerignore itself as usual.
	cp "$root/.dockerignore" "$context/"
	while IFS= read -r path; do
		[ -e "$root/$path" ] && (cd "$root" && cp -a --parents "$path" "$context/")
	done < <(sed -n 's|^!\(.*[^/]\)/*$|\1|p' "$root/.dockerignore")
	cp -- "${certs[@]}" "$context/docker/extra-ca/"
	echo "docker/build.sh: ${#certs[@]} extra CA certificate(s) from $EXTRA_CA_DIR" >&2
fi

"$DOCKER" build -f "$root/$dockerfile" -t "$tag" "${args[@]}" "$context"
