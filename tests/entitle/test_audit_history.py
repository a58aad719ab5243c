"""The audit judged against the entitlement history: the record in force at each request's time,
the grace basis, device types the policy leaves to User Roles, and the host comparison."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from entitle.conftest import D1, D2, S1, S2, TODAY, World, write_inventory
from factory import T0
from metadata_templates.naming import blob_name
from metadata_templates.suppliers import certificate_sha256
from repo_tool.access.audit import AccessRecord, AuditLibrary, Auditor, parse_line
from repo_tool.access.audit_host import HostCheck
from repo_tool.entitle.judge import EntitlementJudge
from repo_tool.entitle.policy import EntitlementPolicy
from repo_tool.ops.entitlements import import_entitlements, read_estate
from repo_tool.state.entitlements import EntitlementStore
from repo_tool.state.repository import Repository

# A day after the suppliers registered (tests/factory.py T0), so every request is by a registered one.
NOON = T0 + timedelta(days=1)
SINCE = TODAY - timedelta(days=400)


def line(
    world: World, repo: Repository, who: str, short: str, when: datetime, status: int
) -> AccessRecord:
    target = world.targets[short]
    sha = repo.role(f"mfr-{target[:4]}").signed.targets[target].hashes["sha256"]
    cert = certificate_sha256(world.certificates[who].cert.public_bytes(Encoding.DER))
    doc = {
        "format": "cfl-access-1", "time": when.isoformat(), "entity_id": who,
        "certificate_sha256": cert, "certificate_sha1": "", "verify": "SUCCESS",
        "certificate": "", "remote_addr": "::1", "method": "GET",
        "path": "/targets/" + blob_name(target, sha), "status": status, "bytes": 1,
    }  # fmt: skip
    parsed = parse_line(json.dumps(doc, separators=(",", ":")).encode())
    assert parsed is not None
    return parsed


def imported(repo: Repository, path: Path, when: datetime) -> None:
    with repo.locked():
        import_entitlements(repo, read_estate(path), now=when, inventory_date=when.date())


def auditor(
    repo: Repository, policy: EntitlementPolicy | None = None
) -> tuple[Auditor, EntitlementJudge]:
    store = EntitlementStore(repo.state_dir)
    judge = EntitlementJudge(
        store.history(repo.head), store.record, (policy or EntitlementPolicy()).covers
    )
    library = AuditLibrary.of([repo.role(n).signed for n in sorted(repo.head.roles)], repo.cpl())
    return Auditor(repo.suppliers(), library, entitlements=judge), judge


def test_each_request_is_judged_by_the_record_in_force_at_its_time(
    repo_copy: Repository, pristine: World, tmp_path: Path
) -> None:
    imported(
        repo_copy, write_inventory(tmp_path / "1.csv", [(D1, S1, SINCE), (D2, S2, SINCE)]), NOON
    )
    moved = write_inventory(tmp_path / "2.csv", [(D1, S2, TODAY), (D2, S2, SINCE)])
    imported(repo_copy, moved, NOON + timedelta(hours=2))
    audit, judge = auditor(repo_copy)
    w = pristine
    verdicts = {
        "before any import": audit.judge(
            line(w, repo_copy, S1, "a2", NOON - timedelta(hours=1), 200)
        ),
        "S1 own": audit.judge(line(w, repo_copy, S1, "a2", NOON + timedelta(hours=1), 200)),
        "S2 before the move": audit.judge(
            line(w, repo_copy, S2, "a2", NOON + timedelta(hours=1), 403)
        ),
        "S2 after the move": audit.judge(
            line(w, repo_copy, S2, "a2", NOON + timedelta(hours=3), 200)
        ),
        "S1 in grace": audit.judge(line(w, repo_copy, S1, "a2", NOON + timedelta(hours=3), 200)),
        "S1 after grace": audit.judge(line(w, repo_copy, S1, "a2", NOON + timedelta(days=31), 200)),
        "S1 not its type": audit.judge(
            line(w, repo_copy, S1, "b5", NOON + timedelta(hours=1), 403)
        ),
    }
    summary = {k: (v.entitled, v.basis, v.findings) for k, v in verdicts.items()}
    assert summary == {
        "before any import": (None, None, ()),
        "S1 own": (True, "estate", ()),
        "S2 before the move": (False, None, ("no-applicable-device",)),
        "S2 after the move": (True, "estate", ()),
        "S1 in grace": (True, "grace", ()),
        "S1 after grace": (False, None, ("no-applicable-device",)),
        "S1 not its type": (False, None, ("no-applicable-device",)),
    }
    assert verdicts["S1 in grace"].to_dict()["entitlement"] == "grace"
    assert len(judge.used) == 2

    check = HostCheck()
    for judged in verdicts.values():
        check.add(judged)
    doc = check.to_dict(judge.used)
    assert doc["refused_at_host"] == 2
    assert doc["refused_while_entitled"] == 0
    assert doc["served_while_not_entitled"] == 1  # a host not regenerated after the grace
    assert doc["grace_downloads"] == {S1: 1}
    assert "S1" not in doc["disagreements"][0] and S1 in doc["disagreements"][0]
    assert any("disagree" in text for text in check.lines(judge.used))


def test_device_types_outside_the_estate_policy_are_judged_by_role_only(
    repo_copy: Repository, pristine: World, tmp_path: Path
) -> None:
    imported(repo_copy, write_inventory(tmp_path / "1.csv", [(D1, S1, SINCE)]), NOON)
    audit, _ = auditor(repo_copy, EntitlementPolicy(estate_device_types=("ESME",)))
    judged = audit.judge(line(pristine, repo_copy, S2, "b5", NOON + timedelta(hours=1), 200))
    assert (judged.entitled, judged.findings) == (True, ())
    esme = audit.judge(line(pristine, repo_copy, S2, "a2", NOON + timedelta(hours=1), 200))
    assert esme.findings == ("no-applicable-device",)
