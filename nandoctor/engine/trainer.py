"""The training loop: one spec, ``n`` replicas that differ only in learning rate, every phase
observed.

A :class:`Trainer` owns the state of a run (weights, optimiser state, RNG state, step) and steps
it. Each phase names where it is to the watch (``watch.at``) and hands it the tensors it produced
(``watch.check``); the per-step history is taken once at the end of a step by
:class:`~nandoctor.instrument.history.History`. With ``instrument=False`` the same loop runs with a
:class:`~nandoctor.instrument.events.NullWatch` and no history, which is what the overhead benchmark
compares against.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

from nandoctor.engine import nn, optim
from nandoctor.engine.flat import FlatLayout
from nandoctor.engine.layout import TENSOR, flat, per_layer
from nandoctor.engine.setup import DTYPES, PreparedRun
from nandoctor.instrument.events import FPWatch, NullWatch, op
from nandoctor.instrument.history import History

if TYPE_CHECKING:
    from nandoctor.spec.models import Spec


@dataclass
class State:
    """Everything a run needs to continue from here: a snapshot is a deep copy of this."""

    params: list[np.ndarray]  # in Trainer.slots order: W (n, in, out), b/gamma/beta (n, out)
    opt: dict[str, list[np.ndarray]]
    step: int  # steps done so far (skipped ones included)
    batch_rng: np.random.Generator  # a SavedGenerator in a snapshot, as are the other two
    noise_rng: np.random.Generator
    order: np.ndarray  # this epoch's row order
    pos: int  # next row of ``order``
    alive: np.ndarray  # (n,) original replica index of each row of the params
    dropout_rng: np.random.Generator | None = None
    scaler: LossScaler | None = None

    def copy(self) -> State:
        """An independent copy, made field by field: arrays copied, generators saved as their
        state (``deepcopy`` pickles each generator, ~10x slower per snapshot). A live state's
        copy is a snapshot; a snapshot's copy is a live state, ready to train."""
        out = copy.copy(self)
        for f in fields(self):
            setattr(out, f.name, _copied(getattr(self, f.name)))
        return out


@dataclass(frozen=True)
class SavedGenerator:
    """A random generator as a snapshot keeps it: its bit generator's kind and state (taking it
    costs microseconds; a new generator is made only when the snapshot is resumed)."""

    kind: type
    state: dict

    def generator(self) -> np.random.Generator:
        bits = self.kind()
        bits.state = self.state
        return np.random.Generator(bits)


def _copied(v):
    """``v`` copied for a :class:`State`: arrays copied, a generator saved as its state and a
    saved one made a generator again (so a snapshot of a snapshot resumes where both left)."""
    if isinstance(v, np.ndarray):
        return v.copy()
    if isinstance(v, np.random.Generator):
        return SavedGenerator(type(v.bit_generator), v.bit_generator.state)
    if isinstance(v, SavedGenerator):
        return v.generator()
    if isinstance(v, list):
        return [_copied(x) for x in v]
    if isinstance(v, dict):
        return {k: _copied(x) for k, x in v.items()}
    return copy.deepcopy(v)


@dataclass
class LossScaler:
    """``torch.amp.GradScaler``'s rules, one scale per replica: the loss gradient is multiplied
    by ``scale`` before backward and the gradients divided by it after; a step whose gradients
    hold inf/NaN is skipped (no update, the optimiser's step count unchanged) and its scale
    multiplied by ``BACKOFF``; after ``GROWTH_INTERVAL`` finite steps in a row it grows by
    ``GROWTH``. A fixed scale (a number) never changes but still skips non-finite steps."""

    scale: np.ndarray  # (n,)
    good: np.ndarray  # (n,) finite steps since the last change
    opt_steps: np.ndarray  # (n,) updates applied (torch's optimizer state['step'])
    dynamic: bool

    INIT = 65536.0
    GROWTH = 2.0
    BACKOFF = 0.5
    GROWTH_INTERVAL = 2000

    @classmethod
    def create(cls, setting, n: int) -> LossScaler:
        dynamic = setting == "dynamic"
        scale = np.full(n, cls.INIT if dynamic else float(setting))
        return cls(scale, np.zeros(n, int), np.zeros(n, int), dynamic)

    def after(self, finite: np.ndarray) -> None:
        """Update the scales after a step; ``finite: (n,)`` whether each replica's gradients were."""
        self.opt_steps += finite
        if not self.dynamic:
            return
        self.good = np.where(finite, self.good + 1, 0)
        grow = self.good >= self.GROWTH_INTERVAL
        self.scale = np.where(~finite, self.scale * self.BACKOFF, self.scale)
        self.scale = np.where(grow, self.scale * self.GROWTH, self.scale)
        self.good[grow] = 0

    def keep(self, rows: np.ndarray) -> None:
        self.scale, self.good, self.opt_steps = (
            self.scale[rows],
            self.good[rows],
            self.opt_steps[rows],
        )


@dataclass
class SkipLog:
    """What loss scaling did to each replica (original index), in a few numbers per replica
    whatever the run's length: steps skipped, the first step whose update was applied (0: none
    yet), skips after it, the first and last skipped step, and the scale's first, last and
    smallest value."""

    skipped: np.ndarray
    first_applied: np.ndarray
    later: np.ndarray
    first_skip: np.ndarray
    last_skip: np.ndarray
    scale_first: np.ndarray
    scale_last: np.ndarray
    scale_min: np.ndarray
    seen: np.ndarray  # steps recorded (a failing step's too, when it reached the scaler)

    @classmethod
    def create(cls, n: int) -> SkipLog:
        ints = [np.zeros(n, int) for _ in range(5)]
        nans = np.full(n, np.nan), np.full(n, np.nan)
        return cls(*ints, *nans, np.full(n, np.inf), np.zeros(n, int))

    def record(self, step: int, alive: np.ndarray, scale: np.ndarray, finite: np.ndarray):
        """Step ``step`` used ``scale`` for the live replicas ``alive``; ``finite`` says which
        applied their update (the others skipped it)."""
        skip = ~finite
        self.seen[alive] += 1
        if step == 1:
            self.scale_first[alive] = scale
        self.scale_last[alive] = scale
        self.scale_min[alive] = np.minimum(self.scale_min[alive], scale)
        self.skipped[alive] += skip
        self.later[alive] += skip & (self.first_applied[alive] > 0)
        self.first_skip[alive] = np.where(
            skip & (self.first_skip[alive] == 0), step, self.first_skip[alive]
        )
        self.last_skip[alive] = np.where(skip, step, self.last_skip[alive])
        self.first_applied[alive] = np.where(
            finite & (self.first_applied[alive] == 0), step, self.first_applied[alive]
        )

    def of(self, r: int) -> dict:
        """Replica ``r``'s numbers, as plain Python values."""
        return {k: v[r].item() for k, v in self.__dict__.items()}


class Trainer:
    """Trains ``prepared`` with learning rates ``lrs`` (one replica each).

    ``spec`` may differ from ``prepared.spec`` in its training keys (a replay with another learning
    rate or clipping); data, init, layers and numerics always come from ``prepared``.
    """

    def __init__(
        self,
        prepared: PreparedRun,
        lrs: Sequence[float] | np.ndarray | None = None,
        instrument: bool = True,
        spec: Spec | None = None,
    ):
        spec = spec or prepared.spec
        self.prepared = prepared
        self.spec = spec
        self.train_spec = spec.train
        self.layers = prepared.spec.model.layers
        self.acts = [layer.activation for layer in self.layers]
        self.slots = prepared.slots
        num = prepared.spec.numerics
        self.naive = num.mode == "naive"
        self.dtype = prepared.dtype  # forward and backward
        self.matmul = nn.matmul_for(self.dtype)  # float16: through float32 BLAS
        self.master = DTYPES[num.master_dtype] if num.master_dtype else None
        self.loss_dtype = self.master or self.dtype  # losses run in float32 under autocast
        lrs = np.atleast_1d(
            np.asarray(lrs if lrs is not None else self.train_spec.learning_rate, float)
        )
        self.lrs = lrs
        n = len(lrs)
        params = [np.repeat(a[None], n, axis=0) for a in prepared.init_params]
        if self.master:
            params = [p.astype(self.master) for p in params]
        self.state = State(
            params=params,
            opt=optim.init_state(self.train_spec.optimizer, params, self.train_spec.amsgrad),
            step=0,
            batch_rng=np.random.default_rng(prepared.seeds[0]),
            noise_rng=np.random.default_rng(prepared.seeds[1]),
            order=np.arange(0),
            pos=0,
            alive=np.arange(n),
            dropout_rng=np.random.default_rng(prepared.seeds[2]),
            scaler=LossScaler.create(num.loss_scale, n) if num.loss_scale is not None else None,
        )
        self.layout = FlatLayout(params)
        self._flat: tuple | None = (
            None  # (param views, param buffer, state buffers) of the last update
        )
        self.watch = FPWatch(n) if instrument else NullWatch()
        self.history = (
            History(
                n,
                len(self.acts),
                self.train_spec.steps,
                slots=self.slots,
                layer_specs=self.layers,
            )
            if instrument
            else None
        )
        if self.history is not None:
            self.history.use_layout(self.layout)
        self._flat_step: tuple | None = None  # (grads, params, deltas) flat, of the fast update
        self._dropout = any(layer.dropout for layer in self.layers)
        self._plain = self._plain_plan()
        # (factor, live replicas, rates (n,), rates (n, 1)): this step's rates
        self._lr: tuple = (None, None, None, None)
        self._grads_flat: np.ndarray | None = None  # see _grad_views
        self._grads_views: list[np.ndarray] = []
        # without a history (instrumentation off) the losses are kept here, one (n,) per step
        self.losses: list[np.ndarray] = []
        # the last step completed and its loss per live replica, set together (one assignment,
        # so a signal never sees one without the other): where an interrupted run stood
        self.reached: tuple[int, np.ndarray | None] = (0, None)
        self.skips = SkipLog.create(n) if self.state.scaler is not None else None

    # ------------------------------------------------------------ batches
    def _batch(self) -> np.ndarray:
        s, n_rows = self.state, len(self.prepared.x)
        size = (
            n_rows
            if self.train_spec.batch_size == "full"
            else min(self.train_spec.batch_size, n_rows)
        )
        if size == n_rows:
            return slice(None)
        if s.pos >= len(s.order):
            s.order = (
                s.batch_rng.permutation(n_rows) if self.train_spec.shuffle else np.arange(n_rows)
            )
            s.pos = 0
        idx = s.order[s.pos : s.pos + size]
        s.pos += size
        return idx

    @staticmethod
    def _rows(data: np.ndarray, idx) -> np.ndarray:
        """The batch's rows of ``data``: the same values as ``data[idx]``, gathered by ``take``
        (a third of the time of fancy indexing on the mid-size spec's batch)."""
        return data[idx] if isinstance(idx, slice) else data.take(idx, axis=0)

    def _dropout_masks(self, rows: int) -> list[np.ndarray | None]:
        """This step's masks, ``(batch, units)`` per layer with dropout (None elsewhere)."""
        rng = self.state.dropout_rng
        return [
            nn.dropout_mask(layer.dropout, (rows, layer.units), rng, self.dtype)
            if layer.dropout
            else None
            for layer in self.layers
        ]

    # ------------------------------------------------------------ one step
    def step(self) -> None:
        """Run one training step (forward, loss, backward, update) on every live replica."""
        s, w = self.state, self.watch
        step = s.step + 1
        w.step = step
        w.alive = s.alive  # the watch maps batch rows to replicas through this
        w.failed_now = []
        idx = self._batch()
        x = self._rows(self.prepared.x, idx)
        y = None if self.prepared.y is None else self._rows(self.prepared.y, idx)
        noise = None
        if self.spec.loss.name == "random_gradient":
            noise = s.noise_rng.standard_normal((len(x), self.prepared.init_params[-1].shape[-1]))
        masks = self._dropout_masks(len(x)) if self._dropout else None
        scale = s.scaler.scale if s.scaler is not None else None
        # the flat update can take the gradients where the backward pass wrote them
        into = self._grad_views() if self.master is None and scale is None else None
        done = None
        if into is not None and self._plain is not None:  # unlabelled first, labelled if need be
            # each z straight into the history's rings when it keeps copies (no copy then)
            z_out = self.history.z_slots(s.alive, len(x)) if self.history is not None else None
            w.probe()
            done = self._plain_forward_backward(s.params, x, y, into, z_out)
            if w.end_probe():
                done = None
        if done is None:
            done = self.forward_backward(
                self._compute_params(s.params), x, y, noise, masks, scale, into
            )
        loss, grads, zs, acts = done
        finite = None
        if self.master is not None or scale is not None:
            grads, finite = self._master_grads(grads, scale)
        new, deltas = self.update(grads, step, finite)
        if s.scaler is not None:
            self.skips.record(step, s.alive, s.scaler.scale, finite)
            s.scaler.after(finite)
        s.params = new
        s.step = step
        self.reached = (step, loss)
        if self.history is not None:
            w.muted = True  # the statistics' own arithmetic is bookkeeping, not the network's
            self.history.record(
                step, s.alive, zs, acts, self.acts, grads, new, deltas, loss, self._flat_step
            )
            w.muted = False
            failed = [int(s.alive[r]) for r in w.failed_now]
        else:
            row = np.full(len(self.lrs), np.nan)
            row[s.alive] = loss
            self.losses.append(row)
            failed = [int(s.alive[r]) for r in np.flatnonzero(~np.isfinite(loss))]
        if failed:
            self._drop([r for r, orig in enumerate(s.alive) if int(orig) in failed])

    def _compute_params(self, params: list[np.ndarray]) -> list[np.ndarray]:
        """Mixed precision: the master weights cast to the compute dtype for this step."""
        if self.master is None:
            return params
        w, out = self.watch, []
        for slot, p in zip(self.slots, params, strict=True):
            w.at("forward", slot.layer + 1, (TENSOR[slot.name],), ((f"master_{slot.name}", p),))
            op("cast")
            c = p.astype(self.dtype)
            w.check(c)
            out.append(c)
        return out

    def _master_grads(self, grads, scale) -> tuple[list[np.ndarray], np.ndarray]:
        """Gradients cast up to the master dtype and unscaled; ``(grads, finite: (n,))``. With
        loss scaling a replica whose gradients hold inf/NaN skips this step's update."""
        dtype = self.master or self.dtype
        op("cast")
        grads = [g.astype(dtype) for g in grads]
        n = len(self.state.alive)
        finite = np.ones(n, bool)
        if scale is None:
            return grads, finite
        with np.errstate(all="ignore"):  # a skipped step's inf/NaN are expected here
            # unscaled in float32 at least, rounded once (pure float16: 1 / 65536 is subnormal)
            wide = np.promote_types(dtype, np.float32)
            inv = (1.0 / scale).astype(wide)
            grads = [
                (g.astype(wide, copy=False) * optim.per_replica(inv, g)).astype(dtype, copy=False)
                for g in grads
            ]
            for g in grads:
                finite &= np.isfinite(g.reshape(n, -1)).all(axis=1)
        return grads, finite

    def _grad_views(self) -> list[np.ndarray]:
        """Views, one per parameter, of a ``(replicas, total)`` buffer reused every step, that
        the backward pass writes the weight and bias gradients into (``layout.views``)."""
        n = len(self.state.alive)
        if self._grads_flat is None or len(self._grads_flat) != n:
            self._grads_flat = np.empty((n, self.layout.total), dtype=self.dtype)
            self._grads_views = self.layout.views(self._grads_flat)
        return self._grads_views

    def _plain_plan(self) -> list[tuple] | None:
        """For a network :meth:`_plain_forward_backward` can run (dense layers, no norm, no
        dropout, no l2, a loss of the data, no mixed precision or loss scaling): per layer the
        positions of its weights and bias among the params (bias None without one) and its
        activation's table entry. None for any other network."""
        spec, num = self.spec, self.prepared.spec.numerics
        if (
            any(layer.norm != "none" or layer.dropout for layer in self.layers)
            or spec.loss.l2
            or spec.loss.name == "random_gradient"
            or num.master_dtype
            or num.loss_scale is not None
        ):
            return None
        where = {(slot.layer, slot.name): j for j, slot in enumerate(self.slots)}
        return [
            (where[(i, "W")], where.get((i, "b")), nn.activation(act))
            for i, act in enumerate(self.acts)
        ]

    def _plain_forward_backward(self, params, x, y, into, z_out=None):
        """:meth:`forward_backward` of a plain network (see :meth:`_plain_plan`) without the
        watch's labels: the same NumPy calls on the same arrays in the same order, so the same
        numbers. Run under the watch's probe; a step that raised any floating-point flag is
        redone labelled, so what the watch reports never comes from here. ``z_out``: per layer
        an array z is written into (the history's, ``History.z_slots``), or None."""
        plan, naive, loss_spec, matmul = self._plain, self.naive, self.spec.loss, self.matmul
        one = len(params[0]) == 1  # one replica: its bias broadcasts as a vector
        zs, acts, ins = [], [], [x]
        for i, (w_at, b_at, fn) in enumerate(plan):
            z = matmul(ins[-1], params[w_at], out=z_out[i] if z_out else None)
            # the same sums; a (units,) bias broadcasts in half the time of (1, 1, units)
            if b_at is not None:
                z += params[b_at][0] if one else params[b_at][:, None, :]
            a = fn.forward(z, naive)
            zs.append(z)
            acts.append(a)
            ins.append(a)
        loss, gz = nn.loss_and_grad(
            loss_spec.name,
            self.acts[-1],
            zs[-1],
            acts[-1],
            y,
            naive,
            None,
            reduction=loss_spec.reduction,
            delta=loss_spec.delta,
            label_smoothing=loss_spec.label_smoothing,
        )
        if gz.dtype != zs[-1].dtype:  # as _loss does
            gz = gz.astype(zs[-1].dtype)
        for i in reversed(range(len(plan))):
            w_at, b_at, _ = plan[i]
            matmul(ins[i].swapaxes(-1, -2), gz, out=into[w_at])
            if b_at is not None:
                nn.bias_grad(gz, out=into[b_at])
            if i == 0:
                break
            gz = matmul(gz, params[w_at].swapaxes(-1, -2))
            gz = plan[i - 1][2].backward(zs[i - 1], acts[i - 1], gz)
        return loss, into, zs, acts

    def forward_backward(self, params, x, y, noise=None, masks=None, scale=None, into=None):
        """Loss and gradients of ``params`` on one batch.

        ``params``: arrays in ``self.slots`` order, each with a leading replica axis;
        ``x: (batch, in)``; ``masks``: per layer a dropout mask or None (None: no dropout);
        ``scale: (n,)``: loss scaling (the gradients come back multiplied by it, and non-finite
        values in the backward pass are left to the caller: the step is skipped, not failed).
        ``into``: arrays like ``params`` that weight and bias gradients are written into.
        Returns ``(loss (n,), grads like params, zs, activations)``, the last two per layer
        ``(n, batch, units)``; ``zs`` are the activations' inputs (after any norm).
        """
        w = self.watch
        P = per_layer(params, self.slots, len(self.layers))
        masks = masks or [None] * len(self.layers)
        zs, acts, caches, as_ = [], [], [], [x]
        for i, layer in enumerate(self.layers):
            z, a, cache = self._layer_forward(i, layer, P[i], as_[i], masks[i])
            zs.append(z)
            acts.append(a)
            caches.append(cache)
            as_.append(a if masks[i] is None else cache["dropped"])

        loss, gz = self._loss(P, zs[-1], acts[-1], y, noise, scale)
        w.provisional = scale is not None
        grads: list[dict] = [{} for _ in self.layers]
        outs = per_layer(into, self.slots, len(self.layers)) if into is not None else grads
        for i in reversed(range(len(self.layers))):
            gz = self._layer_backward(i, P[i], as_[i], caches[i], gz, grads[i], i > 0, outs[i])
            if i == 0:
                break
            if masks[i - 1] is not None:
                w.at("backward", i, ("dropout_gradient",), (("input_gradient", gz),))
                gz = nn.dropout(gz, masks[i - 1])
                w.check(gz)
            w.at(
                "backward",
                i,
                ("pre_activation_gradient",),
                (("input_gradient", gz), ("z", zs[i - 1])),
            )
            gz = nn.activation_grad(self.acts[i - 1], zs[i - 1], acts[i - 1], gz)
            w.check(gz)
        if self.spec.loss.l2:
            grads = self._l2_grads(P, grads, scale)
        w.provisional = False
        return loss, flat(grads, self.slots), zs, acts

    def _layer_forward(self, i: int, layer, P: dict, a_in, mask):
        """One layer: ``z = a_in @ W (+ b)``, an optional norm and affine, the activation and an
        optional dropout. Returns ``(activation input, activation, cache for backward)``."""
        w, cache = self.watch, {}
        w.at(
            "forward",
            i + 1,
            ("pre_activation",),
            (("x" if i == 0 else "input", a_in), ("W", P["W"])),
        )
        op("matmul")
        z = self.matmul(a_in, P["W"])
        if "b" in P:
            z += P["b"][:, None, :]
        w.check(z)
        if layer.norm != "none":
            w.at("forward", i + 1, ("normalized",), (("pre_activation", z),))
            z_hat, inv_std = nn.normalize(layer.norm, z, layer.norm_eps)
            w.also("inv_std", inv_std)  # inf where the variance (plus norm_eps) was exactly 0
            w.check(z_hat)
            w.at("forward", i + 1, ("norm_output",), (("normalized", z_hat), ("gamma", P["gamma"])))
            z = nn.affine(z_hat, P["gamma"], P["beta"])
            w.check(z)
            cache.update(z_hat=z_hat, inv_std=inv_std)
        w.at("forward", i + 1, ("activation",), (("z", z),))
        a = nn.activate(self.acts[i], z, self.naive)
        w.check(a)
        if mask is not None:
            w.at("forward", i + 1, ("dropout",), (("activation", a),))
            cache["dropped"] = nn.dropout(a, mask)
            w.check(cache["dropped"])
        return z, a, cache

    def _loss(self, P, z, a, y, noise, scale):
        """The loss (in the loss dtype: the master dtype under mixed precision, as torch's
        autocast runs losses in float32), with any l2 penalty, and its gradient w.r.t. ``z``
        (times ``scale`` and cast back to the compute dtype under loss scaling)."""
        w, spec = self.watch, self.spec.loss
        w.at("loss", None, ("loss", "loss_gradient"), (("z", z), ("output", a)))
        compute = z.dtype
        if self.loss_dtype is not self.dtype:
            op("cast")
            z, a = z.astype(self.loss_dtype), a.astype(self.loss_dtype)
        loss, gz = nn.loss_and_grad(
            spec.name,
            self.acts[-1],
            z,
            a,
            y,
            self.naive,
            noise,
            reduction=spec.reduction,
            delta=spec.delta,
            label_smoothing=spec.label_smoothing,
        )
        if spec.l2:
            loss = loss + nn.l2_penalty([p["W"] for p in P], spec.l2)[0]
        w.check(loss, gz)
        if scale is not None or gz.dtype != compute:
            w.provisional = scale is not None
            w.at("backward", len(self.layers), ("loss_gradient",), (("loss_gradient", gz),))
            op("scale")
            if scale is not None:  # in float32 at least: float16 holds no 65536 (torch's start)
                wide = np.promote_types(gz.dtype, np.float32)
                gz = gz.astype(wide, copy=False) * optim.per_replica(scale, gz).astype(wide)
            op("cast")
            gz = gz.astype(compute)
            w.check(gz)
        return loss, gz

    def _layer_backward(
        self, i: int, P: dict, a_in, cache: dict, gz, grads: dict, more: bool, out: dict
    ):
        """Gradients of layer ``i``'s parameters into ``grads`` from ``gz = dL/d(activation
        input)`` (the weights' and bias's written into ``out``'s arrays where it has them);
        returns ``dL/d(a_in)`` when ``more`` (else ``gz``)."""
        w = self.watch
        if "z_hat" in cache:
            w.at("backward", i + 1, ("norm_gradient",), (("delta", gz), ("gamma", P["gamma"])))
            g_hat, grads["gamma"], grads["beta"] = nn.affine_grad(cache["z_hat"], P["gamma"], gz)
            gz = nn.normalize_grad(self.layers[i].norm, cache["z_hat"], cache["inv_std"], g_hat)
            w.check(gz, grads["gamma"], grads["beta"])
        made = ("weight_gradient", "bias_gradient") if "b" in P else ("weight_gradient",)
        w.at("backward", i + 1, made, (("delta", gz),))
        op("matmul")
        grads["W"] = self.matmul(np.swapaxes(a_in, -1, -2), gz, out=out.get("W"))
        if "b" in P:
            op("sum")
            grads["b"] = nn.bias_grad(gz, out=out.get("b"))
        w.check(grads["W"], *([grads["b"]] if "b" in P else []))
        if not more:
            return gz
        w.at("backward", i + 1, ("input_gradient",), (("delta", gz), ("W", P["W"])))
        op("matmul")
        ga = self.matmul(gz, np.swapaxes(P["W"], -1, -2))
        w.check(ga)
        return ga

    def _l2_grads(self, P, grads, scale):
        """Add the l2 penalty's gradient ``2 l2 W`` (times the loss scale) to every ``dL/dW``."""
        w = self.watch
        _, extra = nn.l2_penalty([p["W"] for p in P], self.spec.loss.l2)
        for i, (g, e) in enumerate(zip(grads, extra, strict=True)):
            w.at("backward", i + 1, ("weight_gradient",), (("l2_gradient", e),))
            op("add")
            if scale is not None:
                e = e * optim.per_replica(scale, e).astype(e.dtype)
            g["W"] = g["W"] + e
            w.check(g["W"])
        return grads

    def update(self, grads: list[np.ndarray], step: int, finite=None) -> tuple[list, list]:
        """Clip ``grads`` and apply the optimiser; returns the new params and the deltas (None
        when the flat update ran: its buffers, ``_flat_step``, hold them).
        ``finite: (n,)`` (loss scaling): replicas whose gradients were not finite skip the update."""
        s, w, train = self.state, self.watch, self.train_spec
        skip = None if finite is None or finite.all() else ~finite
        if skip is not None:  # a skipped replica's gradients must not reach clipping or state
            grads = [np.where(optim.per_replica(skip, g), 0, g) for g in grads]
        clipped = train.clip_grad_norm is not None or train.clip_grad_value is not None
        if train.clip_grad_norm is not None:
            w.at("update", 1, ("gradient",))
            grads = optim.clip_by_norm(grads, train.clip_grad_norm)
        if train.clip_grad_value is not None:
            w.at("update", 1, ("gradient",))
            grads = optim.clip_by_value(grads, train.clip_grad_value)
        factor = 1.0
        if train.schedule != "constant":
            factor = optim.schedule_factor(
                train.schedule,
                step,
                train.steps,
                train.lr_step_size,
                train.lr_gamma,
                train.warmup_steps,
            )
        factor_then, alive_then, lr, lr_column = self._lr
        if factor != factor_then or s.alive is not alive_then:  # else the same rates as before
            lr = (self.lrs[s.alive] * factor).astype(s.params[0].dtype)
            lr_column = lr[:, None]  # against the flat buffers' (replicas, total)
            self._lr = (factor, s.alive, lr, lr_column)
        # The flat path only where it is bit for bit the per-parameter one: not under mixed
        # precision or loss scaling (master weights, per-replica step counts, skipped steps).
        if self.master is None and s.scaler is None:
            fast = self._flat_update(grads, step, lr_column)
            if fast is not None:
                if clipped:  # the history measures the gradients before clipping
                    fast = (fast[0], self.layout.views(self._flat_step[2]))
                    self._flat_step = None
                return fast
        self._flat = None  # the per-parameter update replaces the params and the state
        self._flat_step = None
        opt_t = step
        if s.scaler is not None:  # torch counts only the updates applied
            opt_t = (s.scaler.opt_steps + 1).astype(np.float64)
        saved = {k: [v.copy() for v in vs] for k, vs in s.opt.items()} if skip is not None else None
        names = [optim.state_name(train.optimizer, k) for k in s.opt]  # exp_avg, exp_avg_sq, ...
        new, deltas = [], []
        for j, (slot, p, g) in enumerate(zip(self.slots, s.params, grads, strict=True)):
            # the new state is scanned before the parameter, in the order it is computed: an inf
            # second moment leaves the parameter finite (the step is 0) and is the first inf
            tensor = TENSOR[slot.name]
            w.at(
                "update",
                slot.layer + 1,
                (*(f"{tensor}_{name}" for name in names), tensor),
                (
                    ("gradient", g),
                    ("param", p),
                    *(
                        (f"{name}_prev", v[j])
                        for name, v in zip(names, s.opt.values(), strict=True)
                    ),
                ),
            )
            tj = opt_t if np.isscalar(opt_t) else optim.per_replica(opt_t, p)
            d = optim.delta(train.optimizer, j, p, g, s.opt, tj, optim.per_replica(lr, p), train)
            if skip is not None:
                d = np.where(optim.per_replica(skip, d), 0, d)
            op("subtract")
            p_new = p - d
            w.check(*(v[j] for v in s.opt.values()), p_new)
            new.append(p_new)
            deltas.append(d)
        if saved is not None:  # a skipped replica's optimiser state stays as it was
            for k, vs in s.opt.items():
                for j, v in enumerate(vs):
                    vs[j] = np.where(optim.per_replica(skip, v), saved[k][j], v)
        return new, deltas

    def _flat_update(self, grads: list[np.ndarray], step: int, lr: np.ndarray):
        """The optimiser over every parameter at once, on flat buffers (``engine.flat``): the
        same element-wise arithmetic as the per-parameter update, in a few calls. ``lr: (n,
        1)``. Returns ``(new params, deltas)`` as views, or None when a floating-point flag was
        raised: then the caller redoes the step parameter by parameter, labelled, from the
        untouched state."""
        s, w, layout = self.state, self.watch, self.layout
        if self._flat is None or s.params is not self._flat[0]:  # first step, drop or replay
            state = {k: layout.gather(v) for k, v in s.opt.items()}
            p = layout.gather(s.params)
            s.params = layout.views(p)  # the same values, now living in the flat buffer
            spare = np.empty_like(p)
            self._flat = (s.params, p, state)
            self._spare = (spare, layout.views(spare))
        _, p, state = self._flat
        opt = {k: [v] for k, v in state.items()}  # delta() replaces opt[k][0] with the new state
        w.probe()
        written = self._grads_flat is not None and all(map(operator.is_, grads, self._grads_views))
        g = self._grads_flat if written else layout.gather(grads)
        d = optim.delta(self.train_spec.optimizer, 0, p, g, opt, step, lr, self.train_spec)
        # into the buffer the params do not live in: the state before the step stays untouched
        p_new, new = self._spare
        np.subtract(p, d, out=p_new)
        if w.end_probe():
            return None
        self._spare = (p, s.params)
        self._flat = (new, p_new, {k: v[0] for k, v in opt.items()})
        self._flat_step = (g, p_new, d)
        if opt:  # sgd keeps no state
            s.opt = {k: layout.views(v[0]) for k, v in opt.items()}
        return new, None

    def _drop(self, rows: list[int]) -> None:
        s = self.state
        if self.history is not None:
            for r in rows:
                self.history.retire(int(s.alive[r]))
        keep = np.setdiff1d(np.arange(len(s.alive)), rows)
        s.params = [p[keep] for p in s.params]
        s.opt = {k: [v[keep] for v in vs] for k, vs in s.opt.items()}
        s.alive = s.alive[keep]
        if s.scaler is not None:
            s.scaler.keep(keep)
