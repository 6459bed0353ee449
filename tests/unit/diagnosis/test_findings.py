"""Findings and the numbers in their sentences."""

import re
from pathlib import Path

import pytest

from nandoctor.diagnosis.diagnose import diagnose
from nandoctor.diagnosis.findings import fmt_projected_steps
from nandoctor.engine.runs import train
from nandoctor.spec.models import load_spec

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


@pytest.mark.parametrize(
    ("steps", "words"),
    [
        (3.84, "about 4 more steps"),
        (0.3, "about 1 more step"),
        (1.4, "about 1 more step"),
        (12.4, "about 12 more steps"),
        (1234.5, "about 1,200 more steps"),
        (98765.0, "about 99,000 more steps"),
    ],
)
def test_projected_steps_are_whole_and_rounded_to_what_a_projection_knows(steps, words):
    assert fmt_projected_steps(steps) == words


def test_the_explosion_projection_counts_whole_steps():
    d = diagnose(train(load_spec(CONFIGS / "exploding_warning.yaml"))[0])
    (warning,) = [w for w in d.warnings if w.id == "exploding_gradient"]
    assert re.search(r"overflows float64 in about [\d,]+ more steps?$", warning.summary)
