"""Safe YAML for specs: bounded in size, depth and alias expansion, no duplicate keys, YAML 1.2 numbers,
and every error turned into a SpecError that names the line and column.

PyYAML alone keeps the last of two duplicate keys, reads `1e-4` as a string (YAML 1.1), reports a
bad character as a byte offset, and expands an alias bomb into billions of nodes for whoever walks
the result: each of those is closed here, once, for spec files and `-o` values alike.
"""
from __future__ import annotations

import re
from typing import Any

import yaml

from trainables.errors import SpecError, short

MAX_BYTES = 2 * 1024 * 1024  # a spec is a page or two; this is a thousand times that
MAX_NODES = 100_000  # scalars, lists and mappings after aliases are expanded
MAX_DEPTH = 64  # nesting of lists and mappings


class SpecLoader(yaml.SafeLoader):
    """SafeLoader (never runs tags) with YAML 1.2 floats and duplicate keys refused."""


# YAML 1.2's numbers. PyYAML reads YAML 1.1's: `010` as 8 (octal), `1:30` as 90 (base 60), `1_000` as 1000,
# and `1e-4` as text (a float wants a dot in its mantissa). Its int and float resolvers are replaced.
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
SpecLoader.yaml_implicit_resolvers = {k: [(tag, rx) for tag, rx in v if tag not in _NUMBER_TAGS]
                                      for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
SpecLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
                                 list("-+0123456789"))


def _construct_int(loader: SpecLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    return int(text[2:], 8) if text.startswith("0o") else int(text[2:], 16) if text.startswith("0x") else int(text)


SpecLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?[0-9]+(?:[eE][-+]?[0-9]+)
                  |[-+]?\.[0-9]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def _construct_mapping(loader: SpecLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *base`: SafeLoader merges it below, the explicit keys win
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # a list or mapping as a key: refused by the schema, with its line
            continue
        line = key_node.start_mark.line + 1
        if first is not None:
            raise SpecError(f"duplicate key {short(key)}: first at line {first}, again at line {line} "
                            f"(YAML would silently keep the last one)", line=line)
        seen[key] = line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


SpecLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _measure(root: yaml.Node) -> tuple[int, int]:
    """(nodes after alias expansion, depth) without expanding: each shared node is sized once."""
    sizes: dict[int, tuple[int, int]] = {}
    # Post-order walk with an explicit stack: a deep document must not exhaust Python's recursion.
    stack: list[tuple[yaml.Node, bool, int]] = [(root, False, 0)]
    while stack:
        node, ready, level = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if level > MAX_DEPTH:
            return 0, level
        if not ready and children:
            stack.append((node, True, level))
            stack.extend((c, False, level + 1) for c in children if id(c) not in sizes)
            continue
        count, depth = 1, 1
        for c in children:
            c_count, c_depth = sizes.get(id(c), (1, 1))
            count, depth = count + c_count, max(depth, c_depth + 1)
        sizes[id(node)] = (min(count, MAX_NODES + 1), depth)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _where(e: yaml.YAMLError, text: str) -> tuple[int | None, int | None]:
    """(line, column), 1-based, of a YAML error: from its mark, or from a reader's character offset."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    if mark is not None:
        return mark.line + 1, mark.column + 1
    position = getattr(e, "position", None)
    if isinstance(position, int):
        before = text[:position]
        return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1
    return None, None


def _problem(e: yaml.YAMLError) -> str:
    if isinstance(e, yaml.reader.ReaderError):
        return f"character {e.character!r} is not allowed in YAML (a control character?)"
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    if "'\\t'" in problem or "\t" in problem:
        return "a tab character: YAML indents with spaces only"
    if "expected a single document" in problem or "found another document" in problem:
        return "more than one YAML document (---) in one file: a spec is one document"
    if isinstance(e, yaml.constructor.ConstructorError) and "tag" in problem:
        tag = problem.rsplit("tag", 1)[-1].strip(" '")
        return f"tag not allowed: {tag} (only plain YAML values are accepted)"
    return problem


def decode(data: bytes, *, file: str) -> str:
    """UTF-8 text, or a SpecError naming the line and column of the first byte that is not."""
    if len(data) > MAX_BYTES:
        raise SpecError(f"the file is {len(data):,} bytes; a spec may be at most {MAX_BYTES:,}", file=file)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        before = data[: e.start]
        line, column = before.count(b"\n") + 1, e.start - (before.rfind(b"\n") + 1) + 1
        raise SpecError(f"byte {data[e.start]:#04x} is not UTF-8 (save the file as UTF-8)", file=file, line=line,
                        column=column) from None


def read(text: str, *, file: str) -> tuple[Any, yaml.Node | None]:
    """(data, node) of one YAML document within the limits above; SpecError otherwise."""
    if len(text) > MAX_BYTES:
        raise SpecError(f"the text is {len(text):,} characters; a spec may be at most {MAX_BYTES:,}", file=file)
    try:
        loader = SpecLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                count, depth = _measure(node)
                if depth > MAX_DEPTH:
                    raise SpecError(f"nested more than {MAX_DEPTH} levels deep", file=file)
                if count > MAX_NODES:
                    raise SpecError(f"more than {MAX_NODES:,} values once its aliases (*name) are expanded: "
                                    f"refused as too large", file=file)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except SpecError as e:
        e.file = e.file or file
        raise
    except yaml.YAMLError as e:
        line, column = _where(e, text)
        raise SpecError(f"invalid YAML: {_problem(e)}", file=file, line=line, column=column) from None
    except (ValueError, OverflowError) as e:  # a scalar YAML resolves but Python cannot hold (a 5,000-digit int)
        raise SpecError(f"a value YAML cannot turn into a number here: {short(str(e), 120)}", file=file) from None
    except RecursionError:
        raise SpecError(f"nested too deeply (at most {MAX_DEPTH} levels)", file=file) from None
    return data, node


def line_map(node: yaml.Node | None) -> dict[tuple, int]:
    """Key path -> 1-based line, for every mapping key and sequence item (aliases not followed)."""
    out: dict[tuple, int] = {}
    stack: list[tuple[yaml.Node, tuple]] = [(node, ())] if node is not None else []
    while stack:
        n, path = stack.pop()
        if len(path) > MAX_DEPTH:
            continue
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = k.value if isinstance(k, yaml.ScalarNode) else None
                out.setdefault(path + (key,), k.start_mark.line + 1)
                stack.append((v, path + (key,)))
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                out.setdefault(path + (i,), v.start_mark.line + 1)
                stack.append((v, path + (i,)))
    return out


def value(text: str, *, what: str) -> Any:
    """One `-o` value: YAML with the same rules as a spec file."""
    data, _ = read(text, file=what)
    return data


class _Dumper(yaml.SafeDumper):
    """Quotes what this reader would read as something else (YAML 1.2 numbers such as 1e3)."""


_Dumper.yaml_implicit_resolvers = SpecLoader.yaml_implicit_resolvers


def dump(data: Any) -> str:
    """YAML as a person writes it (keys in order, short lists inline) that read() reads back the same."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=110, allow_unicode=True)
