"""The shortest NumPy program: what start-up alone costs under trace."""

import numpy as np

print(np.ones(3).sum())
