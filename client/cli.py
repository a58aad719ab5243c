"""`cfl`: the supplier's verifying client. Parses, calls the library, renders.

Every trust decision is python-tuf ngclient's (client/session.py); this module decides what is
relevant to the supplier's estate and presents it. Exit codes: 0 success, 1 rejected or failed
verification, 2 usage or configuration. ``--json`` prints one document on stdout; people read stderr.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from client import __version__
from client.catalogue import CatalogueImage
from client.check import run_check
from client.home import ClientConfig, ClientHome, normalise_repository_url
from client.listing import list_images as list_library_images
from client.output import CflGroup, emit_json, say, utc_now
from client.refresh import refresh_library
from client.report import render_summary, report_json
from client.retrieval import download_images
from client.selection import Wanted
from client.session import UnverifiedRole
from metadata_templates import identifiers
from metadata_templates.errors import EXIT_FAILURE, ConfigurationError

logger = logging.getLogger("client")
stderr = Console(stderr=True, highlight=False)


_now = utc_now


def _warn_unverified(unverified: Iterable[UnverifiedRole]) -> None:
    """One warning line per manufacturer role that did not verify (its images are left out)."""
    for role in unverified:
        say(f"warning: {role.manufacturer_id}: images left out, {role.message}")


def _exit_if_incomplete(ctx: click.Context, asked_unverified: Sequence[UnverifiedRole]) -> None:
    """Exit 1 when the answer lacks images of a manufacturer the user asked for."""
    if asked_unverified:
        names = ", ".join(sorted({u.manufacturer_id for u in asked_unverified}))
        say(f"error: not verified: images of manufacturer(s) {names}; the rest is complete")
        ctx.exit(EXIT_FAILURE)


@click.group(
    cls=CflGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(__version__, prog_name="cfl")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CFL_HOME",
    help="Client home: configuration, trusted metadata, cache, history (env CFL_HOME; default a per-user data dir).",
)
@click.option("-v", "--verbose", count=True, help="More detail; -v shows tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, verbose: int) -> None:
    """Centralised Firmware Library: the supplier's verifying client.

    \b
    cfl init URL --root ROOT.json     trust a library, starting from its root metadata
    cfl refresh                       verify the latest library (timestamp, snapshot, targets)
    cfl list                          every verified image with its CFL metadata
    cfl check ESTATE.csv              which images apply to your devices, and which to install
    cfl download --estate ESTATE.csv --out DIR    fetch the recommended images, verified

    Every image is verified through the TUF delegation chain (provider root -> targets -> the
    manufacturer's own role) before it is listed or written. See docs/supplier.md.
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # urllib3 logs each retry as a WARNING; the `error:` line already names the URL and cause.
        logging.getLogger("urllib3").setLevel(logging.ERROR)
    ctx.ensure_object(dict)
    ctx.obj["home"] = ClientHome(home)


def _home(ctx: click.Context) -> ClientHome:
    home: ClientHome = ctx.obj["home"]
    return home


offline_option = click.option(
    "--offline",
    is_flag=True,
    help="Use only the trusted metadata and cache in the home (no network); expired metadata is still refused.",
)


@cli.command()
@click.argument("url")
@click.option(
    "--root",
    "root_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The library's root metadata, received out of band (e.g. 1.root.json).",
)
@click.option(
    "--client-cert",
    type=click.Path(exists=True, dir_okay=False),
    help="Client certificate PEM for mutual TLS.",
)
@click.option(
    "--client-key",
    type=click.Path(exists=True, dir_okay=False),
    help="Client private key PEM for mutual TLS.",
)
@click.option(
    "--ca-bundle",
    type=click.Path(exists=True, dir_okay=False),
    help="CA bundle to verify the server with (default: the system's).",
)
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False),
    help="File holding a bearer token sent with every request.",
)
@click.option(
    "--deadline",
    type=click.FloatRange(min=0, min_open=True),
    default=ClientConfig.deadline,
    show_default=True,
    help="Seconds any one request may take in all; a host trickling bytes is cut off then.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Re-initialise: discard trusted metadata and cache (history is kept).",
)
@click.pass_context
def init(
    ctx: click.Context,
    url: str,
    root_file: Path,
    client_cert: str | None,
    client_key: str | None,
    ca_bundle: str | None,
    token_file: str | None,
    deadline: float,
    force: bool,
) -> None:
    """Trust the library at URL (http(s):// or file://), starting from ROOT.json. Without a root file
    there is no trust: cfl never fetches a root it has not been given."""
    if bool(client_cert) != bool(client_key):
        raise ConfigurationError(
            "--client-cert and --client-key go together (mutual TLS needs both)"
        )
    home = _home(ctx)
    config = ClientConfig(
        repository_url=normalise_repository_url(url),
        client_cert=str(Path(client_cert).resolve()) if client_cert else None,
        client_key=str(Path(client_key).resolve()) if client_key else None,
        ca_bundle=str(Path(ca_bundle).resolve()) if ca_bundle else None,
        token_file=str(Path(token_file).resolve()) if token_file else None,
        deadline=deadline,
    )
    with home.lock():
        home.initialise(config, root_file.read_bytes(), force=force)
    click.echo(f"initialised {home.path} for {config.repository_url}; next: cfl refresh", err=True)


@cli.command()
@click.option(
    "--json", "as_json", is_flag=True, help="Print the verified versions as JSON on stdout."
)
@click.pass_context
def refresh(ctx: click.Context, as_json: bool) -> None:
    """Fetch and verify the newest library metadata, every manufacturer's role and the CPL, so
    that --offline works afterwards (one timestamp.json fetch when nothing changed).

    A manufacturer whose role is expired or fails verification is reported (a warning, and
    "unverified" in --json) and the rest of the library is refreshed; the exit code stays 0 because
    no image was asked for.
    """
    result = refresh_library(_home(ctx))
    _warn_unverified(result.unverified)
    if as_json:
        emit_json(
            {
                "versions": result.versions,
                "manufacturers": result.manufacturers,
                "unverified": [u.to_json() for u in result.unverified],
            }
        )
        return
    say(
        "verified: "
        + ", ".join(f"{role} v{v}" for role, v in result.versions.items())
        + f"; {len(result.manufacturers)} manufacturer(s) delegated"
    )


@cli.command("list")
@click.option(
    "--manufacturer",
    "manufacturers",
    multiple=True,
    help="Only this manufacturer ID (repeat for several). Only their roles are fetched.",
)
@click.option(
    "--device-type", "device_types", multiple=True, help="Only this device type (ESME, GSME, ...)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the images as JSON on stdout.")
@offline_option
@click.pass_context
def list_images(
    ctx: click.Context,
    manufacturers: tuple[str, ...],
    device_types: tuple[str, ...],
    as_json: bool,
    offline: bool,
) -> None:
    """Every verified image with its CFL metadata (withdrawn ones marked).

    A manufacturer whose role did not verify is reported and left out ("unverified" in --json);
    the exit code is 1 only if it is one you named with --manufacturer.
    """
    try:
        mfrs = {identifiers.manufacturer_id(m, "--manufacturer") for m in manufacturers}
        types = {identifiers.device_type(t, "--device-type") for t in device_types}
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    listing = list_library_images(
        _home(ctx), manufacturers=mfrs, device_types=types, offline=offline
    )
    for problem in listing.catalogue.ignored:
        say(f"warning: ignored {problem.target}: {problem.message}")
    _warn_unverified(listing.catalogue.unverified)
    if as_json:
        emit_json(
            {
                "images": [listing.image_json(i) for i in listing.shown],
                "unverified": [u.to_json() for u in listing.catalogue.unverified],
            }
        )
    else:
        _render_listing(listing.shown)
    _exit_if_incomplete(ctx, listing.asked_unverified)


def _render_listing(images: Sequence[CatalogueImage]) -> None:
    table = Table(title=f"{len(images)} verified image(s)")
    for heading in ("Target", "Type", "Models", "Firmware", "HW range", "Reason", "MI SHA-256"):
        table.add_column(heading)
    for image in images:
        cfl = image.cfl
        reason = cfl.reason + (" " + " ".join(cfl.advisories) if cfl.advisories else "")
        if image.withdrawn:
            reason = "WITHDRAWN; " + reason
        models = ", ".join(sorted({f"{e.model_id} {e.model_name}" for e in cfl.cpl_entries}))
        table.add_row(
            image.target_path,
            cfl.device_type,
            models,
            cfl.firmware_version,
            f"{cfl.hardware_version_min}..{cfl.hardware_version_max}",
            reason,
            cfl.manufacturer_image_sha256[:16] + "...",
        )
    Console(stderr=True, highlight=False, markup=False).print(table)


@cli.command()
@click.argument("estate", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the stable check report on stdout.")
@click.option(
    "--strict", is_flag=True, help="A bad estate row is fatal (default: reported and skipped)."
)
@click.option(
    "--devices-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write one row per device: ID, recommended target, SR 11.3 hash, SR 11.1 batch (<= 50,000 devices).",
)
@click.option(
    "--changes",
    is_flag=True,
    help="Also report devices gained since the last --changes check, and images published since the last check that apply.",
)
@click.option(
    "--estate-name",
    default="default",
    show_default=True,
    help="Name under which the history keeps this estate.",
)
@offline_option
@click.pass_context
def check(
    ctx: click.Context,
    estate: Path,
    as_json: bool,
    strict: bool,
    devices_out: Path | None,
    changes: bool,
    estate_name: str,
    offline: bool,
) -> None:
    """Which verified images apply to the devices in ESTATE.csv, and which to install.

    Devices are grouped by (device type, manufacturer, model, hardware version, firmware version);
    an image applies when one of its CPL entries has the device's manufacturer, model and hardware
    version and the CPL upgrade pathway admits the device's current firmware (or, where the pathway
    says N/A, the image's firmware version is higher). The recommended image is the highest
    applicable firmware version. Only the roles of manufacturers in the estate are fetched.
    """
    run = run_check(
        _home(ctx),
        estate,
        now=_now(),
        strict=strict,
        devices_out=devices_out,
        changes=changes,
        estate_name=estate_name,
        offline=offline,
    )
    for problem in run.catalogue.ignored:
        say(f"warning: ignored {problem.target}: {problem.message}")
    _warn_unverified(run.catalogue.unverified)
    if run.catalogue.unverified:
        say("warning: the check history was not updated: the catalogue is incomplete")
    doc = report_json(run.report)
    doc["unverified"] = [u.to_json() for u in run.catalogue.unverified]
    if run.changes is not None:
        doc["changes"] = run.changes.to_json()
    if as_json:
        emit_json({k: v for k, v in doc.items() if k != "schema_version"})
    else:
        render_summary(run.report, stderr)
        if run.changes is not None:
            stderr.print(json.dumps(run.changes.to_json(), indent=2))
        if devices_out is not None:
            stderr.print(f"per-device batches written to {devices_out}")
    # Only the estate's manufacturers were loaded, so every unverified role was asked for.
    _exit_if_incomplete(ctx, run.catalogue.unverified)


@cli.command()
@click.argument("targets", nargs=-1)
@click.option(
    "--estate",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Download the recommended image of every device group in this estate.",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder (verified files and manifest.json only).",
)
@click.option(
    "--fragment-size",
    type=click.IntRange(1),
    help="Also write each image as numbered fragments of this many bytes (HAN: 750000).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest entries on stdout.")
@offline_option
@click.pass_context
def download(
    ctx: click.Context,
    targets: tuple[str, ...],
    estate: Path | None,
    out_dir: Path,
    fragment_size: int | None,
    as_json: bool,
    offline: bool,
) -> None:
    """Download TARGET... (or the recommended images for --estate) into --out, each verified by
    ngclient before it appears there under a name starting with its SHA-256."""
    result = download_images(
        _home(ctx),
        out_dir=out_dir,
        targets=targets,
        estate=estate,
        fragment_size=fragment_size,
        offline=offline,
        progress=_progress,
    )
    _warn_unverified(result.unverified)
    if as_json:
        emit_json(
            {
                "out": str(result.out_dir),
                "manifest": str(result.manifest),
                "files": [p.to_json() for p in result.placed],
                "unverified": [u.to_json() for u in result.unverified],
            }
        )
    say(
        f"{len(result.placed)} image(s) in {out_dir} ({result.fetched} downloaded, "
        f"{len(result.placed) - result.fetched} already present); manifest: {result.manifest}"
    )
    _exit_if_incomplete(ctx, result.unverified)


def _progress(items: Sequence[Wanted]) -> Iterable[Wanted]:
    """A progress bar on a terminal only."""
    if not sys.stderr.isatty() or len(items) < 2:
        return items
    from rich.progress import track

    return track(items, description="downloading", console=stderr, transient=True)


def main() -> None:
    """Console-script entry point."""
    cli(standalone_mode=True)
