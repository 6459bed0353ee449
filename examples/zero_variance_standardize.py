"""Goes NaN before training starts: standardizing a column that never varies.

The third feature is a constant (a sensor stuck at 1.0): its standard deviation is exactly 0,
and (x - mean) / std is 0 / 0 = NaN for that whole column.
"""

import numpy as np

rng = np.random.default_rng(4)
X = np.column_stack([rng.normal(5, 2, 100), rng.normal(-1, 3, 100), np.ones(100)])
y = X[:, 0] - 0.5 * X[:, 1] + rng.normal(0, 0.1, 100)


def standardize(columns):
    mean = columns.mean(axis=0)
    std = columns.std(axis=0)
    return (columns - mean) / std


Xs = standardize(X)
w = np.zeros(3)
for _step in range(100):
    w -= 0.1 * Xs.T @ (Xs @ w - y) / len(y)
print("weights", w)
