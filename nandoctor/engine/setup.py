"""From a spec to what training needs: data in the run's dtype, initial weights, seeds.

The data and preprocess phases are watched like the training steps: a NaN in the data as loaded,
or one made by preprocessing (a zero-variance feature standardized naively), is the run's first
non-finite value, found here before any step runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from nandoctor.engine import data as datamod
from nandoctor.engine import nn
from nandoctor.engine.data import DataError
from nandoctor.engine.layout import Slot, layout
from nandoctor.instrument.events import FPEvent, FPWatch, NonFinite, op

if TYPE_CHECKING:
    from nandoctor.spec.models import Spec

DTYPES = {"float64": np.float64, "float32": np.float32, "float16": np.float16}


@dataclass
class PreparedRun:
    """A spec made ready to train: its data, initial weights and seeds, in the run's dtype."""

    spec: Spec
    x: np.ndarray  # (samples, features), preprocessed in float64, then cast to the run dtype
    y: np.ndarray | None  # (samples, outputs) run dtype, or (samples,) int class indices
    dtype: type
    init_params: list[np.ndarray]  # in ``slots`` order: W1 (in, out), b1 (out,), ... run dtype
    seeds: tuple  # SeedSequences for batches, random-gradient noise and dropout masks
    raw_max_abs: float  # largest |input| before preprocessing, after scale (float64)
    col_std: np.ndarray  # (features,) std of each input column before preprocessing (float64)
    first_nonfinite: NonFinite | None = None  # a non-finite value in data or preprocessing
    events: dict[tuple, FPEvent] = field(default_factory=dict)
    slots: list[Slot] = field(default_factory=list)  # which parameter each init_params entry is
    dropped_rows: int = 0  # rows removed by data.missing: drop_rows
    feature_names: tuple[str, ...] | None = None  # a CSV's names of the columns of x


def load_dataset(spec: Spec, rng: np.random.Generator) -> datamod.Dataset:
    d = spec.data
    if d.source == "synthetic":
        return datamod.synthetic(d.task, d.samples, d.features, d.outputs, d.noise, rng)
    path = spec.resolve_path(d.path)
    _check_file_size(spec, path)
    task = "classification" if spec.loss.name == "cross_entropy" else d.task
    if d.source == "csv":
        return datamod.load_csv(path, d.target, task=task, categorical=d.categorical)
    return datamod.load_npz(path, task=task)


def _check_file_size(spec: Spec, path) -> None:
    """Refuse a data file whose run would not fit in memory, from its size and headers, before
    any of it is loaded (a zip bomb's header claims its size; a CSV's loader holds ~100 bytes a
    cell): the check the spec could not make, not knowing the file's shape."""
    from nandoctor.spec.limits import size_problems

    d = spec.data
    targets = 1 if isinstance(d.target, str) or d.target is None else len(d.target)
    rows, features, loading = datamod.file_shape(path, d.source, targets)
    if not rows:
        return  # not a readable shape: the loader says why
    for key, message in size_problems(spec, samples=rows, features=features, loading=loading):
        if key != "train.steps":
            raise DataError(message, key)


def prepare(spec: Spec) -> PreparedRun:
    """Load and prepare everything a run of ``spec`` needs. Raises DataError on bad data."""
    dtype = DTYPES[spec.numerics.dtype]
    # spawn keys are stable: a fifth stream leaves the first four (and so old runs) unchanged
    data_ss, init_ss, batch_ss, noise_ss, dropout_ss = np.random.SeedSequence(spec.seed).spawn(5)
    data_rng = np.random.default_rng(data_ss)
    ds = load_dataset(spec, data_rng)
    _check_targets(spec, ds)

    watch = FPWatch(1)
    with watch.install():
        # As a real pipeline does: load, preprocess in float64, then cast to the run's dtype.
        # Each step is watched, so a NaN in the file, one made by preprocessing and a value the
        # dtype cannot hold (float16 beyond 65504, still after preprocessing) are told apart.
        watch.at("data", None, ("x",))
        op("load")
        x = datamod.scale_and_corrupt(ds.x, spec.data.scale, spec.data.nan_fraction, data_rng)
        y, dropped = ds.y, 0
        if spec.data.missing == "drop_rows":
            x, y, dropped = datamod.drop_nonfinite_rows(x, y)
        watch.scan(x)
        loss_dtype = DTYPES[spec.numerics.master_dtype or spec.numerics.dtype]
        real_y = y is not None and y.dtype.kind == "f"
        if real_y:
            watch.at("data", None, ("y",))
            y = y.astype(np.float64)
            watch.scan(y)
        with np.errstate(all="ignore"):
            raw_max = float(np.nanmax(np.abs(x))) if np.isfinite(x).any() else float("nan")
            col_std = x.std(axis=0)
        if not watch.first_nonfinite:
            watch.at("preprocess", None, ("x",))
            op(spec.data.preprocess)
            x = datamod.preprocess(x, spec.data.preprocess, spec.numerics.mode)
            watch.scan(x)
        if not watch.first_nonfinite and spec.data.target_preprocess != "none" and real_y:
            watch.at("preprocess", None, ("y",))
            op(spec.data.target_preprocess)
            y = datamod.preprocess(y, spec.data.target_preprocess, spec.numerics.mode)
            watch.scan(y)
        watch.muted = bool(watch.first_nonfinite)  # cast anyway; the first failure is found
        watch.at("data", None, ("x",))
        op("cast")
        x = x.astype(dtype)
        watch.scan(x)
        if real_y:
            watch.at("data", None, ("y",))
            op("cast")
            y = y.astype(loss_dtype)  # targets meet the outputs in the loss, in the loss dtype
            watch.scan(y)
        watch.muted = False
        slots = layout(spec.model.layers)
        params = initial_params(spec, x.shape[1], np.random.default_rng(init_ss))
        if not watch.first_nonfinite:
            for i, (slot, p) in enumerate(zip(slots, params, strict=True)):
                watch.at("data", None, (slot.label,))
                op("cast")
                params[i] = p.astype(dtype)
                watch.scan(params[i])
    return PreparedRun(
        spec=spec,
        x=x,
        y=y,
        dtype=dtype,
        init_params=params,
        seeds=(batch_ss, noise_ss, dropout_ss),
        raw_max_abs=raw_max,
        col_std=col_std,
        first_nonfinite=watch.first_nonfinite.get(0),
        events=watch.events,
        slots=slots,
        dropped_rows=dropped,
        feature_names=ds.feature_names,
    )


def initial_params(spec: Spec, n_in: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The parameters in :func:`layout` order, float64, from the spec's inits or its weights
    file: W by the layer's init, b filled with its ``bias``, a norm's gamma 1 and beta 0."""
    if spec.model.weights:
        return _load_weights(spec, n_in)
    params, fan_in = [], n_in
    for layer in spec.model.layers:
        params.append(nn.init_weights(layer.init, fan_in, layer.units, layer.init_scale, rng))
        if layer.use_bias:
            params.append(np.full(layer.units, float(layer.bias)))
        if layer.norm != "none":
            params += [np.ones(layer.units), np.zeros(layer.units)]
        fan_in = layer.units
    return params


NORM_DEFAULT = {"gamma": 1.0, "beta": 0.0}  # a weights file may leave a norm's gamma/beta out


def _load_weights(spec, n_in: int) -> list[np.ndarray]:
    path = spec.resolve_path(spec.model.weights)
    if not path.is_file():
        raise DataError(f"weights file {path} not found", key="model.weights")
    arrays = datamod.read_npz(path, "model.weights", "np.savez(path, W1=W1, b1=b1, ...)")
    layers = spec.model.layers
    fans = [n_in] + [layer.units for layer in layers]
    params = []
    slots = layout(layers)
    unused = sorted(set(arrays) - {slot.label for slot in slots})
    if unused:
        raise DataError(
            f"{path} holds {', '.join(unused)}, which no layer of the spec uses (it has"
            f" {len(layers)} layer(s): {', '.join(s.label for s in slots)}); remove them, or"
            " add the layers they belong to",
            key="model.weights",
        )
    for slot in slots:
        units = layers[slot.layer].units
        shape = (fans[slot.layer], units) if slot.name == "W" else (units,)
        name = slot.label
        if name not in arrays and slot.name in NORM_DEFAULT:
            params.append(np.full(shape, NORM_DEFAULT[slot.name]))
            continue
        if name not in arrays:
            have = ", ".join(sorted(arrays)) or "nothing"
            raise DataError(f"{path} has no array {name} (it has {have})", key="model.weights")
        a = np.asarray(arrays[name], dtype=np.float64)
        if a.shape != shape:
            raise DataError(
                f"{path}: {name} has shape {a.shape}, the spec needs {shape} "
                f"(W shaped (inputs, units); x @ W + b)",
                key="model.weights",
            )
        params.append(a)
    return params


def _check_targets(spec, ds) -> None:
    units = spec.model.layers[-1].units
    loss = spec.loss.name
    if loss == "random_gradient":
        return
    if ds.y is None:
        raise DataError(f"loss {loss} needs targets, and the data have none", key="loss")
    if loss == "cross_entropy":
        if ds.y.ndim != 1 or ds.y.dtype.kind not in "iu":
            raise DataError("cross_entropy needs integer class indices as targets", key="loss")
        if ds.n_classes is not None and ds.n_classes > units:
            raise DataError(
                f"the data have {ds.n_classes} classes but the last layer has {units} units",
                key="model.layers",
            )
        return
    if loss == "bce":
        _check_probabilities(spec, ds.y)
    width = ds.y.shape[1] if ds.y.ndim == 2 else 1
    if width != units:
        raise DataError(
            f"the data have {width} target column(s) but the last layer has {units} units",
            key="model.layers",
        )


def _check_probabilities(spec, y: np.ndarray) -> None:
    """BCE targets are probabilities: a finite target outside [0, 1] is a data error (NaN/Inf
    targets stay: they are the run's bad input to diagnose)."""
    with np.errstate(invalid="ignore"):
        outside = np.isfinite(y) & ((y < 0) | (y > 1))
    if outside.any():
        row = int(np.argwhere(outside)[0][0])
        key = "data.target" if spec.data.source == "csv" else "data.path"
        raise DataError(
            f"loss bce needs targets between 0 and 1, but sample {row + 1} has"
            f" {float(y[outside][0]):.6g} ({int(outside.sum())} target(s) outside [0, 1]);"
            " rescale the targets or use loss mse",
            key=key,
        )
