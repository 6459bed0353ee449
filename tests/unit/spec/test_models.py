"""The spec: typed loading, every problem with its file:line:col, overrides, and helpers."""

from pathlib import Path

import pytest

from nandoctor.spec.models import (
    Problem,
    SpecError,
    json_schema,
    load_spec,
    parse_override,
    spec_from_dict,
)

CONFIGS = Path(__file__).resolve().parents[3] / "configs"

GOOD = """\
seed: 3
data:
  source: synthetic
  task: regression
model:
  layers:
    - {units: 20, activation: relu}
    - {units: 5, activation: tanh}
train:
  learning_rate: 0.1
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(path, overrides=()) -> list[Problem]:
    with pytest.raises(SpecError) as info:
        load_spec(path, overrides)
    return info.value.problems


def test_unknown_key_has_line_col_and_suggestion(tmp_path):
    text = GOOD.replace("  learning_rate: 0.1", "  learnig_rate: 0.1")
    path = write(tmp_path, text, "typo.yaml")
    assert len(text.splitlines()) == 10
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == (
        f"{path}:10:3: train.learnig_rate: unknown key; did you mean 'learning_rate'?"
    )
    (p,) = info.value.problems
    assert (p.line, p.col, p.key) == (10, 3, "train.learnig_rate")


def test_nine_line_spec_typo_on_line_nine(tmp_path):
    text = "model:\n  layers:\n    - {units: 5}\nloss: mse\nseed: 1\ndata:\n  noise: 0.1\ntrain:\n  learnig_rate: 0.1\n"
    path = write(tmp_path, text, "typo.yaml")
    message = str(pytest.raises(SpecError, load_spec, path).value)
    assert message.startswith(f"{path}:9:3: ")
    assert "learning_rate" in message


def test_unknown_key_without_close_match_lists_valid_keys(tmp_path):
    path = write(tmp_path, GOOD + "zzz: 1\n")
    (p,) = problems(path)
    assert p.line == 11 and p.message.startswith("zzz: unknown key; valid keys: name, seed,")


def test_bad_type_points_at_the_value(tmp_path):
    path = write(tmp_path, GOOD + "  steps: abc\n")
    (p,) = problems(path)
    assert (p.line, p.col, p.key) == (11, 10, "train.steps")
    assert p.message == "train.steps: expected a whole number at least 1, got 'abc'"
    assert "pydantic" not in p.message and "http" not in p.message


def test_out_of_range_names_key_value_and_range(tmp_path):
    text = GOOD.replace("learning_rate: 0.1", "learning_rate: -0.5")
    text = text.replace("task: regression", "task: regression\n  nan_fraction: 1.5")
    found = {p.key: p for p in problems(write(tmp_path, text))}
    assert found["train.learning_rate"].message == (
        "train.learning_rate: -0.5 is out of range; expected a number at least 0"
    )
    assert found["data.nan_fraction"].line == 5
    assert "expected a number from 0 to 1" in found["data.nan_fraction"].message


def test_bad_enum_suggests_closest(tmp_path):
    (p,) = problems(write(tmp_path, GOOD + "numerics:\n  dtype: float8\n"))
    assert (p.line, p.col) == (12, 10)
    assert p.message == (
        "numerics.dtype: 'float8' is not one of float64, float32, float16; did you mean 'float16'?"
    )


@pytest.mark.parametrize("typed", ["réluu", "re\u0301luu", "RELU", "Réluu"])
def test_a_value_typed_with_an_accent_or_capitals_gets_its_suggestion(tmp_path, typed):
    (p,) = problems(
        write(tmp_path, f"model:\n  layers:\n    - {{units: 2, activation: {typed}}}\n")
    )
    assert p.message.endswith("; did you mean 'relu'?"), p.message


@pytest.mark.parametrize(
    ("key", "said"), [("null", "null"), ("~", "null"), ("yes", "true"), ("False", "false")]
)
def test_a_null_or_boolean_key_is_named_as_yaml_says_it_with_its_line(tmp_path, key, said):
    path = write(tmp_path, GOOD.replace("model:\n", f"model:\n  {key}: 3\n"))
    (p,) = problems(path)
    assert (p.line, p.col, p.key) == (6, 3, f"model.{said}")
    assert p.message == f"model.{said}: unknown key; valid keys: layers, weights"


def test_an_empty_value_says_it_needs_one(tmp_path):
    path = write(
        tmp_path, GOOD.replace("learning_rate: 0.1", "learning_rate:") + "numerics: {dtype: }\n"
    )
    found = {p.key: p for p in problems(path)}
    assert str(found["train.learning_rate"]) == (
        f"{path}:10:17: train.learning_rate: needs a value (a number at least 0); it is empty (null)"
    )
    assert found["numerics.dtype"].message == (
        "numerics.dtype: needs a value (one of float64, float32, float16); it is empty (null)"
    )


def test_set_with_no_value_says_how_to_give_one(tmp_path):
    (p,) = problems(write(tmp_path, GOOD), ["train.learning_rate="])
    assert str(p) == (
        "--set train.learning_rate=: needs a value (a number at least 0); it is empty (null);"
        " give one as --set train.learning_rate=VALUE"
    )
    assert "None" not in str(p)
    nullable = load_spec(write(tmp_path, GOOD), ["check.max_final_loss="])
    assert nullable.check.max_final_loss is None  # a key that takes null still does


def test_bad_enum_in_a_list_item(tmp_path):
    (p,) = problems(write(tmp_path, GOOD + "check:\n  fail_on: [nonfinite, dead_relus]\n"))
    assert p.key == "check.fail_on.1" and (p.line, p.col) == (12, 24)
    assert "did you mean 'dead_relu'?" in p.message


def test_yaml_syntax_error_has_line(tmp_path):
    path = write(tmp_path, "model:\n  layers:\n    - {units: 5\ntrain:\n  steps: 3\n")
    (p,) = problems(path)
    assert p.line == 4 and p.message.startswith("YAML syntax error:")
    assert str(p).startswith(f"{path}:4:")


def test_several_problems_at_once_in_line_order(tmp_path):
    text = GOOD.replace("task: regression", "task: regresion").replace("units: 20", "units: 0")
    text += "  optimizer: adamax\n  eps: -1\nextra: 1\n"
    found = problems(write(tmp_path, text))
    assert [p.key for p in found] == [
        "data.task",
        "model.layers.0.units",
        "train.optimizer",
        "train.eps",
        "extra",
    ]
    assert [p.line for p in found] == [4, 7, 11, 12, 13]
    assert "did you mean 'adam'?" in found[2].message
    assert "did you mean 'regression'?" in found[0].message


def test_missing_required_key_points_at_parent(tmp_path):
    found = problems(write(tmp_path, "seed: 1\nmodel:\n  layers:\n    - {activation: relu}\n"))
    (p,) = found
    assert p.key == "model.layers.0.units" and (p.line, p.col) == (4, 7)
    assert "required key missing" in p.message
    (p,) = problems(write(tmp_path, "seed: 1\n", "nomodel.yaml"))
    assert p.key == "model" and (p.line, p.col) == (1, 1)


def test_eps_1e_8_is_a_float(tmp_path):
    spec = load_spec(write(tmp_path, GOOD + "  eps: 1e-8\n  steps: 1e3\n"))
    assert isinstance(spec.train.eps, float) and spec.train.eps == 1e-8
    assert spec.train.steps == 1000 and isinstance(spec.train.steps, int)


def test_eps_zero_allowed_and_defaults(tmp_path):
    spec = load_spec(write(tmp_path, GOOD + "  eps: 0\n"))
    assert spec.train.eps == 0.0
    t = spec.train
    assert (t.steps, t.batch_size, t.optimizer, t.momentum, t.beta1, t.beta2) == (
        500,
        32,
        "sgd",
        0.9,
        0.9,
        0.999,
    )
    assert (t.schedule, t.lr_step_size, t.lr_gamma, t.warmup_steps) == ("constant", 100, 0.1, 100)
    assert spec.check.fail_on == ["nonfinite"] and spec.numerics.dtype == "float64"


def test_booleans_are_not_numbers(tmp_path):
    (p,) = problems(write(tmp_path, GOOD + "  weight_decay: yes\n"))
    assert p.key == "train.weight_decay" and "expected a number" in p.message


def test_overrides_are_typed_by_the_schema(tmp_path):
    path = write(tmp_path, GOOD)
    spec = load_spec(
        path,
        ["train.eps=1e-8", "train.batch_size=full", "model.layers.1.init=xavier", "name=2024"],
    )
    assert isinstance(spec.train.eps, float) and spec.train.eps == 1e-8
    assert spec.train.batch_size == "full"
    assert spec.model.layers[1].init == "xavier"
    assert spec.name == "2024"
    assert load_spec(path, ["model.layers.0.init=xavier"]).model.layers[0].init == "xavier"
    assert load_spec(path, ["numerics.dtype=float32"]).numerics.dtype == "float32"


def test_unknown_override_key_names_it_and_suggests(tmp_path):
    path = write(tmp_path, GOOD)
    with pytest.raises(SpecError) as info:
        load_spec(path, ["train.learnig_rate=0.1", "trian.steps=3"])
    assert str(info.value).splitlines() == [
        "--set train.learnig_rate=0.1: unknown key; did you mean 'learning_rate'?",
        "--set trian.steps=3: unknown key 'trian'; did you mean 'train'?",
    ]
    p = info.value.problems[0]
    assert (p.file, p.line, p.col, p.key) == ("--set", 0, 0, "train.learnig_rate")


def test_bad_override_values_and_items(tmp_path):
    path = write(tmp_path, GOOD)
    found = problems(path, ["train.steps=abc", "model.layers.7.units=3", "nokey"])
    assert [str(p) for p in found] == [
        "--set model.layers.7.units=3: model.layers has 2 entries, no entry 7",
        "--set nokey: expected KEY=VALUE, got 'nokey'",
        "--set train.steps=abc: expected a whole number at least 1, got 'abc'",
    ]


def test_parse_override():
    assert parse_override("train.eps=1e-8") == ("train.eps", "1e-8")
    assert parse_override(" train.shuffle = false") == ("train.shuffle", False)
    assert parse_override("name=a=b") == ("name", "a=b")
    with pytest.raises(SpecError):
        parse_override("train.steps")


@pytest.mark.parametrize(
    ("activation", "init"),
    [
        ("relu", "he"),
        ("leaky_relu", "he"),
        ("elu", "he"),
        ("sigmoid", "xavier"),
        ("linear", "xavier"),
    ],
)
def test_init_default_resolved_by_activation(activation, init):
    spec = spec_from_dict({"model": {"layers": [{"units": 5, "activation": activation}]}})
    assert spec.model.layers[0].init == init
    assert spec.resolved()["model"]["layers"][0]["init"] == init


def test_explicit_init_kept():
    spec = spec_from_dict(
        {"model": {"layers": [{"units": 5, "activation": "relu", "init": "normal"}]}}
    )
    assert spec.model.layers[0].init == "normal"


def test_softmax_not_last_is_an_error_at_that_layer(tmp_path):
    path = write(tmp_path, GOOD.replace("activation: relu", "activation: softmax"))
    (p,) = problems(path)
    assert p.key == "model.layers.0.activation" and p.line == 7
    assert "softmax is allowed on the last layer only" in p.message


@pytest.mark.parametrize(
    ("changes", "key", "words"),
    [
        (
            {"loss": "cross_entropy", "data.task": "classification"},
            "model.layers.1.activation",
            "softmax or linear",
        ),
        ({"loss": "bce", "data.task": "binary"}, "model.layers.1.activation", "sigmoid or linear"),
        ({"data.task": "random"}, "loss", "random_gradient"),
        (
            {"loss": "cross_entropy", "model.layers.1.activation": "softmax"},
            "data.task",
            "classification",
        ),
        (
            {"model.layers.1.units": 3, "data.outputs": 5},
            "data.outputs",
            "5 disagrees with the last layer's 3 units",
        ),
        ({"data.source": "npz"}, "data.path", "path"),
    ],
)
def test_cross_field_rules(tmp_path, changes, key, words):
    spec = load_spec(write(tmp_path, GOOD))
    with pytest.raises(SpecError) as info:
        spec.with_changes(changes)
    assert [p.key for p in info.value.problems] == [key]
    assert words in info.value.problems[0].message


@pytest.mark.parametrize(
    ("task", "loss", "activation", "units"),
    [("binary", "bce", "sigmoid", 1), ("classification", "cross_entropy", "softmax", 3)],
)
def test_omitted_outputs_follow_the_last_layer(tmp_path, task, loss, activation, units):
    text = GOOD.replace("task: regression", f"task: {task}").replace(
        "{units: 5, activation: tanh}", f"{{units: {units}, activation: {activation}}}"
    )
    spec = load_spec(write(tmp_path, f"{text}loss: {loss}\n"))
    assert spec.data.outputs == units
    assert spec.with_changes({"model.layers.1.units": units + 1}).data.outputs == units + 1


def test_outputs_that_disagree_with_one_unit_say_so_in_good_english():
    with pytest.raises(SpecError) as info:
        spec_from_dict({"data": {"outputs": 5}, "model": {"layers": [{"units": 1}]}})
    assert "5 disagrees with the last layer's 1 unit (" in str(info.value)


def test_explicit_outputs_that_disagree_are_reported_at_their_line(tmp_path):
    text = GOOD.replace("task: regression", "task: regression\n  outputs: 4")
    (p,) = problems(write(tmp_path, text))
    assert (p.key, p.line, p.col) == ("data.outputs", 5, 12)
    assert "4 disagrees with the last layer's 5 units (model.layers.1.units)" in p.message


def test_random_gradient_needs_no_matching_outputs():
    spec = spec_from_dict(
        {"data": {"task": "random"}, "model": {"layers": [{"units": 3}]}, "loss": "random_gradient"}
    )
    assert spec.model.layers[-1].units == 3


def test_csv_without_path_or_target(tmp_path):
    path = write(tmp_path, GOOD.replace("source: synthetic", "source: csv"))
    found = {p.key: p for p in problems(path)}
    assert set(found) == {"data.path", "data.target"}
    assert found["data.path"].line == 2  # missing: reported at the parent mapping
    spec = load_spec(path, ["data.path=data/train.csv", "data.target=y"])
    assert spec.resolve_path(spec.data.path) == tmp_path / "data" / "train.csv"


def test_line_of_walks_up_to_the_nearest_parent(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.line_of("train.learning_rate") == 10
    assert spec.line_of("train.steps") == 9  # not in the file: the line of train
    assert spec.line_of("model.layers.1.units") == 8
    assert spec.line_of("numerics.dtype") is None
    assert spec_from_dict({"model": {"layers": [{"units": 5}]}}).line_of("model") is None


def test_with_changes_returns_a_new_validated_spec(tmp_path):
    path = write(tmp_path, GOOD)
    spec = load_spec(path)
    changed = spec.with_changes(
        {"train.learning_rate": 0.5, "model.layers.1.activation": "sigmoid"}
    )
    assert changed.train.learning_rate == 0.5 and spec.train.learning_rate == 0.1
    assert changed.model.layers[1].init == "xavier"
    assert changed.path == path and changed.base_dir == tmp_path
    assert changed.line_of("train.learning_rate") == 10 and changed.name == "spec"
    relu_to_sigmoid = spec.with_changes({"model.layers.0.activation": "sigmoid"})
    assert relu_to_sigmoid.model.layers[0].init == "xavier"  # the default re-resolved
    with pytest.raises(SpecError) as info:
        spec.with_changes({"train.steps": 0})
    assert (
        str(info.value)
        == "--set train.steps=0: 0 is out of range; expected a whole number at least 1"
    )


def test_resolved_is_json_safe_with_defaults(tmp_path):
    import json

    resolved = load_spec(write(tmp_path, GOOD)).resolved()
    assert json.loads(json.dumps(resolved)) == resolved
    assert resolved["train"]["eps"] == 1e-8 and resolved["name"] == "spec"
    assert resolved["model"]["layers"][0]["init"] == "he"


def test_json_schema_has_properties_and_descriptions():
    schema = json_schema()
    assert set(schema["properties"]) >= {"data", "model", "loss", "numerics", "train", "check"}
    train = schema["$defs"]["TrainSpec"]["properties"]
    assert train["eps"]["minimum"] == 0 and train["eps"]["description"]
    assert all(p.get("description") for p in train.values())


def test_name_defaults_to_file_stem(tmp_path):
    assert load_spec(write(tmp_path, GOOD, "exploding-relu.yaml")).name == "exploding-relu"
    assert load_spec(write(tmp_path, "name: given\n" + GOOD)).name == "given"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("", 1, "empty"),
        ("- a\n- b\n", 1, "top level must be a mapping"),
        ("x: !!python/object:os.system {}\n", 1, "YAML error"),
        (GOOD + "seed: 4\n", 11, "duplicate key"),
    ],
)
def test_odd_files_are_spec_errors(tmp_path, text, line, words):
    (p,) = problems(write(tmp_path, text))
    assert p.line == line and words in p.message


def test_missing_file_and_directory(tmp_path):
    (p,) = problems(tmp_path / "nope.yaml")
    assert str(p) == f"{tmp_path / 'nope.yaml'}:1:1: no such file"
    (p,) = problems(tmp_path)
    assert "directory" in p.message


def test_merge_keys_and_aliases_load(tmp_path):
    text = "model:\n  layers:\n    - &hidden {units: 5, activation: relu}\n    - <<: *hidden\n      activation: linear\n"
    spec = load_spec(write(tmp_path, text))
    assert [la.activation for la in spec.model.layers] == ["relu", "linear"]


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_load(path):
    assert load_spec(path).name == path.stem
