"""Specs too big for the machine are refused before allocating, with the estimate; valid specs
with extreme values never raise."""

import numpy as np
import pytest

from nandoctor.engine.data import DataError
from nandoctor.engine.optim import schedule_factor
from nandoctor.engine.setup import prepare
from nandoctor.spec.limits import size_problems
from nandoctor.spec.models import SpecError, spec_from_dict
from nandoctor.sweep import SweepError, parse_grid, parse_rates

BASE = {"model": {"layers": [{"units": 8, "activation": "relu"}, {"units": 5}]}}


def with_(**changes):
    spec = spec_from_dict(BASE)
    return spec.with_changes(changes)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("train.steps", 10**12),
        ("model.layers.0.units", 10**9),
        ("data.samples", 10**9),
        ("data.features", 10**7),
    ],
)
def test_a_spec_too_big_for_the_machine_is_refused_with_its_estimate(key, value):
    with pytest.raises(SpecError) as info:
        with_(**{key: value})
    (p,) = info.value.problems
    assert p.key == key
    if key == "train.steps":
        assert "would take at least 12 days" in p.message
    else:
        assert "would need about" in p.message and "available" in p.message


def test_the_estimate_grows_with_the_spec_and_fits_ordinary_specs():
    small = spec_from_dict(BASE)
    assert size_problems(small) == []
    memory = 10 * 2**20  # a 10 MB machine refuses 100,000 samples, names the samples
    (key, message), *_ = size_problems(small.with_changes({"data.samples": 100_000}), memory)
    assert key == "data.samples" and "MB" in message


def test_outputs_that_follow_a_huge_last_layer_are_blamed_on_that_layer_not_the_samples():
    """100 samples x 10 features are 8 KB; their 10^12 targets (data.outputs follows the last
    layer's units) are what does not fit: the key to change is the layer's."""
    spec = {
        "data": {"source": "synthetic", "samples": 100, "features": 10},
        "model": {"layers": [{"units": 10**12}]},
    }
    with pytest.raises(SpecError) as info:
        spec_from_dict(spec)
    (p,) = info.value.problems
    assert p.key == "model.layers.0.units" and "1,000,000,000,000 outputs" in p.message


def test_too_many_steps_and_too_much_memory_are_both_reported():
    spec = {
        "data": {"source": "synthetic", "samples": 10**11, "features": 10},
        "model": {"layers": [{"units": 8, "activation": "relu"}, {"units": 5}]},
        "train": {"steps": 10**14},
    }
    with pytest.raises(SpecError) as info:
        spec_from_dict(spec)
    assert {p.key for p in info.value.problems} == {"train.steps", "data.samples"}


def test_an_exponential_schedule_that_overflows_is_an_infinite_rate_not_a_crash():
    assert schedule_factor("exponential", 10, 100, 1, 1e300, 1) == float("inf")
    assert schedule_factor("step", 10, 100, 1, 1e300, 1) == float("inf")
    assert schedule_factor("exponential", 2, 100, 1, 0.5, 1) == 0.5


def _npz_spec(tmp_path, y, loss, activation, task="regression"):
    np.savez(tmp_path / "d.npz", x=np.ones((len(y), 2)), y=np.asarray(y))
    spec = {
        "data": {"source": "npz", "path": "d.npz", "task": task},
        "model": {
            "layers": [{"units": 3 if loss == "cross_entropy" else 1, "activation": activation}]
        },
        "loss": loss,
    }
    return spec_from_dict(spec, base_dir=tmp_path)


def test_huge_class_labels_are_a_data_error(tmp_path):
    spec = _npz_spec(tmp_path, [0, 1, 1e30, 2], "cross_entropy", "softmax", "classification")
    with pytest.raises(DataError, match="far too large to be a class index") as info:
        prepare(spec)
    assert info.value.key == "data.target"


def test_bce_targets_outside_0_1_are_a_data_error(tmp_path):
    spec = _npz_spec(tmp_path, [0.0, 1.0, 5.0, 1.0], "bce", "sigmoid", "binary")
    with pytest.raises(DataError, match="between 0 and 1, but sample 3 has 5"):
        prepare(spec)
    prepare(_npz_spec(tmp_path, [0.0, 1.0, 0.25, np.nan], "bce", "sigmoid", "binary"))


def test_lr_lists_and_grids_are_capped():
    with pytest.raises(SweepError, match="1,000,000 rates"):
        parse_rates("1e-4:1:1000000")
    with pytest.raises(SweepError, match="1,001 rates"):
        parse_rates(",".join(["0.1"] * 1001))
    with pytest.raises(SweepError, match="grid has 10,000,000,000 points"):
        parse_grid(tuple(f"train.seed{i}={','.join(map(str, range(10)))}" for i in range(10)))


def _net(units: int, **train) -> dict:
    hidden = [{"units": units, "activation": "relu"}] * 2
    return {
        "data": {"samples": 256, "features": 10},
        "model": {"layers": [*hidden, {"units": 1}]},
        "train": {"steps": 3, **train},
    }


@pytest.mark.parametrize(
    ("spec", "peak_mb"),
    [  # peaks of `run --no-verify` measured with /usr/bin/time -v (Maximum resident set size)
        (_net(10_000), 7_100),  # the tester's: the old estimate said 4.8 GB
        (_net(3_000), 681),
        (_net(3_000, optimizer="adam"), 1_439),
        (_net(2_500, optimizer="adamw", amsgrad=True, clip_grad_norm=1.0), 1_305),
        (_net(2_500, optimizer="momentum", clip_grad_norm=1.0), 778),
    ],
)
def test_the_estimate_is_at_least_the_measured_peak(spec, peak_mb):
    from nandoctor.spec.limits import run_bytes

    spec = spec_from_dict(spec)
    assert peak_mb * 2**20 <= run_bytes(spec) <= 2 * peak_mb * 2**20


def test_the_estimate_is_judged_against_the_memory_available_not_the_machine(monkeypatch):
    from nandoctor.spec import limits

    monkeypatch.setattr(limits, "available_memory", lambda: 300 * 2**20)
    limits.memory_budget.cache_clear()
    try:
        with pytest.raises(SpecError) as info:
            spec_from_dict(_net(2_000))
    finally:
        limits.memory_budget.cache_clear()
    (p,) = info.value.problems
    assert p.key == "model.layers.1.units" and "more than the 300 MB available" in p.message


def test_no_more_workers_run_at_once_than_the_memory_available_holds(monkeypatch):
    from nandoctor import parallel
    from nandoctor.engine import memory

    started = []
    monkeypatch.setattr(memory, "available_memory", lambda: 250)
    monkeypatch.setattr(parallel, "_in_workers", lambda fn, items, jobs, *a: started.append(jobs))
    parallel.pmap(abs, [1, 2, 3, 4], jobs=4, item_bytes=100)
    assert started == [2]
    assert parallel.pmap(abs, [-1, -2], jobs=4, item_bytes=1000) == [1, 2]  # one at a time


def test_a_sweep_group_holds_no_more_replicas_than_fit(monkeypatch):
    from nandoctor import sweep
    from nandoctor.spec.limits import run_bytes

    spec = spec_from_dict(BASE)
    prepared = prepare(spec)
    assert sweep.chunk_size(spec, prepared, 16) > 2
    monkeypatch.setattr(sweep, "memory_budget", lambda: 2 * run_bytes(spec, *prepared.x.shape))
    assert sweep.chunk_size(spec, prepared, 16) == 2
