"""The gateway's checks of a pilot deposit (issue 22): who the pilot is for, and until when. Pure.

The terms are the manufacturer's signed ``custom.cfl.pilot``. Each pilot supplier must be an
organisation the host can identify and would serve this image to once released (registered,
active, its User Roles covering the device type), or the embargo would name nobody real; the
release date must be a real date after today and within ``MAX_EMBARGO_DAYS``, or the image would be
released at once or stay private for years. Checked against the *staged* registry, as release
notes are: a registry change between ``submit`` and ``ingest`` is judged by the newer registry.
"""

from __future__ import annotations

from datetime import datetime

from metadata_templates.custom import PilotTerms
from metadata_templates.errors import field_error
from metadata_templates.releases import release_date_problem
from metadata_templates.suppliers import SupplierRegistry, roles_for
from repo_tool.gateway.model import Code, Findings

_SHOWN = 10  # registered IDs named in a message, at most


def check_pilot(
    terms: PilotTerms,
    device_type: str,
    registry: SupplierRegistry | None,
    now: datetime,
    found: Findings,
) -> None:
    """Add a finding for each pilot supplier the library cannot serve and for a bad date."""
    known = registry.by_entity_id() if registry is not None else {}
    entitled = roles_for(device_type)
    for entity in terms.suppliers:
        field = "custom.cfl.pilot.suppliers"
        supplier = known.get(entity)
        if supplier is None:
            shown = sorted(known)[:_SHOWN]
            more = f" and {len(known) - _SHOWN} more" if len(known) > _SHOWN else ""
            found.add(
                Code.PILOT_SUPPLIER_UNKNOWN,
                field_error(
                    field,
                    entity,
                    f"the Entity ID of a registered supplier (registered: {shown}{more})",
                ),
            )
        elif not supplier.active:
            found.add(
                Code.PILOT_SUPPLIER_UNKNOWN,
                field_error(
                    field,
                    entity,
                    f"an active registration (revoked {supplier.revoked}: "
                    f"{supplier.revocation_reason})",
                ),
            )
        elif not supplier.may_fetch(device_type):
            found.add(
                Code.PILOT_SUPPLIER_UNKNOWN,
                field_error(
                    field,
                    f"{entity} (roles {'+'.join(supplier.roles)})",
                    f"an organisation whose User Roles cover {device_type} images "
                    f"({' or '.join(entitled) or 'none'})",
                ),
            )
    problem = release_date_problem(terms.release_at, now, "custom.cfl.pilot.release_at")
    if problem is not None:
        found.add(Code.RELEASE_DATE_INVALID, problem)
