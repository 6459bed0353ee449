"""A hand-written Adam step, with the classic mistake: eps = 0."""

import numpy as np


def adam_step(param, grad, state, lr=1e-3, beta1=0.9, beta2=0.999, eps=0.0):
    state["t"] += 1
    state["m"] = beta1 * state["m"] + (1 - beta1) * grad
    state["v"] = beta2 * state["v"] + (1 - beta2) * grad**2
    m_hat = state["m"] / (1 - beta1 ** state["t"])
    v_hat = state["v"] / (1 - beta2 ** state["t"])
    param -= lr * m_hat / (np.sqrt(v_hat) + eps)


def new_state(param):
    return {"t": 0, "m": np.zeros_like(param), "v": np.zeros_like(param)}
