"""``python -m nandoctor`` and the ``nandoctor`` script.

Importing the command line (click, rich, numpy) takes a noticeable fraction of a second on a busy
machine; a Ctrl-C or SIGTERM in that window must end the command quietly with 130/143, like one
arriving later, not with a traceback from the middle of an import.
"""

import signal
import sys


def _while_starting(signum: int, _frame) -> None:
    sys.stderr.write(f"nandoctor: interrupted by {signal.Signals(signum).name} while starting\n")
    raise SystemExit(128 + signum)


def entry() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _while_starting)
    from nandoctor.cli import main

    # Back to Python's defaults: each command installs its own handling (trace runs the user's
    # program, which expects KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    main()


if __name__ == "__main__":
    entry()
