"""Goes NaN: a two-layer ReLU regression trained with a step size far too large.

Each update overshoots and makes the weights larger; after a few dozen steps the squared error
overflows to inf and the next update turns it into NaN. The loop is a `while`, so trace counts
its iterations with a second run (line events on this loop only).
"""

import numpy as np

rng = np.random.default_rng(2)
X = rng.normal(size=(128, 8))
Y = X @ rng.normal(size=(8, 2)) + 0.1 * rng.normal(size=(128, 2))
W1 = rng.normal(0, np.sqrt(2 / 8), size=(8, 32))
W2 = rng.normal(0, np.sqrt(2 / 32), size=(32, 2))
lr = 0.5

step, loss = 0, np.inf
while step < 300 and loss > 1e-4:
    step += 1
    h = np.maximum(X @ W1, 0)
    out = h @ W2
    err = out - Y
    loss = np.mean(err**2)
    g_out = 2 * err / len(X)
    g_W2 = h.T @ g_out
    g_h = (g_out @ W2.T) * (h > 0)
    g_W1 = X.T @ g_h
    W1 -= lr * g_W1
    W2 -= lr * g_W2
print(f"{step} steps, loss {loss}")
