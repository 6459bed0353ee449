"""The network spec: typed, documented configuration loaded from YAML (CONTRACT section 1).

Every key has a type, a default, a range and a description. Loading keeps the YAML node positions,
so every problem - an unknown key, a value of the wrong type or out of range, a rule between keys -
is reported as ``file:line:col: key: message`` (yamllint's parsable format), all of them at once.
"""

from __future__ import annotations

import copy
import difflib
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

Activation = Literal["linear", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "softmax"]
Init = Literal["normal", "xavier", "xavier_uniform", "he", "he_uniform", "uniform", "zeros"]
CheckId = Literal[
    "nonfinite",
    "saturation",
    "vanishing_gradient",
    "dead_relu",
    "exploding_gradient",
    "loss_not_decreasing",
]
RELU_FAMILY = ("relu", "leaky_relu", "elu")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, coerce_numbers_to_str=True)


class DataSpec(_Section):
    source: Literal["synthetic", "csv", "npz"] = Field(
        "synthetic", description="Where the data come from."
    )
    task: Literal["regression", "classification", "binary", "random"] = Field(
        "regression", description="Synthetic task; random = N(0,1) inputs and no targets."
    )
    samples: int = Field(256, ge=1, description="Synthetic only: number of samples.")
    features: int = Field(10, ge=1, description="Synthetic only: input features per sample.")
    outputs: int = Field(5, ge=1, description="Synthetic only: targets (regression) or classes.")
    noise: float = Field(
        0.1, ge=0, description="Synthetic only: std of the noise added to targets."
    )
    scale: float = Field(1.0, description="Every input feature is multiplied by this (finite).")
    path: str | None = Field(None, description="csv | npz: the data file, relative to the spec.")
    target: str | list[str] | None = Field(None, description="csv only: the target column(s).")
    nan_fraction: float = Field(0.0, ge=0, le=1, description="Fraction of inputs set to NaN.")
    preprocess: Literal["none", "standardize", "minmax"] = Field(
        "none", description="Input scaling."
    )

    @field_validator("target", mode="before")
    @classmethod
    def _target(cls, v: Any) -> Any:
        names = v if isinstance(v, list) else [v]
        if v is None or (names and all(isinstance(n, str | int | float) for n in names)):
            return v if v is None or isinstance(v, str) else [str(n) for n in names]
        raise ValueError(f"{_show(v)} is not a column name or a non-empty list of column names")


class LayerSpec(_Section):
    units: int = Field(ge=1, description="Number of neurons in this layer.")
    activation: Activation = Field(
        "linear", description="Activation; softmax on the last layer only."
    )
    init: Init | None = Field(
        None, description="Weight init; default he for relu/leaky_relu/elu, else xavier."
    )
    init_scale: float = Field(1.0, gt=0, description="Multiplier applied to the initial weights.")
    bias: float = Field(0.0, description="Initial value of every bias.")

    @model_validator(mode="after")
    def _default_init(self) -> LayerSpec:
        if self.init is None:
            self.init = "he" if self.activation in RELU_FAMILY else "xavier"
        return self


class ModelSpec(_Section):
    layers: list[LayerSpec] = Field(
        min_length=1, description="One entry per weight layer, in order."
    )
    weights: str | None = Field(
        None, description="Optional .npz with W1, b1, W2, b2, ... to start from."
    )


class NumericsSpec(_Section):
    dtype: Literal["float64", "float32", "float16"] = Field(
        "float64", description="Floating-point type."
    )
    mode: Literal["stable", "naive"] = Field(
        "stable", description="naive = textbook formulas, unguarded."
    )


class TrainSpec(_Section):
    steps: int = Field(500, ge=1, description="Number of optimizer steps.")
    batch_size: int | Literal["full"] = Field(32, description="Samples per step, or 'full'.")
    shuffle: bool = Field(True, description="Reshuffle the samples every epoch.")
    learning_rate: float = Field(0.01, ge=0, description="Base learning rate.")
    optimizer: Literal["sgd", "momentum", "rmsprop", "adam"] = Field(
        "sgd", description="Update rule."
    )
    momentum: float = Field(0.9, ge=0, description="momentum: the velocity's decay.")
    beta1: float = Field(0.9, ge=0, lt=1, description="adam: decay of the first moment.")
    beta2: float = Field(
        0.999, ge=0, lt=1, description="adam, rmsprop: decay of the second moment."
    )
    eps: float = Field(
        1e-8, ge=0, description="adam, rmsprop: added to the denominator; 0 allowed."
    )
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty added to the gradient.")
    clip_grad_norm: float | None = Field(
        None, gt=0, description="Bound on the global gradient L2 norm."
    )
    clip_grad_value: float | None = Field(None, gt=0, description="Element-wise gradient bound.")
    schedule: Literal["constant", "step", "exponential", "cosine", "warmup"] = Field(
        "constant", description="Learning-rate schedule (cosine anneals to 0 over train.steps)."
    )
    lr_step_size: int = Field(100, ge=1, description="step/exponential: steps per decay period.")
    lr_gamma: float = Field(0.1, gt=0, description="step/exponential: decay factor per period.")
    warmup_steps: int = Field(100, ge=1, description="warmup: steps of linear ramp up to the rate.")

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() == "full":
            return "full"
        try:
            n = int(v) if not isinstance(v, bool) and float(v) == int(float(v)) else None
        except (TypeError, ValueError, OverflowError):
            n = None
        if n is None or n < 1:
            raise ValueError(
                f"{_show(v)} is not valid (allowed: a whole number at least 1, or 'full')"
            )
        return n


class CheckSpec(_Section):
    fail_on: list[CheckId] = Field(["nonfinite"], description="What `nandoctor check` fails on.")
    max_final_loss: float | None = Field(
        None, description="Fail when the final loss is above this."
    )


class Spec(_Section):
    """One training run. Load with :func:`load_spec`; the path attributes come from the file."""

    name: str | None = Field(None, description="Name of the run; defaults to the file's stem.")
    seed: int = Field(
        0, ge=0, description="One seed for every random choice (init, data, batches)."
    )
    data: DataSpec = Field(default_factory=DataSpec, description="The training data.")
    model: ModelSpec = Field(description="The dense feed-forward network.")
    loss: Literal["mse", "cross_entropy", "bce", "random_gradient"] = Field(
        "mse", description="Loss."
    )
    numerics: NumericsSpec = Field(default_factory=NumericsSpec, description="dtype and formulas.")
    train: TrainSpec = Field(default_factory=TrainSpec, description="The training loop.")
    check: CheckSpec = Field(default_factory=CheckSpec, description="Policy for `nandoctor check`.")

    _origin: _Origin = PrivateAttr(default_factory=lambda: _Origin())
    _raw: dict | None = PrivateAttr(None)

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

    def line_of(self, dotted_key: str) -> int | None:
        """1-based line of ``dotted_key`` in the file, or of its nearest parent present there."""
        if self.path is None:
            return None
        key = self._origin.present(dotted_key)
        return self._origin.positions[key][0] if key else None

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
            return f"--set {self.override}: {self.message.removeprefix(self.key + ': ')}"
        return (
            f"{self.file}:{self.line}:{self.col}: {self.message}"
            if self.line
            else f"{self.file}: {self.message}"
        )


class SpecError(Exception):
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
                return Problem("--set", 0, 0, key, message, item)
        found = self.present(key)
        kl, kc, vl, vc = self.positions.get(found, (0, 0, 0, 0))
        exact = found == key and not at_key
        return Problem(self.file, vl if exact else kl, vc if exact else kc, key, message)


def json_schema() -> dict:
    """The JSON Schema of a spec, with a description for every key."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **Spec.model_json_schema()}


def parse_override(item: str) -> tuple[str, Any]:
    """``"train.eps=1e-8"`` -> ``("train.eps", "1e-8")``: the value as YAML, typed later by the schema."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise SpecError([Problem("--set", 0, 0, "", f"expected KEY=VALUE, got {item!r}", item)])
    try:
        return key.strip(), yaml.safe_load(text)
    except yaml.YAMLError as e:
        msg = f"{key.strip()}: cannot read the value {text!r} as YAML ({getattr(e, 'problem', e)})"
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
    def fail(message: str, line: int = 1, col: int = 1) -> SpecError:
        return SpecError([Problem(origin.file, line, col, "", message)])

    if path.is_dir():
        raise fail("is a directory, not a spec file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise fail("file not found") from None
    except UnicodeDecodeError:
        raise fail("not a UTF-8 text file") from None
    except OSError as e:
        raise fail(f"cannot read the file ({e.strerror})") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise fail("the file is empty; a spec needs at least model.layers", 1, 1)
        dups = _walk(node, "", origin.positions, set())
        raw = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        context = f" ({e.context})" if e.context else ""
        raise fail(f"YAML syntax error: {e.problem}{context}", *where) from None
    except (yaml.YAMLError, RecursionError) as e:
        raise fail(f"cannot read the YAML: {e}", 1, 1) from None
    finally:
        loader.dispose()
    if not isinstance(raw, dict):
        raise fail(
            f"the top level must be a mapping of keys (data, model, ...), not {_show(raw)}", 1, 1
        )
    return raw, [
        origin.problem(k, "duplicate key; only one value may be given", True) for k in dups
    ]


def _walk(node: yaml.Node, path: str, pos: dict, seen: set) -> list[str]:
    """Record (key line, key col, value line, value col) of every key and list item under ``node``."""
    dups: list[str] = []
    if id(node) in seen:  # an alias: its positions are those of its anchor
        return dups
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys = set()
        for k, v in node.value:
            if k.tag == "tag:yaml.org,2002:merge":
                continue
            sub = f"{path}.{k.value}" if path else str(k.value)
            if sub in keys:
                dups.append(sub)
            keys.add(sub)
            pos[sub] = (
                k.start_mark.line + 1,
                k.start_mark.column + 1,
                v.start_mark.line + 1,
                v.start_mark.column + 1,
            )
            dups += _walk(v, sub, pos, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            sub = f"{path}.{i}"
            pos[sub] = (v.start_mark.line + 1, v.start_mark.column + 1) * 2
            dups += _walk(v, sub, pos, seen)
    return dups


def _apply(raw: dict, key: str, value: Any, item: str, origin: _Origin) -> Problem | None:
    """Set dotted ``key`` in ``raw``; a Problem when the key is not in the schema or cannot be set."""
    origin.overrides[key] = item
    parts = key.split(".")
    tp: Any = Spec
    for i, part in enumerate(parts):
        here = ".".join(parts[:i])
        if get_origin(tp) is list:
            if not part.isdigit():
                return origin.problem(key, f"{here} is a list; address an entry as {here}.0")
            tp = _unwrap(get_args(tp)[0])
        elif isinstance(tp, type) and issubclass(tp, BaseModel):
            if part not in tp.model_fields:
                what = "unknown key" if i == len(parts) - 1 else f"unknown key {part!r}"
                return origin.problem(key, what + _suggest(part, list(tp.model_fields), "keys"))
            tp = _unwrap(tp.model_fields[part].annotation)
        else:
            return origin.problem(key, f"{here} is a value, not a mapping")
    cur: Any = raw
    for i, part in enumerate(parts):
        here = ".".join(parts[:i]) or "the spec"
        if isinstance(cur, list):
            if int(part) >= len(cur):
                return origin.problem(
                    key, f"{here} has {len(cur)} entries; there is no entry {part}"
                )
            part = int(part)
        elif not isinstance(cur, dict):
            return origin.problem(key, f"{here} is not a mapping in the spec")
        if i == len(parts) - 1:
            cur[part] = value
        elif isinstance(cur, dict) and part not in cur:
            cur[part] = [] if parts[i + 1].isdigit() else {}
        cur = cur[part]
    return None


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
    out = []
    layers, d = s.model.layers, s.data
    last = f"model.layers.{len(layers) - 1}"
    for i, layer in enumerate(layers[:-1]):
        if layer.activation == "softmax":
            out.append(
                (
                    f"model.layers.{i}.activation",
                    f"softmax is allowed on the last layer only (this is layer {i + 1} of {len(layers)})",
                )
            )
    act = layers[-1].activation
    need = {"cross_entropy": "softmax", "bce": "sigmoid"}.get(s.loss)
    if need and act not in (need, "linear"):
        out.append(
            (
                f"{last}.activation",
                f"loss {s.loss} needs the last layer's activation to be {need} or linear (logits), not {act}",
            )
        )
    if d.task == "random" and s.loss != "random_gradient":
        out.append(
            (
                "loss",
                f"data.task random has no targets, so the loss must be random_gradient, not {s.loss}",
            )
        )
    if d.source == "synthetic":
        want = {"cross_entropy": "classification", "bce": "binary"}.get(s.loss)
        if want and d.task != want:
            out.append(("data.task", f"loss {s.loss} needs task {want}, not {d.task}"))
        if s.loss != "random_gradient" and layers[-1].units != d.outputs:
            out.append(
                (
                    f"{last}.units",
                    f"the last layer has {layers[-1].units} units but data.outputs is {d.outputs}; they must be equal",
                )
            )
    else:
        if not d.path:
            out.append(("data.path", f"source {d.source} needs a path to the data file"))
        if d.source == "csv" and not d.target:
            out.append(
                (
                    "data.target",
                    "source csv needs the name of the target column (or a list of names)",
                )
            )
    return out


_NOUNS = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
}
_NOUNS |= {"list": "a list", "model": "a mapping of keys", "model_attributes": "a mapping of keys"}
_NOUNS |= {"dict": "a mapping of keys"}
_RANGE = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _explain(err: dict) -> tuple[str, str, bool]:
    """A pydantic error as (dotted key, plain message, located at the key rather than the value)."""
    loc = [str(p) for p in err["loc"]]
    key, kind, value = ".".join(loc), err["type"], err.get("input")
    if kind == "extra_forbidden":
        fields = list(getattr(_type_at(loc[:-1]), "model_fields", {}))
        return key, "unknown key" + _suggest(loc[-1], fields, "keys"), True
    if kind == "missing":
        info = _field_at(loc)
        return key, "required key missing" + (f" ({info.description})" if info else ""), False
    if kind == "literal_error":
        choices = [str(c) for c in get_args(_type_at(loc))]
        return (
            key,
            f"{_show(value)} is not one of {', '.join(choices)}" + _suggest(str(value), choices),
            False,
        )
    if kind == "finite_number":
        return key, f"{_show(value)} is not a finite number", False
    if kind in _RANGE:
        return key, f"{_show(value)} is out of range{_allowed(loc)}", False
    if kind == "too_short":
        return key, f"needs at least {err['ctx']['min_length']} entry", False
    noun = next((n for prefix, n in _NOUNS.items() if kind.startswith(prefix + "_")), None)
    if noun:
        return key, f"{_show(value)} is not {noun}{_allowed(loc)}", False
    return key, err["msg"].removeprefix("Value error, "), False


def _allowed(loc: list[str]) -> str:
    """The allowed values of the field at ``loc`` in words: ' (allowed: a number at least 0)'."""
    info = _field_at(loc)
    if info is None:
        return ""
    tp = _unwrap(info.annotation)
    noun = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}.get(
        tp
    )
    if noun is None:
        return ""
    bounds = {
        a: getattr(m, a) for m in info.metadata for a in ("ge", "gt", "le", "lt") if hasattr(m, a)
    }
    words = {"ge": "at least", "gt": "greater than", "le": "at most", "lt": "less than"}
    if "ge" in bounds and "le" in bounds:
        noun += f" from {bounds['ge']} to {bounds['le']}"
    elif bounds:
        noun += " " + " and ".join(f"{words[a]} {b}" for a, b in bounds.items())
    nullable = _unwrap(info.annotation) is not info.annotation
    return f" (allowed: {noun}{', or null' if nullable else ''})"


def _type_at(loc: list[str]) -> Any:
    """The schema type at a pydantic location (list indices step into the item type)."""
    tp: Any = Spec
    for part in loc:
        if get_origin(tp) is list:
            tp = _unwrap(get_args(tp)[0])
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = _unwrap(tp.model_fields[part].annotation)
        else:
            return None
    return tp


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
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; valid {what}: {', '.join(choices)}" if what else ""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
