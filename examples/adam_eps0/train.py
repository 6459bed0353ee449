"""Goes NaN: Adam with eps = 0 (in the helper module optim.py) and a ReLU unit that never fires.

The hidden unit with a large negative bias is dead from the start: its weights' gradients are
exactly 0, so Adam's second moment stays exactly 0 and m_hat / sqrt(v_hat) is 0 / 0 = NaN.
The failing line is in optim.py; the loop whose iteration trace reports is the batch loop here.
"""

import numpy as np
from optim import adam_step, new_state

rng = np.random.default_rng(5)
X = rng.normal(size=(96, 4))
Y = np.sin(X[:, :1]) + 0.05 * rng.normal(size=(96, 1))
W1, b1 = rng.normal(0, 0.7, size=(4, 16)), np.zeros(16)
b1[3] = -50.0  # a dead unit
W2 = rng.normal(0, 0.35, size=(16, 1))
states = {name: new_state(p) for name, p in (("W1", W1), ("W2", W2))}


def batches(x, y, size):
    for start in range(0, len(x), size):
        yield x[start : start + size], y[start : start + size]


for epoch in range(5):
    for xb, yb in batches(X, Y, 32):
        h = np.maximum(xb @ W1 + b1, 0)
        err = h @ W2 - yb
        g_out = 2 * err / len(xb)
        grads = {"W2": h.T @ g_out, "W1": xb.T @ ((g_out @ W2.T) * (h > 0))}
        adam_step(W2, grads["W2"], states["W2"])
        adam_step(W1, grads["W1"], states["W1"])
    print(f"epoch {epoch + 1}: loss {np.mean(err**2):.4f}")
