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
from typing import NamedTuple

import numpy as np

from nandoctor.engine.nn import activation, limit_shares
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
BATCH = 32  # steps whose rows are written together (at most a chunk); their arrays are ...
BATCH_BYTES = 1 << 16  # ... copied and reduced together when a step keeps this little a replica,
RING_BYTES = 1 << 22  # for as many steps as fit in this (many replicas: fewer); else each at once
# (4 MB: a sweep group of 8 replicas of a small spec flushes every 32 steps, not every 7: a flush
# costs ~40 us whatever its steps, and a group's step 72 us against 79 with 1 MB)
_vecdot = getattr(np, "vecdot", None)  # NumPy >= 2.0
# A step whose z take at least this much is written straight into the rings (History.z_slots):
# a sweep group of 8 small replicas (51 KB) saves 4% of a step's instructions; one replica (6 KB)
# would pay more in bookkeeping than the copy costs.
Z_SLOT_BYTES = 1 << 14
SMALL_FLAT = 1 << 12  # parameters of a replica up to which a step's squares are summed in 3 calls
# The norms are made from sums of squares in one form, ``(..., n, 3 L)``: per replica each layer's
# gradients (all its parameters), then its weights, then its weight updates (History._by_layer).


class Kept(NamedTuple):
    """What a step leaves in its :class:`Batch` besides the arrays the batch holds."""

    step: int
    copied: bool  # its parameter buffers are in the batch's ``flat``
    # their sums of squares, taken at the step: (3 n, slots) where History._by_slot, else (n,
    # 3 layers), the norms' form
    squares: np.ndarray | None
    norms: tuple | None  # (grad, weight, |delta W|) norms, each (n, layers), taken carefully


class Batch:
    """The steps :meth:`History.record` took and :meth:`History.flush` has not yet written.

    Copying (small steps): each step's arrays are copied into rings allocated once (``loss``
    ``(size, n)``, per layer ``zs`` and ``outputs`` ``(size, n, batch, units)``, ``flat``
    ``(size, 3 n, total)``), and the flush reduces them all at once: a copy costs less than
    keeping the step's own arrays, which would leave every later step to allocate cold memory.
    Otherwise (large steps, whose reductions cost more than a call) each step's arrays are
    reduced as the step ends, into its row of ``rows`` ``(size, n, columns)``, its max and min
    z into ``tops`` and ``lows`` ``(size, layers, n)`` and its sums of squares into ``squares``
    ``(size, n, 3 layers)``; the flush then makes max |z| and the norms, and writes the rows,
    for all the steps at once. Either way the bias gradients the dead shares are read from are
    copied into ``biases`` (per layer ``(size, n, units)``) and counted at the flush."""

    def __init__(self, size: int, loss, zs, outputs, flat, biases, copying: bool, columns: int):
        self.size, self.kept, self.copying = size, [], copying
        self.shape = zs[0].shape  # (n, batch, units): a batch holds steps of one shape
        self.flat = None
        self.biases = [np.empty((size, *b.shape), b.dtype) for b in biases]
        n = len(loss)
        if not copying:  # the columns never filled stay 0, as in a copying batch's block
            self.rows = np.zeros((size, n, columns))
            self.tops = np.empty((size, len(zs), n), zs[0].dtype)
            self.lows = np.empty((size, len(zs), n), zs[0].dtype)
            self.squares = np.empty((size, n, 3 * len(zs)))
            return
        self.loss = np.empty((size, *loss.shape))
        self.zs = [np.empty((size, *z.shape), z.dtype) for z in zs]
        self.z_bytes = sum(z.nbytes for z in zs)  # of one step
        self.outputs = [np.empty((size, *a.shape), a.dtype) for a in outputs]
        if flat is not None:
            self.flat = np.empty((size, 3 * len(flat[0]), flat[0].shape[1]), flat[0].dtype)

    def add(self, kept: Kept, loss, zs, outputs, flat) -> None:
        """Copy a step's arrays into the rings (a copying batch)."""
        j = len(self.kept)
        self.loss[j] = loss
        for ring, z in zip(self.zs, zs, strict=True):
            if z is not None:  # None: the step wrote it into its slot (History.z_slots)
                ring[j] = z
        for ring, a in zip(self.outputs, outputs, strict=True):
            ring[j] = a
        if kept.copied:
            np.concatenate(flat, out=self.flat[j])
        self.kept.append(kept)

    @property
    def full(self) -> bool:
        return len(self.kept) >= self.size


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

    def copy(self, col: int | None = None) -> Summary:
        """A copy; of column ``col`` only (its replica, as ``[:, col : col + 1]``) if given."""
        other = Summary.__new__(Summary)
        other.__dict__.update(self.__dict__)
        part = slice(None) if col is None else slice(col, col + 1)
        other.min, other.max, other.last = (
            a[:, part].copy() for a in (self.min, self.max, self.last)
        )
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
        self.initial = np.full(columns, np.nan)  # step 1's row, kept once the ring overwrites it

    def rows_for(self, first: int, count: int) -> slice | np.ndarray:
        """The ring positions of steps ``first .. first + count - 1`` (each step once and in
        order, ``count`` at most a chunk), to be filled together. The ring grows, or a chunk of
        it is folded into the summary, only at the steps where that happens."""
        last = first + count - 1
        if first <= self.window:  # grow to hold them
            self._advance(min(last, self.window))
        k = max(first - 1, self.window)
        k += -k % self.chunk  # the first chunk boundary from there: a fold
        if k <= last - 1:
            self._advance(k + 1)
        self.steps = last
        at = (first - 1) % self.window
        if at + count <= self.window:  # no wrap: a slice (cheaper to assign through)
            return slice(at, at + count)
        return np.arange(first - 1, last) % self.window

    def _advance(self, step: int) -> None:
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
            if at == 0 and k == self.window:  # step 1's row is the first to go
                self.initial = self.rows[0].copy()
            self.summary.fold(step - self.window, self.rows[at : at + self.chunk])
        self.steps = step

    def recent(self, col: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, rows)`` of the window in step order; of column ``col`` only (one replica,
        as ``[:, col : col + 1]``) if given: a sweep group reads each replica's rows, not all."""
        n = min(self.steps, self.window)
        first = self.steps - n + 1
        at = (first - 1) % self.window
        order = (np.arange(n) + at) % self.window
        rows = self.rows if col is None else self.rows[:, col : col + 1]
        return np.arange(first, self.steps + 1), rows[order]

    def whole(self, col: int | None = None) -> Summary:
        """The summary of every step so far (the window's unfolded rows folded into a copy); of
        column ``col`` only if given (see :meth:`recent`)."""
        s = self.summary.copy(col)
        steps, rows = self.recent(col)
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
        self._batches: dict[tuple, Batch] = {}  # by the shape of a step's z: (n, batch, units)
        self._pending: Batch | None = None  # the batch of the steps not yet written ...
        self._pending_alive = None  # ... and their live replicas
        self._batch_size: int | None = None  # steps per batch, chosen at the first step ...
        self._copying = False  # ... and whether a batch copies the steps' arrays
        self._handed: list[np.ndarray] = []  # ring slots the coming step writes its z into
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
        self._slot_bounds = [(int(a), int(b)) for a, b in layout.bounds]
        # the slots of a layer are consecutive: its first slot's position among the slots
        self._layer_first = np.array([m[0] for m in self._members], dtype=np.intp)
        self._weights_at = np.array(self._weights, dtype=np.intp)
        # where :meth:`_dot_squares` reads: each layer's span (its slots, consecutive), then
        # each layer's weights, twice (the weights and their updates)
        spans = [(self._slot_bounds[m[0]][0], self._slot_bounds[m[-1]][1]) for m in self._members]
        weights = [self._slot_bounds[j] for j in self._weights]
        self._dot_spans = (spans, weights, weights)
        # few parameters: a step's squares summed by slot in three calls, put by layer at the flush
        self._by_slot = layout.total <= SMALL_FLAT

    def _prepare_columns(self, acts: list[str]) -> None:
        L = self.layers
        col = {name: 1 + j * L for j, name in enumerate(STATS)}
        self._col = col
        self._norms_at = col["grad_norm"]  # grad_norm, weight_norm, update_ratio are consecutive
        assert STATS[-3:] == ("grad_norm", "weight_norm", "update_ratio")
        self._fns = [activation(a) for a in acts]
        # the layers whose outputs the statistics read (a softmax's pinned rows: the squashing
        # layers' saturation is read from z), and whose dead share is read from the bias
        # gradient (copied at the step: the buffer is reused; counted at the flush)
        self._read_a = [i for i, fn in enumerate(self._fns) if fn.saturated is not None]
        self._dead_bias = [i for i, fn in enumerate(self._fns) if fn.can_die and i in self._bias]
        self._dead_bias_slots = [self._bias[i] for i in self._dead_bias]
        self._acts = acts

    def z_slots(self, alive, rows: int) -> list[np.ndarray] | None:
        """Where the coming step of the replicas ``alive`` on a batch of ``rows`` may write each
        layer's z: its slots in the copying batch's rings, which :meth:`record` then keeps
        without a copy (a sweep group's z are most of what a step copies). None before the
        first batch exists, or when the step would not land in it (other replicas, rows)."""
        batch = self._pending
        if (
            batch is None
            or not batch.copying
            or alive is not self._pending_alive
            or batch.shape[1] != rows
            or batch.full
            or batch.z_bytes < Z_SLOT_BYTES
        ):
            self._handed = []
            return None
        j = len(batch.kept)
        self._handed = [ring[j] for ring in batch.zs]
        return self._handed

    def record(
        self, step, alive, zs, activations, acts, grads, params, deltas, loss, flat=None
    ) -> None:
        """Take the statistics of ``step`` (1-based) for the live replicas ``alive``.

        ``zs``, ``activations``: per layer ``(n, batch, units)``, arrays no later step writes to;
        ``grads``, ``params``, ``deltas``: the parameter arrays (in the trainer's slot order;
        without slots ``[W1, b1, W2, b2, ...]``) with a leading replica axis. ``flat``: the same
        three as ``(n, total)`` buffers (after :meth:`use_layout`), when the trainer has them
        (``deltas`` may then be None). Called with floating-point events muted: this arithmetic
        is bookkeeping, not the network's.

        On a small network a NumPy call costs about the same over 32 steps' arrays as over one
        step's, so a step's arrays are copied into a :class:`Batch` and :meth:`flush` takes the
        statistics of the batch together. A network whose step is larger than ``BATCH_BYTES`` a
        replica has its arrays reduced now (its sums of squares read from the parameter buffers
        without copying them) and its rows written with the batch's. Every statistic is per
        step: batching never changes it.
        """
        if self._acts is not acts:
            self._prepare_columns(acts)
        shape, pending = zs[0].shape, self._pending
        if (
            pending is not None
            and pending.kept
            and (pending.shape != shape or alive is not self._pending_alive)
        ):  # a shorter last batch or another set of replicas: the arrays would not stack
            self.flush()
        self.steps_run = step
        outputs = [activations[i] for i in self._read_a]
        if self._batch_size is None:
            self._choose_batch(zs, outputs, flat, len(alive))
        biases = [grads[j] for j in self._dead_bias_slots]
        batch = self._batches.get(shape)
        if batch is None:
            buffers = flat if self._copying and self._slot_starts is not None else None
            columns = 1 + len(STATS) * self.layers
            batch = Batch(
                self._batch_size, loss, zs, outputs, buffers, biases, self._copying, columns
            )
            self._batches[shape] = batch
        j = len(batch.kept)
        if not j:
            self._pending, self._pending_alive = batch, alive
        for ring, b in zip(batch.biases, biases, strict=True):  # dead shares: counted at the flush
            ring[j] = b
        copied, squares, norms3 = False, None, None
        if self._slot_starts is not None and flat is not None:
            if batch.flat is not None:  # kept: summed with the batch
                copied = True
            elif self._by_slot:  # a batch's arithmetic
                squares = self._copied_squares(np.concatenate(flat)[None])[0]
                if not math.isfinite(np.add.reduce(squares, axis=None)):  # an overflowed square
                    squares = None
            else:  # many values: a dot product per layer, nothing copied
                squares = batch.squares[j]
                if not self._dot_squares(flat, squares):  # an overflowed square
                    squares = None
        if not copied and squares is None:
            if deltas is None:  # the flat update's: its buffer holds them
                deltas = self._layout.views(flat[2])
            norms3 = self._list_norms(grads, params, deltas)
        if batch.copying:
            handed, self._handed = self._handed, []
            if handed:  # a z the step wrote into its slot (z_slots) is kept there as it is
                zs = [None if z is slot else z for z, slot in zip(zs, handed, strict=True)]
            batch.add(Kept(step, copied, squares, norms3), loss, zs, outputs, flat)
        else:  # reduced now, into the step's row (events muted by the caller: see above)
            batch.rows[j, :, 0] = loss
            self._activation_stats(batch.rows[j], zs, outputs, batch.tops[j], batch.lows[j])
            batch.kept.append(Kept(step, copied, squares, norms3))
        if batch.full:
            self.flush()

    def _choose_batch(self, zs, outputs, flat, n: int) -> None:
        """Small steps (what a step keeps of one replica is at most ``BATCH_BYTES``) are copied
        into batches of ``BATCH`` (at most a chunk, and as many as fit in ``RING_BYTES``: with
        many replicas, fewer), their parameter buffers too; larger ones are reduced as each step
        ends, their squares summed at once from the buffers, and written ``BATCH`` rows at a
        time. Decided per replica, so that a sweep measures a spec the way a single run of it
        does."""
        held = sum(z.nbytes for z in zs) + sum(a.nbytes for a in outputs)
        if flat is not None:
            held += sum(b.nbytes for b in flat)
        self._copying = held <= n * BATCH_BYTES
        fit = max(1, RING_BYTES // max(held, 1)) if self._copying else BATCH
        self._batch_size = min(BATCH, self.record_.chunk, fit)

    def flush(self) -> None:
        """Write the rows of the steps recorded since the last flush (see :meth:`record`)."""
        batch = self._pending
        if batch is None or not batch.kept:
            return
        kept, batch.kept = batch.kept, []
        alive = self._pending_alive
        k, n = len(kept), len(alive)
        with np.errstate(all="ignore"):  # bookkeeping: a NaN or inf here is a value, not an event
            if batch.copying:
                block = np.zeros((k, n, 1 + len(STATS) * self.layers))  # unfilled columns: 0
                block[:, :, 0] = batch.loss[:k]
                outputs = [a[:k] for a in batch.outputs]
                self._activation_stats(block, [z[:k] for z in batch.zs], outputs)
            else:
                block = batch.rows[:k]
                at = self._col["max_abs_z"]
                top = self._max_abs(batch.tops[:k], batch.lows[:k])  # (k, layers, n)
                block[:, :, at : at + self.layers] = top.swapaxes(1, 2)
            dead = self._col["dead"]
            for i, ring in zip(self._dead_bias, batch.biases, strict=True):
                # z <= 0 for every sample <=> relu' = 0 on every row <=> bias gradient 0
                zero = np.add.reduce(ring[:k] == 0, axis=-1, dtype=np.float64)
                block[:, :, dead + i] = zero / ring.shape[-1]
            flat = batch.flat[:k] if batch.flat is not None else None
            self._norms_into(block[:, :, self._norms_at :], kept, flat)
        rec = self.record_
        at = rec.rows_for(kept[0].step, k)
        if n == self.n:
            rec.rows[at] = block
        elif isinstance(at, slice):
            rec.rows[at, alive] = block
        else:
            rec.rows[at[:, None], alive[None, :]] = block

    def _activation_stats(self, out: np.ndarray, zs, outputs, tops=None, lows=None) -> None:
        """Fill the per-layer columns of ``out: (..., n, columns)`` read from the activations:
        ``zs`` per layer and ``outputs`` (the softmax layers' ``a``) ``(..., n, batch,
        units)``. With ``tops`` and ``lows`` ``(layers, n)`` (a step reduced alone), its max z
        and min z go there, for :meth:`_max_abs` to combine a batch at once. The dead shares read
        from bias gradients are the flush's."""
        col = self._col
        for i, fn in enumerate(self._fns):
            z = zs[i]
            # a squashing layer's saturation is read from |z|, which gives max |z| too; else max
            # |z| without writing |z|: max(max z, -min z)
            abs_z = np.abs(z) if fn.squashing else None
            if tops is None and abs_z is not None:
                out[..., col["max_abs_z"] + i] = np.maximum.reduce(abs_z, axis=(-2, -1))
            elif tops is None:
                top = np.maximum.reduce(z, axis=(-2, -1))
                bottom = np.minimum.reduce(z, axis=(-2, -1))
                out[..., col["max_abs_z"] + i] = self._max_abs(top, bottom)
            else:
                np.maximum.reduce(z, axis=(-2, -1), out=tops[i])
                np.minimum.reduce(z, axis=(-2, -1), out=lows[i])
            # a layer with a plain bias: its dead share is counted at the flush, from the bias
            # gradients; without one (use_bias false, a norm, dropout): read z itself
            if fn.can_die and i not in self._dead_bias:
                out[..., col["dead"] + i] = (~(z > 0).any(axis=-2)).mean(axis=-1)
            if abs_z is not None:
                sat, weak = limit_shares(fn, abs_z)
                out[..., col["saturated"] + i] = sat
                out[..., col["weak"] + i] = weak
            elif fn.saturated is not None:
                out[..., col["saturated"] + i] = fn.saturated(outputs[self._read_a.index(i)])

    @staticmethod
    def _max_abs(top: np.ndarray, bottom: np.ndarray, out=None) -> np.ndarray:
        """max |z| from max z and min z: a NaN propagates, and + 0 makes a -0 +0."""
        m = np.maximum(top, np.negative(bottom), out=out)
        m += 0.0
        return m

    def _norms_into(self, cols: np.ndarray, kept: list[Kept], flat) -> None:
        """``cols: (k, n, 3 layers)``: the gradient norms, weight norms and update ratios of the
        kept steps, from their sums of squares (of the batch's copied buffers ``flat``, or taken
        at the step), or taken carefully where a square overflowed (see :meth:`record`)."""
        k, n = cols.shape[:2]
        L = self.layers
        careful = {j: s.norms for j, s in enumerate(kept) if s.norms is not None}
        if flat is not None and all(s.copied for s in kept):  # the small network's common case
            sq = self._copied_squares(flat)
            if not math.isfinite(np.add.reduce(sq, axis=None)):  # a square overflowed
                for j in np.flatnonzero(~np.isfinite(np.add.reduce(sq, axis=(1, 2)))):
                    careful[int(j)] = self._careful_norms(flat[j])
            sq = self._by_layer(sq)
        elif all(s.squares is not None for s in kept):  # finite: checked at the step
            sq = kept[0].squares[None] if k == 1 else np.stack([s.squares for s in kept])
            if self._by_slot:
                sq = self._by_layer(sq)
        elif len(careful) < k:  # a mix (a step that took another path)
            sq = np.zeros((k, n, 3 * L))
            for j, s in enumerate(kept):
                if s.copied:
                    slots = self._copied_squares(flat[j : j + 1])
                    if np.isfinite(slots).all():
                        sq[j] = self._by_layer(slots)[0]
                    else:
                        careful[j] = self._careful_norms(flat[j])
                elif s.squares is not None:
                    sq[j] = self._by_layer(s.squares[None])[0] if self._by_slot else s.squares
        else:
            sq = None
        if sq is not None:
            np.sqrt(sq, out=cols, dtype=np.float64)
            w, ratio = cols[:, :, L : 2 * L], cols[:, :, 2 * L :]
            np.divide(ratio, np.where(w > 0, w, np.nan), out=ratio)
        for j, (g, w, dw) in careful.items():
            cols[j, :, :L], cols[j, :, L : 2 * L] = g, w
            cols[j, :, 2 * L :] = dw / np.where(w > 0, w, np.nan)

    def _copied_squares(self, flat: np.ndarray) -> np.ndarray:
        """``(k, 3 n, slots)``: the sums of squares of each slot of copied buffers ``(k, 3 n,
        total)``, in their dtype: a dot product of each row's slot with itself, one call per
        slot for all the rows (no squared copy: a third less time than squaring and
        ``reduceat`` on a sweep group's 32 steps, and each row summed alike however many)."""
        rows = flat.reshape(-1, flat.shape[-1])
        if _vecdot is None:  # NumPy 1.x: square, then sum each slot
            sums = np.add.reduceat(rows * rows, self._slot_starts, axis=1)
            return sums.reshape(*flat.shape[:2], -1)
        out = np.empty((len(rows), len(self._slot_bounds)), rows.dtype)
        for j, (a, b) in enumerate(self._slot_bounds):
            part = rows[:, a:b]
            _vecdot(part, part, out=out[:, j])
        return out.reshape(*flat.shape[:2], -1)

    def _by_layer(self, sq: np.ndarray) -> np.ndarray:
        """Slot sums of squares ``(k, 3 n, slots)`` (:meth:`_copied_squares`) in the form of the
        norms, ``(k, n, 3 layers)`` float64 (see ``Kept.squares``)."""
        n = sq.shape[1] // 3
        sq = sq.astype(np.float64)
        return np.concatenate(
            [
                np.add.reduceat(sq[:, :n], self._layer_first, axis=-1),
                sq[:, n : 2 * n, self._weights_at],
                sq[:, 2 * n :, self._weights_at],
            ],
            axis=-1,
        )

    def _dot_squares(self, flat, out: np.ndarray) -> bool:
        """Write into ``out: (n, 3 layers)`` the sums of squares of the step's buffers ``flat``
        (gradients, weights, updates, each ``(n, total)``) in the form of the norms, each taken
        in their dtype: one BLAS dot product per replica and span, nothing copied (for a
        mid-size network's 20,000 values half the time of a dot product per parameter, a third
        of squaring and ``reduceat``; three times as fast as ``einsum`` over a million). False
        if a square overflowed."""
        dot = np.dot
        for r, sq in enumerate(out):
            k = 0
            for buf, spans in zip(flat, self._dot_spans, strict=True):
                row = buf[r]
                for a, b in spans:
                    v = row[a:b]
                    sq[k] = dot(v, v)
                    k += 1
        return math.isfinite(sum(out.ravel().tolist()))

    def _careful_norms(self, copy: np.ndarray) -> tuple:
        """:meth:`_list_norms` of a step's copied buffers ``(3 n, total)``."""
        return self._list_norms(*(self._layout.views(b) for b in np.split(copy, 3)))

    def _list_norms(self, grads, params, deltas):
        weights, members, L = self._weights, self._members, self.layers
        n = norms(list(grads) + [params[j] for j in weights] + [deltas[j] for j in weights])
        g, w, dw = n[: len(grads)], n[len(grads) : len(grads) + L], n[len(grads) + L :]
        return np.stack([np.hypot.reduce(g[m], axis=0) for m in members], 1), w.T, dw.T

    def retire(self, r: int) -> None:
        """Replica ``r`` (original index) stopped: keep its record as it is now."""
        self.flush()
        rec = Record.__new__(Record)
        rec.__dict__.update(self.record_.__dict__)
        rec.rows = self.record_.rows[:, r : r + 1].copy()
        rec.summary = self.record_.summary.copy(r)
        rec.initial = self.record_.initial[r : r + 1].copy()
        self.retired[r] = rec

    def _columns(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        L = self.layers
        out = {name: rows[..., 1 + j * L : 1 + (j + 1) * L] for j, name in enumerate(STATS)}
        out["loss"] = rows[..., 0]
        return out

    def _of(self, r: int) -> tuple[Record, int]:
        self.flush()
        return (self.retired[r], 0) if r in self.retired else (self.record_, r)

    def replica(self, r: int) -> dict[str, np.ndarray]:
        """The window of replica ``r``: name -> ``(steps kept, layers)``, ``loss`` ->
        ``(steps kept,)``, ``step`` -> the 1-based step of each row (1, 2, ... unless the run
        outgrew the window)."""
        rec, col = self._of(r)
        steps, rows = rec.recent(col)
        out = self._columns(rows[:, 0])
        out["step"] = steps
        return out

    def initial_loss(self, r: int) -> float:
        """Step 1's loss, whatever the window holds now."""
        rec, col = self._of(r)
        return float(rec.rows[0, col, 0] if rec.steps <= rec.window else rec.initial[col, 0])

    def summary(self, r: int) -> dict[str, np.ndarray]:
        """Replica ``r``'s whole run, downsampled: ``step`` -> first step of each bucket;
        ``<stat>_min``, ``<stat>_max``, ``<stat>_last`` -> ``(buckets, layers)`` (``loss_*``:
        ``(buckets,)``)."""
        rec, col = self._of(r)
        s = rec.whole(col)
        out = {"step": np.arange(s.used) * s.width + 1}
        for kind in ("min", "max", "last"):
            for name, v in self._columns(getattr(s, kind)[: s.used, 0]).items():
                out[f"{name}_{kind}"] = v
        return out

    def nbytes(self) -> int:
        """Memory held by the history's arrays (for the memory bound)."""
        self.flush()
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
