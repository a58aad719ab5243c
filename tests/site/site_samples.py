"""Small, fixed libraries for the site tests, built directly from the published-view dataclasses.

The module name is unique across the test tree on purpose: test folders have no ``__init__.py``, so
pytest imports helpers by their bare module name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime

from metadata_templates.advisory import Advisory, parse_authored, with_revision
from metadata_templates.custom import CflTargetInfo, CplEntryRef
from metadata_templates.naming import image_target_path, role_name
from metadata_templates.withdrawals import Withdrawal
from repo_tool.verify.published import PublishedImage, PublishedLibrary, RoleSummary

GENERATED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
HOSTILE_MODEL = "<script>alert(1)</script>"
HOSTILE_ATTR = '" onmouseover="window.__pwned=1" x="'
HOSTILE_HEADER = "<img src=x onerror=alert(1)>"
HOSTILE_MANUFACTURER = "Evil & Co <b>bold</b> \"'"


def digest(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def keyid(label: str) -> str:
    return digest(f"key:{label}")


def make_image(
    manufacturer_id: str,
    manufacturer_name: str,
    device_type: str,
    firmware_version: str,
    models: list[tuple[str, str, str]],
    *,
    reason: str = "compliance",
    advisories: tuple[str, ...] = (),
    published: str = "2026-01-01T00:00:00Z",
    header_string: str = "CFL test image",
    hw: tuple[str | None, str | None] = ("0100", "0200"),
    length: int = 4096,
    withdrawal: tuple[str, str] | None = None,
    image_type: str = "0001",
) -> PublishedImage:
    """One image; ``models`` are (CPL entry ID, model ID, model name)."""
    label = f"{manufacturer_id}/{device_type}/{firmware_version}/{image_type}"
    sha = digest(f"file:{label}")
    mi_sha = digest(f"manufacturer-image:{label}")
    target = image_target_path(manufacturer_id, device_type, image_type, firmware_version, sha)
    cfl = CflTargetInfo(
        device_type=device_type,
        manufacturer_id=manufacturer_id,
        manufacturer_name=manufacturer_name,
        image_type=image_type,
        firmware_version=firmware_version,
        stack_version="0002",
        header_string=header_string,
        hardware_version_min=hw[0],
        hardware_version_max=hw[1],
        manufacturer_image_sha256=mi_sha,
        manufacturer_image_length=length - 56,
        cpl_entries=tuple(
            CplEntryRef(
                id=entry_id,
                model_id=model_id,
                model_name=model_name,
                hardware_version=hw[0] or "0100",
                status="Active",
                upgrade_from=(),
            )
            for entry_id, model_id, model_name in models
        ),
        reason=reason,
        advisories=advisories,
        published=published,
        release_notes_sha256=None,
    )
    cfl.to_dict()  # the schema must accept every sample, or the tests prove nothing
    return PublishedImage(
        target_path=target,
        length=length,
        sha256=sha,
        cfl=cfl,
        role=role_name(manufacturer_id),
        withdrawal=(
            None
            if withdrawal is None
            else Withdrawal(
                target=target, sha256=sha, withdrawn=withdrawal[0], reason=withdrawal[1]
            )
        ),
    )


def roles() -> tuple[RoleSummary, ...]:
    def role(
        name: str, version: int, expires: datetime, keys: list[str], threshold: int
    ) -> RoleSummary:
        return RoleSummary(name, version, expires, tuple(keyid(k) for k in keys), threshold)

    return (
        role("timestamp", 40, datetime(2026, 3, 2, tzinfo=UTC), ["timestamp"], 1),
        role("mfr-121D", 3, datetime(2027, 1, 1, tzinfo=UTC), ["acme-1", "acme-2"], 1),
        role("root", 2, datetime(2027, 3, 1, tzinfo=UTC), ["root-a", "root-b", "root-c"], 2),
        role("snapshot", 40, datetime(2026, 3, 8, tzinfo=UTC), ["snapshot"], 1),
        role("targets", 5, datetime(2026, 9, 1, tzinfo=UTC), ["targets"], 1),
        role("mfr-2AB0", 2, datetime(2026, 2, 1, tzinfo=UTC), ["evil-1"], 1),
    )


def small_library() -> PublishedLibrary:
    """Five images, two manufacturers, one withdrawn, one security fix, hostile strings in places."""
    images = (
        make_image(
            "121D",
            "Acme Meters Ltd",
            "ESME",
            "ACDCACDC",
            [
                ("CPL-000123", "010A030B", "Acme Single Phase"),
                ("CPL-000124", "010A030C", "Acme Poly"),
            ],
            published="2026-01-10T09:30:00Z",
        ),
        make_image(
            "121D",
            "Acme Meters Ltd",
            "ESME",
            "ACDCACDD",
            [("CPL-000130", "010A030B", "Acme Single Phase")],
            reason="security",
            advisories=("CFL-ADV-2026-001", "CVE-2026-12345"),
            published="2026-02-14T10:00:00Z",
        ),
        make_image(
            "121D",
            "Acme Meters Ltd",
            "GSME",
            "00010002",
            [("CPL-000200", "0B01", "Acme Gas")],
            published="2025-11-02T08:00:00Z",
            hw=(None, None),
            length=750_000,
            withdrawal=("2026-01-20T12:00:00Z", "bricks meters on hardware 0101 <b>urgent</b>"),
        ),
        make_image(
            "2AB0",
            HOSTILE_MANUFACTURER,
            "PPMID",
            "11223344",
            [("CPL-000300", "0C0C", HOSTILE_MODEL), ("CPL-000301", "0C0D", HOSTILE_ATTR)],
            header_string=HOSTILE_HEADER,
            published="2026-02-01T00:00:00Z",
            length=361,
        ),
        make_image(
            "2AB0",
            HOSTILE_MANUFACTURER,
            "IHD",
            "FFEE0001",
            [("CPL-000310", "0D0D0D0D", "Display\u0001 with control char")],
            published="2026-02-01T00:00:00Z",
            length=2_500_000,
        ),
    )
    return PublishedLibrary(
        root_version=2,
        roles=roles(),
        images=images,
        manufacturers={
            "121D": "Acme Meters Ltd",
            "2AB0": HOSTILE_MANUFACTURER,
            "3C3C": "Quiet Ltd",
        },
        withdrawals=(),
    )


def many_library(count: int) -> PublishedLibrary:
    """``count`` plain images over three manufacturers, one per minute: enough to paginate."""
    names = {"1A1A": "Alpha Meters", "2B2B": "Beta Gas", "3C3C": "Gamma Displays"}
    ids = sorted(names)
    images = []
    for n in range(count):
        mfr = ids[n % len(ids)]
        images.append(
            make_image(
                mfr,
                names[mfr],
                ("ESME", "GSME", "IHD")[n % 3],
                f"{n:08X}",
                [(f"CPL-{n:06d}", f"{n % 4096:04X}", f"Model {n}")],
                published=f"2025-{1 + n // 40000 % 12:02d}-{1 + n // 1440 % 28:02d}T"
                f"{n // 60 % 24:02d}:{n % 60:02d}:00Z",
                reason="security" if n % 10 == 0 else "compliance",
                advisories=(f"ADV-{n}",) if n % 10 == 0 else (),
            )
        )
    return PublishedLibrary(
        root_version=1, roles=roles(), images=tuple(images), manufacturers=names
    )


# --- advisories (repo_tool/site/advisories.py) ----------------------------------------------------

HOSTILE_TITLE = "</title><script>alert(1)</script> ]]> \x01 & <b>"
CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
MEDIUM = "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:L/I:L/A:L"


def make_advisory(advisory_id: str, revision: int = 1, **fields: object) -> Advisory:
    """A published advisory, checked by the contract's own reader (scores computed)."""
    doc: dict[str, object] = {
        "id": advisory_id,
        "title": "Buffer overflow in the HAN stack",
        "summary": "A crafted frame overflows a buffer.",
        "cvss": CRITICAL,
        "affected_cpl_entries": ["CPL-000123"],
        "status": "affected",
        "published": "2026-02-01",
        **fields,
    }
    # Encrypted detail is attached by `advisory submit`, not authored.
    sealed = {k: doc.pop(k) for k in ("detail_target", "detail_sha256") if k in doc}
    mfr = advisory_id[4:8]
    authored = parse_authored(json.dumps(doc).encode(), manufacturer_id=mfr, today="2026-02-20")
    advisory = dataclasses.replace(with_revision(authored, revision), **sealed)  # type: ignore[arg-type]
    return Advisory.from_bytes(advisory.to_bytes())


def sample_advisories() -> tuple[Advisory, ...]:
    """One hostile, fixed advisory of 121D (affects ACDCACDC, fixed by ACDCACDD) and one of 2AB0
    still under investigation, its detail encrypted until a disclosure date."""
    fix = next(i for i in small_library().images if i.cfl.firmware_version == "ACDCACDD")
    hostile = make_advisory(
        "CFL-121D-2026-0001",
        2,
        title=HOSTILE_TITLE,
        summary=("<script>alert(2)</script> ]]> \x0b line\n\n" * 800)[:20_000],
        workaround="Disable HAN joining <img src=x onerror=alert(3)>.",
        status="fixed",
        fixed_by=[fix.target_path],
        cve=["CVE-2026-10001"],
    )
    quiet = make_advisory(
        "CFL-2AB0-2026-0001",
        cvss=MEDIUM,
        affected_cpl_entries=["CPL-000300", "CPL-999999"],
        status="investigating",
        disclosure="2026-06-01",
        detail_target="2AB0/CFL-2AB0-2026-0001.r1.advisory.json.detail.jwe",
        detail_sha256=digest("detail"),
        published="2026-02-10",
    )
    return (hostile, quiet)


def advisory_library() -> PublishedLibrary:
    return dataclasses.replace(small_library(), advisories=sample_advisories())
