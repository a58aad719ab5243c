"""One error hierarchy for the whole distribution, grouped by what the caller should do.

Exit codes are named here once; each CLI maps errors to them in a single top-level handler.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # something was rejected or failed verification
EXIT_USAGE = 2  # usage or configuration error


class CflError(Exception):
    """Base of every error this distribution raises on purpose.

    Attributes:
        hint: optional advice for the operator, printed as a ``hint:`` line.
    """

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class RejectedInputError(CflError):
    """Input failed a check: malformed file, bad signature, hash or CPL mismatch."""


class VerificationError(RejectedInputError):
    """Signed metadata or a downloaded file failed TUF verification."""


class UnavailableError(CflError):
    """A resource could not be reached: network, file system, HSM, a lock held by someone else."""


class ConfigurationError(CflError):
    """The command line, a configuration file or a key reference is wrong."""

    exit_code = EXIT_USAGE


def field_error(field: str, found: object, expected: str) -> str:
    """Render the house message form: the field, the value found and the value expected."""
    return f"{field}: found {found!r}, expected {expected}"
