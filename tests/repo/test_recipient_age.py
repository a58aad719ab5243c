"""`submit --release-notes` refuses a recipient registered too recently (issue 25).

A thief of the online `cfl-provider` key can add their own organisation to the supplier registry;
the one thing that entry cannot hide is that it is new. The rule is pure (`now` injected), so most
tests give the clock; the command-line tests register the newcomer three days before the real
clock `cfl-repo` reads, and one answers the terminal prompt through a pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from notes_factory import (
    ESTABLISHED,
    PLAINTEXT,
    NotesLibrary,
    make_org,
    notes_library,
    publish_custodian,
    publish_registry,
)

from factory import LibraryFactory, make_entry, make_image, mi_sha
from metadata_templates.custom import format_timestamp
from metadata_templates.errors import RejectedInputError
from metadata_templates.notes import parse_envelope
from metadata_templates.policy import DEFAULT_POLICY, RolePolicy
from metadata_templates.suppliers import SUPPLIERS_TARGET_PATH, Supplier, SupplierRegistry
from repo_tool.intake.bundle import Declaration
from repo_tool.notes.recipient_age import (
    RecentRecipient,
    RecipientAgeRule,
    check_recipient_ages,
    recent_recipients,
)
from repo_tool.ops.manufacturers import add_manufacturer
from repo_tool.signing.keys import write_keypair
from repo_tool.submit.deposit import Submission, build_submission
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import verified_library

CFL_REPO = Path(sys.executable).with_name("cfl-repo")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NEWCOMER = make_org("5555666677778888", "Newcomer Energy", "IS", "GS")
VOLT = make_org("0011223344556677", "Volt Energy", "IS")


def _supplier(
    age: timedelta | None, org: str = "5555666677778888", text: str | None = None
) -> Supplier:
    registered = text if text is not None else format_timestamp(NOW - (age or timedelta(0)))
    return replace(NEWCOMER.supplier(registered), entity_id=org)


# ---------------------------------------------------------------------------- the pure rule


def test_the_policy_default_is_fourteen_days_and_a_provider_config_may_carry_it() -> None:
    assert DEFAULT_POLICY.min_recipient_age_days == 14
    assert RolePolicy.from_dict({"min_recipient_age_days": 30}).min_recipient_age_days == 30
    with pytest.raises(ValueError, match=r"policy.min_recipient_age_days: found 0"):
        RolePolicy.from_dict({"min_recipient_age_days": 0})


@pytest.mark.parametrize(
    ("registered", "recent"),
    [
        (timedelta(days=3), True),
        (timedelta(days=14) - timedelta(seconds=1), True),
        (timedelta(days=14), False),
        (timedelta(days=400), False),
        (-timedelta(days=1), True),  # in the future: it cannot be shown to be old
    ],
    ids=["3-days", "a-second-short", "exactly-14-days", "long-ago", "future"],
)
def test_recent_means_registered_less_than_the_minimum_age_before_now(
    registered: timedelta, recent: bool
) -> None:
    found = recent_recipients([_supplier(registered)], now=NOW, min_age=timedelta(days=14))
    assert bool(found) is recent


def test_an_unreadable_registration_date_counts_as_recent() -> None:
    [found] = recent_recipients(
        [_supplier(None, text="last Tuesday")], now=NOW, min_age=timedelta(days=14)
    )
    assert found.registered is None
    assert "registered 'last Tuesday' (not a UTC timestamp)" in found.describe(NOW)


def test_a_three_day_old_recipient_is_refused_naming_its_id_name_and_date() -> None:
    with pytest.raises(RejectedInputError) as raised:
        check_recipient_ages(
            [_supplier(timedelta(days=400), "0011223344556677"), _supplier(timedelta(days=3))],
            RecipientAgeRule(),
            now=NOW,
        )
    message = str(raised.value)
    assert message.startswith(
        "--release-notes recipient(s): found 5555666677778888 'Newcomer Energy', "
    )
    assert "registered 2026-02-26T12:00:00Z (3 days ago)" in message
    assert "0011223344556677" not in message  # the established recipient is not named
    assert "expected registrations at least 14 days old (policy.min_recipient_age_days" in message
    hint = raised.value.hint or ""
    assert "--allow-recent 5555666677778888" in hint
    assert "submit after 2026-03-12T12:00:00Z" in hint


def test_allow_recent_or_a_yes_at_the_prompt_accepts_it_and_it_is_reported() -> None:
    young = _supplier(timedelta(days=3))
    allowed = check_recipient_ages(
        [young], RecipientAgeRule(allowed=frozenset({young.entity_id})), now=NOW
    )
    assert [r.supplier for r in allowed] == [young]
    asked: list[RecentRecipient] = []

    def yes(recent: RecentRecipient) -> bool:
        asked.append(recent)
        return True

    assert check_recipient_ages([young], RecipientAgeRule(confirm=yes), now=NOW)
    assert [r.supplier for r in asked] == [young]
    with pytest.raises(RejectedInputError):
        check_recipient_ages([young], RecipientAgeRule(confirm=lambda r: False), now=NOW)


def test_every_refused_recipient_is_named_and_allowing_one_leaves_the_other() -> None:
    one, two = _supplier(timedelta(days=1), "AAAABBBBCCCCDDDD"), _supplier(timedelta(days=2))
    rule = RecipientAgeRule(allowed=frozenset({"AAAABBBBCCCCDDDD"}))
    with pytest.raises(RejectedInputError) as raised:
        check_recipient_ages([one, two], rule, now=NOW)
    assert "5555666677778888" in str(raised.value) and "AAAABBBBCCCCDDDD" not in str(raised.value)
    with pytest.raises(RejectedInputError, match=r"AAAABBBBCCCCDDDD.*; 5555666677778888"):
        check_recipient_ages([one, two], RecipientAgeRule(), now=NOW)


# ------------------------------------------------------------- a deposit on a real library


def _published_registry(factory: LibraryFactory) -> SupplierRegistry:
    return SupplierRegistry.from_bytes(factory.repo.provider_document(SUPPLIERS_TARGET_PATH) or b"")


def _add_to_registry(factory: LibraryFactory, supplier: Supplier) -> None:
    """Publish the registry with one more organisation, as a stolen online key signs it."""
    registry = _published_registry(factory).with_added(supplier)
    with factory.repo.locked():
        factory.repo.put_provider_targets(
            {SUPPLIERS_TARGET_PATH: registry.to_bytes()},
            now=factory.tick(),
            event={"event": "test-registry"},
        )
    factory.publish()


@pytest.fixture
def young_library(tmp_path: Path) -> NotesLibrary:
    """notes_library's organisations (registered 30 days before its clock), plus a newcomer
    registered 3 days before it: what a stolen online key would add."""
    lib = notes_library(tmp_path)
    _add_to_registry(
        lib.factory, NEWCOMER.supplier(format_timestamp(lib.factory.now - timedelta(days=3)))
    )
    return lib


def _deposit(lib: NotesLibrary, image: str, entry: str, rule: RecipientAgeRule) -> Submission:
    factory = lib.factory
    library = verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick(), check_blobs=False
    )
    mfr = "121D" if image.startswith("esme") else "3F01"
    return build_submission(
        image=lib.images[image],
        manufacturer_id=mfr,
        signers=[factory.mfr_signers[mfr]],
        declaration=Declaration((entry,), "compliance", ()),
        release_notes=PLAINTEXT,
        library=library,
        now=factory.now,
        recipient_rule=rule,
    )


def test_build_submission_refuses_a_three_day_old_recipient_and_accepts_it_when_allowed(
    young_library: NotesLibrary,
) -> None:
    lib = young_library
    with pytest.raises(
        RejectedInputError,
        match=r"5555666677778888 'Newcomer Energy', registered .* \(3 days ago\)",
    ):
        _deposit(lib, "esme", "CPL-0002", RecipientAgeRule())
    submission = _deposit(
        lib, "esme", "CPL-0002", RecipientAgeRule(allowed=frozenset({NEWCOMER.entity_id}))
    )
    assert [r.supplier.entity_id for r in submission.recent_recipients] == [NEWCOMER.entity_id]
    kids = parse_envelope(submission.bundle.notes_jwe or b"").kids
    assert NEWCOMER.entity_id in kids and VOLT.entity_id in kids
    # The gateway recomputes the same audience from the same registry and accepts it.
    result = lib.factory.ingest(submission.bundle)
    assert result.status == "accepted", result.messages


def test_a_young_organisation_that_is_not_a_recipient_does_not_matter(
    young_library: NotesLibrary,
) -> None:
    """GSME notes go to GS organisations only: a young IS-only one is not asked about, nor is a
    young one already revoked."""
    lib = young_library
    registry = _published_registry(lib.factory)
    only_is = replace(registry.by_entity_id()[NEWCOMER.entity_id], roles=("IS",))
    with lib.factory.repo.locked():
        lib.factory.repo.put_provider_targets(
            {SUPPLIERS_TARGET_PATH: registry.with_replaced(only_is).to_bytes()},
            now=lib.factory.tick(),
            event={"event": "test-registry"},
        )
    lib.factory.publish()
    assert _deposit(lib, "gsme", "CPL-0101", RecipientAgeRule()).recent_recipients == ()
    revoked = _published_registry(lib.factory).revoke(
        NEWCOMER.entity_id, at=format_timestamp(lib.factory.now), reason="registered by a thief"
    )
    with lib.factory.repo.locked():
        lib.factory.repo.put_provider_targets(
            {SUPPLIERS_TARGET_PATH: revoked.to_bytes()},
            now=lib.factory.tick(),
            event={"event": "test-registry"},
        )
    lib.factory.publish()
    assert _deposit(lib, "esme", "CPL-0002", RecipientAgeRule()).recent_recipients == ()


# ------------------------------------------------------------------------ the command line


def cfl_repo(*args: str | Path, stdin: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CFL_REPO", "CFL_KEY_PASSPHRASE")}
    return subprocess.run(
        [str(CFL_REPO), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL if stdin is None else stdin,
    )


def _errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


@pytest.fixture
def cli_library(tmp_path: Path) -> dict[str, Path]:
    """A published library a manufacturer reaches from the command line: its key on disk, a
    custodian, and a registry with an organisation registered 30 days and one 3 days before the
    real clock (the one `cfl-repo submit` reads)."""
    image = make_image("121D", 2)
    factory = LibraryFactory(tmp_path / "lib", provider=True)
    factory.import_cpl([make_entry("CPL-0002", fw="00000002", image_sha=mi_sha(image))])
    key, _uri = write_keypair(tmp_path / "acme.pem")
    with factory.repo.locked():
        add_manufacturer(factory.repo, "121D", "Acme", [key], 1, now=factory.tick())
    publish_custodian(factory)
    real_now = datetime.now(UTC).replace(microsecond=0)
    publish_registry(factory, [VOLT], registered=real_now - ESTABLISHED)
    _add_to_registry(factory, NEWCOMER.supplier(format_timestamp(real_now - timedelta(days=3))))
    (tmp_path / "fw.ota").write_bytes(image)
    (tmp_path / "notes.txt").write_bytes(PLAINTEXT)
    root = tmp_path / "root.json"
    root.write_bytes(factory.root_bytes)
    return {"out": factory.out, "key": tmp_path / "acme.pem", "root": root, "tmp": tmp_path}


def _submit_args(lib: dict[str, Path], *extra: str) -> list[str | Path]:
    return [
        "submit", lib["tmp"] / "fw.ota", "--manufacturer", "121D", "--key", lib["key"],
        "--cpl-entry", "CPL-0002", "--reason", "compliance",
        "--release-notes", lib["tmp"] / "notes.txt",
        "--from", lib["out"], "--root", lib["root"], "--out", lib["tmp"] / "out" / "d.cflb",
        *extra,
    ]  # fmt: skip


def test_cfl_repo_submit_refuses_the_newcomer_with_one_error_line_and_writes_nothing(
    cli_library: dict[str, Path],
) -> None:
    refused = cfl_repo(*_submit_args(cli_library))
    assert refused.returncode == 1, refused.stderr
    [error] = _errors(refused)
    assert error.startswith(
        "error: --release-notes recipient(s): found 5555666677778888 'Newcomer Energy', registered "
    )
    assert "(3 days ago)" in error and "Volt" not in error
    assert "hint: confirm the organisation with the CFL provider" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (cli_library["tmp"] / "out").exists()


def test_cfl_repo_submit_accepts_the_newcomer_named_with_allow_recent(
    cli_library: dict[str, Path],
) -> None:
    done = cfl_repo(*_submit_args(cli_library, "--allow-recent", "5555-6666-7777-8888", "--json"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["target"].startswith("121D/ESME-")
    assert "warning: release notes encrypted to 5555666677778888 'Newcomer Energy'" in done.stderr
    assert "accepted by --allow-recent" in done.stderr


@pytest.mark.parametrize(
    ("extra", "drop_notes", "message"),
    [
        (
            ("--allow-recent", "not-an-id"),
            False,
            "--allow-recent: found 'not-an-id', expected 16 hex digits",
        ),
        (
            ("--allow-recent", "5555666677778888"),
            True,
            "--allow-recent: found without --release-notes",
        ),
    ],
    ids=["bad-entity-id", "without-release-notes"],
)
def test_allow_recent_mistakes_are_usage_errors(
    cli_library: dict[str, Path], extra: tuple[str, ...], drop_notes: bool, message: str
) -> None:
    args = _submit_args(cli_library, *extra)
    if drop_notes:
        at = args.index("--release-notes")
        del args[at : at + 2]
    result = cfl_repo(*args)
    assert result.returncode == 2
    assert _errors(result) == [f"error: {message}"] or _errors(result)[0].startswith(
        f"error: {message}"
    )


def test_an_allow_recent_that_names_nobody_recent_is_a_warning(
    cli_library: dict[str, Path],
) -> None:
    done = cfl_repo(
        *_submit_args(
            cli_library, "--allow-recent", "5555666677778888", "--allow-recent", "0011223344556677"
        )
    )
    assert done.returncode == 0, done.stderr
    assert (
        "warning: --allow-recent 0011223344556677: not a recipient registered within 14 days"
        in done.stderr
    )


def _on_a_terminal(args: list[str | Path], answer: bytes) -> tuple[int, str]:
    """Run cfl-repo with stdin and stderr on a pseudo-terminal, answering the first prompt."""
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("CFL_REPO", "CFL_KEY_PASSPHRASE")}
    process = subprocess.Popen(
        [str(CFL_REPO), *map(str, args)],
        stdin=terminal,
        stdout=subprocess.DEVNULL,
        stderr=terminal,
        env=env,
    )
    os.close(terminal)
    seen = b""
    answered = False
    while True:
        ready, _, _ = select.select([controller], [], [], 60)
        if not ready:
            process.kill()
            pytest.fail(f"no prompt within 60 s; saw {seen!r}")
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
        if not answered and b"anyway?" in seen:
            os.write(controller, answer + b"\n")
            answered = True
    os.close(controller)
    return process.wait(timeout=60), seen.decode(errors="replace")


@pytest.mark.parametrize(("answer", "code"), [(b"y", 0), (b"n", 1)])
def test_on_a_terminal_submit_asks_about_the_newcomer(
    cli_library: dict[str, Path], answer: bytes, code: int
) -> None:
    returncode, screen = _on_a_terminal(_submit_args(cli_library), answer)
    assert "5555666677778888 'Newcomer Energy'" in screen and "anyway?" in screen
    assert returncode == code, screen
    if code == 0:
        assert "accepted by you at the prompt" in screen
    else:
        assert "error: --release-notes recipient(s)" in screen
