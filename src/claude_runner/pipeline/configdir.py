"""The tasks' Claude config dirs: seeded from the user's config without putting an API key
on disk, and scrubbed of every credential when the run is over.

Each concurrency slot of a stage has its own ``CLAUDE_CONFIG_DIR`` (concurrent CLIs
corrupt a shared ``.claude.json``), seeded from the user's config (``$CLAUDE_CONFIG_DIR``,
else ``~/.claude/`` and ``~/.claude.json``): settings, CLAUDE.md, agents/commands/skills
and the onboarding/account keys of the global config.

What the pinned CLI writes there during a headless run (measured against the stand-in
API): ``.claude.json`` (it adds machineID, userID, first start time, plugin usage and
keeps every key it found, ``primaryApiKey`` included), ``backups/.claude.json.backup.<ms>``
(a copy of it before each change), ``projects/<cwd>/<session>.jsonl`` (the transcript:
every tool's output, so any secret a tool printed), ``projects/<cwd>/<session>/
tool-results/*.txt`` (the full output of a tool whose output was too long to show),
``plugins/store/*.json``, and ``.credentials.json`` when it logs in with OAuth (rewritten
when it refreshes the tokens).

It takes the first credential of: ``ANTHROPIC_API_KEY``, ``CLAUDE_CODE_OAUTH_TOKEN``
(environment), ``.credentials.json`` (OAuth login), ``primaryApiKey`` (``.claude.json``).
So the runner:

- never writes ``primaryApiKey`` (nor ``customApiKeyResponses``, which holds the last 20
  characters of approved keys): when it is the credential in effect it goes to the
  agents' environment as ``ANTHROPIC_API_KEY`` (``UserConfig.agent_env``), where the
  redaction policy masks it like every secret;
- copies ``.credentials.json`` (mode 0600) only when the OAuth login is the credential in
  effect: those tokens must be a file, since the CLI refreshes them and writes them back;
- ``scrub`` removes all of it after the run: ``.credentials.json``, the CLI's backups,
  credential keys in every JSON file, and whatever the redaction policy masks in every
  other file, so transcripts stay usable for ``--resume`` without the secrets.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from claude_runner.redact import Redactor, StreamMasker, secrets_from_env

# Keys of the user's global config a headless run needs (onboarding, account); the rest
# (project history, caches) stays behind, and so do the credential keys.
_GLOBAL_KEYS = (
    "hasCompletedOnboarding",
    "lastOnboardingVersion",
    "oauthAccount",
    "userID",
    "bypassPermissionsModeAccepted",
    "theme",
)
# Keys that hold a credential or a piece of one, wherever they appear in a JSON file.
CREDENTIAL_KEYS = frozenset(
    {"primaryApiKey", "customApiKeyResponses", "accessToken", "refreshToken", "apiKey"}
)
_CONFIG_FILES = ("settings.json", "settings.local.json", "CLAUDE.md")
_CONFIG_DIRS = ("agents", "commands", "skills")
CREDENTIALS = ".credentials.json"
GLOBAL_CONFIG = ".claude.json"
_BACKUPS = "backups"
# Environment variables the CLI prefers to an OAuth login or a primaryApiKey.
_ENV_CREDENTIALS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
_CHUNK = 1024 * 1024
_JSON_MAX = 64 * _CHUNK  # larger .json files are only masked, not parsed


def user_config_sources(env: Mapping[str, str]) -> tuple[Path, Path]:
    """The user's Claude config directory and global config file, as the CLI finds them."""
    configured = env.get("CLAUDE_CONFIG_DIR")
    if configured:
        base = Path(configured)
        return base, base / GLOBAL_CONFIG
    home = Path(env.get("HOME") or Path.home())
    return home / ".claude", home / GLOBAL_CONFIG


def _read_json(path: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(path.read_bytes())
        if isinstance(loaded, dict):
            return loaded
    return {}


def _credential_strings(node: object, found: dict[str, str], where: str = "") -> None:
    """Every string under a credential key of a JSON value, by its key path."""
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{where}.{key}" if where else str(key)
            if key in CREDENTIAL_KEYS:
                _all_strings(value, found, path)
            else:
                _credential_strings(value, found, path)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _credential_strings(value, found, f"{where}[{i}]")


def _all_strings(node: object, found: dict[str, str], where: str) -> None:
    if isinstance(node, str):
        found[where] = node
    elif isinstance(node, dict):
        for key, value in node.items():
            _all_strings(value, found, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _all_strings(value, found, f"{where}[{i}]")


@dataclass(frozen=True)
class UserConfig:
    """What the runner takes from the user's Claude config, read once per run."""

    source_dir: Path
    seed: dict[str, Any]
    """The keys of the global config written into each slot's ``.claude.json``."""
    oauth: bytes | None
    """The OAuth login to copy (``.credentials.json``), when it is the one in effect."""
    agent_env: dict[str, str]
    """Variables to add to the agents' environment (the ``primaryApiKey``)."""
    secrets: dict[str, str] = field(default_factory=dict)
    """NAME -> value of every credential found, for the redaction policy."""

    @classmethod
    def read(cls, env: Mapping[str, str]) -> UserConfig:
        src_dir, src_global = user_config_sources(env)
        config = _read_json(src_global)
        secrets: dict[str, str] = {}
        _credential_strings(config, secrets)
        oauth: bytes | None = None
        with contextlib.suppress(OSError):
            oauth = (src_dir / CREDENTIALS).read_bytes()
            with contextlib.suppress(ValueError):
                _credential_strings(json.loads(oauth), secrets, "credentials")
        settings_env = _read_json(src_dir / "settings.json").get("env")
        if isinstance(settings_env, dict):  # settings.json may hand the CLI secrets
            strings = {k: v for k, v in settings_env.items() if isinstance(v, str)}
            secrets.update((f"settings.env.{k}", v) for k, v in secrets_from_env(strings).items())
        agent_env: dict[str, str] = {}
        by_env = any(env.get(name) for name in _ENV_CREDENTIALS)
        if by_env:
            oauth = None  # the environment's credential wins: no file needed
        key = config.get("primaryApiKey")
        if isinstance(key, str) and key and oauth is None and not by_env:
            agent_env["ANTHROPIC_API_KEY"] = key
        seed = {k: config[k] for k in _GLOBAL_KEYS if k in config}
        if seed:
            seed.setdefault("hasCompletedOnboarding", True)
        return cls(src_dir, seed, oauth, agent_env, secrets)

    def seed_dir(self, dst: Path, *, credentials: bool = True) -> None:
        """Create and seed ``dst`` (mode 0700); a slot already seeded is left as it is.
        ``credentials=False`` (a rehearsal): not even the OAuth login is copied."""
        try:
            dst.mkdir(parents=True, mode=0o700)
        except FileExistsError:
            return
        for name in _CONFIG_FILES:
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                shutil.copyfile(self.source_dir / name, dst / name)
        for name in _CONFIG_DIRS:
            if (self.source_dir / name).is_dir():
                shutil.copytree(self.source_dir / name, dst / name, symlinks=True)
        if self.oauth is not None and credentials:
            _write_new(dst / CREDENTIALS, self.oauth)
        if self.seed:  # else the CLI creates its own (a file less per slot)
            _write_new(dst / GLOBAL_CONFIG, json.dumps(self.seed).encode())


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def seed_config_dir(dst: Path, env: Mapping[str, str], *, credentials: bool = True) -> None:
    """``UserConfig.read(env).seed_dir(dst)``: a slot's config dir, seeded once."""
    UserConfig.read(env).seed_dir(dst, credentials=credentials)


# --- scrubbing ------------------------------------------------------------------------
def scrub(config_dir: Path, redactor: Redactor) -> list[str]:
    """Remove every credential from ``config_dir``: ``.credentials.json`` and the CLI's
    backups of its config are deleted, credential keys are dropped from every JSON file
    and everything ``redactor`` masks is masked in every other file. Idempotent; a
    missing dir is fine. The agent could write here: nothing is followed (a symlink is
    left, never read through), only regular files are rewritten, each by a new file
    renamed over it, so a hard link to a file outside is never changed. Best effort:
    returns one line per file or directory that could not be scrubbed."""
    problems: list[str] = []
    try:
        top = os.open(config_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except (FileNotFoundError, NotADirectoryError):
        return problems
    except OSError as exc:
        if exc.errno != errno.ELOOP:  # ELOOP: the dir itself was replaced by a symlink
            problems.append(f"cannot scrub {config_dir}: {exc.strerror}")
        return problems

    def walk_error(exc: OSError) -> None:
        problems.append(f"cannot scrub {config_dir}/{exc.filename}: {exc.strerror}")

    try:
        for dirpath, _dirs, files, dir_fd in os.fwalk(".", dir_fd=top, onerror=walk_error):
            for name in files:
                try:
                    _scrub_file(dir_fd, name, redactor, top_level=dirpath == ".")
                except OSError as exc:
                    where = os.path.normpath(os.path.join(config_dir, dirpath, name))
                    problems.append(f"cannot scrub {where}: {exc.strerror}")
        with contextlib.suppress(OSError):  # empty now, unless the agent put more there
            os.rmdir(_BACKUPS, dir_fd=top)
    finally:
        os.close(top)
    return problems


def _scrub_file(dir_fd: int, name: str, redactor: Redactor, *, top_level: bool) -> None:
    if (top_level and name == CREDENTIALS) or name.startswith(GLOBAL_CONFIG + ".backup"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)
        return
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOENT):  # a symlink holds nothing; gone
            return
        raise
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            return
        if name.endswith(".json") and info.st_size <= _JSON_MAX:
            cleaned = _without_credentials(f.read())
            if cleaned is not None:
                _replace(dir_fd, name, [redactor.mask_bytes(cleaned)], info.st_mode)
                return
        # Transcripts can be large: a first pass only looks, a second one rewrites.
        f.seek(0)
        masker = redactor.stream()
        for _ in _masked(f, masker):
            pass
        if masker.masks:
            f.seek(0)
            _replace(dir_fd, name, _masked(f, redactor.stream()), info.st_mode)


def _masked(f: BinaryIO, masker: StreamMasker) -> Iterator[bytes]:
    while chunk := f.read(_CHUNK):
        yield masker.feed(chunk)
    yield masker.close()


def _without_credentials(data: bytes) -> bytes | None:
    """A JSON document without its credential keys; None when it is not JSON or has none."""
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    found: dict[str, str] = {}
    _credential_strings(doc, found)
    if not found and not _has_credential_key(doc):
        return None
    return json.dumps(_drop_credentials(doc), indent=2).encode()


def _has_credential_key(node: object) -> bool:
    if isinstance(node, dict):
        return any(k in CREDENTIAL_KEYS or _has_credential_key(v) for k, v in node.items())
    if isinstance(node, list):
        return any(_has_credential_key(v) for v in node)
    return False


def _drop_credentials(node: object) -> object:
    if isinstance(node, dict):
        return {k: _drop_credentials(v) for k, v in node.items() if k not in CREDENTIAL_KEYS}
    if isinstance(node, list):
        return [_drop_credentials(v) for v in node]
    return node


def _replace(dir_fd: int, name: str, parts: Iterable[bytes], mode: int) -> None:
    tmp = ".scrub-tmp"  # short: any name the agent chose still fits beside it
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dir_fd)
    fd = os.open(
        tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, stat.S_IMODE(mode), dir_fd=dir_fd
    )
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                f.write(part)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
