"""Per-step, per-layer history of a run, in memory that does not grow with the number of steps.

A run of a million steps must cost no more memory than one of ten thousand, and be diagnosed as
precisely at step 900,000 as at step 50. So the history keeps two records:

- the **window**: every statistic of every step, at full resolution, for the last ``window``
  steps (a ring buffer, grown by doubling as steps run, so a long spec that dies at step 9 never
  allocates room for steps it did not reach). The diagnosis rules read this.
- the **summary**: the whole run downsampled into at most ``buckets`` buckets of equal width
  (min, max and last value of every statistic per bucket). When the buckets are full their width
  doubles and neighbours merge. Steps enter it as they leave the window, ``chunk`` at a time.

A replica that goes non-finite stops being written; its window and summary are set aside at that
moment (:meth:`History.retire`), so the rows around its failure stay while other replicas go on.

Every statistic is ``(n_replicas, n_layers)`` per step (``loss`` is ``(n_replicas,)``), float64,
NaN where not taken. Layer ``i`` of the arrays is layer ``i + 1`` of the spec.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from nandoctor.engine.nn import activation, limit_shares, share_of
from nandoctor.engine.optim import norms
from nandoctor.report.output import open_output, write_text

STATS = (
    "max_abs_z",  # largest |pre-activation|
    "saturated",  # share of saturated units (sigmoid, tanh, softmax rows)
    "weak",  # share of sigmoid/tanh units whose derivative is under a tenth of its peak
    "dead",  # share of ReLU units with z <= 0 for every sample of the batch (no gradient at all)
    "grad_norm",  # L2 norm of the layer's weight and bias gradients
    "weight_norm",  # L2 norm of the layer's weights after the update
    "update_ratio",  # |delta W| / |W| of the update
)


WINDOW = 4096  # steps kept at full resolution (the diagnosis reads these)
CHUNK = 256  # steps folded into the summary at once as they leave the window
BUCKETS = 512  # the summary's length; its buckets double in width when full
SMALL_FLAT = 1 << 16  # parameters x replicas up to which the norms are taken in one stacked pass


class Summary:
    """Min, max and last value of every column per bucket of ``width`` steps: bucket ``j`` holds
    steps ``j * width + 1 .. (j + 1) * width``. ``columns``: the shape of one step's row."""

    def __init__(self, columns: tuple, buckets: int):
        self.width = 1
        self.size = buckets
        self.min = np.full((buckets, *columns), np.nan)
        self.max = np.full((buckets, *columns), np.nan)
        self.last = np.full((buckets, *columns), np.nan)
        self.used = 0  # buckets holding at least one step

    def copy(self) -> Summary:
        other = Summary.__new__(Summary)
        other.__dict__.update(self.__dict__)
        other.min, other.max, other.last = self.min.copy(), self.max.copy(), self.last.copy()
        return other

    def _double(self) -> None:
        """Merge neighbouring buckets: twice the width, half as many."""
        half = self.size // 2
        for name, merge in (("min", np.fmin), ("max", np.fmax)):
            a = getattr(self, name)
            a[:half] = merge(a[0 : self.size : 2], a[1 : self.size : 2])
            a[half:] = np.nan
        later_used = np.arange(1, self.size, 2) < self.used
        pick = later_used.reshape((-1,) + (1,) * (self.last.ndim - 1))
        self.last[:half] = np.where(pick, self.last[1::2], self.last[0::2])
        self.last[half:] = np.nan
        self.used = (self.used + 1) // 2
        self.width *= 2

    def fold(self, first_step: int, rows: np.ndarray) -> None:
        """Add ``rows`` (consecutive steps from ``first_step``, 1-based) to the buckets."""
        if not len(rows):
            return
        last_step = first_step + len(rows) - 1
        while (last_step - 1) // self.width >= self.size:
            self._double()
        ids = (np.arange(first_step, last_step + 1) - 1) // self.width
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        ends = np.r_[starts[1:], len(rows)] - 1
        u = ids[starts]
        self.min[u] = np.fmin(self.min[u], np.fmin.reduceat(rows, starts, axis=0))
        self.max[u] = np.fmax(self.max[u], np.fmax.reduceat(rows, starts, axis=0))
        self.last[u] = rows[ends]
        self.used = int(u[-1]) + 1


class Record:
    """A ring of full-resolution rows (the window) in front of a :class:`Summary`."""

    def __init__(self, columns: tuple, steps: int, window: int, chunk: int, buckets: int):
        if window % chunk:
            raise ValueError("the window must be a whole number of chunks")
        self.window, self.chunk = window, chunk
        self.rows = np.full((min(64, window, max(steps, 1)), *columns), np.nan)
        self.summary = Summary(columns, buckets)
        self.steps = 0  # the last step written
        self.initial = np.full(columns, np.nan)  # step 1's row, kept whatever the window holds

    def row(self, step: int) -> np.ndarray:
        """The row to fill for ``step`` (1-based, each step once and in order)."""
        k = step - 1
        if k < self.window:
            if k >= len(self.rows):  # grow by doubling, never past the window
                size = len(self.rows)
                while size <= k:
                    size = min(2 * size, self.window)
                grown = np.full((size, *self.rows.shape[1:]), np.nan)
                grown[: len(self.rows)] = self.rows
                self.rows = grown
        elif k % self.chunk == 0:  # this chunk of the ring is about to be overwritten, row by row
            at = k % self.window
            self.summary.fold(step - self.window, self.rows[at : at + self.chunk])
        if step == 2:
            self.initial = self.rows[0].copy()
        self.steps = step
        return self.rows[k % self.window]

    def recent(self) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, rows)`` of the window in step order."""
        n = min(self.steps, self.window)
        first = self.steps - n + 1
        at = (first - 1) % self.window
        order = (np.arange(n) + at) % self.window
        return np.arange(first, self.steps + 1), self.rows[order]

    def whole(self) -> Summary:
        """The summary of every step so far (the window's unfolded rows folded into a copy)."""
        s = self.summary.copy()
        steps, rows = self.recent()
        folded = max(0, self.steps - self.window + self.chunk - 1) // self.chunk * self.chunk
        if self.steps > self.window:  # steps up to ``folded`` are in the summary already
            keep = steps > folded
            steps, rows = steps[keep], rows[keep]
        if len(rows):
            s.fold(int(steps[0]), rows)
        return s


class History:
    """The statistics of every live replica, one row per step (see the module docstring).

    ``slots`` (the trainer's parameter layout, ``nandoctor.engine.layout``) says which of the
    parameter arrays are each layer's; without it they are ``[W1, b1, W2, b2, ...]``."""

    def __init__(
        self,
        n: int,
        layers: int,
        steps: int,
        window: int | None = None,
        chunk: int | None = None,
        buckets: int | None = None,
        slots=None,
        layer_specs=None,
    ):
        window, chunk = window or WINDOW, chunk or CHUNK
        buckets = buckets or BUCKETS
        self.n, self.layers = n, layers
        self.steps_run = 0
        # one row: loss, then each statistic's layers: (n, 1 + len(STATS) * layers)
        self.record_ = Record((n, 1 + len(STATS) * layers), steps, window, chunk, buckets)
        self.retired: dict[int, Record] = {}  # replica -> its record when it stopped
        self._acts = None  # the activations the columns were prepared for (_prepare_columns)
        self._slot_starts = None  # the flat buffers' layout, once given (use_layout)
        if slots is None:  # the classic layout: W and b for every layer
            self._weights = list(range(0, 2 * layers, 2))
            self._members = [[2 * i, 2 * i + 1] for i in range(layers)]
            self._bias = {i: 2 * i + 1 for i in range(layers)}
        else:
            self._weights = [j for j, s in enumerate(slots) if s.name == "W"]
            self._members = [
                [j for j, s in enumerate(slots) if s.layer == i] for i in range(layers)
            ]
            # A plain layer's bias gradient is exactly 0 where a ReLU unit is dead for the batch.
            self._bias = {
                s.layer: j
                for j, s in enumerate(slots)
                if s.name == "b"
                and layer_specs[s.layer].norm == "none"
                and not layer_specs[s.layer].dropout
            }

    def use_layout(self, layout) -> None:
        """The parameters' places in the trainer's flat buffers (a ``FlatLayout``, slot order):
        :meth:`record` may then take the norms from those buffers in a few calls."""
        self._layout = layout
        self._slot_starts = np.array([int(a) for a, _ in layout.bounds], dtype=np.intp)
        # the slots of a layer are consecutive: its first slot's position among the slots
        self._layer_first = np.array([m[0] for m in self._members], dtype=np.intp)
        self._weights_at = np.array(self._weights, dtype=np.intp)

    def _prepare_columns(self, acts: list[str]) -> None:
        L = self.layers
        col = {name: 1 + j * L for j, name in enumerate(STATS)}
        self._col = col
        self._norms_at = col["grad_norm"]  # grad_norm, weight_norm, update_ratio are consecutive
        assert STATS[-3:] == ("grad_norm", "weight_norm", "update_ratio")
        self._fns = [activation(a) for a in acts]
        # the columns a layer's activation never fills are 0 (no saturation, no dead units)
        never = []
        for i, fn in enumerate(self._fns):
            never += [col["dead"] + i] if not fn.can_die else []
            never += [col["saturated"] + i] if not fn.saturates else []
            never += [col["weak"] + i] if fn.limit_distance is None else []
        self._never = np.array(never, dtype=np.intp)
        self._blanked = None  # the ring array whose ``never`` columns were last set to 0
        self._acts = acts

    def record(
        self, step, alive, zs, activations, acts, grads, params, deltas, loss, flat=None
    ) -> None:
        """Take the statistics of ``step`` (1-based) for the live replicas ``alive``.

        ``zs``, ``activations``: per layer ``(n, batch, units)``; ``grads``, ``params``,
        ``deltas``: the parameter arrays (in the trainer's slot order; without slots ``[W1, b1,
        W2, b2, ...]``) with a leading replica axis. ``flat``: the same three as ``(n, total)``
        buffers (after :meth:`use_layout`), when the trainer has them (``deltas`` may then be
        None). Called with
        floating-point events muted: this arithmetic is bookkeeping, not the network's.
        """
        if self._acts is not acts:
            self._prepare_columns(acts)
        self.steps_run = step
        rec = self.record_
        full = rec.row(step)
        if self._blanked is not rec.rows:  # a new ring (the first, or grown): once per ring
            rec.rows[:, :, self._never] = 0.0
            self._blanked = rec.rows
        if self._slot_starts is None:  # no layout given: the buffers cannot be read
            flat = None
        if len(alive) == 1 and flat is not None:
            values = self._one_replica(zs, activations, grads, flat, loss)
            if values is not None:
                full[alive[0]] = values
                return
        row = full if len(alive) == self.n else full[alive]
        L, col = self.layers, self._col
        row[:, 0] = loss
        norms3 = None
        if flat is not None:
            norms3 = self._flat_norms(*flat)
        if norms3 is None:
            if deltas is None:  # the flat update's: its buffer holds them
                deltas = self._layout.views(flat[2])
            norms3 = self._list_norms(grads, params, deltas)
        g, w, dw = norms3
        at = self._norms_at
        row[:, at : at + L] = g
        row[:, at + L : at + 2 * L] = w
        row[:, at + 2 * L : at + 3 * L] = dw / np.where(w > 0, w, np.nan)
        for i, (z, a, fn) in enumerate(zip(zs, activations, self._fns, strict=True)):
            # the max of |z| propagates a NaN, as max |z| should
            row[:, col["max_abs_z"] + i] = np.maximum.reduce(np.abs(z), axis=(-2, -1))
            if fn.can_die:
                if i in self._bias:
                    # z <= 0 for every sample <=> relu' = 0 on every row <=> bias gradient 0.
                    row[:, col["dead"] + i] = share_of(grads[self._bias[i]] == 0)
                else:  # no plain bias (use_bias false, a norm, dropout): read z itself
                    row[:, col["dead"] + i] = (~(z > 0).any(axis=-2)).mean(axis=-1)
            if fn.limit_distance is not None:
                row[:, col["saturated"] + i], row[:, col["weak"] + i] = limit_shares(fn, a)
            elif fn.saturated is not None:
                row[:, col["saturated"] + i] = fn.saturated(a)
        if row is not full:
            full[alive] = row

    def _one_replica(self, zs, activations, grads, flat, loss) -> list[float] | None:
        """The row of a step with one live replica, as Python floats written in one go: the same
        statistics as :meth:`record`'s arrays, in a third of the NumPy calls (on a small network
        the calls, not the arithmetic, are the cost). None when a sum of squares overflowed."""
        sq_g, sq_p, sq_d = self._slot_squares(*flat).tolist()
        if not math.isfinite(sum(sq_g) + sum(sq_p) + sum(sq_d)):
            return None
        L = self.layers
        max_z, saturated, weak, dead = [0.0] * L, [0.0] * L, [0.0] * L, [0.0] * L
        for i, (z, a, fn) in enumerate(zip(zs, activations, self._fns, strict=True)):
            max_z[i] = float(np.maximum.reduce(np.abs(z), axis=None))  # NaN propagates
            if fn.can_die:
                if i in self._bias:  # z <= 0 for every sample <=> a bias gradient of exactly 0
                    gb = grads[self._bias[i]]
                    dead[i] = np.count_nonzero(gb == 0) / gb.size
                else:
                    dead[i] = float((~(z > 0).any(axis=-2)).mean())
            if fn.limit_distance is not None:
                saturated[i], weak[i] = limit_shares(fn, a)
            elif fn.saturated is not None:
                saturated[i] = float(fn.saturated(a)[0])
        grad = [math.sqrt(sum(sq_g[j] for j in m)) for m in self._members]
        w = [math.sqrt(sq_p[j]) for j in self._weights]
        dw = [math.sqrt(sq_d[j]) for j in self._weights]
        ratio = [d / v if v > 0 else math.nan for d, v in zip(dw, w, strict=True)]
        by_name = dict(
            max_abs_z=max_z,
            saturated=saturated,
            weak=weak,
            dead=dead,
            grad_norm=grad,
            weight_norm=w,
            update_ratio=ratio,
        )
        return [float(loss[0]), *(v for name in STATS for v in by_name[name])]

    def _slot_squares(self, g, p, d) -> np.ndarray:
        """``(3 n, slots)``: each replica's sum of squares of each parameter's gradient, then
        value, then update, in the buffers' dtype."""
        n, starts = len(g), self._slot_starts
        if g.size <= SMALL_FLAT:  # few values: the calls, not the data, cost
            both = np.concatenate((g, p, d))
            return np.add.reduceat(both * both, starts, axis=1)
        sq = np.empty((3 * n, len(starts)), dtype=g.dtype)  # many: a pass per slot, no copies
        ends = [*starts[1:], g.shape[1]]
        for k, buf in enumerate((g, p, d)):
            for j, (a, b) in enumerate(zip(starts, ends, strict=True)):
                part = buf[:, a:b]
                sq[k * n : (k + 1) * n, j] = np.einsum("ij,ij->i", part, part)
        return sq

    def _flat_norms(self, g, p, d) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(grad norm, weight norm, |delta W|)``, each ``(n, layers)``, from the flat buffers;
        None when a sum of squares overflowed (the caller then takes the careful path)."""
        n = len(g)
        sq = self._slot_squares(g, p, d)
        if not np.isfinite(np.add.reduce(sq, axis=None)):  # (a finite sum: all are finite)
            return None
        grad = np.add.reduceat(sq[:n], self._layer_first, axis=1)
        weights = np.sqrt(sq[n:, self._weights_at])  # (2n, layers): |W|, then |delta W|
        return np.sqrt(grad), weights[:n], weights[n:]

    def _list_norms(self, grads, params, deltas):
        weights, members, L = self._weights, self._members, self.layers
        n = norms(list(grads) + [params[j] for j in weights] + [deltas[j] for j in weights])
        g, w, dw = n[: len(grads)], n[len(grads) : len(grads) + L], n[len(grads) + L :]
        return np.stack([np.hypot.reduce(g[m], axis=0) for m in members], 1), w.T, dw.T

    def retire(self, r: int) -> None:
        """Replica ``r`` (original index) stopped: keep its record as it is now."""
        rec = Record.__new__(Record)
        rec.__dict__.update(self.record_.__dict__)
        rec.rows = self.record_.rows[:, r : r + 1].copy()
        rec.summary = self.record_.summary.copy()
        for name in ("min", "max", "last"):
            setattr(rec.summary, name, getattr(rec.summary, name)[:, r : r + 1].copy())
        rec.initial = self.record_.initial[r : r + 1].copy()
        self.retired[r] = rec

    def _columns(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        L = self.layers
        out = {name: rows[..., 1 + j * L : 1 + (j + 1) * L] for j, name in enumerate(STATS)}
        out["loss"] = rows[..., 0]
        return out

    def _of(self, r: int) -> tuple[Record, int]:
        return (self.retired[r], 0) if r in self.retired else (self.record_, r)

    def replica(self, r: int) -> dict[str, np.ndarray]:
        """The window of replica ``r``: name -> ``(steps kept, layers)``, ``loss`` ->
        ``(steps kept,)``, ``step`` -> the 1-based step of each row (1, 2, ... unless the run
        outgrew the window)."""
        rec, col = self._of(r)
        steps, rows = rec.recent()
        out = self._columns(rows[:, col])
        out["step"] = steps
        return out

    def initial_loss(self, r: int) -> float:
        """Step 1's loss, whatever the window holds now."""
        rec, col = self._of(r)
        return float(rec.rows[0, col, 0] if rec.steps < 2 else rec.initial[col, 0])

    def summary(self, r: int) -> dict[str, np.ndarray]:
        """Replica ``r``'s whole run, downsampled: ``step`` -> first step of each bucket;
        ``<stat>_min``, ``<stat>_max``, ``<stat>_last`` -> ``(buckets, layers)`` (``loss_*``:
        ``(buckets,)``)."""
        rec, col = self._of(r)
        s = rec.whole()
        out = {"step": np.arange(s.used) * s.width + 1}
        for kind in ("min", "max", "last"):
            for name, v in self._columns(getattr(s, kind)[: s.used, col]).items():
                out[f"{name}_{kind}"] = v
        return out

    def nbytes(self) -> int:
        """Memory held by the history's arrays (for the memory bound)."""
        recs = [self.record_, *self.retired.values()]
        return sum(r.rows.nbytes + r.summary.min.nbytes * 3 + r.initial.nbytes for r in recs)


def save(
    data: dict[str, np.ndarray],
    path: Path,
    resolved_spec: str,
    summary: dict[str, np.ndarray] | None = None,
    first_step: int = 1,
    threads: int = 1,
) -> None:
    """Write one replica's window (see :meth:`History.replica`) as ``.npz`` or ``.csv``, its
    downsampled whole run (:meth:`History.summary`) with it, and the resolved spec beside it as
    ``<stem>.spec.yaml`` so the run can be reproduced.

    ``.npz``: the window's arrays, ``step``, ``threads`` (the BLAS threads of the run) and
    ``summary_<name>`` for the summary. ``.csv``: the window, one row per step; the summary goes to
    ``<stem>.summary.csv``. The resolved spec names the threads too."""
    path = Path(path)
    steps, layers = data["max_abs_z"].shape
    step = np.arange(first_step, first_step + steps)
    summary = summary or {}
    if path.suffix == ".csv":
        header = ["step", "loss"] + [f"{s}_{i + 1}" for s in STATS for i in range(layers)]
        cols = [step, data["loss"]]
        cols += [data[s][:, i] for s in STATS for i in range(layers)]
        with open_output(path, binary=True) as f:
            np.savetxt(
                f, np.column_stack(cols), delimiter=",", header=",".join(header), comments=""
            )
        if summary:
            names = [k for k in summary if k != "step"]
            head, cols = ["step"], [summary["step"]]
            for k in names:
                v = summary[k]
                cols += [v] if v.ndim == 1 else list(v.T)
                head += [k] if v.ndim == 1 else [f"{k}_{i + 1}" for i in range(v.shape[1])]
            with open_output(summary_beside(path), binary=True) as f:
                np.savetxt(
                    f, np.column_stack(cols), delimiter=",", header=",".join(head), comments=""
                )
    else:
        extra = {f"summary_{k}": v for k, v in summary.items()}
        with open_output(path, binary=True) as f:
            np.savez(f, **data, step=step, **extra, threads=threads, spec=np.array(resolved_spec))
    write_text(spec_beside(path), resolved_spec)


def spec_beside(path: str | Path) -> Path:
    """Where :func:`save` puts the resolved spec of a history written to ``path``."""
    path = Path(path)
    return path.with_name(path.stem + ".spec.yaml")


def summary_beside(path: str | Path) -> Path:
    """Where :func:`save` puts the downsampled whole run when writing ``.csv`` to ``path``."""
    path = Path(path)
    return path.with_name(path.stem + ".summary.csv")
