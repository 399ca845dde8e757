"""Finding secrets in bytes, in one piece or as a stream, with one result either way.

**Model.** Every rule starts at an *anchor*, a literal: the start or end piece of a
known secret's form (``forms.py``) or a token shape's prefix (``shapes.py``). One
Aho-Corasick automaton (Rust, with a SIMD prefilter) finds every anchor in a single pass
over the data; data without an anchor, nearly all output, costs that pass and nothing
else. At each anchor occurrence its rules give an interval to mask:

- the start piece of a form: from the anchor forward as far as the data equals the form;
- the end piece: from the anchor backward as far as the data equals the form;
- a shape: the anchor plus what the shape's body matches right after it.

The output replaces each union of overlapping or adjacent intervals with ``***``.

**Streams.** An interval depends only on bytes near its anchor: a bounded number
before it (an end piece reaches back at most its form's length) and after it (a form's
length, a shape's ``max_body``). So ``StreamMasker`` can release a byte once no anchor
still unseen or undecided can reach it, and holds back only that tail: memory is bounded
whatever the line lengths, and its output equals ``mask`` of the whole input for any
chunking. The tail is as short as the data allows: the longest end of the data that
begins an anchor, plus, before an undecided anchor, the longest end that occurs inside a
form (an end piece could reach back over it). Text ending in a newline, space or quote
is released whole, so a stream is not held back line by line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from re import Pattern
from typing import Final

import ahocorasick_rs

from claude_runner.redact.forms import encoded_forms, text_forms, threshold
from claude_runner.redact.shapes import SHAPES, Shape

MASK: Final = b"***"
# Bytes kept before the release point for a shape's word-start test (\uXXXX is 6).
_CONTEXT = 8
_FAST_HELD = 4096  # StreamMasker.feed copies a held tail up to this long
_WORD = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPE_LETTERS = frozenset(b"nrtbfv0")


class _More:
    """A rule's answer when the data seen so far cannot decide it."""


MORE: Final = _More()
Interval = tuple[int, int]
Outcome = Interval | None | _More


def _word_start(buf: bytes, q: int) -> bool:
    """Whether an anchor at ``q`` starts a word: no letter or digit before it, unless that
    character ends an escape (``\\n``, ``%0A``, ``\\x0a``, ``\\u000a``)."""
    if q == 0 or buf[q - 1] not in _WORD:
        return True
    if q >= 2 and buf[q - 2] == 0x5C and buf[q - 1] in _ESCAPE_LETTERS:
        return True
    if q >= 3 and buf[q - 3] == 0x25 and buf[q - 2] in _HEX and buf[q - 1] in _HEX:
        return True
    if q >= 4 and buf[q - 4] == 0x5C and buf[q - 3] in b"xX" and _hex(buf, q - 2, q):
        return True
    return q >= 6 and buf[q - 6] == 0x5C and buf[q - 5] == 0x75 and _hex(buf, q - 4, q)


def _hex(buf: bytes, start: int, end: int) -> bool:
    return all(buf[i] in _HEX for i in range(start, end))


class _StartPiece:
    """A form's start piece: masks forward while the data equals the form."""

    __slots__ = ("form", "name", "piece")
    secret = True

    def __init__(self, name: str, form: bytes, piece: int) -> None:
        self.name, self.form, self.piece = name, form, piece

    def at(self, buf: bytes, q: int, closed: bool) -> Outcome:
        form = self.form
        if buf.startswith(form, q):
            return (q, q + len(form))
        k, limit = self.piece, min(len(form), len(buf) - q)
        while k < limit and buf[q + k] == form[k]:
            k += 1
        if q + k == len(buf) and not closed:
            return MORE  # the data may go on matching
        return (q, q + k)


class _EndPiece:
    """A form's end piece: masks backward while the data equals the form."""

    __slots__ = ("form", "name", "piece")
    secret = True

    def __init__(self, name: str, form: bytes, piece: int) -> None:
        self.name, self.form, self.piece = name, form, piece

    def at(self, buf: bytes, q: int, closed: bool) -> Outcome:
        form, p = self.form, q
        j = len(form) - self.piece
        while j > 0 and p > 0 and buf[p - 1] == form[j - 1]:
            p -= 1
            j -= 1
        return (p, q + self.piece)


class _ShapeRule:
    """A token shape at one of its anchors."""

    __slots__ = ("body", "boundary", "max_body", "name", "skip", "stop")
    secret = False

    def __init__(self, shape: Shape, anchor: bytes) -> None:
        self.name, self.skip = shape.name, len(anchor)
        self.body: Pattern[bytes]
        self.stop: Pattern[bytes]
        self.body, self.stop = shape.compiled()
        self.max_body, self.boundary = shape.max_body, shape.boundary

    def at(self, buf: bytes, q: int, closed: bool) -> Outcome:
        if self.boundary and not _word_start(buf, q):
            return None
        x = q + self.skip
        # The body cannot read past a byte it cannot contain, nor past max_body bytes.
        if not closed and len(buf) - x < self.max_body and self.stop.search(buf, x) is None:
            return MORE
        m = self.body.match(buf, x)
        return (q, m.end()) if m else None


Rule = _StartPiece | _EndPiece | _ShapeRule


class Engine:
    """A compiled policy (immutable: one is shared by every thread and stream).

    ``secrets``: (NAME, value) pairs; ``shapes``: the token shapes to mask."""

    def __init__(
        self, secrets: Iterable[tuple[str, str]], shapes: Sequence[Shape] = SHAPES
    ) -> None:
        rules: dict[bytes, list[Rule]] = {}

        def add(anchor: bytes, rule: Rule) -> None:
            rules.setdefault(anchor, []).append(rule)

        # Forms with an end piece, and how far before its anchor each can reach.
        self.reaching: list[tuple[bytes, int]] = []
        for name, value in secrets:
            for form in text_forms(value):
                piece = threshold(len(form))
                add(form[:piece], _StartPiece(name, form, piece))
                if piece < len(form):
                    add(form[-piece:], _EndPiece(name, form, piece))
                    self.reaching.append((form, len(form) - piece))
            for form in encoded_forms(value):
                add(form[: threshold(len(form))], _StartPiece(name, form, threshold(len(form))))
        for shape in shapes:
            for anchor in shape.anchors:
                add(anchor, _ShapeRule(shape, anchor))
        self.anchors = list(rules)
        self.rules = [rules[a] for a in self.anchors]
        self.longest = max((len(a) for a in self.anchors), default=0)
        # A chunk at least this long decides its own release point (see StreamMasker.feed).
        self.margin = self.longest + max((most for _, most in self.reaching), default=0)
        self.margin += _CONTEXT + 1
        self._proper_prefixes = {a[:k] for a in self.anchors for k in range(1, len(a))}
        self._first = self._every = None
        if self.anchors:
            self._first = ahocorasick_rs.BytesAhoCorasick(
                self.anchors, matchkind=ahocorasick_rs.MatchKind.LeftmostFirst
            )
            self._every = ahocorasick_rs.BytesAhoCorasick(self.anchors)

    def unseen(self, buf: bytes) -> int:
        """Where an anchor not yet in ``buf`` in full may start: before the longest end of
        ``buf`` that begins an anchor."""
        end = len(buf)
        for k in range(min(self.longest - 1, end), 0, -1):
            if buf[end - k :] in self._proper_prefixes:
                return end - k
        return end

    def reach(self, buf: bytes, at: int) -> int:
        """How far before ``at`` an end piece whose anchor starts at ``at`` or later can
        reach: the longest end of ``buf[:at]`` found inside a form, within that form's
        reach. (Every shorter end of a form's substring is one too: binary search.)"""
        best = 0
        for form, most in self.reaching:
            low, high = best, min(most, at)
            if high <= best or buf[at - best - 1 : at] not in form:
                continue
            low += 1
            while low < high:
                mid = (low + high + 1) // 2
                if buf[at - mid : at] in form:
                    low = mid
                else:
                    high = mid - 1
            best = low
        return best

    def any_anchor(self, data: bytes) -> bool:
        """The fast test: whether ``data`` holds an anchor at all."""
        return self._first is not None and bool(self._first.find_matches_as_indexes(data))

    def occurrences(self, buf: bytes, start: int) -> list[tuple[int, int]]:
        """Every anchor occurrence at or after ``start``, overlapping ones included, as
        (position, anchor index), in order of position."""
        if self._first is None or self._every is None:
            return []
        view = memoryview(buf)[start:] if start else buf
        found: list[tuple[int, int]] = []
        for idx, s, e in self._first.find_matches_as_indexes(view):
            found.append((start + s, idx))
            if e - s > 1:
                # Leftmost-first reports no occurrence starting inside this one (nor
                # another anchor starting at the same place): look for those here.
                window = memoryview(buf)[start + s : start + e - 1 + self.longest]
                for idx2, s2, _ in self._every.find_matches_as_indexes(window, overlapping=True):
                    if s2 < e - s and (s2, idx2) != (0, idx):
                        found.append((start + s + s2, idx2))
        found.sort()
        return found


class StreamMasker:
    """Masks a byte stream: ``feed(chunk)`` returns the bytes safe to write now,
    ``close()`` the rest. Their concatenation equals ``mask`` of the whole stream for
    any chunking. ``names`` collects the NAMEs of the known secrets seen (pieces too)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._buf = b""
        self._base = 0  # stream offset of _buf[0]
        self._released = 0  # stream offset up to which output was returned
        self._scanned = 0  # every anchor occurrence before this offset is decided
        self._masked_to = -1  # end of the last mask returned
        self._intervals: set[Interval] = set()
        self.names: set[str] = set()
        self.masks = 0  # how many masks were returned

    @property
    def held(self) -> int:
        """How many bytes are kept (held back, or context for the next chunk)."""
        return len(self._buf)

    def feed(self, chunk: bytes) -> bytes:
        """The bytes of the stream up to ``chunk`` that are safe to write now."""
        if not chunk:
            return b""
        if not isinstance(chunk, bytes):  # a bytearray or memoryview: one copy
            chunk = bytes(chunk)
        held, engine = self._buf, self._engine
        if (
            self._intervals
            or self._masked_to > self._released
            or len(held) > _FAST_HELD
            or len(chunk) < engine.margin
        ):
            return self._advance(held + chunk if held else chunk, closed=False)
        # The fast path, for a chunk without an anchor: no copy of it is made, and it is
        # returned as it is when it ends where the stream can be released.
        unscanned = held[self._scanned - self._base :]
        if engine.any_anchor(unscanned + chunk[: engine.longest - 1]) or engine.any_anchor(chunk):
            return self._advance(held + chunk, closed=False)
        decided = engine.unseen(chunk)  # the margin keeps these inside the chunk
        release = decided - engine.reach(chunk, decided)
        start = self._base + len(held)  # stream offset of chunk[0]
        pending = held[self._released - self._base :]
        out = chunk if release == len(chunk) else chunk[:release]
        self._buf = chunk[release - _CONTEXT :]
        self._base = start + release - _CONTEXT
        self._released = start + release
        self._scanned = start + decided
        return pending + out if pending else out

    def close(self) -> bytes:
        """The end of the stream: everything not yet returned."""
        return self._advance(self._buf, closed=True)

    def _advance(self, buf: bytes, *, closed: bool) -> bytes:
        engine, base, end = self._engine, self._base, len(buf)
        unseen = end if closed else engine.unseen(buf)
        for q, idx in engine.occurrences(buf, self._scanned - base):
            if q >= unseen:
                decided = unseen
                break
            undecided = False
            for rule in engine.rules[idx]:
                got = rule.at(buf, q, closed)
                if isinstance(got, tuple):
                    self._intervals.add((got[0] + base, got[1] + base))
                    if rule.secret:
                        self.names.add(rule.name)
                elif got is MORE:
                    undecided = True
            if undecided:
                decided = q
                break
        else:
            decided = unseen
        release = decided if closed else decided - engine.reach(buf, decided)
        release = max(release, self._released - base)
        out = self._render(buf, base, release)
        keep = max(0, release - _CONTEXT)
        self._buf = buf[keep:]
        self._base = base + keep
        self._released = base + release
        self._scanned = base + decided
        return out

    def _render(self, buf: bytes, base: int, release: int) -> bytes:
        """The output for stream offsets [_released, base + release)."""
        stop = base + release
        pos = max(self._released, self._masked_to)
        if not self._intervals:
            return buf[pos - base : release] if pos < stop else b""
        parts: list[bytes] = []
        later: set[Interval] = set()
        for a, b in sorted(self._intervals):
            if a >= stop:
                later.add((a, b))
            elif a <= self._masked_to:  # overlaps or touches the last mask: one mask
                self._masked_to = max(self._masked_to, b)
            else:
                parts += (buf[pos - base : a - base], MASK)
                self.masks += 1
                self._masked_to = b
            pos = max(pos, self._masked_to)
        if pos < stop:
            parts.append(buf[pos - base : release])
        self._intervals = later
        return b"".join(parts)


def mask(engine: Engine, data: bytes) -> bytes:
    """``data`` with every secret masked (``data`` itself when there is none)."""
    if not engine.any_anchor(data):
        return data
    return StreamMasker(engine)._advance(data, closed=True)  # the input as a whole stream


def names_in(engine: Engine, data: bytes) -> set[str]:
    """The NAMEs of the known secrets present in ``data`` (pieces too)."""
    if not engine.any_anchor(data):
        return set()
    masker = StreamMasker(engine)
    masker._advance(data, closed=True)
    return masker.names
