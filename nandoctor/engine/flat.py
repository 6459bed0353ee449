"""Parameters and optimiser state in one contiguous buffer each, with a view per parameter.

The update touches every parameter with the same element-wise rule, so on flat ``(n, total)``
buffers it is a handful of NumPy calls for all layers together instead of a handful per
parameter (what ``torch.optim``'s foreach/fused paths and FSDP's flat parameters do). The math is
element-wise and unchanged, so the numbers are bit for bit those of the per-parameter update.

The layout is a generic list of arrays with a leading replica axis, whatever their names and
shapes (weights, biases, norm scales...): each parameter is a view ``buf[:, a:b]`` reshaped to its
own shape, so the forward and backward passes read it as before.
"""

from __future__ import annotations

import numpy as np


class FlatLayout:
    """Where each array of a list ``(n, *shape_i)`` sits in one ``(n, total)`` buffer."""

    def __init__(self, arrays: list[np.ndarray]):
        self.shapes = [a.shape[1:] for a in arrays]
        self.sizes = sizes = [int(np.prod(s, dtype=np.int64)) for s in self.shapes]
        self.bounds = list(zip(np.cumsum([0, *sizes[:-1]]), np.cumsum(sizes), strict=True))
        self.total = sum(sizes)

    def gather(self, arrays: list[np.ndarray]) -> np.ndarray:
        """One new ``(n, total)`` buffer holding ``arrays`` side by side."""
        return np.concatenate(
            [a.reshape(len(a), size) for a, size in zip(arrays, self.sizes, strict=True)], axis=1
        )

    def views(self, buf: np.ndarray) -> list[np.ndarray]:
        """Each array as a view of ``buf``, in its own shape."""
        n = len(buf)
        return [
            buf[:, a:b].reshape((n, *shape))
            for (a, b), shape in zip(self.bounds, self.shapes, strict=True)
        ]
