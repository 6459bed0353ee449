"""Per-step, per-layer history of a run, kept in preallocated arrays.

Every array is ``(steps, n_replicas, n_layers)`` (``loss`` is ``(steps, n_replicas)``), float64,
NaN where a step was not run. Layer ``i`` of the arrays is layer ``i + 1`` of the spec.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nandoctor.engine.nn import activation
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


class History:
    def __init__(self, n: int, layers: int, steps: int):
        self.steps_run = 0
        self.loss = np.full((steps, n), np.nan)
        for name in STATS:
            setattr(self, name, np.full((steps, n, layers), np.nan))
        # filled in only where they can be non-zero (squashing layers; ReLU layers)
        self.saturated[:] = self.weak[:] = self.dead[:] = 0.0

    def record(self, step, alive, zs, activations, acts, grads, params, deltas, loss) -> None:
        """Take the statistics of ``step`` (1-based) for the live replicas ``alive``.

        ``zs``, ``activations``: per layer ``(n, batch, units)``; ``grads``, ``params``,
        ``deltas``: ``[W1, b1, W2, b2, ...]`` with a leading replica axis. Called with
        floating-point events muted: this arithmetic is bookkeeping, not the network's.
        """
        k = step - 1
        self.steps_run = step
        rows = slice(None) if len(alive) == self.loss.shape[1] else alive
        self.loss[k, rows] = loss
        L = len(zs)
        n = norms(grads[0::2] + grads[1::2] + params[0::2] + deltas[0::2])  # (4L, n_alive)
        w = n[2 * L : 3 * L]
        self.grad_norm[k, rows] = np.hypot(n[:L], n[L : 2 * L]).T
        self.weight_norm[k, rows] = w.T
        self.update_ratio[k, rows] = (n[3 * L :] / np.where(w > 0, w, np.nan)).T
        for i, (z, a, act) in enumerate(zip(zs, activations, acts, strict=True)):
            self.max_abs_z[k, rows, i] = np.maximum(z.max(axis=(1, 2)), -z.min(axis=(1, 2)))
            fn = activation(act)
            if fn.can_die:
                # z <= 0 for every sample <=> relu' = 0 on every row <=> bias gradient exactly 0.
                gb = grads[2 * i + 1]
                self.dead[k, rows, i] = np.count_nonzero(gb == 0, axis=1) / gb.shape[1]
            if fn.saturated is not None:
                self.saturated[k, rows, i] = fn.saturated(a)
            if fn.weak is not None:
                self.weak[k, rows, i] = fn.weak(a)

    def replica(self, r: int) -> dict[str, np.ndarray]:
        """The history of replica ``r`` over the steps run: name -> ``(steps_run, layers)``."""
        out = {name: getattr(self, name)[: self.steps_run, r] for name in STATS}
        out["loss"] = self.loss[: self.steps_run, r]
        return out


def save(data: dict[str, np.ndarray], path: Path, resolved_spec: str) -> None:
    """Write one replica's history (see :meth:`History.replica`) as ``.npz`` or ``.csv``, and the
    resolved spec beside it as ``<stem>.spec.yaml`` so the run can be reproduced."""
    path = Path(path)
    steps, layers = data["max_abs_z"].shape
    if path.suffix == ".csv":
        header = ["step", "loss"] + [f"{s}_{i + 1}" for s in STATS for i in range(layers)]
        cols = [np.arange(1, steps + 1), data["loss"]]
        cols += [data[s][:, i] for s in STATS for i in range(layers)]
        with open_output(path, binary=True) as f:
            np.savetxt(
                f, np.column_stack(cols), delimiter=",", header=",".join(header), comments=""
            )
    else:
        with open_output(path, binary=True) as f:
            np.savez(f, **data, spec=np.array(resolved_spec))
    write_text(spec_beside(path), resolved_spec)


def spec_beside(path: str | Path) -> Path:
    """Where :func:`save` puts the resolved spec of a history written to ``path``."""
    path = Path(path)
    return path.with_name(path.stem + ".spec.yaml")
