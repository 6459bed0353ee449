"""``nandoctor check``: run many specs and judge each by its ``check:`` policy (a CI gate).

A spec fails when its run went non-finite (``nonfinite``), when a warning id listed in
``check.fail_on`` fired, when its final loss exceeds ``check.max_final_loss``, or when it is invalid.
Specs run in worker processes; results come back in input order, identical to a serial run.
"""

from __future__ import annotations

import fnmatch
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from nandoctor.cluster import active_backend
from nandoctor.diagnosis.catalogue import (
    CAUSES,
    CHECK_OUTCOMES,
    FACTORS,
    FAIL_ON_IDS,
    WARNINGS,
    blamed_key,
)
from nandoctor.diagnosis.diagnose import fmt
from nandoctor.diagnosis.findings import Status
from nandoctor.errors import UsageProblem
from nandoctor.parallel import pmap

if TYPE_CHECKING:
    from nandoctor.engine.setup import PreparedRun
    from nandoctor.spec.models import Spec

# a run's status, or: the spec is invalid, or nandoctor itself crashed on it
CheckStatus = Status | Literal["invalid", "error"]


@dataclass
class SpecResult:
    path: str
    passed: bool
    verdict: str  # one line: what happened
    status: CheckStatus
    reasons: list[str] = field(default_factory=list)  # policy ids that failed (or invalid, error)
    cause: str | None = None
    first_nonfinite: dict | None = None
    line: int = 1  # the spec line most responsible
    col: int = 1
    problems: list[dict] = field(default_factory=list)  # for invalid specs: file/line/col/message
    final_loss: float | None = None
    steps_run: int = 0
    seconds: float = 0.0
    threads: int = 1  # BLAS threads the spec trained with (nandoctor.parallel.threads_for)
    loss_curve: list = field(default_factory=list)  # downsampled loss, for pictures (not in JSON)

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "loss_curve"}


@dataclass(frozen=True)
class Policy:
    """What the command line does to every spec's ``check.fail_on``: ``add`` ids to it (never
    replace it), and drop ``nonfinite`` only when ``allow_nonfinite`` says so in as many words.

    ``nonfinite`` is always part of a policy unless allowed explicitly (``--allow-nonfinite`` or
    the spec's ``check.allow_nonfinite: true``): an empty ``--fail-on ''`` from an unset CI
    variable, or a spec listing only warnings, must not turn a NaN run green.
    """

    add: tuple[str, ...] = ()
    allow_nonfinite: bool = False

    def ids(self, spec) -> set[str]:
        ids = {*spec.check.fail_on, *self.add, "nonfinite"}
        if self.allow_nonfinite or spec.check.allow_nonfinite:
            ids.discard("nonfinite")
        return ids


def collect(paths: tuple[str, ...] | list[str]) -> list[str]:
    """Files as given; folders -> every *.yaml/*.yml below, sorted; globs expanded. No repeats.

    A glob's matches are taken like the paths themselves (a matched folder is searched). One file
    reached by several paths (``./a//b.yaml``, a symlink, a folder and a glob) is checked once,
    under the first name it was reached by.
    """
    out: dict[str, str] = {}  # the file itself (real path) -> the name it is reported under
    for p in paths:
        found = [f for g in glob_walk(p) for f in _expand(g)] if _is_glob(p) else _expand(p)
        for f in found:
            out.setdefault(os.path.realpath(f), os.path.normpath(f))
    return list(out.values())


def _is_glob(p: str) -> bool:
    return not Path(p).exists() and any(ch in p for ch in "*?[")


def _expand(p: str) -> list[str]:
    if not Path(p).is_dir():
        return [p]
    return sorted(
        str(f) for f in Path(p).rglob("*") if f.suffix in (".yaml", ".yml") and f.is_file()
    )


def glob_walk(pattern: str) -> list[str]:
    """The paths matching ``pattern`` (``*``, ``?``, ``[...]``, ``**`` for any folders), sorted.

    Unlike ``glob.glob(recursive=True)``, a symlink to a folder is followed once: a link back to
    an ancestor (a loop) does not make the walk go round forever.
    """
    parts = pattern.split("/")
    fixed = next(i for i, part in enumerate(parts + ["*"]) if any(ch in part for ch in "*?["))
    base = "/".join(parts[:fixed]) or ("/" if pattern.startswith("/") else "")
    wanted = parts[fixed:]
    seen: set[str] = set()
    found = []
    for folder, dirs, files in os.walk(base or ".", followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        rel = os.path.relpath(folder, base or ".")
        prefix = [] if rel == "." else rel.split(os.sep)
        for name in dirs + files:
            if _match([*prefix, name], wanted):
                found.append(os.path.join(base, *prefix, name))
    return sorted(found)


def _match(parts: list[str], pattern: list[str]) -> bool:
    """Whether path ``parts`` match glob ``pattern`` parts (``**``: zero or more folders; names
    starting with a dot only by a pattern that does)."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return _match(parts, pattern[1:]) or (
            bool(parts) and not parts[0].startswith(".") and _match(parts[1:], pattern)
        )
    if not parts or (parts[0].startswith(".") and not pattern[0].startswith(".")):
        return False
    return fnmatch.fnmatchcase(parts[0], pattern[0]) and _match(parts[1:], pattern[1:])


def check_one(args: tuple) -> SpecResult:
    """Load, run and judge one spec; never raises (an invalid spec or a crash is a result).

    ``args`` is ``(path, steps, policy)``, or with a fourth item, what :func:`ship` read from
    the files on the client (a cluster's workers need not see them)."""
    import nandoctor.engine.runs  # noqa: F401  (imported before the clock starts)

    path, steps, policy, *shipped = args
    started = time.perf_counter()
    try:
        loaded = shipped[0] if shipped else _load(path, steps, started)
        if isinstance(loaded, SpecResult):
            return loaded
        return _check(path, policy or Policy(), loaded, started)
    except Exception as e:  # a bug of ours must not stop the other specs
        return _error(path, f"internal error: {type(e).__name__}: {e}", started)


def _error(path: str, verdict: str, started: float) -> SpecResult:
    return SpecResult(
        path=path,
        passed=False,
        verdict=verdict,
        status="error",
        reasons=["error"],
        seconds=_since(started),
    )


@dataclass
class Loaded:
    """A spec as read from its files: the spec, its text (for positions) and, when read on a
    cluster's client, its file data prepared (synthetic data is made where the spec runs)."""

    spec: Spec
    lines: list[str]
    prepared: PreparedRun | None = None
    seconds: float = 0.0  # spent reading, before the unit was sent


def ship(args: tuple) -> tuple:
    """``(path, steps, policy)`` with everything read from the client's files added: the spec
    and the arrays of its data file (or the spec's invalid result), so workers open no file."""
    path, steps, _policy = args
    started = time.perf_counter()
    try:
        loaded = _load(path, steps, started, prepare_files=True)
    except Exception as e:  # as in check_one: a result, not a crash
        loaded = _error(path, f"internal error: {type(e).__name__}: {e}", started)
    if isinstance(loaded, Loaded):
        loaded.seconds = time.perf_counter() - started
    return (*args, loaded)


def _load(
    path: str, steps: int | None, started: float, prepare_files: bool = False
) -> Loaded | SpecResult:
    """The spec at ``path`` (and its data file's arrays with ``prepare_files``), or the result
    of a spec that cannot run."""
    from nandoctor.engine.data import DataError
    from nandoctor.engine.setup import prepare
    from nandoctor.spec.models import SpecError, load_spec

    try:
        spec = load_spec(path).capped(steps)
    except SpecError as e:
        first = e.problems[0] if e.problems else None
        more = f" (and {len(e.problems) - 1} more)" if len(e.problems) > 1 else ""
        problems = [
            {"line": max(p.line, 1), "col": max(p.col, 1), "message": p.message, "key": p.key}
            for p in e.problems
        ] or [{"line": 1, "col": 1, "message": str(e), "key": ""}]
        return _invalid(
            path, f"invalid spec: {first.message if first else e}{more}", problems, _since(started)
        )
    loaded = Loaded(spec, _read_lines(spec))
    if prepare_files and spec.data.source != "synthetic":
        try:
            loaded.prepared = prepare(spec)
        except DataError as e:
            return _data_invalid(path, loaded, e, started)
    return loaded


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 3)


def _data_invalid(path: str, loaded: Loaded, e, started: float) -> SpecResult:
    line, col = _position(loaded.spec, e.key, loaded.lines)
    problem = {"line": line, "col": col, "message": f"{e.key}: {e}", "key": e.key}
    return _invalid(path, f"invalid data: {e.key}: {e}", [problem], _since(started))


def _check(path: str, policy_of: Policy, loaded: Loaded, started: float) -> SpecResult:
    from nandoctor.diagnosis.diagnose import diagnose
    from nandoctor.engine.data import DataError
    from nandoctor.engine.runs import train
    from nandoctor.report.charts.check import loss_curve

    def seconds() -> float:
        return round(loaded.seconds + time.perf_counter() - started, 3)

    spec = loaded.spec
    try:
        outcome = train(spec, prepared=loaded.prepared)[0]
    except DataError as e:
        return _data_invalid(path, loaded, e, started)
    d = diagnose(outcome)
    policy = policy_of.ids(spec)
    reasons = []
    if d.status == "nonfinite" and "nonfinite" in policy:
        reasons.append("nonfinite")
    reasons += sorted({w.id for w in d.warnings} & policy)
    limit = spec.check.max_final_loss
    if (
        limit is not None
        and d.status != "nonfinite"
        and (d.loss_final is None or d.loss_final > limit)
    ):
        reasons.append("max_final_loss")
    blame = _blame_key(spec, d, reasons)
    line, col = _position(spec, blame, loaded.lines) if blame else (1, 1)
    return SpecResult(
        path=path,
        passed=not reasons,
        verdict=_verdict(d, limit, reasons),
        status=d.status,
        reasons=reasons,
        cause=d.cause.id if d.cause else None,
        first_nonfinite=d.first_nonfinite.to_json() if d.first_nonfinite else None,
        line=line,
        col=col,
        final_loss=d.loss_final,
        steps_run=d.steps_run,
        seconds=seconds(),
        threads=d.threads,
        loss_curve=loss_curve(outcome),
    )


def _invalid(path: str, verdict: str, problems: list[dict], seconds: float) -> SpecResult:
    """The result for a spec that could not run; it points at its first problem."""
    return SpecResult(
        path=path,
        passed=False,
        verdict=verdict,
        status="invalid",
        reasons=["invalid"],
        line=problems[0]["line"],
        col=problems[0]["col"],
        problems=problems,
        seconds=seconds,
    )


def _verdict(d, limit: float | None, reasons: list[str]) -> str:
    """One line: where the first non-finite value appeared and why, or how the run ended."""
    if d.status == "nonfinite":
        f = d.first_nonfinite
        where = [f"at step {f.step} in" if f.step else "in", f.phase]
        if f.layer:
            where.append(f"layer {f.layer}")
        if f.tensor != f.phase:
            where.append(f.tensor)
        return f"{f.value} {' '.join(where)} (op {f.op}); cause {d.cause.id}"
    parts = [f"finite over {d.steps_run} steps, final loss {fmt(d.loss_final)}"]
    if "max_final_loss" in reasons:
        parts[0] += f" > max_final_loss {fmt(limit)}"
    elif limit is not None:
        parts[0] += f" (max_final_loss {fmt(limit)})"
    ids = list(dict.fromkeys(w.id for w in d.warnings))
    for wid in ids:  # a warning the policy fails on: say what was seen
        if wid in reasons:
            parts.append(f"{wid}: {next(w.summary for w in d.warnings if w.id == wid)}")
    if others := [wid for wid in ids if wid not in reasons]:
        parts.append(f"warnings: {', '.join(others)}")
    return "; ".join(parts)


def _blame_key(spec, d, reasons: list[str]) -> str | None:
    """The spec key an annotation should point at: a contributing setting, else the cause's key."""
    if "nonfinite" in reasons and d.cause:
        for c in d.contributing:
            if FACTORS[c.id].blames:
                return FACTORS[c.id].blames
        if d.cause.id == "bad_input":
            if d.first_nonfinite.phase == "preprocess":
                return "data.preprocess"
            if spec.data.nan_fraction > 0:
                return "data.nan_fraction"
            return "data" if spec.data.source == "synthetic" else "data.path"
        return blamed_key(CAUSES[d.cause.id], d.cause.layer)
    for r in reasons:
        if r in WARNINGS:
            warning = next((w for w in d.warnings if w.id == r), None)
            if warning is not None and warning.blames:
                return warning.blames
            return blamed_key(WARNINGS[r], warning.layer if warning else None)
        if r in CHECK_OUTCOMES and CHECK_OUTCOMES[r].blames:
            return CHECK_OUTCOMES[r].blames
    return None


def _read_lines(spec) -> list[str]:
    """The spec file's lines (for the columns of :func:`_position`); [] when unreadable."""
    try:
        return Path(spec.path).read_text(encoding="utf-8").splitlines()
    except (OSError, TypeError, UnicodeDecodeError):
        return []


def _position(spec, key: str, lines: list[str]) -> tuple[int, int]:
    """(line, col) of ``key`` (or its nearest parent) in the spec's file; (1, 1) if unknown."""
    line = spec.line_of(key)
    if not line:
        return 1, 1
    if not 0 < line <= len(lines):
        return line, 1
    text = lines[line - 1]
    for part in reversed(key.split(".")):
        m = re.search(rf"(?<![\w-]){re.escape(part)}\s*:", text)
        if m:
            return line, m.start() + 1
    return line, len(text) - len(text.lstrip(" -")) + 1


def collect_specs(paths: tuple[str, ...] | list[str]) -> list[str]:
    """:func:`collect`, refusing a path that does not exist (a glob aside: it may match nothing)
    and an empty result (usage problems, exit 2). A spec that exists but is invalid is not a
    usage problem: it fails its check (exit 1) without stopping the others."""
    missing = [p for p in paths if not _is_glob(p) and not os.path.exists(p)]
    if missing:
        names = ", ".join(
            f"{p} (a symlink to {os.readlink(p)}, which does not exist)" if os.path.islink(p) else p
            for p in missing
        )
        raise UsageProblem(
            f"no such file or folder: {names}; PATHS are spec files, folders or globs"
        )
    files = collect(paths)
    if not files:
        raise UsageProblem(
            f"no specs found in {' '.join(paths)} (folders are searched for *.yaml / *.yml)"
        )
    return files


def parse_fail_on(text: str | None, allow_nonfinite: bool = False) -> Policy:
    """``--fail-on dead_relu,saturation`` (ids added to every spec's policy) as a :class:`Policy`;
    an empty or missing list adds nothing."""
    policy = [p.strip() for p in (text or "").split(",") if p.strip()]
    unknown = [p for p in policy if p not in FAIL_ON_IDS]
    if unknown:
        valid = ", ".join(FAIL_ON_IDS)
        raise UsageProblem(f"--fail-on: unknown id(s) {', '.join(unknown)}; valid: {valid}")
    return Policy(tuple(policy), allow_nonfinite)


def run_checks(
    paths: list[str],
    steps: int | None = None,
    fail_on: Policy | None = None,
    jobs: int | None = None,
    on_done: Callable[[SpecResult], None] | None = None,
) -> list[SpecResult]:
    """Check every spec in ``paths``, in worker processes when ``jobs`` > 1 (default: the cores)
    or on the active cluster; results in input order, identical to a serial run (see
    ``nandoctor.parallel``). For a cluster, the files are read here and travel with each unit
    (:func:`ship`): workers then need no view of this machine's folders, and every spec is
    judged on the files as they were when the command started."""
    units = [(p, steps, fail_on) for p in paths]
    if active_backend() is not None:
        units = [ship(u) for u in units]
    largest = _largest_run(paths) if len(paths) > 1 and jobs != 1 else 0
    return pmap(check_one, units, jobs, on_done, lost=_lost, item_bytes=largest)


def _largest_run(paths: list[str]) -> int:
    """The estimated peak memory of the largest run among ``paths`` (0 for a spec that does
    not load: its worker reports why), so that no more workers run at once than fit."""
    from nandoctor.spec.limits import run_bytes
    from nandoctor.spec.models import SpecError, load_spec

    largest = 0
    for path in paths:
        try:
            largest = max(largest, run_bytes(load_spec(path)))
        except (SpecError, OSError, ValueError):
            continue
    return largest


def _lost(item: tuple, reason: str) -> SpecResult:
    """The result of a spec whose worker process died (the OOM killer): an error, alone."""
    return SpecResult(
        path=item[0],
        passed=False,
        verdict=f"error: {reason}; no result for this spec",
        status="error",
        reasons=["error"],
    )
