"""Ctrl-C and SIGTERM: stop within a second, clean up, exit 130 or 143, never a traceback.

While a command runs, both signals raise :class:`Interrupted` in the main thread (SIGTERM would
otherwise end the process on the spot, leaving its worker processes behind). It is a
``BaseException``, so no ``except Exception`` on the way swallows it; every ``finally`` runs
(worker processes are killed and reaped in :func:`nandoctor.parallel.pmap`, a temporary output
file is removed), and the command line turns it into a message and the exit code 128 + signal.
A second signal while that cleanup runs is ignored rather than interrupting the cleanup.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """The run was stopped by a signal; ``exit_code`` is 128 + its number (130, 143)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {self.name}")


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """For the body, SIGINT and SIGTERM raise :class:`Interrupted` once (then are ignored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def handler(signum: int, _frame) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in _handled()}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _handled() -> list[int]:
    """The signals to handle: both, less one ignored on purpose (a background job's SIGINT,
    ``nohup``'s SIGHUP-like choices) - as Python itself leaves an ignored SIGINT ignored."""
    return [s for s in HANDLED if signal.getsignal(s) is not signal.SIG_IGN]


def ignore_signals() -> None:
    """Ignore SIGINT and SIGTERM from now on (the process is on its way out)."""
    for s in HANDLED:
        signal.signal(s, signal.SIG_IGN)
