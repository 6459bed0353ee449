"""Catch the first non-finite value of a run, and the op that made it, without scanning arrays.

IEEE arithmetic only turns finite inputs into a non-finite result by raising a floating-point
flag: ``inf`` from *overflow* or *divide by zero*, ``nan`` from *invalid*. NumPy checks these flags
after every ufunc and, under ``np.errstate(...='call')``, calls us back. So the training loop
labels where it is (:meth:`FPWatch.at`: phase, layer, tensors) and the math labels which primitive
it runs (:func:`op`); a callback records each event with its labels, and only a group of ops that
raised an event has its outputs scanned. Quiet NaN propagation raises nothing, which is why data
are scanned once when loaded, and why the run stops at the first non-finite value.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

_op = "?"

SHARED = {"x", "y"}  # tensors without a replica axis: the data
Phase = Literal["data", "preprocess", "forward", "loss", "backward", "update"]
Value = Literal["nan", "inf", "-inf"]

KINDS = {"overflow": "overflow", "invalid value": "invalid", "divide by zero": "divide"}


def op(name: str) -> None:
    """Name the primitive op the math is about to run (``exp``, ``log``, ``divide``, ...)."""
    global _op
    _op = name


@dataclass
class FPEvent:
    """One kind of floating-point event at one place: first step seen, and how often."""

    phase: str
    layer: int | None
    tensor: str
    op: str
    kind: str  # overflow | invalid | divide
    first_step: int
    count: int = 1


@dataclass
class NonFinite:
    """The first non-finite value of one replica: where, in which op, and what went into it."""

    step: int | None
    phase: Phase
    layer: int | None
    tensor: str
    op: str
    value: Value
    fraction: float  # share of the tensor's entries that are non-finite
    events: list[tuple[str, str]] = field(default_factory=list)  # (op, kind) in the failing group
    inputs: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "step": self.step,
            "phase": self.phase,
            "layer": self.layer,
            "tensor": self.tensor,
            "op": self.op,
            "value": self.value,
            "fraction": self.fraction,
            "events": [{"op": o, "kind": k} for o, k in self.events],
            "inputs": self.inputs,  # the finite values that went into the failing op
        }


def value_kind(a: np.ndarray) -> str:
    """``nan`` if ``a`` holds a NaN, else ``inf`` or ``-inf`` (``a`` must hold a non-finite)."""
    if np.isnan(a).any():
        return "nan"
    return "inf" if (a == np.inf).any() else "-inf"


def describe(a: np.ndarray) -> dict[str, float]:
    """Summary numbers of one replica's finite input to a failing op."""
    a = np.asarray(a, dtype=np.float64)
    finite = np.isfinite(a)
    mag = np.abs(a[finite])
    return {
        "max_abs": float(mag.max()) if mag.size else None,
        "min_abs": float(mag.min()) if mag.size else None,
        "exact_zeros": int(np.count_nonzero(a == 0)),
        "exact_ones": int(np.count_nonzero(a == 1)),  # a probability's other limit
        "nonfinite": int(a.size - np.count_nonzero(finite)),
        "size": int(a.size),
    }


_installed: list[FPWatch] = []  # the watches installed, innermost last (see FPWatch.install)


def installed_watch() -> FPWatch | None:
    """The watch the loop runs under, if any (see :meth:`FPWatch.install`); read from a module
    list, not ``np.geterrcall()``, which costs as much as a small ufunc."""
    return _installed[-1] if _installed else None


@contextmanager
def _installing(watch: FPWatch) -> Iterator[None]:
    with np.errstate(over="call", invalid="call", divide="call", under="ignore", call=watch):
        _installed.append(watch)
        try:
            yield
        finally:
            _installed.pop()


class FPWatch:
    """Records floating-point events and finds each replica's first non-finite tensor.

    Replicas are the leading axis of every tensor the loop checks (``(n, ...)``); tensors without
    that axis (shared data) are treated as belonging to every replica.
    """

    def __init__(self, n_replicas: int):
        self.alive = np.arange(n_replicas)  # original index of each replica row, set by the loop
        self.step: int | None = None
        self.events: dict[tuple, FPEvent] = {}
        self.first_nonfinite: dict[
            int, NonFinite
        ] = {}  # original replica -> its first non-finite value
        self.failed_now: list[int] = []  # rows (positions in ``alive``) that failed this step
        self._where: tuple = ("setup", None, ("?",), ())
        self._group: list[tuple[str, str]] = []
        self.muted = False
        self._probing = False  # a fast path runs: only note that something was raised
        self._probed = False
        # Loss scaling: non-finite gradients skip the step instead of failing the run, so the
        # backward pass is scanned by the trainer (per replica), not recorded as a first value.
        self.provisional = False

    # -- callbacks from numpy and from the loop
    def __call__(self, kind: str, flag: int) -> None:
        if self.muted:
            return
        if self._probing:
            self._probed = True
            return
        kind = KINDS.get(kind, kind)
        self._group.append((_op, kind))
        phase, layer, tensors, _ = self._where
        key = (phase, layer, tensors[0], _op, kind)
        ev = self.events.get(key)
        if ev is None:
            self.events[key] = FPEvent(phase, layer, tensors[0], _op, kind, self.step or 0)
        else:
            ev.count += 1

    def probe(self) -> None:
        """A fast, unlabelled path begins: record nothing, only whether any flag was raised."""
        self._probing, self._probed = True, False

    def end_probe(self) -> bool:
        """End the probe; True if a flag was raised (then redo the work labelled)."""
        self._probing = False
        return self._probed

    @property
    def probing(self) -> bool:
        return self._probing

    def at(self, phase: str, layer: int | None, tensors: tuple[str, ...], inputs=()) -> None:
        """The loop is about to compute ``tensors`` of ``phase``/``layer`` from ``inputs``."""
        self._where = (phase, layer, tensors, inputs)
        self._group = []

    def also(self, name: str, array: np.ndarray) -> None:
        """Add an input computed inside the group (a norm's ``inv_std``) to what a failure of
        this group reports, without starting a new group."""
        phase, layer, tensors, inputs = self._where
        self._where = (phase, layer, tensors, (*inputs, (name, array)))

    def check(self, *arrays: np.ndarray) -> None:
        """Called with the group's outputs; scans them only if an event was raised."""
        if self._group:
            self.scan(*arrays)

    def scan(self, *arrays: np.ndarray) -> None:
        """Scan ``arrays`` (named by the last :meth:`at`) and record replicas that went non-finite."""
        if self.provisional:
            return
        phase, layer, tensors, inputs = self._where
        n = len(self.alive)
        for name, a in zip(tensors, arrays, strict=True):
            a = np.asarray(a)
            per_replica = name not in SHARED
            bad = ~np.isfinite(a.reshape(n, -1) if per_replica else a.reshape(1, -1))
            bad_rows = bad.any(axis=1)
            for r in range(n):
                row = r if per_replica else 0
                orig = int(self.alive[r])
                if orig in self.first_nonfinite or not bad_rows[row]:
                    continue
                part = a[r] if per_replica else a
                self.first_nonfinite[orig] = NonFinite(
                    step=self.step,
                    phase=phase,
                    layer=layer,
                    tensor=name,
                    op=self._group[0][0] if self._group else _op,
                    value=value_kind(part),
                    fraction=float(bad[row].mean()),
                    events=list(dict.fromkeys(self._group)),
                    inputs={k: describe(v if k in SHARED else v[r]) for k, v in inputs},
                )
                self.failed_now.append(r)

    def install(self):
        """The error state under which the loop runs (use as a context manager)."""
        return _installing(self)


class NullWatch:
    """Instrumentation off: the same interface, doing nothing (for overhead benchmarks)."""

    step = None
    muted = False
    provisional = False
    alive = None
    failed_now: list[int] = []
    first_nonfinite: dict[int, NonFinite] = {}

    def at(self, *args, **kwargs) -> None:
        pass

    def check(self, *arrays) -> None:
        pass

    def also(self, *args) -> None:
        pass

    scan = check

    def probe(self) -> None:
        pass

    def end_probe(self) -> bool:
        return False

    probing = False

    def install(self) -> np.errstate:
        return np.errstate(all="ignore")
