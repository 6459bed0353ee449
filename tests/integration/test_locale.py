"""Any terminal, any locale: reports print on a stdout that is not UTF-8, and machine-readable
reports stay valid for any file name."""

import json
import os
import subprocess
import sys
import xml.dom.minidom
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"


def nandoctor(*args, encoding: str, cwd=ROOT):
    env = {**os.environ, "PYTHONIOENCODING": encoding, "LC_ALL": "C", "COLUMNS": "120"}
    env.pop("NO_COLOR", None)
    return subprocess.run(
        [sys.executable, "-m", "nandoctor", *map(str, args)],
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=240,
    )


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
@pytest.mark.parametrize(
    "args",
    [
        ["run", CONFIGS / "relu_high_lr.yaml", "--no-verify"],
        ["sweep", CONFIGS / "relu_high_lr.yaml", "--lr", "0.1,3"],
        ["check", CONFIGS / "healthy.yaml", "--steps", "5"],
    ],
    ids=["run", "sweep", "check"],
)
def test_text_reports_print_on_a_terminal_that_is_not_utf8(encoding, args):
    r = nandoctor(*args, encoding=encoding)
    err = r.stderr.decode(encoding, "replace")
    assert r.returncode in (0, 1), err
    assert b"Traceback" not in r.stderr and b"UnicodeEncodeError" not in r.stderr
    out = r.stdout.decode(encoding)  # every byte is one the terminal's encoding can show
    assert out.strip()


def test_a_file_name_with_control_characters_keeps_junit_sarif_and_json_valid(tmp_path):
    spec = tmp_path / "odd\x01\x1bname.yaml"
    spec.write_text((CONFIGS / "healthy.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    junit = nandoctor("check", tmp_path, "--steps", "3", "--format", "junit", encoding="utf-8")
    doc = xml.dom.minidom.parseString(junit.stdout)  # raises on a character XML cannot hold
    (case,) = doc.getElementsByTagName("testcase")
    assert "odd\\x01\\x1bname.yaml" in case.getAttribute("name")
    r = nandoctor("check", tmp_path, "--steps", "3", "--format", "json", encoding="utf-8")
    assert json.loads(r.stdout)["results"][0]["path"].endswith("odd\x01\x1bname.yaml")
    r = nandoctor("check", tmp_path, "--steps", "3", "--format", "sarif", encoding="utf-8")
    assert json.loads(r.stdout)["runs"][0]["results"] == []  # valid JSON; a pass is no SARIF result
