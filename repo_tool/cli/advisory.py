"""`cfl-repo advisory submit`: the manufacturer signs a security advisory revision into a bundle.

The bundle goes through the provider's inbox and gateway like a deposit (`cfl-repo ingest`).
Registered on the root group by repo_tool/cli/main.py; parse, call the library, render.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from metadata_templates import identifiers
from metadata_templates.advisory import LIMITS, MAX_ADVISORY_BYTES
from metadata_templates.errors import ConfigurationError
from metadata_templates.policy import DEFAULT_POLICY
from repo_tool.cli.console import emit_json, err, read_input, utc_now
from repo_tool.cli.options import manufacturer_signer_options

if TYPE_CHECKING:
    from repo_tool.submit.deposit import Submission
    from repo_tool.verify.published import PublishedLibrary

_now = utc_now


@click.group("advisory")
def advisory_group() -> None:
    """Security advisories: a manufacturer's signed notice that firmware in the field is
    vulnerable, which images fix it, and how bad it is (CVSS v3.1 or v4.0); its technical detail
    optionally encrypted to the entitled suppliers until a disclosure date.

    See docs/manufacturer.md, "Security advisories"."""


def _library_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--manufacturer, the signer options, --from, --root, --out and --json: what `submit` and
    `disclose` share."""
    for option in reversed(
        (
            click.option(
                "--manufacturer",
                "manufacturer_id",
                required=True,
                help="Your manufacturer ID (4 hex digits).",
            ),
            manufacturer_signer_options(),
            click.option(
                "--from",
                "source",
                required=True,
                help="The published library: a folder or an http(s):// URL.",
            ),
            click.option(
                "--root",
                "root_file",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="The library's root you trust (default: trust the source's 1.root.json on "
                "first use).",
            ),
            click.option(
                "--out",
                "out_file",
                required=True,
                type=click.Path(dir_okay=False, path_type=Path),
                help="Bundle file to write (*.cflb).",
            ),
            click.option(
                "--json", "as_json", is_flag=True, help="Print what the bundle holds on stdout."
            ),
        )
    ):
        command = option(command)
    return command


def _detail_option(help_text: str, required: bool) -> Callable[..., Any]:
    return click.option(
        "--detail",
        "detail_file",
        required=required,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help=help_text,
    )


@advisory_group.command("submit")
@click.argument("advisory_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_library_options
@_detail_option(
    "The technical detail (UTF-8 text) to encrypt here to the suppliers entitled to the affected "
    "entries' device types and the provider's notes custodian, until --disclose-at. The signed "
    "revision records its SHA-256; the plaintext never leaves this machine.",
    required=False,
)
@click.option(
    "--disclose-at",
    "disclose_at",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    metavar="YYYY-MM-DD",
    help="With --detail: the day the detail becomes public, after today and at most "
    f"{DEFAULT_POLICY.advisory_max_embargo_days} days ahead (policy.advisory_max_embargo_days); "
    "default: the file's disclosure field, an earlier revision's date, or that last day. "
    "You may disclose sooner.",
)
@click.option(
    "--allow-recent",
    "allow_recent",
    multiple=True,
    metavar="ENTITY_ID",
    help="Encrypt the detail to this organisation although it registered less than "
    f"{DEFAULT_POLICY.min_recipient_age_days} days ago (repeat for several), as for "
    "`submit --release-notes`.",
)
def submit_advisory(
    advisory_file: Path,
    manufacturer_id: str,
    key_files: tuple[Path, ...],
    signer_uris: tuple[str, ...],
    signer_pubkeys: tuple[Path, ...],
    source: str,
    root_file: Path | None,
    out_file: Path,
    as_json: bool,
    detail_file: Path | None,
    disclose_at: datetime | None,
    allow_recent: tuple[str, ...],
) -> None:
    """Sign the next revision of the advisory in ADVISORY_FILE into your role and write a bundle
    for the provider's `ingest`.

    The score and severity are computed here from the CVSS vector; the revision is the next one
    after the published library's (or the file's "revision", which must be that one). What the
    provider's gateway would refuse (entries not yours or not on the CPL, fixes not in the
    library or not applicable, a stale revision) is refused here first.

    With --detail FILE the technical detail is encrypted, like release notes, to the suppliers
    entitled to the affected models and the notes custodian; the site shows only the public part
    until you publish the detail with `cfl-repo advisory disclose`. Every later revision before
    then needs --detail with the same file (re-encrypted to that day's suppliers).

    \b
    Example:
      cfl-repo advisory submit CFL-121D-2026-0001.json --manufacturer 121D \\
          --key acme.pem --from https://cfl.example/ --root root.json --out adv.cflb
    With the detail encrypted until a disclosure date:
      cfl-repo advisory submit CFL-121D-2026-0002.json --manufacturer 121D \\
          --key acme.pem --from https://cfl.example/ --root root.json --out adv.cflb \\
          --detail exploit-detail.txt --disclose-at 2026-05-01
    """
    from repo_tool.cli.options import ADVISORY_DETAIL, allowed_recent, recipient_rule, report_recent
    from repo_tool.submit.advisory import build_advisory_submission

    if (disclose_at is not None or allow_recent) and detail_file is None:
        raise ConfigurationError(
            "--disclose-at/--allow-recent: found without --detail, expected --detail FILE too"
        )
    mfr = _manufacturer(manufacturer_id, out_file)
    document = read_input(advisory_file, "ADVISORY_FILE", limit=MAX_ADVISORY_BYTES)
    detail = _read_detail(detail_file)
    allowed = allowed_recent(allow_recent)
    library, signers, now = _library(mfr, source, root_file, key_files, signer_uris, signer_pubkeys)
    rule = recipient_rule(allowed, now, ADVISORY_DETAIL)
    submission, advisory = build_advisory_submission(
        document=document,
        manufacturer_id=mfr,
        signers=signers,
        library=library,
        now=now,
        where=advisory_file.name,
        detail=detail,
        disclose_at=None if disclose_at is None else disclose_at.date(),
        recipient_rule=rule,
    )
    if detail is not None:
        report_recent(submission.recent_recipients, rule, now, ADVISORY_DETAIL)
    _write(out_file, submission, advisory, mfr, as_json)


@advisory_group.command("disclose")
@click.argument("advisory_id")
@_library_options
@_detail_option(
    "The detail you encrypted with `advisory submit --detail`, byte for byte: its SHA-256 must be "
    "the one the published revision recorded.",
    required=True,
)
def disclose_advisory(
    advisory_id: str,
    manufacturer_id: str,
    key_files: tuple[Path, ...],
    signer_uris: tuple[str, ...],
    signer_pubkeys: tuple[Path, ...],
    source: str,
    root_file: Path | None,
    out_file: Path,
    as_json: bool,
    detail_file: Path,
) -> None:
    """Publish the encrypted detail of advisory ADVISORY_ID: sign the next revision with the
    detail as text, for the provider's `ingest`.

    The detail must be the file you encrypted, byte for byte (its SHA-256 is the one the signed
    advisory recorded; the gateway refuses another: advisory-detail-swapped). You may disclose
    before the announced date; the revision records the day you did. After the provider's next
    publish the website shows the detail.

    \b
    Example:
      cfl-repo advisory disclose CFL-121D-2026-0002 --detail exploit-detail.txt \\
          --manufacturer 121D --key acme.pem --from https://cfl.example/ --root root.json \\
          --out disclose.cflb
    """
    from repo_tool.submit.advisory_disclose import build_disclosure

    mfr = _manufacturer(manufacturer_id, out_file)
    detail = _read_detail(detail_file)
    assert detail is not None
    library, signers, now = _library(mfr, source, root_file, key_files, signer_uris, signer_pubkeys)
    submission, advisory = build_disclosure(
        advisory_id=advisory_id,
        detail=detail,
        manufacturer_id=mfr,
        signers=signers,
        library=library,
        now=now,
    )
    _write(out_file, submission, advisory, mfr, as_json)


def _manufacturer(manufacturer_id: str, out_file: Path) -> str:
    from repo_tool.intake.bundle import BUNDLE_SUFFIX

    try:
        mfr = identifiers.manufacturer_id(manufacturer_id, "--manufacturer")
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    if out_file.suffix != BUNDLE_SUFFIX:
        raise ConfigurationError(
            f"--out: found {out_file.name!r}, expected a name ending in {BUNDLE_SUFFIX}"
        )
    return mfr


def _read_detail(detail_file: Path | None) -> bytes | None:
    # UTF-8 is at most 4 bytes a character: anything longer cannot be within the cap.
    return (
        None
        if detail_file is None
        else read_input(detail_file, "--detail", limit=4 * LIMITS["detail"])
    )


def _library(
    mfr: str,
    source: str,
    root_file: Path | None,
    key_files: tuple[Path, ...],
    signer_uris: tuple[str, ...],
    signer_pubkeys: tuple[Path, ...],
) -> tuple[PublishedLibrary, list[Any], datetime]:
    """The published library verified from the trusted root, the signers, and now."""
    from repo_tool.cli.options import manufacturer_signers
    from repo_tool.submit.deposit import load_source_library, read_source_root, source_reader
    from repo_tool.submit.scope import manufacturer_roles

    signers = manufacturer_signers(key_files, signer_uris, signer_pubkeys)
    read = source_reader(source)
    if root_file is not None:
        root_bytes = root_file.read_bytes()
    else:
        root_bytes = read_source_root(source, read)
        err("warning: no --root given; trusting the source's 1.root.json on first use")
    now = _now()
    library = load_source_library(source, read, root_bytes, now=now, wanted=manufacturer_roles(mfr))
    return library, list(signers), now


def _write(out_file: Path, submission: Submission, advisory: Any, mfr: str, as_json: bool) -> None:
    from repo_tool.intake.bundle import write_bundle

    write_bundle(out_file, submission.bundle)
    bundle = submission.bundle
    if as_json:
        emit_json(
            {
                "bundle": str(out_file),
                "kind": bundle.kind,
                "manufacturer_id": mfr,
                "target": bundle.target,
                "advisory": advisory.id,
                "revision": advisory.revision,
                "severity": advisory.severity,
                "score": advisory.score,
                "role": bundle.role_name,
                "role_version": submission.role_version,
                **_detail_json(advisory),
            }
        )
    detail = {"encrypted": "; detail encrypted until ", "public": "; detail public"}.get(
        advisory.detail_state or "", ""
    )
    if advisory.detail_state == "encrypted":
        detail += str(advisory.disclosure)
    err(
        f"wrote {out_file}: {advisory.id} revision {advisory.revision} ({advisory.severity} "
        f"{advisory.score}) in {bundle.role_name} version {submission.role_version}{detail}"
    )


def _detail_json(advisory: Any) -> dict[str, Any]:
    """The detail's part of --json (absent for an advisory without detail: the shape it had)."""
    if advisory.detail_state is None:
        return {}
    return {
        "detail": advisory.detail_state,
        "detail_sha256": advisory.detail_sha256,
        "detail_target": advisory.detail_target,
        "disclosure": advisory.disclosure,
    }
