"""The catalogue is the one place ids are declared: everything that lists ids derives from it."""

import ast
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nandoctor.check import parse_fail_on
from nandoctor.cli import main
from nandoctor.diagnosis import catalogue
from nandoctor.diagnosis.catalogue import (
    CAUSES,
    CHECK_OUTCOMES,
    FACTORS,
    FAIL_ON_IDS,
    RECOMMENDATIONS,
    WARNINGS,
)
from nandoctor.errors import UsageProblem
from nandoctor.report.check import sarif

DIAGNOSIS = Path(catalogue.__file__).parent
# the packages that name findings: the diagnosis of a run, and the cause of a traced script
SOURCES = [*DIAGNOSIS.glob("*.py"), *(DIAGNOSIS.parent / "trace").glob("*.py")]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_the_spec_accepts_exactly_the_policy_ids_of_the_catalogue():
    schema = json.loads(invoke("schema").stdout)
    fail_on = schema["$defs"]["CheckSpec"]["properties"]["fail_on"]["items"]
    assert tuple(fail_on["enum"]) == FAIL_ON_IDS == ("nonfinite", *WARNINGS)


def test_list_causes_prints_every_cause_and_warning_with_its_meaning():
    out = invoke("check", "--list-causes").stdout
    for ident, entry in (CAUSES | WARNINGS).items():
        assert f"{ident}" in out and entry.meaning in out


def test_sarif_declares_a_rule_for_every_outcome_and_warning():
    rules = json.loads(sarif([]))["runs"][0]["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [*CHECK_OUTCOMES, *WARNINGS]


def test_fail_on_option_accepts_the_catalogue_ids_and_lists_them_for_an_unknown_one():
    assert parse_fail_on(",".join(FAIL_ON_IDS)).add == FAIL_ON_IDS
    with pytest.raises(UsageProblem, match=", ".join(FAIL_ON_IDS)):
        parse_fail_on("nonfinite,bogus")


def _literal_ids(call_names: set[str]) -> set[str]:
    """String ids passed first to ``call_names(...)`` anywhere a finding is named."""
    found = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", None)) in call_names
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.add(node.args[0].value)
    return found


def test_every_id_the_diagnosis_writes_is_declared_in_the_catalogue():
    finding_ids = _literal_ids({"Finding", "Cause", "cause", "factor", "warning"})
    assert finding_ids, "the diagnosis names its findings"
    assert finding_ids <= set(CAUSES) | set(FACTORS) | set(WARNINGS)
    recommendation_ids = _literal_ids({"add", "Recommendation"})
    assert recommendation_ids and recommendation_ids <= set(RECOMMENDATIONS)


def test_every_declared_id_is_used_by_the_diagnosis():
    """No dead entries: each id appears in the code that names findings, outside the catalogue."""
    source = "\n".join(p.read_text() for p in SOURCES if p.name != "catalogue.py")
    naive = set(catalogue.NAIVE_FACTOR_OF_OP.values())  # chosen through that table
    for ident in [*CAUSES, *FACTORS, *WARNINGS, *RECOMMENDATIONS]:
        assert f'"{ident}"' in source or ident in naive, ident


def test_a_confirmation_refuted_by_a_failed_experiment_says_so():
    """Mixed precision keeps a run finite by skipping the steps whose gradients overflow: when
    float32 alone did not remove the failure, float16's range is not what it confirms."""
    from nandoctor.diagnosis.catalogue import RECOMMENDATIONS

    mixed = RECOMMENDATIONS["use_mixed_precision"]
    assert "float16's range is the mechanism" in mixed.confirmed(set())
    refuted = mixed.confirmed({"use_float32", "clip_gradients"})
    assert "float32 alone does not remove it" in refuted and "not the mechanism" in refuted
    assert RECOMMENDATIONS["use_float32"].confirmed({"use_mixed_precision"}) == (
        RECOMMENDATIONS["use_float32"].confirms
    )
