"""A finite program whose every step underflows: a tiny sigmoid unit pinned by a huge logit.

np.exp(-z) of a logit near 800 underflows to 0 at each call: with the default 400,000 steps
and three such calls per step, about 1.2 million underflow events.
"""

import sys

import numpy as np

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 400_000
rng = np.random.default_rng(0)
x = rng.normal(size=(4, 3))
w = np.array([300.0, 300.0, 300.0])
b = 800.0
for _ in range(steps):
    z = x @ w + b
    p = 1 / (1 + np.exp(-z))
    q = np.exp(-z - 1)
    r = np.exp(-2 * z)
    w -= 1e-9 * x.T @ (p - 1 + q + r)
print(f"p {p.min():.3f}")
