"""Safe YAML reading that remembers where every value came from.

Plain Python values are built straight from the parser's events (LibYAML's C parser when
PyYAML has it, else PyYAML's pure-Python parser), with no node graph in between, which
lets this module:

* read scalars by YAML 1.2's core schema, as editors do: ``true``/``false`` only (no
  yes/no/on/off), decimal integers (``010`` is 10), ``0o17`` and ``0x1F``, ``.inf`` and
  ``.nan``, nulls ``null Null NULL ~`` and the empty value; everything else (``1:30``,
  ``1_0``, a date) is a string;
* record the line and column of every key and value, keyed by path
  (``('stages', 1, 'tasks', 0, 'prompt')``) so validation errors point at the YAML;
* reject duplicate keys (two ``<<`` included: YAML parsers silently keep the last one),
  and every tag outside the plain JSON-like set (no ``!!python/...``, custom tags,
  ``!!binary``, ``!!timestamp``);
* reject text no program can be given: a NUL character, or half of a surrogate pair;
* bound the work, so any file up to the loader's size limit is read or refused in well
  under a second: at most ``MAX_NODES`` nodes, nesting up to ``MAX_DEPTH``, and aliases
  that expand to at most ``MAX_ALIAS_NODES`` nodes in all (a "billion laughs" file stops
  after a few dozen events instead of exhausting memory).

An alias is the same Python object as its anchor, and the anchor's positions are
replayed under the alias's path, so an error inside an aliased value points at the text
the user wrote. ``<<`` merges: keys given in the mapping win, then earlier merged
mappings.

Problems that do not stop reading (duplicate keys, tags, bad characters) are collected;
problems that do (syntax errors, limits) raise ``YamlStop``. Every node passes through
``_Builder.node``, the hot path: it is written for speed (no helper calls for a plain
scalar, one regular expression for the core schema).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from claude_runner.plan.rules import echo

# A plan of 10,000 tasks with a few keys each is about 100,000 nodes; the limit keeps the
# worst 1 MiB file (half a million one-character list items) inside the time budget.
MAX_NODES = 200_000
MAX_ALIAS_NODES = 100_000
MAX_DEPTH = 64
# Positions are kept down to this depth (a plan's own structure is about 6 levels, an
# output_schema a dozen more); deeper nodes report their nearest kept ancestor. Without
# it a deeply nested file would cost a path tuple as long as its depth per node.
MAX_POSITION_DEPTH = 24
MAX_YAML_PROBLEMS = 1_000  # collected at most; the loader reports the first ones

Path = tuple[str | int, ...]
Pos = tuple[int, int]  # 1-based line, column

_T = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_T + t for t in ("str", "int", "float", "bool", "null"))
_SEQ, _MAP = _T + "seq", _T + "map"
_PLAIN_TAGS = (None, "!")  # no tag, or the non-specific one
_VALUE, _KEY, _BAD = 0, 1, 2  # kinds of position records

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), one pattern;
# the number of the group that matched says the type.
_CORE_RE = re.compile(
    r"(null|Null|NULL|~|)"  # 1 null
    r"|(true|True|TRUE)"  # 2
    r"|(false|False|FALSE)"  # 3
    r"|([-+]?[0-9]+)"  # 4 decimal integer (010 is ten)
    r"|0o([0-7]+)"  # 5 octal
    r"|0x([0-9a-fA-F]+)"  # 6 hexadecimal
    r"|([-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?)"  # 7 float
    r"|([-+]?)\.(?:inf|Inf|INF)"  # 8 infinity, with its sign
    r"|(\.(?:nan|NaN|NAN))"  # 9
)
# Could start a number, bool or null: anything else is a string without the pattern.
_MAYBE_TYPED = frozenset("0123456789+-.~nNtTfF")
# Python refuses to convert longer digit strings (CVE-2020-10735); no plan needs them.
_MAX_DIGITS = min(sys.get_int_max_str_digits() or 4300, 4300)
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
# LibYAML refuses surrogate escapes itself; PyYAML's own scanner lets them through.
_CHECK_SURROGATES = not yaml.__with_libyaml__
_TOO_DEEP = f"the YAML nests deeper than {MAX_DEPTH} levels; a plan needs about 6"
_NUL = (
    "the text contains a NUL character (\\0), which no program can be given "
    "(argv, environment and files end text there); remove it"
)


class YamlStop(Exception):
    """Reading cannot go on; ``pos`` is where, when known."""

    def __init__(self, message: str, pos: Pos | None) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


@dataclass
class Document:
    """Plain data plus where each path's key and value start."""

    data: object
    values: dict[Path, Pos] = field(default_factory=dict)
    keys: dict[Path, Pos] = field(default_factory=dict)
    problems: list[tuple[Path, Pos, str]] = field(default_factory=list)
    bad: set[Path] = field(default_factory=set)  # values replaced by None after a problem
    more: bool = False  # more than MAX_YAML_PROBLEMS problems; the rest were not kept


def _text_problem(text: str) -> str:
    if "\x00" in text:
        return _NUL
    found = _SURROGATE_RE.search(text)
    code = ord(found.group()) if found else 0
    return (
        f"the text contains \\u{code:04x}, half of a surrogate pair, which cannot be "
        "encoded as UTF-8; write the character itself or its \\U00XXXXXX escape"
    )


class _TooLong:
    """An integer with more digits than Python will convert (reported as a problem)."""

    def __init__(self, text: str) -> None:
        self.text = text


def _core(value: str) -> object:  # noqa: PLR0911
    """A plain scalar by the YAML 1.2 core schema."""
    if value and value[0] not in _MAYBE_TYPED:
        return value
    found = _CORE_RE.fullmatch(value)
    if found is None:
        return value
    kind = found.lastindex
    if kind == 1:
        return None
    if kind in (2, 3):
        return kind == 2
    if kind in (4, 5, 6):
        digits = found.group(kind)
        if len(digits) > _MAX_DIGITS:
            return _TooLong(value)
        return int(digits, {4: 10, 5: 8, 6: 16}[kind])
    if kind == 7:
        return float(value)  # no digit limit for floats: 1e400 is inf
    if kind == 8:
        return float("-inf") if value[0] == "-" else float("inf")
    return float("nan")


_UNREADABLE = object()
_MISSING = object()


def _tagged(tag: str, text: str) -> object:  # noqa: PLR0911
    """A scalar with an explicit standard tag: only that tag's core-schema forms."""
    if tag == _STR:
        return text
    value = _core(text)
    if tag == _NULL:
        return None if value is None else _UNREADABLE
    if tag == _BOOL:
        return value if isinstance(value, bool) else _UNREADABLE
    if tag == _INT:
        ok = isinstance(value, int | _TooLong) and not isinstance(value, bool)
        return value if ok else _UNREADABLE
    # _FLOAT: a float or an integer written as one
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return _UNREADABLE


_SCALAR_TAGS = frozenset((_STR, _INT, _FLOAT, _BOOL, _NULL))


def _pos(event: Event) -> Pos:
    mark: Any = event.start_mark
    return (mark.line + 1, mark.column + 1)


@dataclass
class _Source:
    """A mapping merged by '<<', where it was built and its position records."""

    value: dict[str, object]
    path: Path
    log: slice


@dataclass
class _Anchor:
    value: object
    path: Path
    log: slice  # its position records in _Builder.log
    size: int  # nodes it expands to


class _Builder:
    """Plain data and positions from one document's events."""

    def __init__(self, next_event: Callable[[], Event]) -> None:
        self._next = next_event
        self.log: list[tuple[Path, Pos, int]] = []
        self.problems: list[tuple[Path, Pos, str]] = []
        self.more = False
        self._anchors: dict[str, _Anchor] = {}
        self._open: set[str] = set()  # anchors whose node is being built
        self._nodes = 0  # events that start a node (aliases included): MAX_NODES
        self._alias_events = 0
        self._alias_nodes = 0  # nodes the aliases stand for: MAX_ALIAS_NODES
        self._plain: dict[str, object] = {}  # plain scalars read so far
        self._depth = 0

    # --- limits -----------------------------------------------------------------------

    def _too_many(self, event: Event) -> YamlStop:
        return YamlStop(
            f"the YAML has more than {MAX_NODES} nodes (keys, values, lists and mappings); "
            "a plan of 10,000 tasks needs about 100,000: split the plan, or let for_each "
            "fan a task out",
            _pos(event),
        )

    def _count(self, event: Event) -> None:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise self._too_many(event)

    def _enter(self, event: Event) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlStop(_TOO_DEEP, _pos(event))

    def _problem(self, path: Path, pos: Pos, text: str, *, bad: bool = True) -> None:
        if len(self.problems) < MAX_YAML_PROBLEMS:
            self.problems.append((path, pos, text))
        else:
            self.more = True
        if bad:
            self.log.append((path, pos, _BAD))

    # --- nodes ------------------------------------------------------------------------

    def node(self, event: Any, path: Path) -> object:
        """Build the node that starts with ``event`` (already taken) at ``path``."""
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise self._too_many(event)
        cls = event.__class__
        if cls is ScalarEvent and event.anchor is None and event.tag is None:
            # The hot path, inlined: a plain or quoted scalar without anchor or tag.
            mark = event.start_mark
            pos = (mark.line + 1, mark.column + 1)
            if self._depth <= MAX_POSITION_DEPTH:
                self.log.append((path, pos, _VALUE))
            text: str = event.value
            if "\x00" in text or (_CHECK_SURROGATES and _SURROGATE_RE.search(text)):
                return self._bad_text(text, path, pos)
            if not event.implicit[0] or (text and text[0] not in _MAYBE_TYPED):
                return text
            value = self._plain.get(text, _MISSING)
            if value is _MISSING:
                value = self._plain[text] = _core(text)
            return self._too_long(value, path, pos) if value.__class__ is _TooLong else value
        if cls is AliasEvent:
            return self._alias(event, path)
        if event.anchor is not None:
            return self._anchored(event, path)
        return self._value(event, path)

    def _value(self, event: Any, path: Path) -> object:
        cls = event.__class__
        mark = event.start_mark
        pos = (mark.line + 1, mark.column + 1)
        if self._depth <= MAX_POSITION_DEPTH:
            self.log.append((path, pos, _VALUE))
        if cls is ScalarEvent:
            text: str = event.value
            if "\x00" in text or (_CHECK_SURROGATES and _SURROGATE_RE.search(text)):
                return self._bad_text(text, path, pos)
            if event.tag is None:
                value = _core(text) if event.implicit[0] else text
                return self._too_long(value, path, pos) if value.__class__ is _TooLong else value
            return self._tagged_scalar(event, path, pos)
        tag = event.tag
        if cls is SequenceStartEvent and (tag in _PLAIN_TAGS or tag == _SEQ):
            return self._sequence(event, path)
        if cls is MappingStartEvent and (tag in _PLAIN_TAGS or tag == _MAP):
            return self._mapping(event, path)
        return self._bad_tag(event, path, pos)

    def _size(self) -> int:
        """Nodes built so far, counting each alias as the nodes it stands for."""
        return self._nodes - self._alias_events + self._alias_nodes

    def _anchored(self, event: Any, path: Path) -> object:
        name = str(event.anchor)
        start, size = len(self.log), self._size() - 1  # node() counted this one
        self._open.add(name)
        try:
            value = self._value(event, path)
        finally:
            self._open.discard(name)
        self._anchors[name] = _Anchor(value, path, slice(start, len(self.log)), self._size() - size)
        return value

    def _bad_text(self, text: str, path: Path, pos: Pos) -> object:
        """Report text no program can take; None stands in for it."""
        self._problem(path, pos, _text_problem(text))
        return None

    def _too_long(self, value: Any, path: Path, pos: Pos) -> object:
        self._problem(
            path,
            pos,
            f"the number {echo(value.text)} has more than {_MAX_DIGITS} digits; "
            "no setting takes a number that large",
        )
        return None

    def _tagged_scalar(self, event: Any, path: Path, pos: Pos) -> object:
        tag = event.tag
        text: str = event.value
        if tag == "!":
            return text
        if tag not in _SCALAR_TAGS:
            return self._bad_tag(event, path, pos)
        value = _tagged(tag, text)
        if value is _UNREADABLE:
            name = tag.replace(_T, "!!")
            self._problem(path, pos, f"cannot read {echo(text)} as {name}")
            return None
        if isinstance(value, _TooLong):
            return self._too_long(value, path, pos)
        return value

    def _bad_tag(self, event: Any, path: Path, pos: Pos) -> object:
        tag = str(event.tag).replace(_T, "!!")
        self._problem(
            path,
            pos,
            f"the YAML tag {tag} is not allowed in a plan; use plain scalars, lists and mappings",
        )
        if event.__class__ is not ScalarEvent:
            self._skip_children(event)
        return None

    def _alias(self, event: AliasEvent, path: Path) -> object:
        name = str(event.anchor)
        if name in self._open:
            raise YamlStop(
                f"alias *{name} refers to a node that contains it; "
                "recursive structures are not allowed in a plan",
                _pos(event),
            )
        anchor = self._anchors.get(name)
        if anchor is None:
            raise YamlStop(f"invalid YAML: found undefined alias {name!r}", _pos(event))
        self._expand(event, anchor)
        cut = len(anchor.path)
        room = MAX_POSITION_DEPTH - len(path) + cut
        self.log.extend(
            (path + p[cut:], pos, kind)
            for p, pos, kind in self.log[anchor.log]
            if len(p) <= room and self._depth <= MAX_POSITION_DEPTH
        )
        return anchor.value

    def _expand(self, event: Event, anchor: _Anchor) -> None:
        self._alias_events += 1
        self._alias_nodes += anchor.size
        if self._alias_nodes > MAX_ALIAS_NODES:
            raise YamlStop(
                f"YAML aliases expand to more than {MAX_ALIAS_NODES} nodes "
                "(a 'billion laughs' document?); write the plan out without nested aliases",
                _pos(event),
            )

    def _sequence(self, event: Event, path: Path) -> list[object]:
        self._enter(event)
        out: list[object] = []
        next_event, node = self._next, self.node
        deep = self._depth > MAX_POSITION_DEPTH  # items keep their ancestor's path
        while (item := next_event()).__class__ is not SequenceEndEvent:
            out.append(node(item, path if deep else (*path, len(out))))
        self._depth -= 1
        return out

    def _mapping(self, event: Event, path: Path) -> dict[str, object]:
        self._enter(event)
        own: dict[str, object] = {}
        merged: list[_Source] = []
        first_line: dict[str, int] = {}
        next_event = self._next
        key_event: Any
        while (key_event := next_event()).__class__ is not MappingEndEvent:
            key = self._key(key_event, path)
            value_event = next_event()
            if key is None:
                self._skip(value_event)
                continue
            mark = key_event.start_mark
            key_pos = (mark.line + 1, mark.column + 1)
            is_merge = key == "<<" and key_event.__class__ is ScalarEvent and key_event.implicit[0]
            if key in first_line:
                hint = (
                    "; merge several mappings with one key: '<<: [*a, *b]'"
                    if is_merge
                    else "; a YAML parser would silently keep only one; remove the other"
                )
                self._problem(
                    (*path, key),
                    key_pos,
                    f"duplicate key {echo(key)} (first at line {first_line[key]}){hint}",
                )
                self._skip(value_event)
                continue
            first_line[key] = key_pos[0]
            if is_merge:
                merged += self._merge(value_event, (*path, "<<"))
                continue
            if self._depth > MAX_POSITION_DEPTH:
                own[key] = self.node(value_event, path)
                continue
            key_path = (*path, key)
            self.log.append((key_path, key_pos, _KEY))
            own[key] = self.node(value_event, key_path)
        self._depth -= 1
        return self._merged(own, merged, path) if merged else own

    def _merged(
        self, own: dict[str, object], sources: list[_Source], path: Path
    ) -> dict[str, object]:
        """Keys given in the mapping win, then earlier merged mappings; each merged key's
        positions are those of the mapping it came from."""
        out: dict[str, object] = {}
        origin: dict[str | int, int] = {}
        for index, source in enumerate(sources):
            for key, value in source.value.items():
                if key not in own and key not in out:
                    out[key] = value
                    origin[key] = index
        out.update(own)
        for index, source in enumerate(sources):
            cut = len(source.path)
            room = MAX_POSITION_DEPTH - len(path) + cut
            self.log.extend(
                (path + p[cut:], pos, kind)
                for p, pos, kind in self.log[source.log]
                if cut < len(p) <= room and origin.get(p[cut]) == index
            )
        return out

    def _key(self, event: Any, path: Path) -> str | None:
        self._count(event)
        cls = event.__class__
        if cls is ScalarEvent and event.tag is None and event.anchor is None:
            text: str = event.value  # the usual key: a plain word
            plain = text and text[0] not in _MAYBE_TYPED and "\x00" not in text
            if plain and not (_CHECK_SURROGATES and _SURROGATE_RE.search(text)):
                return text
        shown = "a list" if cls is SequenceStartEvent else "a mapping"
        if cls is ScalarEvent:
            text = event.value
            if "\x00" in text or (_CHECK_SURROGATES and _SURROGATE_RE.search(text)):
                self._problem(path, _pos(event), f"a key: {_text_problem(text)}", bad=False)
                return None
            if event.tag in _PLAIN_TAGS:
                value = _core(text) if event.implicit[0] else text
            else:
                value = text if event.tag == _STR else None
            if value.__class__ is str:
                return text
            shown = echo(text)
        elif cls is AliasEvent:
            anchor = self._anchors.get(str(event.anchor))
            if anchor is not None and isinstance(anchor.value, str):
                return anchor.value
            shown = f"the alias *{event.anchor}"
        else:
            self._skip_children(event)
        self._problem(path, _pos(event), f"keys must be plain strings, not {shown}", bad=False)
        return None

    def _merge(self, event: Any, path: Path) -> list[_Source]:
        """The mappings a '<<' value names (``path`` is where inline ones are built)."""
        if event.__class__ is SequenceStartEvent and event.tag in (*_PLAIN_TAGS, _SEQ):
            self._count(event)
            self._enter(event)
            sources: list[_Source] = []
            while (item := self._next()).__class__ is not SequenceEndEvent:
                sources += self._merge_one(item, (*path, len(sources)))
            self._depth -= 1
            return sources
        return self._merge_one(event, path)

    def _merge_one(self, event: Any, path: Path) -> list[_Source]:
        cls = event.__class__
        if cls is AliasEvent:
            anchor = self._anchors.get(str(event.anchor))
            if anchor is not None and isinstance(anchor.value, dict):
                self._count(event)
                self._expand(event, anchor)
                return [_Source(anchor.value, anchor.path, anchor.log)]
            if anchor is None or event.anchor in self._open:
                self._alias(event, path)  # raises: undefined or recursive
        elif cls is MappingStartEvent and event.tag in (*_PLAIN_TAGS, _MAP):
            start = len(self.log)
            value = self.node(event, path)
            if isinstance(value, dict):
                return [_Source(value, path, slice(start, len(self.log)))]
            return []
        self._problem(
            path[:-1], _pos(event), "'<<' merges a mapping or a list of mappings only", bad=False
        )
        self._skip(event)
        return []

    def _skip(self, event: Any) -> None:
        """Consume a node nobody will use, still within the limits."""
        self._count(event)
        if event.__class__ in (SequenceStartEvent, MappingStartEvent):
            self._skip_children(event)

    def _skip_children(self, event: Event) -> None:
        self._enter(event)
        end = SequenceEndEvent if event.__class__ is SequenceStartEvent else MappingEndEvent
        while (item := self._next()).__class__ is not end:
            self._skip(item)
        self._depth -= 1


_HINTS = (
    ("'\\t'", "; YAML indents with spaces, not tabs"),
    ("mapping values are not allowed", "; put quotes around a value that contains ': '"),
    ("block", "; check the indentation of this line"),
    ("invalid Unicode character escape", "; an escape must name a whole character"),
)


def _syntax_message(err: yaml.YAMLError, text: str) -> tuple[str, Pos | None]:
    if isinstance(err, yaml.MarkedYAMLError):
        problem = err.problem or "invalid YAML"
        mark = err.problem_mark
        if "maximum nesting depth" in problem:  # LibYAML's own limit (1,000 flow levels)
            return _TOO_DEEP, _mark_pos(mark)
        if "cannot start any token" in problem and _char_at(text, mark) == "\t":
            problem = "found character '\\t' that cannot start any token"
        message = f"{err.context}, {problem}" if err.context else problem
        cm, pm = err.context_mark, err.problem_mark
        if cm is not None and pm is not None and cm.line != pm.line:
            message += f" (the construct starts at line {cm.line + 1})"
        message += next((hint for needle, hint in _HINTS if needle in message), "")
        return f"invalid YAML: {message}", _mark_pos(mark)
    return f"invalid YAML: {err}", None


def _mark_pos(mark: Any) -> Pos | None:
    return (int(mark.line) + 1, int(mark.column) + 1) if mark is not None else None


def _char_at(text: str, mark: Any) -> str:
    if mark is None:
        return ""
    line, column = int(mark.line), int(mark.column)
    lines = text.split("\n", line + 1)
    return lines[line][column : column + 1] if len(lines) > line else ""


def _parser(text: str) -> Any:
    if yaml.__with_libyaml__:
        from yaml._yaml import CParser  # noqa: PLC0415

        return CParser(text)
    return yaml.SafeLoader(text)  # pragma: no cover - PyYAML built without LibYAML


def read_yaml(text: str) -> Document | None:
    """Parse one YAML document; None when it holds no node (empty or only comments)."""
    parser = _parser(text)
    try:
        return _read(parser.get_event)
    except yaml.reader.ReaderError as err:
        char = err.character
        code = char if isinstance(char, int) else ord(char)
        raise YamlStop(
            f"invalid YAML: the character U+{code:04X} is not allowed in YAML; remove it",
            _offset_pos(text, err.position),
        ) from err
    except yaml.YAMLError as err:
        message, pos = _syntax_message(err, text)
        raise YamlStop(message, pos) from err
    except (ValueError, OverflowError) as err:  # the pure-Python scanner's escapes
        raise YamlStop(f"invalid YAML: {err}", None) from err
    finally:
        if hasattr(parser, "dispose"):
            parser.dispose()


def _read(next_event: Callable[[], Event]) -> Document | None:
    next_event()  # StreamStartEvent
    first = next_event()
    if first.__class__ is StreamEndEvent:
        return None
    if first.__class__ is not DocumentStartEvent:  # pragma: no cover - the parser's grammar
        raise YamlStop(f"invalid YAML: unexpected {type(first).__name__}", _pos(first))
    builder = _Builder(next_event)
    data = builder.node(next_event(), ())
    next_event()  # DocumentEndEvent
    after = next_event()
    if after.__class__ is not StreamEndEvent:
        raise YamlStop(
            "a second YAML document starts here; a plan is one document: remove this "
            "'---' or what follows it",
            _pos(after),
        )
    doc = Document(data=data, problems=builder.problems, more=builder.more)
    values, keys = doc.values, doc.keys
    for path, pos, kind in builder.log:
        if kind == _VALUE:
            values[path] = pos
        elif kind == _KEY:
            keys[path] = pos
        else:
            doc.bad.add(path)
    return doc


def _offset_pos(text: str, offset: int) -> Pos:
    """Line and column of a reader error's offset: LibYAML counts UTF-8 bytes."""
    if yaml.__with_libyaml__:
        head = text.encode("utf-8", "surrogatepass")[:offset].decode("utf-8", "replace")
    else:  # pragma: no cover
        head = text[:offset]
    line = head.count("\n") + 1
    return (line, len(head) - (head.rfind("\n") + 1) + 1)
