"""Goes NaN: binary cross-entropy as log(1 - p) after a float32 sigmoid that saturates.

Logistic regression on separable data with a few flipped labels and a large step: the weights
keep growing, and once a flipped point's logit passes ~17, float32's sigmoid returns exactly
1.0 there, so log(1 - p) is log(0) = -inf. The cause is saturation, not the division.
"""

import numpy as np

rng = np.random.default_rng(1)
X = rng.normal(size=(200, 3)).astype(np.float32)
y = (X @ np.array([2.0, -1.0, 0.5], dtype=np.float32) > 0).astype(np.float32)
y[:6] = 1 - y[:6]  # a few noisy labels
w = np.zeros(3, dtype=np.float32)
lr = np.float32(5.0)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


for _step in range(500):
    p = sigmoid(X @ w)
    loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    w -= lr * X.T @ (p - y) / len(y)
print("final loss", loss)
