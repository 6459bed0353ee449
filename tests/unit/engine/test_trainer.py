"""The training engine: determinism, dtypes end to end, replicas, snapshots, the FP watch."""

from pathlib import Path

import numpy as np
import pytest

from nandoctor.engine.runs import train
from nandoctor.engine.setup import prepare
from nandoctor.engine.trainer import Trainer
from nandoctor.instrument.events import FPWatch, op
from nandoctor.spec.models import spec_from_dict


def make(**over):
    d = {
        "data": {"samples": 64, "features": 6, "outputs": 3},
        "model": {
            "layers": [{"units": 8, "activation": "relu"}, {"units": 3, "activation": "linear"}]
        },
        "train": {"steps": 30, "batch_size": 16, "learning_rate": 0.05},
    }
    for key, value in over.items():
        section, _, name = key.partition("__")
        d.setdefault(section, {})[name] = value
    return spec_from_dict(d)


def test_same_seed_bit_identical_losses():
    a = train(make())[0].loss
    b = train(make())[0].loss
    assert np.array_equal(a, b)
    c = train(make().with_changes({"seed": 1}))[0]
    assert not np.array_equal(a, c.loss)


@pytest.mark.parametrize(
    ("task", "loss", "last"),
    [
        ("binary", "bce", {"units": 1, "activation": "sigmoid"}),
        ("classification", "cross_entropy", {"units": 4, "activation": "softmax"}),
    ],
)
def test_synthetic_targets_take_the_last_layers_width_when_outputs_is_omitted(task, loss, last):
    spec = spec_from_dict(
        {
            "data": {"task": task, "samples": 200, "features": 6},
            "model": {"layers": [{"units": 8, "activation": "relu"}, last]},
            "loss": loss,
            "train": {"steps": 5},
        }
    )
    y = prepare(spec).y
    if task == "binary":
        assert y.shape == (200, 1) and set(np.unique(y)) == {0.0, 1.0}
    else:
        assert y.shape == (200,) and set(np.unique(y)) == {0, 1, 2, 3}
    assert train(spec)[0].finite


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_every_array_in_the_run_dtype(dtype):
    spec = make(numerics__dtype=dtype, train__optimizer="adam")
    prepared = prepare(spec)
    want = np.dtype(dtype)
    assert prepared.x.dtype == want and prepared.y.dtype == want
    t = Trainer(prepared)
    with t.watch.install():
        for _ in range(3):
            t.step()
    assert all(p.dtype == want for p in t.state.params)
    assert all(v.dtype == want for vs in t.state.opt.values() for v in vs)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "rmsprop"])
def test_replicas_equal_single_runs(optimizer):
    rates = [0.01, 0.3, 3.0]
    spec = make(train__optimizer=optimizer, train__clip_grad_norm=5.0)
    batched = train(spec, lrs=rates)
    for rate, b in zip(rates, batched, strict=True):
        single = train(spec.with_changes({"train.learning_rate": rate}))[0]
        assert single.steps_run == b.steps_run
        assert np.array_equal(single.loss, b.loss, equal_nan=True)
        assert (single.first_nonfinite is None) == (b.first_nonfinite is None)
        if single.first_nonfinite:
            assert single.first_nonfinite.to_json() == b.first_nonfinite.to_json()


def test_snapshot_replay_reproduces_failure_bit_for_bit():
    spec = make(train__learning_rate=3.0, train__steps=200)
    o = train(spec)[0]
    assert o.first_nonfinite is not None and o.snapshots
    snap = o.snapshots[-1]
    r = train(spec, prepared=o.prepared, start=snap)[0]
    assert r.first_nonfinite.to_json() == o.first_nonfinite.to_json()
    assert np.array_equal(r.loss[snap.step :], o.loss[snap.step :], equal_nan=True)


def test_watch_names_the_op_and_ignores_finite_results():
    w = FPWatch(1)
    with w.install():
        w.at("forward", 2, ("activation",), (("z", np.array([[[800.0]]])),))
        op("exp")
        e = np.exp(np.array([[[800.0]]]))
        op("divide")
        a = e / e
        w.check(a)
    nf = w.first_nonfinite[0]
    assert (nf.phase, nf.layer, nf.tensor, nf.op, nf.value) == (
        "forward",
        2,
        "activation",
        "exp",
        "nan",
    )
    assert nf.events == [("exp", "overflow"), ("divide", "invalid")]
    assert nf.inputs["z"]["max_abs"] == 800.0
    w2 = FPWatch(1)
    with w2.install():
        w2.at("forward", 1, ("activation",))
        op("exp")
        out = 1 / (1 + np.exp(np.array([[[800.0]]])))  # overflow, but the result is a finite 0
        w2.check(out)
    assert not w2.first_nonfinite and w2.events  # an event, not a non-finite value


def test_bookkeeping_overflow_is_not_the_networks():
    """Gradients near 1e160 overflow a plain sum of squares; the history's norm does not, and
    the run is not reported non-finite for it."""
    from nandoctor.engine.optim import norm

    g = np.full((1, 10, 10), 1e160)
    with np.errstate(over="ignore"):
        assert np.isinf((g * g).sum())
    with np.errstate(all="ignore"):
        n = norm(g)
    assert np.isclose(n[0], 1e161)


def test_full_batch_and_schedules_change_the_run():
    base = train(make())[0].loss
    full = train(make(train__batch_size="full"))[0].loss
    sched = train(make(train__schedule="step", train__lr_step_size=5, train__lr_gamma=0.1))[0].loss
    assert not np.array_equal(base, full) and not np.array_equal(base, sched)
    assert base[0] == sched[0]  # the schedule starts at the base rate


def test_csv_and_npz_data_through_the_spec(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3))
    y = (x @ np.array([1.0, -2.0, 0.5]))[:, None]
    np.savez(tmp_path / "d.npz", x=x, y=y)
    with open(tmp_path / "d.csv", "w") as f:
        f.write(
            "a,b,c,t\n"
            + "".join(f"{r[0]},{r[1]},{r[2]},{t[0]}\n" for r, t in zip(x, y, strict=True))
        )
    layers = {"layers": [{"units": 4, "activation": "tanh"}, {"units": 1}]}
    for data in (
        {"source": "npz", "path": str(tmp_path / "d.npz")},
        {"source": "csv", "path": str(tmp_path / "d.csv"), "target": "t"},
    ):
        spec = spec_from_dict(
            {"data": data, "model": layers, "train": {"steps": 50, "learning_rate": 0.05}}
        )
        o = train(spec)[0]
        assert o.finite and o.loss[-1] < o.loss[0]


def test_initial_weights_from_npz(tmp_path):
    rng = np.random.default_rng(1)
    w = {
        "W1": rng.standard_normal((6, 8)),
        "b1": np.zeros(8),
        "W2": rng.standard_normal((8, 3)),
        "b2": np.ones(3),
    }
    np.savez(tmp_path / "w.npz", **w)
    spec = spec_from_dict(
        {
            **make().resolved(),
            "model": {**make().resolved()["model"], "weights": str(tmp_path / "w.npz")},
        }
    )
    p = prepare(spec)
    assert np.array_equal(p.init_params[0], w["W1"]) and np.array_equal(p.init_params[3], w["b2"])


@pytest.mark.parametrize(
    "optimizer", ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad"]
)
@pytest.mark.parametrize("layers", ["plain", "norm_no_bias"])
def test_flat_update_is_bit_identical_to_the_per_parameter_one(monkeypatch, optimizer, layers):
    """The optimiser over flat buffers does the same element-wise arithmetic as parameter by
    parameter: same losses, same weights, bit for bit (gamma/beta and bias-free layers too)."""
    spec = make(
        train__optimizer=optimizer,
        train__weight_decay=0.01,
        train__clip_grad_norm=5.0,
        train__amsgrad=optimizer in ("adam", "adamw"),
        **(
            {
                "model__layers": [
                    {"units": 8, "activation": "relu", "norm": "layer", "use_bias": False},
                    {"units": 8, "activation": "tanh", "norm": "batch"},
                    {"units": 3, "activation": "linear"},
                ]
            }
            if layers == "norm_no_bias"
            else {}
        ),
    )
    fast = train(spec)[0]
    monkeypatch.setattr(Trainer, "_flat_update", lambda self, *a: None)
    slow = train(spec)[0]
    assert np.array_equal(fast.loss, slow.loss)
    assert np.array_equal(fast.history["weight_norm"], slow.history["weight_norm"])


def test_a_step_whose_flat_update_raises_is_redone_labelled(monkeypatch):
    """Adam with eps 0 divides 0 by 0 in the update: the flat path notices the flag and the
    per-parameter path names the layer and tensor, as it would alone."""
    from nandoctor.spec.models import load_spec

    spec = load_spec(Path(__file__).parents[3] / "configs" / "adam_eps_zero.yaml")
    fast = train(spec)[0].first_nonfinite
    monkeypatch.setattr(Trainer, "_flat_update", lambda self, *a: None)
    slow = train(spec)[0].first_nonfinite
    assert fast is not None and fast.phase == "update"
    assert fast.to_json() == slow.to_json()


@pytest.mark.parametrize(
    "numerics",
    [
        {"dtype": "float16", "master_dtype": "float32"},
        {"dtype": "float16", "master_dtype": "float32", "loss_scale": "dynamic"},
        {"dtype": "float32", "loss_scale": 1024.0},
    ],
)
def test_mixed_precision_and_loss_scaling_bypass_the_flat_update(monkeypatch, numerics):
    """Master weights, per-replica step counts and skipped steps take the per-parameter path."""

    def never(self, *a):
        raise AssertionError("the flat update ran")

    monkeypatch.setattr(Trainer, "_flat_update", never)
    spec = make(train__optimizer="adam", **{f"numerics__{k}": v for k, v in numerics.items()})
    o = train(spec)[0]
    assert o.steps_run == 30


@pytest.mark.parametrize(
    ("layers", "loss", "dtype", "rate"),
    [
        (["sigmoid", "linear"], "mse", "float64", 0.5),
        (["tanh", "relu", "softmax"], "cross_entropy", "float32", 0.5),
        (["relu", "leaky_relu", "linear"], "huber", "float16", 0.01),
        (["relu", "linear"], "mse", "float64", 40.0),  # goes NaN: the step is redone labelled
    ],
)
def test_the_unlabelled_plain_pass_is_bit_identical_and_never_the_one_reporting(
    monkeypatch, layers, loss, dtype, rate
):
    """A plain network's step first runs without the watch's labels; its numbers are those of
    the labelled pass, and a failure is still found and named by the labelled pass."""
    spec = make(
        model__layers=[
            {"units": 3 if k == len(layers) - 1 else 8, "activation": act}
            for k, act in enumerate(layers)
        ],
        loss__name=loss,
        numerics__dtype=dtype,
        train__learning_rate=rate,
        **({"data__task": "classification"} if loss == "cross_entropy" else {}),
    )
    runs = []
    real = Trainer._plain_forward_backward
    monkeypatch.setattr(
        Trainer, "_plain_forward_backward", lambda self, *a: runs.append(1) or real(self, *a)
    )
    plain = train(spec)[0]
    assert runs  # the unlabelled pass did run
    monkeypatch.setattr(Trainer, "_plain_plan", lambda self: None)
    labelled = train(spec)[0]
    assert np.array_equal(plain.loss, labelled.loss, equal_nan=True)
    for name in plain.history:
        assert np.array_equal(plain.history[name], labelled.history[name], equal_nan=True), name
    first = [o.first_nonfinite and o.first_nonfinite.to_json() for o in (plain, labelled)]
    assert first[0] == first[1]
    assert (first[0] is not None) == (rate == 40.0)


def huge_gradient(optimizer: str, **train_over):
    """float32, inputs x1e10: the first gradient is ~1e20, beyond sqrt(float32 max) = 1.8e19, so
    its square overflows while every other value of the step stays finite."""
    return make(
        data__scale=1e10,
        numerics__dtype="float32",
        train__optimizer=optimizer,
        train__learning_rate=0.001,
        **{f"train__{k}": v for k, v in train_over.items()},
    )


@pytest.mark.parametrize(
    ("optimizer", "amsgrad", "state"),
    [
        ("adam", False, "exp_avg_sq"),
        ("adam", True, "exp_avg_sq"),  # max_exp_avg_sq follows it: the first inf is v's
        ("adamw", False, "exp_avg_sq"),
        ("rmsprop", False, "square_avg"),
        ("adagrad", False, "sum"),
    ],
)
def test_an_inf_in_the_optimizer_state_is_the_first_nonfinite_value(
    monkeypatch, optimizer, amsgrad, state
):
    """A squared gradient that overflows makes the second moment inf and the step exactly 0: the
    weights stay finite but freeze. The watch scans the new state as well as the parameter, and
    the flat path (which redoes the flagged step labelled) and the labelled path agree."""
    spec = huge_gradient(optimizer, amsgrad=amsgrad)
    fast = train(spec)[0].first_nonfinite
    monkeypatch.setattr(Trainer, "_flat_update", lambda self, *a: None)
    slow = train(spec)[0].first_nonfinite
    assert fast is not None
    assert (fast.step, fast.phase, fast.layer, fast.tensor, fast.op, fast.value) == (
        1,
        "update",
        1,
        f"weight_{state}",
        "square",
        "inf",
    )
    assert fast.inputs["gradient"]["max_abs"] > np.sqrt(np.finfo(np.float32).max)
    assert fast.to_json() == slow.to_json()


def test_a_finite_update_scans_nothing(monkeypatch):
    """No flag raised, no scan: a healthy step pays nothing for the state being watched."""
    scanned = []
    monkeypatch.setattr(FPWatch, "scan", lambda self, *a: scanned.append(self._where[0]))
    monkeypatch.setattr(Trainer, "_flat_update", lambda self, *a: None)
    o = train(make(train__optimizer="adam", train__amsgrad=True))[0]
    assert o.first_nonfinite is None and "update" not in scanned


def test_inputs_are_standardized_in_float64_before_the_cast_to_float16():
    """Inputs of ~1e5 overflow float16 raw, not once standardized: the data are preprocessed in
    float64 and only then cast, as a real pipeline does (incomes standardized, trained in AMP)."""
    from nandoctor.engine.data import preprocess

    spec = make(data__scale=1e5, data__preprocess="standardize", numerics__dtype="float16")
    p = prepare(spec)
    assert p.first_nonfinite is None and p.x.dtype == np.float16
    raw = prepare(make(data__scale=1e5, numerics__dtype="float64")).x  # the same rows, unrounded
    np.testing.assert_array_equal(p.x, preprocess(raw, "standardize", "stable").astype(np.float16))
    assert p.raw_max_abs == float(np.abs(raw).max())  # measured before the cast, in float64


def test_a_value_beyond_float16_after_preprocessing_is_still_the_data_phases_cast():
    """Raw inputs beyond 65504 are reported where they are cast, with the op that did it."""
    first = prepare(make(data__scale=1e5, numerics__dtype="float16")).first_nonfinite
    assert (first.step, first.phase, first.tensor, first.op, first.value) == (
        None,
        "data",
        "x",
        "cast",
        "inf",
    )
    assert ("cast", "overflow") in first.events


def test_targets_are_standardized_in_float64_before_the_cast(tmp_path):
    """``target_preprocess`` is done in float64 too: targets of ~1e5 overflow float16 when cast
    raw, and stay finite when standardized first."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3))
    y = 1e5 * (2.0 + x @ np.array([1.0, -2.0, 0.5]))
    (tmp_path / "d.csv").write_text(
        "a,b,c,t\n" + "".join(f"{r[0]},{r[1]},{r[2]},{t}\n" for r, t in zip(x, y, strict=True))
    )

    def spec(**data):
        return spec_from_dict(
            {
                "data": {"source": "csv", "path": str(tmp_path / "d.csv"), "target": "t", **data},
                "model": {"layers": [{"units": 4, "activation": "tanh"}, {"units": 1}]},
                "numerics": {"dtype": "float16"},
            }
        )

    first = prepare(spec()).first_nonfinite
    assert (first.phase, first.tensor, first.op) == ("data", "y", "cast")
    p = prepare(spec(target_preprocess="standardize"))
    assert p.first_nonfinite is None and p.y.dtype == np.float16
    assert abs(float(p.y.astype(np.float64).mean())) < 1e-2


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_a_layer_without_bias_that_overflows_is_located_not_a_crash(dtype):
    """The backward pass names the tensors it makes: without a bias, the weight gradient alone
    (naming a bias gradient too made the watch's scan fail on the first event)."""
    spec = spec_from_dict(
        {
            "data": {"samples": 64, "features": 6, "outputs": 3},
            "model": {
                "layers": [
                    {"units": 16, "activation": "relu", "use_bias": False},
                    {"units": 3, "activation": "linear", "use_bias": False},
                ]
            },
            "numerics": {"dtype": dtype},
            "train": {"steps": 40, "batch_size": 8, "learning_rate": 100.0},
        }
    )
    first = train(spec)[0].first_nonfinite
    assert first is not None and first.step >= 1 and first.phase in ("forward", "backward", "loss")
