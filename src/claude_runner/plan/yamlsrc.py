"""Safe YAML reading that remembers where every value came from.

PyYAML's pure-Python ``SafeLoader`` composes the node graph (``yaml.safe_load`` uses the
same loader, so the two are compared like for like); this module then builds plain
Python values itself, which lets it:

* record the line and column of every key and value, keyed by path
  (``('stages', 1, 'tasks', 0, 'prompt')``) so validation errors point at the YAML;
* reject duplicate keys (YAML parsers silently keep the last one) and every tag outside
  the plain JSON-like set (no ``!!python/...``, no custom tags, no ``!!binary``);
* bound alias expansion during composition: each alias adds the size of the subtree it
  repeats, and composition stops once that passes ``MAX_ALIAS_NODES``, so a
  "billion laughs" file fails after a few dozen nodes instead of exhausting memory;
* bound nesting depth, which also keeps the recursive composer off Python's stack limit;
* read booleans as YAML 1.2 does (true/false only; yes/no/on/off are strings).

Problems that do not stop reading (duplicate keys, tags) are collected; problems that do
(syntax errors, limits) raise ``YamlStop``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_ALIAS_NODES = 100_000
MAX_DEPTH = 64

Path = tuple[str | int, ...]
Pos = tuple[int, int]  # 1-based line, column

_T = "tag:yaml.org,2002:"
_STR, _MERGE = _T + "str", _T + "merge"
_SCALAR_TAGS = frozenset(_T + t for t in ("str", "int", "float", "bool", "null", "timestamp"))


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


def _pos(item: object) -> Pos:
    """1-based position of a node or a mark."""
    mark = item.start_mark if isinstance(item, Node) else item
    return (int(getattr(mark, "line", 0)) + 1, int(getattr(mark, "column", 0)) + 1)


def _type_name(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return f"{node.value!r}"


# Booleans are YAML 1.2's true/false only: YAML 1.1's yes/no/on/off stay strings, so a
# quoted or unquoted "yes" is never silently a boolean (and "id: no" is the id "no").
_BOOL_12 = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class _PlanLoader(yaml.SafeLoader):
    """SafeLoader whose composer counts alias expansion and nesting as it goes."""

    yaml_implicit_resolvers = {  # noqa: RUF012  (a class table PyYAML reads)
        first: [(tag, _BOOL_12 if tag == _T + "bool" else rx) for tag, rx in resolvers]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}  # id(node) -> nodes in its expanded subtree
        self._alias_nodes = 0
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            self._count_alias(event)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlStop(
                f"the YAML nests deeper than {MAX_DEPTH} levels; a plan needs about 6",
                _pos(event.start_mark),
            )
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        size = 1
        if isinstance(node, SequenceNode):
            size += sum(self._sizes[id(c)] for c in node.value)
        elif isinstance(node, MappingNode):
            size += sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
        self._sizes[id(node)] = size
        return node

    def _count_alias(self, event: yaml.AliasEvent) -> None:
        target = self.anchors.get(event.anchor)
        if target is None:
            return  # the composer reports the undefined alias
        size = self._sizes.get(id(target))
        if size is None:  # still being composed: the alias is inside its own anchor
            raise YamlStop(
                f"alias *{event.anchor} refers to a node that contains it; "
                "recursive structures are not allowed in a plan",
                _pos(event.start_mark),
            )
        self._alias_nodes += size
        if self._alias_nodes > MAX_ALIAS_NODES:
            raise YamlStop(
                f"YAML aliases expand to more than {MAX_ALIAS_NODES} nodes "
                "(a 'billion laughs' document?); write the plan out without nested aliases",
                _pos(event.start_mark),
            )


_HINTS = (
    ("'\\t'", "; YAML indents with spaces, not tabs"),
    ("mapping values are not allowed", "; put quotes around a value that contains ': '"),
    ("expected <block end>", "; check the indentation of this line"),
)


def _syntax_message(err: yaml.YAMLError) -> tuple[str, Pos | None]:
    if isinstance(err, yaml.MarkedYAMLError):
        text = err.problem or "invalid YAML"
        if err.context:
            text = f"{err.context}, {text}"
            cm, pm = err.context_mark, err.problem_mark
            if cm is not None and pm is not None and cm.line != pm.line:
                text += f" (the construct starts at line {cm.line + 1})"
        text += next((hint for needle, hint in _HINTS if needle in text), "")
        pos = _pos(err.problem_mark) if err.problem_mark is not None else None
        return f"invalid YAML: {text}", pos
    return f"invalid YAML: {err}", None


class _Builder:
    def __init__(self, loader: _PlanLoader, doc: Document) -> None:
        self._loader = loader
        self._doc = doc

    def build(self, node: Node, path: Path) -> object:
        self._doc.values[path] = _pos(node)
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        if node.tag == _T + "seq" and isinstance(node, SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if node.tag == _T + "map" and isinstance(node, MappingNode):
            return self._mapping(node, path)
        self._bad_tag(node, path)
        return None

    def _bad_tag(self, node: Node, path: Path) -> None:
        tag = node.tag.replace(_T, "!!")
        self._doc.bad.add(path)
        self._doc.problems.append(
            (
                path,
                _pos(node),
                f"the YAML tag {tag} is not allowed in a plan; use plain scalars, lists and "
                "mappings",
            )
        )

    def _scalar(self, node: ScalarNode, path: Path) -> object:
        if node.tag not in _SCALAR_TAGS:
            self._bad_tag(node, path)
            return None
        if node.tag == _STR:
            return node.value
        try:
            return self._loader.yaml_constructors[node.tag](self._loader, node)
        except (yaml.YAMLError, ValueError, OverflowError) as err:
            # e.g. an explicit "!!int abc" or an impossible timestamp
            self._doc.bad.add(path)
            self._doc.problems.append((path, _pos(node), f"cannot read {node.value!r}: {err}"))
            return None

    def _key(self, node: Node, path: Path) -> str | None:
        if isinstance(node, ScalarNode) and node.tag == _STR:
            return node.value  # type: ignore[no-any-return]
        self._doc.problems.append(
            (path, _pos(node), f"keys must be plain strings, not {_type_name(node)}")
        )
        return None

    def _mapping(self, node: MappingNode, path: Path) -> dict[str, object]:
        out: dict[str, object] = {}
        merges = [v for k, v in node.value if k.tag == _MERGE]
        # '<<' merges: keys given in the mapping win, then earlier merged mappings.
        for source in self._merge_sources(merges, path):
            for merged_key, value in self._mapping(source, path).items():
                out.setdefault(merged_key, value)
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            if key in first_line:
                self._doc.problems.append(
                    (
                        (*path, key),
                        _pos(key_node),
                        f"duplicate key {key!r} (first at line {first_line[key]}); "
                        "a YAML parser would silently keep only one; remove the other",
                    )
                )
                continue
            first_line[key] = key_node.start_mark.line + 1
            self._doc.keys[(*path, key)] = _pos(key_node)
            out[key] = self.build(value_node, (*path, key))
        self._doc.values[path] = _pos(node)
        return out

    def _merge_sources(self, merges: list[Node], path: Path) -> list[MappingNode]:
        sources: list[MappingNode] = []
        for value in merges:
            items = value.value if isinstance(value, SequenceNode) else [value]
            for item in items:
                if isinstance(item, MappingNode) and item.tag == _T + "map":
                    sources.append(item)
                else:
                    self._doc.problems.append(
                        (path, _pos(item), "'<<' merges a mapping or a list of mappings only")
                    )
        return sources


def read_yaml(text: str) -> Document | None:
    """Parse one YAML document; None when it holds no node (empty or only comments)."""
    loader = None
    try:
        loader = _PlanLoader(text)  # the reader checks for unprintable characters here
        node = loader.get_single_node()
    except RecursionError as err:  # belt and braces: MAX_DEPTH should come first
        raise YamlStop(f"the YAML nests too deeply (limit {MAX_DEPTH})", None) from err
    except yaml.reader.ReaderError as err:
        char = err.character
        code = char if isinstance(char, int) else ord(char)
        raise YamlStop(
            f"invalid YAML: the character U+{code:04X} is not allowed in YAML; remove it",
            _offset_pos(text, err.position),
        ) from err
    except yaml.YAMLError as err:
        message, pos = _syntax_message(err)
        raise YamlStop(message, pos) from err
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        return None
    doc = Document(data=None)
    doc.data = _Builder(loader, doc).build(node, ())
    return doc


def _offset_pos(text: str, offset: int) -> Pos:
    line = text.count("\n", 0, offset) + 1
    return (line, offset - (text.rfind("\n", 0, offset) + 1) + 1)
