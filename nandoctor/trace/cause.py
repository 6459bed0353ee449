"""Why: the cause of the first non-finite value, decided from the operands' numbers.

The ids are the catalogue ``run`` uses (``overflow``, ``exploding_gradient``, ``saturation``,
``division_by_zero``, ``bad_input``), plus ``domain_error`` for a log or square root of a
negative number. Each evidence line carries the numbers it rests on; the advice names the
standard fix for the pattern and is marked as advice: trace does not re-run the program with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nandoctor.diagnosis.catalogue import CAUSES
from nandoctor.trace.evaluate import EXPONENTIALS
from nandoctor.trace.events import FirstNonFinite

GROWTH = 10.0  # operands this many times larger than at the loop's first iteration: a growth
LOG_OPS = {"log", "log2", "log10", "log1p"}
DIVIDE_OPS = {"divide", "true_divide", "floor_divide", "reciprocal", "remainder", "mean"}
REDUCING_OPS = {"mean", "average", "var", "std", "nanmean", "nanvar", "nanstd"}  # sum / count


@dataclass
class Cause:
    id: str  # a cause of nandoctor.diagnosis.catalogue
    summary: str
    evidence: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.id not in CAUSES:
            raise KeyError(f"{self.id!r} is not declared in nandoctor.diagnosis.catalogue")

    def to_json(self) -> dict:
        return {"id": self.id, "summary": self.summary, "evidence": self.evidence}


def fmt(x: float | None) -> str:
    if x is None:
        return "n/a"
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    return f"{x:.2e}"


def _where(first: FirstNonFinite) -> str:
    return f"{first.file}:{first.line}"


def _exp_limit(dtype: str, op: str = "exp") -> float | None:
    """The largest argument ``op`` (exp, expm1, exp2) takes in ``dtype`` without overflowing."""
    try:
        largest = np.finfo(np.dtype(dtype)).max
    except (TypeError, ValueError):
        return None
    return float(np.log2(largest) if op == "exp2" else np.log(largest))


def decide(first: FirstNonFinite, growth: list[tuple[int, float]]) -> tuple[Cause, list[str]]:
    """The cause of ``first`` and the advice for it; ``growth`` is (iteration, max |operand|)."""
    if first.kind == "silent":
        return _bad_input_silent(first)
    carried = [(e, n) for e, n in first.operands if n.get("nonfinite")]
    if carried:
        return _bad_input_carried(first, carried)
    empty = [(e, n) for e, n in first.operands if n.get("size") == 0]
    if empty and first.op in REDUCING_OPS:
        return _empty(first, empty)
    zeros = [(e, n) for e, n in first.operands if n.get("exact_zeros")]
    if first.kind == "divide_by_zero" or (
        first.kind == "invalid" and first.op in DIVIDE_OPS and zeros
    ):
        return _zero(first, zeros)
    if first.kind == "invalid":
        cause, advice = _invalid(first)
    else:
        cause, advice = _overflow(first, growth)
    if first.no_flag:
        cause.evidence.append(
            f"`{first.op}` made {first.value} from finite operands and raised no NumPy "
            f"floating-point flag ({first.no_flag} raises none): the line-traced second run saw "
            "its operands finite before the line ran, so it was made there, not read from data"
        )
    return cause, advice


def _bad_input_silent(first: FirstNonFinite) -> tuple[Cause, list[str]]:
    what = f"`{first.variable}`" if first.variable else "a variable"
    operand = first.operands[0][1] if first.operands else {}
    count = operand.get("nonfinite")
    share = (
        f"{_held(operand, first.value)} of {operand.get('size')} entries" if count else first.value
    )
    evidence = [
        f"{what} first held a non-finite value ({share}) after {_where(first)}: `{first.source}`",
        "no NumPy operation raised a floating-point flag for it: it came in with the data",
    ]
    summary = f"a non-finite value came in with the input at {_where(first)}"
    if first.computed_from:  # the second run saw it computed from placeholders alone
        return _computed_from_placeholders(first, what)
    if first.spread:  # an Inf parsed from text (a "no limit" setting) reached arithmetic
        return _parsed_spread(first, what)
    if first.placeholders:  # it may be computed from one: say so rather than blame the data
        p = first.placeholders[0]
        evidence[1] = (
            "no NumPy operation raised a floating-point flag for it, and before it the program "
            f"wrote {p['value']} itself into `{p['variable']}` at {p['file']}:{p['line']} "
            f"(`{p['source']}`): it may be computed from that placeholder, or come from the data"
        )
        summary = f"a non-finite value no operation created reached {what} at {_where(first)}"
    cause = Cause("bad_input", summary, evidence)
    advice = [
        "check the data where it is loaded (np.isfinite(x).all()) and drop or impute the missing "
        "values (e.g. np.nan_to_num, or fill with the column mean) before training"
    ]
    return cause, advice


def _parsed_spread(first: FirstNonFinite, what: str) -> tuple[Cause, list[str]]:
    """An Inf parsed from text (``clip = float(cfg["clip_norm"])``), which alone would be a
    sentinel ("inf": no limit), taken into arithmetic that made non-finite values from it."""
    s = first.spread
    evidence = [
        f"{what} was parsed as {first.value} from text at {_where(first)}: `{first.source}`",
        f"`{s['variable']}` computed from it held {s['value']} after {s['file']}:{s['line']} "
        f"(`{s['source']}`): the {first.value} did not stay a setting only compared or printed",
        "no NumPy operation raised a floating-point flag for it: it came in with the input",
    ]
    summary = (
        f"{first.value} parsed from the input at {_where(first)} reached arithmetic at "
        f"{s['file']}:{s['line']}"
    )
    advice = [
        f'if {first.value} means "no limit" there, test for it (math.isinf) before using the '
        "value in arithmetic, or give a finite value"
    ]
    return Cause("bad_input", summary, evidence), advice


def _computed_from_placeholders(first: FirstNonFinite, what: str) -> tuple[Cause, list[str]]:
    """A NaN kept to the end that was computed only from NaN/Inf the program wrote itself
    (``history.mean()`` over the unfilled slots of ``np.full(n, np.nan)``): not data."""
    names = ", ".join(f"`{n}`" for n in first.computed_from)
    written = [p for p in first.placeholders if p["variable"] in first.computed_from]
    evidence = [
        f"{what} first held {first.value} after {_where(first)} (`{first.source}`), computed only "
        f"from {names}, and still held it at the end"
    ]
    evidence += [
        f"`{p['variable']}` held {p['value']} the program wrote itself at {p['file']}:{p['line']} "
        f"(`{p['source']}`): a placeholder, not data"
        for p in written
    ]
    summary = (
        f"{first.value} computed at {_where(first)} from the program's own placeholder "
        f"({names}), kept to the end"
    )
    advice = [
        "compute only over what was filled in (history[:n], or np.nanmean / np.nanmin, which "
        "skip NaN slots), or write a finite sentinel instead of the placeholder"
    ]
    return Cause("bad_input", summary, evidence), advice


def _bad_input_carried(first, carried) -> tuple[Cause, list[str]]:
    placed = [(e, n) for e, n in carried if n.get("placeholder")]
    if placed:
        return _from_placeholder(first, carried, placed)
    evidence = [
        f"`{e}` already held {n['nonfinite']} non-finite of {n['size']} entries when `{first.op}` "
        f"ran at {_where(first)}, and no earlier operation raised a flag"
        for e, n in carried
    ]
    cause = Cause(
        "bad_input", f"a non-finite value that no operation created reached {first.op}", evidence
    )
    return cause, [
        "check the inputs where they are loaded (np.isfinite(x).all()); clean them first"
    ]


# the counts an operand's numbers keep of each non-finite kind, and how each is written
NONFINITE_LABELS = {"nan": "nan", "posinf": "inf", "neginf": "-inf"}


def _held(n: dict, value: str | None) -> str:
    """How many NaN and Inf an operand held, each said apart (``1 NaN and 2 Inf``); without the
    counts by kind, its non-finite count as ``value``s."""
    words = {"nan": "NaN", "posinf": "Inf", "neginf": "-Inf"}
    parts = [f"{n[k]} {word}" for k, word in words.items() if n.get(k)]
    if not parts:
        return f"{n.get('nonfinite')} {value}"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _kinds(n: dict) -> str:
    """The non-finite values an operand held: ``2 nan, 1 -inf``."""
    return ", ".join(f"{n[k]} {label}" for k, label in NONFINITE_LABELS.items() if n.get(k))


def _placed_kind(n: dict) -> str:
    """The one kind of non-finite value a placeholder holds (``nan``), else ``non-finite``."""
    held = [label for k, label in NONFINITE_LABELS.items() if n.get(k)]
    return held[0] if len(held) == 1 else "non-finite"


def _from_placeholder(first, carried, placed) -> tuple[Cause, list[str]]:
    """A NaN computed from a NaN/Inf the program wrote itself, e.g. a whole row masked with -inf
    whose max is -inf too: ``scores - max`` is -inf - (-inf) = nan."""
    e, n = placed[0]
    origin = n["placeholder"]
    at = f"{first.file}:{origin['line']}"
    evidence = []
    for name, numbers in carried:
        p = numbers.get("placeholder")
        how = ""
        if p and p["via"]:
            how = f", computed from `{p['via']}`, which the program wrote at {first.file}:{p['line']} (`{p['source']}`)"
        elif p:
            how = f", written by the program itself at {first.file}:{p['line']} (`{p['source']}`)"
        evidence.append(
            f"`{name}` held {numbers['nonfinite']} non-finite of {numbers['size']} entries "
            f"({_kinds(numbers)}) when `{first.op}` ran at {_where(first)}{how}"
        )
    rows = max((numbers.get("full_rows_neginf", 0) for _, numbers in carried), default=0)
    full = max((numbers.get("full_rows", 0) for _, numbers in carried), default=0)
    advice = []
    if rows or full:
        row_kind = "all -inf" if rows else "all non-finite"
        total = max(numbers.get("rows", 0) for _, numbers in carried)
        line = f"{max(rows, full)} of {total} rows were entirely masked ({row_kind})"
        if rows and first.op in {"subtract", "add"}:
            line += f": their max is -inf too, so `{first.op}` computes -inf - (-inf) = nan"
        evidence.append(line)
        advice.append(
            "guard fully masked rows (e.g. skip them, or zero their output with "
            "np.where(mask.any(axis=-1, keepdims=True), out, 0)), or mask with a large finite "
            "negative such as -1e9 or np.finfo(x.dtype).min instead of -inf"
        )
    advice.append(
        "keep the placeholder out of arithmetic that can meet it on both sides (inf - inf, "
        "0 * inf), or write a finite sentinel instead"
    )
    summary = (
        f"{first.value or 'nan'} computed by {first.op} at {_where(first)} from the program's "
        f"own {_placed_kind(n)} placeholder written at {at}"
    )
    return Cause("bad_input", summary, evidence), advice


def _empty(first, empty) -> tuple[Cause, list[str]]:
    """A mean (var, std) of nothing: its sum 0 divided by its count 0."""
    e, n = empty[0]
    evidence = [
        f"`{e}` is empty (shape {tuple(n.get('shape', [0]))}) when `{first.op}` ran at "
        f"{_where(first)}: its sum 0 is divided by its count 0 (0/0 = nan)"
    ]
    cause = Cause(
        "division_by_zero", f"{first.op} of an empty selection at {_where(first)}", evidence
    )
    return cause, [
        "handle the empty case before the mean (if the selection is empty, keep the previous "
        "value or re-seed it), rather than averaging nothing"
    ]


SQUASHED_MIN_SIZE = 16  # from this size a squashing output pinned at 0 or 1 has company near it


def _is_probability(n: dict) -> bool:
    """Values in [0, 1] with some strictly between, as a squashing function (sigmoid, softmax)
    leaves them: only exact 0s and 1s are a mask, one-hot labels or counts; values on a grid
    (counts / total) are data; and a large array whose exact 0s or 1s have no value near them
    was cut there (clipped, thresholded), not squashed."""
    if n.get("min") is None or n["min"] < 0 or n["max"] > 1:
        return False
    if n.get("exact_zeros", 0) + n.get("exact_ones", 0) + n.get("nonfinite", 0) >= n["size"]:
        return False
    if n.get("on_grid"):
        return False
    if n["size"] < SQUASHED_MIN_SIZE:
        return True
    # company near the limit it is pinned at: np.where(img > 0.3, img, 0) has values near 1,
    # none near its zeros
    return bool(
        (n.get("exact_zeros") and n.get("near_zero", 1))
        or (n.get("exact_ones") and n.get("near_one", 1))
    )


def _zero(first, zeros) -> tuple[Cause, list[str]]:
    """A log or a division met an exact zero: saturation if a probability was pinned at 0 or 1."""
    operand, numbers = zeros[-1] if zeros else (None, {})
    evidence = []  # only what the numbers show: nothing when the operands could not be read
    if operand is not None:
        evidence.append(
            f"`{operand}` holds {numbers['exact_zeros']} exact zero(s) of {numbers['size']} "
            f"entries when `{first.op}` ran at {_where(first)} ({first.value})"
        )
    pinned = [
        (name, n)
        for name, n in first.variables.items()
        if _is_probability(n) and (n["exact_ones"] or (n["exact_zeros"] and first.op in LOG_OPS))
    ]
    if pinned and (first.op in LOG_OPS or any(n["exact_ones"] for _, n in pinned)):
        name, n = pinned[0]
        limit = "exactly 1.0" if n["exact_ones"] else "exactly 0.0"
        count = n["exact_ones"] or n["exact_zeros"]
        evidence.append(
            f"`{name}` lies in [0, 1] and {count} of its {n['size']} entries are {limit} "
            f"({n['dtype']}): a squashing function (sigmoid/softmax) saturated, so "
            f"`{operand}` is exactly 0"
        )
        cause = Cause(
            "saturation", f"{first.op} of a saturated probability at {_where(first)}", evidence
        )
        advice = [
            "clip the probability before the log (np.clip(p, eps, 1 - eps)), or compute the loss "
            "from the logits (log-sum-exp / np.logaddexp(0, -z) for a sigmoid)",
            "keep the pre-activations small: standardize the inputs, Xavier init, a lower step size",
        ]
        return cause, advice
    zero_scalars = [
        name
        for name, n in first.variables.items()
        if n.get("size") == 1 and n.get("exact_zeros") == 1 and name != operand
    ]
    roles = _roles(first)
    eps = [  # a float added to the denominator (or its floor) to keep it away from 0
        name
        for name in zero_scalars
        if "added" in roles.get(name, ()) and first.variables[name].get("dtype", "").startswith("f")
    ]
    exponents = [name for name in zero_scalars if "exponent" in roles.get(name, ())]
    evidence += [f"`{n}` is exactly 0: it cannot keep the denominator away from 0" for n in eps]
    evidence += [
        f"`{n}` is exactly 0 and is an exponent there: x ** 0 = 1, which makes `{operand}` "
        "exactly 0"
        for n in exponents
    ]
    if first.op in LOG_OPS:
        advice = ["add a small floor before the log (np.log(np.maximum(x, eps)))"]
    elif eps:
        advice = [
            f"give `{eps[0]}` a value the dtype can hold (1e-8 for float64/float32, 1e-4 "
            "for float16): an eps of 0 lets 0 / 0 through"
        ]
    elif exponents:
        advice = [
            f"divide by `{operand}` only once `{exponents[0]}` makes it non-zero (e.g. count "
            f"`{exponents[0]}` up before this line, so it starts at 1), or guard the division"
        ]
    else:
        advice = [
            "guard the division (x / (d + eps)), or drop the zero-variance columns before "
            "standardizing (a constant column has std exactly 0)"
        ]
    cause = Cause("division_by_zero", f"{first.op} by an exact zero at {_where(first)}", evidence)
    return cause, advice


def _roles(first: FirstNonFinite) -> dict[str, set[str]]:
    """What each name or attribute does in the statement at ``first``'s line (all of it, when it
    spans several lines): ``added`` (a term of ``+``, or an argument of ``maximum``/``clip``: a
    floor) or ``exponent`` (the right side of ``**``)."""
    import ast

    from nandoctor.trace.frames import statement_at

    tree = statement_at(first.file, first.line, first.column) if first.line is not None else None
    if tree is None:
        try:
            tree = ast.parse(first.source.strip())
        except SyntaxError:
            return {}
    roles: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        parts: list[tuple[ast.AST, str]] = []
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            parts = [(node.left, "added"), (node.right, "added")]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            parts = [(node.right, "exponent")]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) in FLOORS:
            parts = [(a, "added") for a in node.args]
        for sub, role in parts:
            roles.setdefault(ast.unparse(sub), set()).add(role)
    return roles


FLOORS = {"maximum", "fmax", "clip"}


def _in_a_sigmoid(first: FirstNonFinite) -> bool:
    """The exponential at ``first`` feeds a sigmoid, ``1 / (1 + exp(-z))``: in its own statement,
    or through the variable it is assigned to (``e = np.exp(-z)``, then ``1 / (1 + e)``) in the
    same function. A softmax divides by a sum of exponentials instead."""
    import ast

    from nandoctor.trace.frames import parsed, statement_at

    stmt = statement_at(first.file, first.line, first.column) if first.line is not None else None
    if stmt is None:
        return False
    feeds = {
        ast.unparse(n)
        for n in ast.walk(stmt)
        if isinstance(n, ast.Call)
        and getattr(n.func, "attr", getattr(n.func, "id", None)) in EXPONENTIALS
    }
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        feeds.add(ast.unparse(stmt.targets[0]))
    tree = parsed(first.file)
    scope = [stmt]
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
            n is stmt for n in ast.walk(node)
        ):
            scope = [node]  # the innermost is found last
    for root in scope:
        for node in ast.walk(root):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                den = node.right
                if isinstance(den, ast.BinOp) and isinstance(den.op, ast.Add):
                    sides = [den.left, den.right]
                    ones = [x for x in sides if isinstance(x, ast.Constant) and x.value == 1]
                    if ones and any(ast.unparse(x) in feeds for x in sides):
                        return True
    return False


def _invalid(first) -> tuple[Cause, list[str]]:
    inside = first.ufunc is not None and first.ufunc.split()[-1] in DIVIDE_OPS
    if (
        first.op not in DOMAIN_ADVICE
        and inside
        and first.op not in DIVIDE_OPS
        and first.operands
        and all(_moderate(n) for _, n in first.operands)
    ):  # np.corrcoef, np.std: a divide inside them, on numbers that cannot overflow
        return _zero_over_zero_inside(first)
    if first.op not in DOMAIN_ADVICE:  # einsum, matmul, sum, subtract of finite numbers
        return _cancelled_overflow(first)
    negatives = [(e, n) for e, n in first.operands if n.get("min") is not None and n["min"] < 0]
    evidence = [
        f"`{e}` ranges over [{_exact(n['min'])}, {_exact(n['max'])}]"
        f"{_outside(first.op, n['min'], n['max'])} when `{first.op}` ran at {_where(first)}"
        for e, n in (negatives or first.operands)
        if n.get("min") is not None
    ]
    cause = Cause(
        "domain_error", f"{first.op} outside its domain made NaN at {_where(first)}", evidence
    )
    return cause, [DOMAIN_ADVICE[first.op]]  # an op with a domain: _invalid sent others away


# the arguments an op with an interval for its domain takes: (lowest, highest), None unbounded
DOMAINS = {
    "sqrt": (0.0, None),
    "log": (0.0, None),
    "log2": (0.0, None),
    "log10": (0.0, None),
    "log1p": (-1.0, None),
    "arcsin": (-1.0, 1.0),
    "arccos": (-1.0, 1.0),
    "arctanh": (-1.0, 1.0),
    "arccosh": (1.0, None),
}
NEAR_WHOLE = 1e-6  # a value this close (relatively) to a whole number is said as its offset


def _exact(x: float) -> str:
    """``x`` for a sentence, with the digits that tell it from a whole number it rounds to
    (``1 + 2.2e-16``, not ``1``: a domain's limit is one)."""
    text = fmt(x)
    whole = round(x)
    if float(text) == x or x == whole or abs(x - whole) > NEAR_WHOLE * max(1, abs(whole)):
        return text
    return f"{whole} + {x - whole:.2g}" if x > whole else f"{whole} - {whole - x:.2g}"


def _outside(op: str, low: float, high: float) -> str:
    """How far a range [``low``, ``high``] reaches outside ``op``'s domain: `` (above 1 by
    2.2e-16)``; empty when the op's domain is not an interval or the range is inside it."""
    lo, hi = DOMAINS.get(op, (None, None))
    parts = []
    if lo is not None and low < lo:
        parts.append(f"below {fmt(lo)} by {lo - low:.2g}")
    if hi is not None and high > hi:
        parts.append(f"above {fmt(hi)} by {high - hi:.2g}")
    return f" ({' and '.join(parts)})" if parts else ""


def _moderate(n: dict) -> bool:
    """Finite numbers too small for any sum of products of them to overflow their dtype."""
    try:
        largest = float(np.finfo(np.dtype(n.get("dtype", "float64"))).max)
    except (TypeError, ValueError):
        largest = float(np.finfo(np.float64).max)
    if n.get("max_abs") is None or n.get("nonfinite"):
        return False
    return n["max_abs"] ** 2 * max(n.get("size", 1), 1) < largest


def _zero_over_zero_inside(first) -> tuple[Cause, list[str]]:
    """NaN from a NumPy function whose inputs were finite and moderate, raised by a divide inside
    it (``np.corrcoef`` of a constant column, ``np.std(x, ddof=1)`` of one value): no overflow
    can happen there, so the divide met 0 / 0."""
    sizes = [
        f"max |{e}| = {fmt(n['max_abs'])} ({n['dtype']}, {n['size']} entries)"
        for e, n in first.operands
        if n.get("max_abs") is not None
    ]
    evidence = [
        f"`{first.op}` made NaN at {_where(first)} and the flag was raised by `{first.ufunc}` "
        f"inside it, on finite operands ({'; '.join(sizes)}): far too small to overflow, so the "
        "divide met 0 / 0 (a spread of exactly 0, as a constant column's std, or a count of 0, "
        "as n - ddof with a single value)"
    ]
    cause = Cause(
        "division_by_zero", f"0 / 0 inside {first.op} made NaN at {_where(first)}", evidence
    )
    return cause, [
        "drop the constant (zero-variance) columns before this op, and give it enough values "
        "(np.std(x, ddof=1) needs at least 2); or guard the division (np.divide(a, b, "
        "out=np.zeros_like(a), where=b != 0))"
    ]


def _cancelled_overflow(first) -> tuple[Cause, list[str]]:
    """NaN from finite operands by an op with no domain to leave (a sum, a product, einsum):
    something inside it overflowed to +-inf and met its opposite (inf - inf) or a 0 (0 x inf)."""
    evidence = [
        f"max |{e}| = {fmt(n['max_abs'])} ({n['dtype']}) when `{first.op}` ran at {_where(first)}"
        for e, n in first.operands
        if n.get("max_abs") is not None and not _is_literal(e)
    ]
    evidence.append(
        f"{first.op} has no domain to leave: from finite operands, NaN means a sum or product "
        "inside it overflowed to +-inf and met its opposite (inf - inf) or a zero (0 x inf)"
    )
    cause = Cause(
        "overflow", f"{first.op} overflowed inside and made NaN at {_where(first)}", evidence
    )
    return cause, ["rescale the values before this op (standardize the inputs, scale W down)"]


# how to keep each op's argument in its domain
DOMAIN_ADVICE = {
    "sqrt": "keep the argument in the op's domain: np.sqrt(np.maximum(v, 0) + eps)",
    "log": "keep the argument positive: np.log(np.maximum(x, eps)) (or np.log1p for 1 + x)",
    "log2": "keep the argument positive: np.log2(np.maximum(x, eps))",
    "log10": "keep the argument positive: np.log10(np.maximum(x, eps))",
    "log1p": "keep the argument above -1: np.log1p(np.maximum(x, -1 + eps))",
    "arcsin": "keep the argument in [-1, 1]: np.arcsin(np.clip(x, -1, 1))",
    "arccos": "keep the argument in [-1, 1]: np.arccos(np.clip(x, -1, 1))",
    "arctanh": "keep the argument in (-1, 1): np.arctanh(np.clip(x, -1 + eps, 1 - eps))",
    "power": "a negative base to a fractional power is NaN: take np.abs(x) ** p, or clip x at 0",
    "float_power": "a negative base to a fractional power is NaN: clip the base at 0",
    "arccosh": "keep the argument at 1 or above: np.arccosh(np.maximum(x, 1))",
    "remainder": "a remainder by 0 (or of inf) is NaN: guard the divisor",
    "fmod": "a remainder by 0 (or of inf) is NaN: guard the divisor",
}


def _grew_untrained(first, grew_by: str, passes: int, evidence: list[str]):
    """Operands that grew over the passes of a loop that steps no variable (a recurrence such as
    ``h = W @ h``, a factor of the loop variable): an overflow, with its growth, not a training
    step's explosion -- a smaller learning rate would not change it."""
    loop = f"{first.loop['file']}:{first.loop['line']}"
    training = [o for o in first.loop.get("outer", []) if o.get("updates")]
    said = (
        f"{grew_by}: they grew from one pass of the loop at {loop} to the next, and that loop "
        "updates no variable by a step (x -= ..., x = x - ...)"
    )
    if training:  # a recurrence inside a training loop: what it multiplies by may have trained
        around = f"{training[0]['file']}:{training[0]['line']}"
        said += (
            f"; the loop at {around} around it does step variables, so what this loop starts "
            "from or multiplies by may have grown in training"
        )
    else:
        said += ", so no training step made them grow"
    evidence.append(said)
    cause = Cause(
        "overflow",
        f"values grew over {passes} passes of the loop at {loop} until {first.op} overflowed "
        f"at {_where(first)}",
        evidence,
    )
    advice = [
        f"find what makes them grow on each pass of the loop at {loop}: a recurrence "
        "(h = W @ h with a large W: scale W down, or bound h with tanh) or a factor that grows "
        "with the loop variable",
        "rescale the values before this op",
    ]
    if training:
        advice.insert(
            1, f"if the weights it uses grew in the loop at {around}, lower its step size"
        )
    return cause, advice


def _is_literal(expr: str) -> bool:
    try:
        float(expr)
    except ValueError:
        return False
    return True


def _no_large_growth(measured: list[tuple[int, float]], limit: float | None) -> str:
    """What the operands' sizes over the iterations show, when they did not grow ``GROWTH``-fold
    (nor past the op's ``limit``): "no growth was needed" only when that is what they show, the
    first measured iteration being the failing one or already beyond the limit."""
    (i0, m0), (i1, m1) = measured[0], measured[-1]
    if limit is not None and m0 >= limit:
        return (
            f"the operands were already max |x| = {fmt(m0)} at iteration {i0}, beyond the op's "
            f"limit {fmt(limit)}: no growth was needed"
        )
    if len(measured) == 1:
        return f"the operands were max |x| = {fmt(m0)} at iteration {i0}, where it overflowed"
    if m1 > m0:
        return (
            f"the operands grew from max |x| = {fmt(m0)} at iteration {i0} to {fmt(m1)} at "
            f"iteration {i1} (×{fmt(m1 / m0)}, less than {GROWTH:g}-fold)"
        )
    return (
        f"the operands were max |x| = {fmt(m0)} at iteration {i0} and {fmt(m1)} at iteration "
        f"{i1}: they did not grow"
    )


def _grown(growth: list, limit: float | None) -> tuple[bool, bool, list]:
    """Whether operands measured as (pass, max |x|) grew into the overflow: ``GROWTH``-fold, or
    past the op's ``limit`` from below it (from 0 too); whether they crossed it; the passes they were not 0
    (growth is measured from the first pass they were not all 0: zero-initialised weights)."""
    nonzero = [(i, m) for i, m in growth if m > 0]
    # from below the limit, 0 included (w = 0 at the first step, past exp's limit at the next)
    crossed = len(growth) >= 2 and limit is not None and growth[0][1] < limit <= growth[-1][1]
    grew = crossed or (len(nonzero) >= 2 and nonzero[-1][1] / nonzero[0][1] >= GROWTH)
    return grew, crossed, nonzero


def _dtype_of(first: FirstNonFinite) -> str | None:
    """The float dtype of the op's variables, when its operands could not be read."""
    dtypes = [n.get("dtype", "") for n in first.variables.values()]
    floats = [d for d in dtypes if d.startswith("float")]
    return floats[0] if floats else None


def _overflow(first, growth) -> tuple[Cause, list[str]]:
    biggest = max(
        (n for _, n in first.operands if n.get("max_abs") is not None),
        key=lambda n: n["max_abs"],
        default=None,
    )
    evidence = []
    for e, n in first.operands:
        if n.get("max_abs") is not None and not _is_literal(e):
            evidence.append(
                f"max |{e}| = {fmt(n['max_abs'])} ({n['dtype']}) when `{first.op}` overflowed at {_where(first)}"
            )
    limit = None  # the op's largest operand that does not overflow, where it is known
    if first.op in EXPONENTIALS:  # in place (np.exp(Z, out=Z)) the operand is gone: its dtype
        dtype = biggest["dtype"] if biggest is not None else _dtype_of(first)
        limit = _exp_limit(dtype, first.op) if dtype else None
        if limit:
            evidence.append(f"{first.op} overflows {dtype} beyond {fmt(limit)}")
    grew, crossed, nonzero = _grown(growth, limit)
    over = ""  # the loop the growth is told over, when not the innermost
    trained = first.loop is None or first.loop.get("updates", True)
    outer = (first.loop or {}).get("outer") or [{}]
    if not grew and first.entry_growth and outer[0]:
        # a batch loop entered once per epoch: the operands grew over the epochs around it
        entered, crossed_, nonzero_ = _grown(first.entry_growth, limit)
        if entered:
            last = first.entry_growth[-1][0]
            shift = outer[0]["iteration"] - last if outer[0].get("iteration") else 0
            growth = [(k + shift, m) for k, m in first.entry_growth]
            nonzero = [(k + shift, m) for k, m in nonzero_]
            grew, crossed = True, crossed_
            over = f" of the loop at {outer[0]['file']}:{outer[0]['line']}"
            trained = trained or bool(outer[0].get("updates"))
    # a growth is a training step's only where the loop steps a variable (W -= lr * g ...)
    if grew:
        (i0, m0), (i1, m1) = nonzero[0], nonzero[-1]
        if crossed and len(nonzero) < 2:  # from 0 straight past the limit
            (i0, m0) = growth[0]
        start = f"0 at iteration {growth[0][0]}, " if growth[0][1] == 0 and m0 > 0 else ""
        times = f" (×{fmt(m1 / m0)})" if m0 > 0 else ""
        grew_by = (
            f"the operands grew from {start}max |x| = {fmt(m0)} at iteration {i0}{over} to "
            f"{fmt(m1)} at iteration {i1}{times}"
        )
        if crossed:
            grew_by += (
                f"; at iteration {i0} they were below {first.op}'s limit {fmt(limit)}, so it "
                "overflowed only once they had grown"
            )
        if not trained:
            return _grew_untrained(first, grew_by, i1, evidence)
        evidence.append(f"{grew_by}: each update made them larger")
        cause = Cause(
            "exploding_gradient",
            f"values grew over {i1} iterations{over} until {first.op} overflowed at "
            f"{_where(first)}",
            evidence,
        )
        advice = [
            "lower the step size (learning rate), e.g. by 10×",
            "clip the gradient norm before the update (g *= min(1, max_norm / np.linalg.norm(g)))",
        ]
        return cause, advice
    if growth:  # they did not grow GROWTH-fold, nor past a known limit: said as measured
        evidence.append(_no_large_growth(nonzero or growth[:1], limit))
    cause = Cause("overflow", f"{first.op} overflowed at {_where(first)}", evidence)
    dtype = biggest["dtype"] if biggest is not None else None
    if first.op in EXPONENTIALS and _in_a_sigmoid(first):
        advice = [
            "compute the sigmoid without overflow: np.exp(-np.logaddexp(0, -z)) or "
            "scipy.special.expit(z) (exp(-z) overflows once z < -709 in float64; 1/(1+exp(-z)) "
            "is then exactly 0), or clip z first (np.clip(z, -500, 500))",
            "keep the pre-activations small: standardize the inputs, a lower step size",
        ]
    elif first.op in EXPONENTIALS:
        advice = [
            "subtract the row max before exp (a max-shifted softmax: np.exp(z - z.max(axis=1, keepdims=True))), "
            "or use log-sum-exp for the loss",
            "if the inputs are unscaled (raw pixels 0-255, prices), standardize them: huge inputs "
            "make huge logits",
        ]
    else:
        advice = ["rescale the values before this op (standardize the inputs)"]
    if dtype in ("float16", "float32"):
        largest = float(np.finfo(dtype).max)
        advice.append(
            f"compute this op in a wider dtype (x.astype(np.float64)): {dtype}'s largest finite "
            f"value is {fmt(largest)}"
        )
    return cause, advice
