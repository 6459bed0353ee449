"""``nandoctor check``: collecting specs, the check: policy, the five report formats, parallel runs
equal to serial ones, and usage errors. Long specs are capped with --steps to keep this fast."""

import io
import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from nandoctor.check import (
    check_one,
    collect,
    run_checks,
)
from nandoctor.cli import main
from nandoctor.diagnosis.catalogue import CAUSES, WARNINGS

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"

INVALID_SPEC = """\
seed: 0
model:
  layers:
    - {units: 5, activation: linear}
train:
  steps: 10
  learnig_rate: 0.1
"""
INVALID_LINE = 7  # the line of learnig_rate above


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def line_of(path, key: str) -> int:
    """1-based line of the first line of ``path`` whose text starts (after indent) with ``key:``."""
    lines = path.read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if text.lstrip().startswith(f"{key}:"))


def untimed(doc: dict) -> dict:
    return {**doc, "results": [{**r, "seconds": None} for r in doc["results"]]}


@pytest.fixture
def mixed(tmp_path):
    """A folder with a healthy, two failing (one reads a CSV beside it) and an invalid spec."""
    for name in ("healthy.yaml", "relu_high_lr.yaml", "zero_variance_standardize.yaml"):
        shutil.copy(CONFIGS / name, tmp_path / name)
    shutil.copytree(CONFIGS / "data", tmp_path / "data")  # data paths are relative to the spec
    (tmp_path / "invalid.yaml").write_text(INVALID_SPEC)
    return tmp_path


# -- collecting ------------------------------------------------------------------------------


def test_collect_files_folders_and_globs(tmp_path):
    (tmp_path / "b.yaml").write_text("x: 1\n")
    (tmp_path / "a.yml").write_text("x: 1\n")
    (tmp_path / "notes.txt").write_text("not a spec\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("x: 1\n")
    a, b, c = (str(tmp_path / n) for n in ("a.yml", "b.yaml", "sub/c.yaml"))

    assert collect([str(tmp_path)]) == [a, b, c]  # sorted, recursive, only *.yaml / *.yml
    assert collect([b, str(tmp_path)]) == [b, a, c]  # input order first, no repeats
    assert collect([f"{tmp_path}/./b.yaml", b]) == [b]  # the same file spelt twice
    assert collect([f"{tmp_path}/*.yaml"]) == [b]
    assert collect([f"{tmp_path}/**/*.y*ml"]) == [a, b, c]
    assert collect([f"{tmp_path}/s*"]) == [c]  # a folder matched by a glob is searched
    assert collect([f"{tmp_path}/*.json"]) == []
    assert collect(["missing.yaml"]) == ["missing.yaml"]  # a named file is kept: it will fail


@pytest.mark.parametrize("missing", ["missing.yaml", "missing_folder/", "gone.yaml"])
def test_a_path_that_does_not_exist_is_a_usage_error_not_a_failed_spec(tmp_path, missing):
    shutil.copy(CONFIGS / "healthy.yaml", tmp_path / "s.yaml")
    (tmp_path / "gone.yaml").symlink_to(tmp_path / "nowhere.yaml")  # a link to nothing
    r = invoke("check", tmp_path / "s.yaml", tmp_path / missing)
    assert r.exit_code == 2, r.output
    assert f"no such file or folder: {tmp_path / missing}" in r.output
    assert "PASS" not in r.output  # refused before any spec ran


def test_a_glob_follows_a_symlink_loop_once_and_checks_each_file_once(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("x: 1\n")
    (tmp_path / "sub" / "loop").symlink_to(tmp_path)  # sub/loop -> the folder above it
    (tmp_path / "link.yaml").symlink_to(tmp_path / "sub" / "c.yaml")
    c = str(tmp_path / "sub" / "c.yaml")
    assert collect([f"{tmp_path}/**/*.yaml"]) == [str(tmp_path / "link.yaml")]
    assert collect([c, f"{tmp_path}/**/*.yaml", str(tmp_path)]) == [c]


# -- verdicts and policy ---------------------------------------------------------------------


def test_mixed_folder_reports_every_spec(mixed):
    r = invoke("check", mixed, "--steps", 20, "--format", "json")
    assert r.exit_code == 1, r.output
    doc = json.loads(r.stdout)
    by_name = {res["path"].rsplit("/", 1)[-1]: res for res in doc["results"]}
    assert [res["path"] for res in doc["results"]] == collect([str(mixed)])
    assert set(by_name) == {
        "healthy.yaml",
        "invalid.yaml",
        "relu_high_lr.yaml",
        "zero_variance_standardize.yaml",
    }
    assert doc["passed"] is False
    assert doc["summary"] == "1 passed, 3 failed (1 invalid)"

    healthy = by_name["healthy.yaml"]
    assert healthy["passed"] and healthy["status"] == "healthy" and healthy["steps_run"] == 20

    invalid = by_name["invalid.yaml"]
    assert not invalid["passed"] and invalid["status"] == "invalid"
    assert invalid["reasons"] == ["invalid"]
    assert invalid["line"] == INVALID_LINE and invalid["col"] == 3
    assert "learnig_rate" in invalid["verdict"] and "learning_rate" in invalid["verdict"]
    assert invalid["problems"][0]["line"] == INVALID_LINE

    relu = by_name["relu_high_lr.yaml"]
    assert relu["reasons"] == ["nonfinite"] and relu["cause"] == "exploding_gradient"
    assert relu["first_nonfinite"]["step"] == 9
    assert relu["line"] == line_of(mixed / "relu_high_lr.yaml", "learning_rate")

    zero = by_name["zero_variance_standardize.yaml"]
    assert zero["cause"] == "bad_input" and zero["first_nonfinite"]["phase"] == "preprocess"
    assert zero["line"] == line_of(mixed / "zero_variance_standardize.yaml", "preprocess")


def test_text_table_has_a_row_per_spec_and_a_total(mixed, monkeypatch):
    monkeypatch.chdir(mixed)  # short relative paths: a long tmp path would fold inside a name
    r = invoke("check", ".", "--steps", 20)
    assert r.exit_code == 1
    out = r.stdout
    for name in ("healthy.yaml", "relu_high_lr.yaml", "zero_variance_standardize.yaml"):
        assert name in out
    assert f"invalid.yaml:{INVALID_LINE}" in out  # an invalid spec shows the line at fault
    assert "exploding_gradient" in out
    assert out.rstrip().splitlines()[-1] == "1 passed, 3 failed (1 invalid)"


def test_all_healthy_folder_passes(tmp_path):
    shutil.copy(CONFIGS / "healthy.yaml", tmp_path / "a.yaml")
    text = (CONFIGS / "healthy.yaml").read_text().replace("seed: 0", "seed: 1")
    (tmp_path / "b.yml").write_text(text)
    r = invoke("check", tmp_path, "--steps", 30)
    assert r.exit_code == 0, r.output
    assert "2 passed, 0 failed" in r.stdout


def test_steps_caps_the_budget_but_never_raises_it():
    r = invoke(
        "check",
        CONFIGS / "healthy.yaml",
        CONFIGS / "exploding_warning.yaml",  # a budget of 9 steps
        "--steps",
        7,
        "--format",
        "json",
    )
    assert r.exit_code == 0, r.output
    assert [res["steps_run"] for res in json.loads(r.stdout)["results"]] == [7, 7]
    r = invoke("check", CONFIGS / "exploding_warning.yaml", "--steps", 50, "--format", "json")
    assert json.loads(r.stdout)["results"][0]["steps_run"] == 9


def test_fail_on_adds_to_the_policy():
    spec = CONFIGS / "dead_relu.yaml"
    r = invoke("check", spec, "--steps", 50, "--format", "json")
    assert r.exit_code == 0, r.output  # the default policy fails on nonfinite only
    res = json.loads(r.stdout)["results"][0]
    assert res["passed"] and res["status"] == "warning" and "dead_relu" in res["verdict"]

    r = invoke("check", spec, "--steps", 50, "--format", "json", "--fail-on", "dead_relu")
    assert r.exit_code == 1
    res = json.loads(r.stdout)["results"][0]
    assert not res["passed"] and res["reasons"] == ["dead_relu"]
    assert res["line"] == line_of(spec, "learning_rate")

    # --fail-on adds to the policy: a NaN run still fails, whatever the list (even empty)
    nan_spec = CONFIGS / "adam_eps_zero.yaml"
    for ids in ("dead_relu", "", ","):
        r = invoke("check", nan_spec, "--steps", 5, "--fail-on", ids)
        assert r.exit_code == 1, (ids, r.output)
    # accepting NaN takes an explicit word
    assert invoke("check", nan_spec, "--steps", 5, "--allow-nonfinite").exit_code == 0


def test_a_spec_listing_only_warnings_still_fails_on_nan(tmp_path):
    spec = tmp_path / "nan.yaml"
    text = (CONFIGS / "adam_eps_zero.yaml").read_text()
    spec.write_text(text + "check:\n  fail_on: [dead_relu]\n")
    assert invoke("check", spec, "--steps", 5).exit_code == 1
    spec.write_text(text + "check:\n  fail_on: [dead_relu]\n  allow_nonfinite: true\n")
    assert invoke("check", spec, "--steps", 5).exit_code == 0


def test_policy_from_the_spec(tmp_path):
    spec = tmp_path / "dead.yaml"
    spec.write_text((CONFIGS / "dead_relu.yaml").read_text() + "check:\n  fail_on: [dead_relu]\n")
    r = invoke("check", spec, "--steps", 50, "--format", "json")
    assert r.exit_code == 1
    assert json.loads(r.stdout)["results"][0]["reasons"] == ["dead_relu"]


def test_max_final_loss(tmp_path):
    spec = tmp_path / "strict.yaml"
    # 1e-9 is a string to YAML 1.1; the schema types it as a float
    spec.write_text((CONFIGS / "healthy.yaml").read_text() + "check: {max_final_loss: 1e-9}\n")
    r = invoke("check", spec, "--steps", 20, "--format", "json")
    assert r.exit_code == 1, r.output
    res = json.loads(r.stdout)["results"][0]
    assert res["status"] == "healthy" and res["reasons"] == ["max_final_loss"]
    assert "max_final_loss 1.00e-09" in res["verdict"]
    assert res["line"] == line_of(spec, "check")

    spec.write_text((CONFIGS / "healthy.yaml").read_text() + "check: {max_final_loss: 100.0}\n")
    assert invoke("check", spec, "--steps", 20).exit_code == 0


def test_a_crash_is_a_failed_result_not_an_abort(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("nandoctor.engine.runs.train", boom)
    seen = []
    results = run_checks([str(CONFIGS / "healthy.yaml")] * 2, jobs=1, on_done=seen.append)
    assert seen == results
    assert [(r.status, r.passed, r.reasons) for r in results] == [("error", False, ["error"])] * 2
    assert "RuntimeError: boom" in results[0].verdict


def test_data_error_is_invalid_with_its_line(tmp_path):
    spec = tmp_path / "nodata.yaml"
    text = (CONFIGS / "zero_variance_standardize.yaml").read_text()
    spec.write_text(text.replace("data/constant_feature.csv", "data/missing.csv"))
    res = check_one((str(spec), 5, None))
    assert res.status == "invalid" and not res.passed
    assert res.line == line_of(spec, "path") and "data.path" in res.verdict


def test_blas_is_single_threaded_while_checking_and_restored_after():
    from threadpoolctl import threadpool_info

    from nandoctor.parallel import single_threaded_blas

    def blas_threads():
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    before = blas_threads()
    if not before:
        pytest.skip("no BLAS library found by threadpoolctl")
    with single_threaded_blas():
        assert set(blas_threads()) == {1}
    assert blas_threads() == before


# -- report formats --------------------------------------------------------------------------


def test_junit(mixed):
    r = invoke("check", mixed, "--steps", 20, "--format", "junit")
    assert r.exit_code == 1
    root = ET.fromstring(r.stdout.encode())
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == collect([str(mixed)])
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "2", "1")
    by_name = {c.get("name").rsplit("/", 1)[-1]: c for c in cases}

    assert list(by_name["healthy.yaml"]) == []  # passed: no child element
    failure = by_name["relu_high_lr.yaml"].find("failure")
    lr_line = line_of(mixed / "relu_high_lr.yaml", "learning_rate")
    assert f"relu_high_lr.yaml:{lr_line}:" in failure.get("message")
    for part in ("cause exploding_gradient", "step 9", "layer 2", "pre_activation"):
        assert part in failure.get("message"), part
    assert failure.get("type") == "nonfinite"
    failure = by_name["zero_variance_standardize.yaml"].find("failure")
    assert "cause bad_input" in failure.get("message") and "preprocess" in failure.get("message")
    error = by_name["invalid.yaml"].find("error")
    assert f"invalid.yaml:{INVALID_LINE}:3: " in error.get("message")
    assert "learnig_rate" in error.get("message") and error.get("type") == "invalid"
    assert f"invalid.yaml:{INVALID_LINE}:3: train.learnig_rate" in error.text


SARIF_KEYS = {
    "log": {"$schema", "version", "runs", "inlineExternalProperties", "properties"},
    "driver": {"name", "version", "semanticVersion", "informationUri", "rules", "fullName"},
    "rule": {"id", "name", "shortDescription", "fullDescription", "help", "helpUri"},
    "result": {"ruleId", "ruleIndex", "level", "message", "locations", "kind", "properties"},
    "region": {"startLine", "startColumn", "endLine", "endColumn"},
}


def sarif_problems(doc: dict) -> list[str]:
    """What in ``doc`` breaks the SARIF 2.1.0 schema's rules for the parts nandoctor writes."""
    problems: list[str] = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    def known(obj: dict, kind: str) -> None:
        need(set(obj) <= SARIF_KEYS[kind], f"{kind}: unknown keys {set(obj) - SARIF_KEYS[kind]}")

    known(doc, "log")
    need(doc.get("version") == "2.1.0", "version must be 2.1.0")
    need("sarif-2.1.0" in doc.get("$schema", ""), "$schema must name SARIF 2.1.0")
    runs = doc.get("runs")
    need(isinstance(runs, list) and len(runs) >= 1, "runs must be a non-empty list")
    for run in runs or []:
        driver = run.get("tool", {}).get("driver", {})
        known(driver, "driver")
        need(isinstance(driver.get("name"), str) and driver["name"] != "", "driver.name")
        rules = driver.get("rules", [])
        ids = [rule.get("id") for rule in rules]
        need(len(set(ids)) == len(ids), "rule ids must be unique")
        for rule in rules:
            known(rule, "rule")
            need(isinstance(rule.get("id"), str), "rule.id must be a string")
            need(isinstance(rule.get("shortDescription", {}).get("text"), str), "rule text")
        for res in run.get("results", []):
            known(res, "result")
            need(isinstance(res.get("message", {}).get("text"), str), "result.message.text")
            need(res.get("level", "warning") in ("none", "note", "warning", "error"), "level")
            need(res.get("ruleId") in ids, f"ruleId {res.get('ruleId')} not in rules")
            if "ruleIndex" in res:
                index = res["ruleIndex"]
                need(0 <= index < len(ids) and ids[index] == res.get("ruleId"), "ruleIndex")
            need(len(res.get("locations", [])) >= 1, "result without a location")
            for loc in res.get("locations", []):
                physical = loc.get("physicalLocation", {})
                uri = physical.get("artifactLocation", {}).get("uri")
                need(isinstance(uri, str) and uri != "" and not re.search(r"[\s\\]", uri), "uri")
                region = physical.get("region", {})
                known(region, "region")
                for key in ("startLine", "startColumn"):
                    need(isinstance(region.get(key, 1), int) and region.get(key, 1) >= 1, key)
                need("startLine" in region, "region.startLine")
    return problems


def test_sarif_validator_catches_breakage():
    assert sarif_problems({"version": "2.0", "runs": []})
    bad = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "x", "rules": [{"id": "a"}]}},
                "results": [
                    {
                        "ruleId": "b",
                        "ruleIndex": 0,
                        "message": {"text": "m"},
                        "locations": [
                            {"physicalLocation": {"artifactLocation": {"uri": "a b"}, "region": {}}}
                        ],
                    }
                ],
            }
        ],
    }
    found = " ".join(sarif_problems(bad))
    for what in ("rule text", "ruleId b", "ruleIndex", "uri", "region.startLine"):
        assert what in found, what


def test_sarif(mixed):
    r = invoke("check", mixed, "--steps", 20, "--format", "sarif")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert sarif_problems(doc) == []
    run = doc["runs"][0]
    assert run["tool"]["driver"]["name"] == "nandoctor"
    rule_ids = {rule["id"] for rule in run["tool"]["driver"]["rules"]}
    assert {"nonfinite", "invalid", "max_final_loss", *WARNINGS} <= rule_ids
    got = {
        res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].rsplit("/", 1)[-1]: res
        for res in run["results"]
    }
    assert set(got) == {"relu_high_lr.yaml", "zero_variance_standardize.yaml", "invalid.yaml"}
    region = got["invalid.yaml"]["locations"][0]["physicalLocation"]["region"]
    assert (got["invalid.yaml"]["ruleId"], region["startLine"]) == ("invalid", INVALID_LINE)


GITHUB_LINE = re.compile(r"^::(error|notice) file=[^,]+,line=\d+,col=\d+,title=[^:]*::.+")


def test_github_annotations_point_at_the_line_at_fault():
    spec = CONFIGS / "relu_high_lr.yaml"
    r = invoke("check", spec, CONFIGS / "healthy.yaml", "--steps", 20, "--format", "github")
    assert r.exit_code == 1
    lines = r.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert GITHUB_LINE.match(line), line
    error, notice = lines
    assert error.startswith(f"::error file={spec},line={line_of(spec, 'learning_rate')},col=3,")
    assert "cause exploding_gradient" in error
    assert notice.startswith("::notice file=") and "healthy.yaml" in notice


def test_github_escapes_newlines_and_commas(tmp_path):
    spec = tmp_path / "a,b.yaml"
    spec.write_text("model: [\n")
    r = invoke("check", spec, "--format", "github")
    assert r.exit_code == 1
    (line,) = r.stdout.splitlines()
    assert GITHUB_LINE.match(line) and "a%2Cb.yaml" in line


@pytest.mark.parametrize("fmt", ["junit", "json", "sarif", "github"])
def test_output_file_gets_the_report_and_the_terminal_the_table(tmp_path, fmt):
    out = tmp_path / f"report.{fmt}"
    r = invoke("check", CONFIGS / "healthy.yaml", "--steps", 5, "--format", fmt, "-o", out)
    assert r.exit_code == 0, r.output
    assert "1 passed, 0 failed" in r.stdout and "verdict" in r.stdout  # the table
    report = out.read_text()
    if fmt == "junit":
        assert ET.fromstring(report.encode()).find("testsuite").get("tests") == "1"
    elif fmt == "github":
        assert GITHUB_LINE.match(report)
    else:
        assert json.loads(report)


def test_parallel_results_equal_serial_ones():
    args = ["check", CONFIGS, "--steps", 30, "--format", "json"]
    serial = invoke(*args, "--jobs", 1)
    parallel = invoke(*args, "--jobs", 2)
    assert serial.exit_code == parallel.exit_code == 1
    one, two = json.loads(serial.stdout), json.loads(parallel.stdout)
    assert len(one["results"]) == len(collect([str(CONFIGS)])) >= 16
    assert untimed(one) == untimed(two)


def test_text_renders_paths_and_verdicts_literally():
    """A verdict or path holding [brackets] is text, not rich markup."""
    from rich.console import Console

    from nandoctor.check import SpecResult
    from nandoctor.report import check as checkfmt

    result = SpecResult(
        path="specs/run[1].yaml",
        passed=False,
        verdict="invalid spec: expected ']' [bold]here[/bold]",
        status="invalid",
        reasons=["invalid"],
        line=3,
    )
    console = Console(file=io.StringIO(), width=160)
    console.print(checkfmt.text([result]))
    out = console.file.getvalue()
    assert "specs/run[1].yaml:3" in out
    assert "[bold]here[/bold]" in out and "[fails: invalid]" in out
    assert out.rstrip().endswith("0 passed, 1 failed (1 invalid)")


def test_pre_commit_hook():
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    (hook,) = [h for h in hooks if h["id"] == "nandoctor-check"]
    assert hook["entry"] == "nandoctor check" and hook["language"] == "python"
    assert hook["pass_filenames"] is True
    files = re.compile(hook["files"])
    assert files.search("specs/a.yaml") and files.search("b.yml") and not files.search("c.json")


# -- causes and usage ------------------------------------------------------------------------


def test_list_causes():
    r = invoke("check", "--list-causes")
    assert r.exit_code == 0, r.output
    for ident in [*CAUSES, *WARNINGS, "nonfinite"]:
        assert re.search(rf"^\s+{ident}\s+\S", r.stdout, re.M), ident


@pytest.mark.parametrize(
    "args, message",
    [
        (["check"], "Missing argument"),
        (["check", "{empty}"], "no specs found"),
        (["check", "{empty}/*.yaml"], "no specs found"),
        (["check", CONFIGS / "healthy.yaml", "--fail-on", "nonfinite,bogus"], "bogus"),
        (["check", CONFIGS / "healthy.yaml", "--format", "xml"], "xml"),
        (["check", CONFIGS / "healthy.yaml", "--jobs", 0], "--jobs"),
    ],
)
def test_usage_errors_exit_2(tmp_path, args, message):
    args = [str(a).replace("{empty}", str(tmp_path)) for a in args]
    r = invoke(*args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output
