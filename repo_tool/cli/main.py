"""`cfl-repo`: the provider's and manufacturers' command line. Parses, calls the library, renders.

Exit codes: 0 success, 1 something was rejected or failed verification, 2 usage or configuration.
With ``--json`` one JSON document (``"schema_version": 1``) goes to stdout; people read stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from metadata_templates import identifiers
from metadata_templates.errors import EXIT_FAILURE, CflError, ConfigurationError, RejectedInputError
from metadata_templates.policy import DEFAULT_POLICY
from repo_tool import __version__
from repo_tool.cli.console import emit_json as _emit_json
from repo_tool.cli.console import err as _err
from repo_tool.cli.console import open_repo as _open_repo
from repo_tool.cli.console import prompt_secret as _prompt_secret
from repo_tool.cli.console import read_input, run, utc_now
from repo_tool.cli.console import repo_path as _repo_path
from repo_tool.dev.local_server import open_server
from repo_tool.signing.keys import (
    KEY_TYPES,
    PASSPHRASE_ENV,
    SignerRef,
    public_key_from_pem,
    write_keypair,
)
from repo_tool.state.config import SIGNED_ROLES, TOP_LEVEL_ROLES

if TYPE_CHECKING:
    pass

logger = logging.getLogger("repo_tool")

_now = utc_now


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cfl-repo")
@click.option(
    "--repo",
    type=click.Path(path_type=Path),
    envvar="CFL_REPO",
    help="Repository working directory (env CFL_REPO).",
)
@click.option("-v", "--verbose", count=True, help="More detail; -v shows tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, repo: Path | None, verbose: int) -> None:
    """Centralised Firmware Library: the provider's and manufacturers' repository tool.

    \b
    Provider:      init, cpl import, manufacturer add, ingest, publish, refresh, withdraw, rotate-keys,
                   status, site build, verify, serve
    Release notes: notes custodian, notes grant
    Access:        supplier add|revoke|list, host nginx, audit
    Manufacturer:  keygen, submit
    Demo:          demo-data

    Every command exits 0 on success, 1 when something was rejected or failed verification,
    2 on usage or configuration errors. See docs/operator.md and docs/manufacturer.md.
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    ctx.ensure_object(dict)
    ctx.obj["repo"] = repo


# ------------------------------------------------------------------------------------------ init


@cli.command()
@click.option(
    "--dev-keys",
    is_flag=True,
    help="Generate UNENCRYPTED development keys under R/keys (never for production).",
)
@click.option(
    "--root-keys",
    type=click.IntRange(1, 15),
    default=DEFAULT_POLICY.root_keys,
    show_default=True,
    help="With --dev-keys: how many root keys.",
)
@click.option(
    "--root-threshold",
    type=click.IntRange(1, 15),
    default=DEFAULT_POLICY.root_threshold,
    show_default=True,
    help="Signatures root needs.",
)
@click.option(
    "--key",
    "keys",
    nargs=3,
    multiple=True,
    metavar="ROLE PUB.pem URI",
    help="A production key: role (root|targets|snapshot|timestamp|cfl-provider), its public PEM, and "
    "its signer URI (hsm:..., encfile:PATH, gcpkms:..., awskms:...). Repeat per key. cfl-provider "
    "is the online key that signs cfl/* documents (without it, `provider adopt` adds it later).",
)
@click.option(
    "--image-size-cap",
    type=click.IntRange(1),
    default=10_240_000,
    show_default=True,
    help="Largest image accepted, in octets (DUIS limit).",
)
@click.option(
    "--log-origin",
    help="The transparency log's origin line (default: derived from the log key). See "
    "docs/transparency.md.",
)
@click.option(
    "--log-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An Ed25519 private PEM for the transparency log (default: generate one under R/keys).",
)
@click.pass_context
def init(
    ctx: click.Context,
    dev_keys: bool,
    root_keys: int,
    root_threshold: int,
    keys: tuple[tuple[str, str, str], ...],
    image_size_cap: int,
    log_origin: str | None,
    log_key: Path | None,
) -> None:
    """Create a repository: configuration, top-level keys, version-1 root and targets.

    \b
    Development:  cfl-repo --repo R init --dev-keys
    Production:   cfl-repo --repo R init --root-threshold 2 \\
                    --key root r1.pub.pem hsm:... --key root r2.pub.pem hsm:... \\
                    --key targets t.pub.pem hsm:... --key snapshot s.pub.pem encfile:/k/s.pem \\
                    --key timestamp ts.pub.pem encfile:/k/ts.pem \\
                    --key cfl-provider p.pub.pem hsm:...
    """
    from repo_tool.ops.init import (
        configuration,
        development_signers,
        initialise,
        log_key_config,
        refuse_initialised,
    )

    path = _repo_path(ctx)
    refuse_initialised(path)
    if dev_keys == bool(keys):
        raise ConfigurationError("choose exactly one of --dev-keys or --key ROLE PUB.pem URI")
    if dev_keys:
        if root_threshold > root_keys:
            raise ConfigurationError(
                f"--root-threshold: found {root_threshold}, expected at most --root-keys ({root_keys})"
            )
        signers = development_signers(path, root_keys)
        _err(
            f"warning: DEVELOPMENT KEYS written unencrypted to {path / 'keys'} - never use them for a "
            "real library"
        )
    else:
        signers = {role: [] for role in SIGNED_ROLES}
        for role, pem, uri in keys:
            if role not in SIGNED_ROLES:
                raise ConfigurationError(
                    f"--key ROLE: found {role!r}, expected one of {', '.join(SIGNED_ROLES)}"
                )
            try:
                data = Path(pem).read_bytes()
            except OSError as e:
                raise ConfigurationError(f"--key {role} {pem}: cannot read ({e.strerror})") from e
            signers[role].append(SignerRef(public_key_from_pem(data, source=pem), uri))
    config = configuration(
        signers, root_threshold=root_threshold, image_size_cap=image_size_cap, dev_keys=dev_keys
    )
    # The transparency log's note key (repo_tool/tlog/provider_log.py): generated, or the PEM given.
    config = replace(
        config,
        log=log_key_config(
            path, dev_keys=dev_keys, origin=log_origin, pem=log_key, secrets_handler=_prompt_secret
        ),
    )
    initialise(path, config, now=_now(), secrets_handler=_prompt_secret)
    _err(f"initialised repository {path} (root {root_threshold} of {len(signers['root'])} keys)")
    _err(f"next: cfl-repo --repo {path} cpl import CPL.csv")


# ------------------------------------------------------------------------------------------- cpl


@cli.group()
def cpl() -> None:
    """The Central Products List: import it, and it is published as target cfl/cpl.json."""


@cpl.command("import")
@click.argument("cpl_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.pass_context
def cpl_import(ctx: click.Context, cpl_file: Path, as_json: bool) -> None:
    """Validate and load a CPL (CSV or XLSX); every bad row is reported, nothing changes on error."""
    from metadata_templates.custom import format_timestamp
    from repo_tool.intake.cpl import read_cpl
    from repo_tool.ops.cpl_import import import_cpl
    from repo_tool.state.repository import provider_signing_role

    repo = _open_repo(ctx)
    now = _now()
    doc = read_cpl(cpl_file, imported=format_timestamp(now))
    with repo.locked():
        version = import_cpl(repo, doc, now=now)
    _err(
        f"imported {len(doc.entries)} CPL entries from {cpl_file}; staged "
        f"{provider_signing_role(repo.head)} version {version}"
    )
    if as_json:
        _emit_json(
            {
                "entries": len(doc.entries),
                "source_sha256": doc.source_sha256,
                "targets_version": version,
            }
        )


# ---------------------------------------------------------------------------------- manufacturer


@cli.group()
def manufacturer() -> None:
    """Register manufacturers: each signs its own images under its own delegated role mfr-<ID>."""


@manufacturer.command("add")
@click.argument("manufacturer_id")
@click.option("--name", required=True, help="The manufacturer's name (shown on the website).")
@click.option(
    "--key",
    "key_files",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Public key PEM (Ed25519 or ECDSA P-256); repeat for several.",
)
@click.option(
    "--threshold",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Signatures each role version needs.",
)
@click.pass_context
def manufacturer_add(
    ctx: click.Context, manufacturer_id: str, name: str, key_files: tuple[Path, ...], threshold: int
) -> None:
    """Register MANUFACTURER_ID (4 hex digits, the ZigBee manufacturer code) and its public keys."""
    try:
        mfr = identifiers.manufacturer_id(manufacturer_id, "MANUFACTURER_ID")
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    from repo_tool.ops.manufacturers import add_manufacturer

    keys = [public_key_from_pem(p.read_bytes(), source=str(p)) for p in key_files]
    repo = _open_repo(ctx)
    with repo.locked():
        record = add_manufacturer(repo, mfr, name, keys, threshold, now=_now())
    _err(
        f"registered {mfr} ({name}) with {len(record.keys)} key(s), threshold {threshold}; its role mfr-{mfr} "
        "is delegated when its first deposit is accepted"
    )


# ---------------------------------------------------------------------------------------- ingest


@cli.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the stable ingest report on stdout.")
@click.pass_context
def ingest(ctx: click.Context, sources: tuple[Path, ...], as_json: bool) -> None:
    """Run the gateway on bundles (files, or inbox folders of *.cflb). Accepted bundles are staged
    for the next publish; rejected ones change nothing and are kept under R/rejected with a report.

    \b
    Safe from cron: a bundle accepted before is reported "accepted" with the message
    "already accepted: ..." and changes nothing (exit 0); the inbox is only read.
    Links, pipes and other non-files in an inbox are rejected, never followed or read.
    Roles above role_size_cap (R/cfl-repo.json, default 1 MiB) are rejected before parsing.
    See docs/operator.md, "The inbox is hostile input"."""
    from repo_tool.ops.ingest import IngestResult, bundles_in, ingest

    repo = _open_repo(ctx)
    bundles = bundles_in(sources)
    if not bundles:
        raise ConfigurationError(f"found no bundles (*.cflb) in {[str(s) for s in sources]}")
    results: list[IngestResult] = []
    with repo.locked():
        for path in _progress(bundles, "ingesting", enabled=not as_json):
            result = ingest(repo, path, now=_now())
            results.append(result)
            if result.status == "accepted":
                _err(f"accepted  {path.name} -> {result.target or 'role(s) re-signed'}")
                for message in result.messages:  # e.g. "already accepted: ..." on a re-run
                    _err(f"          {message}")
            else:
                _err(f"rejected  {path.name}: {', '.join(result.reasons)}")
                for message in result.messages:
                    _err(f"          {message}")
    if as_json:
        _emit_json({"results": [r.to_dict() for r in results]})
    rejected = sum(r.status == "rejected" for r in results)
    _err(
        f"{len(results) - rejected} accepted, {rejected} rejected"
        + ("; run `cfl-repo publish` to publish" if rejected < len(results) else "")
    )
    if rejected:
        sys.exit(EXIT_FAILURE)


def _progress(items: list[Path], label: str, *, enabled: bool) -> Any:
    """A rich progress bar on a terminal only; plain iteration otherwise."""
    if not enabled or not sys.stderr.isatty() or len(items) < 2:
        return items
    from rich.progress import track

    return track(items, description=label, console=None, transient=True)


# --------------------------------------------------------------------------------------- publish


@cli.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Published tree (default R/public).",
)
@click.option("--no-site", is_flag=True, help="Do not refresh the website under OUT/site.")
@click.option(
    "--to",
    "to_url",
    metavar="s3://BUCKET/PREFIX",
    help="Publish to S3-compatible object storage instead of a folder (credentials: boto3's "
    "standard chain, e.g. AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE).",
)
@click.option(
    "--endpoint-url",
    metavar="URL",
    help="With --to: an S3-compatible server (MinIO, Ceph, ...) instead of AWS.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written on stdout.")
@click.pass_context
def publish(
    ctx: click.Context,
    out: Path | None,
    no_site: bool,
    to_url: str | None,
    endpoint_url: str | None,
    as_json: bool,
) -> None:
    """Write the static tree: blobs, manufacturer roles, targets, snapshot, timestamp.json last.

    Safe to re-run and safe to interrupt: clients see the previous library until timestamp.json lands.

    \b
    Then the website under OUT/site is rebuilt, told which images this publish added, so one new
    image re-renders a few dozen pages whatever the library's size (--json: "site_build"). See
    docs/site.md, "What `cfl-repo publish` tells the site". Its verification of the tree
    recalls role files verified cleanly before from R/cache/verify-memo instead of verifying
    them again (--json: "site_build.verify_memo"); deleting that folder is always safe.

    \b
    With --to s3://BUCKET/PREFIX, upload to object storage in the same order: only what the
    bucket lacks, never overwriting or deleting an immutable object, then the website.
    See docs/hosting.md, "Publishing to object storage".
    """
    from repo_tool.ops.publish import publish as do_publish

    # --- S3 publishing hook (scale branch): everything lives in repo_tool/cli/publish_s3.py.
    if to_url is not None or endpoint_url is not None:
        from repo_tool.cli.publish_s3 import run_publish_to_s3

        run_publish_to_s3(
            lambda: _open_repo(ctx),
            to_url=to_url,
            endpoint_url=endpoint_url,
            out=out,
            no_site=no_site,
            as_json=as_json,
            now=_now(),
        )
        return
    # --- end of the S3 publishing hook

    repo = _open_repo(ctx)
    target = out or repo.default_out
    now = _now()
    # --- site hint (issue 14): what the tree served before, so the site is told what is new
    from repo_tool.publish import site_step as site_hint
    from repo_tool.verify.memo import VerifyMemo

    before = None if no_site else site_hint.tree_state(target)
    # --- end of the site hint
    report = do_publish(repo, target, now=now)
    _err(
        f"published to {target}: snapshot {report.snapshot_version}, timestamp {report.timestamp_version}; "
        f"wrote {sum(report.written.values())} file(s)"
    )
    doc = report.to_dict()
    if not no_site:
        site = site_hint.build_published_site(
            target,
            repo.metadata_bytes("root", 1),
            now=now,
            hint=site_hint.publish_hint(repo, before),
            memo=VerifyMemo.of_repository(repo.path),  # verified-role memo (issue 14)
        )
        site_dir = site.site_dir
        _err(f"website: {site_dir}/index.html")
        doc["site"] = str(site_dir)
        doc["site_build"] = {
            "appended": site.result.appended,
            "told_new_images": site.hinted,
            "changed_files": len(site.result.changed),
            "verify_memo": site.memo.to_dict() if site.memo else None,
        }
    if as_json:
        _emit_json(doc)


@cli.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Published tree (default R/public).",
)
@click.option("--force", is_flag=True, help="Re-sign even if nothing is close to expiry.")
@click.pass_context
def refresh(ctx: click.Context, out: Path | None, force: bool) -> None:
    """Re-sign roles the provider holds that are past half their validity, then publish. Run from cron
    (e.g. hourly): timestamp lives 1 day, snapshot 7, targets 90 by default."""
    from repo_tool.ops.publish import publish as do_publish
    from repo_tool.ops.refresh import refresh as do_refresh

    repo = _open_repo(ctx)
    now = _now()
    with repo.locked():
        resigned = do_refresh(repo, now=now, force=force)
    report = do_publish(repo, out or repo.default_out, now=now)
    _err(
        f"re-signed: {', '.join(resigned) or 'nothing was due'}; timestamp {report.timestamp_version}"
    )


@cli.command("rotate-keys")
@click.argument("role", type=click.Choice(list(TOP_LEVEL_ROLES)))
@click.option(
    "--add",
    "added",
    nargs=2,
    multiple=True,
    metavar="PUB.pem URI",
    help="A new key: its public PEM and its signer URI (repeat).",
)
@click.option(
    "--remove",
    "removed",
    multiple=True,
    metavar="KEYID",
    help="A key ID (or unique prefix) to revoke (repeat).",
)
@click.option(
    "--threshold", type=click.IntRange(1), help="The role's new threshold (default: unchanged)."
)
@click.pass_context
def rotate_keys(
    ctx: click.Context,
    role: str,
    added: tuple[tuple[str, str], ...],
    removed: tuple[str, ...],
    threshold: int | None,
) -> None:
    """Add or revoke keys of a top-level ROLE (or change its threshold) through a new root version,
    signed by the current root keys so every client follows it. Then run `publish`.

    \b
    Replace a compromised timestamp key:
      cfl-repo --repo R rotate-keys timestamp --add ts2.pub.pem encfile:/etc/cfl/ts2.pem --remove 3f2a9c1d
    """
    if not added and not removed and threshold is None:
        raise ConfigurationError("nothing to do: give --add, --remove or --threshold")
    refs = []
    for pem, uri in added:
        try:
            data = Path(pem).read_bytes()
        except OSError as e:
            raise ConfigurationError(f"--add {pem}: cannot read ({e.strerror})") from e
        refs.append(SignerRef(public_key_from_pem(data, source=pem), uri))
    from repo_tool.ops.rotate_keys import rotate_keys as do_rotate_keys

    repo = _open_repo(ctx)
    with repo.locked():
        version = do_rotate_keys(
            repo, role, add=refs, remove=list(removed), threshold=threshold, now=_now()
        )
    if version is None:
        _err(
            f"the {role} keys are as asked already (root version {repo.head.root_version}); nothing to do"
        )
        return
    _err(f"root version {version} rotates the {role} keys; run `cfl-repo publish` to publish it")


@cli.command()
@click.argument("target")
@click.option("--reason", required=True, help="Why it is withdrawn (recorded and published).")
@click.pass_context
def withdraw(ctx: click.Context, target: str, reason: str) -> None:
    """Withdraw an image: an explicit, recorded event. The blob and its signed metadata stay; clients
    stop recommending and downloading it after the next publish."""
    from repo_tool.ops.withdraw import withdraw as do_withdraw

    repo = _open_repo(ctx)
    with repo.locked():
        withdrawal = do_withdraw(repo, target, reason, now=_now())
    _err(f"withdrew {withdrawal.target} at {withdrawal.withdrawn}; run `cfl-repo publish`")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print status as JSON on stdout.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """What is staged: versions, expiry dates, manufacturers, images, and what publish would change."""
    from repo_tool.ops.status import status_report

    repo = _open_repo(ctx)
    doc = status_report(repo, now=_now())
    roles = doc["roles"]
    pending = doc["unpublished_changes"]
    if as_json:
        _emit_json(doc)
        return
    if repo.config.dev_keys:
        _err("warning: this repository uses DEVELOPMENT KEYS")
    for name in doc["expiring_soon"]:
        how = (
            "cfl-repo refresh"
            if not name.startswith("mfr-")
            else "the manufacturer's submit --renew"
        )
        if name == "root" or (name == "targets" and repo.held_offline(name)):  # keys branch
            how = f"a ceremony: cfl-repo ceremony start {name}"
        _err(f"warning: {name} expires {roles[name]['expires']}; renew it with {how}")
    for name, info in roles.items():
        # cfl-provider (issue 13) holds the provider's documents, not images.
        kind = "document(s)" if name == "cfl-provider" else "image(s)"
        extra = f", {info['targets']} {kind}" if "targets" in info else ""
        _err(f"{name:<12} v{info['version']:<5} expires {info['expires']}{extra}")
    _err(
        f"manufacturers: {', '.join(doc['manufacturers']) or 'none'}; CPL entries: {doc['cpl_entries']}; "
        f"images: {doc['images']}; withdrawn: {doc['withdrawn']}"
    )
    _err(f"unpublished changes: {', '.join(pending) or 'none'}")
    from repo_tool.ops.key_inventory import render_inventory

    for line in render_inventory(doc["keys"]):
        _err(line)


# ------------------------------------------------------------------------------------------ site


@cli.group()
def site() -> None:
    """The public website: what firmware exists (no images, no release notes)."""


@site.command("build")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the site (default PUBLISHED/site).",
)
@click.option(
    "--published",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Published tree (default R/public).",
)
@click.option(
    "--root",
    "root_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Trusted root (default the repository's 1.root.json).",
)
@click.pass_context
def site_build(
    ctx: click.Context, out: Path | None, published: Path | None, root_file: Path | None
) -> None:
    """Render the website from the verified published metadata.

    \b
    When it reads the repository (unless both --published and --root are given), role files
    verified cleanly before are recalled from R/cache/verify-memo instead of verified again
    (deleting that folder is always safe); see docs/site.md, "The verified-role memo".
    `cfl-repo verify` never uses it.
    """
    from repo_tool.publish.site_step import verified_for_site
    from repo_tool.site.build import build_site
    from repo_tool.verify.memo import VerifyMemo
    from repo_tool.verify.walk import folder_reader

    memo = None
    if published is None or root_file is None:
        repo = _open_repo(ctx)
        published = published or repo.default_out
        root_bytes = root_file.read_bytes() if root_file else repo.metadata_bytes("root", 1)
        memo = VerifyMemo.of_repository(repo.path)
    else:
        root_bytes = root_file.read_bytes()
    now = _now()
    library = verified_for_site(folder_reader(published), root_bytes, now=now, memo=memo)
    target = out or published / "site"
    build_site(library, target, generated=now)
    _err(f"website written to {target}/index.html ({len(library.images)} images)")


# ---------------------------------------------------------------------------------------- verify


@cli.command()
@click.argument("published_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--root",
    "root_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The root you trust (e.g. 1.root.json received out of band).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def verify(published_dir: Path, root_file: Path, as_json: bool) -> None:
    """Independently check a published tree: every signature, delegation, version, blob length and
    hash, and that snapshot and timestamp agree. Exit 1 with every problem listed if anything is off.

    Always the full walk: it never reads the verified-role memo the website step of `publish`
    keeps (docs/site.md, "The verified-role memo")."""
    from repo_tool.verify.walk import folder_reader, load_verified_library

    library, problems = load_verified_library(
        folder_reader(published_dir), root_file.read_bytes(), now=_now()
    )
    expired = dict(library.expired_roles) if library else {}
    if as_json:
        _emit_json(
            {
                "ok": not problems,
                "problems": problems,
                "images": len(library.images) if library else 0,
                "expired_roles": {name: when.isoformat() for name, when in sorted(expired.items())},
            }
        )
    for problem in problems:
        _err(f"problem: {problem}")
    for name, when in sorted(expired.items()):
        count = sum(1 for image in library.images if image.role == name) if library else 0
        _err(
            f"warning: {name} expired at {when.isoformat()}: clients cannot verify its {count} "
            "image(s) until the manufacturer renews (cfl-repo submit --renew); the rest is unaffected"
        )
    if problems or library is None:
        _err(f"error: {published_dir} failed verification ({len(problems)} problem(s))")
        sys.exit(EXIT_FAILURE)
    _err(
        f"ok: {published_dir} verifies: root v{library.root_version}, {len(library.images)} image(s), "
        f"{len(library.manufacturers)} manufacturer(s)"
    )


# ----------------------------------------------------------------------------------------- serve


@cli.command()
@click.argument("published_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address to listen on.")
def serve(published_dir: Path, port: int, bind: str) -> None:
    """Serve a published tree over HTTP for trying it out (use nginx or object storage in production)."""
    directory = str(published_dir.resolve())

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=directory, **kwargs)

        def end_headers(self) -> None:
            # Everything but timestamp.json is immutable; the site forbids inline script.
            if self.path.endswith("/timestamp.json"):
                self.send_header("Cache-Control", "no-cache")
            self.send_header(
                "Content-Security-Policy",
                "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'",
            )
            self.send_header("X-Content-Type-Options", "nosniff")
            super().end_headers()

    server = open_server(bind, port, Handler)  # a CflError naming --bind/--port, not a traceback
    _err(
        f"serving {directory} at http://{bind}:{server.server_address[1]}/ (site: /site/index.html); Ctrl-C stops"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# --------------------------------------------------------------------------------- manufacturer


@cli.command()
@click.argument("private_key", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--type", "key_type", type=click.Choice(KEY_TYPES), default="ed25519", show_default=True
)
@click.option(
    "--encrypt/--no-encrypt",
    default=True,
    show_default=True,
    help=f"Encrypt the private key with a passphrase (prompt, or {PASSPHRASE_ENV}).",
)
def keygen(private_key: Path, key_type: str, encrypt: bool) -> None:
    """Generate a key pair: PRIVATE_KEY (0600) and PRIVATE_KEY's .pub.pem beside it. Give the public
    PEM to the provider (manufacturer add / init --key); keep the private one offline."""
    passphrase = None
    if encrypt:
        passphrase = os.environ.get(PASSPHRASE_ENV) or _confirm_passphrase()
    _key, uri = write_keypair(private_key, key_type, passphrase=passphrase)
    _err(
        f"wrote {private_key} and {private_key.with_name(private_key.stem + '.pub.pem')}; signer URI: {uri}"
    )


def _confirm_passphrase() -> str:
    if not sys.stdin.isatty():
        raise ConfigurationError(
            f"--encrypt needs a passphrase: set {PASSPHRASE_ENV} or run on a terminal"
        )
    return str(click.prompt("New passphrase", hide_input=True, confirmation_prompt=True, err=True))


@cli.command()
@click.argument(
    "image_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--manufacturer", "manufacturer_id", required=True, help="Your manufacturer ID (4 hex digits)."
)
@click.option(
    "--renew",
    is_flag=True,
    help="No image: re-sign your published role with a later expiry (run yearly; roles live 365 days).",
)
@click.option(
    "--split-bins",
    "split_bits",
    type=click.IntRange(1, 16),
    metavar="BITS",
    help="No image: split your role into 2**BITS hash bins (TAP 15), or grow to more bins. Each "
    "deposit then re-signs one bin. The policy keeps bins at about 64 images on average: the "
    "provider's `cfl-repo status --json` gives your suggested_bit_length, and when to grow.",
)
@click.option(
    "--key",
    "key_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Private key PEM (repeat for a threshold).",
)
@click.option(
    "--signer",
    "signer_uris",
    multiple=True,
    help="Signer URI (hsm:, gcpkms:, ...) with --signer-pubkey; repeat for a threshold.",
)
@click.option(
    "--signer-pubkey",
    "signer_pubkeys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Public PEM for each --signer, in order.",
)
@click.option(
    "--cpl-entry",
    "cpl_entries",
    multiple=True,
    help="CPL Entry ID the image is for (repeat; required with IMAGE_FILE).",
)
@click.option(
    "--reason",
    type=click.Choice(["compliance", "security"]),
    help="Why the image exists (required with IMAGE_FILE).",
)
@click.option(
    "--advisory", "advisories", multiple=True, help="Advisory ID (required for security; repeat)."
)
@click.option(
    "--release-notes",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Release notes (text) to encrypt here to the suppliers entitled to the image's device type and "
    "the provider's notes custodian; the plaintext never leaves this machine.",
)
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
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to keep a copy of the published CPL (checked against its signed hash on every "
    "use), so the next deposit against the same CPL does not download it and parses only the "
    "entries it declares (default: $CFL_REPO_CACHE, else ~/.cache/cfl-repo). Safe to delete at "
    "any time.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what the bundle holds on stdout.")
def submit(
    image_file: Path | None,
    manufacturer_id: str,
    renew: bool,
    split_bits: int | None,
    key_files: tuple[Path, ...],
    signer_uris: tuple[str, ...],
    signer_pubkeys: tuple[Path, ...],
    cpl_entries: tuple[str, ...],
    reason: str | None,
    advisories: tuple[str, ...],
    release_notes: Path | None,
    source: str,
    root_file: Path | None,
    out_file: Path,
    cache_dir: Path | None,
    as_json: bool,
) -> None:
    """Sign a deposit: add IMAGE_FILE to your role (one version above the published one) and write a
    bundle for the provider's `ingest`. With --renew and no IMAGE_FILE: re-sign the role with a later
    expiry and the same images.

    \b
    Hash bins: once your role is split (--split-bins BITS, no IMAGE_FILE), a deposit re-signs only
    the bin its image goes to, and --renew re-signs the bins and role that are near expiry.
    See docs/manufacturer.md, "Hash bins"."""
    from repo_tool.cli.keys import manufacturer_signers
    from repo_tool.intake.bundle import BUNDLE_SUFFIX, Declaration, write_bundle
    from repo_tool.submit.deposit import (
        build_renewal,
        build_submission,
        load_source_library,
        read_source_root,
        source_reader,
    )

    if (renew or split_bits is not None) == (image_file is not None) or (
        renew and split_bits is not None
    ):
        raise ConfigurationError(
            "give IMAGE_FILE for a deposit, or --renew or --split-bins BITS without one"
        )
    if image_file is not None and (not cpl_entries or reason is None):
        raise ConfigurationError("a deposit needs --cpl-entry (at least one) and --reason")

    try:
        mfr = identifiers.manufacturer_id(manufacturer_id, "--manufacturer")
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    if out_file.suffix != BUNDLE_SUFFIX:
        raise ConfigurationError(
            f"--out: found {out_file.name!r}, expected a name ending in {BUNDLE_SUFFIX}"
        )
    signers = manufacturer_signers(key_files, signer_uris, signer_pubkeys)
    read = source_reader(source)  # errors name --from and the source
    if root_file is not None:
        root_bytes = root_file.read_bytes()
    else:
        root_bytes = read_source_root(source, read)
        _err("warning: no --root given; trusting the source's 1.root.json on first use")
    now = _now()
    # Verify only what this submit signs on top of (repo_tool/submit/scope.py).
    from repo_tool.intake.cpl_cache import CplCache, default_cache_dir
    from repo_tool.submit.scope import load_for_deposit, manufacturer_roles

    image = image_file.read_bytes() if image_file is not None else None
    if image is None:
        library = load_source_library(
            source, read, root_bytes, now=now, wanted=manufacturer_roles(mfr)
        )
    else:
        library = load_for_deposit(
            source,
            read,
            root_bytes,
            now=now,
            manufacturer_id=mfr,
            image=image,
            cpl_entry_ids=cpl_entries,
            with_notes=release_notes is not None,
            cpl_cache=CplCache(cache_dir or default_cache_dir(os.environ)),
        )
    if split_bits is not None:
        from repo_tool.submit.bins import build_split
        from repo_tool.submit.deposit import Submission

        bundle, version = build_split(
            manufacturer_id=mfr, bit_length=split_bits, signers=signers, library=library, now=now
        )
        submission = Submission(bundle=bundle, role_version=version)
    elif image is None:
        submission = build_renewal(manufacturer_id=mfr, signers=signers, library=library, now=now)
    else:
        submission = build_submission(
            image=image,
            manufacturer_id=mfr,
            signers=signers,
            declaration=Declaration(tuple(cpl_entries), reason or "", tuple(advisories)),
            release_notes=release_notes.read_bytes() if release_notes else None,
            library=library,
            now=now,
        )
    write_bundle(out_file, submission.bundle)
    written = submission.bundle
    if as_json:
        _emit_json(
            {
                "bundle": str(out_file),
                "kind": written.kind,
                "manufacturer_id": mfr,
                "target": written.target or None,
                "role": written.role_name,
                "role_version": submission.role_version,
                "bins": [name for name, _ in written.bins],
            }
        )
    what = written.target or written.kind
    bins = f" and {len(written.bins)} bin(s)" if written.bins else ""
    _err(f"wrote {out_file}: {what} in {written.role_name} version {submission.role_version}{bins}")


# ----------------------------------------------------------------------------------------- notes


@cli.group()
def notes() -> None:
    """Encrypted release notes: the custodian key, and grants to organisations registered later."""


@notes.command("custodian")
@click.option(
    "--public-key",
    "public_key",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The notes custodian's ECDSA P-256 public key (PEM); its private key stays offline (make it with `keygen --type ecdsa`).",
)
@click.option(
    "--yes",
    is_flag=True,
    help="Replace a published custodian key without asking (scripts); needed when stdin is no terminal.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the new key's thumbprint and the one it replaced as JSON on stdout.",
)
@click.pass_context
def notes_custodian(ctx: click.Context, public_key: Path, yes: bool, as_json: bool) -> None:
    """Publish the notes-custodian public key as target cfl/notes-custodian.json.

    Every release note a manufacturer submits from then on is also encrypted to it, so the provider
    can grant a note to an organisation registered later (`notes grant`). Run `publish` afterwards.

    Replacing a published key asks first, naming both keys by RFC 7638 thumbprint: notes deposited
    before stay encrypted to the old key only, so keep its private key to grant them. Without a
    terminal, pass --yes. The same key again changes nothing.

    \b
    Example:
      cfl-repo keygen custodian.pem --type ecdsa
      cfl-repo --repo R notes custodian --public-key custodian.pub.pem
      cfl-repo --repo R publish
    """
    from repo_tool.ops.notes_grant import custodian_change, set_custodian

    pem = read_input(public_key, "--public-key")
    repo = _open_repo(ctx)
    change = custodian_change(repo, pem)
    if change.unchanged:
        _err(f"notes custodian key {change.new} is already the staged one; nothing to change")
    else:
        if change.replaces:
            _err(
                f"replacing notes custodian key {change.current} with {change.new}; notes deposited "
                f"before stay encrypted to {change.current}: keep its private key to grant them"
            )
            _confirm_or_refuse("Replace the notes custodian key?", yes=yes)
        with repo.locked():
            set_custodian(repo, pem, now=_now(), replacing=change.current)
        _err(
            f"notes custodian key {change.new} staged as cfl/notes-custodian.json; next: cfl-repo publish"
        )
    if as_json:
        _emit_json(
            {
                "thumbprint": change.new,
                "replaced": change.current if change.replaces else None,
                "changed": not change.unchanged,
            }
        )


def _confirm_or_refuse(question: str, *, yes: bool) -> None:
    """Ask on a terminal before an irreversible change; without one, only ``--yes`` goes ahead.

    Raises:
        ConfigurationError: no terminal to ask on and no --yes.
        RejectedInputError: the operator answered no.
    """
    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfigurationError(
            "confirmation: found stdin not a terminal, expected one to confirm; read the line above "
            "and pass --yes"
        )
    if not click.confirm(question, err=True, default=False):
        raise RejectedInputError("confirmation: found 'no', expected 'yes'; nothing was changed")


@notes.command("grant")
@click.argument("entity_id")
@click.option(
    "--custodian-key",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The custodian's P-256 private key PEM (a passphrase is asked for, or read from "
    f"{PASSPHRASE_ENV}).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the grants as JSON on stdout.")
@click.pass_context
def notes_grant(ctx: click.Context, entity_id: str, custodian_key: Path, as_json: bool) -> None:
    """Grant ENTITY_ID every release note its User Roles entitle it to and it cannot read yet.

    For each such note the custodian key decrypts it in memory and re-encrypts it to that
    organisation alone, published as provider-signed target cfl/grants/ENTITY_ID/... (run `publish`
    afterwards). Nothing is written in plaintext. A revoked organisation gets no new grant (exit 1);
    what it could read before stays readable. Running it again grants only what is new.

    \b
    Example:
      cfl-repo --repo R notes grant 0011223344556677 --custodian-key custodian.pem
      cfl-repo --repo R publish
    """
    from metadata_templates.notes import pem_is_encrypted
    from repo_tool.ops.notes_grant import grant_notes, load_custodian_key
    from repo_tool.state.repository import provider_signing_role

    pem = custodian_key.read_bytes()
    password = _prompt_secret("passphrase").encode() if pem_is_encrypted(pem) else None
    try:
        key = load_custodian_key(pem, password, f"--custodian-key {custodian_key}")
    except CflError as e:
        raise ConfigurationError(str(e)) from e
    repo = _open_repo(ctx)
    with repo.locked(), _counter("granting", enabled=not as_json) as progress:
        report = grant_notes(repo, entity_id, key, now=_now(), progress=progress)
    _err(
        f"{report.entity_id}: {len(report.granted)} note(s) granted, {len(report.already)} readable "
        "already"
        + (
            f"; staged {provider_signing_role(repo.head)} version {report.targets_version}; "
            "next: cfl-repo publish"
            if report.granted
            else ""
        )
    )
    if as_json:
        _emit_json(report.to_dict())


@contextlib.contextmanager
def _counter(label: str, *, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar fed ``(done, total)``, on a terminal only and never in --json mode."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


# -------------------------------------------------------------------------- transparency log


@cli.group("log")
def log_group() -> None:
    """The transparency log of every lodged event (docs/transparency.md)."""


@log_group.command("key")
@click.option("--json", "as_json", is_flag=True, help="Print origin, vkey, size and root as JSON.")
@click.pass_context
def log_key(ctx: click.Context, as_json: bool) -> None:
    """Print the log's note verifier key (C2SP vkey) on stdout.

    Give it to witnesses and auditors: `cfl log verify URL --vkey VKEY` checks the published log's
    checkpoint against it. The website's trust page shows the same line.
    """
    from repo_tool.tlog.provider_log import log_summary

    repo = _open_repo(ctx)
    if repo.config.log is None:
        raise ConfigurationError(
            f'{repo.path}: no transparency log key configured (cfl-repo.json has no "log")',
            hint="repositories made by `cfl-repo init` from this version on have one",
        )
    if as_json:
        _emit_json(log_summary(repo.log_state(), repo.config.log))
    else:
        click.echo(repo.config.log.vkey)
        _err(f"log {repo.config.log.origin}: {repo.head.log_size} entries")


@log_group.command("add-cosignatures")
@click.argument("cosigned", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--witness",
    "witnesses",
    multiple=True,
    required=True,
    metavar="VKEY",
    help="A witness's cosignature vkey (from `cfl witness init`); lines by others are dropped.",
)
@click.pass_context
def log_add_cosignatures(ctx: click.Context, cosigned: Path, witnesses: tuple[str, ...]) -> None:
    """Keep witnesses' cosignatures (from `cfl witness cosign --out FILE`) with the checkpoint of
    the same size; the next `publish` serves them in log/checkpoint.

    \b
    cfl-repo --repo R log add-cosignatures cosigned.txt --witness "$(cat witness.vkey)"
    cfl-repo --repo R publish
    """
    from metadata_templates.tlog.note import parse_vkey
    from repo_tool.tlog.provider_log import add_cosignatures

    try:
        verifiers = [parse_vkey(text) for text in witnesses]
    except ValueError as e:
        raise ConfigurationError(f"--witness: {e}") from e
    repo = _open_repo(ctx)
    with repo.locked():
        added = add_cosignatures(repo.log_dir, repo.log_state(), cosigned.read_bytes(), verifiers)
    _err(f"kept {added} new cosignature line(s); run publish to serve them")


# ------------------------------------------------------------------------------------------- demo


@cli.command("demo-data")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True)
def demo_data(out_dir: Path, seed: int) -> None:
    """Write a coherent sample dataset: CPL (CSV and XLSX), GBCS images for three manufacturers,
    their declarations and a supplier estate."""
    from repo_tool.dev.demo_data import make_demo_dataset, write_demo_dataset

    paths = write_demo_dataset(make_demo_dataset(seed), out_dir)
    _err(f"demo data written to {out_dir}")
    logger.debug("%s", paths)


# ---- suppliers and access hook: the commands live in repo_tool/cli/access.py ----
def _add_access_commands() -> None:
    from repo_tool.cli.access import audit, host, supplier

    for command in (supplier, host, audit):
        cli.add_command(command)


_add_access_commands()
# ---- end of suppliers and access hook ----


def main() -> None:
    """Console-script entry point: the one place errors become exit codes (repo_tool/cli/console.py)."""
    run(cli, interrupted="nothing was committed by the interrupted step")


# Ceremonies and manufacturer key commands live in repo_tool/cli/keys.py.
from repo_tool.cli.keys import CEREMONY_GROUP, MANUFACTURER_COMMANDS  # noqa: E402

cli.add_command(CEREMONY_GROUP)
for _command in MANUFACTURER_COMMANDS:
    manufacturer.add_command(_command)

# The online cfl-provider delegation (issue 13) lives in repo_tool/cli/provider.py.
from repo_tool.cli.provider import enrol_bundle, enrol_manufacturer  # noqa: E402
from repo_tool.cli.provider import provider as _provider_group  # noqa: E402

cli.add_command(_provider_group)
cli.add_command(enrol_bundle)
manufacturer.add_command(enrol_manufacturer)
