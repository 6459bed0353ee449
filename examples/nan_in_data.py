"""Goes NaN without any operation creating it: one missing reading in the CSV.

np.genfromtxt reads the empty cell as NaN; NaN then spreads through every product and mean
without raising a floating-point flag. trace finds the line that let it in with a second,
line-traced run, and names the cause bad_input.
"""

import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

data = np.genfromtxt(os.path.join(HERE, "data", "readings.csv"), delimiter=",", skip_header=1)
X, y = data[:, :-1], data[:, -1]
w = np.zeros(X.shape[1])
for _epoch in range(50):
    err = X @ w - y
    w -= 0.01 * X.T @ err / len(y)
print("loss", np.mean(err**2))
