"""Fuzzing: generated and mutated specs, CSV and npz files through the loader and the CLI.

Every case must end in a result (exit 0 or 1) or a usage error (exit 2) with a message - never
a traceback, never past its time budget. The suite runs a small budget; the long run is

    NANDOCTOR_FUZZ_EXAMPLES=10000 .venv/bin/python -m pytest tests/fuzz -q -p no:cacheprovider
"""

import io
import os
import time

import numpy as np
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nandoctor.cli import main

EXAMPLES = int(os.environ.get("NANDOCTOR_FUZZ_EXAMPLES", "15"))
CASE_SECONDS = 20.0  # one case: load, 3 training steps, diagnosis (generous on a busy machine)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # timed by the test itself, with a budget a loaded machine can keep
    suppress_health_check=list(HealthCheck),
    derandomize="NANDOCTOR_FUZZ_EXAMPLES" not in os.environ,  # the suite: the same cases each run
    database=None,
)

BASE = {
    "seed": 0,
    "data": {"source": "synthetic", "task": "regression", "samples": 16, "features": 3},
    "model": {"layers": [{"units": 4, "activation": "relu"}, {"units": 5, "activation": "linear"}]},
    "loss": "mse",
    "numerics": {"dtype": "float64", "mode": "stable"},
    "train": {"steps": 3, "batch_size": 8, "learning_rate": 0.01, "optimizer": "sgd"},
}
KEYS = [
    ("seed",),
    ("data", "task"),
    ("data", "samples"),
    ("data", "features"),
    ("data", "outputs"),
    ("data", "scale"),
    ("data", "nan_fraction"),
    ("data", "preprocess"),
    ("data", "source"),
    ("model", "layers"),
    ("model", "layers", 0, "units"),
    ("model", "layers", 0, "activation"),
    ("model", "layers", 0, "init"),
    ("model", "layers", 1, "init_scale"),
    ("model", "weights"),
    ("loss",),
    ("numerics", "dtype"),
    ("numerics", "mode"),
    ("train", "steps"),
    ("train", "batch_size"),
    ("train", "learning_rate"),
    ("train", "optimizer"),
    ("train", "momentum"),
    ("train", "eps"),
    ("train", "schedule"),
    ("train", "lr_gamma"),
    ("train", "clip_grad_norm"),
    ("check", "fail_on"),
    ("unknown_key",),
]
WORDS = [
    "relu",
    "sigmoid",
    "softmax",
    "xavier",
    "bce",
    "cross_entropy",
    "adam",
    "float16",
    "naive",
    "full",
    "binary",
    "classification",
    "random",
    "csv",
    "npz",
    "exponential",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, -1, 1, 2, 7, 10**9, 10**12, 2**63, 10**400 // 10**300]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS),
    st.text(max_size=12),
    st.text(st.characters(max_codepoint=0x9F), max_size=6),  # control characters
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def put(spec: dict, path: tuple, value) -> None:
    node = spec
    for part in path[:-1]:
        if isinstance(node, list):
            if not isinstance(part, int) or part >= len(node):
                return
        elif not isinstance(node, dict):
            return
        node = node[part] if isinstance(node, list) else node.setdefault(part, {})
    in_list = isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node)
    if isinstance(node, dict) or in_list:
        node[path[-1]] = value


@st.composite
def spec_texts(draw) -> bytes:
    """A spec: the base with some keys set to hostile values, dumped, then perhaps mangled."""
    spec = yaml.safe_load(yaml.safe_dump(BASE))
    for _ in range(draw(st.integers(0, 4))):
        put(spec, draw(st.sampled_from(KEYS)), draw(VALUES))
    text = yaml.safe_dump(spec, allow_unicode=True, default_flow_style=draw(st.booleans()))
    mangle = draw(st.sampled_from(["none", "insert", "truncate", "alias", "encode"]))
    if mangle == "insert":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(max_size=4)) + text[at:]
    elif mangle == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    elif mangle == "alias":
        levels = draw(st.integers(1, 9))
        lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
        lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
        text += "\n".join(lines) + f"\nname: *l{levels - 1}\n"
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    return text.encode(encoding, errors="replace")


@st.composite
def data_files(draw) -> tuple[str, bytes]:
    """A CSV or npz data file: sane, odd values, odd shapes, or not that format at all."""
    kind = draw(st.sampled_from(["csv", "npz", "npz-text", "csv-binary"]))
    rows = draw(st.integers(0, 6))
    cols = draw(st.integers(1, 4))
    cell = st.one_of(st.floats(), st.sampled_from(["", "nan", "inf", "x", "1e999", '"q"']))
    if kind == "csv":
        header = ",".join(["y", *[f"f{j}" for j in range(cols)]])
        body = [
            ",".join(str(draw(cell)) for _ in range(cols + draw(st.integers(0, 2))))
            for _ in range(rows)
        ]
        return "csv", ("\n".join([header, *body]) + "\n").encode()
    if kind == "npz":
        buf = io.BytesIO()
        x = np.asarray(draw(st.lists(st.floats(), min_size=rows * cols, max_size=rows * cols)))
        arrays = {"x": x.reshape(rows, cols) if draw(st.booleans()) else x}
        if draw(st.booleans()):
            arrays["y"] = np.asarray(draw(st.lists(st.floats(), min_size=rows, max_size=rows)))
        np.savez(buf, **arrays)
        return "npz", buf.getvalue()
    if kind == "npz-text":
        return "npz", b"this is text, not a zip archive\n"
    return "csv", bytes(draw(st.lists(st.integers(0, 255), max_size=64)))


def run_case(tmp_path, args) -> None:
    started = time.perf_counter()
    r = CliRunner().invoke(main, [str(a) for a in args])
    seconds = time.perf_counter() - started
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code in (0, 1, 2), r.output
    assert "Traceback" not in r.output
    if r.exit_code == 2:
        assert r.output.strip(), "exit 2 needs a message"
    assert seconds < CASE_SECONDS, f"{seconds:.1f}s for {args}"
    if os.environ.get("NANDOCTOR_FUZZ_LOG"):  # the long run: one line per case, to follow it
        with open(os.environ["NANDOCTOR_FUZZ_LOG"], "a") as log:
            log.write(f"{r.exit_code} {seconds:.2f}\n")


@FUZZ
@given(text=spec_texts())
def test_fuzzed_specs_end_in_a_result_or_a_message(tmp_path_factory, text):
    tmp_path = tmp_path_factory.mktemp("spec")
    path = tmp_path / "s.yaml"
    path.write_bytes(text)
    run_case(tmp_path, ["run", path, "--steps", "3", "--no-verify", "--format", "json"])


@FUZZ
@given(data=data_files(), loss=st.sampled_from(["mse", "bce", "cross_entropy"]))
def test_fuzzed_data_files_end_in_a_result_or_a_message(tmp_path_factory, data, loss):
    tmp_path = tmp_path_factory.mktemp("data")
    kind, content = data
    (tmp_path / f"d.{kind}").write_bytes(content)
    last = {"mse": "linear", "bce": "sigmoid", "cross_entropy": "softmax"}[loss]
    spec = {
        "data": {"source": kind, "path": f"d.{kind}"} | ({"target": "y"} if kind == "csv" else {}),
        "model": {"layers": [{"units": 2, "activation": last}]},
        "loss": loss,
        "train": {"steps": 3},
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    run_case(tmp_path, ["run", tmp_path / "s.yaml", "--no-verify", "--format", "json"])
