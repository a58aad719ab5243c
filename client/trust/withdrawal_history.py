"""The withdrawals a client home has seen, and the rule that a withdrawal list never loses one.

A withdrawal is an explicit, recorded event that is never undone ("nothing lodged is silently
deleted"): the provider's ``withdraw`` only ever appends to ``cfl/withdrawals.json``. The document is
signed by the online ``cfl-provider`` key, so a thief of that key could sign a list without an entry
and re-recommend a withdrawn image to every client. This module is what stops it, as a pure
function of values (the I/O is in ``client/trust/withdrawal_guard.py``):

- the home remembers every withdrawal it has verified (target path and withdrawn time);
- a verified document that lacks a remembered withdrawal, or gives it another withdrawn time, is
  refused;
- where the client verifies the transparency log, every ``withdraw`` event the log holds up to the
  trusted checkpoint must be in the document too (the log is append-only and witnessed, so a
  withdrawal the thief hid from the document is still there, even for a home that never saw it).

A home with no history (a first ``cfl init``) starts from the verified document and the log.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from metadata_templates import SCHEMA_VERSION
from metadata_templates.errors import ConfigurationError, VerificationError
from metadata_templates.naming import WITHDRAWALS_TARGET_PATH
from metadata_templates.withdrawals import WithdrawalList

# One line per refusal; past this many the message counts the rest instead of naming them.
_NAMED_IN_MESSAGE = 3
REFUSAL_HINT = (
    "a withdrawal is never removed or edited: the provider's online key may be in a thief's hands; "
    "this home keeps the state it trusted before. Report it to the CFL provider and SECAS"
)


@dataclass(frozen=True)
class LoggedWithdrawal:
    """A ``withdraw`` event proved to be in the transparency log.

    Attributes:
        index: its log index.
        target: the image target path withdrawn.
        withdrawn: the withdrawn time the event records.
    """

    index: int
    target: str
    withdrawn: str


@dataclass(frozen=True)
class LoggedWithdrawals:
    """The ``withdraw`` events among log entries ``[start, size)``, proved against the checkpoint of
    ``size`` the home trusts."""

    start: int
    size: int
    events: tuple[LoggedWithdrawal, ...] = ()


LogWithdrawalsReader = Callable[[int], LoggedWithdrawals | None]
"""Given how far a home searched the log, the withdrawals logged since then up to the checkpoint it
now trusts (None: the library has never had a log). client/log/withdrawal_events.py makes one."""


@dataclass(frozen=True)
class WithdrawalHistory:
    """What the home remembers: every withdrawal it verified, and how far it read the log.

    Attributes:
        withdrawn: target path -> withdrawn time, for every withdrawal seen in a verified document.
        log_size: log entries ``[0, log_size)`` have been searched for ``withdraw`` events.
    """

    withdrawn: Mapping[str, str]
    log_size: int = 0

    @classmethod
    def empty(cls) -> WithdrawalHistory:
        return cls({})

    def check(
        self, document: WithdrawalList, logged: LoggedWithdrawals | None = None
    ) -> WithdrawalHistory:
        """Accept a verified withdrawal list only if it keeps every withdrawal known; return the
        history that remembers it too.

        Raises:
            VerificationError: the document lacks or changes a remembered withdrawal, or lacks one
                that ``logged`` holds; the message names each target.
        """
        if logged is not None and not logged.start <= self.log_size <= logged.size:
            # The caller reads the log from ``log_size``; anything else would leave a gap unread.
            raise ValueError(
                f"log events [{logged.start}, {logged.size}) do not continue from {self.log_size}"
            )
        found = {w.target: w.withdrawn for w in document.withdrawals}
        problems = {
            target: _problem(target, found.get(target), withdrawn, "this home saw before")
            for target, withdrawn in sorted(self.withdrawn.items())
            if found.get(target) != withdrawn
        }
        for event in logged.events if logged is not None else ():
            if found.get(event.target) != event.withdrawn and event.target not in problems:
                problems[event.target] = _problem(
                    event.target,
                    found.get(event.target),
                    event.withdrawn,
                    f"the transparency log records at index {event.index}",
                )
        if problems:
            shown = "; ".join(list(problems.values())[:_NAMED_IN_MESSAGE])
            more = len(problems) - _NAMED_IN_MESSAGE
            raise VerificationError(
                f"{WITHDRAWALS_TARGET_PATH}: {shown}" + (f" (and {more} more)" if more > 0 else ""),
                hint=REFUSAL_HINT,
            )
        return WithdrawalHistory(
            {**self.withdrawn, **found},
            logged.size if logged is not None else self.log_size,
        )

    def to_bytes(self) -> bytes:
        doc = {
            "schema_version": SCHEMA_VERSION,
            "log_size": self.log_size,
            "withdrawals": [
                {"target": t, "withdrawn": w} for t, w in sorted(self.withdrawn.items())
            ],
        }
        return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> WithdrawalHistory:
        """Read the home's history file.

        Raises:
            ConfigurationError: not a history this client wrote (it is the home's own state, so a
                damaged file is a configuration problem, not the library's).
        """
        try:
            doc = json.loads(data)
            if doc["schema_version"] != SCHEMA_VERSION:
                raise ValueError(
                    f"schema_version: found {doc['schema_version']!r}, expected {SCHEMA_VERSION}"
                )
            size = doc["log_size"]
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise ValueError(f"log_size: found {size!r}, expected a whole number >= 0")
            withdrawn = _pairs(doc["withdrawals"])
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigurationError(
                f"{where}: malformed ({e})",
                hint="restore it from a backup; `cfl init --force` starts again without it",
            ) from e
        return cls(withdrawn, size)


def _pairs(entries: Iterable[Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in entries:
        target, withdrawn = entry["target"], entry["withdrawn"]
        if not isinstance(target, str) or not isinstance(withdrawn, str):
            raise ValueError(f"withdrawals: found {entry!r}, expected target and withdrawn strings")
        out[target] = withdrawn
    return out


def _problem(target: str, found: str | None, expected: str, source: str) -> str:
    if found is None:
        return (
            f"found no withdrawal of {target}, expected the withdrawal {source} "
            f"(withdrawn {expected})"
        )
    return f"{target} withdrawn: found {found!r}, expected {expected!r} (the withdrawal {source})"
