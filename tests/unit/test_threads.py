"""BLAS threads as part of a run's identity: chosen per spec, overridable, recorded, reused."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from nandoctor import parallel
from nandoctor.cli import main
from nandoctor.engine.runs import train
from nandoctor.spec.models import spec_from_dict


def spec(features: int, units: int, batch: int, steps: int = 3):
    return spec_from_dict(
        {
            "data": {"samples": 512, "features": features, "outputs": 2},
            "model": {
                "layers": [
                    {"units": units, "activation": "relu"},
                    {"units": 2, "activation": "linear"},
                ]
            },
            "train": {"steps": steps, "batch_size": batch},
        }
    )


@pytest.fixture(autouse=True)
def no_override():
    parallel.set_threads(None)
    yield
    parallel.set_threads(None)


def test_small_matmuls_get_one_thread_large_ones_the_cores():
    assert parallel.threads_for(spec(10, 20, 32), (512, 10), cores=8) == 1
    # 256 x 64 x 256 multiply-adds in the first layer: past THREADED_MACS
    assert parallel.threads_for(spec(64, 256, 256), (512, 64), cores=8) == 8
    # a full batch counts all the rows
    big_batch = spec(64, 256, 32).with_changes({"train.batch_size": "full"})
    assert parallel.threads_for(big_batch, (512, 64), cores=4) == 4


def test_the_override_wins_and_every_run_records_its_threads():
    parallel.set_threads(3)
    assert parallel.threads_for(spec(10, 20, 32), (512, 10)) == 3
    assert train(spec(10, 20, 32))[0].threads == 3


def test_workers_share_the_cores_by_threads(monkeypatch):
    monkeypatch.setattr(parallel, "available_cores", lambda: 8)
    pools = []
    monkeypatch.setattr(parallel, "_in_workers", lambda fn, items, jobs, *a: pools.append(jobs))
    assert parallel.pmap(abs, [-1, -2], threads=8) == [1, 2]  # 8 cores / 8 threads: no pool
    parallel.pmap(abs, [-1, -2, -3, -4], threads=2)
    assert pools == [4]


def test_threads_option_is_recorded_in_the_json_and_the_result_is_unchanged(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "data: {samples: 64, features: 4, outputs: 2}\n"
        "model: {layers: [{units: 8, activation: relu}, {units: 2, activation: linear}]}\n"
        "train: {steps: 20, batch_size: 16}\n"
    )
    runs = {}
    for threads in ("1", "2"):
        r = CliRunner().invoke(main, ["run", str(path), "--format", "json", "--threads", threads])
        assert r.exit_code == 0, r.output
        runs[threads] = json.loads(r.stdout)
        assert runs[threads]["threads"] == int(threads)
    one, two = runs["1"], runs["2"]
    assert np.isclose(one["loss"]["final"], two["loss"]["final"], rtol=1e-12)
