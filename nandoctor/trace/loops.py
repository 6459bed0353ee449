"""When: the 1-based iteration of the innermost enclosing loop at the first non-finite value.

Counting iterations as the program runs would slow every program down for the sake of the few
that fail. Instead:

- when the loop is ``for i in range(...)`` or ``for i, x in enumerate(...)`` and the body never
  rebinds ``i``, the iteration is read from ``i`` at the event (exact, free);
- otherwise a second run of the program, stopped at the same event, counts the loop's iterations
  with line events on that loop's code only (:class:`LoopCounter`); it also records how large
  the failing op's operands were at each iteration, which tells a growth (exploding) from values
  that were huge from the start (overflow). A program that does not repeat itself (unseeded
  randomness) is detected by comparing the failing frame's numbers, and its iteration is
  reported as unknown rather than guessed.
"""

from __future__ import annotations

import ast
import math
from functools import lru_cache
from types import FrameType

from nandoctor.trace import npstate
from nandoctor.trace.evaluate import operand_magnitudes
from nandoctor.trace.frames import COMPREHENSION_NODES, Loop, next_pass, parsed


def _rebinds(body: list[ast.stmt], name: str) -> bool:
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Store):
                return True
    return False


# a call by one of these names may update what the loop trains (``opt.step()``, ``update(W, g)``)
UPDATE_CALLS = (
    "update", "step", "optim", "sgd", "adam", "backward", "backprop", "grad", "train", "fit",
    "learn", "descent", "apply",
)  # fmt: skip
# modules whose functions, and names of functions and methods, that never step a variable
PURE_MODULES = {"np", "numpy", "math", "cmath", "random", "time", "os", "sys", "json", "pd", "plt"}
PURE_CALLS = {
    "print", "len", "range", "enumerate", "zip", "min", "max", "abs", "sum", "float", "int",
    "str", "list", "dict", "tuple", "set", "round", "isinstance", "sorted", "reversed", "map",
    "filter", "format", "repr", "any", "all", "append", "extend", "mean", "reshape", "astype",
    "copy", "item", "tolist", "dot", "transpose", "flatten", "ravel", "std", "var", "argmax",
    "argmin", "write", "join", "clip", "squeeze", "get", "items", "keys", "values", "exp", "log",
    "standard_normal", "normal", "uniform", "random", "randn", "rand", "choice", "permutation",
    "shuffle", "integers",
}  # fmt: skip


def updates_a_variable(loop: Loop) -> bool:
    """Whether ``loop`` changes a variable by a step, as a training loop does: in its body, or
    in a function of the same file it calls (``W -= lr * g``, ``W = W - lr * g``, ``v = mu * v -
    lr * g``, ``np.subtract(W, d, out=W)``), or by a call whose name says it may (``opt.step()``,
    ``sgd_update(...)``) or that cannot be read (a function of another module). A recurrence
    (``h = np.tanh(W @ h)``) or a factor of the loop variable is not one: values that grow over
    the passes of a loop without such a step did not grow by training."""
    return _steps_in(_body(loop.node), _functions(loop.file), set())


@lru_cache(maxsize=256)
def _functions(filename: str) -> dict[str, list]:
    """The functions (and methods) ``filename`` defines, by name."""
    tree = parsed(filename)
    defs: dict[str, list] = {}
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            defs.setdefault(node.name, []).append(node)
    return defs


def _body(node: ast.AST) -> list[ast.AST]:
    """What a loop runs on each pass: a statement's body (and ``else``), a comprehension's
    element (a dict's key and value) and conditions."""
    if isinstance(node, COMPREHENSION_NODES):
        parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        return parts + [cond for gen in node.generators for cond in gen.ifs]
    return list(node.body) + list(getattr(node, "orelse", []))


def _steps_in(statements: list, defs: dict, followed: set) -> bool:
    todo = list(statements)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue  # defined here, run only if called
        if (
            isinstance(node, ast.AugAssign)
            and isinstance(node.op, ast.Sub | ast.Add)
            and not _is_literal_number(node.value)  # k += 1 counts passes, it steps nothing
        ):
            return True
        if isinstance(node, ast.Assign) and _steps(node):
            return True
        if isinstance(node, ast.Call) and _call_steps(node, defs, followed):
            return True
        todo.extend(ast.iter_child_nodes(node))
    return False


def _is_literal_number(node: ast.AST) -> bool:
    """A literal number (``1``, ``-1``, ``0.5``)."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        node = node.operand
    return isinstance(node, ast.Constant) and isinstance(node.value, int | float)


def _call_steps(call: ast.Call, defs: dict, followed: set) -> bool:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if any(word in name.lower() for word in UPDATE_CALLS):
        return True
    if name in ("subtract", "add") and any(k.arg == "out" for k in call.keywords):
        return True
    if isinstance(func, ast.Attribute) and ast.unparse(func.value).split(".")[0] in PURE_MODULES:
        return False
    if name in defs:  # a function of this file: what its body does
        if name in followed:
            return False
        followed.add(name)
        return any(_steps_in(d.body, defs, followed) for d in defs[name])
    return name not in PURE_CALLS  # unknown: it may step a variable


def _steps(node: ast.Assign) -> bool:
    """``W = W - lr * g``, ``W = (1 - lr * wd) * W - lr * g``, ``v = mu * v - lr * g``,
    ``W = np.subtract(W, d)``: the target, or a multiple of it, plus or minus a change."""
    targets = {ast.unparse(t) for t in node.targets}
    value = node.value
    if isinstance(value, ast.BinOp) and isinstance(value.op, ast.Sub | ast.Add):
        left = value.left
        if isinstance(left, ast.BinOp) and isinstance(left.op, ast.Mult):
            return bool({ast.unparse(left.left), ast.unparse(left.right)} & targets)
        return ast.unparse(left) in targets
    if isinstance(value, ast.Call) and value.args:
        func = value.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        return name in ("subtract", "add") and ast.unparse(value.args[0]) in targets
    return False


def _comprehension_pass(frame: FrameType) -> int | None:
    """The pass a comprehension running in its own frame is in: how many items its outermost
    iterator (the frame's ``.0``) has handed out, read from what the iterator would pickle as
    (a list, tuple or range iterator's index; for ``enumerate`` and ``zip``, their first
    iterator's).
    None for any other iterator (a generator, a dict's), or a comprehension run inline."""
    iterator = frame.f_locals.get(".0")
    for _ in range(4):  # zip(zip(...)) nests
        try:
            how = iterator.__reduce__()
        except Exception:
            return None
        args = how[1] if len(how) > 1 else ()
        if how[0] in (zip, enumerate) and args:  # what the first iterator inside has given
            iterator = args[0]
            continue
        if len(how) == 3 and isinstance(how[2], int) and getattr(how[0], "__name__", "") == "iter":
            return how[2]
        return None
    return None


def iteration_from_target(frame: FrameType, loop: Loop) -> int | None:
    """The iteration read from a ``range``/``enumerate`` loop variable, or None if not that form."""
    from nandoctor.trace.evaluate import FrameEvaluator

    node = loop.node
    if isinstance(node, COMPREHENSION_NODES):
        return _comprehension_pass(frame)
    if not isinstance(node, ast.For) or not isinstance(node.iter, ast.Call):
        return None
    func = node.iter.func
    if not isinstance(func, ast.Name) or func.id not in ("range", "enumerate"):
        return None
    target = node.target
    if func.id == "enumerate":
        if not (isinstance(target, ast.Tuple) and isinstance(target.elts[0], ast.Name)):
            return None
        target = target.elts[0]
    if not isinstance(target, ast.Name) or _rebinds(node.body, target.id):
        return None
    evaluator = FrameEvaluator(frame)
    try:
        value = frame.f_locals[target.id]
        if func.id == "enumerate":
            args = node.iter.args[1:] + [k.value for k in node.iter.keywords if k.arg == "start"]
            start = evaluator.eval(args[0]) if args else 0
            return int(value) - int(start) + 1
        bounds = [int(evaluator.eval(a)) for a in node.iter.args]
        start, step = (bounds[0] if len(bounds) > 1 else 0), (bounds[2] if len(bounds) > 2 else 1)
        return (int(value) - start) // step + 1
    except Exception:
        return None


DENSE_PASSES = 16  # the operands are measured at each of a loop entry's first passes, then at
# passes 32, 64, 128, ... (and at the failing one): a growth needs its start and its end, and a
# measure per pass would cost more than the rest of a long loop's second run


def measured_pass(iteration: int | None) -> bool:
    """Whether the operands are measured at this pass of the loop (see ``DENSE_PASSES``)."""
    return iteration is None or iteration <= DENSE_PASSES or iteration & (iteration - 1) == 0


class LoopCounter:
    """Line events on the loop's code only: the iteration of each live frame of it, and the
    magnitude of the failing op's operands when its line runs, at the passes
    :func:`measured_pass` picks (a ``sys.settrace`` hook), and at the failing one
    (:meth:`measure_at_failure`).

    ``every_pass``: measure at each pass (an in-place op, ``acc *= c``, has changed its operand
    by the time it fails: its failing pass is measured at the start of its line, as any other).
    A pass that is not measured costs a line event per line of the loop, a few microseconds."""

    def __init__(
        self,
        loop_code: tuple,
        loop_line: int,
        loop_end: int,
        op_code: tuple,
        op_line: int,
        op_node: ast.AST | None,
        every_pass: bool = True,
    ):
        self.loop_code, self.loop_line = loop_code, loop_line
        self.loop = Loop(loop_code[0], loop_line, loop_end, None)  # its lines, for next_pass
        self.op_code, self.op_line, self.op_node = op_code, op_line, op_node
        self.every_pass = every_pass
        self.state: dict[int, list] = {}  # id(frame) -> [iteration, last line]
        self.current: list = [None, None]
        # (iteration, {operand: max |x|}) since the loop was last entered: the entry that fails
        self.history: list[tuple[int | None, dict]] = []
        # each operand's largest |x| over each entry of the loop, in the frame it was last entered
        # in: in a batch loop (entered once per epoch), how the operands grew over the epochs
        # (measured at the passes measured_pass picks)
        self.entries: list[dict] = []
        self.kinds: dict[int, tuple[bool, bool]] = {}  # id(code) -> (is the loop's, the op's)
        self.unmeasured: object | None = None  # the op line's frame, at a pass not measured

    @staticmethod
    def key(code) -> tuple:
        return (code.co_filename, code.co_name, code.co_firstlineno)

    def _kind(self, code) -> tuple[bool, bool]:
        kind = self.kinds.get(id(code))
        if kind is None:
            key = self.key(code)
            kind = self.kinds[id(code)] = (key == self.loop_code, key == self.op_code)
            self.kinds.setdefault(-id(code), code)  # kept alive: its id stays its own
        return kind

    def __call__(self, frame, event, arg):  # the global trace function: 'call' events only
        is_loop, is_op = self._kind(frame.f_code)
        if is_loop:
            self.current = self.state[id(frame)] = [None, None]
            self.entries = []  # a new call (train(lr) again): its own entries only
            return self.local
        return self.local if is_op else None

    def local(self, frame, event, arg):
        if event != "line":
            return self.local
        line = frame.f_lineno
        is_loop, is_op = self._kind(frame.f_code)
        if is_loop:
            st = self.state.get(id(frame))
            if st is None:
                st = self.state[id(frame)] = [None, None]
            if line == self.loop_line:
                st[0] = next_pass(st[0], st[1], self.loop)
                if st[0] == 1:  # entered anew (train(lr) called again): its own growth only
                    self.history.clear()
                    self.entries.append({})
            st[1] = line
        if is_op and line == self.op_line and self.op_node is not None:
            if self.every_pass or measured_pass(self.current[0]):
                self.unmeasured = None
                self._record_operands(frame)
            else:
                self.unmeasured = frame
        return self.local

    def measure_at_failure(self, frame) -> None:
        """At the failing op (the error callback): its operands, if its pass was not measured at
        the start of its line. Not in place (see ``every_pass``), the names it reads still hold
        what it was given."""
        if self.unmeasured is not None and self.unmeasured is frame:
            self._record_operands(frame)

    def _record_operands(self, frame) -> None:
        with npstate.errstate(all="ignore"):
            sizes = operand_magnitudes(frame, self.op_node)
        if sizes:
            self.history.append((self.current[0], sizes))
            if self.entries:
                entry = self.entries[-1]
                for k, m in sizes.items():
                    entry[k] = max(entry.get(k, 0.0), m)

    def entry_growth(self) -> list[tuple[int, float]]:
        """(entry, size of the operand that grew) of each entry of the loop that measured one,
        1-based (:func:`grown`)."""
        rows = [(k, sizes) for k, sizes in enumerate(self.entries, 1) if sizes]
        return [(k, m) for k, m in grown(rows) if m > 0]

    def iteration_at(self, frame) -> int | None:
        while frame is not None:
            if self.key(frame.f_code) == self.loop_code:
                st = self.state.get(id(frame))
                return st[0] if st else None
            frame = frame.f_back
        return None


def _node_at(filename: str, position: tuple | None) -> ast.AST | None:
    """The expression or augmented assignment at ``position`` (lineno, col, end_lineno,
    end_col) in ``filename``; None where the file or the position is unknown or holds none."""
    from nandoctor.trace.frames import parsed

    tree = parsed(filename)
    if tree is None or position is None:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.expr | ast.AugAssign) and (
            node.lineno,
            node.col_offset,
            node.end_lineno,
            node.end_col_offset,
        ) == tuple(position):
            return node
    return None


def in_place(filename: str, position: tuple | None) -> bool:
    """Whether the op at ``position`` writes into an operand: an augmented assignment
    (``acc *= c``), or a call given ``out=``. Unknown: True (measured at each pass)."""
    node = _node_at(filename, position)
    if node is None or isinstance(node, ast.AugAssign):
        return True
    return isinstance(node, ast.Call) and any(k.arg == "out" for k in node.keywords)


def per_iteration(history: list[tuple[int | None, dict]]) -> list[tuple[int, float]]:
    """The size of the operand that grew at each iteration, in order (:func:`grown`)."""
    return grown([(i, sizes) for i, sizes in history if i is not None])


def grown(rows: list[tuple[int, dict]]) -> list[tuple[int, float]]:
    """(pass, size) of the operand that grew, from ``rows`` of (pass, {operand: max |x|}): the
    largest size of each operand at each pass, then the series of the operand whose size grew
    most from its first pass measured to its last (from 0 counts as the most), not a constant
    beside it (``lr * 2 * w``: ``w``'s, not ``lr * 2``'s). When none grew, the largest operand's
    size at each pass."""
    series: dict = {}
    for found, sizes in rows:
        for key, size in sizes.items():
            held = series.setdefault(key, {})
            held[found] = max(held.get(found, 0.0), size)

    def growth(key) -> tuple[float, float]:
        sizes = [m for _, m in sorted(series[key].items())]
        nonzero = [m for m in sizes if m > 0]
        if len(sizes) < 2 or not nonzero:
            return 1.0, sizes[-1] if sizes else 0.0
        if sizes[0] == 0:
            return math.inf, sizes[-1]
        return nonzero[-1] / nonzero[0], sizes[-1]

    best = max(series, key=growth, default=None)
    if best is not None and growth(best)[0] > 1:
        return sorted(series[best].items())
    largest: dict[int, float] = {}
    for found, sizes in rows:
        if sizes:
            largest[found] = max(largest.get(found, 0.0), *sizes.values())
    return sorted(largest.items())


def find_node(filename: str, line: int, position: tuple | None) -> ast.AST | None:
    """The expression node at ``position`` (lineno, col, end_lineno, end_col) in ``filename``;
    at an in-place statement's (``acc *= c``), the op it runs, ``acc * c``, as the first run
    read it (``evaluate.statement_value``): measured at its line's start, ``acc`` is still the
    operand the op was given."""
    from nandoctor.trace.evaluate import statement_value

    node = _node_at(filename, position)
    return statement_value(node) if isinstance(node, ast.AugAssign) else node
