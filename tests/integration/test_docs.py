"""The repository documents itself: generated docs are current, links stay inside the repository,
every JSON field a command prints (run, sweep, check, trace) is documented, and every declared
extra is used."""

import json
import re
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from nandoctor.cli import main
from nandoctor.spec.reference import REGENERATE, markdown_reference

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_spec_reference_is_current():
    committed = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
    assert committed == markdown_reference(), f"docs/spec.md is out of date: run `{REGENERATE}`"


def test_schema_markdown_prints_the_reference_with_every_key():
    r = invoke("schema", "--markdown")
    assert r.exit_code == 0 and r.stdout == markdown_reference()
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|", r.stdout, re.MULTILINE)
    keys = {key: (kind.strip(), default.strip()) for key, kind, default in rows}
    assert keys["outputs"] == ("int or null", "`null`")
    assert keys["units"] == ("int", "required")
    assert keys["learning_rate"] == ("float", "`0.01`")
    assert "| `beta1` | float | `0.9` | ≥ 0, < 1 |" in r.stdout
    assert "`sgd`, `momentum`, `nesterov`, `rmsprop`, `adam`, `adamw`, `adagrad`" in r.stdout
    assert "## `model.layers[]`" in r.stdout


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_links_stay_inside_the_repository(doc):
    text = doc.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://|#|mailto:", target):
            continue
        path = (doc.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"{doc.name} links outside the repository: {target}"
        assert path.exists(), f"{doc.name} links to a missing file: {target}"


def test_nothing_refers_to_documents_outside_the_repository():
    # the design notes this project started from (spelled in pieces so this line does not match)
    outside = re.compile("CONTR" + "ACT" + r"\b|/wo" + "rk/")
    files = [*DOCS, ROOT / "CHANGELOG.md", ROOT / "pyproject.toml", ROOT / ".ci" / "run"]
    files += [p for d in ("nandoctor", "tests", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in files
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if outside.search(line)
    ]
    assert found == [], "point these at docs/spec.md, docs/output.md or the README instead"


def json_keys(doc, skip=("changes", "inputs", "settings", "variables")) -> set[str]:
    """Every key at every depth, except the user-named ones (spec keys, tensor and variable
    names)."""
    if isinstance(doc, dict):
        own = {k for k in doc if "." not in k}
        return own | {k for key, v in doc.items() if key not in skip for k in json_keys(v)}
    if isinstance(doc, list):
        return {k for v in doc for k in json_keys(v)}
    return set()


def test_output_doc_names_every_json_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {layers: [{units: 0}]}\n")
    relu = CONFIGS / "relu_high_lr.yaml"
    runs = [
        invoke("run", relu, "--format", "json", "--no-verify"),
        invoke("run", CONFIGS / "dead_relu.yaml", "--steps", "60", "--format", "json"),
        invoke("sweep", relu, "--lr", "1,3", "--steps", "30", "--format", "json"),
        invoke("check", relu, bad, "--steps", "20", "--format", "json"),
        invoke("trace", "--format", "json", ROOT / "examples" / "adam_eps0" / "train.py"),
        invoke("trace", "--format", "json", ROOT / "examples" / "nan_in_data.py"),
    ]
    fields = set().union(*(json_keys(json.loads(r.stdout)) for r in runs))
    documented = set(re.findall(r"`(\w+)`", (ROOT / "docs" / "output.md").read_text()))
    assert {"first_nonfinite", "recommendations", "max_stable_lr", "problems", "operands"} <= fields
    assert fields - documented == set(), "add these JSON fields to docs/output.md"


def test_every_declared_extra_is_imported_somewhere():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get(
        "optional-dependencies", {}
    )
    source = "\n".join(p.read_text() for p in (ROOT / "nandoctor").rglob("*.py"))
    for extra, requirements in extras.items():
        if extra == "test":
            continue
        for requirement in requirements:
            module = re.match(r"[A-Za-z0-9_.-]+", requirement).group().lower().replace("-", "_")
            used = re.search(
                rf"^\s*(import|from) {re.escape(module)}\b", source, re.MULTILINE | re.IGNORECASE
            )
            assert used, f"extra {extra!r} declares {requirement} but nandoctor never imports it"


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("blog_randn_sigmoid", ["layer 1 5%, layer 2 40%", "peaked at 5.42"]),
        ("blog_xavier_sigmoid", ["layer 1 0%, layer 2 0%", "peaked at 1.64"]),
        ("blog_xavier_lr1", ["layer 1 0%, layer 2 0%", "peaked at 3.16"]),
    ],
)
def test_the_readme_says_what_run_prints_for_the_blog_programs(name, said):
    """The README quotes each blog spec's verdict and notes: healthy, partly saturated shares and
    the largest sigmoid |z| (no NaN, no stall)."""
    r = invoke("run", CONFIGS / f"{name}.yaml", "--format", "json")
    doc = json.loads(r.output)
    assert r.exit_code == 0 and doc["status"] == "healthy" and not doc["warnings"]
    notes = " ".join(doc["notes"])
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert 'nandoctor prints "✓ healthy: every value finite" for all three' in readme
    assert "they saturate and stop learning" not in readme
    for part in said:
        assert part in notes
        number = part.split()[-1] if part.startswith("peaked") else part.split()[-1]
        assert number.rstrip("%") in readme, number
