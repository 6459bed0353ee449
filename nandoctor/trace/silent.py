"""The second pass for a NaN nobody computed: the first line that put one in a user variable.

A NaN read from a file or written as a literal raises no floating-point flag, so the callbacks
never see it. When the program ends holding NaN and no event explains it, the program is run
again with line events on the user's own code (slower: it says so); after each line, the
variables that line assigned (and a function's return value) are checked. Infinities written
from an ``inf`` literal on that line (``best = float('inf')``, ``np.full(n, np.inf)``) are
sentinels, not bad input.
"""

from __future__ import annotations

import ast
import math
from functools import lru_cache

import numpy as np

from nandoctor.trace import npstate
from nandoctor.trace.frames import is_user_code, parsed


def _store_targets(target: ast.expr) -> list[ast.expr]:
    match target:
        case ast.Tuple(elts=elts) | ast.List(elts=elts):
            return [t for e in elts for t in _store_targets(e)]
        case ast.Starred(value=v):
            return _store_targets(v)
        case ast.Subscript(value=base):
            return _store_targets(base)
        case ast.Name() | ast.Attribute():
            return [target]
    return []


@lru_cache(maxsize=256)
def assigned_by_line(filename: str) -> dict[int, tuple[str, ...]]:
    """line -> the expressions (as source) each statement starting there assigns."""
    tree = parsed(filename)
    out: dict[int, list[str]] = {}
    if tree is None:
        return {}
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = [t for tgt in node.targets for t in _store_targets(tgt)]
        elif isinstance(node, ast.AugAssign | ast.AnnAssign | ast.For):
            targets = _store_targets(node.target)
        if targets:
            out.setdefault(node.lineno, []).extend(ast.unparse(t) for t in targets)
    return {line: tuple(dict.fromkeys(names)) for line, names in out.items()}


def nonfinite_of(value) -> tuple[str, int, int] | None:
    """(kind, count, size) when ``value`` is a float (array) holding NaN or Inf."""
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return ("nan" if math.isnan(value) else "inf" if value > 0 else "-inf"), 1, 1
    if isinstance(value, np.ndarray | np.floating) and np.asarray(value).dtype.kind in "fc":
        a = np.asarray(value)
        with npstate.errstate(all="ignore"):
            bad = ~np.isfinite(a)
            count = int(np.count_nonzero(bad))
            if not count:
                return None
            kind = "nan" if np.isnan(a).any() else ("inf" if (a == np.inf).any() else "-inf")
        return kind, count, int(a.size)
    return None


class FirstNaNFinder:
    """A ``sys.settrace`` hook on user code that stops at the first variable holding NaN/Inf."""

    def __init__(self, on_found):
        self.on_found = on_found  # (frame, line, variable, (kind, count, size)) -> None
        self.last: dict[int, int] = {}
        self.sentinels: set[tuple] = set()  # (code, name) written from an inf literal

    def __call__(self, frame, event, arg):
        if not is_user_code(frame.f_code):
            return None
        self.last[id(frame)] = None
        return self.local

    def local(self, frame, event, arg):
        previous = self.last.get(id(frame))
        if previous is not None:
            self._check_line(frame, previous)
        if event == "return":
            self._check(frame, previous or frame.f_lineno, "return value", arg)
            self.last.pop(id(frame), None)
        else:
            self.last[id(frame)] = frame.f_lineno
        return self.local

    def _check_line(self, frame, line: int) -> None:
        from nandoctor.trace.evaluate import FrameEvaluator, Unsafe

        names = assigned_by_line(frame.f_code.co_filename).get(line, ())
        if not names:
            return
        evaluator = FrameEvaluator(frame)
        for name in names:
            try:
                value = evaluator.eval(ast.parse(name, mode="eval").body)
            except (Unsafe, Exception):
                continue
            self._check(frame, line, name, value)

    def _check(self, frame, line: int, name: str, value) -> None:
        found = nonfinite_of(value)
        if found is None:
            return
        from nandoctor.trace.frames import source_line

        if found[0] != "nan":
            key = (frame.f_code, name)
            if key in self.sentinels:
                return
            if "inf" in source_line(frame.f_code.co_filename, line):
                self.sentinels.add(key)  # a sentinel written from an inf literal
                return
        self.on_found(frame, line, name, found)
