"""`cfl-repo host nginx --access estate`: the maps that give each supplier only its estate's images.

Built from the entitlement record in force (repo_tool/entitle/record.py) for one day: a right by
estate from its first day, a grace right until its last. Three maps, sized by the library and the
number of suppliers, never by devices or by suppliers x images:

* ``$ssl_client_fingerprint -> $cfl_estate_number``: each registered certificate's short number;
* ``$cfl_image_target -> $cfl_estate_holders``: per image target path, the numbers of the suppliers
  that may fetch it, between colons (``:3:17:``); the path is read from the stored name, so an
  image's encrypted release notes (``....ota.notes.jwe``) follow the image;
* ``$cfl_device_type -> $cfl_estate_applies``: which device types the estate rule covers (policy
  ``estate_device_types``; the others stay by User Role only).

The decision ``$cfl_estate_refusal`` first takes the role decision (``$cfl_refusal``, unchanged), and
only when that allows the request asks whether the caller's number is among the image's holders;
if not, the reason is `ESTATE_REFUSAL`. Metadata, the CPL and the site are not touched.

Pure: record, registry, library and day in; values for the template out. The template renders
every value, and every value is a checked target path, a hex fingerprint or a small number, so
nothing read from a record can break out of the configuration's syntax.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from cryptography.hazmat.primitives.serialization import Encoding

from metadata_templates.naming import is_image_target_path
from metadata_templates.suppliers import ESTATE_REFUSAL, SupplierRegistry
from repo_tool.access.certificates import certificate_sha1, load_one_certificate
from repo_tool.entitle.policy import EntitlementPolicy
from repo_tool.entitle.record import EntitlementRecord


@dataclass(frozen=True)
class EstateMaps:
    """What the template needs for estate access, and what the operator is told about it.

    Attributes:
        record: SHA-256 of the record the maps come from.
        day: the day they are for.
        numbers: (certificate SHA-1, number) per registered organisation.
        holders: (image target path, ``:n:m:``) per image somebody may fetch.
        device_types: the types the estate rule covers, or None for every type.
        rights: (supplier, image) pairs in force on ``day``.
        next_change: the first later day on which the maps would differ (a right begins, a grace
            ends): regenerate on or after it. None when nothing is scheduled.
        unheld: images in the library no supplier may fetch on ``day``: no device of any
            registered supplier's estate is on their path, or they were published after the
            import (an image is in a record only if it was in the library when it was imported).
        reason: the 403 body.
    """

    record: str
    day: date
    numbers: tuple[tuple[str, int], ...]
    holders: tuple[tuple[str, str], ...]
    device_types: tuple[str, ...] | None
    rights: int
    next_change: date | None
    unheld: int
    reason: str = ESTATE_REFUSAL

    @property
    def map_entries(self) -> int:
        """Lines the three maps add to the configuration."""
        return len(self.numbers) + len(self.holders) + len(self.device_types or ())


def estate_maps(
    record: EntitlementRecord,
    record_sha256: str,
    registry: SupplierRegistry,
    *,
    day: date,
    library: Iterable[str] = (),
    policy: EntitlementPolicy | None = None,
) -> EstateMaps:
    """The estate maps of ``record`` on ``day``.

    Args:
        record: the record in force.
        record_sha256: its name, written into the configuration's header.
        registry: the supplier registry (numbers go to registered certificates only).
        day: the day the configuration is for.
        library: the image target paths now in the library (to count those nobody may fetch).
        policy: which device types the estate rule covers.

    Raises:
        RejectedInputError: a registered certificate no longer parses.
    """
    numbers: list[tuple[str, int]] = []
    number_of: dict[str, int] = {}
    for n, supplier in enumerate(registry.suppliers, start=1):
        cert = load_one_certificate(supplier.certificate_pem.encode("ascii"), supplier.entity_id)
        numbers.append((certificate_sha1(cert.public_bytes(Encoding.DER)), n))
        number_of[supplier.entity_id] = n
    by_target: dict[str, list[int]] = {}
    changes: set[date] = set()
    rights = 0
    for entity, entity_rights in record.entities.items():
        number = number_of.get(entity)
        if number is None:
            continue  # registered when imported, so this cannot happen; never map a stranger
        for target in entity_rights.on(day):
            by_target.setdefault(target, []).append(number)
            rights += 1
        changes.update(entity_rights.changes_after(day))
    holders = tuple(
        (target, ":" + ":".join(str(n) for n in sorted(by_target[target])) + ":")
        for target in sorted(by_target)
        if is_image_target_path(target)  # the record was checked on reading; say it again here
    )
    policy = policy or EntitlementPolicy()
    return EstateMaps(
        record=record_sha256,
        day=day,
        numbers=tuple(numbers),
        holders=holders,
        device_types=policy.estate_device_types,
        rights=rights,
        next_change=min(changes) if changes else None,
        unheld=sum(1 for target in library if target not in by_target),
    )


def template_values(maps: EstateMaps | None) -> Mapping[str, object]:
    """The template's ``estate`` and ``refusal`` values (role mode: None and the role decision)."""
    if maps is None:
        return {"estate": None, "refusal": "cfl_refusal"}
    return {"estate": maps, "refusal": "cfl_estate_refusal"}
