"""The spec keys of real networks (docs/spec.md): the loss as a name or a mapping, --set
into either form, and the rules between the new keys, each a located message."""

from __future__ import annotations

import pytest

from nandoctor.spec.models import SpecError, json_schema, load_spec, spec_from_dict

BASE = """\
data: {source: synthetic, task: regression, samples: 32, features: 3, outputs: 2}
model:
  layers:
    - {units: 4, activation: relu, norm: batch, dropout: 0.1, use_bias: false}
    - {units: 2, activation: linear}
"""


def write(tmp_path, text):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def test_loss_is_a_name_or_a_mapping(tmp_path):
    short = load_spec(write(tmp_path, BASE + "loss: huber\n"))
    assert short.loss.name == "huber" and short.loss.reduction == "mean"
    full = load_spec(write(tmp_path, BASE + "loss: {name: mae, reduction: sum, l2: 0.01}\n"))
    assert (full.loss.name, full.loss.reduction, full.loss.l2) == ("mae", "sum", 0.01)
    layer = full.model.layers[0]
    assert (layer.norm, layer.norm_eps, layer.dropout, layer.use_bias) == (
        "batch",
        1e-5,
        0.1,
        False,
    )


def test_set_reaches_into_a_shorthand_loss_and_keeps_a_mappings_keys(tmp_path):
    path = write(tmp_path, BASE + "loss: mse\n")
    spec = load_spec(path, ["loss.l2=1e-3", "loss.reduction=sum"])
    assert (spec.loss.name, spec.loss.l2, spec.loss.reduction) == ("mse", 0.001, "sum")
    path = write(tmp_path, BASE + "loss: {name: mse, l2: 0.5}\n")
    assert load_spec(path, ["loss=huber"]).loss.l2 == 0.5
    assert spec.with_changes({"loss": "mae"}).loss.l2 == 0.001


@pytest.mark.parametrize(
    "extra, key, words",
    [
        ("loss: {name: mse, label_smoothing: 0.1}\n", "loss.label_smoothing", "cross_entropy only"),
        ("loss: {name: mae, delta: 5.0}\n", "loss.delta", "huber only, not mae"),
        ("train: {warmup_steps: 50}\n", "train.warmup_steps", "schedule warmup only, not constant"),
        ("train: {schedule: cosine, lr_gamma: 0.5}\n", "train.lr_gamma", "step or exponential"),
        ("loss: {name: hubber}\n", "loss.name", "did you mean 'huber'"),
        (
            "numerics: {dtype: float32, master_dtype: float16}\n",
            "numerics.master_dtype",
            "not one of",
        ),
        (
            "numerics: {dtype: float64, master_dtype: float32}\n",
            "numerics.master_dtype",
            "narrower",
        ),
        ("numerics: {loss_scale: dinamic}\n", "numerics.loss_scale", "expected dynamic"),
        ("numerics: {loss_scale: -2}\n", "numerics.loss_scale", "greater than 0"),
        ("train: {optimizer: adamax}\n", "train.optimizer", "not one of"),
        ("data: {categorical: [a]}\n", "data.categorical", "csv data only"),
    ],
)
def test_rules_between_the_new_keys_are_located_messages(tmp_path, extra, key, words):
    text = BASE
    if extra.startswith("data:"):  # a key of the data mapping already written
        text, extra = BASE.replace("data: {", "data: {categorical: [a], "), ""
    with pytest.raises(SpecError) as e:
        load_spec(write(tmp_path, text + extra))
    problem = next(p for p in e.value.problems if p.key == key)
    assert words in problem.message and problem.line > 0


def test_dropout_on_the_last_layer_and_targets_of_classes_are_refused():
    layers = [{"units": 4, "activation": "relu"}, {"units": 2, "dropout": 0.5}]
    with pytest.raises(SpecError, match="model.layers.1.dropout: dropout on the last layer"):
        spec_from_dict({"data": {"outputs": 2}, "model": {"layers": layers}})
    with pytest.raises(SpecError, match="data.target_preprocess"):
        spec_from_dict(
            {
                "data": {"task": "classification", "outputs": 2, "target_preprocess": "minmax"},
                "model": {"layers": [{"units": 2, "activation": "softmax"}]},
                "loss": "cross_entropy",
            }
        )


def test_the_json_schema_takes_the_loss_as_a_name_or_a_mapping():
    loss = json_schema()["properties"]["loss"]
    names, ref = loss["anyOf"]
    assert "huber" in names["enum"] and ref["$ref"].endswith("LossSpec")


def test_keys_of_the_loss_and_schedule_in_use_are_accepted(tmp_path):
    text = BASE + "loss: {name: huber, delta: 5.0}\ntrain: {schedule: warmup, warmup_steps: 50}\n"
    spec = load_spec(write(tmp_path, text))
    assert (spec.loss.delta, spec.train.warmup_steps) == (5.0, 50)
    assert spec.with_changes({"train.schedule": "step", "train.warmup_steps": 100}).train.schedule
