"""`cfl-repo advisory submit`: the manufacturer signs a security advisory revision into a bundle.

The bundle goes through the provider's inbox and gateway like a deposit (`cfl-repo ingest`).
Registered on the root group by repo_tool/cli/main.py; parse, call the library, render.
"""

from __future__ import annotations

from pathlib import Path

import click

from metadata_templates import identifiers
from metadata_templates.advisory import MAX_ADVISORY_BYTES
from metadata_templates.errors import ConfigurationError
from repo_tool.cli.console import emit_json, err, read_input, utc_now
from repo_tool.cli.options import manufacturer_signer_options

_now = utc_now


@click.group("advisory")
def advisory_group() -> None:
    """Security advisories: a manufacturer's signed notice that firmware in the field is
    vulnerable, which images fix it, and how bad it is (CVSS v3.1 or v4.0).

    See docs/manufacturer.md, "Security advisories"."""


@advisory_group.command("submit")
@click.argument("advisory_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--manufacturer", "manufacturer_id", required=True, help="Your manufacturer ID (4 hex digits)."
)
@manufacturer_signer_options()
@click.option(
    "--from", "source", required=True, help="The published library: a folder or an http(s):// URL."
)
@click.option(
    "--root",
    "root_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The library's root you trust (default: trust the source's 1.root.json on first use).",
)
@click.option(
    "--out",
    "out_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Bundle file to write (*.cflb).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what the bundle holds on stdout.")
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
) -> None:
    """Sign the next revision of the advisory in ADVISORY_FILE into your role and write a bundle
    for the provider's `ingest`.

    The score and severity are computed here from the CVSS vector; the revision is the next one
    after the published library's (or the file's "revision", which must be that one). What the
    provider's gateway would refuse (entries not yours or not on the CPL, fixes not in the
    library or not applicable, a stale revision) is refused here first.

    \b
    Example:
      cfl-repo advisory submit CFL-121D-2026-0001.json --manufacturer 121D \\
          --key acme.pem --from https://cfl.example/ --root root.json --out adv.cflb
    """
    from repo_tool.cli.options import manufacturer_signers
    from repo_tool.intake.bundle import BUNDLE_SUFFIX, write_bundle
    from repo_tool.submit.advisory import build_advisory_submission
    from repo_tool.submit.deposit import load_source_library, read_source_root, source_reader
    from repo_tool.submit.scope import manufacturer_roles

    try:
        mfr = identifiers.manufacturer_id(manufacturer_id, "--manufacturer")
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    if out_file.suffix != BUNDLE_SUFFIX:
        raise ConfigurationError(
            f"--out: found {out_file.name!r}, expected a name ending in {BUNDLE_SUFFIX}"
        )
    document = read_input(advisory_file, "ADVISORY_FILE", limit=MAX_ADVISORY_BYTES)
    signers = manufacturer_signers(key_files, signer_uris, signer_pubkeys)
    read = source_reader(source)
    if root_file is not None:
        root_bytes = root_file.read_bytes()
    else:
        root_bytes = read_source_root(source, read)
        err("warning: no --root given; trusting the source's 1.root.json on first use")
    now = _now()
    library = load_source_library(source, read, root_bytes, now=now, wanted=manufacturer_roles(mfr))
    submission, advisory = build_advisory_submission(
        document=document,
        manufacturer_id=mfr,
        signers=signers,
        library=library,
        now=now,
        where=advisory_file.name,
    )
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
            }
        )
    err(
        f"wrote {out_file}: {advisory.id} revision {advisory.revision} ({advisory.severity} "
        f"{advisory.score}) in {bundle.role_name} version {submission.role_version}"
    )
