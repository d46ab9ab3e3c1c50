"""What the ``aion`` command exits with, and the errors that carry an exit code.

Every failure is one line on stderr (``aion: <what went wrong and what to do>``) and one of
these codes, so scripts can tell the cases apart:

====  =====================================================================
0     success
1     any other error (a command the engine refused, an unexpected error)
2     usage error: bad option or argument, malformed JSON, a module that cannot be imported
3     the workflow ended without a result (FAILED, CANCELLED or TERMINATED), or an update
      was rejected or its handler raised
4     timed out: ``--timeout`` passed while waiting, or the workflow ended TIMED_OUT
5     not found: no workflow (or schedule) with that id
6     the Kafka broker is unreachable
7     the Kafka cluster refused this process: login (SASL), TLS trust, or an ACL
130   interrupted (Ctrl-C)
====  =====================================================================
"""

from __future__ import annotations

import enum

import click

from ..exceptions import AionError


class ExitCode(enum.IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    WORKFLOW_FAILED = 3
    TIMED_OUT = 4
    NOT_FOUND = 5
    BROKER_UNREACHABLE = 6
    ACCESS_DENIED = 7
    INTERRUPTED = 130


EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 1 other error, 2 usage error, 3 workflow failed/cancelled/terminated, "
    "4 timed out, 5 not found, 6 broker unreachable, 7 refused by the cluster (login, TLS trust, ACL)."
)


class CliError(AionError, click.ClickException):
    """One line for the user and the exit code that goes with it."""

    def __init__(self, message: str, code: ExitCode = ExitCode.ERROR) -> None:
        super().__init__(message)
        self.exit_code = int(code)

    def show(self, file=None) -> None:  # type: ignore[no-untyped-def]
        click.echo(f"aion: {self.format_message()}", err=True)


class BrokerUnreachable(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.BROKER_UNREACHABLE)


class AccessDenied(CliError):
    """The cluster refused the login, its certificate is not trusted, or an ACL refused."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.ACCESS_DENIED)


class UsageError(CliError):
    """A bad argument: exit code 2, like click's own usage errors."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.USAGE)
