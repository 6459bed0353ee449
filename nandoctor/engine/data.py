"""The data: synthetic tasks, CSV and NPZ loaders, fault injection and preprocessing.

Shapes: ``x`` is ``(n, features)`` float64. ``y`` is ``(n, outputs)`` float64 for regression and
binary targets, ``(n,)`` int64 class indices for classification, and ``None`` for ``task: random``.

Every function returns new arrays and never mutates its inputs. Everything is float64 here,
preprocessing included; ``engine.setup`` casts to the run's dtype after it, as real pipelines do. Nothing here touches NumPy's floating-point error
state: the caller installs its own ``np.errstate`` to catch the first NaN (docs/spec.md,
``numerics.mode``), so a naive standardize of a zero-variance column divides 0 by 0 in the open.

This module takes plain arguments and does not import the spec module.
"""

from __future__ import annotations

import csv
import difflib
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TASKS = ("regression", "classification", "binary", "random")
PREPROCESS = ("none", "standardize", "minmax")
MODES = ("naive", "stable")
MAX_CLASS_INDEX = 2**31 - 1  # a label beyond this is not a class index (and would overflow int64)


class DataError(Exception):
    """A data problem the user must fix.

    ``.key`` is the dotted spec key it concerns (e.g. ``'data.path'``), used to cite a line.
    """

    def __init__(self, message: str, key: str = "data"):
        super().__init__(message)
        self.key = key


@dataclass
class Dataset:
    """Inputs and targets as loaded (before dtype cast and preprocessing).

    ``x: (n, features)`` float64; ``y: (n, outputs)`` float64, ``(n,)`` int64 class indices
    (classification, with ``n_classes``), or ``None`` (task random).
    """

    x: np.ndarray
    y: np.ndarray | None
    n_classes: int | None = None
    feature_names: tuple[str, ...] | None = None  # CSV column names of x, when known


# ---------------------------------------------------------------- synthetic
def synthetic(
    task: str, samples: int, features: int, outputs: int, noise: float, rng: np.random.Generator
) -> Dataset:
    """A seeded synthetic task from a random linear teacher; same ``rng`` state, same arrays.

    The recipe, in draw order:

    1. ``x = rng.standard_normal((samples, features))``; for ``random`` stop here (``y = None``).
    2. ``W_true = rng.standard_normal((features, outputs)) / sqrt(features)``  (N(0, 1/features)).
    3. ``z = x @ W_true + noise * rng.standard_normal((samples, outputs))``.
    4. ``regression``: ``y = z``, ``(samples, outputs)`` float64.
       ``classification``: ``y = argmax(z, axis=1)`` as int64 ``(samples,)``,
       ``n_classes = outputs``.
       ``binary``: ``y = (z > 0)`` as float64 ``(samples, outputs)`` of 0.0 / 1.0.
    """
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}; use one of {', '.join(TASKS)}", "data.task")
    for key, value in (("samples", samples), ("features", features), ("outputs", outputs)):
        if value < 1:
            raise DataError(f"{key} must be at least 1, got {value}", f"data.{key}")
    x = rng.standard_normal((samples, features))
    if task == "random":
        return Dataset(x, None)
    w_true = rng.standard_normal((features, outputs)) / math.sqrt(features)
    z = x @ w_true + noise * rng.standard_normal((samples, outputs))
    if task == "classification":
        return Dataset(x, np.argmax(z, axis=1).astype(np.int64), n_classes=outputs)
    if task == "binary":
        return Dataset(x, (z > 0).astype(np.float64))
    return Dataset(x, z)


# ---------------------------------------------------------------- loading helpers
def _check_file(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"data file {str(path)!r} does not exist; check data.path (it is relative to the "
            "spec file)",
            "data.path",
        )
    if not path.is_file():
        raise DataError(f"{str(path)!r} is not a file; point data.path at a file", "data.path")
    return path


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _targets(y: np.ndarray, task: str | None, where: str) -> tuple[np.ndarray | None, int | None]:
    """Shape targets for ``task``: ``y: (n,) | (n, k)`` -> ``(y, n_classes)``.

    classification: ``(n,)`` int64 class indices (whole numbers >= 0), ``n_classes = max + 1``.
    random: ``None``. Anything else: float64 ``(n, outputs)`` (a 1-D ``y`` becomes ``(n, 1)``).
    """
    if task == "random":
        return None, None
    y = np.array(y, dtype=np.float64)
    if task != "classification":
        return (y.reshape(-1, 1) if y.ndim == 1 else y), None
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(
            f"{where}: classification needs one target of class indices (0, 1, 2, ...), "
            f"got {y.shape[1]} target columns; give a single column of integer labels",
            "data.target",
        )
    bad = ~(np.isfinite(y) & (y >= 0) & (y == np.round(y)))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"{where}: classification labels must be whole numbers >= 0 (class indices), but "
            f"sample {i + 1} has {y[i]!r}; encode the classes as 0, 1, 2, ...",
            "data.target",
        )
    if y.max() > MAX_CLASS_INDEX:
        i = int(np.argmax(y))
        raise DataError(
            f"{where}: sample {i + 1} has the class label {y[i]:.6g}, far too large to be a class"
            f" index (at most {MAX_CLASS_INDEX:,}); encode the classes as 0, 1, 2, ...",
            "data.target",
        )
    labels = y.astype(np.int64)
    return labels, int(labels.max()) + 1


def _parse(cell: str) -> float:
    """One CSV cell as a float; an empty cell is NaN (missing data, not an error)."""
    cell = cell.strip()
    return math.nan if cell == "" else float(cell)


def _looks_numeric(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- sizes, before loading
CSV_CELL_BYTES = 100  # what the CSV loader holds per cell (measured: 93 for 2-digit cells)
CSV_SAMPLE_BYTES = 2**20  # the rows per byte of a CSV are counted in its first megabyte


def file_shape(path: Path, source: str, targets: int = 1) -> tuple[int, int, int]:
    """``(samples, features, loader bytes)`` of a data file, from what little can be read
    cheaply: an npz's headers (exact), a CSV's header line and the rows and cells of its first
    megabyte scaled to its size (an estimate). The loader bytes are what reading it holds at
    its peak. Raises :class:`DataError` for a file that is missing, not a file, or unreadable."""
    from nandoctor.spec.limits import BYTES

    path = _check_file(path)
    if source == "npz":
        how = "np.savez(path, x=x, y=y)"
        require_npz(path, "data.path", how)
        headers = npz_headers(path, "data.path", how)
        x = headers.get("x")
        if x is None or len(x.shape) != 2:
            return 0, 0, 0
        loading = sum(h.nbytes + h.size * BYTES for h in headers.values())
        return x.shape[0], x.shape[1], loading
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            head = f.read(CSV_SAMPLE_BYTES)
    except OSError as e:
        raise DataError(f"cannot read {str(path)!r} ({e.strerror})", "data.path") from None
    lines = head.count(b"\n") + (not head.endswith(b"\n"))
    cells = lines + head.count(b",")
    scale = size / max(len(head), 1)
    columns = head.split(b"\n", 1)[0].count(b",") + 1  # the header's (quoted commas aside)
    rows = max(1, int(lines * scale) - 1)
    return rows, max(1, columns - targets), size + int(cells * scale) * CSV_CELL_BYTES


# ---------------------------------------------------------------- csv
def load_csv(
    path: Path, target: str | list[str], task: str | None = None, categorical=()
) -> Dataset:
    """Load a CSV with a header row: ``target`` column(s) -> ``y``, the other columns -> ``x``.

    ``x: (n, features)`` float64; ``y`` as in :func:`_targets`. Empty cells and ``nan`` read as
    NaN (that is data, not an error). Columns named in ``categorical`` are one-hot encoded, one
    column per distinct value in sorted order (``name=value``; an empty cell is NaN in all of
    them); a categorical target of a classification task becomes class indices in that order.
    Line numbers in errors are the file's (header = line 1).
    """
    path = _check_file(path)
    where = repr(str(path))
    header, rows = _read_rows(path, where)
    targets = [target] if isinstance(target, str) else list(target)
    for name in [*targets, *categorical]:
        if name not in header:
            what = "target column" if name in targets else "categorical column"
            key = "data.target" if name in targets else "data.categorical"
            raise DataError(
                f"{what} {name!r} not found in {where}; available columns: "
                f"{', '.join(header)}{_suggest(name, header)}",
                key,
            )
    if len(set(targets)) == len(header):
        raise DataError(
            f"every column of {where} is a target; leave at least one input column",
            "data.target",
        )
    if not rows:
        raise DataError(f"{where} has a header but zero data rows; add data", "data.path")
    for line, row in rows:
        if len(row) != len(header):
            raise DataError(
                f"{where} line {line} has {len(row)} fields but the header has "
                f"{len(header)}; every row needs one value per column",
                "data.path",
            )
    columns = {}
    for j, name in enumerate(header):
        cells = [(line, row[j]) for line, row in rows]
        as_labels = name in categorical and name in targets and task == "classification"
        if name in categorical:
            columns[name] = _one_hot(name, cells, labels=as_labels)
        else:
            columns[name] = (_numeric_column(name, cells, where), (name,))
    x_names = [h for h in header if h not in targets]
    if any(name in categorical for name in targets) and task == "classification":
        y = columns[targets[0]][0][:, 0]
        return _dataset(columns, x_names, y.astype(np.int64), int(y.max()) + 1 if len(y) else 0)
    y_all = np.column_stack([columns[t][0] for t in targets])
    y, n_classes = _targets(y_all, task, where)
    return _dataset(columns, x_names, y, n_classes)


def _dataset(columns: dict, x_names: list[str], y, n_classes) -> Dataset:
    x = np.column_stack([columns[h][0] for h in x_names])
    names = tuple(n for h in x_names for n in columns[h][1])
    return Dataset(x, y, n_classes, names)


def _read_rows(path: Path, where: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows = [
                (reader.line_num, row) for row in reader if len(row) > 1 or "".join(row).strip()
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(
            f"cannot read {where} as CSV ({e}); save it as UTF-8 comma-separated text",
            "data.path",
        ) from e
    if not rows:
        raise DataError(
            f"{where} is empty; it needs a header row and at least one data row", "data.path"
        )
    header = [c.strip() for c in rows[0][1]]
    for j, name in enumerate(header):
        bad = next((ch for ch in name if not ch.isprintable()), None)
        if bad is not None:
            raise DataError(
                f"{where} line 1, column {j + 1}: the name {name!r} holds the control character"
                f" U+{ord(bad):04X}; delete it",
                "data.path",
            )
    seen: dict[str, int] = {}
    for j, name in enumerate(header):
        if name in seen:
            raise DataError(
                f"{where} line 1: columns {seen[name] + 1} and {j + 1} are both named {name!r};"
                " give each column its own name",
                "data.path",
            )
        seen[name] = j
    if all(_looks_numeric(c) for c in header):
        raise DataError(
            f"{where} has no header row (line 1 is numbers: {','.join(header[:5])}); "
            "add a first line naming the columns",
            "data.path",
        )
    return header, rows[1:]


def _numeric_column(name: str, cells: list[tuple[int, str]], where: str) -> np.ndarray:
    out = np.empty((len(cells), 1))
    for i, (line, cell) in enumerate(cells):
        try:
            out[i, 0] = _parse(cell)
        except ValueError:
            raise DataError(
                f"{where} line {line}, column {name!r}: cannot read {cell!r} as a number; "
                f"if {name!r} is a category, list it in data.categorical to one-hot encode it "
                "(or leave the cell empty for a missing value)",
                "data.path",
            ) from None
    return out


def _one_hot(name: str, cells: list[tuple[int, str]], labels: bool = False):
    """``(values (n, k), names)``: one column per distinct non-empty value, sorted; an empty
    cell is NaN in every column (missing). ``labels``: one column of class indices instead."""
    text = [c.strip() for _, c in cells]
    values = sorted({t for t in text if t}, key=_category_order)
    index = {v: k for k, v in enumerate(values)}
    if labels:
        return np.array([[index[t]] for t in text], dtype=np.float64), (name,)
    out = np.zeros((len(text), len(values)))
    for i, t in enumerate(text):
        if t:
            out[i, index[t]] = 1.0
        else:
            out[i] = np.nan
    return out, tuple(f"{name}={v}" for v in values)


def _category_order(value: str):
    """Numbers by value, then text: ``2 < 10 < 'a'``."""
    return (0, float(value), "") if _looks_numeric(value) else (1, 0.0, value)


def drop_nonfinite_rows(x: np.ndarray, y: np.ndarray | None):
    """``data.missing: drop_rows``: the rows whose input and target are all finite, and how many
    were dropped. Raises when none is left."""
    keep = np.isfinite(x).all(axis=1)
    if y is not None and y.dtype.kind == "f":
        keep &= np.isfinite(y.reshape(len(y), -1)).all(axis=1)
    if not keep.any():
        raise DataError(
            f"every one of the {len(x)} rows holds a non-finite input or target; "
            "data.missing: drop_rows left nothing to train on",
            "data.missing",
        )
    return x[keep], (None if y is None else y[keep]), int(len(x) - keep.sum())


# ---------------------------------------------------------------- npz
def require_npz(path: Path, key: str, how: str) -> None:
    """Refuse a file that is not a NumPy archive by its first bytes (np.load would call a text
    file "pickled data")."""
    try:
        with Path(path).open("rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise DataError(f"cannot read {str(path)!r} ({e.strerror})", key) from None
    if magic == b"\x93NUMPY":
        raise DataError(
            f"{str(path)!r} is a single .npy array, not an .npz archive; save it with {how}", key
        )
    if magic[:4] != b"PK\x03\x04":
        raise DataError(
            f"{str(path)!r} is not an npz archive (it does not start like a zip file);"
            f" save it with {how}",
            key,
        )


@dataclass(frozen=True)
class NpyHeader:
    """What an ``.npy`` member's header says: its shape and dtype (its data are not read)."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


def npz_headers(path: Path, key: str, how: str) -> dict[str, NpyHeader]:
    """The header of every array in the archive, read without reading any array's data:
    what :func:`read_npz` checks before it allocates. A member that is not an ``.npy`` array
    (``np.load`` would hand it back as bytes), or whose header cannot be read, is refused."""
    where = repr(str(path))
    try:
        with zipfile.ZipFile(path) as archive:
            return {
                info.filename.removesuffix(".npy"): _npy_header(archive, info, where, how, key)
                for info in archive.infolist()
                if not info.is_dir()
            }
    except (OSError, zipfile.BadZipFile, EOFError, RuntimeError, NotImplementedError) as e:
        raise DataError(f"cannot read {where} as .npz ({e}); save it with {how}", key) from None


def _npy_header(archive, info, where: str, how: str, key: str) -> NpyHeader:
    member = f"{where} member {info.filename!r}"
    try:
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:  # 2.0, and 3.0 (the same layout, UTF-8 field names)
                shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(
            f"{member} is not a NumPy array ({_short(e)}); save the file with {how}", key
        ) from None
    if dtype.hasobject:
        raise DataError(
            f"{member} holds Python objects (dtype {dtype}), which need pickle and are never"
            f" loaded; save numeric arrays with {how}",
            key,
        )
    return NpyHeader(tuple(int(n) for n in shape), dtype)


def _short(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def read_npz(
    path: Path,
    key: str,
    how: str,
    names: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """The arrays ``names`` (default: every one) of an npz archive, each checked by its header
    before anything is allocated. A missing name, a member that is not a numeric array, and
    arrays that would not fit in the memory budget (``limits.memory_budget``) as read plus as
    float64 are a :class:`DataError` at ``key`` that says how to save the file (``how``)."""
    from nandoctor.engine.memory import show_bytes
    from nandoctor.spec.limits import BYTES, memory_budget

    where = repr(str(path))
    require_npz(path, key, how)
    headers = npz_headers(path, key, how)
    missing = [n for n in names or () if n not in headers]
    if missing:
        raise DataError(
            f"{where} has no array {' or '.join(map(repr, missing))}; it has "
            f"[{', '.join(headers) or 'no arrays'}]; save it with {how}",
            key,
        )
    wanted = {n: h for n, h in headers.items() if names is None or n in names}
    for name, h in wanted.items():
        if h.dtype.kind not in "biuf":
            raise DataError(
                f"{where}: array {name} has dtype {h.dtype}; it must be numeric (integers or"
                f" floats); save numbers with {how}",
                key,
            )
    need = sum(h.nbytes + h.size * BYTES for h in wanted.values())  # as stored, then float64
    memory = memory_budget()
    if need > memory:
        shapes = ", ".join(f"{n} {h.shape} {h.dtype}" for n, h in wanted.items())
        raise DataError(
            f"{where} holds arrays too big to load ({shapes}): about {show_bytes(need)} as read"
            f" and as float64, more than the {show_bytes(memory)} of memory available; use a"
            " smaller file",
            key,
        )
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            members = {i.filename.removesuffix(".npy"): i for i in archive.infolist()}
            for name in wanted:
                with archive.open(members[name]) as f:
                    arrays[name] = np.lib.format.read_array(f, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError) as e:
        raise DataError(
            f"cannot read {where}: the data of an array are damaged or cut short"
            f" ({_short(e)}); save it again with {how}",
            key,
        ) from None
    return arrays


def load_npz(path: Path, task: str | None = None) -> Dataset:
    """Load an ``.npz`` with arrays ``x: (n, features)`` and ``y: (n,) | (n, outputs)``.

    ``y`` may be absent for ``task='random'`` (it is ignored there). Every array is checked by
    its header (numeric, fits in memory) before it is read (:func:`read_npz`).
    """
    path = _check_file(path)
    where = repr(str(path))
    names = ["x"] if task == "random" else ["x", "y"]
    arrays = read_npz(path, "data.path", "np.savez(path, x=x, y=y)", names)
    x, y = arrays["x"], arrays.get("y")
    if x.ndim != 2:
        raise DataError(
            f"{where}: x must be 2-D (n, features), got shape {x.shape}; use x.reshape(len(x), -1)",
            "data.path",
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"{where}: x has shape {x.shape}, which holds no data", "data.path")
    if task == "random":
        return Dataset(x.astype(np.float64), None)
    if y.ndim not in (1, 2):
        raise DataError(
            f"{where}: y must be (n,) or (n, outputs), got shape {y.shape}", "data.path"
        )
    if y.shape[0] != x.shape[0]:
        raise DataError(
            f"{where}: x has {x.shape[0]} rows but y has {y.shape[0]}; "
            "they need one target per sample",
            "data.path",
        )
    y, n_classes = _targets(y, task, where)
    return Dataset(x.astype(np.float64), y, n_classes)


# ---------------------------------------------------------------- fault injection
def scale_and_corrupt(
    x: np.ndarray, scale: float, nan_fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """``x * scale`` with exactly ``round(nan_fraction * x.size)`` entries set to NaN.

    ``x: (n, features)`` -> new float64 array, same shape. The NaN positions are drawn by
    ``rng.choice(x.size, k, replace=False)``; ``rng`` is not touched when ``k == 0``.
    """
    if not 0.0 <= nan_fraction <= 1.0:
        raise DataError(
            f"nan_fraction must be between 0 and 1, got {nan_fraction}", "data.nan_fraction"
        )
    out = np.array(x, dtype=np.float64) * scale
    k = round(nan_fraction * out.size)
    if k:
        out.flat[rng.choice(out.size, size=k, replace=False)] = np.nan
    return out


# ---------------------------------------------------------------- preprocessing
def preprocess(x: np.ndarray, method: str, mode: str) -> np.ndarray:
    """Standardize or min-max scale each column: ``x: (n, features)`` -> new float64 array.

    ``naive`` is the textbook code: ``(x - mean) / std`` and ``(x - min) / (max - min)`` with no
    guard, so a constant column divides 0 by 0 and yields NaN (the caller's ``np.errstate``
    decides whether that warns, raises or is recorded). ``stable`` maps constant columns to 0.
    In both modes column stats use the plain (not nan-aware) functions, so a NaN in the input
    stays NaN in its column: bad input must stay visible.
    """
    if method not in PREPROCESS:
        raise DataError(
            f"unknown preprocess {method!r}; use one of {', '.join(PREPROCESS)}", "data.preprocess"
        )
    if mode not in MODES:
        raise DataError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}", "numerics.mode")
    x = np.array(x, dtype=np.float64)
    if method == "none":
        return x
    if method == "standardize":
        shift, spread = x.mean(axis=0), x.std(axis=0)
    else:
        shift, spread = x.min(axis=0), x.max(axis=0) - x.min(axis=0)
    if mode == "naive":
        return (x - shift) / spread
    constant = (spread == 0) | (x.max(axis=0) == x.min(axis=0))
    out = (x - shift) / np.where(constant, 1.0, spread)
    out[:, constant] = 0.0
    return out
