"""Which frames are the user's, their source lines, and the loops that enclose a line.

A frame is the user's when its file is not part of Python, an installed package or nandoctor
itself: NumPy's own Python code (``np.mean`` → ``_methods._mean``) is walked through to the
user line that called it.
"""

from __future__ import annotations

import ast
import contextlib
import linecache
import os
import sys
import sysconfig
from dataclasses import dataclass
from functools import lru_cache
from types import CodeType, FrameType


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots |= {sys.prefix, sys.base_prefix, sys.exec_prefix}
    roots.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # nandoctor
    for name in ("numpy",):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            roots.add(os.path.dirname(module.__file__))
    return tuple(sorted(os.path.join(os.path.realpath(r), "") for r in roots))


_LIBRARY_ROOTS = _library_roots()
_USER_CODE: dict[CodeType, bool] = {}


def is_user_file(filename: str) -> bool:
    """True for the program's own files (a script, its helper modules, a notebook cell)."""
    if filename.startswith("<"):
        return not filename.startswith("<frozen")
    path = os.path.join(os.path.realpath(os.path.abspath(filename)), "")
    return not path.startswith(_LIBRARY_ROOTS)


# the code names of comprehension frames: their statement is the enclosing one's
COMPREHENSIONS = frozenset({"<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>"})


def is_user_code(code: CodeType) -> bool:
    known = _USER_CODE.get(code)
    if known is None:
        known = _USER_CODE[code] = is_user_file(code.co_filename)
    return known


def innermost_user_frame(frame: FrameType | None) -> FrameType | None:
    while frame is not None and not is_user_code(frame.f_code):
        frame = frame.f_back
    return frame


def user_frames(frame: FrameType | None) -> list[FrameType]:
    """The user's frames from ``frame`` outward, innermost first."""
    frames = []
    while frame is not None:
        if is_user_code(frame.f_code):
            frames.append(frame)
        frame = frame.f_back
    return frames


def display_path(filename: str) -> str:
    """The path as the program named it: relative to the working directory nandoctor was started
    in (:func:`paths_from`; a program may change its own) when under it."""
    if filename.startswith("<") or not os.path.isabs(filename):
        return filename
    try:
        rel = os.path.relpath(filename, _PATHS_FROM[0] or os.getcwd())
    except (ValueError, OSError):
        return filename
    return filename if rel.startswith("..") else rel


_PATHS_FROM: list[str | None] = [None]  # the directory display_path is relative to, if fixed


@contextlib.contextmanager
def paths_from(directory: str):
    """While the program runs (it may ``os.chdir``), paths are shown relative to ``directory``,
    where it was started, not to wherever it has gone."""
    saved = _PATHS_FROM[0]
    _PATHS_FROM[0] = directory
    try:
        yield
    finally:
        _PATHS_FROM[0] = saved


def source_line(filename: str, line: int) -> str:
    return linecache.getline(filename, line).strip()


@dataclass(frozen=True)
class Loop:
    """A ``for``/``while`` statement: its header line and the last line of its body."""

    file: str
    line: int
    end: int
    node: ast.AST

    def contains(self, line: int) -> bool:
        return self.line <= line <= self.end


@lru_cache(maxsize=256)
def parsed(filename: str) -> ast.Module | None:
    text = "".join(linecache.getlines(filename))
    if not text:
        return None
    try:
        return ast.parse(text)
    except SyntaxError:
        return None


COMPREHENSION_NODES = ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp
# the comprehensions that run in a code object of their own; since Python 3.12 (PEP 709) list,
# set and dict comprehensions run inline in the code around them, generator expressions do not
OWN_CODE = {
    "<genexpr>": ast.GeneratorExp,
    **(
        {}
        if sys.version_info >= (3, 12)
        else {"<listcomp>": ast.ListComp, "<setcomp>": ast.SetComp, "<dictcomp>": ast.DictComp}
    ),
}


@lru_cache(maxsize=256)
def loops_in(filename: str) -> tuple[Loop, ...]:
    """Every loop of ``filename``: ``for`` and ``while`` statements and comprehensions."""
    tree = parsed(filename)
    if tree is None:
        return ()
    return tuple(
        Loop(filename, n.lineno, n.end_lineno or n.lineno, n)
        for n in ast.walk(tree)
        if isinstance(n, ast.For | ast.While | ast.AsyncFor | COMPREHENSION_NODES)
    )


def loops_of(code: CodeType) -> list[Loop]:
    """The loops of ``code`` itself (a module's: all in its file; a function's: those between its
    ``def`` line and its last line; a comprehension's own code: that comprehension). A
    comprehension that runs in its own code object is not a loop of the code around it."""
    own = OWN_CODE.get(code.co_name)
    if own is not None:
        return _comprehension_of(code, own)
    first, last = code.co_firstlineno, _last_line(code)
    own_kinds = tuple(OWN_CODE.values())
    return [
        loop
        for loop in loops_in(code.co_filename)
        if (code.co_name == "<module>" or first < loop.line <= last)
        and not isinstance(loop.node, own_kinds)
    ]


def _comprehension_of(code: CodeType, kind: type) -> list[Loop]:
    """The comprehension ``code`` runs: of its kind, at its first line, and the innermost one
    whose columns hold the code's (``[[f(x) for x in row] for row in m]`` is two)."""
    columns = [c for line, _, c, _ in code.co_positions() if line == code.co_firstlineno and c]
    start = min(columns, default=0)
    found = [
        loop
        for loop in loops_in(code.co_filename)
        if isinstance(loop.node, kind)
        and loop.line == code.co_firstlineno
        and loop.node.col_offset <= start
    ]
    return [max(found, key=lambda loop: loop.node.col_offset)] if found else []


def next_pass(count: int | None, previous: int | None, loop: Loop) -> int:
    """The pass ``loop`` is in at a line event on its header: the next one when the line before
    (``previous``) was inside the loop, 1 when the loop is entered from outside it."""
    return (count or 0) + 1 if previous is not None and loop.contains(previous) else 1


def enclosing_loop(
    frame: FrameType, line: int | None = None, comprehensions: bool = True
) -> Loop | None:
    """The innermost loop of ``frame``'s own code that holds ``line`` (default: the line it is
    executing); a ``for`` or ``while`` statement only, unless ``comprehensions``."""
    line = frame.f_lineno if line is None else line
    inside = [
        loop
        for loop in loops_of(frame.f_code)
        if loop.contains(line)
        and (comprehensions or not isinstance(loop.node, COMPREHENSION_NODES))
    ]
    if not inside:
        return None
    return max(inside, key=lambda loop: loop.line)


def _last_line(code: CodeType) -> int:
    lines = [line for _, _, line in code.co_lines() if line is not None]
    return max(lines, default=code.co_firstlineno)


def innermost_loop(
    frames: list[FrameType], line: int | None = None
) -> tuple[FrameType, Loop] | tuple[None, None]:
    """Search outward through the user's frames for the first one executing inside a loop;
    ``line``, when given, is where the innermost frame stands (a line already left). A ``for``
    or ``while`` loop first, wherever it is: a training loop's pass tells more than that of a
    comprehension inside it (``[np.exp(x @ w) for w in W]``); a comprehension only when no such
    loop encloses the line."""
    for comprehensions in (False, True):
        for i, frame in enumerate(frames):
            loop = enclosing_loop(frame, line if i == 0 else None, comprehensions)
            if loop is not None:
                return frame, loop
    return None, None


def outer_loops(
    frames: list[FrameType], loop_frame: FrameType, loop: Loop, limit: int = 3
) -> list[tuple[FrameType, Loop]]:
    """The loops around ``loop`` (in ``loop_frame``, one of ``frames``), innermost first, at
    most ``limit``: those of its own code that hold it, then those of the frames that called it
    (the epoch loop around a batch loop, the training loop around the ``forward()`` call whose
    loop failed, the comprehension ``[train(lr) for lr in rates]`` around a training loop)."""
    found: list[tuple[FrameType, Loop]] = []
    start = next((i for i, f in enumerate(frames) if f is loop_frame), len(frames))
    for i in range(start, len(frames)):
        frame = frames[i]
        line = loop.line if frame is loop_frame else frame.f_lineno
        around = [
            other
            for other in loops_of(frame.f_code)
            if other is not loop
            and other.contains(line)
            and (frame is not loop_frame or other.line < loop.line)
        ]
        found += [(frame, other) for other in sorted(around, key=lambda o: -o.line)]
    return found[:limit]


SIMPLE_EXCLUDED = (
    ast.For, ast.While, ast.If, ast.With, ast.Try, ast.FunctionDef, ast.ClassDef,
    ast.AsyncFunctionDef,
)  # fmt: skip


@lru_cache(maxsize=256)
def statements_by_line(filename: str) -> dict[int, tuple[ast.stmt, ...]]:
    """line -> the simple statements that start at, or span, it, in source order (several when
    a line holds several: ``g = w * c; w = w + g; step += 1``)."""
    tree = parsed(filename)
    out: dict[int, list[ast.stmt]] = {}
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.stmt) and not isinstance(node, SIMPLE_EXCLUDED):
            for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
                out.setdefault(line, []).append(node)
    return {
        line: tuple(sorted(nodes, key=lambda n: (n.lineno, n.col_offset)))
        for line, nodes in out.items()
    }


def _holds(stmt: ast.stmt, line: int, column: int) -> bool:
    end = (stmt.end_lineno or stmt.lineno, stmt.end_col_offset or 0)
    return (stmt.lineno, stmt.col_offset) <= (line, column) < end


def statement_at(filename: str, line: int, column: int | None = None) -> ast.stmt | None:
    """The innermost simple statement that starts at, or spans, ``line``; at ``column`` (0-based,
    the position of an instruction: :func:`frame_column`) the one that holds it, when the line
    holds several. Without a column, the last of them."""
    found = statements_by_line(filename).get(line, ())
    if column is not None and len(found) > 1:
        found = tuple(s for s in found if _holds(s, line, column)) or found
    return found[-1] if found else None


def several_statements(filename: str, line: int) -> bool:
    """Whether ``line`` holds more than one simple statement (``a = f(x); b = g(a)``)."""
    return len(statements_by_line(filename).get(line, ())) > 1


_POSITIONS: dict[CodeType, tuple] = {}


def frame_column(frame: FrameType) -> int | None:
    """The 0-based column of the instruction ``frame`` is executing (the op NumPy's callback
    interrupted, the call into a callee), when its line holds several statements: which of them
    runs. None otherwise, or when the code has no column table."""
    code = frame.f_code
    if not several_statements(code.co_filename, frame.f_lineno):
        return None
    positions = _POSITIONS.get(code)
    if positions is None:
        positions = _POSITIONS[code] = tuple(code.co_positions())
    index = frame.f_lasti // 2  # one entry per 2-byte code unit
    if not 0 <= index < len(positions):
        return None
    line, _, column, _ = positions[index]
    return column if line == frame.f_lineno else None


def statement_source(filename: str, line: int, column: int | None = None) -> str:
    """The source of the statement at ``line`` (and ``column``): the whole line, stripped, unless
    the line holds several statements; then only the one at ``column`` (the last without one)."""
    if not several_statements(filename, line):
        return source_line(filename, line)
    stmt = statement_at(filename, line, column)
    text = ast.get_source_segment("".join(linecache.getlines(filename)), stmt) if stmt else None
    if not text:
        return source_line(filename, line)
    return text.splitlines()[line - stmt.lineno].strip()  # the part of it on ``line``
