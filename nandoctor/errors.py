"""The one exception that ends a command with exit 2: bad usage, an invalid spec or data file."""

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
