"""Ctrl-C and SIGTERM: stop within a second, clean up, exit 130 or 143, never a traceback.

While a command runs, both signals raise :class:`Interrupted` in the main thread (SIGTERM would
otherwise end the process on the spot, leaving its worker processes behind). It is a
``BaseException``, so no ``except Exception`` on the way swallows it; every ``finally`` runs
(worker processes are killed and reaped in :func:`nandoctor.parallel.pmap`, a temporary output
file is removed), and the command line turns it into a message and the exit code 128 + signal.
A second signal while that cleanup runs is ignored rather than interrupting the cleanup.

CPython can lose an exception raised by a signal handler. ``compile()`` folds constants such as
``2**31 - 1`` with integer arithmetic that runs pending handlers, and drops any exception but
KeyboardInterrupt: a signal during an import from source (every import, without ``.pyc`` files or
with ``PYTHONDONTWRITEBYTECODE``) vanishes and the import goes on. One raised in a finaliser is
only reported as ignored. A lost Interrupted would leave the command running with the signal
spent, so until the Interrupted is seen on its way out (being handled in an ``except`` or
``finally``), a watchdog thread raises it again every ``REDELIVER_SECONDS``.

On its way out it carries what a command needs to say what was finished: a run training in this
process records where it stopped (:class:`StoppedTraining`), and each command prints its partial
results on stderr, marked as partial, before the exit (stdout gets no report: anything there is
a whole document).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

HANDLED = (signal.SIGINT, signal.SIGTERM)
REDELIVER_SECONDS = 0.2  # an Interrupted not yet seen on its way out is raised again this often


@dataclass(frozen=True)
class StoppedTraining:
    """Where the training run in this process stood when the signal came."""

    step: int  # the last step it completed (0: none yet)
    last: int  # the step it was to stop after (its budget, or a re-run's horizon)
    loss: float | None = None  # the loss of that step, for a run of a single replica

    def describe(self) -> str:
        """``step 4,512 of 1,000,000 (loss 0.0123)``."""
        from nandoctor.diagnosis.findings import fmt

        loss = f" (loss {fmt(self.loss)})" if self.loss is not None else ""
        return f"step {self.step:,} of {self.last:,}{loss}"


class Interrupted(BaseException):
    """The run was stopped by a signal; ``exit_code`` is 128 + its number (130, 143).

    ``training``: where the innermost training run in this process stopped, when the signal came
    during one (set by :func:`nandoctor.engine.runs.train`)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        self.training: StoppedTraining | None = None
        super().__init__(f"interrupted by {self.name}")


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """For the body, SIGINT and SIGTERM raise :class:`Interrupted` until it is on its way out
    (then they are ignored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    delivery = _Delivery()
    old = {s: signal.signal(s, delivery.handler) for s in _handled()}
    old_hook = sys.unraisablehook
    sys.unraisablehook = delivery.unraisable
    try:
        yield
    finally:
        delivery.over.set()
        sys.unraisablehook = old_hook
        if delivery.raised:  # on the way out: a second signal stays ignored (see ignore_further)
            ignore_further()
        else:
            for s, h in old.items():
                signal.signal(s, h)


class _Delivery:
    """The one Interrupted of a command, raised (again) until it is seen on its way out."""

    def __init__(self) -> None:
        self.raised: Interrupted | None = None
        self.delivered = False  # seen being handled: the cleanup runs
        self.over = threading.Event()  # the body has ended

    def handler(self, signum: int, _frame) -> None:
        if self.raised is not None:
            if self.delivered or _handling_interrupted():
                self.delivered = True  # a second signal, or the watchdog's: the cleanup runs
                return
            signum = self.raised.signum  # lost on its way (see the module docstring): again
        else:
            threading.Thread(target=self._watch, args=(signum,), daemon=True).start()
        self.raised = Interrupted(signum)
        raise self.raised

    def _watch(self, signum: int) -> None:
        import _thread

        while not self.over.wait(REDELIVER_SECONDS) and not self.delivered:
            _thread.interrupt_main(signum)  # the handler runs again in the main thread

    def unraisable(self, unraisable) -> None:
        """An Interrupted raised in a finaliser is lost, not an error to print: the watchdog
        raises it again."""
        if not isinstance(unraisable.exc_value, Interrupted):
            sys.__unraisablehook__(unraisable)


def _handling_interrupted() -> bool:
    """Whether an Interrupted is being handled where the main thread is now: in an ``except`` or
    ``finally`` block it passes through (or one of an exception raised meanwhile)."""
    e, seen = sys.exc_info()[1], set()
    while e is not None and id(e) not in seen:
        if isinstance(e, Interrupted):
            return True
        seen.add(id(e))
        e = e.__context__
    return False


def _handled() -> list[int]:
    """The signals to handle: both, less one ignored on purpose (a background job's SIGINT,
    ``nohup``'s SIGHUP-like choices) - as Python itself leaves an ignored SIGINT ignored."""
    return [s for s in HANDLED if signal.getsignal(s) is not signal.SIG_IGN]


def ignore_further() -> None:
    """Once the process is on its way out after a signal, a second Ctrl-C or SIGTERM is ignored.

    Python resets a signal with a Python-level handler to its default while the interpreter shuts
    down, so a second Ctrl-C arriving then would kill the process (exit -2, not 130); an ignored
    signal stays ignored.
    """
    for s in HANDLED:
        signal.signal(s, signal.SIG_IGN)
