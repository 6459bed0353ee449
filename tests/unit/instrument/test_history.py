"""The per-step history: a full-resolution window, a downsampled whole run, bounded memory."""

import tracemalloc

import numpy as np
import pytest

from nandoctor.diagnosis.diagnose import diagnose
from nandoctor.engine.runs import train
from nandoctor.instrument import history
from nandoctor.instrument.history import Record
from nandoctor.spec.models import spec_from_dict


def exploding(steps: int, warmup: int = 100) -> object:
    """A ReLU regression whose learning rate ramps up until it diverges (near step 150)."""
    return spec_from_dict(
        {
            "data": {"samples": 256, "features": 10, "outputs": 5},
            "model": {
                "layers": [
                    {"units": 20, "activation": "relu"},
                    {"units": 5, "activation": "linear"},
                ]
            },
            "train": {
                "steps": steps,
                "batch_size": 32,
                "learning_rate": 3.0,
                "schedule": "warmup",
                "warmup_steps": warmup,
            },
        }
    )


def row(rec: Record, step: int) -> np.ndarray:
    """The row to fill for ``step`` alone (each step once and in order)."""
    at = rec.rows_for(step, 1)  # before reading rec.rows: it may grow the ring
    return rec.rows[at][0]


def test_window_keeps_recent_steps_and_summary_covers_every_step():
    rec = Record((1,), steps=10_000, window=64, chunk=16, buckets=8)
    for step in range(1, 1001):
        row(rec, step)[0] = step
    steps, rows = rec.recent()
    assert list(steps) == list(range(937, 1001)) and np.array_equal(rows[:, 0], steps)
    s = rec.whole()
    assert s.used <= 8 and s.width * s.used >= 1000
    starts = np.arange(s.used) * s.width + 1
    ends = np.minimum(starts + s.width - 1, 1000)
    assert np.array_equal(s.min[: s.used, 0], starts)
    assert np.array_equal(s.max[: s.used, 0], ends)
    assert np.array_equal(s.last[: s.used, 0], ends)


def test_rows_filled_a_batch_at_a_time_are_the_rows_filled_one_by_one():
    one, batched = (Record((1,), steps=10_000, window=64, chunk=16, buckets=8) for _ in range(2))
    for step in range(1, 1001):
        row(one, step)[0] = step
    first = 1
    for count in [3, 16, 16, 5, 16, 1, 16, 7] * 40:
        count = min(count, 1001 - first)
        if count:
            batched.rows[batched.rows_for(first, count), 0] = np.arange(first, first + count)
            first += count
    for a, b in zip((*one.recent(), one.rows), (*batched.recent(), batched.rows), strict=True):
        np.testing.assert_array_equal(a, b)
    for name in ("min", "max", "last"):
        np.testing.assert_array_equal(getattr(one.whole(), name), getattr(batched.whole(), name))
    assert one.initial[0] == batched.initial[0] == 1 and one.steps == batched.steps == 1000


def test_memory_does_not_grow_with_steps():
    def held(steps: int) -> int:
        rec = Record((1, 15), steps=steps, window=256, chunk=64, buckets=32)
        for step in range(1, 5001):
            row(rec, step)[:] = step
        return rec.rows.nbytes + 3 * rec.summary.min.nbytes

    assert held(1_000_000) == held(10_000)


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_million_step_spec_that_dies_early_allocates_like_a_short_one():
    short = peak_bytes(lambda: train(exploding(1_000, warmup=5)))
    long = peak_bytes(lambda: train(exploding(1_000_000, warmup=5)))
    assert long <= 1.5 * short


def test_a_late_failure_is_diagnosed_from_the_window(monkeypatch):
    full = train(exploding(400))[0]
    monkeypatch.setattr(history, "WINDOW", 32)
    monkeypatch.setattr(history, "CHUNK", 8)
    windowed = train(exploding(400))[0]
    assert windowed.first_nonfinite.step == full.first_nonfinite.step > 100
    assert windowed.history_start == full.first_nonfinite.step - 31
    assert len(windowed.loss) == 32 and windowed.loss_initial == full.loss[0]
    a, b = diagnose(full), diagnose(windowed)
    assert a.cause.id == b.cause.id == "exploding_gradient"
    assert f"at step {windowed.history_start} to" in b.cause.evidence[1]
    assert b.loss_initial == a.loss_initial
    summary = windowed.summary
    assert summary["step"][0] == 1 and np.nanmax(summary["loss_max"]) >= np.nanmax(full.loss)


def test_the_layer_table_names_the_real_step_when_the_window_has_moved(monkeypatch):
    from rich.console import Console

    from nandoctor.report.diagnosis import layer_table

    monkeypatch.setattr(history, "WINDOW", 32)
    monkeypatch.setattr(history, "CHUNK", 8)
    healthy = diagnose(train(exploding(90, warmup=1_000))[0])
    assert healthy.status == "healthy" and healthy.history_start > 1
    console = Console(width=200, record=True)
    console.print(layer_table(healthy))
    assert "Layers at step 90" in console.export_text()


@pytest.mark.parametrize(
    ("batch_bytes", "small_flat"),  # buffers copied; squares taken at the step in 3 calls; per slot
    [(history.BATCH_BYTES, history.SMALL_FLAT), (0, history.SMALL_FLAT), (0, 0)],
)
def test_norms_from_the_flat_buffers_equal_the_per_parameter_ones(
    monkeypatch, batch_bytes, small_flat
):
    monkeypatch.setattr(history, "BATCH_BYTES", batch_bytes)
    monkeypatch.setattr(history, "SMALL_FLAT", small_flat)
    from nandoctor.engine.flat import FlatLayout
    from nandoctor.engine.layout import layout

    spec = exploding(10)
    slots = layout(spec.model.layers)
    rng = np.random.default_rng(0)
    shapes = [(10, 20), (20,), (20, 5), (5,)]
    zs = [np.ones((3, 4, 20)), np.ones((3, 4, 5))]
    names = ("grad_norm", "weight_norm", "update_ratio")
    for scale in (1.0, 1e200):  # 1e200: the squares overflow, the careful path answers
        g, p, d = ([scale * rng.standard_normal((3, *s)) for s in shapes] for _ in range(3))
        lay = FlatLayout(g)
        taken = []
        for flat in (lay.gather(g), lay.gather(p), lay.gather(d)), None:
            h = history.History(3, 2, 10, slots=slots, layer_specs=spec.model.layers)
            h.use_layout(lay)
            with np.errstate(over="ignore"):  # as under the run's muted watch
                h.record(1, np.arange(3), zs, zs, ["relu", "linear"], g, p, d, np.zeros(3), flat)
            taken.append([h.replica(r) for r in range(3)])
        for by_buffers, by_arrays in zip(*taken, strict=True):
            for name in names:
                assert np.isfinite(by_buffers[name]).all(), name
                np.testing.assert_allclose(by_buffers[name], by_arrays[name], rtol=1e-12)


@pytest.mark.parametrize(
    ("layers", "rates"),
    [
        ([("sigmoid", True), ("linear", True)], [0.5]),
        ([("tanh", True), ("relu", False), ("softmax", True)], [0.5]),
        ([("relu", True), ("leaky_relu", True), ("linear", False)], [0.5, 3.0, 40.0]),
        ([("relu", "batch"), ("sigmoid", "dropout"), ("linear", True)], [0.1, 0.5]),
    ],
)
@pytest.mark.parametrize("copying", [True, False], ids=["copied", "reduced-at-the-step"])
def test_steps_reduced_together_equal_steps_reduced_one_by_one(monkeypatch, layers, rates, copying):
    """The statistics of a batch of steps are those of each step taken alone, bit for bit,
    with one replica or several, through a replica's failure, and are written when read; with
    the steps' arrays copied into the batch (small steps) or reduced as each step ends."""
    if not copying:
        monkeypatch.setattr(history, "BATCH_BYTES", 0)

    def layer(k, act, kind):
        out = {"units": 3 if k == len(layers) - 1 else 8, "activation": act}
        out["use_bias"] = kind is not False
        if kind == "batch":
            out["norm"] = "batch"
        if kind == "dropout":
            out["dropout"] = 0.2
        return out

    raw = {
        "data": {"samples": 64, "features": 6, "outputs": 3},
        "model": {"layers": [layer(k, act, kind) for k, (act, kind) in enumerate(layers)]},
        "train": {"steps": 75, "batch_size": 16, "learning_rate": 0.5},
    }
    if layers[-1][0] == "softmax":
        raw["data"]["task"] = "classification"
        raw["loss"] = "cross_entropy"
    spec = spec_from_dict(raw)
    flushes = []
    real = history.History.flush
    monkeypatch.setattr(
        history.History, "flush", lambda h: flushes.append(len(h._pending.kept)) or real(h)
    )
    together = train(spec, rates)
    assert max(flushes) > 1  # several steps were written at once
    monkeypatch.setattr(history, "BATCH", 1)
    alone = train(spec, rates)
    for a, b in zip(together, alone, strict=True):
        assert (a.first_nonfinite is None) == (b.first_nonfinite is None)
        assert a.history.keys() == b.history.keys()
        for name in a.history:
            assert np.array_equal(a.history[name], b.history[name], equal_nan=True), name
        for name in a.summary:
            assert np.array_equal(a.summary[name], b.summary[name], equal_nan=True), name


@pytest.mark.parametrize("batch_bytes", [history.BATCH_BYTES, 0], ids=["copied", "reduced"])
def test_max_abs_z_is_the_largest_absolute_value(monkeypatch, batch_bytes):
    """Taken as max(max z, -min z) (no |z| written): the same number as max |z|, a NaN kept,
    and +0, not -0, for a layer whose z are all zeros of either sign."""
    monkeypatch.setattr(history, "BATCH_BYTES", batch_bytes)
    rng = np.random.default_rng(3)
    layers = [{"units": 4, "activation": "relu"}, {"units": 3, "activation": "linear"}]
    spec = spec_from_dict({"model": {"layers": layers}})
    h = history.History(2, 2, 10, slots=None, layer_specs=spec.model.layers)
    alive = np.arange(2)  # one object, as the trainer passes it: the steps are written together
    steps = []
    for step in range(1, 6):
        zs = [rng.standard_normal((2, 5, 4)) * 10.0**step, rng.standard_normal((2, 5, 3))]
        if step == 2:
            zs[0][1] = -0.0
            zs[1][0] = 0.0
        if step == 4:
            zs[1][1, 2, 1] = np.nan
        grads = [np.ones((2, 4)), np.ones((2, 4)), np.ones((2, 3)), np.ones((2, 3))]
        h.record(step, alive, zs, zs, ["relu", "linear"], grads, grads, grads, np.ones(2))
        steps.append([np.abs(z).max(axis=(-2, -1)) for z in zs])
    for r in range(2):
        got = h.replica(r)["max_abs_z"]
        want = np.array([[layer[r] for layer in step] for step in steps])
        assert np.array_equal(got, want, equal_nan=True)
        assert not np.signbit(got[1]).any()


@pytest.mark.parametrize("batch_bytes", [history.BATCH_BYTES, 0], ids=["copied", "reduced"])
def test_dead_share_counts_the_units_whose_bias_gradient_is_zero(monkeypatch, batch_bytes):
    """A ReLU layer with a plain bias: its dead share is the share of units whose bias gradient
    is exactly 0 that step (no sample reached them), per replica, whichever way the steps are
    reduced; the buffer the gradients came in may be rewritten by the next step."""
    monkeypatch.setattr(history, "BATCH_BYTES", batch_bytes)
    layers = [{"units": 8, "activation": "relu"}, {"units": 3, "activation": "linear"}]
    spec = spec_from_dict({"model": {"layers": layers}})
    h = history.History(2, 2, 10, slots=None, layer_specs=spec.model.layers)
    rng = np.random.default_rng(5)
    bias_grad = np.empty((2, 8))  # reused, as the trainer reuses its gradient buffer
    alive = np.arange(2)  # one object, as the trainer passes it: the steps are written together
    want = []
    for step in range(1, 8):
        bias_grad[:] = rng.standard_normal((2, 8))
        zero = rng.random((2, 8)) < step / 8
        bias_grad[zero] = 0.0
        want.append(zero.mean(axis=1))
        zs = [rng.standard_normal((2, 5, 8)), rng.standard_normal((2, 5, 3))]
        grads = [np.ones((2, 6, 8)), bias_grad, np.ones((2, 8, 3)), np.ones((2, 3))]
        h.record(step, alive, zs, zs, ["relu", "linear"], grads, grads, grads, np.ones(2))
    assert len(h._pending.kept) == 7  # not yet written: read below, as one batch
    for r in range(2):
        got = h.replica(r)["dead"]
        assert np.array_equal(got[:, 0], [w[r] for w in want])
        assert np.isnan(got[:, 1]).all() or not got[:, 1].any()  # a linear layer has none


@pytest.mark.parametrize("act", ["sigmoid", "relu"])
def test_z_written_into_the_rings_give_the_statistics_of_copied_z(monkeypatch, act):
    """A sweep group whose z the forward pass writes straight into the history's rings
    (History.z_slots) records, bit for bit, what copying each step's z records; and it does
    write there (the slots are handed out), through a replica's failure and the batches after."""
    spec = exploding(400).with_changes({"model.layers.0.activation": act})
    rates = [0.1, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0]
    handed = []
    z_slots = history.History.z_slots

    def counted(self, alive, rows):
        slots = z_slots(self, alive, rows)
        handed.append(slots is not None)
        return slots

    monkeypatch.setattr(history.History, "z_slots", counted)
    written = train(spec, lrs=rates, snapshots=False)
    assert sum(handed) > len(handed) // 2
    monkeypatch.setattr(history, "Z_SLOT_BYTES", 1 << 60)  # never: every z copied
    copied = train(spec, lrs=rates, snapshots=False)
    assert any(not o.finite for o in written)  # replicas dropped on the way
    for a, b in zip(written, copied, strict=True):
        assert a.steps_run == b.steps_run
        for name, values in a.history.items():
            np.testing.assert_array_equal(values, b.history[name], err_msg=name)
