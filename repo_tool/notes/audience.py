"""The provider's side of release notes: which published documents decide who a note is for.

The gateway needs the supplier registry (``cfl/suppliers.json``) and the notes-custodian key
(``cfl/notes-custodian.json``) exactly as the repository stages them for publication, because that is
what the manufacturer's ``submit`` read from the published tree when it encrypted.
"""

from __future__ import annotations

from typing import Protocol, TypedDict

from metadata_templates.errors import ConfigurationError
from metadata_templates.notes import CUSTODIAN_TARGET_PATH, CustodianDocument, NotesError
from metadata_templates.suppliers import SUPPLIERS_TARGET_PATH, SupplierRegistry


class ProviderDocuments(Protocol):
    def provider_document(self, path: str) -> bytes | None: ...


class NotesAudienceDocuments(TypedDict):
    suppliers: SupplierRegistry | None
    notes_custodian: CustodianDocument | None


def read_registry(source: ProviderDocuments) -> SupplierRegistry | None:
    """The staged supplier registry, None when the provider has published none.

    Raises:
        ConfigurationError: the staged document is malformed (the provider's own state).
    """
    data = source.provider_document(SUPPLIERS_TARGET_PATH)
    if data is None:
        return None
    try:
        return SupplierRegistry.from_bytes(data)
    except ValueError as e:
        raise ConfigurationError(f"staged {SUPPLIERS_TARGET_PATH}: {e}") from e


def read_custodian(source: ProviderDocuments) -> CustodianDocument | None:
    """The staged notes-custodian key, None when the provider has published none.

    Raises:
        ConfigurationError: the staged document is malformed.
    """
    data = source.provider_document(CUSTODIAN_TARGET_PATH)
    if data is None:
        return None
    try:
        return CustodianDocument.from_bytes(data)
    except NotesError as e:
        raise ConfigurationError(f"staged {CUSTODIAN_TARGET_PATH}: {e}") from e


def notes_audience_documents(source: ProviderDocuments) -> NotesAudienceDocuments:
    """Keyword arguments for ``GatewayContext``: the registry and the custodian key."""
    return {"suppliers": read_registry(source), "notes_custodian": read_custodian(source)}
