"""``run``'s workflow: train a spec with every step watched, diagnose it, verify the fixes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from nandoctor.errors import UsageProblem

if TYPE_CHECKING:
    from nandoctor.diagnosis.findings import Diagnosis
    from nandoctor.engine.data import DataError
    from nandoctor.engine.runs import Outcome
    from nandoctor.spec.models import Spec


def data_problem(spec: Spec, err: DataError) -> UsageProblem:
    """A data file or value the run cannot use, located at the spec key that names it (its
    value's line and column, or its nearest parent's; the ``--set`` item that gave it)."""
    if spec.path is None:
        return UsageProblem(f"{err.key}: {err}")
    return UsageProblem(str(spec.problem_at(err.key, str(err))))


def train_one(spec: Spec, on_step: Callable[[int], None] | None = None) -> Outcome:
    """Train ``spec`` once; a data problem becomes a :class:`UsageProblem`."""
    from nandoctor.engine.data import DataError
    from nandoctor.engine.runs import train

    try:
        return train(spec, on_step=on_step)[0]
    except DataError as e:
        raise data_problem(spec, e) from None


def examine(spec: Spec, on_step: Callable[[int], None] | None = None) -> tuple[Diagnosis, Outcome]:
    """Train ``spec`` and diagnose the run from its own numbers (recommendations not yet tried)."""
    from nandoctor.diagnosis.diagnose import diagnose

    started = time.perf_counter()
    outcome = train_one(spec, on_step)
    diagnosis = diagnose(outcome)
    diagnosis.seconds = time.perf_counter() - started
    return diagnosis, outcome


def verify_fixes(
    diagnosis: Diagnosis,
    outcome: Outcome,
    jobs: int | None = None,
    on_done: Callable[[str], None] | None = None,
    full: bool = False,
) -> None:
    """Re-run each recommendation of a non-finite run, or of a finite one with warnings, to
    verify it (in place; adds the time); over a horizon sized to the failure (a finite run's
    budget), or the whole budget when ``full``."""
    from nandoctor.diagnosis.verify import verify

    if diagnosis.status == "healthy":
        return
    started = time.perf_counter()
    try:
        diagnosis.recommendations = verify(
            diagnosis, outcome, jobs=jobs, on_done=on_done, full=full
        )
    finally:  # an interrupted verification's report counts the time it took too
        diagnosis.seconds += time.perf_counter() - started
