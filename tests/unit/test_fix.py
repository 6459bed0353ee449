"""Verified recommendations and `nandoctor fix` (issue 4)."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nandoctor.cli import main
from nandoctor.diagnosis.diagnose import diagnose
from nandoctor.diagnosis.verify import rank, verify
from nandoctor.engine.runs import train
from nandoctor.spec.models import load_spec

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
NONFINITE = [
    "relu_high_lr",
    "softmax_overflow_naive",
    "bce_saturated_naive",
    "nan_in_data",
    "zero_variance_standardize",
    "adam_eps_zero",
    "batchnorm_zero_variance",
    "float16_overflow",
]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def copy_config(tmp_path, name):
    """A copy of an example spec (and its data folder) that tests may rewrite."""
    dst = tmp_path / f"{name}.yaml"
    dst.write_text((CONFIGS / f"{name}.yaml").read_text())
    (tmp_path / "data").mkdir(exist_ok=True)
    for f in (CONFIGS / "data").iterdir():
        (tmp_path / "data" / f.name).write_text(f.read_text())
    return dst


@pytest.mark.parametrize("name", NONFINITE)
def test_fix_gives_a_spec_that_runs_finite(tmp_path, name):
    src = copy_config(tmp_path, name)
    out = tmp_path / "fixed.yaml"
    r = invoke("fix", src, "-o", out)
    assert r.exit_code == 0, r.output
    assert "fixed by" in r.output
    run = invoke("run", out, "--format", "json", "--no-verify")
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["status"] != "nonfinite"


def test_fix_keeps_comments_and_marks_the_change(tmp_path):
    src = copy_config(tmp_path, "relu_high_lr")
    out = tmp_path / "fixed.yaml"
    assert invoke("fix", src, "-o", out).exit_code == 0
    old, new = src.read_text(), out.read_text()
    # every comment line of the original survives, in order
    old_comments = [line for line in old.splitlines() if line.lstrip().startswith("#")]
    assert [line for line in new.splitlines() if line.lstrip().startswith("#")] == old_comments
    changed = [line for line in new.splitlines() if "nandoctor fix:" in line]
    assert len(changed) == 1 and changed[0].lstrip().startswith("learning_rate:")
    assert "verified" in changed[0]
    # nothing else changed
    assert len(new.splitlines()) == len(old.splitlines())
    diffs = [a for a, b in zip(old.splitlines(), new.splitlines(), strict=True) if a != b]
    assert len(diffs) == 1


def test_healthy_spec_is_left_untouched(tmp_path):
    src = copy_config(tmp_path, "healthy")
    out = tmp_path / "fixed.yaml"
    r = invoke("fix", src, "-o", out)
    assert r.exit_code == 0 and "nothing to fix" in r.output
    assert not out.exists()


def test_dry_run_prints_a_diff_and_writes_nothing(tmp_path):
    src = copy_config(tmp_path, "adam_eps_zero")
    before = src.read_text()
    r = invoke("fix", src, "--dry-run")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("---") and "+  eps: 1e-08" in r.output
    assert src.read_text() == before


def test_a_change_whose_mini_batch_loss_is_noise_is_judged_on_the_whole_data(tmp_path):
    """Adam with eps 0 at one row per batch: eps 1e-8 keeps every value finite, and over its 200
    one-row steps the medians fell within their noise (3.54 -> 2.3). Over all 256 rows, at the
    weights it started and ended with, the loss fell 3.93 -> 2.13: `fix` writes it, with those
    numbers. At a rate too small to move the weights the same change is not written."""
    src = copy_config(tmp_path, "adam_eps_zero")
    out = tmp_path / "fixed.yaml"
    r = invoke("fix", src, "-o", out)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "division_by_zero fixed by train.eps=1e-08" in said
    assert "fell only within its step-to-step noise" in said
    assert "over the training set it fell: whole-data loss 3.93 -> 2.13 (all 256 rows" in said
    assert load_spec(out).train.eps == 1e-8

    r = invoke("fix", src, "-o", out, "--set", "train.learning_rate=1e-9")
    assert r.exit_code == 1, r.output
    said = " ".join(r.output.split())
    assert "add_eps (train.eps=1e-08) kept the values finite, not fixed" in said
    assert "over the training set it did not fall, whole-data loss 3.93 -> 3.93" in said


def test_no_verified_fix_writes_nothing_and_exits_1(tmp_path):
    # Every row misses a value: dropping those rows would leave nothing, so nothing is verified.
    src = tmp_path / "csvnan.yaml"
    (tmp_path / "d.csv").write_text("a,b,y\n,2,3\n,1,2\n3,,5\n")
    src.write_text(
        "data: {source: csv, path: d.csv, target: y}\n"
        "model:\n  layers:\n    - {units: 1}\n"
        "train: {steps: 5}\n"
    )
    out = tmp_path / "fixed.yaml"
    r = invoke("fix", src, "-o", out)
    assert r.exit_code == 1
    assert "no verified fix" in r.output and "bad_input" in r.output
    assert not out.exists()


def test_fix_needs_output_or_dry_run():
    r = invoke("fix", CONFIGS / "relu_high_lr.yaml")
    assert r.exit_code == 2 and "-o" in r.output


def test_verified_recommendations_are_ranked_and_cite_experiments():
    spec = load_spec(CONFIGS / "relu_high_lr.yaml")
    outcome = train(spec)[0]
    d = diagnose(outcome)
    recs = verify(d, outcome, jobs=1)
    assert [r.verified for r in recs] == sorted(
        (r.verified for r in recs), key=lambda v: {True: 0, None: 1, False: 2}[v]
    )
    lower = next(r for r in recs if r.id == "lower_learning_rate")
    assert lower.verified is True
    rate = lower.changes["train.learning_rate"]
    assert rate < spec.train.learning_rate
    assert f"{spec.train.steps} steps from step 1, all finite" in lower.evidence
    # the rate really is the largest finite one among the halvings: twice it fails
    assert not train(spec.with_changes({"train.learning_rate": rate * 2}))[0].finite
    assert train(spec.with_changes({"train.learning_rate": rate}))[0].finite
    assert any(e.startswith("experiment:") for e in d.cause.evidence)


def test_a_disproved_candidate_is_reported_false():
    spec = load_spec(CONFIGS / "float16_overflow.yaml")
    outcome = train(spec)[0]
    d = diagnose(outcome)
    recs = verify(d, outcome, jobs=1)
    by_id = {r.id: r for r in recs}
    assert by_id["standardize_inputs"].verified is True
    assert by_id["use_float32"].verified is False  # float32 alone still explodes, later
    assert "still non-finite" in by_id["use_float32"].evidence
    assert any("does not remove it" in e for e in d.cause.evidence)


def test_rank_orders_by_verified_then_size_then_loss():
    from nandoctor.diagnosis.diagnose import Recommendation

    a = Recommendation("a", "", {"x": 1, "y": 2}, True, final_loss=0.1)
    b = Recommendation("b", "", {"x": 1}, True, final_loss=0.5)
    c = Recommendation("c", "", {"x": 1}, True, final_loss=0.2)
    d = Recommendation("d", "", {"x": 1}, False)
    e = Recommendation("e", "", {"x": 1}, None)
    assert [r.id for r in rank([d, e, a, b, c])] == ["c", "b", "a", "e", "d"]


def test_run_json_reports_verification_and_no_verify_skips_it():
    r = invoke("run", CONFIGS / "adam_eps_zero.yaml", "--format", "json")
    doc = json.loads(r.stdout)
    assert doc["recommendations"][0]["verified"] is True
    r = invoke("run", CONFIGS / "adam_eps_zero.yaml", "--format", "json", "--no-verify")
    assert all(rec["verified"] is None for rec in json.loads(r.stdout)["recommendations"])


def test_missing_csv_values_are_fixed_by_dropping_their_rows(tmp_path):
    src = tmp_path / "csvnan.yaml"
    (tmp_path / "d.csv").write_text("a,b,y\n1,2,3\n,1,2\n3,4,5\n2,2,2\n")
    src.write_text(
        "data: {source: csv, path: d.csv, target: y}\n"
        "model:\n  layers:\n    - {units: 1}\n"
        "train: {steps: 100}\n"  # enough steps to see the loss fall: a fix must learn
    )
    out = tmp_path / "fixed.yaml"
    r = invoke("fix", src, "-o", out)
    assert r.exit_code == 0, r.output
    assert "missing: drop_rows" in out.read_text()


# -- round trips: the written spec is the verified one, and only the changed place changes ------


def test_a_comment_on_the_changed_line_is_kept_and_the_reason_appended():
    from nandoctor.fix import apply_changes

    text = "train:\n  learning_rate: 1.5  # tuned by hand\n  steps: 9\n"
    new = apply_changes(text, {"train.learning_rate": 0.75}, "why")
    assert (
        new.splitlines()[1].split(":", 1)[1].strip() == "0.75 # tuned by hand; nandoctor fix: why"
    )
    assert new.splitlines()[2] == "  steps: 9"


def test_line_endings_are_kept():
    from nandoctor.fix import apply_changes

    text = "train:\r\n  learning_rate: 1.5\r\n  steps: 9\r\n"
    new = apply_changes(text, {"train.learning_rate": 0.75}, "why")
    assert new.count("\r\n") == 3 and new.count("\n") == 3


ANCHORED = """\
data: {source: synthetic, samples: 64}
model:
  layers:
    - &hidden {units: 20, activation: relu, init: normal}
    - *hidden
    - <<: *hidden
      units: 8
    - {units: 5, activation: linear}
"""


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_a_change_to_one_layer_sharing_an_anchor_changes_that_layer_alone(tmp_path, layer):
    from nandoctor.fix import apply_changes

    path = tmp_path / "a.yaml"
    path.write_text(ANCHORED)
    key = f"model.layers.{layer}.init"
    verified = load_spec(path).with_changes({key: "he"})  # what a re-run trains
    assert [la.init for la in verified.model.layers[:3]] == [
        "he" if i == layer else "normal" for i in range(3)
    ]
    path.write_text(apply_changes(ANCHORED, {key: "he"}, "why"))
    written = load_spec(path)
    assert written.resolved()["model"] == verified.resolved()["model"]


def test_fix_with_set_writes_the_overrides_too(tmp_path):
    src = copy_config(tmp_path, "relu_high_lr")
    out = tmp_path / "fixed.yaml"
    r = invoke("fix", src, "--set", "train.steps=40", "--set", "train.batch_size=16", "-o", out)
    assert r.exit_code == 0, r.output
    written = load_spec(out)
    verified_with = load_spec(src, ["train.steps=40", "train.batch_size=16"])
    assert (written.train.steps, written.train.batch_size) == (40, 16)
    assert written.train.learning_rate < verified_with.train.learning_rate
    assert "--set train.steps=40" in out.read_text()


@pytest.mark.parametrize("where", ["sub/fixed.yaml", "../elsewhere/fixed.yaml"])
def test_a_fix_written_to_another_folder_still_names_the_spec_data(tmp_path, where):
    """The spec's data path is relative to its own folder: written elsewhere, it is rewritten
    to name the same file from there (and says so), so the fixed spec runs as written."""
    (tmp_path / "proj").mkdir()
    src = copy_config(tmp_path / "proj", "missing_values_csv")
    out = tmp_path / "proj" / where
    out.parent.mkdir(parents=True, exist_ok=True)
    r = invoke("fix", src, "-o", out)
    assert r.exit_code == 0, r.output
    fixed = load_spec(out)
    assert fixed.resolve_path(fixed.data.path).resolve() == (
        load_spec(src).resolve_path(load_spec(src).data.path).resolve()
    )
    assert "the same file, from this spec's folder" in out.read_text()
    run = invoke("run", out, "--format", "json", "--no-verify")
    assert run.exit_code == 0, run.output


def test_the_spec_beside_a_trace_in_another_folder_names_the_same_data(tmp_path):
    src = copy_config(tmp_path, "missing_values_csv")
    trace = tmp_path / "traces" / "t.npz"
    trace.parent.mkdir()
    r = invoke("run", src, "--set", "data.missing=drop_rows", "--trace", trace, "--format", "json")
    assert r.exit_code == 0, r.output
    beside = load_spec(tmp_path / "traces" / "t.spec.yaml")
    assert beside.resolve_path(beside.data.path).resolve() == (tmp_path / "data").resolve() / (
        Path(load_spec(src).data.path).name
    )


def test_a_fix_that_leaves_a_layer_with_zero_gradient_at_every_step_is_not_fixed(tmp_path):
    """Batch norm over batches of one row: with norm_eps > 0 the values stay finite, but the
    normalized row is always 0, so the layer outputs beta and its weights never get a gradient.
    A verified change whose re-run shows a layer frozen like that does not learn; `fix` writes
    a change whose re-run has no such layer, or writes nothing and says 'kept the values
    finite, not fixed'."""
    import numpy as np

    spec_path = tmp_path / "bn_one_row.yaml"
    spec_path.write_text(
        "seed: 0\n"
        "data: {source: synthetic, task: regression, samples: 64, features: 8, outputs: 1}\n"
        "model:\n  layers:\n"
        "    - {units: 16, activation: relu, norm: batch, norm_eps: 0.0}\n"
        "    - {units: 1, activation: linear}\n"
        "loss: mse\n"
        "train: {steps: 60, batch_size: 1, learning_rate: 0.01}\n"
    )
    spec = load_spec(spec_path)
    o = train(spec)[0]
    d = diagnose(o)
    verify(d, o, jobs=1)
    for r in d.recommendations:
        if not r.verified:
            continue
        g = train(spec.with_changes(r.changes))[0].history["grad_norm"]
        frozen = [i + 1 for i in np.flatnonzero((g == 0).all(axis=0))]
        assert (r.frozen_layers or []) == frozen, r.id
        if frozen:
            assert r.learns is False and "never learns" in r.evidence
    out = tmp_path / "fixed.yaml"
    res = invoke("fix", spec_path, "-o", out)
    assert res.exit_code == 0 and " fixed by train.batch_size" in res.output, res.output
    g = train(load_spec(out))[0].history["grad_norm"]
    assert not (g == 0).all(axis=0).any()


def test_two_changes_on_one_flow_mapping_line_get_one_comment():
    from nandoctor.fix import apply_changes

    text = "train: {steps: 10, optimizer: sgd, learning_rate: 0.5}\n"
    out = apply_changes(
        text, {"train.optimizer": "adamw", "train.learning_rate": 0.001}, "use_adamw"
    )
    assert out.count("nandoctor fix: use_adamw") == 1 and "adamw" in out and "0.001" in out


def test_nothing_to_fix_says_when_a_finite_run_is_diverging(tmp_path):
    """Plain regression just above 2/lambda_max: finite for its 300 steps while its loss grows by
    orders of magnitude. Nothing is written (no value went non-finite), but 'nothing to fix'
    must not read as 'fine'."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "seed: 0\n"
        "data: {source: synthetic, task: regression, samples: 256, features: 10, outputs: 1}\n"
        "model: {layers: [{units: 1, activation: linear}]}\n"
        "train: {steps: 300, batch_size: full, learning_rate: 1.1}\n"
    )
    r = invoke("fix", spec, "-o", tmp_path / "out.yaml")
    assert r.exit_code == 0 and not (tmp_path / "out.yaml").exists()
    assert "nothing to fix" in r.output and "heading for overflow" in r.output
