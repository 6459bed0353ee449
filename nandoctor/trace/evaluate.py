"""Read the failing op back from the user's source line, with the operands' numbers.

NumPy's error callback is told only the kind of event (``overflow``), not the op. So at the event
the statement being executed is re-evaluated from its syntax tree, one node at a time, on the
frame's own values: the first node whose own application raises the same flag is the op, and its
evaluated children are its operands. Only side-effect-free nodes are evaluated (names, plain
attributes, subscripts, arithmetic, NumPy functions and array methods — never the user's own
functions nor ``np.random``); the arguments of a call not run are (``print(v.mean())``: Python
evaluates them first); anything else leaves the op to be guessed from the line's text.
"""

from __future__ import annotations

import ast
import builtins
import math
import operator
from dataclasses import dataclass, field
from types import FrameType, ModuleType

import numpy as np

from nandoctor.trace import npstate
from nandoctor.trace.frames import COMPREHENSIONS

BINARY = {
    ast.Add: ("add", operator.add),
    ast.Sub: ("subtract", operator.sub),
    ast.Mult: ("multiply", operator.mul),
    ast.Div: ("divide", operator.truediv),
    ast.FloorDiv: ("floor_divide", operator.floordiv),
    ast.Mod: ("remainder", operator.mod),
    ast.Pow: ("power", operator.pow),
    ast.MatMult: ("matmul", operator.matmul),
    ast.BitAnd: ("bitwise_and", operator.and_),
    ast.BitOr: ("bitwise_or", operator.or_),
    ast.BitXor: ("bitwise_xor", operator.xor),
}
COMPARE = {
    ast.Gt: ("greater", operator.gt),
    ast.GtE: ("greater_equal", operator.ge),
    ast.Lt: ("less", operator.lt),
    ast.LtE: ("less_equal", operator.le),
    ast.Eq: ("equal", operator.eq),
    ast.NotEq: ("not_equal", operator.ne),
}
UNARY = {ast.USub: ("negative", operator.neg), ast.UAdd: ("positive", operator.pos)}
SAFE_BUILTINS = {abs, float, min, max, sum, len, int, round}
MUTATING_METHODS = {"fill", "sort", "resize", "put", "itemset", "setfield", "partition", "setflags"}

# Ops that can raise each kind, for when the line cannot be re-evaluated.
LIKELY_OPS = {
    "overflow": ("exp", "power", "square", "matmul", "dot", "multiply", "add", "subtract", "sum"),
    "divide_by_zero": ("log", "divide", "log2", "log10", "reciprocal", "power"),
    "invalid": ("divide", "sqrt", "log", "subtract", "multiply", "add", "arccos", "arcsin"),
}


DISCARDED = "expression statement"  # the absorber of a bare expression's value: none kept it
EXPONENTIALS = ("exp", "exp2", "expm1")  # a sigmoid's or softmax's: pinned when they under/overflow


class Unsafe(Exception):
    """This node cannot be evaluated without possible side effects."""


class UnsafeCall(Unsafe):
    """A call of what nandoctor does not run (``print``, ``xs.append``, the user's function),
    raised once its arguments were evaluated, as Python evaluates them before the call:
    ``args`` are what it would be given."""

    def __init__(self, name: str, node: ast.Call, args: list):
        super().__init__(name)
        self.node, self.args = node, args


@dataclass
class LineReading:
    """What re-evaluating the failing statement told: the op, its operands, the value made."""

    op: str = "?"
    operands: list[tuple[str, dict]] = field(default_factory=list)  # (source text, numbers)
    value: str | None = None  # nan | inf | -inf: what the op produced
    absorbed: bool = False  # the statement's own result stayed finite (e.g. 1/(1+inf) = 0)
    absorber: str | None = None  # the op that made it finite again (``divide``, ``where``)
    reproduced: bool = False  # the op was found by re-evaluation, not guessed
    node: ast.AST | None = None  # the op's node, to re-read its operands later
    names: dict[str, dict] = field(default_factory=dict)  # variables inside the operands
    result: object = None  # the value the statement keeps (its root expression's)
    # kept in a variable that the next statements reading it absorbed: (op, line) of the first
    later: tuple[str, int] | None = None
    # the op's result is integers (``totals // counts``): it made no NaN or Inf (a division by
    # 0 gives 0, an overflow wraps around), whatever flag it raised
    integer: bool = False


LIMIT_TOL = 1e-3  # a value in (0, 1) this close to 0 or 1 is near its limit (as saturation)
GRID_TOL = 1e-6  # how far from a whole multiple of the grid's step a value may round


def on_grid(values: np.ndarray) -> bool:
    """Whether ``values`` take at least 3 distinct values, each a whole multiple of the smallest
    gap between them and 0: data on a grid (counts / total, pixels / 255), not the continuous
    output of a function such as a sigmoid, whose values sit at no common step."""
    levels = np.unique(values)
    if levels.size < 3:
        return False
    steps = levels / np.diff(np.union1d([0.0], levels)).min()  # the smallest gap, 0 included
    return bool(np.abs(steps - np.rint(steps)).max() <= GRID_TOL)


def describe(value) -> dict | None:
    """Summary numbers of one operand: sizes, max/min |x| among finite entries, exact 0s and 1s."""
    try:
        a = np.asarray(value)
    except Exception:
        return None
    if a.dtype.kind not in "fciub":
        return None
    if a.size == 0:  # an empty selection: its mean is 0/0
        return {"size": 0, "shape": list(a.shape), "dtype": str(a.dtype)}
    with npstate.errstate(all="ignore"):
        a = a.astype(np.float64) if a.dtype.kind != "c" else np.abs(a)
        finite = np.isfinite(a)
        vals = a[finite]
        mag = np.abs(vals)
        out = {
            "max_abs": float(mag.max()) if mag.size else None,
            "min_abs": float(mag.min()) if mag.size else None,
            "min": float(vals.min()) if vals.size else None,
            "max": float(vals.max()) if vals.size else None,
            "exact_zeros": int(np.count_nonzero(a == 0)),
            "exact_ones": int(np.count_nonzero(a == 1)),
            "nonfinite": int(a.size - np.count_nonzero(finite)),
            "size": int(a.size),
            "dtype": str(np.asarray(value).dtype),
        }
        pinned = out["exact_zeros"] or out["exact_ones"]
        if pinned and vals.size and out["min"] >= 0 and out["max"] <= 1:
            inside = vals[(vals > 0) & (vals < 1)]  # what a pinned 0 or 1 sits among
            out |= {
                "near_zero": int(np.count_nonzero(inside < LIMIT_TOL)),
                "near_one": int(np.count_nonzero(inside > 1 - LIMIT_TOL)),
                "on_grid": on_grid(inside),
            }
        if out["nonfinite"]:  # which kinds, and whether whole rows (last axis) are non-finite
            out |= {"nan": int(np.isnan(a).sum()), "posinf": int((a == np.inf).sum())}
            out["neginf"] = int((a == -np.inf).sum())
            if a.ndim >= 2 and a.shape[-1]:
                bad_rows = ~finite.any(axis=-1)
                out["rows"], out["full_rows"] = bad_rows.size, int(bad_rows.sum())
                out["full_rows_neginf"] = int((a == -np.inf).all(axis=-1).sum())
        return out


def value_kind(value) -> str | None:
    """``nan``, ``inf`` or ``-inf`` for the first kind of non-finite ``value`` holds, else None."""
    try:
        a = np.asarray(value)
        if a.dtype.kind not in "fc":
            return None
        with npstate.errstate(all="ignore"):
            if np.isnan(a).any():
                return "nan"
            if (a == np.inf).any():
                return "inf"
            if (a == -np.inf).any():
                return "-inf"
    except Exception:
        return None
    return None


class FrameEvaluator:
    """Evaluates side-effect-free expression nodes on one frame's values, memoised per node."""

    def __init__(self, frame: FrameType):
        self.locals = frame.f_locals
        self.globals = frame.f_globals
        self.values: dict[int, object] = {}
        self.raised: list[tuple[ast.AST, set[str], object, list]] = []  # node, kinds, value, args
        self._kinds: set[str] = set()

    def _collect(self, kind: str, flag: int) -> None:
        self._kinds.add(KIND_NAMES.get(kind, kind))

    def apply(self, node: ast.AST, fn, args: list, kwargs: dict | None = None):
        self._kinds = set()
        with npstate.errstate(all="call", call=self._collect):
            value = fn(*args, **(kwargs or {}))
        self.raised.append((node, self._kinds, value, args))
        return value

    def eval(self, node: ast.AST):
        key = id(node)
        if key not in self.values:
            self.values[key] = self._eval(node)
        return self.values[key]

    def _eval(self, node: ast.AST):
        match node:
            case ast.Constant(value=v):
                return v
            case ast.Name(id=name):
                for scope in (self.locals, self.globals, vars(builtins)):
                    if name in scope:
                        return scope[name]
                raise Unsafe(name)
            case ast.Attribute(value=base, attr=attr):
                obj = self.eval(base)
                if isinstance(obj, ModuleType | np.ndarray | np.generic):
                    return getattr(obj, attr)
                if attr in getattr(obj, "__dict__", {}):
                    return obj.__dict__[attr]
                raise Unsafe(attr)
            case ast.Subscript(value=base, slice=index):
                obj = self.eval(base)
                if not isinstance(obj, np.ndarray | list | tuple | dict):
                    raise Unsafe("subscript")
                return obj[self.eval(index)]
            case ast.Slice(lower=lo, upper=hi, step=st):
                return slice(*(None if n is None else self.eval(n) for n in (lo, hi, st)))
            case ast.Tuple(elts=elts) | ast.List(elts=elts):
                return tuple(self.eval(e) for e in elts)
            case ast.Compare(left=left, ops=[op], comparators=[right]) if type(op) in COMPARE:
                args = [_numeric(self.eval(left)), _numeric(self.eval(right))]
                return self.apply(node, COMPARE[type(op)][1], args)
            case ast.BinOp(left=left, op=op, right=right) if type(op) in BINARY:
                _, fn = BINARY[type(op)]
                args = [_numeric(self.eval(left)), _numeric(self.eval(right))]
                return self.apply(node, fn, args)
            case ast.IfExp(test=test, body=body, orelse=orelse):  # only the branch Python runs
                return self.eval(body) if self.eval(test) else self.eval(orelse)
            case ast.UnaryOp(op=op, operand=operand) if type(op) in UNARY:
                return self.apply(node, UNARY[type(op)][1], [_numeric(self.eval(operand))])
            case ast.Call(func=func, args=args, keywords=keywords):
                fn = self.eval(func)
                try:
                    _check_callable(fn)
                except Unsafe as e:  # not run; what it is given still is (``print(v.mean())``)
                    given = [self.eval(a.value if isinstance(a, ast.Starred) else a) for a in args]
                    given += [self.eval(k.value) for k in keywords]
                    raise UnsafeCall(str(e), node, given) from None
                values = [self.eval(a) for a in args if not isinstance(a, ast.Starred)]
                if any(isinstance(a, ast.Starred) for a in args):
                    raise Unsafe("*args")
                kwargs = {k.arg: self.eval(k.value) for k in keywords}
                if None in kwargs or "out" in kwargs:
                    raise Unsafe("kwargs")
                return self.apply(node, fn, values, kwargs)
        raise Unsafe(type(node).__name__)


KIND_NAMES = {
    "overflow": "overflow",
    "invalid value": "invalid",
    "divide by zero": "divide_by_zero",
}


def _numeric(value):
    if isinstance(value, bool | int | float | complex | np.ndarray | np.generic):
        return value
    raise Unsafe("non-numeric operand")


def _check_callable(fn) -> None:
    if fn in SAFE_BUILTINS or isinstance(fn, np.ufunc):
        return
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, np.ndarray | np.generic):
        if fn.__name__ in MUTATING_METHODS:
            raise Unsafe(fn.__name__)
        return
    module = getattr(fn, "__module__", None) or ""
    if module.startswith("numpy") and not module.startswith("numpy.random"):
        return
    raise Unsafe(getattr(fn, "__name__", "call"))


def op_name(node: ast.AST, fn=None) -> str:
    match node:
        case ast.BinOp(op=op) if type(op) in BINARY:
            return BINARY[type(op)][0]
        case ast.UnaryOp(op=op):
            return UNARY[type(op)][0]
        case ast.Compare(ops=[op]) if type(op) in COMPARE:
            return COMPARE[type(op)][0]
        case ast.Call(func=ast.Attribute(attr=attr)):
            return attr
        case ast.Call(func=ast.Name(id=name)):
            return name
    return "?"


def statement_value(stmt: ast.stmt) -> ast.expr | None:
    """The expression whose value the statement keeps (``p -= e`` keeps ``p - e``)."""
    match stmt:
        case ast.Assign(value=v) | ast.Return(value=v) | ast.Expr(value=v) | ast.AnnAssign(value=v):
            return v
        case ast.AugAssign(target=t, op=op, value=v):
            load = ast.parse(ast.unparse(t), mode="eval").body
            return ast.copy_location(ast.BinOp(left=load, op=op, right=v), stmt)
    return None


def read_line(frame: FrameType, stmt: ast.stmt | None, kind: str) -> LineReading:
    """Re-evaluate ``stmt`` on ``frame`` to find the op that raised ``kind``, and its operands."""
    reading = LineReading()
    roots = [statement_value(stmt)] if stmt is not None else []
    if stmt is not None and frame.f_code.co_name in COMPREHENSIONS:  # the frame of [... for j]
        roots = [
            n.value if isinstance(n, ast.DictComp) else n.elt
            for n in ast.walk(stmt)
            if isinstance(n, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp)
        ]
    elif stmt is not None and frame.f_code.co_name == "<lambda>":  # the lambda's body ran
        roots = [n.body for n in ast.walk(stmt) if isinstance(n, ast.Lambda)]
    roots = [r for r in roots if r is not None]
    if not roots:
        return _guess(stmt, kind, reading)
    for root in roots:
        evaluator = FrameEvaluator(frame)
        try:
            result = evaluator.eval(root)
            # a bare expression statement (np.log(W - 10) on a line of its own) keeps nothing:
            # evaluated here, it had no side effect either
            reading.absorbed = _finite_numbers(result) or isinstance(stmt, ast.Expr)
            reading.result = result
        except UnsafeCall as call:  # a statement that is a call not run: ``print(1 / (1 + e))``
            reading.result = None  # absorbed when what the call is given is finite
            reading.absorbed = (
                isinstance(stmt, ast.Expr) and call.node is root and _given_finite(call.args)
            )
            result = call.args
        except Exception:  # Unsafe included: not evaluable without side effects
            reading.absorbed, reading.result = False, None
        if any(kind in kinds for _, kinds, _, _ in evaluator.raised):
            break
    for node, kinds, value, args in evaluator.raised:
        if kind in kinds:
            reading.op = op_name(node)
            reading.node = node
            reading.value = value_kind(value)
            reading.integer = _is_integers(value)
            reading.operands = _operands(node, args, evaluator)
            reading.names = _names(node, evaluator)
            if isinstance(stmt, ast.AugAssign):  # read after the op: its result, not its operand
                target = ast.unparse(stmt.target)
                reading.operands = [(e, n) for e, n in reading.operands if e != target]
                reading.names.pop(target, None)
            reading.reproduced = True
            if reading.absorbed and isinstance(stmt, ast.Expr) and not _finite_numbers(result):
                reading.absorber = DISCARDED
            elif reading.absorbed:
                reading.absorber = _absorber(root, node, evaluator)
            return reading
    return _guess(stmt, kind, reading)


def _is_integers(value) -> bool:
    """An integer or bool result (a Python int, a NumPy integer scalar or array)."""
    if isinstance(value, bool | int):
        return True
    return isinstance(value, np.ndarray | np.generic) and value.dtype.kind in "iub"


def _absorber(root: ast.AST, node: ast.AST, evaluator: FrameEvaluator) -> str | None:
    """The nearest op above ``node`` whose value is finite again: what absorbed its NaN/Inf."""
    parents = {id(c): n for n in ast.walk(root) for c in ast.iter_child_nodes(n)}
    up = parents.get(id(node))
    while up is not None:
        value = evaluator.values.get(id(up))
        if _is_numeric(value) and value_kind(value) is None:
            return op_name(up)
        up = parents.get(id(up))
    return None


def _given_finite(args: list) -> bool:
    """What a call is given holds numbers and no NaN or Inf (labels beside them are fine:
    ``print("loss", loss)``)."""
    return _finite_numbers(tuple(args))


def _finite_numbers(value) -> bool:
    """The statement's value is numbers, none NaN or Inf; a tuple's (``return A, cache``) too,
    beside plain labels (``return p, "naive"``)."""
    if _is_numeric(value):
        return value_kind(value) is None
    if isinstance(value, tuple | list):
        numbers = [v for v in value if not isinstance(v, str | bytes | type(None))]
        return bool(numbers) and all(_finite_numbers(v) for v in numbers)
    return False


def _is_numeric(value) -> bool:
    return isinstance(value, int | float | complex | np.ndarray | np.generic)


def operand_nodes(node: ast.AST) -> list[ast.AST]:
    match node:
        case ast.BinOp(left=left, right=right) | ast.Compare(left=left, comparators=[right]):
            return [left, right]
        case ast.UnaryOp(operand=operand):
            return [operand]
        case ast.Call(args=args):
            return list(args)
    return []


def _operands(node: ast.AST, args: list, evaluator: FrameEvaluator) -> list[tuple[str, dict]]:
    out = []
    for sub, value in zip(operand_nodes(node), args, strict=False):
        numbers = describe(value)
        expr = ast.unparse(sub)
        if numbers is not None and all(expr != e for e, _ in out):  # einsum(.., err, err): once
            out.append((expr, numbers))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        owner = getattr(node.func, "value", None)
        if owner is not None and not out:  # x.mean(): the array it is called on
            numbers = (
                describe(evaluator.values.get(id(owner))) if id(owner) in evaluator.values else None
            )
            out.append((ast.unparse(owner), numbers or {}))
    return out


def _names(node: ast.AST, evaluator: FrameEvaluator) -> dict[str, dict]:
    """The numbers of each variable (name or attribute) the op's operands are made of."""
    out = {}
    for sub in operand_nodes(node):
        for n in ast.walk(sub):
            if isinstance(n, ast.Name | ast.Attribute) and id(n) in evaluator.values:
                numbers = describe(evaluator.values[id(n)])
                if numbers is not None:
                    out[ast.unparse(n)] = numbers
    return out


def _guess(stmt: ast.stmt | None, kind: str, reading: LineReading) -> LineReading:
    """The op from the line's text alone: the first op in evaluation order that can raise ``kind``."""
    if stmt is None:
        return reading
    ops = [op_name(n) for n in _post_order(stmt) if isinstance(n, ast.BinOp | ast.Call)]
    if isinstance(stmt, ast.AugAssign) and type(stmt.op) in BINARY:  # its op runs last
        ops.append(BINARY[type(stmt.op)][0])
    likely = [o for o in ops if o in LIKELY_OPS.get(kind, ())]
    reading.op = (likely or ops or ["?"])[0]
    return reading


def _post_order(node: ast.AST):
    for child in ast.iter_child_nodes(node):
        yield from _post_order(child)
    yield node


def operand_magnitudes(frame: FrameType, node: ast.AST) -> dict[int, float]:
    """Largest finite |x| of each of the op's operands (by position) evaluated on ``frame``, for
    the growth history: each apart, so that the one that grew is told from a constant beside it
    (``lr * 2 * w``: ``w`` grew, ``lr * 2`` did not). Operands not measured are left out."""
    evaluator = FrameEvaluator(frame)

    def numbers_of(sub: ast.AST) -> dict | None:
        try:
            return describe(evaluator.eval(sub))
        except Exception:
            return None

    measured = dict(enumerate(map(numbers_of, operand_nodes(node))))
    method = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    if not any(measured.values()) and method:  # (err ** 2).sum(): the array it is called on
        measured = {0: numbers_of(node.func.value)}
    sizes = {k: n.get("max_abs") for k, n in measured.items() if n is not None}
    return {k: m for k, m in sizes.items() if m is not None and math.isfinite(m)}


class _Overlay(FrameEvaluator):
    """A frame's values as they will be a few statements on: ``known`` (by source text, a name or
    an attribute such as ``self.e``) holds what earlier statements kept, ``unknown`` what a
    statement that was not evaluated assigned (reading it is :class:`Unsafe`)."""

    def __init__(self, frame: FrameType, known: dict[str, object], unknown: set[str]):
        super().__init__(frame)
        self.known, self.unknown = known, unknown

    def _eval(self, node: ast.AST):
        if isinstance(node, ast.Name | ast.Attribute):
            text = ast.unparse(node)
            if text in self.known:
                return self.known[text]
            if text in self.unknown:
                raise Unsafe(text)
        return super()._eval(node)


def _target_text(stmt: ast.stmt) -> str | None:
    """The one name or attribute a plain assignment binds (``e = ...``, ``self.e = ...``)."""
    match stmt:
        case (
            ast.Assign(targets=[ast.Name() | ast.Attribute() as target])
            | ast.AnnAssign(target=ast.Name() | ast.Attribute() as target)
        ):
            return ast.unparse(target)
    return None


def _stored(stmt: ast.stmt) -> set[str]:
    """Every name and attribute ``stmt`` (compound ones included) assigns, as source text."""
    return {
        ast.unparse(n)
        for n in ast.walk(stmt)
        if isinstance(n, ast.Name | ast.Attribute) and isinstance(n.ctx, ast.Store | ast.Del)
    }


def _block_of(filename: str, stmt: ast.stmt) -> tuple[list[ast.stmt], int] | None:
    """The list of statements ``stmt`` belongs to, and its index there."""
    from nandoctor.trace.frames import parsed

    tree = parsed(filename)
    for node in ast.walk(tree) if tree is not None else ():
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if isinstance(block, list) and any(s is stmt for s in block):
                return block, next(i for i, s in enumerate(block) if s is stmt)
    return None


def absorbed_later(frame: FrameType, stmt: ast.stmt | None, reading: LineReading):
    """``(op, line)`` when the Inf that ``stmt`` keeps in one variable (``e = np.exp(-z)``) is
    absorbed by every later statement of its block that reads it (``return 1 / (1 + e)``): each
    is re-evaluated on the frame, with that variable given the Inf and what the statements
    between assigned, and each stays finite. None when any does not, when one cannot be
    evaluated without side effects, or when nothing reads it (then it is simply kept).

    The Inf is then a temporary split over two lines, as ``1 / (1 + np.exp(-z))`` is in one."""
    target = _target_text(stmt) if stmt is not None else None
    if target is None or value_kind(reading.result) not in ("inf", "-inf"):
        return None
    found = _block_of(frame.f_code.co_filename, stmt)
    if found is None:
        return None
    block, index = found
    known: dict[str, object] = {target: reading.result}
    unknown: set[str] = set()
    first = None
    for later in block[index + 1 :]:
        read = {ast.unparse(n) for n in ast.walk(later) if isinstance(n, ast.Name | ast.Attribute)}
        stored = _stored(later)
        if target in read:
            root = statement_value(later)
            if root is None or isinstance(later, ast.Expr):  # a call for its effect, an if: unknown
                return None
            evaluator = _Overlay(frame, known, unknown)
            try:
                value = evaluator.eval(root)
            except Exception:
                return None
            if not _finite_numbers(value):
                return None
            if first is None:
                node = next(
                    n
                    for n in ast.walk(root)
                    if isinstance(n, ast.Name | ast.Attribute) and ast.unparse(n) == target
                )
                first = (_absorber(root, node, evaluator) or op_name(root), later.lineno)
            bound = _target_text(later)
            if bound is not None:
                known[bound] = value
                stored.discard(bound)
        for name in stored:
            known.pop(name, None)
            unknown.add(name)
        if target in unknown or isinstance(later, ast.Return | ast.Raise):
            break  # the Inf is no longer held there, or the function ends
    return first
