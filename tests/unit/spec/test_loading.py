"""Hostile YAML is cheap: aliases bounded, control characters located, messages bounded."""

import time
from pathlib import Path

import pytest

from nandoctor.spec.loading import MAX_EXPANDED_VALUES, parse
from nandoctor.spec.models import SpecError, load_spec

SPEC = "model:\n  layers:\n    - {units: 5}\ntrain: {steps: 5}\n"


def laughs(levels: int = 9, width: int = 10) -> str:
    """A "billion laughs" document: each level an alias list of the one before."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def problem_of(path: Path, overrides=()):
    with pytest.raises(SpecError) as info:
        load_spec(path, overrides)
    (p,) = info.value.problems
    return p


def test_a_billion_laughs_is_refused_at_once(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(SPEC + laughs() + "name: *l8\n")
    assert path.stat().st_size < 700
    started = time.perf_counter()
    p = problem_of(path)
    assert time.perf_counter() - started < 10  # unbounded: over a minute and GBs
    assert "expands to" in p.message and f"{MAX_EXPANDED_VALUES:,}" in p.message
    assert p.line >= 5  # at the first top-level key whose value is too big, not line 1


def test_aliases_within_the_bound_are_read():
    doc = parse(laughs(levels=4))  # 10**4 values: far more than a spec, within the bound
    assert len(doc.data["l3"]) == 10 and doc.data["l3"][0][0][0] == ["lol"] * 10


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x7f", "\x9b", "\ufffe"])
@pytest.mark.parametrize("where", ["value", "key", "comment"])
def test_a_control_character_anywhere_is_a_located_problem(tmp_path, char, where):
    line = {
        "value": f"name: a{char}b\n",
        "key": f"na{char}me: ab\n",
        "comment": f"# a comment {char}\n",
    }[where]
    path = tmp_path / "ctl.yaml"
    path.write_text(SPEC + line, encoding="utf-8")
    p = problem_of(path)
    assert (p.line, f"U+{ord(char):04X}") == (5, p.message.split()[2])
    assert "control character" in p.message and p.col > 1


def test_invalid_utf8_is_located(tmp_path):
    path = tmp_path / "bin.yaml"
    path.write_bytes(SPEC.encode() + b"name: caf\xe9\n")
    p = problem_of(path)
    assert "not a UTF-8" in p.message and p.line == 5


def test_a_huge_value_is_never_shown_or_diffed_whole(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(SPEC.replace("train: {steps: 5}", "train: {optimizer: " + "x" * 200_000 + "}"))
    started = time.perf_counter()
    p = problem_of(path)
    assert time.perf_counter() - started < 10  # a busy machine; unbounded it is minutes
    assert len(str(p)) < 300


def test_a_set_value_with_a_control_character_points_at_the_set(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SPEC)
    p = problem_of(path, ["train.optimizer=a\x01"])
    assert str(p).startswith("--set train.optimizer=a\\x01:") and "control character" in str(p)


def many_layers(n: int) -> str:
    return "model:\n  layers:\n" + "    - {units: 2}\n" * n


def test_a_file_with_too_many_values_and_no_alias_says_so_at_its_key(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text(many_layers(40_000))  # 120,003 values, every one written out
    p = problem_of(path)
    assert (p.line, p.col) == (2, 3)  # layers:
    assert p.message.startswith(f"model.layers holds over {MAX_EXPANDED_VALUES:,} values (")
    assert "entries and more" in p.message
    assert "alias" not in p.message and "billion" not in p.message


def test_too_many_values_are_refused_without_reading_the_rest(tmp_path):
    """The count stops the reading once past the bound: a syntax error further on is never
    reached (composing all of a file this big takes seconds per 100,000 values)."""
    path = tmp_path / "deep.yaml"
    path.write_text(many_layers(40_000) + "train: {steps: 5\n")  # unclosed, at the very end
    p = problem_of(path)
    assert "holds over" in p.message and "syntax" not in p.message


def test_the_bound_counts_aliases_only_when_there_are_some(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(SPEC + laughs(levels=6) + "name: *l5\n")  # 2.3 million values from 35
    p = problem_of(path)
    assert "expands to 2,345,696 values through its aliases (*name), from 35 in" in p.message
    assert p.line == 8  # l3: the first top-level key whose value alone is too big
