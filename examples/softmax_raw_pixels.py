"""Goes NaN: a textbook softmax (no max subtracted) on raw pixel values 0-255.

The logits of unscaled pixels are in the thousands from the first step; np.exp overflows to inf
and inf / inf is NaN. `nandoctor trace examples/softmax_raw_pixels.py`: overflow in exp.
"""

import numpy as np

rng = np.random.default_rng(0)
pixels = rng.integers(0, 256, size=(64, 784)).astype(np.float64)  # raw, not scaled to [0, 1]
labels = rng.integers(0, 10, size=64)
W = rng.normal(0.0, 0.1, size=(784, 10))


def softmax(z):
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


for epoch in range(20):
    probs = softmax(pixels @ W)
    loss = -np.log(probs[np.arange(64), labels]).mean()
    grad = probs
    grad[np.arange(64), labels] -= 1
    W -= 0.01 * pixels.T @ grad / 64
    print(f"epoch {epoch + 1}: loss {loss:.4f}")
