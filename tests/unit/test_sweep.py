"""nandoctor sweep: rate and grid parsing, the largest stable rate and its refined edge, batched
runs identical to single ones, lambda_max against a case with a known answer, and the CLI's text,
JSON and CSV outputs and exit codes."""

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from rich.console import Console

from nandoctor import sweep as sweepmod
from nandoctor.cli import main
from nandoctor.diagnosis.diagnose import diagnose
from nandoctor.engine.runs import train
from nandoctor.engine.setup import prepare
from nandoctor.report import sweep as sweepfmt
from nandoctor.spec.models import load_spec, spec_from_dict
from nandoctor.sweep import (
    CHUNK_BYTES,
    EDGE_RTOL,
    GridPoint,
    RateRun,
    SweepError,
    chunk_size,
    max_stable,
    parse_grid,
    parse_rates,
    refine_edge,
    run_rates,
    sharpness,
    sweep,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RELU = str(CONFIGS / "relu_high_lr.yaml")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def single(spec, rate: float) -> tuple:
    """What ``nandoctor run`` reports for ``spec`` at ``rate``, in RateRun's terms."""
    d = diagnose(train(spec.with_changes({"train.learning_rate": rate}))[0])
    first = d.first_nonfinite.to_json() if d.first_nonfinite else None
    return d.status, d.steps_run, first, d.cause.id if d.cause else None, d.loss_final


def as_tuple(r: RateRun) -> tuple:
    return r.status, r.steps_run, r.first_nonfinite, r.cause, r.final_loss


# ------------------------------------------------------------------ parse_rates
@pytest.mark.parametrize(
    "text,expected",
    [
        ("0.1,0.2,0.4", [0.1, 0.2, 0.4]),
        (" 1e-3, 1 ", [1e-3, 1.0]),
        ("0.5", [0.5]),
        ("0.3,1.5,3,", [0.3, 1.5, 3.0]),
    ],
)
def test_parse_rates_list(text, expected):
    assert parse_rates(text) == expected


def test_parse_rates_start_stop_num_is_log_spaced_with_both_ends():
    rates = parse_rates("1e-4:1:5")
    assert len(rates) == 5
    assert rates[0] == 1e-4 and rates[-1] == 1.0  # the ends exactly as written
    np.testing.assert_allclose(rates, [1e-4, 1e-3, 1e-2, 1e-1, 1.0], rtol=1e-12)
    twelve = parse_rates("0.1:3:12")
    assert len(twelve) == 12 and twelve[0] == 0.1 and twelve[-1] == 3.0
    ratios = np.diff(np.log(twelve))
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)  # equal steps in log space
    assert parse_rates("2:2:1") == [2.0]
    assert parse_rates("1:0.01:3") == pytest.approx([1.0, 0.1, 0.01])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "0.1,x",
        "0,1",
        "-1",
        "nan",
        "inf",
        ",,",
        "1:2",
        "1:2:3:4",
        "0:1:5",
        "-1:1:5",
        "1:inf:3",
        "1e-3:1:0",
        "1e-3:1:2.5",
        "a:1:3",
    ],
)
def test_parse_rates_errors(text):
    with pytest.raises(SweepError, match="--lr"):
        parse_rates(text)


# ------------------------------------------------------------------ parse_grid
def test_parse_grid_is_the_cartesian_product_in_order():
    grid = parse_grid(("train.optimizer=sgd,momentum", "train.clip_grad_norm=null,1"))
    assert grid == [
        {"train.optimizer": "sgd", "train.clip_grad_norm": None},
        {"train.optimizer": "sgd", "train.clip_grad_norm": 1},
        {"train.optimizer": "momentum", "train.clip_grad_norm": None},
        {"train.optimizer": "momentum", "train.clip_grad_norm": 1},
    ]
    assert parse_grid(()) == [{}]


def test_parse_grid_values_are_typed_as_yaml():
    assert parse_grid(("train.shuffle=true,false",)) == [
        {"train.shuffle": True},
        {"train.shuffle": False},
    ]
    units = parse_grid(("model.layers.0.units=4, 8",))
    assert [g["model.layers.0.units"] for g in units] == [4, 8]
    assert all(type(g["model.layers.0.units"]) is int for g in units)
    assert [g["train.momentum"] for g in parse_grid(("train.momentum=0.5,0.9",))] == [0.5, 0.9]


@pytest.mark.parametrize(
    "items,needle",
    [
        (("train.optimizer",), "KEY=V1,V2"),
        (("=sgd,adam",), "KEY=V1,V2"),
        (("train.optimizer=sgd,,adam",), "empty value"),
        (("train.optimizer=",), "empty value"),
        (("train.learning_rate=0.1,1",), "--lr"),
        (("train.optimizer=sgd", "train.optimizer=adam"), "twice"),
        (("train.momentum=[0.9,0.5",), "YAML"),
    ],
)
def test_parse_grid_errors(items, needle):
    with pytest.raises(SweepError, match="--set") as e:
        parse_grid(items)
    assert needle in str(e.value)


def test_grid_values_are_typed_by_the_schema(small):
    # YAML 1.1 reads 1e-8 as a string; the schema makes it the float the run used
    points = sweep(small(steps=3), [0.01], parse_grid(("train.eps=1e-8,1e-6",)))
    assert [p.settings["train.eps"] for p in points] == [1e-8, 1e-6]
    assert all(type(p.runs[0].settings["train.eps"]) is float for p in points)


# ------------------------------------------------------------------ max_stable
def rr(lr: float, status: str) -> RateRun:
    return RateRun(lr, status, 1, None, None, None)


@pytest.mark.parametrize(
    "runs,expected",
    [
        ([rr(0.1, "healthy"), rr(0.2, "nonfinite"), rr(0.4, "healthy")], 0.1),
        ([rr(0.4, "healthy"), rr(0.2, "nonfinite"), rr(0.1, "healthy")], 0.1),  # any order
        ([rr(0.1, "healthy"), rr(0.2, "warning"), rr(0.4, "nonfinite")], 0.2),  # warning is finite
        ([rr(0.1, "healthy"), rr(0.2, "healthy")], 0.2),
        ([rr(0.1, "nonfinite"), rr(0.2, "healthy")], None),  # a failure below caps everything
        ([rr(0.1, "nonfinite")], None),
        ([], None),
    ],
)
def test_max_stable(runs, expected):
    assert max_stable(runs) == expected


# ------------------------------------------------------------------ batched runs
def test_batched_rates_equal_single_runs(small):
    spec = small(steps=60)
    rates = [0.01, 0.3, 1.0, 2.0, 8.0, 40.0]
    runs = run_rates(spec, rates, {})
    assert [r.learning_rate for r in runs] == rates
    assert {r.status for r in runs} >= {"healthy", "nonfinite"}  # some drop out, some finish
    for r in runs:
        assert as_tuple(r) == single(spec, r.learning_rate), r.learning_rate


@pytest.mark.parametrize(
    "name,rates",
    [
        ("adam_eps_zero", [1e-3, 0.01]),  # division_by_zero
        ("softmax_overflow_naive", [0.01, 1.0]),  # overflow in the loss
        ("deep_sigmoid_saturated", [0.1, 10.0]),
    ],
)
def test_batched_equals_single_for_other_causes(name, rates):
    spec = load_spec(CONFIGS / f"{name}.yaml").with_changes({"train.steps": 30})
    for r in run_rates(spec, rates, {}):
        assert as_tuple(r) == single(spec, r.learning_rate), (name, r.learning_rate)


def test_a_failing_rate_does_not_disturb_the_others(small):
    spec = small(steps=40)
    alone = run_rates(spec, [0.1], {})[0]
    with_failures = run_rates(spec, [1000.0, 0.1, 50.0], {})
    assert with_failures[0].status == with_failures[2].status == "nonfinite"
    assert as_tuple(with_failures[1]) == as_tuple(alone)


def test_chunk_size_keeps_the_batch_in_cache(monkeypatch):
    monkeypatch.setattr(sweepmod, "available_cores", lambda: 1)
    blog = load_spec(CONFIGS / "blog_randn_sigmoid.yaml")
    assert chunk_size(blog, prepare(blog), 16) == 16  # tiny layers: every rate at once
    mid = spec_from_dict(
        {
            "data": {"source": "synthetic", "samples": 512, "features": 8, "outputs": 2},
            "model": {"layers": [{"units": 256, "activation": "relu"}, {"units": 2}]},
            "numerics": {"dtype": "float32"},
            "train": {"batch_size": 256},
        }
    )
    assert chunk_size(mid, prepare(mid), 16) == CHUNK_BYTES // (256 * 256 * 4)
    assert chunk_size(mid, prepare(mid), 2) == 2
    monkeypatch.setattr(sweepmod, "available_cores", lambda: 2)
    assert chunk_size(blog, prepare(blog), 16) == 8  # but at least one group per core


def test_chunked_runs_equal_one_batch_and_progress_counts_once(small, monkeypatch):
    spec = small(steps=30)
    rates = [0.01, 0.3, 1.0, 2.0, 8.0]
    whole = [as_tuple(r) for r in run_rates(spec, rates, {})]
    monkeypatch.setattr(sweepmod, "CHUNK_BYTES", 1)  # one rate per batched run
    seen = []
    chunked = run_rates(spec, rates, {}, on_step=seen.append)
    assert [as_tuple(r) for r in chunked] == whole
    assert seen[0] == 1 and seen.count(1) == 1  # the CLI counts a grid point at step 1
    assert seen == sorted(set(seen)) and seen[-1] <= spec.train.steps


def test_sweep_matches_run_through_the_cli():
    rates = [0.3, 1.5, 3.0]
    r = invoke("sweep", RELU, "--lr", "0.3,1.5,3", "--format", "json")
    assert r.exit_code == 0, r.output
    runs = json.loads(r.stdout)["runs"]
    assert [x["learning_rate"] for x in runs] == rates
    for rate, got in zip(rates, runs, strict=True):
        one = invoke(
            "run", RELU, "--set", f"train.learning_rate={rate}", "--format", "json", "--no-verify"
        )
        want = json.loads(one.stdout)
        assert one.exit_code == (1 if want["status"] == "nonfinite" else 0)
        assert got["status"] == want["status"], rate
        assert got["steps_run"] == want["steps_run"], rate
        assert got["first_nonfinite"] == want["first_nonfinite"], rate
        assert got["cause"] == (want["cause"]["id"] if want["cause"] else None), rate
        assert got["final_loss"] == want["loss"]["final"], rate
    assert [x["status"] for x in runs] == ["healthy", "nonfinite", "nonfinite"]


# ------------------------------------------------------------------ the edge
def test_refine_edge_narrows_to_the_tolerance_and_keeps_the_sides(small):
    spec = small(steps=40)
    prepared = prepare(spec)
    runs = run_rates(spec, [0.05, 20.0], {}, prepared)
    assert [r.status != "nonfinite" for r in runs] == [True, False]
    lo, hi = refine_edge(spec, runs, {}, prepared)
    assert 0.05 <= lo < hi <= 20.0
    assert hi / lo - 1 <= EDGE_RTOL
    assert len(runs) > 2  # the probes were added to the runs
    assert max_stable(runs) == lo
    again = run_rates(spec, [lo, hi], {}, prepared)  # the sides hold on a fresh run
    assert again[0].status != "nonfinite" and again[1].status == "nonfinite"


def test_refine_edge_needs_a_finite_and_a_failing_rate(small):
    spec = small(steps=5)
    prepared = prepare(spec)
    assert refine_edge(spec, run_rates(spec, [0.01, 0.02], {}, prepared), {}, prepared) is None
    assert refine_edge(spec, run_rates(spec, [1e4, 1e5], {}, prepared), {}, prepared) is None


def test_sweep_with_edge_reports_it_and_sorts_the_runs(small):
    (point,) = sweep(small(steps=40), [0.05, 20.0], [{}], edge=True)
    lo, hi = point.edge
    assert point.max_stable_lr == lo and hi / lo - 1 <= EDGE_RTOL
    lrs = [r.learning_rate for r in point.runs]
    assert lrs == sorted(lrs) and lo in lrs and hi in lrs


# ------------------------------------------------------------------ lambda_max
def linear_spec(seed: int, samples: int, features: int, outputs: int, **numerics):
    return spec_from_dict(
        {
            "seed": seed,
            "data": {
                "source": "synthetic",
                "task": "regression",
                "samples": samples,
                "features": features,
                "outputs": outputs,
            },
            "model": {"layers": [{"units": outputs, "activation": "linear"}]},
            "loss": "mse",
            "numerics": numerics or {"dtype": "float64"},
            "train": {"steps": 5, "batch_size": "full"},
        }
    )


@pytest.mark.parametrize(
    "seed,samples,features,outputs,numerics",
    [
        (0, 256, 10, 5, {}),
        (2, 256, 10, 3, {}),  # close top eigenvalues: plain power iteration stalls here
        (1, 40, 20, 3, {}),
        (3, 7, 1, 2, {}),
        (0, 64, 6, 4, {"dtype": "float32"}),
    ],
)
def test_sharpness_of_linear_regression_is_the_exact_eigenvalue(
    seed, samples, features, outputs, numerics
):
    # mse = mean over n*out elements of (x W + b - y)^2: the Hessian with respect to W (with b
    # as an extra row fed by a column of ones) is block-diagonal, one block per output, each
    # (2 / (n*out)) [X, 1]^T [X, 1]; so lambda_max is that block's largest eigenvalue.
    spec = linear_spec(seed, samples, features, outputs, **numerics)
    prepared = prepare(spec)
    x1 = np.hstack([prepared.x.astype(np.float64), np.ones((samples, 1))])
    exact = np.linalg.eigvalsh(2 / (samples * outputs) * x1.T @ x1).max()
    lam, note = sharpness(spec, prepared)
    assert note == ""
    assert lam == pytest.approx(exact, rel=1e-3)


def test_sharpness_has_no_value_without_a_loss_or_when_not_finite():
    blog = load_spec(CONFIGS / "blog_randn_sigmoid.yaml")
    lam, note = sharpness(blog, prepare(blog))
    assert lam is None and "random_gradient" in note
    naive = load_spec(CONFIGS / "softmax_overflow_naive.yaml")
    lam, note = sharpness(naive, prepare(naive))
    assert lam is None and "not finite" in note


def test_full_batch_gd_edge_sits_at_two_over_lambda_max():
    # float16 overflows at 65504, so a linear model diverging at rate lr (error growing by
    # |1 - lr*lambda| per step) goes non-finite within the budget just above 2/lambda_max
    spec = linear_spec(0, 64, 4, 2, dtype="float16").with_changes({"train.steps": 400})
    (point,) = sweep(spec, [0.1, 10.0], [{}], edge=True)
    bound = 2 / point.sharpness
    lo, hi = point.edge
    assert lo < hi
    assert 0.9 * bound < lo <= 1.1 * bound, (lo, hi, bound)


# ------------------------------------------------------------------ renderers
def render(renderable) -> str:
    console = Console(file=io.StringIO(), width=120, no_color=True, highlight=False)
    console.print(renderable)
    return console.file.getvalue()


def point(runs, sharpness_value=None, has_loss=True) -> GridPoint:
    p = GridPoint(settings={}, runs=runs, max_stable_lr=max_stable(runs), has_loss=has_loss)
    p.sharpness = sharpness_value
    return p


def run_with(lr, status, loss):
    return RateRun(lr, status, 10, None, None, loss)


def test_chart_marks_runs_edge_and_bound():
    runs = [
        run_with(0.01, "healthy", 1.0),
        run_with(0.1, "healthy", 0.01),
        run_with(1.0, "warning", 123456.0),
        run_with(10.0, "nonfinite", None),
    ]
    text = sweepfmt.chart(point(runs, sharpness_value=20.0), width=40).plain
    lines = text.splitlines()
    plot = [line for line in lines if "┤" in line or "│" in line]
    assert plot[0].startswith("NaN/Inf") and plot[0].rstrip().endswith("x")
    assert "1.2e+05" in text and "0.01" in text  # the loss axis, unclipped
    edge_col = plot[0].index("┤") + 1 + round((0 - -2) / 3 * 39)  # rate 1 on 1e-2..1e1
    assert all(line[edge_col] in "|o" for line in plot)
    assert ": 2/lambda_max = 0.1" in text and "| max stable lr 1" in text
    assert "learning rate" in lines[-2]


def test_chart_without_a_loss_is_a_strip():
    runs = [run_with(0.1, "healthy", -0.5), run_with(1.0, "healthy", 0.2)]
    text = sweepfmt.chart(point(runs, has_loss=False)).plain
    rows = [line for line in text.splitlines() if "┤" in line]
    assert [r.split("┤")[0].strip() for r in rows] == ["NaN/Inf", "finite"]
    assert rows[1].count("o") == 2


# ------------------------------------------------------------------ CLI
def test_json_document_shape():
    r = invoke("sweep", RELU, "--steps", "40", "--lr", "0.1,1,30", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # all of stdout is one document
    assert {"spec", "runs", "max_stable_lr", "lambda_max", "lr_bound"} <= set(doc)
    assert doc["spec"].endswith("relu_high_lr.yaml")
    keys = {"learning_rate", "status", "steps_run", "first_nonfinite", "cause", "final_loss"}
    assert all(set(run) == keys | {"diverging"} for run in doc["runs"])
    assert [x["status"] != "nonfinite" for x in doc["runs"]] == [True, True, False]
    assert doc["runs"][2]["first_nonfinite"]["phase"] in ("forward", "loss", "backward", "update")
    assert doc["max_stable_lr"] == 1.0
    assert doc["lambda_max"] > 0 and doc["lr_bound"] == pytest.approx(2 / doc["lambda_max"])
    assert doc["edge"] is None


def test_json_with_edge():
    r = invoke("sweep", RELU, "--steps", "40", "--lr", "0.1,30", "--edge", "--format", "json")
    doc = json.loads(r.stdout)
    lo, hi = doc["edge"]
    assert doc["max_stable_lr"] == lo and hi / lo - 1 <= doc["edge_rtol"] == EDGE_RTOL
    assert "measured edge" in doc["note"] and "2/lambda_max" in doc["note"]


def test_grid_runs_carry_every_key():
    r = invoke(
        "sweep",
        RELU,
        "--steps",
        "30",
        "--lr",
        "0.1,1,30",
        "--set",
        "train.optimizer=sgd,momentum",
        "--format",
        "json",
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert len(doc["runs"]) == 2 * 3
    assert [x["train.optimizer"] for x in doc["runs"]] == ["sgd"] * 3 + ["momentum"] * 3
    assert [g["settings"] for g in doc["grid"]] == [
        {"train.optimizer": "sgd"},
        {"train.optimizer": "momentum"},
    ]
    # the Hessian at initialisation does not depend on the optimiser: shared at the top
    assert doc["lambda_max"] == doc["grid"][0]["lambda_max"] == doc["grid"][1]["lambda_max"]
    assert doc["max_stable_lr"] == max(g["max_stable_lr"] for g in doc["grid"])


def test_grid_text_groups_a_table_per_setting():
    r = invoke(
        "sweep", RELU, "--steps", "20", "--lr", "0.1,1", "--set", "train.optimizer=sgd,momentum"
    )
    assert r.exit_code == 0, r.output
    sgd, momentum = (
        r.output.index("train.optimizer=sgd"),
        r.output.index("train.optimizer=momentum"),
    )
    assert sgd < momentum
    assert r.output.count("failed in") == 2
    assert r.output.count("final loss against learning rate") == 2


def test_csv_header_and_rows():
    r = invoke(
        "sweep",
        RELU,
        "--steps",
        "20",
        "--lr",
        "0.1:10:4",
        "--set",
        "train.optimizer=sgd,momentum",
        "--format",
        "csv",
    )
    assert r.exit_code == 0, r.output
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0] == [
        "train.optimizer",
        "learning_rate",
        "status",
        "steps_run",
        "step",
        "phase",
        "layer",
        "cause",
        "final_loss",
    ]
    assert len(rows) == 1 + 2 * 4
    assert {row[0] for row in rows[1:]} == {"sgd", "momentum"}
    failed = [row for row in rows[1:] if row[2] == "nonfinite"]
    assert failed and all(row[4] and row[7] and row[8] == "" for row in failed)


def test_text_has_table_chart_and_verdict():
    r = invoke("sweep", RELU, "--steps", "40", "--lr", "0.1:3:6", "--edge")
    assert r.exit_code == 0, r.output
    out = r.output
    for needle in (
        "learning rate",
        "status",
        "failed in",
        "final loss",
        "exploding_gradient",
        "final loss against learning rate",
        "NaN/Inf",
        "o finite   x non-finite   | max stable lr",
        ": 2/lambda_max = ",
        "max stable learning rate:",
        "edge between",
        "the bound 2/lambda_max",
        "* tried by the --edge bisection",
    ):
        assert needle in out, needle
    assert "Traceback" not in out


def test_text_fits_an_80_column_terminal():
    args = ["sweep", RELU, "--steps", "40", "--lr", "0.1:3:6", "--edge"]
    r = CliRunner().invoke(main, args, env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert max(len(line.rstrip()) for line in r.output.splitlines()) <= 80
    assert "exploding_gradient" in r.output and "forward layer 2" in r.output  # not cut


def test_json_grid_over_the_model_has_one_lambda_max_per_point(small):
    spec = small(steps=3)
    points = sweep(spec, [0.01], parse_grid(("model.layers.0.init=he,xavier",)))
    doc = json.loads(sweepfmt.to_json(spec, points))
    he, xavier = (g["lambda_max"] for g in doc["grid"])
    assert he != xavier and doc["lambda_max"] is None and doc["lr_bound"] is None
    assert [x["model.layers.0.init"] for x in doc["runs"]] == ["he", "xavier"]


@pytest.mark.parametrize(
    "args,code",
    [
        (["--lr", "0.01,0.1"], 0),  # every rate finite
        (["--lr", "0.1,30"], 0),  # some finite
        (["--lr", "30,100"], 1),  # none finite
        (["--lr", "abc"], 2),
        (["--lr", "0:1:4"], 2),
        (["--lr", "0.1", "--set", "train.optimizr=sgd,adam"], 2),
        (["--lr", "0.1", "--set", "train.optimizer=sgd,adamax"], 2),
        (["--lr", "0.1", "--set", "train.optimizer"], 2),
    ],
)
def test_exit_codes(args, code):
    r = invoke("sweep", RELU, "--steps", "30", *args, "--format", "json")
    assert r.exit_code == code, r.output
    if code == 2:
        assert "Traceback" not in r.output and r.stdout == ""
        assert "--lr" in r.output or "--set" in r.output
    else:
        json.loads(r.stdout)


def test_json_is_strict_and_finite():
    # no NaN or Infinity tokens even when every rate fails
    r = invoke("sweep", RELU, "--steps", "30", "--lr", "30,100", "--format", "json")
    doc = json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"JSON holds {c}"))
    assert doc["max_stable_lr"] is None
    assert all(x["final_loss"] is None for x in doc["runs"])
    assert math.isfinite(doc["lambda_max"])


def test_full_batch_nesterov_edge_sits_at_its_own_bound_and_the_note_names_it():
    # torch's Nesterov momentum m on a quadratic diverges above lr lambda = 2 (1 + m) / (1 + 2 m)
    spec = linear_spec(0, 64, 4, 2, dtype="float16").with_changes(
        {"train.steps": 400, "train.optimizer": "nesterov", "train.momentum": 0.9}
    )
    (point,) = sweep(spec, [0.05, 10.0], [{}], edge=True)
    ref = 2 / point.sharpness * 1.9 / 2.8
    lo, hi = point.edge
    assert 0.9 * ref < lo <= 1.1 * ref, (lo, hi, ref)
    from nandoctor.sweep import compare_note

    note = compare_note(point, spec)
    assert "2(1+0.9)/((1+2x0.9) lambda_max)" in note and f"{ref:.3g}" in note


def test_a_rate_whose_loss_diverged_is_not_stable(high_momentum):
    """Nesterov momentum 0.99: a rate can stay finite for the whole budget while its loss climbs
    by orders of magnitude towards overflow. Such a run is flagged ``diverging`` (as its single
    run's loss shows) and the largest stable rate sits below it."""
    from nandoctor.diagnosis.measures import loss_trend

    spec = high_momentum(200)
    runs = run_rates(spec, [0.01, 0.0548, 0.128], {})
    for r in runs:
        o = train(spec.with_changes({"train.learning_rate": r.learning_rate}))[0]
        assert as_tuple(r) == single(spec, r.learning_rate)
        assert r.diverging == (o.finite and loss_trend(o.loss).diverged), r.learning_rate
    diverged = [r for r in runs if r.diverging]
    assert diverged and all(r.status != "nonfinite" for r in diverged)  # finite, not stable
    best = max_stable(runs)
    assert best is not None and best < min(r.learning_rate for r in diverged)
    assert all(not r.diverging for r in runs if r.learning_rate <= best)
    assert runs[0].to_json()["diverging"] is False


def test_the_chart_the_note_and_the_json_give_the_same_momentum_aware_bound():
    """Nesterov momentum 0.99: the note compares the edge with 2(1+m)/((1+2m) lambda_max); the
    chart's ':' mark and the JSON's lr_bound are that bound too, not 2/lambda_max."""
    spec = spec_from_dict(
        {
            "seed": 0,
            "data": {"source": "synthetic", "task": "regression", "samples": 64,
                     "features": 4, "outputs": 1},
            "model": {"layers": [{"units": 16, "activation": "tanh"}, {"units": 1}]},
            "train": {"steps": 200, "batch_size": "full", "optimizer": "nesterov",
                      "momentum": 0.99},
        }
    )  # fmt: skip
    (p,) = sweep(spec, [0.2, 0.1, 0.05, 0.025, 0.0125], [{}])
    name = "2(1+0.99)/((1+2x0.99) lambda_max)"
    want = 2 / p.sharpness * 1.99 / 2.98
    assert f"the bound {name} = {sweepmod.fmt(want)}" in p.sharpness_note
    assert f": {name} = {sweepmod.fmt(want)}" in sweepfmt.chart(p).plain
    doc = json.loads(sweepfmt.to_json(spec, [p]))
    assert math.isclose(doc["lr_bound"], want) and doc["lr_bound_formula"] == name
    assert math.isclose(doc["grid"][0]["lr_bound"], want)
