"""A healthy hand-written NumPy training script (a 64-128-10 tanh/softmax MLP, stable softmax)."""

import sys

import numpy as np

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 1500
rng = np.random.default_rng(0)
X = rng.normal(size=(512, 64))
labels = rng.integers(0, 10, size=512)
W1 = rng.normal(0, np.sqrt(1 / 64), size=(64, 128))
W2 = rng.normal(0, np.sqrt(1 / 128), size=(128, 10))
for _step in range(steps):
    batch = rng.integers(0, 512, size=64)
    x, t = X[batch], labels[batch]
    h = np.tanh(x @ W1)
    z = h @ W2
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(64), t]).mean()
    g = p.copy()
    g[np.arange(64), t] -= 1
    g /= 64
    gW2 = h.T @ g
    gW1 = x.T @ ((g @ W2.T) * (1 - h**2))
    W1 -= 0.05 * gW1
    W2 -= 0.05 * gW2
print(f"final loss {loss:.4f}")
