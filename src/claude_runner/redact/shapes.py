"""Token shapes masked even when the runner was not told the value.

Chosen: the credentials an agent in a CI job is likely to print (its own GitHub and
Anthropic tokens, then the cloud, registry and chat tokens a build environment carries)
whose format starts with a fixed, documented prefix, so a match is a token with near
certainty and ordinary text passes byte-identical. Left out on purpose: shapes without a
prefix (an AWS secret access key is 40 base64 characters, a bare hex API key is any hash),
which would mask commit ids and checksums; those are masked only as known values.

Each shape is an anchor (a literal prefix, found by the automaton in ``engine``) followed
by a body regex matched right after it. A body is bounded (``max_body``), so a stream
needs to hold back only that much to decide, and ``alphabet`` lists every byte a body may
contain: any other byte ends it, which lets a stream release text up to such a byte at
once. ``boundary`` shapes have short anchors that also occur inside words (``laughs_``
contains ``ghs_``): they match only at the start of a word, where a JSON, C or URL escape
(``\\n``, ``\\u000a``, ``\\x0a``, ``%0A``) right before the anchor also counts as a word
start, so ``x\\nghp_...`` inside a JSON string is still a token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Shape:
    name: str
    anchors: tuple[bytes, ...]
    body: bytes
    """Regex matched right after the anchor; the token is anchor + match."""
    alphabet: bytes
    """Regex character-class content: every byte the body may contain."""
    max_body: int
    """The longest body the regex can match."""
    boundary: bool = False

    def compiled(self) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
        """The body regex, and a regex finding a byte the body cannot contain."""
        return re.compile(self.body), re.compile(b"[^" + self.alphabet + b"]")


_B62 = b"A-Za-z0-9"
_URLSAFE = b"A-Za-z0-9_\\-"


def _run(
    name: str, anchors: tuple[bytes, ...], alphabet: bytes, low: int, high: int = 255, **kw: bool
) -> Shape:
    """A token that is its anchor followed by ``low``..``high`` bytes of ``alphabet``."""
    body = b"[" + alphabet + b"]{%d,%d}" % (low, high)
    return Shape(name, anchors, body, alphabet, high, **kw)


# A PEM private key: the header, then base64 lines (real newlines, or \n / \r escapes
# inside a JSON string) up to the footer; a key cut short is masked as far as it goes.
_PEM_BODY = (
    rb"[ A-Z0-9]{1,40}PRIVATE KEY(?: BLOCK)?-----"
    rb"(?:[A-Za-z0-9+/= \t\r\n]|\\[nrt]){0,8192}"
    rb"(?:-----END[ A-Z0-9]{1,40}PRIVATE KEY(?: BLOCK)?-----)?"
)

_PEM_MAX = 62 + 2 * 8192 + 70  # header, body (all escapes), footer

SHAPES: tuple[Shape, ...] = (
    # GitHub: classic, OAuth, user-to-server, server-to-server and refresh tokens carry
    # 36 base62 characters; 20 also catches a token cut short.
    _run("github-token", (b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_"), _B62, 20, boundary=True),
    _run("github-pat", (b"github_pat_",), b"A-Za-z0-9_", 8),
    # Anthropic API keys (sk-ant-api03-...), OAuth tokens (sk-ant-oat01-...), admin keys.
    _run("anthropic-key", (b"sk-ant-",), _URLSAFE, 8),
    _run("openai-key", (b"sk-proj-", b"sk-svcacct-", b"sk-admin-"), _URLSAFE, 20),
    _run("aws-access-key-id", (b"AKIA", b"ASIA"), b"A-Z0-9", 16, 16, boundary=True),
    _run("slack-token", tuple(b"xox%c-" % c for c in b"abeoprs"), b"A-Za-z0-9\\-", 10),
    _run("gitlab-token", (b"glpat-",), _URLSAFE, 20),
    _run("npm-token", (b"npm_",), _B62, 36, boundary=True),
    _run("pypi-token", (b"pypi-AgEIcHlwaS5vcmc",), _URLSAFE, 50, 1024),
    _run("google-api-key", (b"AIza",), _URLSAFE, 35, 35, boundary=True),
    _run("huggingface-token", (b"hf_",), _B62, 34, boundary=True),
    _run("stripe-key", (b"sk_live_", b"rk_live_"), _B62, 20),
    _run("docker-hub-token", (b"dckr_pat_",), _URLSAFE, 20),
    # A JSON Web Token: base64url header, payload, signature. The header is a JSON object
    # whose first key is alg, typ, kid or enc ({"alg" is eyJhbGci); a bare "eyJ" anchor
    # would stop at every base64-encoded JSON and slow the scan of all output.
    Shape(
        "jwt",
        (b"eyJhbGci", b"eyJ0eXAi", b"eyJraWQi", b"eyJlbmMi"),
        rb"[A-Za-z0-9_-]{0,1024}\.eyJ[A-Za-z0-9_-]{4,4096}\.[A-Za-z0-9_-]{0,1024}",
        b"A-Za-z0-9_\\-.",
        1024 + 4 + 4096 + 1 + 1024,
        boundary=True,
    ),
    Shape("private-key", (b"-----BEGIN",), _PEM_BODY, b"A-Za-z0-9+/= \t\r\n\\\\\\-", _PEM_MAX),
)
