"""The entries of the CFL transparency log: one canonical JSON object per lodged event.

Both sides agree on these names: the provider appends them, ``cfl log verify`` and the client look
them up. Every entry has ``"event"`` (the kind) and ``"at"`` (RFC 3339 UTC); the other fields
depend on the kind and are listed in docs/transparency.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from metadata_templates.errors import VerificationError

DEPOSIT = "ingest-accepted"
RENEWAL = "ingest-renewal"
WITHDRAWAL = "withdraw"
CPL_IMPORT = "cpl-import"
# issue 22: the provider releases a pilot image (early, or on its date at `refresh`) or holds it.
RELEASE = "release"
HOLD = "hold"
# A security advisory revision (repo_tool/ops/ingest_advisory.py): target, sha256, advisory, revision.
ADVISORY = "advisory"

# Re-signing for expiry changes nothing that was lodged; logging it would only grow the log.
# An entitlement import is not lodged either, and it derives from the confidential inventory: the
# public log must not even show how often, or how large, suppliers' estates are imported.
NOT_LOGGED = frozenset(
    {"snapshot", "refresh", "refresh-targets", "resign-targets", "entitlements-import"}
)


def is_logged(event: Mapping[str, Any]) -> bool:
    """Whether a repository event is a lodged event that enters the log."""
    return str(event.get("event")) not in NOT_LOGGED


def encode_event(event: Mapping[str, Any]) -> bytes:
    """Canonical bytes: sorted keys, no spaces, ASCII only, so the same event is the same leaf."""
    return json.dumps(
        dict(event), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode()


def decode_event(entry: bytes, *, index: int) -> dict[str, Any]:
    """The event of one log entry.

    Raises:
        VerificationError: not a JSON object with an ``event`` string.
    """
    try:
        doc = json.loads(entry)
    except ValueError as e:
        raise VerificationError(f"log entry {index}: not JSON ({e})") from e
    except RecursionError as e:  # nested beyond what the decoder follows: no event of ours
        raise VerificationError(f"log entry {index}: nested too deeply to be an event") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("event"), str):
        raise VerificationError(f"log entry {index}: found no 'event' field, expected an event")
    return doc
