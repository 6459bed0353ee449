"""The exceptions the command line turns into a message and exit 2: bad usage, an invalid spec or
data file (:class:`UsageProblem`), a worker process that died (:class:`WorkerLost`).

A light module (no imports): the command line catches these around every command, ``trace``
included, whose start-up must stay as short as ``python``'s own.
"""

from __future__ import annotations


class UsageProblem(Exception):
    """A problem the user can fix: printed as its message alone (``file:line:col: key: ...``), exit 2.

    Raised anywhere below the command line; the CLI turns it into the message and the exit code in
    one place, so no library module calls ``sys.exit``.
    """

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message.rstrip())
        self.message = message.rstrip()


class WorkerLost(Exception):
    """A worker process died before returning its result (killed, out of memory)."""
