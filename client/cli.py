"""`cfl`: the supplier's verifying client. Parses, calls the library, renders.

Every trust decision is python-tuf ngclient's (client/session.py); this module decides what is
relevant to the supplier's estate and presents it. Exit codes: 0 success, 1 rejected or failed
verification, 2 usage or configuration. ``--json`` prints one document on stdout; people read stderr.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from client import __version__
from client.catalogue import CatalogueImage, build_catalogue
from client.check import plan_estate, write_estate_devices, write_estate_report
from client.download import OutputFolder, PlacedFile
from client.estate import iter_estate_devices, open_estate, read_estate_groups
from client.history import History
from client.home import ClientConfig, ClientHome, normalise_repository_url
from client.report import CheckReport, render_summary, report_json
from client.rollout import parse_phases
from client.session import Session, SessionPaths
from client.short_names import resolve_target, short_names
from client.tables import image_table, wide_console
from client.transport import CflFetcher
from metadata_templates import identifiers, naming
from metadata_templates.errors import ConfigurationError, VerificationError
from metadata_templates.output import json_document, reports_errors, utc_now
from metadata_templates.withdrawals import WithdrawalList

logger = logging.getLogger("client")
stderr = Console(stderr=True, highlight=False)


_now = utc_now


def _emit_json(doc: dict[str, Any]) -> None:
    click.echo(json_document(doc))


handle_errors = reports_errors(logger, "no partial file was left in the output folder")


class _Client:
    """The home, its lock and one verified session, opened per command."""

    def __init__(self, home: ClientHome, *, offline: bool) -> None:
        self.home = home
        self.offline = offline
        config = home.load_config()
        if offline:
            from client.session import LocalFetcher

            url = "https://offline.invalid/"
            self.session = Session(
                SessionPaths(home.metadata_dir, home.targets_dir),
                url,
                LocalFetcher(home.metadata_dir, home.targets_dir, url),
                bootstrap_root=home.bootstrap_root(),
            )
        else:
            self.session = Session(
                SessionPaths(home.metadata_dir, home.targets_dir),
                config.repository_url,
                CflFetcher(config.transport_settings()),
                bootstrap_root=home.bootstrap_root(),
            )

    def catalogue(
        self, manufacturers: Iterable[str] | None
    ) -> tuple[tuple[CatalogueImage, ...], WithdrawalList]:
        self.session.refresh()
        withdrawals = self.session.withdrawals()
        images, problems = build_catalogue(
            self.session.verified_targets(manufacturers), withdrawals
        )
        for problem in problems:
            stderr.print(f"warning: ignored {problem.target}: {problem.message}")
        return images, withdrawals


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
    cfl download --estate ESTATE.csv --out DIR    fetch the images on the upgrade paths, verified

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


def _home(ctx: click.Context, *, initialised: bool = True) -> ClientHome:
    home: ClientHome = ctx.obj["home"]
    if initialised:
        # Before taking the lock, which creates the folder: a mistyped --home must not leave one.
        home.load_config()
    return home


wide_option = click.option(
    "--wide",
    is_flag=True,
    help="Full target paths and hashes in the table, however wide (default: short unique names that cfl download accepts, fitting the terminal).",
)


def _target_names(images: Iterable[CatalogueImage], wide: bool) -> dict[str, str]:
    targets = [image.target_path for image in images]
    return {t: t for t in targets} if wide else short_names(targets)


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
    "--force",
    is_flag=True,
    help="Re-initialise: discard trusted metadata and cache (history is kept).",
)
@click.pass_context
@handle_errors
def init(
    ctx: click.Context,
    url: str,
    root_file: Path,
    client_cert: str | None,
    client_key: str | None,
    ca_bundle: str | None,
    token_file: str | None,
    force: bool,
) -> None:
    """Trust the library at URL (http(s):// or file://), starting from ROOT.json. Without a root file
    there is no trust: cfl never fetches a root it has not been given."""
    if bool(client_cert) != bool(client_key):
        raise ConfigurationError(
            "--client-cert and --client-key go together (mutual TLS needs both)"
        )
    home = _home(ctx, initialised=False)
    config = ClientConfig(
        repository_url=normalise_repository_url(url),
        client_cert=str(Path(client_cert).resolve()) if client_cert else None,
        client_key=str(Path(client_key).resolve()) if client_key else None,
        ca_bundle=str(Path(ca_bundle).resolve()) if ca_bundle else None,
        token_file=str(Path(token_file).resolve()) if token_file else None,
    )
    with home.lock():
        home.initialise(config, root_file.read_bytes(), force=force)
    click.echo(f"initialised {home.path} for {config.repository_url}; next: cfl refresh", err=True)


@cli.command()
@click.option(
    "--json", "as_json", is_flag=True, help="Print the verified versions as JSON on stdout."
)
@click.pass_context
@handle_errors
def refresh(ctx: click.Context, as_json: bool) -> None:
    """Fetch and verify the newest library metadata, every manufacturer's role and the CPL, so
    that --offline works afterwards (one timestamp.json fetch when nothing changed)."""
    home = _home(ctx)
    with home.lock():
        client = _Client(home, offline=False)
        client.session.refresh()
        # --offline serves ngclient only what is in the home, so bring every role and provider
        # document up to the new snapshot here; when nothing changed they are all cached already.
        client.session.verified_targets(None)
        for path in naming.PROVIDER_TARGET_PATHS:
            client.session.provider_document(path)
        manufacturers = client.session.delegated_manufacturers()
        versions = client.session.versions()
    if as_json:
        _emit_json({"versions": versions, "manufacturers": manufacturers})
        return
    click.echo(
        "verified: "
        + ", ".join(f"{role} v{v}" for role, v in versions.items())
        + f"; {len(manufacturers)} manufacturer(s) delegated",
        err=True,
    )


def _image_doc(image: CatalogueImage, withdrawals: WithdrawalList) -> dict[str, Any]:
    withdrawal = withdrawals.by_target().get(image.target_path)
    return {
        "target": image.target_path,
        "length": image.length,
        "sha256": image.sha256,
        "withdrawn": None if withdrawal is None else withdrawal.to_dict(),
        "cfl": image.cfl.to_dict(),
    }


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
@wide_option
@offline_option
@click.pass_context
@handle_errors
def list_images(
    ctx: click.Context,
    manufacturers: tuple[str, ...],
    device_types: tuple[str, ...],
    as_json: bool,
    wide: bool,
    offline: bool,
) -> None:
    """Every verified image with its CFL metadata (withdrawn ones marked).

    The table shows each target by a short unique name (manufacturer/first hash digits, e.g.
    121D/3f2a) that `cfl download` accepts; --wide and --json show full target paths."""
    try:
        mfrs = [identifiers.manufacturer_id(m, "--manufacturer") for m in manufacturers] or None
        types = {identifiers.device_type(t, "--device-type") for t in device_types}
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    home = _home(ctx)
    with home.lock():
        images, withdrawals = _Client(home, offline=offline).catalogue(mfrs)
    shown = [i for i in images if not types or i.cfl.device_type in types]
    if as_json:
        _emit_json({"images": [_image_doc(i, withdrawals) for i in shown]})
        return
    console = Console(stderr=True, highlight=False, markup=False)
    names = _target_names(images, wide)
    (wide_console(console) if wide else console).print(image_table(shown, names, wide=wide))


def _run_check(
    client: _Client, estate: Path, strict: bool
) -> tuple[CheckReport, tuple[CatalogueImage, ...]]:
    with open_estate(estate) as source:
        summary = read_estate_groups(source, strict=strict, max_problems=100, where=str(estate))
    manufacturers = {key.manufacturer_id for key in summary.groups}
    images, _ = client.catalogue(manufacturers)
    cpl = client.session.cpl()
    return plan_estate(summary, images, cpl), images


def _device_ids(estate: Path) -> Iterator[str]:
    with open_estate(estate) as source:
        for device_id, _key in iter_estate_devices(source, where=str(estate)):
            yield device_id


@cli.command()
@click.argument("estate", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the stable check report on stdout.")
@click.option(
    "--strict", is_flag=True, help="A bad estate row is fatal (default: reported and skipped)."
)
@click.option(
    "--devices-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write one row per device and hop of its path: ID, target, SR 11.3 hash, SR 11.1 batch (one image, <= 50,000 devices), hop, phase.",
)
@click.option(
    "--phases",
    help="With --devices-out: cumulative rollout percentages, e.g. 1,10,100 (1% of each image's devices first, then up to 10%, then all); a device keeps its phase across re-runs.",
)
@click.option(
    "--report",
    "report_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write one self-contained HTML page (charts and tables, no script, works offline, prints well) of the estate's firmware state, the upgrade paths and what changed.",
)
@click.option(
    "--changes",
    is_flag=True,
    help="Also report devices gained since the last --changes check, and images published since the last check that apply.",
)
@wide_option
@click.option(
    "--estate-name",
    default="default",
    show_default=True,
    help="Name under which the history keeps this estate.",
)
@offline_option
@click.pass_context
@handle_errors
def check(
    ctx: click.Context,
    estate: Path,
    as_json: bool,
    strict: bool,
    devices_out: Path | None,
    phases: str | None,
    report_out: Path | None,
    changes: bool,
    wide: bool,
    estate_name: str,
    offline: bool,
) -> None:
    """Which verified images apply to the devices in ESTATE.csv, and which to install.

    Devices are grouped by (device type, manufacturer, model, hardware version, firmware version);
    an image applies when one of its CPL entries has the device's manufacturer, model and hardware
    version and the CPL upgrade pathway admits the device's current firmware (or, where the pathway
    says N/A, the image's firmware version is higher). Each group gets the shortest path of
    images from its firmware to the best image it can reach (MP231 pathways, never through a
    withdrawn image, security fixes preferred); the recommended image is its last hop. Only the
    roles of manufacturers in the estate are fetched. See docs/supplier.md.
    """
    if phases is not None and devices_out is None:
        raise ConfigurationError("--phases: found without --devices-out, expected both together")
    rollout_phases = None if phases is None else parse_phases(phases)
    home = _home(ctx)
    with home.lock():
        client = _Client(home, offline=offline)
        report, images = _run_check(client, estate, strict)
        if devices_out is not None:
            write_estate_devices(estate, report, devices_out, phases=rollout_phases)
        with History(home.history_path) as history:
            recorded = history.record(
                now=_now(),
                devices=report.devices,
                catalogue_targets=[i.target_path for i in images],
                applicable_targets=sorted(
                    {i.target_path for g in report.groups for i in g.applicable}
                ),
                device_ids=_device_ids(estate) if changes else None,
                estate=estate_name,
            )
        if report_out is not None:
            write_estate_report(
                report_out, report, images, recorded.to_json(), devices_compared=changes, now=_now()
            )
    doc = report_json(report)
    if changes:
        doc["changes"] = recorded.to_json()
    if as_json:
        _emit_json({k: v for k, v in doc.items() if k != "schema_version"})
    else:
        render_summary(
            report, wide_console(stderr) if wide else stderr, _target_names(images, wide)
        )
        if changes:
            stderr.print(json.dumps(recorded.to_json(), indent=2))
        if devices_out is not None:
            stderr.print(f"per-device batches written to {devices_out}")
        if report_out is not None:
            stderr.print(f"report written to {report_out}")


@cli.command()
@click.argument("targets", nargs=-1)
@click.option(
    "--estate",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Download every image on the upgrade paths of this estate's device groups.",
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
@handle_errors
def download(
    ctx: click.Context,
    targets: tuple[str, ...],
    estate: Path | None,
    out_dir: Path,
    fragment_size: int | None,
    as_json: bool,
    offline: bool,
) -> None:
    """Download TARGET... (or every image on the upgrade paths of --estate) into --out, each
    verified by ngclient before it appears there under a name starting with its SHA-256. A TARGET
    is a full target path or the short name `cfl list` and `cfl check` show (e.g. 121D/3f2a)."""
    if bool(targets) == bool(estate):
        raise ConfigurationError("give TARGET... or --estate ESTATE.csv (one of them)")
    home = _home(ctx)
    if fragment_size is not None and fragment_size < 1:
        raise ConfigurationError(
            f"--fragment-size: found {fragment_size}, expected a positive number of bytes"
        )
    with home.lock():
        client = _Client(home, offline=offline)
        wanted: list[tuple[CatalogueImage, int]] = []
        if estate is not None:
            report, _ = _run_check(client, estate, strict=False)
            counts: dict[str, int] = {}
            by_target: dict[str, CatalogueImage] = {}
            # Every hop of every group's upgrade path, so a campaign has all it sends.
            for position, group in enumerate(report.groups):
                for hop in report.plan_of(position).path:
                    counts[hop.target_path] = counts.get(hop.target_path, 0) + group.device_count
                    by_target[hop.target_path] = hop
            wanted = [(by_target[t], counts[t]) for t in sorted(by_target)]
        else:
            manufacturers = {t.split("/", 1)[0].upper() for t in targets}
            images, _ = client.catalogue(manufacturers)
            index = {i.target_path: i for i in images}
            for given in targets:
                target = resolve_target(given, index) or given
                image = index.get(target)
                if image is None:
                    raise VerificationError(
                        f"TARGET: found {target!r}, expected an image in the verified library (see `cfl list`)"
                    )
                if image.withdrawn:
                    raise VerificationError(
                        f"TARGET: {target} has been withdrawn by the provider; refusing to download it"
                    )
                wanted.append((image, 0))
        # The folder is made only once there is something verified to put in it; under the lock,
        # any partial file already there is from a crashed earlier run.
        folder = OutputFolder(out_dir, fragment_size=fragment_size)
        folder.remove_partials()
        placed: list[PlacedFile] = []
        for image, devices in _progress(wanted):
            source = (
                None if folder.is_present(image) else client.session.download(image.target_path)
            )
            placed.append(folder.place(image, source, device_count=devices))
        manifest = folder.write_manifest(placed)
    fetched = sum(not p.reused for p in placed)
    if as_json:
        _emit_json(
            {"out": str(out_dir), "manifest": str(manifest), "files": [p.to_json() for p in placed]}
        )
    click.echo(
        f"{len(placed)} image(s) in {out_dir} ({fetched} downloaded, {len(placed) - fetched} already present); manifest: {manifest}",
        err=True,
    )


def _progress(items: list[tuple[CatalogueImage, int]]) -> Iterable[tuple[CatalogueImage, int]]:
    """A progress bar on a terminal only."""
    if not sys.stderr.isatty() or len(items) < 2:
        return items
    from rich.progress import track

    return track(items, description="downloading", console=stderr, transient=True)


def main() -> None:
    """Console-script entry point."""
    cli(standalone_mode=True)
