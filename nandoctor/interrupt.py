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

    old = {s: signal.signal(s, handler) for s in HANDLED}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
