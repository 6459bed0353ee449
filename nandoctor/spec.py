"""The network spec: typed, documented, validated (CONTRACT §1).

The YAML is composed with PyYAML's safe loader so every node keeps its line and column; pydantic
validates the plain data; each pydantic error is mapped back to the node it concerns and reported
as ``file:line:col: message`` (yamllint's parsable format), every problem at once, with the closest
valid key or value suggested.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

Activation = Literal["linear", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "softmax"]
Init = Literal["normal", "xavier", "xavier_uniform", "he", "he_uniform", "uniform", "zeros"]
PolicyId = Literal[
    "nonfinite",
    "saturation",
    "vanishing_gradient",
    "dead_relu",
    "exploding_gradient",
    "loss_not_decreasing",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class DataSpec(_Model):
    source: Literal["synthetic", "csv", "npz"] = Field(
        "synthetic", description="where the data come from"
    )
    task: Literal["regression", "classification", "binary", "random"] = Field(
        "regression", description="synthetic only; random = N(0,1) inputs, no targets"
    )
    samples: int = Field(256, ge=1, description="synthetic only: rows")
    features: int = Field(10, ge=1, description="synthetic only: input width")
    outputs: int = Field(5, ge=1, description="synthetic only: targets (regression) or classes")
    noise: float = Field(0.1, ge=0, description="synthetic only: target noise std")
    scale: float = Field(
        1.0, allow_inf_nan=False, description="every input feature is multiplied by this"
    )
    path: str | None = Field(None, description="csv | npz: the file, relative to the spec")
    target: str | list[str] | None = Field(None, description="csv only: target column name(s)")
    nan_fraction: float = Field(
        0.0, ge=0, le=1, description="fault injection: share of inputs made NaN"
    )
    preprocess: Literal["none", "standardize", "minmax"] = Field(
        "none", description="input preprocessing"
    )


class LayerSpec(_Model):
    units: int = Field(ge=1, description="neurons in this layer")
    activation: Activation = Field("linear", description="the layer's activation")
    init: Init | None = Field(
        None, description="default: he for relu/leaky_relu/elu, xavier otherwise"
    )
    init_scale: float = Field(
        1.0, gt=0, allow_inf_nan=False, description="multiplies the initial weights"
    )
    bias: float = Field(0.0, allow_inf_nan=False, description="initial bias value")

    @model_validator(mode="after")
    def _default_init(self):
        if self.init is None:
            self.init = "he" if self.activation in ("relu", "leaky_relu", "elu") else "xavier"
        return self


class ModelSpec(_Model):
    layers: list[LayerSpec] = Field(min_length=1, description="one entry per weight layer")
    weights: str | None = Field(None, description="optional .npz with W1, b1, W2, b2, ...")


class NumericsSpec(_Model):
    dtype: Literal["float64", "float32", "float16"] = Field(
        "float64", description="every array's dtype"
    )
    mode: Literal["stable", "naive"] = Field("stable", description="naive reproduces textbook code")


class TrainSpec(_Model):
    steps: int = Field(500, ge=1, description="training steps")
    batch_size: int | Literal["full"] = Field(32, description="rows per step, or full")
    shuffle: bool = Field(True, description="a fresh seeded permutation each epoch")
    learning_rate: float = Field(0.01, ge=0, allow_inf_nan=False, description="base learning rate")
    optimizer: Literal["sgd", "momentum", "rmsprop", "adam"] = Field(
        "sgd", description="update rule"
    )
    momentum: float = Field(0.9, ge=0, description="momentum only")
    beta1: float = Field(0.9, ge=0, lt=1, description="adam")
    beta2: float = Field(0.999, ge=0, lt=1, description="adam, rmsprop (decay)")
    eps: float = Field(1e-8, ge=0, description="adam, rmsprop; 0 is allowed")
    weight_decay: float = Field(0.0, ge=0, description="added to the gradient, as torch.optim")
    clip_grad_norm: float | None = Field(None, gt=0, description="global L2 norm bound")
    clip_grad_value: float | None = Field(None, gt=0, description="element-wise bound")
    schedule: Literal["constant", "step", "exponential", "cosine", "warmup"] = Field(
        "constant", description="learning-rate schedule"
    )
    lr_step_size: int = Field(
        100, ge=1, description="step/exponential: steps per factor of lr_gamma"
    )
    lr_gamma: float = Field(0.1, gt=0, description="step/exponential: decay factor")
    warmup_steps: int = Field(100, ge=1, description="warmup: steps of the linear ramp")

    @model_validator(mode="after")
    def _batch(self):
        if isinstance(self.batch_size, int) and self.batch_size < 1:
            raise ValueError("batch_size: must be >= 1 or 'full'")
        return self


class CheckSpec(_Model):
    fail_on: list[PolicyId] = Field(
        default_factory=lambda: ["nonfinite"], description="what fails check"
    )
    max_final_loss: float | None = Field(None, description="fail when the final loss is above this")


class Spec(_Model):
    name: str | None = Field(None, description="defaults to the file's stem")
    seed: int = Field(0, description="one seed drives every random choice")
    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelSpec
    loss: Literal["mse", "cross_entropy", "bce", "random_gradient"] = Field(
        "mse", description="the loss"
    )
    numerics: NumericsSpec = Field(default_factory=NumericsSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    check: CheckSpec = Field(default_factory=CheckSpec)

    _path: Path | None = PrivateAttr(None)
    _lines: dict = PrivateAttr(default_factory=dict)
    _raw: dict = PrivateAttr(default_factory=dict)

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def base_dir(self) -> Path:
        return self._path.parent if self._path else Path.cwd()

    def resolve_path(self, p: str) -> Path:
        q = Path(p)
        return q if q.is_absolute() else self.base_dir / q

    def line_of(self, dotted: str) -> int | None:
        """1-based line of ``dotted`` in the file, or of its nearest parent that is there."""
        parts = dotted.split(".") if dotted else []
        while parts:
            pos = self._lines.get(tuple(parts))
            if pos:
                return pos[0]
            parts.pop()
        return None

    def with_changes(self, changes: Mapping[str, Any]) -> Spec:
        """A new validated spec with dotted-key ``changes`` applied (raises SpecError)."""
        raw = _deepcopy(self._raw)
        problems = [_set_dotted(raw, k, v) for k, v in changes.items()]
        problems = [p for p in problems if p]
        if problems:
            raise SpecError([Problem("--set", 0, 0, k, m) for k, m in problems])
        return _validate(raw, str(self._path or "<spec>"), self._lines, self._path)

    def resolved(self) -> dict:
        return self.model_dump(mode="json")


def _cross_checks(spec: Spec) -> list[tuple[tuple, str]]:
    """Rules across keys: (location, message)."""
    out = []
    layers = spec.model.layers
    for i, layer in enumerate(layers[:-1]):
        if layer.activation == "softmax":
            out.append(
                (("model", "layers", i, "activation"), "softmax is allowed on the last layer only")
            )
    last = layers[-1].activation
    if spec.loss == "cross_entropy" and last not in ("softmax", "linear"):
        out.append(
            (
                ("loss",),
                f"cross_entropy needs the last layer's activation softmax or linear, not {last}",
            )
        )
    if spec.loss == "bce" and last not in ("sigmoid", "linear"):
        out.append(
            (("loss",), f"bce needs the last layer's activation sigmoid or linear, not {last}")
        )
    d = spec.data
    if d.source == "synthetic":
        if d.task == "random" and spec.loss != "random_gradient":
            out.append((("data", "task"), "task random has no targets: use loss random_gradient"))
        if spec.loss == "cross_entropy" and d.task != "classification":
            out.append((("data", "task"), f"cross_entropy needs task classification, not {d.task}"))
        if spec.loss == "bce" and d.task != "binary":
            out.append((("data", "task"), f"bce needs task binary, not {d.task}"))
        if spec.loss != "random_gradient" and layers[-1].units != d.outputs:
            out.append(
                (
                    ("model", "layers", len(layers) - 1, "units"),
                    f"the last layer has {layers[-1].units} units but data.outputs is {d.outputs}",
                )
            )
    else:
        if not d.path:
            out.append((("data", "source"), f"source {d.source} needs data.path"))
        if d.source == "csv" and not d.target:
            out.append(
                (("data", "source"), "source csv needs data.target (the target column name)")
            )
    return out


# ------------------------------------------------------------------ errors
@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    col: int
    key: str
    message: str

    def __str__(self) -> str:
        if self.file == "--set":
            return f"--set {self.key}: {self.message}"
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class SpecError(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _dotted(loc: Sequence) -> str:
    return ".".join(str(p) for p in loc)


def _fields(model: type[BaseModel], loc: Sequence) -> type[BaseModel] | None:
    """The model class at ``loc`` (for suggesting keys)."""
    for part in loc:
        if isinstance(part, int):
            continue
        f = model.model_fields.get(part)
        if f is None:
            return None
        ann = f.annotation
        for cand in (ann, *getattr(ann, "__args__", ())):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                model = cand
                break
        else:
            return None
    return model


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def _message(err: dict) -> tuple[tuple, str, bool]:
    """(location, message, point-at-key?) for one pydantic error."""
    loc = tuple(
        p
        for p in err["loc"]
        if not (
            isinstance(p, str)
            and (
                "[" in p
                or p in ("int", "str", "float", "list[str]", "literal['full']", "function-after")
            )
        )
    )
    key = _dotted(loc)
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        model = _fields(Spec, loc[:-1])
        choices = list(model.model_fields) if model else []
        return (
            loc,
            f"{key}: unknown key{_suggest(loc[-1], choices)}"
            + ("" if _suggest(loc[-1], choices) else f" (valid: {', '.join(choices)})"),
            True,
        )
    if kind == "missing":
        return loc, f"{key}: required key is missing", False
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        choices = [
            c.strip().strip("'") for c in expected.replace(" or ", ",").split(",") if c.strip()
        ]
        return (
            loc,
            f"{key}: {value!r} is not one of {', '.join(choices)}{_suggest(value, choices)}",
            False,
        )
    bounds = {
        "greater_than": "greater than {gt}",
        "greater_than_equal": "at least {ge}",
        "less_than": "less than {lt}",
        "less_than_equal": "at most {le}",
        "too_short": "at least {min_length} item(s)",
    }
    if kind in bounds:
        return loc, f"{key}: {value!r} is out of range: must be {bounds[kind].format(**ctx)}", False
    words = {
        "int_parsing": "a whole number",
        "int_type": "a whole number",
        "int_from_float": "a whole number",
        "float_parsing": "a number",
        "float_type": "a number",
        "finite_number": "a finite number",
        "bool_parsing": "true or false",
        "bool_type": "true or false",
        "string_type": "a string",
        "list_type": "a list",
        "model_type": "a mapping of keys",
        "dict_type": "a mapping of keys",
        "model_attributes_type": "a mapping of keys",
    }
    if kind in words:
        return loc, f"{key}: {value!r} is not {words[kind]}", False
    msg = err.get("msg", "invalid").removeprefix("Value error, ")
    return loc, f"{key}: {msg}" if key else msg, False


def _validate(raw: dict, file: str, lines: dict, path: Path | None) -> Spec:
    problems: list[Problem] = []

    def where(loc: tuple, at_key: bool) -> tuple[int, int]:
        loc = tuple(loc)
        while loc:
            pos = lines.get(loc)
            if pos:
                return (pos[0], pos[1]) if at_key or len(pos) < 4 else (pos[2], pos[3])
            loc = loc[:-1]
        return (1, 1)

    try:
        spec = Spec.model_validate(raw)
    except ValidationError as e:
        by_loc: dict[tuple, list] = {}
        for err in e.errors():
            loc, msg, at_key = _message(err)
            by_loc.setdefault(loc, []).append((msg, at_key))
        for loc, found in by_loc.items():
            msgs = list(dict.fromkeys(m for m, _ in found))
            if len(msgs) > 1:  # a union (batch_size: int | "full"): one sentence for all options
                tails = [m.split(" is not ", 1)[-1] for m in msgs]
                msgs = [msgs[0].split(" is not ", 1)[0] + " is not " + " or ".join(tails)]
            line, col = where(loc, found[0][1])
            problems.append(Problem(file, line, col, _dotted(loc), msgs[0]))
        raise SpecError(sorted(problems, key=lambda p: (p.line, p.col))) from None
    for loc, msg in _cross_checks(spec):
        line, col = where(loc, False)
        problems.append(Problem(file, line, col, _dotted(loc), f"{_dotted(loc)}: {msg}"))
    if problems:
        raise SpecError(sorted(problems, key=lambda p: (p.line, p.col)))
    spec._path = path
    spec._lines = lines
    spec._raw = raw
    if spec.name is None:
        spec.name = path.stem if path else "spec"
    return spec


# ------------------------------------------------------------------ YAML with positions
def _build(node, loc: tuple, lines: dict):
    """Plain Python data from a composed YAML node, recording (key line, key col, value line,
    value col) per location."""
    if isinstance(node, yaml.MappingNode):
        out = {}
        for k, v in node.value:
            key = k.value
            lines[loc + (key,)] = (
                k.start_mark.line + 1,
                k.start_mark.column + 1,
                v.start_mark.line + 1,
                v.start_mark.column + 1,
            )
            out[key] = _build(v, loc + (key,), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        out = []
        for i, v in enumerate(node.value):
            lines[loc + (i,)] = (v.start_mark.line + 1, v.start_mark.column + 1)
            out.append(_build(v, loc + (i,), lines))
        return out
    return yaml.SafeLoader(" ").construct_object(node, deep=True)


def _set_dotted(raw: dict, dotted: str, value: Any) -> tuple[str, str] | None:
    """Set ``dotted`` in ``raw``; (key, message) if the path cannot exist."""
    parts = dotted.split(".")
    node: Any = raw
    model: type[BaseModel] | None = Spec
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                return dotted, f"no list item {part!r} (there are {len(node)})"
            if last:
                node[int(part)] = value
                return None
            node = node[int(part)]
            continue
        if model is not None and part not in model.model_fields:
            return dotted, f"unknown key{_suggest(part, list(model.model_fields))}"
        sub = _fields(model, [part]) if model is not None else None
        if last:
            node[part] = value
            return None
        if part == "layers" and model is ModelSpec:
            sub = LayerSpec
        if not isinstance(node.get(part), dict | list):
            node[part] = {}
        node, model = node[part], sub
    return None


def parse_override(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise SpecError(
            [Problem("--set", 0, 0, item, "expected KEY=VALUE, e.g. train.learning_rate=0.05")]
        )
    return key.strip(), yaml.safe_load(value) if value.strip() else None


def _deepcopy(raw):
    import copy

    return copy.deepcopy(raw)


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> Spec:
    """Load, type and validate the spec at ``path`` with ``--set`` overrides applied."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError([Problem(file, 1, 1, "", "no such file")]) from None
    except IsADirectoryError:
        raise SpecError([Problem(file, 1, 1, "", "is a folder, not a spec file")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError([Problem(file, 1, 1, "", f"cannot read: {e}")]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = getattr(e, "problem", None) or str(e)
        raise SpecError([Problem(file, line, col, "", f"YAML syntax error: {what}")]) from None
    if node is None:
        raise SpecError(
            [Problem(file, 1, 1, "", "the spec is empty; it needs at least model.layers")]
        )
    if not isinstance(node, yaml.MappingNode):
        raise SpecError(
            [Problem(file, 1, 1, "", "the spec must be a mapping of keys (data:, model:, ...)")]
        )
    lines: dict = {}
    try:
        raw = _build(node, (), lines)
    except yaml.YAMLError as e:
        raise SpecError([Problem(file, 1, 1, "", f"YAML error: {e}")]) from None
    problems = []
    for item in overrides:
        key, value = parse_override(item)
        bad = _set_dotted(raw, key, value)
        if bad:
            problems.append(Problem("--set", 0, 0, item, bad[1]))
    if problems:
        raise SpecError(problems)
    return _validate(raw, file, lines, path.resolve() if path.is_absolute() else path)


def spec_from_dict(data: dict, source: str = "<dict>") -> Spec:
    return _validate(_deepcopy(data), source, {}, None)


def json_schema() -> dict:
    return Spec.model_json_schema()
