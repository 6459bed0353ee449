"""The second pass for a NaN nobody computed: the first line that put one in a user variable.

A NaN read from a file or written as a literal raises no floating-point flag, so the callbacks
never see it. When the program ends holding NaN and no event explains it, the program is run
again with line events on the user's own code (slower: it says so); after each line, the
variables that line assigned (and a function's return value) are checked.

A NaN or Inf the program writes itself from a constant is a placeholder, not bad input:
``best = float('inf')``, ``history = np.full(n, np.nan)``, ``x[i] = np.nan``, ``np.where(m, x,
np.nan)``. The rule is read from the statement's syntax: it holds a nan/inf constant that is the
value itself, an operand of arithmetic, or an argument of a call that only places values (``full``,
``array``, ``where``, ...); a constant passed to any other call (``np.genfromtxt(...,
filling_values=np.nan)``) is a reader's, and what it returns came from outside. The placeholder
object (and its views, and any name bound to it: ``best = loss``, ``min(best, loss)``) is then
exempt, but any other value that later holds a NaN is reported,
even one computed from the placeholder.
"""

from __future__ import annotations

import ast
import contextlib
import math
import weakref
from functools import lru_cache

import numpy as np

from nandoctor.trace import npstate
from nandoctor.trace.evaluate import op_name
from nandoctor.trace.frames import (
    COMPREHENSIONS,
    is_user_code,
    next_pass,
    parsed,
    statement_at,
    statements_by_line,
)


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


@lru_cache(maxsize=256)
def read_by_line(filename: str) -> dict[int, tuple[str, ...]]:
    """line -> the names each assignment or ``return`` starting there reads (``w = w - lr * g``:
    ``w``, ``lr``, ``g``; ``acc *= c``: ``acc``, ``c``), to keep their values before it runs."""
    tree = parsed(filename)
    out: dict[int, list[str]] = {}
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Return):
            reads = [node.value] if node.value is not None else []
            if isinstance(node, ast.AugAssign):
                reads.append(node.target)
            names = [n.id for r in reads for n in ast.walk(r) if isinstance(n, ast.Name)]
            out.setdefault(node.lineno, []).extend(names)
    return {line: tuple(dict.fromkeys(names)) for line, names in out.items()}


NONFINITE_NAMES = frozenset(
    {"nan", "NaN", "NAN", "inf", "Inf", "Infinity", "infty", "PINF", "NINF"}
)
PLACING_CALLS = frozenset(
    {"full", "full_like", "fill", "array", "asarray", "asanyarray", "float", "where", "select"}
    | {"repeat", "tile", "broadcast_to", "append", "concatenate", "stack", "hstack", "vstack"}
    | {"copyto", "put", "place", "putmask", "insert", "pad", "float16", "float32", "float64"}
)


def _is_nonfinite_constant(node: ast.AST) -> bool:
    """``np.nan``, ``math.inf``, ``nan``, ``float('inf')``, ``1e999``."""
    match node:
        case ast.Attribute(attr=attr) | ast.Name(id=attr):
            return attr in NONFINITE_NAMES
        case ast.Call(
            func=ast.Name(id="float") | ast.Attribute(), args=[ast.Constant(value=str(text))]
        ):
            try:
                return not math.isfinite(float(text))
            except ValueError:
                return False
        case ast.Constant(value=float(v)):
            return not math.isfinite(v)
    return False


def constant_written(filename: str, kind: str) -> ast.AST | None:
    """The first NaN (``kind`` "nan") or Inf ("inf", "-inf": either sign) constant written in
    ``filename``'s source (``default=float("inf")``, ``np.nan``), or None."""
    tree = parsed(filename)
    want_nan = kind == "nan"
    for node in ast.walk(tree) if tree is not None else ():
        if _is_nonfinite_constant(node) and ("nan" in ast.unparse(node).lower()) == want_nan:
            return node
    return None


def writes_constant(stmt: ast.stmt | None) -> bool:
    """True when ``stmt`` writes a NaN/Inf from a constant of its own: a placeholder."""
    if stmt is None:
        return False
    parents = {id(c): n for n in ast.walk(stmt) for c in ast.iter_child_nodes(n)}
    for node in ast.walk(stmt):
        if not _is_nonfinite_constant(node):
            continue
        up = parents.get(id(node))
        while up is not None and not isinstance(up, ast.Call | ast.stmt):
            up = parents.get(id(up))
        if not isinstance(up, ast.Call) or op_name(up) in PLACING_CALLS:
            return True
    return False


# calls that parse a number from text: ``float("inf")`` of a str read at run time
PARSING_CALLS = frozenset({"float", "float16", "float32", "float64", "double", "longdouble"})


def parses_text(stmt: ast.stmt | None, evaluator) -> bool:
    """``clip = float(cfg["clip_norm"])``, ``tol = float(sys.argv[1])``: ``stmt`` assigns the
    float parsed from a text (a str or bytes from a config, the command line, the environment;
    ``evaluator`` reads its names as they were before it ran)."""
    value = getattr(stmt, "value", None)
    if not isinstance(stmt, ast.Assign | ast.AnnAssign) or not isinstance(value, ast.Call):
        return False
    if op_name(value) not in PARSING_CALLS or len(value.args) != 1 or value.keywords:
        return False
    arg = value.args[0]
    try:
        text = evaluator.eval(arg)
    except Exception:  # Unsafe included: cfg.get("clip", "inf") is read apart
        text = _got(arg, evaluator)
    return isinstance(text, str | bytes)


def _got(node: ast.AST, evaluator):
    """``cfg.get("clip", "inf")``, ``os.environ.get("CLIP")``: a mapping's ``get`` of constants
    (no side effect), or None."""
    from collections.abc import Mapping

    match node:
        case ast.Call(func=ast.Attribute(value=owner, attr="get"), args=args, keywords=[]):
            if not all(isinstance(a, ast.Constant) for a in args):
                return None
            try:
                mapping = evaluator.eval(owner)
            except Exception:
                return None
            if isinstance(mapping, Mapping):
                return mapping.get(*(a.value for a in args))
    return None


def last_assignment(filename: str, first: int, before: int, name: str) -> ast.stmt | None:
    """The last statement in lines [first, before) of ``filename`` that assigns ``name`` (an
    ``=``, ``+=`` or annotated assignment; not a ``for`` target)."""
    lines = [n for n, names in assigned_by_line(filename).items() if name in names]
    for line in sorted((n for n in lines if first <= n < before), reverse=True):
        stmt = statement_at(filename, line)
        if isinstance(stmt, ast.Assign | ast.AugAssign | ast.AnnAssign) and stmt.lineno == line:
            return stmt
    return None


def placeholder_origin(filename: str, first: int, before: int, name: str) -> dict | None:
    """Where ``name``, an operand holding NaN/Inf at line ``before``, was last written from a
    constant of the program's own (``x = np.where(m, x, -np.inf)``), directly or through one
    assignment that reads such a name (``mx = x.max()``): ``{"line", "source", "via"}``."""
    stmt = last_assignment(filename, first, before, name)
    if stmt is None:
        return None
    if writes_constant(stmt):
        return {"line": stmt.lineno, "source": ast.unparse(stmt), "via": None}
    read = [n.id for n in ast.walk(stmt.value) if isinstance(n, ast.Name)] if stmt.value else []
    for other in dict.fromkeys(read):
        source = last_assignment(filename, first, stmt.lineno, other)
        if other != name and source is not None and writes_constant(source):
            return {"line": source.lineno, "source": ast.unparse(source), "via": other}
    return None


def _is_number(value) -> bool:
    if isinstance(value, bool | int | float | np.generic):
        return not isinstance(value, np.str_ | np.bytes_)
    return isinstance(value, np.ndarray) and value.dtype.kind in "biufc"


def statement_assigning(filename: str, line: int, name: str) -> ast.stmt | None:
    """The statement at ``line`` that assigns ``name`` (the last of them, when the line holds
    several statements: ``best = np.inf; x = f(x)``); else the one :func:`statement_at` gives."""
    for stmt in reversed(statements_by_line(filename).get(line, ())):
        if name in assigned_by_statement(stmt):
            return stmt
    return statement_at(filename, line)


def assigned_by_statement(stmt: ast.stmt) -> tuple[str, ...]:
    """The expressions (as source) one statement assigns (``assigned_by_line``'s rule)."""
    targets: list[ast.expr] = []
    if isinstance(stmt, ast.Assign):
        targets = [t for tgt in stmt.targets for t in _store_targets(tgt)]
    elif isinstance(stmt, ast.AugAssign | ast.AnnAssign):
        targets = _store_targets(stmt.target)
    return tuple(dict.fromkeys(ast.unparse(t) for t in targets))


def created_by(frame, line: int, inputs: dict) -> dict | None:
    """The op of the statement at ``line`` that made a NaN or Inf from finite numbers without a
    NumPy flag (Python float arithmetic, ``np.einsum``), re-evaluated on what its names held
    before it ran (``inputs``): ``{"op", "operands", "names", "value", "python"}``. None when an
    input was not a number (a path, a string: what a reader or ``float(s)`` returns is data) or
    the op cannot be read without side effects.

    A line of several statements (``g = w * c; w = w + g``) is re-evaluated statement by
    statement, in order, each on what the ones before it assigned."""
    import types

    from nandoctor.trace.evaluate import FrameEvaluator, statement_value

    numbers = [v for v in inputs.values() if not isinstance(v, types.ModuleType)]
    if not numbers or not all(_is_number(v) for v in numbers):
        return None
    stmts = statements_by_line(frame.f_code.co_filename).get(line, ())
    scope = {**frame.f_locals, **inputs}
    for stmt in stmts:
        root = statement_value(stmt)
        if root is None:
            continue
        before = types.SimpleNamespace(f_locals=scope, f_globals=frame.f_globals)
        evaluator = FrameEvaluator(before)
        try:
            with npstate.errstate(all="ignore"):
                result = evaluator.eval(root)
        except Exception:  # Unsafe included: a call nandoctor does not repeat
            made = _made_in(evaluator)  # in what it was given: ``xs.append(w * 1e308)``
            if made is not None or len(stmts) == 1:
                return made or None
            # what it assigned, as the line left it, for the statements after it
            scope |= {n: frame.f_locals[n] for n in _stored_names(stmt) if n in frame.f_locals}
            continue
        made = _made_in(evaluator)
        if made is not None:
            return made or None  # False: carried in, not made here
        assigned = assigned_by_statement(stmt)
        if isinstance(stmt, ast.Assign | ast.AnnAssign) and assigned == (
            ast.unparse(stmt.targets[0] if isinstance(stmt, ast.Assign) else stmt.target),
        ):
            scope[assigned[0]] = result  # a plain ``name = ...``; others: as the line left them
        elif isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
            scope[stmt.target.id] = result
        else:
            scope |= {n: frame.f_locals[n] for n in _stored_names(stmt) if n in frame.f_locals}
    return None


def _stored_names(stmt: ast.stmt) -> set[str]:
    return {
        n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }


def _made_in(evaluator) -> dict | None:
    """The first op ``evaluator`` ran that made a NaN or Inf from finite numbers (see
    :func:`created_by`); False when one was carried in by an operand; else None."""
    from nandoctor.trace.evaluate import _names, _operands, value_kind

    for node, kinds, value, args in evaluator.raised:
        made = value_kind(value)
        given = [a for a in args if not isinstance(a, str)]
        if made is None or not given or not all(_is_number(a) for a in given):
            continue
        if any(value_kind(a) is not None for a in given):
            return False  # carried in, not made here
        return {
            "op": op_name(node),
            "operands": _operands(node, args, evaluator),
            "names": _names(node, evaluator),
            "value": made,
            # Python's own numbers (np.float64 is a float too, but NumPy's arithmetic)
            "python": all(type(a) in (int, float) for a in given),
            # the flags the op raises when re-run (a process whose events were not watched)
            "flagged": sorted(kinds),
        }
    return None


def unread_call(frame, line: int, inputs: dict, value: str) -> dict | None:
    """When every name the statement at ``line`` read held finite numbers before it ran and it
    calls what nandoctor does not re-run (a library's or the user's function): that call made
    the NaN/Inf, it did not come in with data. ``{"op", "unread": True, ...}``, else None."""
    import types

    from nandoctor.trace.evaluate import describe

    numbers = {n: v for n, v in inputs.items() if not isinstance(v, types.ModuleType)}
    if not numbers or not all(_is_number(v) for v in numbers.values()):
        return None
    stmts = statements_by_line(frame.f_code.co_filename).get(line, ())
    calls = [n for stmt in stmts for n in ast.walk(stmt) if isinstance(n, ast.Call)]
    if not calls or any(
        isinstance(n, ast.Constant) and isinstance(n.value, str | bytes)
        for stmt in stmts
        for n in ast.walk(stmt)
    ):
        return None  # no call, or a path or text given to one: a reader's
    return {
        "op": ast.unparse(calls[0].func),
        "operands": [(n, d) for n, v in numbers.items() if (d := describe(v)) is not None],
        "names": {},
        "value": value,
        "python": False,
        "unread": True,
    }


MAX_SIZES = 4096  # input sizes kept per statement (the first passes, then the latest)
MAX_MEASURED = 1024  # an array input larger than this is not measured at each line


def _magnitudes(inputs: dict) -> dict:
    """The largest finite |x| of each number input (scalars, arrays up to MAX_MEASURED), by name:
    each apart, so that the growth is the input's that grew, not a constant's beside it."""
    sizes = {}
    for name, v in inputs.items():
        size = _magnitude([v])
        if size is not None:
            sizes[name] = size
    return sizes


def _magnitude(values) -> float | None:
    """The largest finite |x| among number inputs (scalars, arrays up to MAX_MEASURED)."""
    best = None
    for v in values:
        if isinstance(v, bool):
            continue
        if isinstance(v, int | float | np.floating | np.integer):
            m = abs(float(v))
        elif isinstance(v, np.ndarray) and 0 < v.size <= MAX_MEASURED and v.dtype.kind in "iuf":
            m = float(np.abs(v).max())  # abs and max raise no flag on finite numbers
            if not math.isfinite(m):  # some entries non-finite: the finite ones
                with npstate.errstate(all="ignore"):
                    a = np.abs(v[np.isfinite(v)])
                m = float(a.max()) if a.size else math.nan
        else:
            continue
        if math.isfinite(m):
            best = m if best is None else max(best, m)
    return best


_AROUND: dict[tuple, object] = {}  # (code, line) -> the innermost loop of code holding line


def _pass_around(frame, line: int, passes: dict) -> int | None:
    """The pass (as counted in ``passes``) of the innermost loop around ``line`` of ``frame``,
    or of a caller's loop around its call."""
    from nandoctor.trace.frames import enclosing_loop

    while frame is not None:
        if is_user_code(frame.f_code):
            key = (frame.f_code, line)
            if key not in _AROUND:
                _AROUND[key] = enclosing_loop(frame, line)
            loop = _AROUND[key]
            if loop is not None:
                return passes.get(id(frame), {}).get(loop.line)
        frame = frame.f_back
        line = frame.f_lineno if frame is not None else 0
    return None


MAX_SEQUENCE = 100_000  # a list, tuple or dict of numbers longer than this is not read


def float_values(value) -> np.ndarray | None:
    """A list, tuple or dict (its values) of Python or NumPy numbers with at least one float,
    as an array (``scores = [0.11, 0.10, nan]``); None for anything else."""
    if isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, list | tuple) or not value or len(value) > MAX_SEQUENCE:
        return None
    if not all(isinstance(v, int | float | np.integer | np.floating) for v in value):
        return None
    if not any(isinstance(v, float | np.floating) for v in value):
        return None
    return np.asarray(value, dtype=np.float64)


def nonfinite_of(value) -> tuple[str, int, int, dict] | None:
    """(kind, count, size, how many of each kind) when ``value`` is a float (array), or a
    list/tuple/dict of numbers, holding NaN or Inf: the kind the first NaN, else Inf, else -Inf;
    the counts ``{"nan", "posinf", "neginf"}`` as an operand's numbers keep them."""
    if isinstance(value, list | tuple | dict):
        value = float_values(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        kind = "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"
        key = {"nan": "nan", "inf": "posinf", "-inf": "neginf"}[kind]
        return kind, 1, 1, {"nan": 0, "posinf": 0, "neginf": 0} | {key: 1}
    if isinstance(value, np.ndarray | np.floating) and np.asarray(value).dtype.kind in "fc":
        a = np.asarray(value)
        with npstate.errstate(all="ignore"):
            bad = ~np.isfinite(a)
            count = int(np.count_nonzero(bad))
            if not count:
                return None
            held = a[bad]  # the non-finite values alone: counted without more whole passes
            counts = {"nan": int(np.count_nonzero(np.isnan(held)))}
            counts["posinf"] = int(np.count_nonzero(held == np.inf))
            counts["neginf"] = int(np.count_nonzero(held == -np.inf))
        kind = "nan" if counts["nan"] else ("inf" if counts["posinf"] else "-inf")
        return kind, count, int(a.size), counts
    return None


MAX_PLACEHOLDERS = 5  # placeholders named in the report
TAKING_CALLS = frozenset({"zip", "enumerate", "reversed", "iter", "list", "tuple"})
# what an index that only picks elements is made of: a[0], a[-1], a[1:], a[i]
INDEXING = (ast.Constant, ast.Slice, ast.UnaryOp, ast.unaryop, ast.Name, ast.expr_context)


def _taken_from(text: str) -> list[str]:
    """The names a one-line assignment or ``for`` header only takes elements out of (``x = a``,
    ``x = a[0]``, ``for u, v in zip(a[:-1], a[1:]):``); [] when it computes anything."""
    try:
        tree = ast.parse(text + " pass" if text.startswith("for ") else text)
    except SyntaxError:
        return []
    stmt = tree.body[0] if tree.body else None
    if isinstance(stmt, ast.Assign):
        source = stmt.value
    elif isinstance(stmt, ast.For):
        source = stmt.iter
    else:
        return []
    names: list[str] = []

    def takes(node: ast.AST) -> bool:
        match node:
            case ast.Name(id=name):
                names.append(name)
                return True
            case ast.Subscript(value=inner, slice=index):
                return takes(inner) and all(isinstance(n, INDEXING) for n in ast.walk(index))
            case ast.Call(func=ast.Name(id=fn), args=args, keywords=[]) if fn in TAKING_CALLS:
                return all(takes(a) for a in args)
        return False

    return names if takes(source) else []


def _holds(a: np.ndarray, v: float) -> bool:
    """Whether ``a`` holds the non-finite value ``v`` (a NaN, or an Inf of that sign)."""
    return bool(np.isnan(a).any() if math.isnan(v) else (a == v).any())


def _is_numbers(value) -> bool:
    return (
        isinstance(value, float | np.floating | np.ndarray) and np.asarray(value).dtype.kind == "f"
    )


def _loop_headers(code) -> dict:
    """header line -> ``frames.Loop``, for the loops of ``code`` itself (kept by the code's id
    with the code object held, so that a line event costs one dict lookup, not a code hash)."""
    held = _HEADERS.get(id(code))
    if held is None or held[0] is not code:
        held = _HEADERS[id(code)] = (code, _headers_of(code))
    return held[1]


_HEADERS: dict[int, tuple] = {}


def _headers_of(code) -> dict:
    from nandoctor.trace.frames import loops_of

    return {loop.line: loop for loop in loops_of(code)}


class FirstNaNFinder:
    """A ``sys.settrace`` hook on user code that stops at the first variable holding NaN/Inf."""

    def __init__(self, on_found, on_spread=None):
        # (frame, line, variable, (kind, count, size), created_by(...) or None) -> None
        self.on_found = on_found
        # (FirstNonFinite where an Inf was parsed from text, its spread: see _spreads) -> None
        self.on_spread = on_spread
        # an Inf parsed from text (``clip = float(cfg["clip"])``), or a scalar computed from one
        # alone (``lo = -clip``), by id (held in ``scalars``): where it was parsed
        self.parsed: dict[int, object] = {}
        self.last: dict[int, int] = {}
        self.sentinels: set[tuple] = set()  # (code, name) of a scalar written from a constant
        # those scalars themselves, by id (held, so their ids stay theirs): a name bound to one
        # is the placeholder (one per name: a name seen again is a sentinel already)
        self.scalars: dict[int, object] = {}
        # arrays written from a nan/inf constant, by id; weakly held: one the program dropped
        # leaves (its id may be reused), so a loop's new placeholder each pass costs nothing
        self.placeholders: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self.seen: list[dict] = []  # where the placeholders were written, for the report
        # per frame, the pass each loop of its code is in (frames.next_pass, as loops.LoopCounter)
        self.passes: dict[int, dict[int, int]] = {}
        # per frame, (line, {name: value}) the statement there read, kept before it ran
        self.inputs: dict[int, tuple[int, dict]] = {}
        # values computed only from the program's own constants (``best - val`` with ``best =
        # np.inf``): where each variable first held one, as ``first_silent`` JSON
        self.derived: list[dict] = []
        # (code, line) -> [(pass, {input: max |x|})]: the sizes of a statement's finite number
        # inputs at each pass of the loop around it, since that loop was last entered (the
        # growth of an op that made an Inf without a flag)
        self.sizes: dict[tuple, list[tuple[int, dict]]] = {}

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
            if frame.f_code.co_name not in COMPREHENSIONS:  # its statement's target is named
                self._check(frame, previous or frame.f_lineno, "return value", arg)
            self.last.pop(id(frame), None)
            self.passes.pop(id(frame), None)
            self.inputs.pop(id(frame), None)
        else:
            line = frame.f_lineno
            loop = _loop_headers(frame.f_code).get(line)
            if loop is not None:
                passes = self.passes.setdefault(id(frame), {})
                passes[line] = next_pass(passes.get(line), previous, loop)
            self.last[id(frame)] = line
            self._keep_inputs(frame, line)
        return self.local

    def _keep_inputs(self, frame, line: int) -> None:
        """What the names the statement at ``line`` reads hold before it runs (references: an
        array changed in place is seen as it is after)."""
        names = read_by_line(frame.f_code.co_filename).get(line)
        if not names:
            self.inputs.pop(id(frame), None)
            return
        scopes = (frame.f_locals, frame.f_globals)
        kept = {}
        for name in names:
            for scope in scopes:
                if name in scope:
                    kept[name] = scope[name]
                    break
        self.inputs[id(frame)] = (line, kept)
        with contextlib.suppress(Exception):  # a number too large for a float (10**400)
            self._keep_size(frame, line, kept)

    def _keep_size(self, frame, line: int, inputs: dict) -> None:
        size = _magnitudes(inputs)
        if not size:
            return
        found = _pass_around(frame, line, self.passes)
        if found is None:
            return
        history = self.sizes.setdefault((frame.f_code, line), [])
        if found == 1 and history and history[-1][0] != 1:
            history.clear()  # the loop entered anew (a function called again)
        history.append((found, size))
        if len(history) > MAX_SIZES:  # the first passes and the latest ones
            del history[MAX_SIZES // 4 : len(history) - MAX_SIZES // 2]

    def growth_at(self, frame, line: int) -> list[tuple[int, float]]:
        """The size of the input that grew at each pass at ``line`` of ``frame``'s code, in
        order (:func:`.loops.grown`)."""
        from nandoctor.trace.loops import grown

        return grown(self.sizes.get((frame.f_code, line), []))

    def pass_of(self, frame, loop) -> int | None:
        """The pass ``frame`` is in of ``loop`` (a ``frames.Loop`` of its code), as counted."""
        return self.passes.get(id(frame), {}).get(loop.line)

    def _check_line(self, frame, line: int) -> None:
        from nandoctor.trace.evaluate import FrameEvaluator, Unsafe

        names = assigned_by_line(frame.f_code.co_filename).get(line, ())
        if not names:
            return
        evaluator = FrameEvaluator(frame)
        nodes = [ast.parse(name, mode="eval").body for name in names]  # alive: ids are memo keys
        for name, node in zip(names, nodes, strict=True):
            try:
                value = evaluator.eval(node)
            except (Unsafe, Exception):
                continue
            self._check(frame, line, name, value)

    def _check(self, frame, line: int, name: str, value) -> None:
        found = nonfinite_of(value)
        if found is None:
            return
        if self._placeholder(value, (frame.f_code, name)) or self._taken_out(frame, line, value):
            return
        from nandoctor.trace.frames import display_path, source_line

        filename = frame.f_code.co_filename
        if name != "return value" and writes_constant(statement_assigning(filename, line, name)):
            if isinstance(value, np.ndarray):
                self.placeholders[id(value)] = value
            else:
                self.sentinels.add((frame.f_code, name))
                self.scalars[id(value)] = value
            if len(self.seen) < MAX_PLACEHOLDERS:
                where = {"file": display_path(filename), "line": line}
                self.seen.append(where | {"variable": name, "value": found[0]})
                self.seen[-1]["source"] = source_line(filename, line)
            return
        kept_line, inputs = self.inputs.get(id(frame), (None, {}))
        inputs = inputs if kept_line == line else {}
        if name != "return value" and self._parsed(frame, line, name, value, found, inputs):
            return
        try:
            carried = {n: v for n, v in inputs.items() if nonfinite_of(v) is not None}
        except Exception:  # an input not readable as numbers (a list of huge ints)
            carried, inputs = {}, {}
        code = frame.f_code
        if carried and all(self._placeholder(v, (code, n)) for n, v in carried.items()):
            origins = [self.parsed[id(v)] for v in carried.values() if id(v) in self.parsed]
            if origins and self._spreads(frame, line, name, value, found, origins[0]):
                return
            self._derived(frame, line, name, value, found, sorted(carried))
            return
        made = None if carried else created_by(frame, line, inputs)
        if made is None and not carried:
            made = unread_call(frame, line, inputs, found[0])
        self.on_found(frame, line, name, found, made)

    def _parsed(self, frame, line: int, name: str, value, found: tuple, inputs: dict) -> bool:
        """An Inf scalar the statement at ``line`` parsed from text (``clip =
        float(cfg["clip_norm"])``, "inf" meaning no limit): a sentinel of the program's input,
        not a failure while it is only compared or printed. Kept as a placeholder, with where it
        was parsed (for :meth:`_spreads`). A NaN parsed from text is data."""
        import types

        from nandoctor.trace.evaluate import FrameEvaluator
        from nandoctor.trace.events import first_silent
        from nandoctor.trace.frames import display_path, source_line

        if found[0] == "nan" or not isinstance(value, float | np.floating):
            return False
        before = types.SimpleNamespace(
            f_locals={**frame.f_locals, **inputs}, f_globals=frame.f_globals
        )
        filename = frame.f_code.co_filename
        if not parses_text(statement_assigning(filename, line, name), FrameEvaluator(before)):
            return False
        self.scalars[id(value)] = value
        self.parsed[id(value)] = first_silent(frame, line, name, found, self.pass_of)
        if len(self.seen) < MAX_PLACEHOLDERS:
            where = {"file": display_path(filename), "line": line, "variable": name}
            self.seen.append(where | {"value": found[0], "source": source_line(filename, line)})
            self.seen[-1]["parsed"] = True
        return True

    def _spreads(self, frame, line: int, name: str, value, found: tuple, origin) -> bool:
        """``value``, computed only from placeholders at least one of which is an Inf parsed from
        text (``origin``: where), took it into arithmetic that made non-finite values: an array
        (``w = w * clip``) or a NaN. Then the parsed Inf is reported where it came in, with this
        spread, and True. A scalar Inf (``lo = -clip``) stays a sentinel: False, and it is kept
        with the same origin."""
        from nandoctor.trace.frames import display_path, source_line

        if found[0] != "nan" and isinstance(value, float | np.floating):
            self.scalars[id(value)] = value
            self.parsed[id(value)] = origin
            return True
        if self.on_spread is None:
            return False
        filename = frame.f_code.co_filename
        spread = {"variable": name, "file": display_path(filename), "line": line}
        spread |= {"source": source_line(filename, line), "value": found[0]}
        self.on_spread(origin, spread)
        return True

    def _derived(self, frame, line: int, name: str, value, found: tuple, sources: list) -> None:
        """``value`` was computed from the program's own constants only: not data, not made by
        an op from finite numbers. It is exempt as they are, and noted where first seen."""
        if isinstance(value, np.ndarray):
            self.placeholders[id(value)] = value
        else:
            self.scalars[id(value)] = value
        if any(d["variable"] == name for d in self.derived):  # each variable once, all kept:
            return  # one of them still holding it at the end is reported
        from nandoctor.trace.events import first_silent

        first = first_silent(frame, line, name, found, self.pass_of).to_json()
        self.derived.append(first | {"from": sources})

    def _taken_out(self, frame, line: int, value) -> bool:
        """``lo = edges[0]``, ``for e in edges:``, ``curve = list(hist)``: the statement only
        takes elements out of a placeholder array (indexing, iterating, zipping, listing; no
        arithmetic, no reduction) and ``value`` holds no non-finite value that array does not:
        the program's own constant still, and so is a name later bound to it (``last = e``).
        ``history.mean()`` computes from one: not taken out."""
        from nandoctor.trace.frames import source_line

        held = float_values(value) if isinstance(value, list | tuple | dict) else value
        if not self.placeholders or not _is_numbers(held):
            return False
        sources = []
        for name in _taken_from(source_line(frame.f_code.co_filename, line)):
            read = frame.f_locals.get(name, frame.f_globals.get(name))
            if isinstance(read, np.ndarray) and self._placeholder(read, (None, name)):
                sources.append(read)
        with npstate.errstate(all="ignore"):
            held = np.asarray(held, dtype=float)
            bad = held[~np.isfinite(held)].ravel()[:64]
            taken = any(all(_holds(p, v) for v in bad) for p in sources)
        if taken and isinstance(value, np.ndarray):
            self.placeholders[id(value)] = value
        elif taken:
            self.scalars[id(value)] = value
        return taken

    def _placeholder(self, value, key: tuple) -> bool:
        if not isinstance(value, np.ndarray):
            # ``best = loss`` or ``best = min(best, loss)`` binds the placeholder object itself
            return key in self.sentinels or self.scalars.get(id(value)) is value
        base = value.base
        held = self.placeholders.get
        return held(id(value)) is value or (base is not None and held(id(base)) is base)
