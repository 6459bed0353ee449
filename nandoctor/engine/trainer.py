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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from nandoctor.engine import nn, optim
from nandoctor.engine.setup import PreparedRun
from nandoctor.instrument.events import FPWatch, NullWatch, op
from nandoctor.instrument.history import History

if TYPE_CHECKING:
    from nandoctor.spec.models import Spec


@dataclass
class State:
    """Everything a run needs to continue from here: a snapshot is a deep copy of this."""

    params: list[np.ndarray]  # W1, b1, W2, b2, ...: W (n, in, out), b (n, out)
    opt: dict[str, list[np.ndarray]]
    step: int  # updates done so far
    batch_rng: np.random.Generator
    noise_rng: np.random.Generator
    order: np.ndarray  # this epoch's row order
    pos: int  # next row of ``order``
    alive: np.ndarray  # (n,) original replica index of each row of the params

    def copy(self) -> State:
        return copy.deepcopy(self)


class Trainer:
    """Trains ``prepared`` with learning rates ``lrs`` (one replica each).

    ``spec`` may differ from ``prepared.spec`` in its training keys (a replay with another learning
    rate or clipping); data, init and numerics always come from ``prepared``.
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
        self.acts = [layer.activation for layer in spec.model.layers]
        self.naive = spec.numerics.mode == "naive"
        self.dtype = prepared.dtype
        lrs = np.atleast_1d(
            np.asarray(lrs if lrs is not None else self.train_spec.learning_rate, float)
        )
        self.lrs = lrs
        n = len(lrs)
        params = [np.repeat(a[None], n, axis=0) for a in prepared.init_params]
        self.state = State(
            params=params,
            opt=optim.init_state(self.train_spec.optimizer, params),
            step=0,
            batch_rng=np.random.default_rng(prepared.seeds[0]),
            noise_rng=np.random.default_rng(prepared.seeds[1]),
            order=np.arange(0),
            pos=0,
            alive=np.arange(n),
        )
        self.watch = FPWatch(n) if instrument else NullWatch()
        self.history = History(n, len(self.acts), self.train_spec.steps) if instrument else None
        # without a history (instrumentation off) the losses are kept here, one (n,) per step
        self.losses: list[np.ndarray] = []

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

    # ------------------------------------------------------------ one step
    def step(self) -> None:
        """Run one training step (forward, loss, backward, update) on every live replica."""
        s, w = self.state, self.watch
        step = s.step + 1
        w.step = step
        w.alive = s.alive  # the watch maps batch rows to replicas through this
        w.failed_now = []
        idx = self._batch()
        x = self.prepared.x[idx]
        y = None if self.prepared.y is None else self.prepared.y[idx]
        noise = None
        if self.spec.loss == "random_gradient":
            noise = s.noise_rng.standard_normal((len(x), self.prepared.init_params[-1].shape[-1]))
        loss, grads, zs, acts = self.forward_backward(s.params, x, y, noise)
        new, deltas = self.update(grads, step)
        s.params = new
        s.step = step
        if self.history is not None:
            w.muted = True  # the statistics' own arithmetic is bookkeeping, not the network's
            self.history.record(step, s.alive, zs, acts, self.acts, grads, new, deltas, loss)
            w.muted = False
            failed = [int(s.alive[r]) for r in w.failed_now]
        else:
            row = np.full(len(self.lrs), np.nan)
            row[s.alive] = loss
            self.losses.append(row)
            failed = [int(s.alive[r]) for r in np.flatnonzero(~np.isfinite(loss))]
        if failed:
            self._drop([r for r, orig in enumerate(s.alive) if int(orig) in failed])

    def forward_backward(self, params, x, y, noise=None):
        """Loss and gradients of ``params`` on one batch.

        ``params``: ``[W1, b1, ...]`` with W ``(n, in, out)``, b ``(n, out)``; ``x: (batch, in)``.
        Returns ``(loss (n,), grads like params, zs, activations)``, the last two per layer
        ``(n, batch, units)``.
        """
        w = self.watch
        W, b = params[0::2], params[1::2]
        L = len(W)
        zs, as_ = [], [x]
        for i in range(L):
            w.at(
                "forward",
                i + 1,
                ("pre_activation",),
                (("x" if i == 0 else "input", as_[i]), ("W", W[i])),
            )
            op("matmul")
            z = as_[i] @ W[i] + b[i][:, None, :]
            w.check(z)
            w.at("forward", i + 1, ("activation",), (("z", z),))
            a = nn.activate(self.acts[i], z, self.naive)
            w.check(a)
            zs.append(z)
            as_.append(a)

        w.at("loss", None, ("loss", "loss_gradient"), (("z", zs[-1]), ("output", as_[-1])))
        loss, gz = nn.loss_and_grad(
            self.spec.loss, self.acts[-1], zs[-1], as_[-1], y, self.naive, noise
        )
        w.check(loss, gz)

        grads: list = [None] * (2 * L)
        for i in reversed(range(L)):
            w.at("backward", i + 1, ("weight_gradient", "bias_gradient"), (("delta", gz),))
            op("matmul")
            gW = np.swapaxes(as_[i], -1, -2) @ gz
            op("sum")
            gb = gz.sum(axis=-2)
            w.check(gW, gb)
            grads[2 * i], grads[2 * i + 1] = gW, gb
            if i == 0:
                break
            w.at("backward", i + 1, ("input_gradient",), (("delta", gz), ("W", W[i])))
            op("matmul")
            ga = gz @ np.swapaxes(W[i], -1, -2)
            w.check(ga)
            w.at(
                "backward",
                i,
                ("pre_activation_gradient",),
                (("input_gradient", ga), ("z", zs[i - 1])),
            )
            gz = nn.activation_grad(self.acts[i - 1], zs[i - 1], as_[i], ga)
            w.check(gz)
        return loss, grads, zs, as_[1:]

    def update(self, grads: list[np.ndarray], step: int) -> tuple[list, list]:
        """Clip ``grads`` and apply the optimiser; returns the new params and the deltas."""
        s, w, train = self.state, self.watch, self.train_spec
        if train.clip_grad_norm is not None:
            w.at("update", 1, ("gradient",))
            grads = optim.clip_by_norm(grads, train.clip_grad_norm)
        if train.clip_grad_value is not None:
            w.at("update", 1, ("gradient",))
            grads = optim.clip_by_value(grads, train.clip_grad_value)
        factor = optim.schedule_factor(
            train.schedule,
            step,
            train.steps,
            train.lr_step_size,
            train.lr_gamma,
            train.warmup_steps,
        )
        lr = (self.lrs[s.alive] * factor).astype(self.dtype)
        new, deltas = [], []
        for j, (p, g) in enumerate(zip(s.params, grads, strict=True)):
            names = ("weight",) if j % 2 == 0 else ("bias",)
            w.at(
                "update",
                j // 2 + 1,
                names,
                (("gradient", g), ("param", p), *((f"{k}_prev", v[j]) for k, v in s.opt.items())),
            )
            d = optim.delta(train.optimizer, j, p, g, s.opt, step, optim.per_replica(lr, p), train)
            op("subtract")
            p_new = p - d
            w.check(p_new)
            new.append(p_new)
            deltas.append(d)
        return new, deltas

    def _drop(self, rows: list[int]) -> None:
        s = self.state
        if self.history is not None:
            for r in rows:
                self.history.retire(int(s.alive[r]))
        keep = np.setdiff1d(np.arange(len(s.alive)), rows)
        s.params = [p[keep] for p in s.params]
        s.opt = {k: [v[keep] for v in vs] for k, vs in s.opt.items()}
        s.alive = s.alive[keep]
