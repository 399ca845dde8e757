#!/bin/sh
# Install Debian's Docker engine and start dockerd in the background, for tests and CI.
#
# Idempotent; run as root on Debian 12. Steps:
#   1. apt-get install docker.io (+ iptables, jq, curl, sudo, iproute2) where missing;
#   2. install a runc wrapper as the daemon's default runtime: it drops, from the OCI
#      config (and from `runc exec --process` files), the capabilities missing from the
#      host's bounding set. Some VMs lack CAP_SYS_RESOURCE there, and `--privileged` asks
#      runc for every capability, so it fails with "unable to apply caps" (moby#42906).
#      Where nothing is missing the wrapper just execs runc;
#   3. start dockerd (log: $DOCKERD_LOG) unless the socket already answers, and wait for
#      `_ping` up to $DOCKERD_WAIT_SEC seconds;
#   4. print which docker client is used. A newer client earlier on PATH may shadow
#      Debian's; both talk to the daemon, but BuildKit (DOCKER_BUILDKIT=1, no `# syntax=`
#      line) only works through Debian's /usr/bin/docker, which has no buildx.
#
# Environment: DOCKERD_LOG (default /var/log/dockerd.log), DOCKERD_WAIT_SEC (default 60).
set -eu

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
DOCKERD_WAIT_SEC=${DOCKERD_WAIT_SEC:-60}
WRAPPER=/usr/local/sbin/docker-runc-capbnd
RUNTIME_NAME=runc-capbnd
DAEMON_JSON=/etc/docker/daemon.json
DEBIAN_DOCKER=/usr/bin/docker
SOCKET=/var/run/docker.sock

say() { printf 'install-docker-engine: %s\n' "$*"; }
die() { printf 'install-docker-engine: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (try: sudo $0)"
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script targets Debian 12"

# --- 1. packages -------------------------------------------------------------------
missing_pkgs=""
[ -x /usr/sbin/dockerd ] || missing_pkgs="$missing_pkgs docker.io"
command -v iptables >/dev/null 2>&1 || missing_pkgs="$missing_pkgs iptables"
command -v jq >/dev/null 2>&1 || missing_pkgs="$missing_pkgs jq"
command -v curl >/dev/null 2>&1 || missing_pkgs="$missing_pkgs curl"
# sudo: the non-root DinD path (the runner starts dockerd through `sudo -n`) is tested;
# ip: the DinD tests give the inner daemon a network namespace of its own.
command -v sudo >/dev/null 2>&1 || missing_pkgs="$missing_pkgs sudo"
command -v ip >/dev/null 2>&1 || missing_pkgs="$missing_pkgs iproute2"
if [ -n "$missing_pkgs" ]; then
    say "installing:$missing_pkgs"
    export DEBIAN_FRONTEND=noninteractive
    # Update the index only when it was never fetched or installing from it fails.
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    if ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 \
        || ! apt-get install -y --no-install-recommends $missing_pkgs; then
        apt-get update
        apt-get install -y --no-install-recommends $missing_pkgs
    fi
fi
[ -x /usr/sbin/dockerd ] || die "dockerd still missing after installing docker.io"
REAL_RUNC=$(command -v runc) || die "runc not found (it comes with docker.io)"

# --- 2. the capability-filtering runc wrapper --------------------------------------
tmp_wrapper=$(mktemp)
cat >"$tmp_wrapper" <<'WRAPPER_EOF'
#!/bin/sh
# runc wrapper (installed by scripts/install-docker-engine.sh): removes, from the OCI
# config of `create`/`run` and from the process file of `exec`, every capability that
# the host's bounding set lacks, then execs the real runc with the same arguments.
set -eu
REAL_RUNC=@REAL_RUNC@

# Capability names by number (linux/capability.h, 0..40).
CAPS="CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER
SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE
SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP
MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF
CHECKPOINT_RESTORE"

bnd=$(sed -n 's/^CapBnd:[[:space:]]*//p' /proc/self/status)
missing=""
n=0
for cap in $CAPS; do
    if [ $(( (0x$bnd >> n) & 1 )) -eq 0 ]; then
        missing="$missing\"CAP_$cap\","
    fi
    n=$((n + 1))
done
[ -n "$missing" ] || exec "$REAL_RUNC" "$@"
drop="[${missing%,}]"

# Find the command and its --bundle / --process argument (global options come first).
cmd="" bundle="." process=""
prev=""
for arg in "$@"; do
    case "$prev" in
        --bundle|-b) bundle=$arg ;;
        --process|-p) process=$arg ;;
    esac
    case "$arg" in
        --bundle=*) bundle=${arg#--bundle=} ;;
        --process=*) process=${arg#--process=} ;;
    esac
    if [ -z "$cmd" ]; then
        case "$arg" in
            create|run|exec) cmd=$arg ;;
            -*) ;;
            *) case "$prev" in --root|--log|--log-format|--criu) ;; *) cmd=other ;; esac ;;
        esac
    fi
    prev=$arg
done

filter() { # $1: JSON file, $2: jq path of the capabilities object
    [ -f "$1" ] || return 0
    tmp="$1.capbnd.$$"
    jq --argjson drop "$drop" \
        "if $2 then $2 |= map_values(if type == \"array\" then map(select(. as \$c | \$drop | index(\$c) | not)) else . end) else . end" \
        "$1" >"$tmp" && mv "$tmp" "$1"
}
case "$cmd" in
    create|run) filter "$bundle/config.json" ".process.capabilities" ;;
    exec) [ -z "$process" ] || filter "$process" ".capabilities" ;;
esac
exec "$REAL_RUNC" "$@"
WRAPPER_EOF
sed -i "s#@REAL_RUNC@#$REAL_RUNC#" "$tmp_wrapper"
if ! cmp -s "$tmp_wrapper" "$WRAPPER"; then
    install -m 0755 "$tmp_wrapper" "$WRAPPER"
    say "installed runc wrapper $WRAPPER (real runc: $REAL_RUNC)"
fi
rm -f "$tmp_wrapper"

# Register it as the default runtime, keeping any other daemon settings.
mkdir -p "$(dirname "$DAEMON_JSON")"
[ -s "$DAEMON_JSON" ] || echo '{}' >"$DAEMON_JSON"
tmp_json=$(mktemp)
jq --arg name "$RUNTIME_NAME" --arg path "$WRAPPER" \
    '.runtimes[$name] = {path: $path} | ."default-runtime" = $name' \
    "$DAEMON_JSON" >"$tmp_json" || die "$DAEMON_JSON is not valid JSON"
daemon_json_changed=0
if ! cmp -s "$tmp_json" "$DAEMON_JSON"; then
    cat "$tmp_json" >"$DAEMON_JSON"
    daemon_json_changed=1
    say "registered $RUNTIME_NAME as default-runtime in $DAEMON_JSON"
fi
rm -f "$tmp_json"

# --- 3. dockerd --------------------------------------------------------------------
ping() { curl -fsS --max-time 2 --unix-socket "$SOCKET" http://localhost/_ping >/dev/null 2>&1; }

if ping; then
    if [ "$daemon_json_changed" -eq 1 ]; then
        # runtimes and default-runtime are reloadable settings.
        pkill -HUP -x dockerd || die "a daemon answers on $SOCKET but no dockerd to reload"
        say "dockerd already running: reloaded its configuration"
    else
        say "dockerd already running"
    fi
else
    # Zombies do not count: a killed daemon whose parent has not reaped it yet.
    if pgrep -x --runstates D,R,S,T dockerd >/dev/null 2>&1; then
        die "a dockerd process exists but $SOCKET does not answer; see $DOCKERD_LOG"
    fi
    # A previous daemon may have left its netns mount behind; /run/docker is rebuilt.
    if [ -d /run/docker/netns ]; then
        for m in /run/docker/netns/*; do
            mountpoint -q "$m" 2>/dev/null && umount "$m"
        done
    fi
    rm -f /var/run/docker.pid
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    say "starting dockerd (log: $DOCKERD_LOG)"
    setsid nohup /usr/sbin/dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
    waited=0
    until ping; do
        if ! kill -0 $! 2>/dev/null; then
            tail -n 20 "$DOCKERD_LOG" >&2
            die "dockerd exited during start-up (log above, full log: $DOCKERD_LOG)"
        fi
        [ "$waited" -lt $((DOCKERD_WAIT_SEC * 10)) ] \
            || die "dockerd did not answer _ping within ${DOCKERD_WAIT_SEC}s; see $DOCKERD_LOG"
        sleep 0.1
        waited=$((waited + 1))
    done
    say "dockerd ready"
fi

# --- 4. the client -----------------------------------------------------------------
[ -x "$DEBIAN_DOCKER" ] || die "$DEBIAN_DOCKER missing (package docker.io)"
server=$("$DEBIAN_DOCKER" version --format '{{.Server.Version}}') \
    || die "$DEBIAN_DOCKER cannot talk to the daemon"
debian_client=$("$DEBIAN_DOCKER" version --format '{{.Client.Version}}')
runtime=$("$DEBIAN_DOCKER" info --format '{{.DefaultRuntime}}')
say "daemon $server, default runtime $runtime"
on_path=$(command -v docker || true)
if [ "$on_path" = "$DEBIAN_DOCKER" ]; then
    say "docker client: $DEBIAN_DOCKER ($debian_client), first on PATH"
else
    say "docker client: $DEBIAN_DOCKER ($debian_client); note: PATH resolves docker to" \
        "${on_path:-nothing} first. Use $DEBIAN_DOCKER with DOCKER_BUILDKIT=1 for builds" \
        "(BuildKit needs Debian's client and a Dockerfile without a '# syntax=' line)."
fi
