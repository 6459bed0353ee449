"""Reading a spec file as YAML, safely and cheaply, with the position of every key.

A spec is at most a few hundred values, so anything far bigger is refused before it is built.
The values are counted as they are composed: a file holding too many is refused as soon as
that many have been read, at the key holding them. YAML aliases share one node between many
places, and a 600-byte "billion laughs" document expands to 10**9 values once something walks
it as a tree (validation, a message that prints a value): each node's expanded size is kept as
it is composed, and a document too big once expanded is refused before construction.

Control characters, invalid UTF-8 and syntax errors are reported as ``line:col`` problems.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from pathlib import Path

import yaml

from nandoctor.engine.memory import show_bytes

MAX_EXPANDED_VALUES = 100_000  # a real spec holds hundreds; aliases must not expand past this
MAX_SPEC_BYTES = 2**20  # a real spec is a few KB; PyYAML needs seconds per MB of one long value
# What YAML 1.1 forbids in a stream (PyYAML's own test): C0/C1 controls other than tab, LF,
# CR and NEL, DEL, surrogates and the two non-characters.
_NON_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


class YamlProblem(Exception):
    """Why a file cannot be read as a spec, at a 1-based line and column."""

    def __init__(self, message: str, line: int = 1, col: int = 1):
        super().__init__(message)
        self.message, self.line, self.col = message, line, col


@dataclass
class Document:
    data: object  # the constructed YAML (a dict for a spec)
    positions: dict[str, tuple[int, int, int, int]]  # dotted key -> key line, col, value line, col
    duplicates: list[str]  # dotted keys given twice


def read_text(path: Path) -> str:
    """The file's text (UTF-8, a byte-order mark dropped). Only a regular file of at most
    :data:`MAX_SPEC_BYTES` is read: a device (``/dev/zero``), a pipe or a huge file would fill
    the memory, or take minutes to scan, before any message could be given."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise YamlProblem("no such file") from None
    except OSError as e:
        raise YamlProblem(f"cannot read the file ({e.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise YamlProblem("is a directory, not a spec file")
    if not stat.S_ISREG(info.st_mode):
        raise YamlProblem(
            f"is not a regular file (a {_kind(info.st_mode)}); give the path of a YAML spec file"
        )
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except OSError as e:
        raise YamlProblem(f"cannot read the file ({e.strerror})") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise YamlProblem(
            f"is {show_bytes(max(info.st_size, len(raw)))}, too big for a spec (at most"
            f" {show_bytes(MAX_SPEC_BYTES)}; a spec is a few hundred values); is this the right file?"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = _line_col(e.object[: e.start].decode("utf-8", "replace"), e.start)
        raise YamlProblem("not a UTF-8 text file (invalid byte sequence)", line, col) from None
    # as text mode reads it: universal newlines
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISFIFO, "pipe"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"


def escape_controls(text: str) -> str:
    """``text`` with every control character shown as an escape (``\\x01``): safe to print."""
    return _NON_PRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def _refuse_control_characters(text: str) -> None:
    bad = _NON_PRINTABLE.search(text)
    if bad:
        line, col = _line_col(text, bad.start())
        raise YamlProblem(
            f"control character U+{ord(bad.group()):04X} is not allowed in a spec; delete it",
            line,
            col,
        )


def _line_col(text: str, index: int) -> tuple[int, int]:
    before = text[:index]
    return before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1


def parse(text: str) -> Document:
    """Compose ``text``, bound its expanded size, record positions, then construct it."""
    _refuse_control_characters(text)
    try:
        loader = _CountingLoader(text)
    except yaml.YAMLError as e:
        raise YamlProblem(f"cannot read the YAML: {e}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise YamlProblem("the file is empty; a spec needs at least model.layers")
        loader.bound_aliases(node)
        positions: dict[str, tuple[int, int, int, int]] = {"": (1, 1, 1, 1)}
        duplicates = _walk(node, "", positions, set())
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = "YAML" if isinstance(e, yaml.constructor.ConstructorError) else "YAML syntax"
        context = f" ({e.context})" if e.context else ""
        raise YamlProblem(f"{what} error: {e.problem}{context}", *where) from None
    except RecursionError:
        raise YamlProblem("cannot read the YAML: it is nested too deeply") from None
    except yaml.YAMLError as e:
        raise YamlProblem(f"cannot read the YAML: {type(e).__name__}") from None
    finally:
        loader.dispose()
    return Document(data, positions, duplicates)


class _CountingLoader(yaml.SafeLoader):
    """A safe loader that counts the values as it composes them, and stops as soon as the file
    itself holds more than :data:`MAX_EXPANDED_VALUES` (:class:`YamlProblem`): a huge file is
    refused in the time it takes to read that many, not all of it.

    ``sizes`` keeps the values each composed node stands for with every alias expanded (an alias
    counts as its anchor's size; one to an anchor still being composed, a recursive alias, as
    1), so the expanded size is known without walking the graph again."""

    def __init__(self, text: str):
        super().__init__(text)
        self.values = 0  # nodes in the file composed so far (aliases not counted)
        self.expanded = 0  # values composed so far, each alias counted as its anchor's size
        self.sizes: dict[int, int] = {}  # id(node) -> its expanded size, once composed
        # the nodes being composed, outermost first: (dotted key or index, where it is named,
        # the expanded count before it)
        self.open: list[tuple[str | None, yaml.Mark, int]] = []

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)  # an undefined alias raises
            self.expanded += self.sizes.get(id(node), 1)
            return node
        self.values += 1
        if self.values > MAX_EXPANDED_VALUES:
            raise self._too_many()
        mark = self.peek_event().start_mark
        if isinstance(index, yaml.ScalarNode):  # a mapping's value, named by its key
            part, mark = _key_text(index), index.start_mark
        elif isinstance(index, int):  # a list's entry
            part = str(index)
        else:  # the document, or a mapping's key
            part = "" if parent is None else None
        start = self.expanded
        self.expanded += 1
        self.open.append((part, mark, start))
        node = super().compose_node(parent, index)
        self.open.pop()
        self.sizes[id(node)] = self.expanded - start
        return node

    def _too_many(self) -> YamlProblem:
        """The file holds too many values: at the innermost key holding most of them."""
        depth = max(
            (
                i
                for i, (_, _, start) in enumerate(self.open)
                if self.expanded - start > MAX_EXPANDED_VALUES // 10
            ),
            default=0,
        )
        parts = [part for part, _, _ in self.open[1 : depth + 1]]
        key = ".".join(p for p in parts if p) if None not in parts else ""
        mark = self.open[depth][1] if self.open else None
        inner = self.open[depth + 1][0] if depth + 1 < len(self.open) else None
        held = f"{int(inner) + 1:,} entries and more" if inner and inner.isdigit() else "more"
        what = f"{key} holds" if key else "the file holds"
        return YamlProblem(
            f"{what} over {MAX_EXPANDED_VALUES:,} values ({held}); a spec is refused past"
            f" {MAX_EXPANDED_VALUES:,} (a real one holds hundreds): is this the right file?",
            *((mark.line + 1, mark.column + 1) if mark else (1, 1)),
        )

    def bound_aliases(self, root: yaml.Node) -> None:
        """Refuse a document whose aliases expand it past :data:`MAX_EXPANDED_VALUES` values
        (the file itself holds fewer: see :meth:`compose_node`), pointing at the first
        top-level key whose value is too big."""
        total = self.sizes.get(id(root), 0)
        if total <= MAX_EXPANDED_VALUES:
            return
        line, col = 1, 1
        if isinstance(root, yaml.MappingNode):
            for key, value in root.value:
                if self.sizes.get(id(value), 0) > MAX_EXPANDED_VALUES // 10:
                    line, col = key.start_mark.line + 1, key.start_mark.column + 1
                    break
        raise YamlProblem(
            f"the YAML expands to {_count(total)} values through its aliases (*name), from"
            f" {self.values:,} in the file; a spec is refused past {MAX_EXPANDED_VALUES:,}"
            " (a 'billion laughs' document?)",
            line,
            col,
        )


def _count(n: int) -> str:
    return f"{n:,}" if n < 10**9 else f"{n:.1e}"


def _key_text(node: yaml.Node) -> str:
    """A key as text for positions and messages: a scalar's value (at most 80 characters), a
    null or boolean key in YAML's own words (``~:`` is ``null``, ``yes:`` is ``true``), as
    :func:`key_word` says the constructed key."""
    if not isinstance(node, yaml.ScalarNode):
        return "<complex key>"
    text = str(node.value)
    if node.tag == "tag:yaml.org,2002:null":
        text = "null"
    elif node.tag == "tag:yaml.org,2002:bool":
        text = key_word(yaml.constructor.SafeConstructor.bool_values.get(text.lower(), text))
    return text if len(text) <= 80 else text[:77] + "..."


def key_word(key: object) -> str:
    """A constructed key as the spec's messages name it: ``None`` is ``null``, ``True``
    ``true``, anything else its text."""
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def _walk(node: yaml.Node, path: str, pos: dict, seen: set) -> list[str]:
    """Record (key line, key col, value line, value col) of every key and list item under ``node``."""
    dups: list[str] = []
    if id(node) in seen:  # an alias: its positions are those of its anchor
        return dups
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys = set()
        for k, v in node.value:
            if k.tag == "tag:yaml.org,2002:merge":
                continue
            name = _key_text(k)
            sub = f"{path}.{name}" if path else name
            if sub in keys:
                dups.append(sub)
            keys.add(sub)
            km, vm = k.start_mark, v.start_mark
            pos[sub] = (km.line + 1, km.column + 1, vm.line + 1, vm.column + 1)
            dups += _walk(v, sub, pos, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            sub = f"{path}.{i}"
            pos[sub] = (v.start_mark.line + 1, v.start_mark.column + 1) * 2
            dups += _walk(v, sub, pos, seen)
    return dups
