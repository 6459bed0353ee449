"""Write a corrected spec: the user's file with one verified change, everything else kept.

ruamel.yaml's round-trip mode keeps comments, key order and formatting; each changed line gets an
end-of-line comment saying why.
"""

from __future__ import annotations

import difflib
import io
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.util import load_yaml_guess_indent


def _yaml(text: str) -> YAML:
    """A round-trip loader whose indentation matches ``text``'s."""
    _, indent, offset = load_yaml_guess_indent(text)
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=2, sequence=indent or 2, offset=offset or 0)
    return y


def apply_changes(text: str, changes: dict, why: str) -> str:
    """``text`` (a YAML spec) with dotted-key ``changes`` applied and commented."""
    y = _yaml(text)
    doc = y.load(text)
    comment = f"nandoctor fix: {why}"
    for dotted, value in changes.items():
        parts = dotted.split(".")
        node, parent, key = doc, None, None
        for part in parts[:-1]:
            parent, key = node, (int(part) if isinstance(node, CommentedSeq) else part)
            if isinstance(node, CommentedMap) and (part not in node or node[part] is None):
                node[part] = CommentedMap()
            node = node[key]
        last = int(parts[-1]) if isinstance(node, CommentedSeq) else parts[-1]
        node[last] = value
        if isinstance(node, CommentedMap) and node.fa.flow_style():
            # A flow mapping ({units: 20, ...}) holds no comments: put it on the line it sits on.
            if parent is not None:
                parent.yaml_add_eol_comment(comment, key)
        else:
            node.yaml_add_eol_comment(comment, last)
    out = io.StringIO()
    y.dump(doc, out)
    return out.getvalue()


def diff(old: str, new: str, path: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), path, f"{path} (fixed)"
        )
    )


def write(path: Path, text: str) -> None:
    """Write atomically: a temporary file beside the target, then a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
