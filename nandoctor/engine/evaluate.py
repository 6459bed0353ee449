"""The loss over the whole training set at given weights: whether a run learned, without the
noise of its mini-batches.

A run with one-row batches records one row's loss per step, which varies as much between rows
as training moves it (adam_eps_zero with eps 1e-8: mini-batch losses 3.54 -> 2.3 by their
medians, within their noise; over all 256 rows 3.93 at the initial weights and 2.13 at the
final ones). The same weights judged on the same rows settle it. The trainer's own forward pass
computes it (:meth:`Trainer.forward_backward`, uninstrumented): the same layers, dtype and loss,
with no update and no dropout, and batch norm over the rows evaluated, as it normalises a batch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from nandoctor.engine import nn
from nandoctor.engine.trainer import Trainer

if TYPE_CHECKING:
    from nandoctor.engine.setup import PreparedRun
    from nandoctor.spec.models import Spec

# A larger training set is judged on this many of its rows, the same rows at both ends (a
# seeded choice), so one forward pass costs what a few thousand-row batches do
MAX_ROWS = 4096
SUBSET_SEED = 0


def evaluated_rows(n: int) -> np.ndarray | slice:
    """The rows of an ``n``-row training set the whole-data loss is computed on: all of them,
    or ``MAX_ROWS`` of them chosen once (sorted, so the order of the data is kept)."""
    if n <= MAX_ROWS:
        return slice(None)
    return np.sort(np.random.default_rng(SUBSET_SEED).choice(n, MAX_ROWS, replace=False))


def evaluated_count(n: int) -> int:
    """How many rows :func:`evaluated_rows` takes of ``n``."""
    return min(n, MAX_ROWS)


def data_losses(
    prepared: PreparedRun, spec: Spec, params: list[np.ndarray]
) -> tuple[float, np.ndarray]:
    """The loss of ``spec`` over the training set of ``prepared`` (:func:`evaluated_rows`) at
    ``params`` (in ``prepared.slots`` order, without a replica axis; master weights are cast to
    the compute dtype as a step casts them), and each row's own term ``(rows,)`` of it (its
    loss as a batch of one, from the same forward pass: batch norm's statistics are the
    whole set's; no l2 penalty, which is the same for every row). With mean reduction the loss
    is the rows' mean plus any l2 penalty; with sum, their sum plus it. NaN and no rows when
    the loss has no data to fit (random gradient) or ``params`` are not all finite; inf or NaN
    when the forward pass overflows."""
    nothing = (math.nan, np.zeros(0))
    if spec.loss.name == "random_gradient" or not len(prepared.x):
        return nothing
    trainer = Trainer(prepared, lrs=[0.0], instrument=False, spec=spec)
    p = [np.asarray(q, dtype=trainer.dtype)[None] for q in params]
    if not all(np.isfinite(q).all() for q in p):
        return nothing
    rows = evaluated_rows(len(prepared.x))
    x = prepared.x[rows]
    y = None if prepared.y is None else prepared.y[rows]
    with np.errstate(all="ignore"):  # an overflow is reported as the loss it gives, inf
        loss, _, zs, acts = trainer.forward_backward(p, x, y)
        z, a = zs[-1][0], acts[-1][0]  # (rows, out)
        if trainer.loss_dtype is not trainer.dtype:  # as the trainer's loss casts them
            z, a = z.astype(trainer.loss_dtype), a.astype(trainer.loss_dtype)
        terms = _row_terms(spec, trainer, z, a, y)
    return float(np.asarray(loss, dtype=np.float64).reshape(-1)[0]), terms


def _row_terms(spec: Spec, trainer: Trainer, z, a, y) -> np.ndarray:
    """Each row's loss as a batch of one, ``(rows,)`` in float64: the rows are passed to the
    loss as replicas of one row each (cross-entropy, whose target is one index shared by the
    replicas, one class at a time)."""
    loss = spec.loss
    act = trainer.acts[-1]

    def of(zr, ar, yr):  # (r, 1, out) replicas, the target broadcast or shared
        value, _ = nn.loss_and_grad(
            loss.name,
            act,
            zr,
            ar,
            yr,
            trainer.naive,
            reduction=loss.reduction,
            delta=loss.delta,
            label_smoothing=loss.label_smoothing,
        )
        return np.asarray(value, dtype=np.float64).reshape(-1)

    if loss.name != "cross_entropy":
        return of(z[:, None], a[:, None], y[:, None])
    out = np.empty(len(z))
    for c in np.unique(y):
        at = np.flatnonzero(y == c)
        out[at] = of(z[at, None], a[at, None], np.array([c]))
    return out
