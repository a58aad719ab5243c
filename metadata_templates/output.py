"""The output conventions both command lines promise scripts and operators (ARCHITECTURE "Stable
outputs"): one JSON document with ``schema_version`` on stdout, ``error:``/``hint:`` lines on stderr,
and exit codes by error class. Plain stdlib, so neither CLI's click code is imported by the other.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from metadata_templates import SCHEMA_VERSION
from metadata_templates.errors import CflError

F = TypeVar("F", bound=Callable[..., Any])
EXIT_INTERRUPTED = 130


def utc_now() -> datetime:
    """The real clock, read only at the command-line edge and passed inward as ``now``."""
    return datetime.now(UTC).replace(microsecond=0)


def json_document(doc: dict[str, Any]) -> str:
    """A stable ``--json`` document: ``schema_version`` first-class, keys sorted."""
    return json.dumps({"schema_version": SCHEMA_VERSION, **doc}, indent=2, sort_keys=True)


def reports_errors(logger: logging.Logger, interrupted: str) -> Callable[[F], F]:
    """Decorate a command: map `CflError` to its exit code with `error:` and `hint:` lines (a
    traceback only at debug level), and Ctrl-C to exit 130 with ``interrupted`` as the message."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except CflError as e:
                if logger.isEnabledFor(logging.DEBUG):
                    logger.exception("details")
                print(f"error: {e}", file=sys.stderr)
                if e.hint:
                    print(f"hint: {e.hint}", file=sys.stderr)
                sys.exit(e.exit_code)
            except KeyboardInterrupt:
                print(f"error: interrupted; {interrupted}", file=sys.stderr)
                sys.exit(EXIT_INTERRUPTED)

        return wrapper  # type: ignore[return-value]

    return decorate
