"""What a run saw besides its first non-finite value: warnings from the events and final arrays.

- ``exp`` underflowing (or overflowing into a statement that stayed finite, ``1/(1+inf) = 0``) at a
  line means a sigmoid or softmax there returned exactly 0 or 1: saturation.
- Probability-like arrays left in the program's variables (values in [0, 1], e.g. a sigmoid
  layer's output) are checked for entries pinned at their limits, as ``run`` does for its layers.
- NaN left in the program's variables when no event explains it calls for the second pass.
"""

from __future__ import annotations

import ast

import numpy as np

from nandoctor.trace import npstate
from nandoctor.trace.evaluate import DISCARDED, EXPONENTIALS, on_grid, op_name
from nandoctor.trace.events import Recorder, Site, likely_value
from nandoctor.trace.frames import display_path, source_line, statement_at, statement_source
from nandoctor.trace.result import TraceWarning

SATURATION_TOL = 1e-3  # outputs this close to 0 or 1 are saturated (as run's history)
SATURATED_SHARE = 0.25  # share of an array's entries near its limits that a note calls out
PARTLY = 0.025  # p(1 - p) under a tenth of its peak 0.25: a partly saturated unit


def _site_text(site: Site) -> str:
    source = statement_source(site.file, site.line, site.column)
    return f"{display_path(site.file)}:{site.line} (`{source}`)"


def event_warnings(recorder: Recorder) -> tuple[list[TraceWarning], list[str]]:
    """Saturation warnings from ``exp`` underflowing or overflowing harmlessly; notes for the rest."""
    warnings, notes = [], []
    for (code, line), count in sorted(recorder.underflow.items(), key=lambda kv: -kv[1]):
        site = Site(code.co_filename, line, "underflow", count)
        times = f"{count:,}{'+' if recorder.underflow_capped else ''} time(s)"
        if _calls_exponential(site.file, line):
            summary = (
                f"exp underflowed {times} at {_site_text(site)}: its result was exactly 0 "
                "there, a sigmoid or softmax pinned at exactly 0 or 1 (saturated)"
            )
            warnings.append(TraceWarning("saturation", summary, display_path(site.file), line))
        else:
            notes.append(f"underflow to 0 {times} at {_site_text(site)}")
    for site in recorder.sites.values():
        if site.absorbed and (
            recorder.first is None or _place(site) != _place(recorder.first_site)
        ):
            summary = absorbed_text(site)
            if site.op in EXPONENTIALS:
                warnings.append(
                    TraceWarning("saturation", summary, display_path(site.file), site.line)
                )
            else:
                notes.append(summary)
    return warnings, notes


def _calls_exponential(file: str, line: int) -> bool:
    """The statement at ``file:line`` calls an exponential (read from its syntax)."""
    stmt = statement_at(file, line)
    return stmt is not None and any(
        isinstance(node, ast.Call) and op_name(node) in EXPONENTIALS for node in ast.walk(stmt)
    )


KIND_WORDS = {
    "overflow": "overflow(s)",
    "invalid": "invalid-value event(s)",
    "divide_by_zero": "divide-by-zero event(s)",
}
DISCARDING = ("where", "select", "nan_to_num", "nansum", "nanmean", "nanmax", "nanmin")


# what an integer op made where it raised a flag: never a NaN or an Inf
INTEGER_MADE = {
    "divide_by_zero": "made 0 (NumPy's integer division by 0 gives 0, never NaN or Inf)",
    "overflow": "wrapped around (an integer overflow wraps, never Inf)",
}


def _made(site: Site) -> str:
    what = f"`{site.op}`" if site.op and site.op != "?" else "an op"
    events = f"{site.count:,} {KIND_WORDS.get(site.kind, site.kind)} in {what}"
    if site.integer:
        return (
            f"{events} on integers {INTEGER_MADE.get(site.kind, 'made integers, never NaN or Inf')}"
        )
    made = site.value or likely_value(site.kind, site.op or "")
    return f"{events} made {made}"


def _by(site: Site) -> str:
    if site.absorbed_at is not None:  # kept in a variable, absorbed where it was read
        what = f"`{site.absorber}`" if site.absorber and site.absorber != "?" else "the statement"
        return (
            f"{what} at line {site.absorbed_at} (`{source_line(site.file, site.absorbed_at)}`), "
            "the next statement to read it, absorbed"
        )
    if site.absorber == DISCARDED:
        return "the statement discarded (a bare expression: its value is not kept)"
    if site.absorber in DISCARDING:
        return f"`{site.absorber}` in the same statement discarded"
    if site.absorber:
        return f"`{site.absorber}` in the same statement absorbed"
    return "the rest of the statement absorbed"


def _fate(site: Site) -> str:
    if site.aborted >= site.count:
        return (
            f"{site.count:,} {KIND_WORDS.get(site.kind, site.kind)} at {_site_text(site)} raised "
            "the program's own error (np.seterr 'raise' or a warnings filter 'error'), so the "
            "statement assigned nothing"
        )
    if site.integer:
        return f"{_made(site)} at {_site_text(site)}"
    return f"{_made(site)} that {_by(site)}"


def absorbed_text(site: Site) -> str:
    """What an event whose statement stayed finite did, exactly: which op made which value,
    which op absorbed it, how many of the events were checked, whether the program silenced it."""
    checked = "" if site.absorbed >= site.count else f" ({site.absorbed:,} of them checked)"
    kept = (
        "every later statement of its block that read it stayed finite"
        if site.absorbed_at is not None
        else "nothing kept it"
        if site.absorber == DISCARDED
        else "the statement's result stayed finite"
    )
    if site.integer:  # nothing non-finite to absorb
        return f"{_made(site)} at {_site_text(site)}{checked}"
    text = f"{_made(site)} at {_site_text(site)} that {_by(site)}{checked}: {kept}"
    if site.op in EXPONENTIALS:
        text += " (1/(1+inf) = 0: a sigmoid pinned at 0 or 1)"
    if site.silenced:
        text += "; the program silenced these itself (np.errstate/np.seterr 'ignore')"
    return text


def _place(site: Site | None) -> tuple | None:
    """Where a site is: its file, line and, on a line of several statements, its statement."""
    return None if site is None else (site.file, site.line, site.column)


def arrays_in(namespace: dict, depth: int = 1):
    """(name, float array) pairs in a namespace and, one level down, in its objects' attributes."""
    for name, value in list(namespace.items()):
        if name.startswith("__"):
            continue
        if isinstance(value, np.ndarray) and value.dtype.kind in "fc":
            yield name, value
        elif isinstance(value, float | np.floating):
            yield name, np.asarray(value)
        elif depth > 0 and hasattr(value, "__dict__") and not isinstance(value, type):
            attrs = getattr(value, "__dict__", None)
            if isinstance(attrs, dict) and not _is_module(value):
                for sub, array in arrays_in(attrs, depth - 1):
                    yield f"{name}.{sub}", array


def _is_module(value) -> bool:
    import types

    return isinstance(value, types.ModuleType)


def named_arrays(namespaces: list[tuple[str | None, dict]]):
    """(name, float array) of each namespace, each array once; a function's locals are named
    ``x (in main)``."""
    seen = set()
    for function, namespace in namespaces:
        for name, a in arrays_in(namespace):
            if id(a) in seen:
                continue
            seen.add(id(a))
            yield (f"{name} (in {function})" if function else name), a


def leftover_nan(namespaces: list[tuple[str | None, dict]]) -> list[tuple[str, int, int]]:
    """Variables still holding NaN at the end: (name, NaN count, size). Inf alone is a sentinel."""
    from nandoctor.trace.silent import float_values

    found = []
    numbers = [
        (f"{name} (in {function})" if function else name, a)
        for function, namespace in namespaces
        for name, value in list(namespace.items())
        if not name.startswith("__") and (a := float_values(value)) is not None
    ]
    for name, a in [*named_arrays(namespaces), *numbers]:
        with npstate.errstate(all="ignore"):
            count = int(np.count_nonzero(np.isnan(a)))
        if count:
            found.append((name, count, int(a.size)))
    return found


def saturation_notes(namespaces: list[tuple[str | None, dict]]) -> list[str]:
    """What the final arrays in [0, 1] show near their limits, as notes, never warnings: from its
    numbers alone an array cannot say whether it is a hidden sigmoid (saturated: its derivative
    is near zero), an output trained with cross-entropy (confident: expected there), or data
    (clipped, rates, scaled: 0 and 1 are values). A saturation warning needs an op's evidence
    (``exp`` underflowing, from the events)."""
    notes = []
    for name, a in named_arrays(namespaces):
        if a.size < 2 or not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            continue
        if np.all((a == 0) | (a == 1)):
            continue  # a mask or one-hot labels, not a squashing function's output
        levels = _grid_levels(a)
        if levels is not None:  # pixels / 255: data on a grid, whatever share of it is 0
            notes.append(
                f"`{name}` (values in [0, 1], {a.size} entries) takes only {levels} distinct "
                "values between its limits: data on a grid (pixels / 255?), not a squashing "
                "function's output"
            )
            continue
        pinned = float(((a < SATURATION_TOL) | (a > 1 - SATURATION_TOL)).mean())
        partly = float((a * (1 - a) < PARTLY).mean())
        if pinned >= SATURATED_SHARE:
            notes.append(
                f"`{name}` (values in [0, 1], {a.size} entries) ends with {100 * pinned:.0f}% "
                f"within {SATURATION_TOL} of 0 or 1: saturated if it is a hidden layer's "
                "sigmoid (near-zero derivative); expected if it is a confident output trained "
                "with cross-entropy, or data"
            )
        elif partly > 0:
            notes.append(
                f"`{name}` (values in [0, 1], {a.size} entries) ends with {100 * partly:.0f}% "
                f"partly saturated (p(1-p) under a tenth of its peak) and "
                f"{100 * pinned:.0f}% within {SATURATION_TOL} of 0 or 1"
            )
    return notes


GRID_MIN = 64  # values strictly between the limits needed to judge whether they lie on a grid
GRID_REPEATS = 4  # each distinct value held this many times on average: data, or a collapse


def _grid_levels(a: np.ndarray) -> int | None:
    """The distinct values of ``a`` between its saturation limits when they lie on a grid, as
    data do (image pixels k / 255, ratings k / 10): repeated, and each a whole multiple of the
    smallest gap between them; else None. A sigmoid or softmax output is continuous: its values
    are all but never equal, and when they are (a collapsed network, every row alike) they sit
    at no common step."""
    inside = a[(a >= SATURATION_TOL) & (a <= 1 - SATURATION_TOL)]
    if inside.size < GRID_MIN:
        return None
    levels = np.unique(inside)
    if levels.size * GRID_REPEATS > inside.size:
        return None
    return levels.size if on_grid(levels) else None


def finite_summary(recorder: Recorder, placeholders: bool = False) -> str:
    """The verdict of a program that kept no NaN or Inf, saying exactly what was seen;
    ``placeholders``: the variables still held NaN the program wrote itself (named below)."""
    under = sum(recorder.underflow.values())
    sites = sorted(recorder.sites.values(), key=lambda site: -site.count)
    parts = []
    if under:
        capped = " (counting stopped there, to stay cheap)" if recorder.underflow_capped else ""
        parts.append(f"{under:,} underflow event(s){capped}")
    if not sites:
        seen = "; ".join(parts) if parts else "no floating-point event at all"
        left = (
            "none was left in the variables nandoctor could read but the program's own placeholders"
            if placeholders
            else "none was left in the variables nandoctor could read"
        )
        return f"no operation created a NaN or an Inf, and {left} ({seen})"
    made = "; ".join(_fate(site) for site in sites)
    also = f"; {parts[0]}" if parts else ""
    if all(site.integer for site in sites):  # flags of integer ops only: none made one
        but = " but the program's own placeholders" if placeholders else ""
        return (
            "no operation created a NaN or an Inf, and none was left in the variables nandoctor "
            f"could read{but}: {made}{also}"
        )
    but = " but the program's own placeholders" if placeholders else ""
    return f"no NaN or Inf{but} reached a value the program kept: {made}{also}"
