"""`cfl-repo`: the provider's and manufacturers' command line. Parses, calls the library, renders.

Exit codes: 0 success, 1 something was rejected or failed verification, 2 usage or configuration.
With ``--json`` one JSON document (``"schema_version": 1``) goes to stdout; people read stderr.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click

from metadata_templates import identifiers
from metadata_templates.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    ConfigurationError,
)
from metadata_templates.output import json_document, reports_errors, utc_now
from metadata_templates.policy import DEFAULT_POLICY
from repo_tool import __version__
from repo_tool.config import TOP_LEVEL_ROLES, RepoConfig
from repo_tool.keys import (
    DEV_KEY_WARNING,
    KEY_TYPES,
    PASSPHRASE_ENV,
    SignerRef,
    public_key_from_pem,
    write_keypair,
)

logger = logging.getLogger("repo_tool")


_now = utc_now


def _err(message: str) -> None:
    click.echo(message, err=True)


HSM_PIN_ENV = "CFL_HSM_PIN"


def _prompt_secret(name: str) -> str:
    """The secrets handler signers call: an environment variable for unattended runs (cron), else a
    hidden prompt on a terminal."""
    env = HSM_PIN_ENV if name.lower() == "pin" else PASSPHRASE_ENV
    if env in os.environ:
        return os.environ[env]
    if not sys.stdin.isatty():
        raise ConfigurationError(f"a {name} is needed but stdin is not a terminal; set {env}")
    return str(click.prompt(f"Enter {name}", hide_input=True, err=True))


def _emit_json(doc: dict[str, Any]) -> None:
    click.echo(json_document(doc))


handle_errors = reports_errors(logger, "nothing was committed by the interrupted step")


def _repo_path(ctx: click.Context) -> Path:
    path: Path | None = ctx.obj.get("repo")
    if path is None:
        raise ConfigurationError("this command needs --repo R (the repository working directory)")
    return path


def _open_repo(ctx: click.Context) -> Any:
    from repo_tool.repository import Repository

    return Repository.open(_repo_path(ctx), secrets_handler=_prompt_secret)


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
    help="A production key: role (root|targets|snapshot|timestamp), its public PEM, and its signer URI "
    "(hsm:..., encfile:PATH, gcpkms:..., awskms:...). Repeat per key.",
)
@click.option(
    "--image-size-cap",
    type=click.IntRange(1),
    default=10_240_000,
    show_default=True,
    help="Largest image accepted, in octets (DUIS limit).",
)
@click.pass_context
@handle_errors
def init(
    ctx: click.Context,
    dev_keys: bool,
    root_keys: int,
    root_threshold: int,
    keys: tuple[tuple[str, str, str], ...],
    image_size_cap: int,
) -> None:
    """Create a repository: configuration, top-level keys, version-1 root and targets.

    \b
    Development:  cfl-repo --repo R init --dev-keys
    Production:   cfl-repo --repo R init --root-threshold 2 \\
                    --key root r1.pub.pem hsm:... --key root r2.pub.pem hsm:... \\
                    --key targets t.pub.pem hsm:... --key snapshot s.pub.pem encfile:/k/s.pem \\
                    --key timestamp ts.pub.pem encfile:/k/ts.pem
    """
    from repo_tool.repository import Repository

    path = _repo_path(ctx)
    if dev_keys == bool(keys):
        raise ConfigurationError("choose exactly one of --dev-keys or --key ROLE PUB.pem URI")
    signers: dict[str, list[SignerRef]] = {role: [] for role in TOP_LEVEL_ROLES}
    if dev_keys:
        if root_threshold > root_keys:
            raise ConfigurationError(
                f"--root-threshold: found {root_threshold}, expected at most --root-keys ({root_keys})"
            )
        keys_dir = path / "keys"
        for role in TOP_LEVEL_ROLES:
            for n in range(1, (root_keys if role == "root" else 1) + 1):
                key, _uri = write_keypair(
                    keys_dir / f"DEV-ONLY-{role}-{n}.pem", label=DEV_KEY_WARNING
                )
                signers[role].append(SignerRef(key, f"file2:keys/DEV-ONLY-{role}-{n}.pem"))
        _err(
            "warning: DEVELOPMENT KEYS written unencrypted to "
            + str(keys_dir)
            + " - never use them for a real library"
        )
    else:
        for role, pem, uri in keys:
            if role not in TOP_LEVEL_ROLES:
                raise ConfigurationError(
                    f"--key ROLE: found {role!r}, expected one of {', '.join(TOP_LEVEL_ROLES)}"
                )
            try:
                data = Path(pem).read_bytes()
            except OSError as e:
                raise ConfigurationError(f"--key {role} {pem}: cannot read ({e.strerror})") from e
            signers[role].append(SignerRef(public_key_from_pem(data, source=pem), uri))
        empty = [role for role in TOP_LEVEL_ROLES if not signers[role]]
        if empty:
            raise ConfigurationError(
                f"--key: found no key for {empty}, expected at least one per top-level role"
            )
    thresholds = {role: 1 for role in TOP_LEVEL_ROLES} | {"root": root_threshold}
    if root_threshold > len(signers["root"]):
        raise ConfigurationError(
            f"--root-threshold: found {root_threshold}, expected at most {len(signers['root'])} (root keys)"
        )
    policy = DEFAULT_POLICY.from_dict(
        DEFAULT_POLICY.to_dict()
        | {"root_keys": len(signers["root"]), "root_threshold": root_threshold}
    )
    config = RepoConfig(
        policy=policy,
        signers={role: tuple(refs) for role, refs in signers.items()},
        thresholds=thresholds,
        image_size_cap=image_size_cap,
        dev_keys=dev_keys,
    )
    Repository.create(path, config, now=_now(), secrets_handler=_prompt_secret)
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
@handle_errors
def cpl_import(ctx: click.Context, cpl_file: Path, as_json: bool) -> None:
    """Validate and load a CPL (CSV or XLSX); every bad row is reported, nothing changes on error."""
    from metadata_templates.custom import format_timestamp
    from repo_tool.cpl import read_cpl

    repo = _open_repo(ctx)
    now = _now()
    doc = read_cpl(cpl_file, imported=format_timestamp(now))
    with repo.locked():
        version = repo.import_cpl(doc, now=now)
    _err(
        f"imported {len(doc.entries)} CPL entries from {cpl_file}; staged targets version {version}"
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
@handle_errors
def manufacturer_add(
    ctx: click.Context, manufacturer_id: str, name: str, key_files: tuple[Path, ...], threshold: int
) -> None:
    """Register MANUFACTURER_ID (4 hex digits, the ZigBee manufacturer code) and its public keys."""
    try:
        mfr = identifiers.manufacturer_id(manufacturer_id, "MANUFACTURER_ID")
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    keys = [public_key_from_pem(p.read_bytes(), source=str(p)) for p in key_files]
    repo = _open_repo(ctx)
    with repo.locked():
        record = repo.add_manufacturer(mfr, name, keys, threshold, now=_now())
    _err(
        f"registered {mfr} ({name}) with {len(record.keys)} key(s), threshold {threshold}; its role mfr-{mfr} "
        "is delegated when its first deposit is accepted"
    )


# ---------------------------------------------------------------------------------------- ingest


def _bundles_in(paths: tuple[Path, ...]) -> list[Path]:
    from repo_tool.bundle import BUNDLE_SUFFIX

    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(p for p in path.iterdir() if p.is_file() and p.suffix == BUNDLE_SUFFIX)
            )
        else:
            found.append(path)
    return found


@cli.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the stable ingest report on stdout.")
@click.pass_context
@handle_errors
def ingest(ctx: click.Context, sources: tuple[Path, ...], as_json: bool) -> None:
    """Run the gateway on bundles (files, or inbox folders of *.cflb). Accepted bundles are staged
    for the next publish; rejected ones change nothing and are kept under R/rejected with a report."""
    from repo_tool.repository import IngestResult

    repo = _open_repo(ctx)
    bundles = _bundles_in(sources)
    if not bundles:
        raise ConfigurationError(f"found no bundles (*.cflb) in {[str(s) for s in sources]}")
    results: list[IngestResult] = []
    with repo.locked():
        for path in _progress(bundles, "ingesting", enabled=not as_json):
            result = repo.ingest(path, now=_now())
            results.append(result)
            if result.status == "accepted":
                _err(f"accepted  {path.name} -> {result.target}")
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


def _build_site_into(out: Path, root_bytes: bytes, now: datetime) -> Path:
    from repo_tool.site import build_site
    from repo_tool.verify import folder_reader, verified_library

    library = verified_library(folder_reader(out), root_bytes, now=now, check_blobs=False)
    site_dir = out / "site"
    build_site(library, site_dir, generated=now)
    return site_dir


@cli.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Published tree (default R/public).",
)
@click.option("--no-site", is_flag=True, help="Do not refresh the website under OUT/site.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written on stdout.")
@click.pass_context
@handle_errors
def publish(ctx: click.Context, out: Path | None, no_site: bool, as_json: bool) -> None:
    """Write the static tree: blobs, manufacturer roles, targets, snapshot, timestamp.json last.

    Safe to re-run and safe to interrupt: clients see the previous library until timestamp.json lands.
    """
    from repo_tool.publisher import publish as do_publish

    repo = _open_repo(ctx)
    target = out or repo.default_out
    now = _now()
    report = do_publish(repo, target, now=now)
    _err(
        f"published to {target}: snapshot {report.snapshot_version}, timestamp {report.timestamp_version}; "
        f"wrote {sum(report.written.values())} file(s)"
    )
    doc = report.to_dict()
    if not no_site:
        site_dir = _build_site_into(target, repo.metadata_bytes("root", 1), now)
        _err(f"website: {site_dir}/index.html")
        doc["site"] = str(site_dir)
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
@handle_errors
def refresh(ctx: click.Context, out: Path | None, force: bool) -> None:
    """Re-sign roles the provider holds that are past half their validity, then publish. Run from cron
    (e.g. hourly): timestamp lives 1 day, snapshot 7, targets 90 by default."""
    from repo_tool.publisher import publish as do_publish

    repo = _open_repo(ctx)
    now = _now()
    with repo.locked():
        resigned = repo.refresh(now=now, force=force)
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
@handle_errors
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
    repo = _open_repo(ctx)
    with repo.locked():
        version = repo.rotate_keys(
            role, add=refs, remove=list(removed), threshold=threshold, now=_now()
        )
    _err(f"root version {version} rotates the {role} keys; run `cfl-repo publish` to publish it")


@cli.command()
@click.argument("target")
@click.option("--reason", required=True, help="Why it is withdrawn (recorded and published).")
@click.pass_context
@handle_errors
def withdraw(ctx: click.Context, target: str, reason: str) -> None:
    """Withdraw an image: an explicit, recorded event. The blob and its signed metadata stay; clients
    stop recommending and downloading it after the next publish."""
    repo = _open_repo(ctx)
    with repo.locked():
        withdrawal = repo.withdraw(target, reason, now=_now())
    _err(f"withdrew {withdrawal.target} at {withdrawal.withdrawn}; run `cfl-repo publish`")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print status as JSON on stdout.")
@click.pass_context
@handle_errors
def status(ctx: click.Context, as_json: bool) -> None:
    """What is staged: versions, expiry dates, manufacturers, images, and what publish would change."""
    repo = _open_repo(ctx)
    head = repo.head
    roles: dict[str, Any] = {}
    for role, md in (
        ("root", repo.root()),
        ("targets", repo.targets()),
        ("snapshot", repo.snapshot()),
        ("timestamp", repo.timestamp()),
    ):
        if md is not None:
            roles[role] = {"version": md.signed.version, "expires": md.signed.expires.isoformat()}
    for name in sorted(head.roles):
        md = repo.role(name)
        roles[name] = {
            "version": md.signed.version,
            "expires": md.signed.expires.isoformat(),
            "targets": len(md.signed.targets),
        }
    snapshot = repo.snapshot()
    published_versions = (
        {k.removesuffix(".json"): v.version for k, v in snapshot.signed.meta.items()}
        if snapshot
        else {}
    )
    pending = sorted(
        name
        for name, v in ({"targets": head.targets_version} | head.roles).items()
        if published_versions.get(name) != v
    )
    cpl = repo.cpl()
    doc = {
        "repository": str(repo.path),
        "dev_keys": repo.config.dev_keys,
        "roles": roles,
        "manufacturers": {
            k: {
                "name": v.name,
                "threshold": v.threshold,
                "keys": len(v.keys),
                "delegated": f"mfr-{k}" in head.roles,
            }
            for k, v in sorted(head.manufacturers.items())
        },
        "cpl_entries": len(cpl.entries) if cpl else 0,
        "images": sum(r.get("targets", 0) for r in roles.values()),
        "withdrawn": len(repo.withdrawals().withdrawals),
        "unpublished_changes": pending,
        "expiring_soon": _expiring(roles, _now()),
    }
    # keys branch: every role's keys, where they live (URI scheme only) and when the role expires.
    from repo_tool.key_inventory import key_inventory, render_inventory

    doc["keys"] = key_inventory(repo, now=_now())
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
        extra = f", {info['targets']} image(s)" if "targets" in info else ""
        _err(f"{name:<12} v{info['version']:<5} expires {info['expires']}{extra}")
    _err(
        f"manufacturers: {', '.join(doc['manufacturers']) or 'none'}; CPL entries: {doc['cpl_entries']}; "
        f"images: {doc['images']}; withdrawn: {doc['withdrawn']}"
    )
    _err(f"unpublished changes: {', '.join(pending) or 'none'}")
    for line in render_inventory(doc["keys"]):  # keys branch
        _err(line)


EXPIRY_WARNING = timedelta(days=30)


def _expiring(roles: dict[str, Any], now: datetime) -> list[str]:
    """Roles that expire within 30 days (timestamp and snapshot are short-lived by design and are
    re-signed by `refresh`; they are reported only once actually expired)."""
    soon: list[str] = []
    for name, info in roles.items():
        expires = datetime.fromisoformat(info["expires"])
        window = timedelta(0) if name in ("timestamp", "snapshot") else EXPIRY_WARNING
        if expires - now <= window:
            soon.append(name)
    return soon


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
@handle_errors
def site_build(
    ctx: click.Context, out: Path | None, published: Path | None, root_file: Path | None
) -> None:
    """Render the website from the verified published metadata."""
    from repo_tool.site import build_site
    from repo_tool.verify import folder_reader, verified_library

    if published is None or root_file is None:
        repo = _open_repo(ctx)
        published = published or repo.default_out
        root_bytes = root_file.read_bytes() if root_file else repo.metadata_bytes("root", 1)
    else:
        root_bytes = root_file.read_bytes()
    now = _now()
    library = verified_library(folder_reader(published), root_bytes, now=now, check_blobs=False)
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
@handle_errors
def verify(published_dir: Path, root_file: Path, as_json: bool) -> None:
    """Independently check a published tree: every signature, delegation, version, blob length and
    hash, and that snapshot and timestamp agree. Exit 1 with every problem listed if anything is off."""
    from repo_tool.verify import folder_reader, load_verified_library

    library, problems = load_verified_library(
        folder_reader(published_dir), root_file.read_bytes(), now=_now()
    )
    if as_json:
        _emit_json(
            {
                "ok": not problems,
                "problems": problems,
                "images": len(library.images) if library else 0,
            }
        )
    for problem in problems:
        _err(f"problem: {problem}")
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

    server = ThreadingHTTPServer((bind, port), Handler)
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
@handle_errors
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
    help="Release notes (kept by the provider, never published).",
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
@handle_errors
def submit(
    image_file: Path | None,
    manufacturer_id: str,
    renew: bool,
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
) -> None:
    """Sign a deposit: add IMAGE_FILE to your role (one version above the published one) and write a
    bundle for the provider's `ingest`. With --renew and no IMAGE_FILE: re-sign the role with a later
    expiry and the same images."""
    from securesystemslib.signer import Signer

    from repo_tool.bundle import BUNDLE_SUFFIX, Declaration, write_bundle
    from repo_tool.keys import load_signer, signer_from_private_pem
    from repo_tool.submit import build_renewal, build_submission
    from repo_tool.verify import NotFound, url_reader, verified_library

    if renew == (image_file is not None):
        raise ConfigurationError("give IMAGE_FILE for a deposit, or --renew without one")
    if image_file is not None and (not cpl_entries or reason is None):
        raise ConfigurationError("a deposit needs --cpl-entry (at least one) and --reason")

    try:
        mfr = identifiers.manufacturer_id(manufacturer_id, "--manufacturer")
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    if not key_files and not signer_uris:
        raise ConfigurationError("give --key PRIV.pem or --signer URI --signer-pubkey PUB.pem")
    if len(signer_uris) != len(signer_pubkeys):
        raise ConfigurationError(
            f"--signer: found {len(signer_uris)}, --signer-pubkey: found {len(signer_pubkeys)}; expected one public key per signer URI"
        )
    if out_file.suffix != BUNDLE_SUFFIX:
        raise ConfigurationError(
            f"--out: found {out_file.name!r}, expected a name ending in {BUNDLE_SUFFIX}"
        )
    signers: list[Signer] = [
        signer_from_private_pem(
            p.read_bytes(), source=str(p), passphrase_prompt=lambda: _prompt_secret("passphrase")
        )
        for p in key_files
    ]
    for uri, pub in zip(signer_uris, signer_pubkeys, strict=True):
        ref = SignerRef(public_key_from_pem(pub.read_bytes(), source=str(pub)), uri)
        signers.append(load_signer(ref, base=Path.cwd(), secrets_handler=_prompt_secret))
    read = (
        url_reader(source)
        if "://" in source
        else url_reader("file://" + str(Path(source).resolve()))
    )
    if root_file is not None:
        root_bytes = root_file.read_bytes()
    else:
        try:
            root_bytes = read("metadata/1.root.json")
        except NotFound as e:
            raise ConfigurationError(
                f"--from {source}: found no metadata/1.root.json, expected a published CFL"
            ) from e
        _err("warning: no --root given; trusting the source's 1.root.json on first use")
    now = _now()
    library = verified_library(read, root_bytes, now=now, check_blobs=False)
    if image_file is None:
        submission = build_renewal(manufacturer_id=mfr, signers=signers, library=library, now=now)
    else:
        submission = build_submission(
            image=image_file.read_bytes(),
            manufacturer_id=mfr,
            signers=signers,
            declaration=Declaration(tuple(cpl_entries), reason or "", tuple(advisories)),
            release_notes=release_notes.read_bytes() if release_notes else None,
            library=library,
            now=now,
        )
    write_bundle(out_file, submission.bundle)
    _err(
        f"wrote {out_file}: {submission.bundle.target or 'renewal'} in mfr-{mfr} version {submission.role_version}"
    )


# ------------------------------------------------------------------------------------------- demo


@cli.command("demo-data")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True)
@handle_errors
def demo_data(out_dir: Path, seed: int) -> None:
    """Write a coherent sample dataset: CPL (CSV and XLSX), GBCS images for three manufacturers,
    their declarations and a supplier estate."""
    from repo_tool.demo_data import make_demo_dataset, write_demo_dataset

    paths = write_demo_dataset(make_demo_dataset(seed), out_dir)
    _err(f"demo data written to {out_dir}")
    logger.debug("%s", paths)


def main() -> None:
    """Console-script entry point."""
    try:
        cli(standalone_mode=True)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    sys.exit(EXIT_OK)


_ = EXIT_USAGE  # usage errors exit 2 through click itself


# keys branch: ceremonies and manufacturer key commands live in repo_tool/cli_keys.py.
from repo_tool.cli_keys import CEREMONY_GROUP, MANUFACTURER_COMMANDS  # noqa: E402

cli.add_command(CEREMONY_GROUP)
for _command in MANUFACTURER_COMMANDS:
    manufacturer.add_command(_command)
