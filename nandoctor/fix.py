"""Write a corrected spec: the user's file with one verified change, everything else kept.

ruamel.yaml's round-trip mode keeps comments, key order and formatting; each changed line gets an
end-of-line comment saying why.
"""

from __future__ import annotations

import copy
import difflib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.util import load_yaml_guess_indent

if TYPE_CHECKING:
    from nandoctor.diagnosis.findings import Diagnosis, Recommendation
    from nandoctor.spec.models import Spec


def _yaml(text: str) -> YAML:
    """A round-trip loader whose indentation matches ``text``'s."""
    _, indent, offset = load_yaml_guess_indent(text)
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=2, sequence=indent or 2, offset=offset or 0)
    return y


def apply_changes(text: str, changes: dict, why: str) -> str:
    """``text`` (a YAML spec) with dotted-key ``changes`` applied and commented.

    Only the changed place changes: a comment already on the line is kept and the reason
    appended to it; the file's line endings are kept; a mapping or list that carries a YAML
    anchor (shared with other places through ``*alias`` or ``<<:``) is replaced on the changed
    path by a private copy, so the other places keep their values - as in the verified run,
    where a change to ``model.layers.0`` changed that layer alone.
    """
    crlf = "\r\n" in text
    text = text.replace("\r\n", "\n") if crlf else text
    y = _yaml(text)
    doc = y.load(text)
    comment = f"nandoctor fix: {why}"
    for dotted, value in changes.items():
        parts = dotted.split(".")
        node, parent, key = doc, None, None
        for part in parts[:-1]:
            parent, key = node, _index(node, part)
            if isinstance(node, CommentedMap) and (part not in node or node[part] is None):
                node[part] = CommentedMap()
            node[key] = _private(node[key])
            node = node[key]
        last = _index(node, parts[-1])
        node[last] = value
        if isinstance(node, CommentedMap) and node.fa.flow_style():
            # A flow mapping ({units: 20, ...}) holds no comments: put it on the line it sits on.
            if parent is not None:
                _add_comment(parent, key, comment)
        else:
            _add_comment(node, last, comment)
    out = io.StringIO()
    y.dump(doc, out)
    new = out.getvalue()
    return new.replace("\n", "\r\n") if crlf else new


def _index(node, part: str):
    return int(part) if isinstance(node, CommentedSeq) else part


def _private(node):
    """``node`` itself, or an anchor-free copy of it when it carries an anchor (is shared)."""
    if not isinstance(node, CommentedMap | CommentedSeq) or node.anchor.value is None:
        return node
    mine = copy.deepcopy(node)
    mine.anchor.value = None
    return mine


def _add_comment(node, key, comment: str) -> None:
    """Put ``comment`` at the end of ``key``'s line, after the comment already there if any."""
    slot = 0 if isinstance(node, CommentedSeq) else 2
    entry = node.ca.items.get(key)
    token = entry[slot] if entry and len(entry) > slot else None
    if token is None or not token.value.lstrip().startswith("#"):
        node.yaml_add_eol_comment(comment, key)
        return
    first, newline, rest = token.value.partition("\n")
    if comment in first:  # two changed keys on one line (a flow mapping): one comment
        return
    token.value = f"{first.rstrip()}; {comment}{newline}{rest}"


def diff(old: str, new: str, path: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), path, f"{path} (fixed)"
        )
    )


@dataclass
class FixResult:
    """What ``fix`` found: the diagnosis, the best verified change that learns (if any), the
    fixed text, and the best change that only kept the values finite when none learned."""

    diagnosis: Diagnosis
    best: Recommendation | None
    old_text: str
    new_text: str | None
    seconds: float

    @property
    def kept(self) -> Recommendation | None:
        """The best change that only kept the values finite, when none learned: not a fix, not
        written (the recommendations are ranked, a learning one first)."""
        if self.best is not None:
            return None
        return next((r for r in self.diagnosis.recommendations if r.verified), None)

    @property
    def change(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.best.changes.items()) if self.best else ""

    def tried(self) -> str:
        recs = self.diagnosis.recommendations
        return (
            "; ".join(f"{r.id} ({r.evidence or 'not tried'})" for r in recs) or "nothing applicable"
        )


def fix_spec(
    spec: Spec,
    jobs: int | None = None,
    before_verify: Callable[[Diagnosis], Callable[..., None] | None] | None = None,
    full: bool = False,
    dest: Path | None = None,
) -> FixResult:
    """Diagnose ``spec``; when it went non-finite, verify the recommendations by re-running and
    apply the best verified one to the spec's own text. ``before_verify(diagnosis)`` sees the
    diagnosis (its recommendations are verified in place) and may return a per-recommendation
    ``on_done`` callback (a progress bar). ``dest``: where the fixed spec will be written; its
    relative file paths are rewritten to name the same files from there."""
    from nandoctor.examine import examine, verify_fixes

    started = time.perf_counter()
    diagnosis, outcome = examine(spec)
    text = Path(spec.path).read_bytes().decode("utf-8") if spec.path else ""
    if diagnosis.status != "nonfinite":
        return FixResult(diagnosis, None, text, None, time.perf_counter() - started)
    on_done = before_verify(diagnosis) if before_verify else None
    verify_fixes(diagnosis, outcome, jobs, on_done, full)
    # finite is not enough: a fix's re-run must learn (Recommendation.learns); a change that
    # keeps the values finite without learning is reported, never written
    best = next((r for r in diagnosis.recommendations if r.verified and r.learns), None)
    new = None
    if best:
        # The verified run had the --set overrides too: the written spec carries them.
        base = text
        for key, (item, value) in spec.overridden().items():
            base = apply_changes(base, {key: value}, f"--set {item}")
        new = apply_changes(base, best.changes, f"{best.id}, verified: {best.evidence}")
        moved = spec.paths_from(dest.parent) if dest is not None and spec.path else {}
        if moved:
            new = apply_changes(new, moved, "the same file, from this spec's folder")
    return FixResult(diagnosis, best, text, new, time.perf_counter() - started)
