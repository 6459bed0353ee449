"""``python -m nandoctor`` and the ``nandoctor`` command.

Ctrl-C and SIGTERM are handled before anything else is imported: the command line's own imports
take tens of milliseconds, and a signal meanwhile would otherwise print a KeyboardInterrupt
traceback through importlib's frames (exit 1) or end the process by the signal. Until a command
installs its own handling (:func:`nandoctor.interrupt.signals_interrupt`), either signal ends
the process on the spot with the usual line on stderr and exit 130 / 143: nothing has started
that needs cleaning up, and an exception could be lost in an import (see
:mod:`nandoctor.interrupt`). ``_signal`` is the interpreter's own module, loaded at every start
(it installs Python's SIGINT handler): using it imports nothing, not even ``signal``'s enums.
What happens before this module runs - the interpreter's start-up and ``site`` - is python's.
"""

import _signal
import os
import sys

SIGNAL_NAMES = {_signal.SIGINT: "SIGINT", _signal.SIGTERM: "SIGTERM"}


def _stop_at_once(signum: int, _frame) -> None:
    for s in SIGNAL_NAMES:  # a second signal while this line is written is ignored
        _signal.signal(s, _signal.SIG_IGN)
    name = SIGNAL_NAMES.get(signum, f"signal {signum}")
    try:
        sys.stderr.write(f"nandoctor: interrupted by {name}; stopped, nothing half-written\n")
        sys.stderr.flush()
    finally:
        os._exit(128 + signum)


def exit_on_signals() -> None:
    """SIGINT and SIGTERM end the process at once, exit 128 + signal, one line on stderr; a
    signal ignored on purpose (a background job's SIGINT, ``nohup``) stays ignored."""
    for s in SIGNAL_NAMES:
        if _signal.getsignal(s) != _signal.SIG_IGN:
            _signal.signal(s, _stop_at_once)


exit_on_signals()  # the first thing the command does: before any import below


def entry() -> None:
    """The command line (signals are handled already: see the module docstring)."""
    from nandoctor.cli import main

    main()


if __name__ == "__main__":
    entry()
