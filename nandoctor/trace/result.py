"""The result of tracing one program (docs/output.md): plain data that every renderer reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nandoctor.trace.events import FirstNonFinite, Site
from nandoctor.trace.runner import Outcome

if TYPE_CHECKING:  # the cause and its catalogue are imported only when there is one to decide
    from nandoctor.trace.cause import Cause


@dataclass
class TraceWarning:
    id: str
    summary: str
    file: str | None = None
    line: int | None = None

    def to_json(self) -> dict:
        return {"id": self.id, "summary": self.summary, "file": self.file, "line": self.line}


@dataclass
class TraceResult:
    script: str
    first: FirstNonFinite | None = None
    cause: Cause | None = None
    warnings: list[TraceWarning] = field(default_factory=list)
    events: list[Site] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)  # standard fixes for the pattern, not verified
    program: Outcome = field(default_factory=Outcome)
    notes: list[str] = field(default_factory=list)  # how the answer was found, in plain words
    seconds: float = 0.0  # wall time of the whole trace: the program, second runs, diagnosis
    # the op whose floating-point error the program's own handling raised, when that is how it
    # failed: where and why it stopped, though no NaN or Inf was kept
    stopped_by: FirstNonFinite | None = None

    @property
    def status(self) -> str:
        """``nonfinite`` (exit 1), ``failed`` (the program itself failed with no NaN or Inf:
        exit 3), ``warning`` or ``healthy`` (exit 0)."""
        if self.first is not None:
            return "nonfinite"
        if self.program.failed:
            return "failed"
        return "warning" if self.warnings else "healthy"

    @property
    def exit_code(self) -> int:
        """0 nothing non-finite was kept, 1 something was (or was printed), 3 the program itself
        failed."""
        if self.first is not None:
            return 1
        return 3 if self.program.failed else 0

    def to_json(self) -> dict:
        return {
            "script": self.script,
            "status": self.status,
            "first_nonfinite": self.first.to_json() if self.first else None,
            "stopped_by": self.stopped_by.to_json() if self.stopped_by else None,
            "cause": self.cause.to_json() if self.cause else None,
            "warnings": [w.to_json() for w in self.warnings],
            "events": [e.to_json() for e in self.events],
            "advice": self.advice,
            "program": self.program.to_json(),
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
        }
