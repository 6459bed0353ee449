"""Renderers for ``nandoctor check`` results: text, json, junit, github, sarif.

Each takes the list of :class:`~nandoctor.check.SpecResult` and returns a string (text returns a
rich renderable). None of them decides anything.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from nandoctor import __version__
from nandoctor.check import SpecResult
from nandoctor.diagnosis.catalogue import CAUSES, CHECK_OUTCOMES, NONFINITE, WARNINGS

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


ERRORS = ("invalid", "error")  # statuses that are JUnit errors rather than failures


def summary(results: list[SpecResult]) -> str:
    failed = sum(not r.passed for r in results)
    counts = [f"{n} {s}" for s in ERRORS if (n := sum(r.status == s for r in results))]
    tail = f" ({', '.join(counts)})" if counts else ""
    return f"{len(results) - failed} passed, {failed} failed{tail}"


def location(r: SpecResult) -> str:
    """``path:line:col`` of the spec line most responsible (yamllint's parsable format)."""
    return f"{r.path}:{r.line}:{r.col}"


def text(results: list[SpecResult]):
    t = Table(box=box.SIMPLE)
    # A spec's location is what a reader searches for: keep it on one line up to 60 characters.
    longest = max((len(r.path) + 5 for r in results), default=4)
    t.add_column("spec", overflow="fold", min_width=min(longest, 60))
    for col in ("result", "status", "verdict"):
        t.add_column(col, overflow="fold")
    for r in results:  # Text, not str: a verdict or path holding "[...]" is not rich markup
        verdict = Text(r.verdict)
        if r.reasons:
            verdict.append(f"  [fails: {', '.join(r.reasons)}]", style="bold")
        t.add_row(
            Text(r.path if r.passed else f"{r.path}:{r.line}"),
            Text("pass", style="green") if r.passed else Text("FAIL", style="bold red"),
            Text(r.status),
            verdict,
        )
    return Group(t, Text(summary(results), style="bold"))


def to_json(results: list[SpecResult]) -> str:
    return json.dumps(
        {
            "passed": all(r.passed for r in results),
            "summary": summary(results),
            "results": [r.to_json() for r in results],
        },
        indent=2,
    )


def junit(results: list[SpecResult]) -> str:
    suite = ET.Element(
        "testsuite",
        name="nandoctor check",
        tests=str(len(results)),
        failures=str(sum(not r.passed and r.status not in ERRORS for r in results)),
        errors=str(sum(r.status in ERRORS for r in results)),
        time=f"{sum(r.seconds for r in results):.3f}",
    )
    for r in results:
        case = ET.SubElement(
            suite, "testcase", classname="nandoctor", name=r.path, time=f"{r.seconds:.3f}"
        )
        if r.passed:
            continue
        tag = "error" if r.status in ERRORS else "failure"
        message = f"{location(r)}: {r.verdict}"
        el = ET.SubElement(case, tag, message=message, type=",".join(r.reasons))
        problems = [f"{r.path}:{p['line']}:{p['col']}: {p['message']}" for p in r.problems]
        el.text = "\n".join(problems or [message])
    root = ET.Element("testsuites")
    root.append(suite)
    for el in root.iter():  # a file name may hold characters XML 1.0 cannot carry
        el.attrib = {k: _xml_text(v) for k, v in el.attrib.items()}
        el.text = _xml_text(el.text) if el.text else el.text
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


# Characters XML 1.0 forbids even escaped: C0 controls but tab, newline and carriage return.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(s: str) -> str:
    """``s`` with each character XML cannot hold written as ``\\xNN``, so the report stays valid."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", s)


def _escape_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_prop(s: str) -> str:
    return _escape_data(s).replace(":", "%3A").replace(",", "%2C")


def github(results: list[SpecResult]) -> str:
    """GitHub Actions workflow commands: one ``::error`` per failing spec (``::notice`` per pass)."""
    lines = []
    for r in results:
        level = "notice" if r.passed else "error"
        title = "nandoctor: " + ("passed" if r.passed else ", ".join(r.reasons))
        lines.append(
            f"::{level} file={_escape_prop(r.path)},line={r.line},col={r.col},"
            f"title={_escape_prop(title)}::{_escape_data(r.verdict)}"
        )
    return "\n".join(lines)


def _uri(path: str) -> str:
    """A SARIF artifact URI: relative paths stay relative (to the working folder), '/'-separated."""
    p = Path(path)
    return p.resolve().as_uri() if p.is_absolute() else quote(p.as_posix())


def sarif(results: list[SpecResult]) -> str:
    rules = [
        {"id": k, "shortDescription": {"text": e.meaning}}
        for k, e in (CHECK_OUTCOMES | WARNINGS).items()
    ]
    ids = [rule["id"] for rule in rules]
    out = []
    for r in results:
        for reason in r.reasons:
            out.append(
                {
                    "ruleId": reason,
                    "ruleIndex": ids.index(reason),
                    "level": "error",
                    "message": {"text": r.verdict},
                    "locations": [
                        {
                            "physicalLocation": {
                                "artifactLocation": {"uri": _uri(r.path)},
                                "region": {"startLine": r.line, "startColumn": r.col},
                            }
                        }
                    ],
                }
            )
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "nandoctor",
                        "version": __version__,
                        "informationUri": "https://pypi.org/project/nandoctor/",
                        "rules": rules,
                    }
                },
                "results": out,
            }
        ],
    }
    return json.dumps(doc, indent=2)


def list_causes() -> str:
    lines = ["causes (cause.id):"]
    lines += [f"  {k:20} {e.meaning}" for k, e in CAUSES.items()]
    lines += ["warnings (warnings[].id; usable in check.fail_on):"]
    lines += [f"  {k:20} {e.meaning}" for k, e in WARNINGS.items()]
    lines += [f"  {NONFINITE:20} (policy id) fail when any NaN or Inf appears (the default)"]
    return "\n".join(lines)


# format name -> renderer(results): a string, or a rich renderable for the terminal.
RENDERERS = {"text": text, "json": to_json, "junit": junit, "github": github, "sarif": sarif}
