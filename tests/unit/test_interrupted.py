"""What an interrupted command can still say: the step a training run stopped at (and its loss),
the sweep's finished rates and grid points, the recommendations verified so far. The signal is
simulated by raising ``Interrupted`` from a progress callback, at a known point of the work."""

import io
import re
import signal

import numpy as np
import pytest
from rich.console import Console

from nandoctor import sweep as sweepmod
from nandoctor.diagnosis.diagnose import diagnose
from nandoctor.engine.runs import train
from nandoctor.examine import examine, verify_fixes
from nandoctor.interrupt import Interrupted, StoppedTraining
from nandoctor.report import diagnosis as diagfmt
from nandoctor.report import sweep as sweepfmt
from nandoctor.spec.models import spec_from_dict
from nandoctor.sweep import SweepSoFar, run_rates, sweep


def stop_at(step: int, then=None):
    """An ``on_step`` that raises Interrupted (as the SIGINT handler would) at ``step``."""

    def on_step(k: int, *_total) -> None:
        if then:
            then(k)
        if k == step:
            raise Interrupted(signal.SIGINT)

    return on_step


def text(renderable) -> str:
    console = Console(width=200, file=io.StringIO())
    console.print(renderable)
    return console.file.getvalue()


# ------------------------------------------------------------------ training
def test_an_interrupted_run_says_the_step_it_completed_and_that_steps_loss(small):
    spec = small(steps=40)
    whole = train(spec)[0]
    with pytest.raises(Interrupted) as stop:
        train(spec, on_step=stop_at(17))
    assert stop.value.training == StoppedTraining(17, 40, float(whole.loss[16]))
    assert stop.value.training.describe() == f"step 17 of 40 (loss {sweepmod.fmt(whole.loss[16])})"


def test_a_batched_run_says_its_step_but_no_single_loss(small):
    with pytest.raises(Interrupted) as stop:
        train(small(steps=40), lrs=[0.01, 0.1], on_step=stop_at(5))
    assert stop.value.training == StoppedTraining(5, 40, None)


def test_a_replay_says_where_it_was_to_stop(small):
    with pytest.raises(Interrupted) as stop:
        train(small(steps=400), until=30, on_step=stop_at(12))
    assert (stop.value.training.step, stop.value.training.last) == (12, 30)


# ------------------------------------------------------------------ sweep
def test_an_interrupted_sweep_keeps_every_finished_grid_point_and_group(small, monkeypatch):
    spec = small(steps=30)
    rates = [0.01, 0.3, 8.0]
    grid = [{"train.optimizer": "sgd"}, {"train.optimizer": "momentum"}]
    whole = sweep(spec, rates, grid)
    monkeypatch.setattr(sweepmod, "CHUNK_BYTES", 1)  # one rate per batched run, here in turn
    monkeypatch.setattr(sweepmod, "available_cores", lambda: 1)
    so_far = SweepSoFar(rates, grid)
    batched_runs = []

    def stopping_train(*args, on_step=None, **keys):
        batched_runs.append(keys["lrs"])
        if len(batched_runs) == 5:  # grid point 2's second group (rate 0.3), at its step 12
            on_step = stop_at(12)
        return train(*args, on_step=on_step, **keys)

    monkeypatch.setattr(sweepmod, "train", stopping_train)
    with pytest.raises(Interrupted) as stop:
        sweep(spec, rates, grid, so_far=so_far)
    assert batched_runs == [[0.01], [0.3], [8.0], [0.01], [0.3]]
    assert list(so_far.points) == [0]
    assert so_far.points[0].runs == whole[0].runs
    assert so_far.points[0].max_stable_lr == whole[0].max_stable_lr
    assert so_far.runs[1] == [r for r in whole[1].runs if r.learning_rate == 0.01]
    assert so_far.unfinished_rates(1) == [0.3, 8.0]
    assert so_far.partial_point(1).max_stable_lr is None  # not claimed: 0.3 could fail
    assert stop.value.training.step == 12

    out = text(sweepfmt.render_interrupted(spec, so_far, stop.value.training))
    assert out.startswith("train.optimizer=sgd ") and out.count("max stable learning rate") == 1
    assert "train.optimizer=momentum — partial: 1 of 3 rates finished" in out
    assert "not finished: 0.3, 8 (their batched run had not ended)" in out
    assert re.search(
        r"interrupted at step 12 of 30 \(loss [0-9.]+\) in the training of the rates"
        r" \(grid point 2 of 2\) —"
        r" partial: 1 of 2 grid points finished, 1 of 3 rates of grid point 2 finished;"
        r" no report written",
        out,
    )


def test_groups_finished_in_workers_are_kept_in_the_order_they_finish(small, monkeypatch):
    spec = small(steps=30)
    monkeypatch.setattr(sweepmod, "CHUNK_BYTES", 1)
    finished = []
    runs = run_rates(spec, [0.01, 8.0, 0.3], {}, on_group=finished.append)
    assert sorted(r.learning_rate for group in finished for r in group) == [0.01, 0.3, 8.0]
    assert [len(group) for group in finished] == [1, 1, 1]
    assert [r.learning_rate for r in runs] == [0.01, 8.0, 0.3]  # the result keeps input order


def test_a_point_whose_rates_all_finished_has_its_max_stable_rate(small, monkeypatch):
    spec = small(steps=30)
    rates = [0.01, 8.0]
    so_far = SweepSoFar(rates, [{}])

    def measure(*_args):
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(sweepmod, "sharpness", measure)
    with pytest.raises(Interrupted):
        sweep(spec, rates, [{}], so_far=so_far)
    assert so_far.partial_point(0).max_stable_lr == 0.01
    out = text(sweepfmt.render_interrupted(spec, so_far))
    assert "max stable learning rate: 0.01 (every rate finished; stopped in the lambda_max" in out
    assert "interrupted at the lambda_max measurement — partial: 2 of 2 rates finished" in out


# ------------------------------------------------------------------ run / fix verification
def test_an_interrupted_verification_keeps_the_verdicts_it_has():
    spec = spec_from_dict(
        {
            "seed": 0,
            "data": {"samples": 256, "features": 10, "outputs": 5, "scale": 300.0},
            "model": {
                "layers": [
                    {"units": 20, "activation": "relu", "init": "he"},
                    {"units": 5, "activation": "linear", "init": "xavier"},
                ]
            },
            "numerics": {"dtype": "float16"},
            "train": {"steps": 200, "learning_rate": 0.01},
        }
    )
    d, outcome = examine(spec)
    ids = [r.id for r in d.recommendations]
    assert len(ids) >= 3

    def second_done(rec_id: str) -> None:
        done.append(rec_id)
        if len(done) == 2:
            raise Interrupted(signal.SIGINT)

    done = []
    with pytest.raises(Interrupted):
        verify_fixes(d, outcome, jobs=1, on_done=second_done)
    tried = [r for r in d.recommendations if r.verified is not None]
    assert [r.id for r in tried] == done  # each verdict recorded as its run ended
    assert all(r.evidence for r in tried)
    assert all(not r.evidence for r in d.recommendations if r.id not in done)
    line = diagfmt.interrupted_line(d, diagfmt.VERIFYING)
    assert line == (
        "interrupted at the verification — partial: the diagnosis is complete;"
        f" 2 of {len(ids)} recommendations re-run, the others untried; no report written"
    )
    out = text(diagfmt.render_interrupted(d, diagfmt.VERIFYING))
    assert out.count("[untried]") == len(ids) - 2 and line in out.replace("\n", " ")


def test_a_run_stopped_in_training_has_no_diagnosis_and_says_where():
    stopped = StoppedTraining(4512, 1_000_000, 0.0123)
    assert diagfmt.interrupted_line(None, diagfmt.TRAINING, stopped) == (
        "interrupted at step 4,512 of 1,000,000 (loss 0.0123) of the training — partial: no"
        " diagnosis, which needs the finished run; no report written"
    )
    assert diagfmt.interrupted_line(None, diagfmt.TRAINING, None, "nothing written") == (
        "interrupted before the training began — partial: nothing finished; nothing written"
    )


def test_a_diagnosis_made_then_interrupted_while_writing_is_complete(small):
    d = diagnose(train(small(steps=10))[0])
    assert diagfmt.interrupted_line(d, diagfmt.WRITING) == (
        "interrupted at the writing of the outputs — partial: the diagnosis is complete;"
        " no report written"
    )
    assert np.isfinite(d.loss_final)


class StopsAfterOneUnit:
    """A cluster backend that finishes the last unit first, then is interrupted."""

    def map(self, fn, items, on_done=None, lost=None, on_arrival=None):
        last = len(items) - 1
        result = fn(items[last])
        on_arrival(last, result)
        raise Interrupted(signal.SIGINT)


def test_on_a_cluster_each_finished_unit_is_kept_for_its_grid_point(small, monkeypatch):
    from nandoctor import cluster

    spec = small(steps=30)
    rates = [0.01, 8.0]
    grid = [{"train.optimizer": "sgd"}, {"train.optimizer": "momentum"}]
    monkeypatch.setattr(sweepmod, "CHUNK_BYTES", 1)  # one unit per rate
    so_far = SweepSoFar(rates, grid)
    with cluster.using(StopsAfterOneUnit()), pytest.raises(Interrupted) as stop:
        sweep(spec, rates, grid, so_far=so_far)
    assert stop.value.training is None  # the units trained elsewhere
    assert so_far.points == {} and sorted(so_far.activity) == [0, 1]
    (run,) = so_far.runs[1]  # the last unit: grid point 2 at rate 8
    assert (run.learning_rate, run.settings) == (8.0, {"train.optimizer": "momentum"})
    assert so_far.unfinished_rates(0) == rates and so_far.unfinished_rates(1) == [0.01]
    assert sweepfmt.interrupted_line(so_far) == (
        "interrupted at the training of the rates — partial: 0 of 2 grid points finished,"
        " 1 of 4 rates of the unfinished grid points finished; no report written"
    )
