"""`cfl`: the supplier's verifying client. Parses, calls the library, renders.

Every trust decision is python-tuf ngclient's (client/trust/session.py); this module decides what is
relevant to the supplier's estate and presents it. Exit codes: 0 success, 1 rejected or failed
verification, 2 usage or configuration. ``--json`` prints one document on stdout; people read stderr.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from client import __version__
from client.cli.advisories import advisories_command, fail_on_advisory, fail_on_option
from client.cli.log import log_group, witness_group
from client.cli.outcomes import check_gates, outcomes_group, own_figures, say_gates
from client.cli.output import (
    CflGroup,
    emit_json,
    home_of,
    lock_policy,
    notes_key,
    offline_option,
    say,
    stderr,
    utc_now,
    wait_option,
)
from client.cli.tables import image_table, render_summary, wide_console
from client.estate.check import run_check
from client.estate.report import report_json
from client.estate.rollout import parse_phases
from client.fetch.selection import Wanted
from client.trust.catalogue import CatalogueImage
from client.trust.home import ClientConfig, ClientHome, normalise_repository_url
from client.trust.listing import list_images as list_library_images
from client.trust.refresh import refresh_library
from client.trust.session import UnverifiedRole
from client.trust.short_names import short_names
from metadata_templates import identifiers
from metadata_templates.errors import EXIT_FAILURE, ConfigurationError

logger = logging.getLogger("client")


_now = utc_now


def _warn_unverified(unverified: Iterable[UnverifiedRole]) -> None:
    """One warning line per manufacturer role that did not verify (its images are left out)."""
    for role in unverified:
        say(f"warning: {role.manufacturer_id}: images left out, {role.message}")


def _checked(check: Callable[[str, str], str], value: str, option: str) -> str:
    """``check(value, option)``; its ValueError becomes a usage error (exit 2)."""
    try:
        return check(value, option)
    except ValueError as e:
        raise ConfigurationError(str(e)) from e


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
@wait_option
@click.pass_context
def cli(ctx: click.Context, home: Path | None, verbose: int, wait: float) -> None:
    """Centralised Firmware Library: the supplier's verifying client.

    \b
    cfl init URL --root ROOT.json     trust a library, starting from its root metadata
    cfl refresh                       verify the latest library (timestamp, snapshot, targets)
    cfl list                          every verified image with its CFL metadata
    cfl check ESTATE.csv              which images apply to your devices, and which to install
    cfl download --estate ESTATE.csv --out DIR    fetch the images on the upgrade paths, verified
    cfl notes TARGET                  decrypt an image's release notes (entitled suppliers only)
    cfl advisories --estate E.csv     security advisories affecting your devices, and the fix
    cfl log verify URL                audit the transparency log (no keys, no home)
    cfl outcomes record RESULTS.csv   record delivery outcomes (device IDs stay in the home)
    cfl outcomes submit --key K --out R   sign the month's counts for the provider

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
    ctx.obj["home"] = ClientHome(home, lock=lock_policy(ctx, "cfl", wait))


wide_option = click.option(
    "--wide",
    is_flag=True,
    help="Full target paths and hashes in the table, however wide (default: short unique names that cfl download accepts, fitting the terminal).",
)


def _target_names(images: Iterable[CatalogueImage], wide: bool) -> dict[str, str]:
    targets = [image.target_path for image in images]
    return {t: t for t in targets} if wide else short_names(targets)


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
    "--notes-key",
    type=click.Path(exists=True, dir_okay=False),
    help="Your organisation's P-256 private key PEM for release notes (default: --client-key).",
)
@click.option(
    "--deadline",
    type=click.FloatRange(min=0, min_open=True),
    default=ClientConfig.deadline,
    show_default=True,
    help="Seconds any one request may take in all; a host trickling bytes is cut off then.",
)
@click.option(
    "--entity",
    "entity_id",
    metavar="ENTITY_ID",
    help="Your organisation's Entity ID (16 hex digits): list, check and download then include "
    "the pilot images deposited for you (default: none; other suppliers' pilots are never offered).",
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
    notes_key: str | None,
    deadline: float,
    entity_id: str | None,
    force: bool,
) -> None:
    """Trust the library at URL (http(s):// or file://), starting from ROOT.json. Without a root file
    there is no trust: cfl never fetches a root it has not been given.

    \b
    A supplier in a manufacturer's pilot names itself, so its pilot images are offered to it:
      cfl init https://cfl.example.org --root root.json --client-cert org.pem \\
          --client-key org.key.pem --entity 00000000000000A1"""
    from metadata_templates.suppliers import entity_id as checked_entity

    if bool(client_cert) != bool(client_key):
        raise ConfigurationError(
            "--client-cert and --client-key go together (mutual TLS needs both)"
        )
    home = home_of(ctx)
    config = ClientConfig(
        repository_url=normalise_repository_url(url),
        client_cert=str(Path(client_cert).resolve()) if client_cert else None,
        client_key=str(Path(client_key).resolve()) if client_key else None,
        ca_bundle=str(Path(ca_bundle).resolve()) if ca_bundle else None,
        token_file=str(Path(token_file).resolve()) if token_file else None,
        notes_key=str(Path(notes_key).resolve()) if notes_key else None,
        deadline=deadline,
        entity_id=None if entity_id is None else _checked(checked_entity, entity_id, "--entity"),
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

    The transparency log: the checkpoint the new timestamp binds is checked against the log key
    this home pinned and the witnesses it requires (`cfl log witnesses`), and proved consistent
    with the checkpoint this home trusted last (an inconsistent log is refused, exit 1, with the
    evidence kept in the home); the entries appended since are searched for withdrawals, the search
    proved complete against the checkpoint's root. Each image's inclusion in the log is proved when
    `cfl download` fetches it. See docs/transparency.md.

    A withdrawal is never undone: a withdrawal list that drops or changes one this home saw, or
    lacks one the transparency log records, is refused (exit 1) and the home keeps the state it
    trusted before. See docs/supplier.md, "A withdrawal is never undone".
    """
    from client.log.withdrawal_events import home_log_withdrawals

    home = home_of(ctx)
    # The transparency log: consistency from the checkpoint this home trusted to the new one, and
    # every withdrawal logged since the last search must be in the withdrawal list. Both run under
    # the one hold of the home's lock that refresh_library takes: no other cfl lands in between.
    result = refresh_library(home, read_log=home_log_withdrawals(home, now=_now()))
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
    if result.log_size is not None:
        say(f"transparency log: consistent, {result.log_size} entries")
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
@wide_option
@offline_option
@click.pass_context
def list_images(
    ctx: click.Context,
    manufacturers: tuple[str, ...],
    device_types: tuple[str, ...],
    as_json: bool,
    wide: bool,
    offline: bool,
) -> None:
    """Every verified image with its CFL metadata (withdrawn ones marked; pilot images deposited
    for your organisation, `init --entity`, marked PILOT; other suppliers' pilots left out).

    The table shows each target by a short unique name (manufacturer/first hash digits, e.g.
    121D/3f2a) that `cfl download` accepts; --wide and --json show full target paths.

    A manufacturer whose role did not verify is reported and left out ("unverified" in --json);
    the exit code is 1 only if it is one you named with --manufacturer.
    """
    try:
        mfrs = {identifiers.manufacturer_id(m, "--manufacturer") for m in manufacturers}
        types = {identifiers.device_type(t, "--device-type") for t in device_types}
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    listing = list_library_images(
        home_of(ctx), manufacturers=mfrs, device_types=types, offline=offline, now=_now()
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
        console = Console(stderr=True, highlight=False, markup=False)
        names = _target_names(listing.catalogue.images, wide)
        (wide_console(console) if wide else console).print(
            image_table(listing.shown, names, wide=wide)
        )
    _exit_if_incomplete(ctx, listing.asked_unverified)


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
@fail_on_option
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
    phases: str | None,
    report_out: Path | None,
    changes: bool,
    wide: bool,
    fail_on: str | None,
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
    roles of manufacturers in the estate are fetched. Groups on firmware a security advisory
    lists are marked, with the path that fixes it (--fail-on-advisory SEVERITY for cron). See
    docs/supplier.md.
    """
    if phases is not None and devices_out is None:
        raise ConfigurationError("--phases: found without --devices-out, expected both together")
    rollout_phases = None if phases is None else parse_phases(phases)
    own = None if report_out is None else own_figures(home_of(ctx))  # for the report's chart
    run = run_check(
        home_of(ctx),
        estate,
        now=_now(),
        strict=strict,
        devices_out=devices_out,
        phases=rollout_phases,
        report_out=report_out,
        changes=changes,
        estate_name=estate_name,
        offline=offline,
        own_outcomes=own,
    )
    for problem in run.catalogue.ignored:
        say(f"warning: ignored {problem.target}: {problem.message}")
    _warn_unverified(run.catalogue.unverified)
    if run.catalogue.unverified:
        say("warning: the check history was not updated: the catalogue is incomplete")
    doc = report_json(run.report)
    doc["unverified"] = [u.to_json() for u in run.catalogue.unverified]
    gates = None if rollout_phases is None else check_gates(ctx, estate, run, rollout_phases)
    if gates is not None:
        doc["phases"] = [g.to_json() for g in gates]
    if run.changes is not None:
        doc["changes"] = run.changes.to_json()
    if as_json:
        emit_json({k: v for k, v in doc.items() if k != "schema_version"})
    else:
        render_summary(
            run.report,
            wide_console(stderr) if wide else stderr,
            _target_names(run.catalogue.images, wide),
        )
        if run.changes is not None:
            stderr.print(json.dumps(run.changes.to_json(), indent=2))
        if devices_out is not None:
            stderr.print(f"per-device batches written to {devices_out}")
        say_gates(gates or ())
        if report_out is not None:
            stderr.print(f"report written to {report_out}")
    for problem in run.advisories.problems:
        say(f"warning: ignored {problem.target}: {problem.message}")
    # Only the estate's manufacturers were loaded, so every unverified role was asked for.
    _exit_if_incomplete(ctx, run.catalogue.unverified)
    fail_on_advisory(ctx, run.report, fail_on)


@cli.command()
@click.argument("targets", nargs=-1, metavar="[TARGET]...")
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
    type=click.IntRange(1, 10_240_000),  # a fragment larger than the DUIS image cap is no fragment
    help="Also write each image as numbered fragments of this many bytes (HAN: 750000).",
)
@click.option(
    "--with-notes",
    is_flag=True,
    help="Also decrypt each image's release notes into --out as <image file>.notes.txt (see `cfl notes`).",
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
    with_notes: bool,
    as_json: bool,
    offline: bool,
) -> None:
    """Download TARGET... (or every image on the upgrade paths of --estate) into --out, each
    verified by ngclient (and, online, found in the transparency log) before it appears there under
    a name starting with its SHA-256. A TARGET is a full target path or the short name `cfl list`
    and `cfl check` show (e.g. 121D/3f2a)."""
    from client.fetch.retrieval import (
        download_images,  # and the log verifier: not on `check`'s start-up
    )

    # Before anything is fetched: a missing or unreadable key must not cost a download.
    notes_key = _notes_key(ctx) if with_notes else None
    result = download_images(
        home_of(ctx),
        out_dir=out_dir,
        targets=targets,
        estate=estate,
        fragment_size=fragment_size,
        offline=offline,
        progress=_progress,
        notes_key=notes_key,
        now=_now(),
    )
    for reason in result.notes_skipped:
        say(f"warning: {reason}")
    _warn_unverified(result.unverified)
    if as_json:
        emit_json(
            {
                "out": str(result.out_dir),
                "manifest": str(result.manifest),
                "files": [p.to_json() for p in result.placed],
                "unverified": [u.to_json() for u in result.unverified],
                **({"notes": list(result.notes)} if with_notes else {}),
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


def _notes_key(ctx: click.Context) -> Any:
    """The organisation's notes key from the home's configuration (asks for a passphrase if needed)."""
    return notes_key(ctx)


@cli.command("notes")
@click.argument("target")
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write the decrypted notes to (default: ./<image file name>.notes.txt).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON on stdout.")
@offline_option
@click.pass_context
def notes_command(
    ctx: click.Context, target: str, out_file: Path | None, as_json: bool, offline: bool
) -> None:
    """Decrypt the release notes of image TARGET (a path from `cfl list`).

    The encrypted notes are fetched and verified through TUF like an image, then opened with your
    organisation's key (`cfl init --notes-key KEY.pem`, else the --client-key). It works when your
    organisation was a recipient when the image was deposited, or when the provider has granted it
    the notes since (`cfl-repo notes grant`). The plaintext is checked against the SHA-256 the
    manufacturer signed and written atomically, readable by you only.

    \b
    Example:
      cfl notes 121D/ESME-0001-01020000-44b5d7e4c66a089b.ota --out notes.txt
    Exit 1 with one line when you are not a recipient or the notes fail verification.
    """
    from client.notes.release_notes import notes_file_name, read_notes, write_notes
    from client.trust.library import open_session

    home = home_of(ctx)
    key = _notes_key(ctx)
    home.load_config()
    with home.lock():
        notes = read_notes(open_session(home, offline=offline), target, key)
    out = out_file or Path(notes_file_name(target))
    write_notes(out, notes)
    if as_json:
        emit_json(notes.to_json(out))
    click.echo(
        f"release notes of {target} ({len(notes.plaintext)} bytes, via {notes.via} "
        f"{notes.entity_id}) written to {out}",
        err=True,
    )


# ------------------------------------------------------------------------- transparency log


cli.add_command(log_group)
cli.add_command(witness_group)
cli.add_command(advisories_command)
cli.add_command(outcomes_group)


def main() -> None:
    """Console-script entry point."""
    cli(standalone_mode=True, obj={"argv": sys.argv[1:]})  # the lock record names the command
