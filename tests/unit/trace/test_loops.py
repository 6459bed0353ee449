"""Whether a loop steps a variable, as training does: what a growth over its passes is blamed on."""

from __future__ import annotations

import ast
import textwrap

import pytest

from nandoctor.trace.frames import loops_in
from nandoctor.trace.loops import updates_a_variable


def first_loop(tmp_path, source: str):
    path = tmp_path / "prog.py"
    path.write_text(textwrap.dedent(source))
    return min(loops_in(str(path)), key=lambda loop: loop.line)


@pytest.mark.parametrize(
    "body",
    [
        "W -= lr * g",
        "self.W += v",
        "W = W - lr * g",
        "W = (1 - lr * wd) * W - lr * g",
        "v = mu * v - lr * g",
        "W = np.subtract(W, d)",
        "np.subtract(W, d, out=W)",
        "opt.step()",
        "model.fit(x, y)",
        "loss = some_library.run(x)",  # a function it cannot read may step a variable
        "for p, g in zip(ps, gs):\n        p -= lr * g",
    ],
)
def test_a_training_step_in_the_loop_is_an_update(tmp_path, body):
    loop = first_loop(tmp_path, f"for epoch in range(9):\n    {body}\n")
    assert updates_a_variable(loop)


@pytest.mark.parametrize(
    "body",
    [
        "h = np.tanh(W @ h + U @ x[t])",  # a recurrence through time
        "h = W @ h + x[t]",
        "z = np.exp(x * t)\n    print(t, z.mean())",  # a factor of the loop variable
        "out.append(np.sqrt(h).sum())",
        "acc = acc * 9.0\n    k += 1",  # a counter counts passes, it steps nothing
    ],
)
def test_a_loop_without_a_step_is_not_an_update(tmp_path, body):
    loop = first_loop(tmp_path, f"for t in range(9):\n    {body}\n")
    assert not updates_a_variable(loop)


def test_a_step_in_a_function_the_loop_calls_counts_and_one_without_does_not(tmp_path):
    source = """
        import numpy as np

        def forward(W, x):
            return np.exp(x @ W)

        def epoch(W, x, lr):
            out = forward(W, x)
            W -= lr * out.mean()
            return out

        for i in range(5):
            epoch(W, x, 0.1)
        for i in range(5):
            forward(W, x)
    """
    path = tmp_path / "prog.py"
    path.write_text(textwrap.dedent(source))
    calls_epoch, calls_forward = sorted(loops_in(str(path)), key=lambda loop: loop.line)
    assert updates_a_variable(calls_epoch)
    assert not updates_a_variable(calls_forward)


def test_a_function_defined_in_the_loop_runs_only_when_called(tmp_path):
    loop = first_loop(tmp_path, "for t in range(9):\n    def f():\n        W -= 1\n    h = h * 2\n")
    assert isinstance(loop.node, ast.For) and not updates_a_variable(loop)


def test_the_loop_counter_measures_the_operands_at_a_few_passes_not_at_each(tmp_path, monkeypatch):
    """A long loop's second run measures the failing op's operands at its first passes and at
    powers of two, not at each pass (the measure costs far more than the line events)."""
    import sys

    import numpy as np

    from nandoctor.trace import loops
    from nandoctor.trace.loops import LoopCounter, find_node

    path = tmp_path / "prog.py"
    path.write_text("w = 1.0\nstep = 0\nwhile step < 5000:\n    w = w * 1.001\n    step += 1\n")
    measured = []
    monkeypatch.setattr(loops, "operand_magnitudes", lambda f, n: measured.append(1) or {0: 1.0})
    code = (str(path), "<module>", 1)
    node = find_node(str(path), 4, (4, 8, 4, 17))
    counter = LoopCounter(code, 3, 5, code, 4, node, every_pass=False)
    compiled = compile(path.read_text(), str(path), "exec")
    sys.settrace(counter)
    try:
        exec(compiled, {"np": np})
    finally:
        sys.settrace(None)
    assert next(iter(counter.state.values()))[0] == 5001  # the header's last test ends it
    assert len(measured) == loops.DENSE_PASSES + len((32, 64, 128, 256, 512, 1024, 2048, 4096))
    passes = [i for i, _ in counter.history]
    assert passes[: loops.DENSE_PASSES] == list(range(1, loops.DENSE_PASSES + 1))
    assert passes[-1] == 4096


def test_the_growth_is_the_operand_that_grew_not_the_largest():
    from nandoctor.trace.loops import grown

    rows = [(1, {0: 4.0, 1: 1.0}), (2, {0: 4.0, 1: 3.0}), (2, {1: 9.0}), (3, {0: 4.0, 1: 27.0})]
    assert grown(rows) == [(1, 1.0), (2, 9.0), (3, 27.0)]
    assert grown([(1, {0: 0.0, 1: 5.0}), (2, {0: 2.0, 1: 5.0})]) == [(1, 0.0), (2, 2.0)]
    # none grew: the largest operand at each pass, as measured
    assert grown([(1, {0: 4.0, 1: 2.0}), (2, {0: 4.0, 1: 1.0})]) == [(1, 4.0), (2, 4.0)]
