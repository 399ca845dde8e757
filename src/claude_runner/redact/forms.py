"""The byte strings under which a known secret value can appear in output.

A value is masked as it is, as it appears inside a JSON string (the CLI's stream-json,
events, result.json: a value with quotes, backslashes, control or non-ASCII characters
is written escaped), percent-encoded (URLs) and base64-encoded in each of the three
alignments (``http.extraheader=AUTHORIZATION: basic base64(x-access-token:TOKEN)`` in a
checkout's ``.git/config``): for base64 only the characters that depend on the value
alone are kept, so the form is found whatever precedes or follows the value.

Output cut mid-way (the CLI shortens long tool output, the runner keeps the last
stderr bytes as a failure reason) leaves a piece of a value. Pieces that start or end
a value are masked when at least ``threshold(len)`` bytes long: half the value, but at
least 6 and at most 16 bytes. 16 bytes of a 40-character GitHub token are its public
``ghp_`` prefix and 12 of 36 random characters, leaving 24 (143 bits) hidden; of a
100-character Anthropic key, its public ``sk-ant-api03-`` prefix and 3 more. Shorter
values keep at least half hidden. A piece from the middle of a value (cut at both
ends) is not recognised: no output of the CLI or the runner cuts that way.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

MIN_SECRET = 4
"""Shorter values are not masked at all: they would mask ordinary words."""
_PIECE_MIN = 6
_PIECE_MAX = 16
_BASE64_MIN = 12


def threshold(length: int) -> int:
    """The shortest start or end piece of a ``length``-byte form that is masked."""
    if length <= _PIECE_MIN:
        return length
    return min(_PIECE_MAX, max(_PIECE_MIN, (length + 1) // 2))


def _utf8(text: str) -> bytes:
    # Values from os.environ carry undecodable bytes as surrogate escapes: give them back.
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _base64_forms(raw: bytes) -> list[bytes]:
    """The part of base64(prefix + raw + suffix) fixed by ``raw``, for each alignment."""
    forms = []
    for pad, skip in ((0, 0), (1, 2), (2, 3)):
        encoded = base64.b64encode(b"\0" * pad + raw)
        forms.append(encoded[skip : (8 * (pad + len(raw))) // 6])
    return forms


def text_forms(value: str) -> list[bytes]:
    """Forms in which a piece of the value is masked too (see the module docstring)."""
    raw = _utf8(value)
    found = [raw]
    for ascii_only in (True, False):
        escaped = _utf8(json.dumps(value, ensure_ascii=ascii_only)[1:-1])
        found += [escaped, escaped.replace(b"/", b"\\/")]
    found.append(quote(raw, safe="").encode())
    return _unique(found)


def encoded_forms(value: str) -> list[bytes]:
    """Forms masked only from their start (a cut base64 form is not worth an anchor
    each way: every anchor slows the scan of all output). None for values under 12
    bytes, whose few base64 characters would turn up in unrelated base64 data."""
    raw = _utf8(value)
    return _unique(_base64_forms(raw)) if len(raw) >= _BASE64_MIN else []


def _unique(forms: list[bytes]) -> list[bytes]:
    return [f for i, f in enumerate(forms) if len(f) >= MIN_SECRET and f not in forms[:i]]
