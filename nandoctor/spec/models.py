"""The network spec: typed, documented configuration loaded from YAML (docs/spec.md is generated
from these models).

Every key has a type, a default, a range and a description. Loading keeps the YAML node positions,
so every problem - an unknown key, a value of the wrong type or out of range, a rule between keys -
is reported as ``file:line:col: key: message`` (yamllint's parsable format), all of them at once.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import reprlib
import types
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from nandoctor.diagnosis.catalogue import FAIL_ON_IDS
from nandoctor.engine.nn import ACTIVATIONS
from nandoctor.errors import UsageProblem
from nandoctor.spec.limits import size_problems
from nandoctor.spec.loading import YamlProblem, escape_controls, key_word, parse, read_text

Activation = Literal["linear", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "softmax"]
Init = Literal["normal", "xavier", "xavier_uniform", "he", "he_uniform", "uniform", "zeros"]
Source = Literal["synthetic", "csv", "npz"]
Task = Literal["regression", "classification", "binary", "random"]
Preprocess = Literal["none", "standardize", "minmax"]
LossName = Literal["mse", "mae", "huber", "cross_entropy", "bce", "random_gradient"]
Dtype = Literal["float64", "float32", "float16"]
Optimizer = Literal["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw", "adagrad"]
Norm = Literal["none", "batch", "layer"]
Schedule = Literal["constant", "step", "exponential", "cosine", "warmup"]
CheckId = Literal[FAIL_ON_IDS]  # nonfinite, or any warning id of the catalogue


def _f(default: Any, doc: str, **constraints: Any) -> Any:
    """A field with its default, its one-line description and its range (ge, gt, le, lt)."""
    return Field(default, description=doc, **constraints)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, coerce_numbers_to_str=True)

    @model_validator(mode="before")
    @classmethod
    def _whole_numbers(cls, data: Any) -> Any:
        """YAML 1.1 reads ``1e3`` as a string: an int field takes it when it is a whole number.
        And ``yes``/``on`` as true: a number field refuses booleans instead of reading 1."""
        if isinstance(data, dict):
            for name, info in cls.model_fields.items():
                v, tp = data.get(name), _unwrap(info.annotation)
                if tp in (int, float) and isinstance(v, bool):
                    data = {**data, name: str(v).lower()}
                elif tp is int and _whole(v) is not None:
                    data = {**data, name: _whole(v)}
        return data


class DataSpec(_Section):
    source: Source = _f("synthetic", "Where the data come from.")
    task: Task = _f("regression", "Synthetic only; random = N(0,1) inputs and no targets.")
    samples: int = _f(256, "Synthetic only: number of samples.", ge=1)
    features: int = _f(10, "Synthetic only: input features per sample.", ge=1)
    outputs: int | None = _f(
        None,
        "Synthetic only: targets (regression, binary) or classes (classification); "
        "when omitted, the last layer's units.",
        ge=1,
    )
    noise: float = _f(0.1, "Synthetic only: std of the noise added to targets.", ge=0)
    scale: float = _f(1.0, "Every input feature is multiplied by this (1000 = unscaled data).")
    path: str | None = _f(None, "csv | npz: the data file, relative to the spec.")
    target: str | list[str] | None = _f(None, "csv only: the target column, or a list of them.")
    nan_fraction: float = _f(0.0, "Fault injection: this share of inputs becomes NaN.", ge=0, le=1)
    preprocess: Preprocess = _f("none", "Input preprocessing, in float64 before the cast to dtype.")
    missing: Literal["keep", "drop_rows"] = _f(
        "keep", "keep: non-finite inputs/targets flow in; drop_rows: drop the rows holding them."
    )
    target_preprocess: Preprocess = _f(
        "none", "Regression targets' preprocessing, in float64 before the cast."
    )
    categorical: list[str] = _f([], "csv only: columns to one-hot (sorted distinct values).")

    @field_validator("target", mode="before")
    @classmethod
    def _target(cls, v: Any) -> Any:
        names = v if isinstance(v, list) else [v]
        if v is None or (names and all(isinstance(n, str | int | float) for n in names)):
            return v if v is None or isinstance(v, str) else [str(n) for n in names]
        raise ValueError(f"expected a column name or a non-empty list of them, got {_show(v)}")


class LayerSpec(_Section):
    units: int = Field(ge=1, description="Number of neurons in this layer.")
    activation: Activation = _f("linear", "Activation; softmax on the last layer only.")
    init: Init | None = _f(None, "Weight init; default he for relu/leaky_relu/elu, else xavier.")
    init_scale: float = _f(1.0, "Multiplies the initial weights.", gt=0)
    bias: float = _f(0.0, "Initial value of every bias.")
    norm: Norm = _f("none", "batch | layer normalization of z before the activation.")
    norm_eps: float = _f(1e-5, "Added to the variance under the norm's sqrt; 0 allowed.", ge=0)
    dropout: float = _f(0.0, "Inverted dropout: share of this layer's outputs zeroed.", ge=0, lt=1)
    use_bias: bool = _f(True, "false: no bias b (x @ W only).")

    @model_validator(mode="after")
    def _default_init(self) -> LayerSpec:
        if self.init is None:
            self.init = ACTIVATIONS[self.activation].default_init
        return self


class ModelSpec(_Section):
    layers: list[LayerSpec] = Field(min_length=1, description="One entry per weight layer.")
    weights: str | None = _f(None, "Optional .npz with W1, b1, W2, b2, ... to start from.")


class LossSpec(_Section):
    """The loss. ``loss: mse`` is short for ``loss: {name: mse}``."""

    name: LossName = _f("mse", "random_gradient = N(0,1) noise as the output gradient.")
    reduction: Literal["mean", "sum"] = _f("mean", "sum: the sum of the terms mean averages.")
    delta: float = _f(1.0, "huber only: where the quadratic turns linear.", gt=0)
    l2: float = _f(0.0, "Adds l2 * sum(W**2) over weight matrices to the loss.", ge=0)
    label_smoothing: float = _f(0.0, "cross_entropy only (as torch).", ge=0, le=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data


class NumericsSpec(_Section):
    dtype: Dtype = _f("float64", "Floating-point type of every array.")
    mode: Literal["stable", "naive"] = _f("stable", "naive = textbook formulas, unguarded.")
    master_dtype: Literal["float32", "float64"] | None = _f(
        None, "Mixed precision: weights and optimizer state in this dtype, forward in dtype."
    )
    loss_scale: Literal["dynamic"] | float | None = _f(
        None,
        "dynamic (torch GradScaler) or a fixed scale; a step with inf/NaN gradients is skipped.",
    )

    @field_validator("loss_scale", mode="before")
    @classmethod
    def _loss_scale(cls, v: Any) -> Any:
        if v is None or v == "dynamic":
            return v
        try:
            number = float(v) if not isinstance(v, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or not (0 < number < float("inf")):
            raise ValueError(f"expected dynamic, a number greater than 0 or null, got {_show(v)}")
        return number


class TrainSpec(_Section):
    """The training loop. The learning rate at step t (from 1) by ``schedule``: constant: lr;
    step: lr * lr_gamma ** floor((t - 1) / lr_step_size); exponential: lr * lr_gamma ** ((t - 1) /
    lr_step_size); cosine: anneals lr to 0 over train.steps; warmup: a linear ramp up to lr over
    warmup_steps, then constant."""

    steps: int = _f(500, "Number of optimizer steps.", ge=1)
    batch_size: int | Literal["full"] = _f(32, "Samples per step (at least 1), or 'full'.")
    shuffle: bool = _f(True, "Reshuffle the samples every epoch.")
    learning_rate: float = _f(0.01, "Base learning rate.", ge=0)
    optimizer: Optimizer = _f("sgd", "Update rule (as torch.optim).")
    momentum: float = _f(0.9, "momentum, nesterov: the velocity's decay.", ge=0, lt=1)
    beta1: float = _f(0.9, "adam: decay of the first moment.", ge=0, lt=1)
    beta2: float = _f(0.999, "adam, rmsprop: decay of the second moment.", ge=0, lt=1)
    eps: float = _f(1e-8, "adam(w), rmsprop, adagrad: added to the denominator; 0 allowed.", ge=0)
    weight_decay: float = _f(0.0, "L2 penalty added to the gradient (adamw: decoupled).", ge=0)
    amsgrad: bool = _f(False, "adam, adamw: divide by the running maximum of v.")
    clip_grad_norm: float | None = _f(None, "Bound on the global gradient L2 norm.", gt=0)
    clip_grad_value: float | None = _f(None, "Element-wise gradient bound.", gt=0)
    schedule: Schedule = _f("constant", "Learning-rate schedule; cosine anneals to 0 by the end.")
    lr_step_size: int = _f(100, "step/exponential: steps per factor of lr_gamma.", ge=1)
    lr_gamma: float = _f(0.1, "step/exponential: the decay factor per lr_step_size steps.", gt=0)
    warmup_steps: int = _f(100, "warmup: steps of the linear ramp up to the rate.", ge=1)

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() == "full":
            return "full"
        n = v if isinstance(v, int) and not isinstance(v, bool) else _whole(v)
        if n is None or n < 1:
            raise ValueError(f"expected a whole number at least 1 or 'full', got {_show(v)}")
        return n


class CheckSpec(_Section):
    fail_on: list[CheckId] = _f(["nonfinite"], "What `nandoctor check` fails on.")
    max_final_loss: float | None = _f(None, "Fail when the final loss is above this.")
    allow_nonfinite: bool = _f(
        False, "Pass a run that goes NaN/Inf (nonfinite is in every policy unless this is true)."
    )


class Spec(_Section):
    """One training run. Load with :func:`load_spec`; the path attributes come from the file."""

    name: str | None = _f(None, "Name of the run; defaults to the file's stem.")
    seed: int = _f(0, "One seed for every random choice (init, data, batches).", ge=0)
    data: DataSpec = Field(default_factory=DataSpec, description="The training data.")
    model: ModelSpec = Field(description="The dense feed-forward network.")
    loss: LossSpec = Field(
        default_factory=LossSpec, description="The loss: a name, or a mapping with its options."
    )
    numerics: NumericsSpec = Field(default_factory=NumericsSpec, description="dtype and formulas.")
    train: TrainSpec = Field(default_factory=TrainSpec, description="The training loop.")
    check: CheckSpec = Field(default_factory=CheckSpec, description="Policy for `nandoctor check`.")

    _origin: _Origin = PrivateAttr(default_factory=lambda: _Origin())
    _raw: dict | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _outputs_follow_the_model(self) -> Spec:
        """An omitted ``data.outputs`` is the last layer's width (an explicit one is checked)."""
        if self.data.outputs is None:
            self.data.outputs = self.model.layers[-1].units
        return self

    @property
    def path(self) -> Path | None:
        return self._origin.path

    @property
    def base_dir(self) -> Path:
        return self._origin.base_dir

    def resolve_path(self, p: str) -> Path:
        """A path from the spec, relative to the spec's folder unless absolute."""
        q = Path(p).expanduser()
        return q if q.is_absolute() else self.base_dir / q

    def paths_from(self, folder: Path) -> dict[str, str]:
        """The spec's relative file paths (``data.path``, ``model.weights``) rewritten for a
        spec written into ``folder``: dotted key -> the same file, relative to ``folder``.
        Only the ones that change; absolute paths stay as they are."""
        out = {}
        for key, p in (("data.path", self.data.path), ("model.weights", self.model.weights)):
            if not p or Path(p).expanduser().is_absolute():
                continue
            moved = Path(os.path.relpath(self.resolve_path(p).resolve(), folder.resolve()))
            if moved != Path(p):
                out[key] = moved.as_posix()
        return out

    def input_files(self) -> list[Path]:
        """The files a run of this spec reads: the spec itself, its data and its weights."""
        named = [self.data.path if self.data.source != "synthetic" else None, self.model.weights]
        return ([self.path] if self.path else []) + [self.resolve_path(p) for p in named if p]

    def overridden(self) -> dict[str, tuple[str, Any]]:
        """Each key set over the file (``--set``) -> (the KEY=VALUE item, its typed value)."""
        data, out = self.resolved(), {}
        for key, item in self._origin.overrides.items():
            value: Any = data
            for part in key.split("."):
                value = value[int(part)] if isinstance(value, list) else value.get(part)
            out[key] = (item, value)
        return out

    def problem_at(self, dotted_key: str, detail: str) -> Problem:
        """A problem with ``dotted_key``'s value, located as validation locates its own."""
        return self._origin.problem(dotted_key, detail)

    def line_of(self, dotted_key: str) -> int | None:
        """1-based line of ``dotted_key`` in the file, or of its nearest parent present there."""
        if self.path is None:
            return None
        key = self._origin.present(dotted_key)
        return self._origin.positions[key][0] if key else None

    def capped(self, steps: int | None) -> Spec:
        """This spec with at most ``steps`` training steps (a cap never extends the budget)."""
        if steps is None or steps >= self.train.steps:
            return self
        return self.with_changes({"train.steps": steps})

    def with_changes(self, changes: Mapping[str, Any]) -> Spec:
        """A new validated spec with dotted-key ``changes`` applied (raises SpecError)."""
        raw = copy.deepcopy(self._raw if self._raw is not None else self.model_dump())
        origin = copy.copy(self._origin)
        origin.overrides = dict(origin.overrides)
        problems = [_apply(raw, k, v, f"{k}={v}", origin) for k, v in changes.items()]
        return _build(raw, origin, [p for p in problems if p])

    def resolved(self) -> dict:
        """Every key with defaults filled in, as JSON-safe data."""
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int  # 1-based; 0 when there is no position (overrides, a missing file)
    col: int
    key: str  # dotted, "" for the whole file
    message: str  # starts with the key: "train.steps: 0 is out of range ..."
    override: str = ""  # the KEY=VALUE item of --set (or with_changes) this problem is about

    def __str__(self) -> str:
        if self.override:
            item = escape_controls(self.override)
            return f"--set {item}: {self.message.removeprefix(self.key + ': ')}"
        where = f"{self.file}:{self.line}:{self.col}" if self.line else self.file
        return f"{where}: {self.message}"


class SpecError(UsageProblem):
    """An invalid spec; ``problems`` lists everything found, ``str()`` one line per problem."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(map(str, self.problems)))


@dataclass
class _Origin:
    """Where a spec came from: file, folder, YAML positions and the overrides applied."""

    file: str = "<dict>"
    path: Path | None = None
    base_dir: Path = field(default_factory=Path.cwd)
    positions: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)  # key, value
    overrides: dict[str, str] = field(default_factory=dict)  # dotted key -> "key=value"

    def present(self, key: str) -> str:
        while key and key not in self.positions:
            key = key.rpartition(".")[0]
        return key

    def problem(self, key: str, detail: str, at_key: bool = False) -> Problem:
        message = f"{key}: {detail}" if key else detail
        for k, item in self.overrides.items():
            if key == k or key.startswith(k + "."):
                if not item.partition("=")[2].strip():  # --set KEY= gives no value at all
                    message += f"; give one as --set {k}=VALUE"
                return Problem("--set", 0, 0, key, message, item)
        found = self.present(key)
        kl, kc, vl, vc = self.positions.get(found, (0, 0, 0, 0))
        exact = found == key and not at_key
        return Problem(self.file, vl if exact else kl, vc if exact else kc, key, message)


def json_schema() -> dict:
    """The JSON Schema of a spec, with a description for every key."""
    schema = Spec.model_json_schema()
    loss = schema["properties"]["loss"]
    names = {"type": "string", "enum": list(get_args(LossName))}
    loss["anyOf"] = [names, {"$ref": loss.pop("$ref")}]  # `loss: mse` is `loss: {name: mse}`
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def parse_override(item: str) -> tuple[str, Any]:
    """``"train.eps=1e-8"`` -> ``("train.eps", "1e-8")``: the value as YAML, typed later by the schema."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise SpecError([Problem("--set", 0, 0, "", f"expected KEY=VALUE, got {item!r}", item)])
    if not text.strip():
        return key.strip(), None
    try:
        return key.strip(), parse(text).data
    except YamlProblem as e:
        msg = f"{key.strip()}: cannot read the value {_show(text)} as YAML ({e.message})"
        raise SpecError([Problem("--set", 0, 0, key.strip(), msg, item)]) from None


def spec_from_dict(data: dict, source: str = "<dict>", base_dir: Path | None = None) -> Spec:
    """Validate plain data as a spec (no file positions); raises SpecError."""
    origin = _Origin(file=source, base_dir=base_dir or Path.cwd())
    if not isinstance(data, dict):
        raise SpecError([Problem(source, 0, 0, "", "the spec must be a mapping of keys")])
    return _build(copy.deepcopy(data), origin, [])


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> Spec:
    """Load, override (``"dotted.key=value"``) and validate a spec file; raises SpecError."""
    path = Path(path)
    origin = _Origin(file=str(path), path=path, base_dir=path.parent)
    raw, problems = _read_yaml(path, origin)
    for item in overrides:
        try:
            key, value = parse_override(item)
        except SpecError as e:
            problems += e.problems
            continue
        problems.append(_apply(raw, key, value, item.strip(), origin))
    spec = _build(raw, origin, [p for p in problems if p])
    if spec.name is None:
        spec.name = path.stem
    return spec


def _read_yaml(path: Path, origin: _Origin) -> tuple[dict, list[Problem]]:
    try:
        doc = parse(read_text(path))
    except YamlProblem as e:
        raise SpecError([Problem(origin.file, e.line, e.col, "", e.message)]) from None
    if not isinstance(doc.data, dict):
        raise SpecError(
            [
                Problem(
                    origin.file,
                    1,
                    1,
                    "",
                    f"the top level must be a mapping (data:, model:, ...), not {_show(doc.data)}",
                )
            ]
        )
    origin.positions.update(doc.positions)
    return doc.data, [
        origin.problem(k, "duplicate key; give each key once", True) for k in doc.duplicates
    ]


def _apply(raw: dict, key: str, value: Any, item: str, origin: _Origin) -> Problem | None:
    """Set dotted ``key`` in ``raw``; a Problem when the key is not in the schema or cannot be set."""
    origin.overrides[key] = item
    parts = key.split(".")
    try:
        _schema_at(parts)
    except ValueError as e:
        return origin.problem(key, str(e))
    cur: Any = raw
    for i, part in enumerate(parts):
        here = ".".join(parts[:i]) or "the spec"
        if isinstance(cur, list):
            if int(part) >= len(cur):
                return origin.problem(key, f"{here} has {len(cur)} entries, no entry {part}")
            part = int(part)
        elif not isinstance(cur, dict):
            return origin.problem(key, f"{here} is not a mapping in the spec")
        short = _SHORTHANDS.get(_schema_at(parts[: i + 1]))
        if i == len(parts) - 1:
            if short and isinstance(cur.get(part), dict) and not isinstance(value, dict):
                cur[part] = {**cur[part], short: value}  # loss=huber keeps the other keys
            else:
                cur[part] = value
        elif isinstance(cur, dict) and part not in cur:
            cur[part] = [] if parts[i + 1].isdigit() else {}
        elif short and not isinstance(cur[part], dict | list):
            cur[part] = {short: cur[part]}  # loss.l2=... on `loss: mse`
        # A YAML alias shares one dict between places (- *hidden): copy it on this path, so a
        # change to model.layers.0 changes that layer alone (as `fix` then writes it).
        if isinstance(cur[part], dict | list):
            cur[part] = copy.copy(cur[part])
        cur = cur[part]
    return None


# Sections that may be written as one value: ``loss: mse`` is ``loss: {name: mse}``.
_SHORTHANDS = {LossSpec: "name"}


def _build(raw: dict, origin: _Origin, problems: list[Problem]) -> Spec:
    spec = None
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as e:
        problems += [origin.problem(*_explain(err)) for err in e.errors()]
    except RecursionError:
        problems.append(origin.problem("", "the spec refers to itself (recursive YAML aliases)"))
    if spec is not None:
        problems += [origin.problem(k, m) for k, m in _cross_checks(spec)]
    if problems:
        unique = dict.fromkeys(problems)
        raise SpecError(sorted(unique, key=lambda p: (bool(p.override), p.line, p.col)))
    spec._origin, spec._raw = origin, raw
    if spec.name is None and origin.path is not None:
        spec.name = origin.path.stem
    return spec


def _cross_checks(s: Spec) -> list[tuple[str, str]]:
    """Rules between keys, as (dotted key at fault, message)."""
    out: list[tuple[str, str]] = []
    layers, d, loss = s.model.layers, s.data, s.loss.name
    n, last, act = len(layers), f"model.layers.{len(layers) - 1}", layers[-1].activation
    for i, layer in enumerate(layers[:-1]):
        if layer.activation == "softmax":
            msg = f"softmax is allowed on the last layer only (this is layer {i + 1} of {n})"
            out.append((f"model.layers.{i}.activation", msg))
    if layers[-1].dropout:
        msg = "dropout on the last layer would drop the outputs the loss reads; put it on a hidden layer"
        out.append((f"{last}.dropout", msg))
    need = {"cross_entropy": "softmax", "bce": "sigmoid"}.get(loss)
    if need and act not in (need, "linear"):
        msg = f"loss {loss} needs the last layer's activation {need} or linear (logits), not {act}"
        out.append((f"{last}.activation", msg))
    out += _loss_checks(s.loss) + _schedule_checks(s.train)
    if d.task == "random" and loss != "random_gradient":
        msg = f"data.task random has no targets: the loss must be random_gradient, not {loss}"
        out.append(("loss", msg))
    if d.target_preprocess != "none" and loss in ("cross_entropy", "bce"):
        msg = f"applies to regression targets; loss {loss} needs its class labels as they are"
        out.append(("data.target_preprocess", msg))
    if d.categorical and d.source != "csv":
        out.append(("data.categorical", f"applies to csv data only, not source {d.source}"))
    num = s.numerics
    if num.master_dtype and _WIDTH[num.master_dtype] < _WIDTH[num.dtype]:
        msg = f"{num.master_dtype} is narrower than numerics.dtype {num.dtype}; use a wider one"
        out.append(("numerics.master_dtype", msg))
    if d.source == "synthetic":
        want = {"cross_entropy": "classification", "bce": "binary"}.get(loss)
        if want and d.task != want:
            out.append(("data.task", f"loss {loss} needs task {want}, not {d.task}"))
        if loss != "random_gradient" and layers[-1].units != d.outputs:
            msg = (
                f"{d.outputs} disagrees with the last layer's {_count(layers[-1].units, 'unit')} "
                f"({last}.units); make them equal, or leave data.outputs out to follow the model"
            )
            out.append(("data.outputs", msg))
    else:
        if not d.path:
            out.append(("data.path", f"source {d.source} needs the path of the data file"))
        if d.source == "csv" and not d.target:
            out.append(("data.target", "source csv needs the target column's name (or a list)"))
    return out + size_problems(s)


_WIDTH = {"float16": 16, "float32": 32, "float64": 64}


def _loss_checks(loss: LossSpec) -> list[tuple[str, str]]:
    out = []
    if loss.label_smoothing and loss.name != "cross_entropy":
        out.append(("loss.label_smoothing", f"applies to cross_entropy only, not {loss.name}"))
    if loss.delta != LossSpec.model_fields["delta"].default and loss.name != "huber":
        out.append(("loss.delta", f"applies to huber only, not {loss.name}"))
    return out


# schedule keys -> the schedules that read them: one set for another schedule is not used, so
# the run would not do what the spec seems to say (a warmup that never happens)
_SCHEDULE_KEYS = {
    "lr_step_size": ("step", "exponential"),
    "lr_gamma": ("step", "exponential"),
    "warmup_steps": ("warmup",),
}


def _schedule_checks(train: TrainSpec) -> list[tuple[str, str]]:
    out = []
    for key, schedules in _SCHEDULE_KEYS.items():
        unused = train.schedule not in schedules
        if unused and getattr(train, key) != TrainSpec.model_fields[key].default:
            names = " or ".join(schedules)
            msg = f"applies to schedule {names} only, not {train.schedule}: set train.schedule"
            out.append((f"train.{key}", f"{msg} or remove it"))
    return out


_NOUNS = {"int": "a whole number", "float": "a number", "bool": "true or false"}
_NOUNS |= {"string": "a string", "list": "a list", "model": "a mapping", "dict": "a mapping"}
_RANGE = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _explain(err: dict) -> tuple[str, str, bool]:
    """A pydantic error as (dotted key, plain message, located at the key rather than the value)."""
    loc = [str(p) for p in err["loc"]]
    if err["type"] == "invalid_key":  # a key that is not a string: pydantic's loc says str(key)
        loc[-1] = key_word(err.get("input"))  # or 1 for True; the key itself says null, true
    key, kind, got = ".".join(loc), err["type"], _show(err.get("input"))
    if kind in ("extra_forbidden", "invalid_key"):
        fields = list(getattr(_type_at(loc[:-1]), "model_fields", {}))
        return key, "unknown key" + _suggest(loc[-1], fields, "keys"), True
    if kind == "missing":
        info = _field_at(loc)
        return key, "required key missing" + (f" ({info.description})" if info else ""), False
    if err.get("input", ...) is None and kind not in ("extra_forbidden", "invalid_key"):
        return key, f"needs a value ({_allowed(loc, kind)}); it is empty (null)", False
    if kind == "literal_error":
        choices = [str(c) for c in get_args(_type_at(loc))]
        word = str(err.get("input"))
        return key, f"{got} is not one of {', '.join(choices)}{_suggest(word, choices)}", False
    if kind == "finite_number":
        return key, f"{got} is not a finite number", False
    if kind in _RANGE:
        return key, f"{got} is out of range; expected {_expected(loc)}", False
    if kind == "too_short":
        return key, f"needs at least {err['ctx']['min_length']} entry", False
    noun = next((n for prefix, n in _NOUNS.items() if kind.startswith(prefix + "_")), None)
    if noun:
        return key, f"expected {_expected(loc) or noun}, got {got}", False
    return key, err["msg"].removeprefix("Value error, "), False


def _allowed(loc: list[str], kind: str) -> str:
    """What the field at ``loc`` takes, in words, for a value that is missing."""
    if kind == "literal_error":
        return "one of " + ", ".join(str(c) for c in get_args(_type_at(loc)))
    noun = next((n for prefix, n in _NOUNS.items() if kind.startswith(prefix + "_")), None)
    return _expected(loc) or noun or "see nandoctor schema --markdown"


def _expected(loc: list[str]) -> str:
    """The allowed values of the field at ``loc`` in words: 'a number at least 0, or null'."""
    info = _field_at(loc)
    tp = _unwrap(info.annotation) if info else None
    noun = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}
    if tp not in noun:
        return ""
    words = {"ge": "at least", "gt": "greater than", "le": "at most", "lt": "less than"}
    limits = {a: getattr(m, a) for m in info.metadata for a in words if hasattr(m, a)}
    if "ge" in limits and "le" in limits:
        text = f"{noun[tp]} from {limits['ge']} to {limits['le']}"
    else:
        text = " and ".join([noun[tp]] + [f"{words[a]} {b}" for a, b in limits.items()])
        text = text.replace(" and ", " ", 1)
    return text + (" (or null)" if tp is not info.annotation else "")


def _schema_at(parts: list[str]) -> Any:
    """The schema type at a dotted path (an index steps into a list's item type); ValueError
    naming the first part that is not in the schema."""
    tp: Any = Spec
    for i, part in enumerate(parts):
        here = ".".join(parts[:i])
        if get_origin(tp) is list:
            if not part.isdigit():
                raise ValueError(f"{here} is a list; address an entry as {here}.0")
            tp = get_args(tp)[0]
        elif isinstance(tp, type) and issubclass(tp, BaseModel):
            if part not in tp.model_fields:
                what = "unknown key" if i == len(parts) - 1 else f"unknown key {part!r}"
                raise ValueError(what + _suggest(part, list(tp.model_fields), "keys"))
            tp = tp.model_fields[part].annotation
        else:
            raise ValueError(f"{here} is a single value, it has no keys")
        tp = _unwrap(tp)
    return tp


def _type_at(loc: list[str]) -> Any:
    try:
        return _schema_at(loc)
    except ValueError:
        return None


def _field_at(loc: list[str]) -> Any:
    parent = _type_at(loc[:-1])
    return getattr(parent, "model_fields", {}).get(loc[-1]) if loc else None


def _unwrap(tp: Any) -> Any:
    """``X | None`` -> ``X``; anything else unchanged."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _suggest(word: str, choices: list[str], what: str = "") -> str:
    """'; did you mean X?' for the closest choice (ties go to the nearest number: float8 ->
    float16), else the valid choices when ``what`` names them."""

    typed = _folded(word)

    def score(c: str) -> tuple[float, int]:
        a, b = re.sub(r"\D", "", word), re.sub(r"\D", "", c)
        distance = abs(int(a) - int(b)) if a and b else 0
        return difflib.SequenceMatcher(None, typed, _folded(c)).ratio(), -distance

    if len(word) > 100:  # no similarity search against an unbounded value
        return f"; valid {what}: {', '.join(choices)}" if what else ""
    best = max(choices, key=score, default=None)
    if best is not None and score(best)[0] >= 0.7:
        return f"; did you mean {best!r}?"
    return f"; valid {what}: {', '.join(choices)}" if what else ""


def _folded(word: str) -> str:
    """``word`` compared as typed by hand: case and accents dropped (``'RéLU'`` -> ``'relu'``),
    in whichever Unicode form it came (a composed ``é`` is one character, ``e`` + U+0301 two)."""
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _whole(value: Any) -> int | None:
    """``"1e3"`` -> 1000; None for anything that is not a string holding a whole number."""
    try:
        number = float(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return int(number) if number is not None and number.is_integer() else None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict = 2, 4, 4
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 36


def _show(value: Any) -> str:
    """A value for a message: never the whole of an unbounded value (reprlib stops early)."""
    text = _SHORT.repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
