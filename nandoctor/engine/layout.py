"""Which parameters each layer has, and where they sit in a run's flat list of parameter arrays.

A layer always has its weights ``W: (in, units)``; a bias ``b: (units,)`` unless ``use_bias:
false``; and a learned scale and shift ``gamma, beta: (units,)`` when it has a ``norm``. Every
other part of the engine (optimiser, clipping, snapshots, history, a flat storage) sees only the
list of arrays; the forward and backward passes see them per layer, by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# what the watch calls each parameter in the update phase (first_nonfinite.tensor)
TENSOR = {"W": "weight", "b": "bias", "gamma": "gamma", "beta": "beta"}


@dataclass(frozen=True)
class Slot:
    layer: int  # 0-based index into model.layers
    name: str  # W | b | gamma | beta

    @property
    def label(self) -> str:
        """``W1``, ``b1``, ``gamma2``: the name in a weights .npz and in the resolved data."""
        return f"{self.name}{self.layer + 1}"


def layout(layers) -> list[Slot]:
    """The parameter slots of ``layers`` (LayerSpec-like), in storage order."""
    slots = []
    for i, layer in enumerate(layers):
        names = ["W"] + (["b"] if layer.use_bias else [])
        names += ["gamma", "beta"] if layer.norm != "none" else []
        slots += [Slot(i, name) for name in names]
    return slots


def per_layer(arrays: list[np.ndarray], slots: list[Slot], n_layers: int) -> list[dict]:
    """``arrays`` (in ``slots`` order) as one ``{name: array}`` per layer."""
    out: list[dict] = [{} for _ in range(n_layers)]
    for slot, a in zip(slots, arrays, strict=True):
        out[slot.layer][slot.name] = a
    return out


def flat(by_layer: list[dict], slots: list[Slot]) -> list[np.ndarray]:
    """The inverse of :func:`per_layer`."""
    return [by_layer[s.layer][s.name] for s in slots]
