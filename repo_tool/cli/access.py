"""`cfl-repo supplier ...`, `cfl-repo host nginx` and `cfl-repo audit`: suppliers and access (issue 10).

Registered on the main group by `repo_tool.cli` (one ``add_command`` per group). Each command parses,
calls one library function and renders; the work is in `repo_tool.ops.suppliers`,
`repo_tool.access.host_nginx` and `repo_tool.access.audit`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from metadata_templates.errors import ConfigurationError, UnavailableError, field_error
from metadata_templates.output import json_document
from metadata_templates.suppliers import USER_ROLES, Supplier
from repo_tool.cli.console import err as _err
from repo_tool.cli.console import open_repo as _open_repo
from repo_tool.cli.console import read_input, utc_now

if TYPE_CHECKING:
    from repo_tool.access.host_pilots import Embargo
    from repo_tool.state.repository import Repository

logger = logging.getLogger("repo_tool")


def _supplier_doc(supplier: Supplier) -> dict[str, Any]:
    doc = supplier.to_dict()
    doc.pop("certificate_pem")
    return doc


# -------------------------------------------------------------------------------------- supplier


@click.group()
def supplier() -> None:
    """The supplier registry: DCC User organisations allowed to download images (BR05).

    \b
    Each change is signed into target cfl/suppliers.json at the next publish and recorded in
    events.jsonl. Access at the host follows it: regenerate with `cfl-repo host nginx` and reload.
    See docs/operator.md, "Suppliers and access".
    """


@supplier.command("add")
@click.argument("entity_id")
@click.option("--name", required=True, help="The organisation's name.")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(list(USER_ROLES), case_sensitive=False),
    help="DCC User Role: IS (Import Supplier), GS (Gas Supplier), DCC; repeat for several.",
)
@click.option(
    "--cert",
    "cert_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The organisation's certificate (PEM, X.509, ECDSA P-256).",
)
@click.option(
    "--supplier-ca",
    "ca_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The supplier CA certificate (PEM); the certificate must be issued by it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the registered entry on stdout.")
@click.pass_context
def supplier_add(
    ctx: click.Context,
    entity_id: str,
    name: str,
    roles: tuple[str, ...],
    cert_file: Path,
    ca_file: Path | None,
    as_json: bool,
) -> None:
    """Register ENTITY_ID (16 hex digits, the DCC User's EUI-64) with its roles and certificate.

    \b
    Example:
      cfl-repo --repo R supplier add 90B3D51F30010000 --name "Acme Energy" \\
          --role IS --role GS --cert acme.crt.pem --supplier-ca supplier-ca.pem
    """
    from repo_tool.access.certificates import read_ca
    from repo_tool.ops.suppliers import add_supplier

    certificate = read_input(cert_file, "--cert")
    ca_pem = read_ca(read_input(ca_file, "--supplier-ca")) if ca_file else None
    repo = _open_repo(ctx)
    with repo.locked():
        added = add_supplier(
            repo,
            entity=entity_id,
            name=name,
            roles=roles,
            certificate=certificate,
            now=utc_now(),
            ca_pem=ca_pem,
        )
    if as_json:
        click.echo(json_document({"supplier": _supplier_doc(added)}))
    _err(
        f"registered {added.entity_id} ({added.name}) as {'+'.join(added.roles)}, certificate "
        f"sha256 {added.certificate_sha256[:16]}...; run `cfl-repo publish` and regenerate the host "
        "configuration"
    )


@supplier.command("revoke")
@click.argument("entity_id")
@click.option("--reason", required=True, help="Why (recorded and published).")
@click.option("--json", "as_json", is_flag=True, help="Print the revoked entry on stdout.")
@click.pass_context
def supplier_revoke(ctx: click.Context, entity_id: str, reason: str, as_json: bool) -> None:
    """Revoke ENTITY_ID: it stays listed (audits of old logs still know it) but loses all access.

    \b
    Takes effect at the host when the configuration is regenerated and nginx reloaded:
      cfl-repo --repo R supplier revoke 90B3D51F30010000 --reason "left the market"
      cfl-repo --repo R host nginx ... --out /etc/nginx/cfl.conf && nginx -s reload
    """
    from repo_tool.ops.suppliers import revoke_supplier

    repo = _open_repo(ctx)
    with repo.locked():
        gone = revoke_supplier(repo, entity=entity_id, reason=reason, now=utc_now())
    if as_json:
        click.echo(json_document({"supplier": _supplier_doc(gone)}))
    _err(
        f"revoked {gone.entity_id} ({gone.name}) at {gone.revoked}; regenerate the host configuration "
        "and reload nginx, then `cfl-repo publish`"
    )


@supplier.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the registry on stdout.")
@click.pass_context
def supplier_list(ctx: click.Context, as_json: bool) -> None:
    """List every registered organisation, revoked ones included."""
    registry = _open_repo(ctx).suppliers()
    if as_json:
        click.echo(json_document({"suppliers": [_supplier_doc(s) for s in registry.suppliers]}))
        return
    if not registry.suppliers:
        _err("no suppliers registered; add one with `cfl-repo supplier add`")
        return
    for s in registry.suppliers:
        state = "active" if s.active else f"revoked {s.revoked}: {s.revocation_reason}"
        click.echo(
            f"{s.entity_id}  {'+'.join(s.roles):<9} {s.certificate_sha256[:16]}  {s.name!r}  {state}"
        )


# ------------------------------------------------------------------------------------------ host


@click.group()
def host() -> None:
    """Host configuration generated from the repository (today: nginx)."""


def _existing_file(path: Path, option: str) -> str:
    resolved = path.resolve()
    if not resolved.is_file():
        raise ConfigurationError(f"{option}: found {str(path)!r}, expected an existing file")
    return str(resolved)


@host.command("nginx")
@click.option("--server-name", required=True, help="The host name suppliers' clients use.")
@click.option("--listen", required=True, help="ADDR:PORT to listen on with TLS, e.g. 0.0.0.0:443.")
@click.option(
    "--tls-cert",
    required=True,
    type=click.Path(path_type=Path),
    help="Server certificate chain (PEM).",
)
@click.option(
    "--tls-key", required=True, type=click.Path(path_type=Path), help="Server private key (PEM)."
)
@click.option(
    "--supplier-ca",
    required=True,
    type=click.Path(path_type=Path),
    help="The CA certificate (PEM) that issues supplier certificates.",
)
@click.option(
    "--public-root",
    type=click.Path(path_type=Path),
    help="The published tree to serve [default: R/public].",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Configuration file to write.",
)
@click.option(
    "--access-log",
    default="cfl-access.log",
    show_default=True,
    help="Access log for `cfl-repo audit` (relative: to nginx's -p prefix).",
)
@click.option("--error-log", default="cfl-error.log", show_default=True, help="nginx's error log.")
@click.option("--pid-file", default="cfl-nginx.pid", show_default=True, help="nginx's pid file.")
@click.option(
    "--temp-dir",
    default=".",
    show_default=True,
    help="Where nginx creates its temporary directories.",
)
@click.option(
    "--user", help="Workers' 'USER [GROUP]' when nginx starts as root (default: nginx's)."
)
@click.option(
    "--access",
    type=click.Choice(["role", "estate"]),
    default="role",
    show_default=True,
    help="role: images by User Role; estate: also only images the supplier's estate gives it a "
    "right to (`cfl-repo entitlements import`).",
)
@click.option(
    "--on",
    "on_day",
    metavar="YYYY-MM-DD",
    help="With --access estate: the day the rights are for [default: today].",
)
@click.option(
    "--outcomes-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Accept suppliers' delivery-outcome reports (`cfl outcomes submit --upload`) into this "
    "folder: PUT only, own Entity ID only, once per period (docs/hosting.md). Ingest them with "
    "`cfl-repo outcomes ingest --from DIR`.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written on stdout.")
@click.pass_context
def host_nginx(
    ctx: click.Context,
    server_name: str,
    listen: str,
    tls_cert: Path,
    tls_key: Path,
    supplier_ca: Path,
    public_root: Path | None,
    out: Path,
    access_log: str,
    error_log: str,
    pid_file: str,
    temp_dir: str,
    user: str | None,
    access: str,
    on_day: str | None,
    outcomes_dir: Path | None,
    as_json: bool,
) -> None:
    """Write a complete nginx configuration: caching, mutual TLS and access from the registry.

    \b
    Metadata, the provider's documents and the website are public; an image goes only to an
    active registered organisation whose User Roles cover its device type, everyone else gets 403
    with a one-line reason; an image still in a pilot (issue 22) goes only to its pilot
    suppliers (403 "this image is in a pilot and not yet released" for the others). Regenerate
    and reload after every registry change, and after a pilot's ingest (before publishing it),
    `release`, `hold` and a `refresh` that released one:
      cfl-repo --repo R host nginx --server-name firmware.example.org --listen 0.0.0.0:443 \\
          --tls-cert /etc/cfl/tls/server.crt.pem --tls-key /etc/cfl/tls/server.key.pem \\
          --supplier-ca /etc/cfl/tls/supplier-ca.pem --public-root /srv/cfl/public \\
          --access-log /var/log/cfl/access.log --out /etc/cfl/nginx.conf
      nginx -t -p /var/lib/cfl-nginx -c /etc/cfl/nginx.conf && nginx -s reload -p /var/lib/cfl-nginx -c /etc/cfl/nginx.conf

    \b
    --access estate: a supplier fetching an image no device in its estate has on its upgrade path
    gets 403 "no device in your estate that this image applies to". Regenerate and reload after
    every `cfl-repo entitlements import`, and daily (Change of Supplier rights begin on their
    Since, grace periods end); add --access estate to the command above. A pilot image then
    goes to a pilot supplier only if its estate gives it that right too.
    """
    from metadata_templates.atomic import atomic_write_bytes
    from repo_tool.access.certificates import read_ca
    from repo_tool.access.host_nginx import NginxSettings, render_nginx_config

    repo = _open_repo(ctx)
    ca = _existing_file(supplier_ca, "--supplier-ca")
    read_ca(read_input(Path(ca), "--supplier-ca"))
    root = (public_root if public_root is not None else repo.default_out).resolve()
    if not root.is_dir():
        raise ConfigurationError(
            f"--public-root: found {str(root)!r}, expected a published directory (run `cfl-repo publish`)"
        )
    settings = NginxSettings(
        server_name=server_name,
        listen=listen,
        tls_cert=_existing_file(tls_cert, "--tls-cert"),
        tls_key=_existing_file(tls_key, "--tls-key"),
        supplier_ca=ca,
        public_root=str(root),
        access_log=access_log,
        error_log=error_log,
        pid_file=pid_file,
        temp_dir=temp_dir,
        user=user,
        outcomes_dir=None if outcomes_dir is None else str(outcomes_dir.resolve()),
    )
    registry = repo.suppliers()
    now = utc_now()
    embargoes = _embargoes(repo, now)
    estate = None
    if access == "estate":
        from repo_tool.cli.entitlements import estate_for_host, parse_day

        estate = estate_for_host(repo, parse_day(on_day, "--on") or now.date())
    elif on_day is not None:
        raise ConfigurationError(field_error("--on", on_day, "no --on without --access estate"))
    text = render_nginx_config(
        settings,
        registry,
        registry_sha256=repo.head.suppliers_sha256 or "",
        now=now,
        estate=estate,
        embargoes=embargoes,
    )
    atomic_write_bytes(out, text.encode("utf-8"))
    active = sum(1 for s in registry.suppliers if s.active)
    pilots = {"pilots": [e.target for e in embargoes]} if embargoes else {}
    if as_json:
        doc: dict[str, Any] = {
            "out": str(out),
            "suppliers": len(registry.suppliers),
            "active": active,
            **pilots,
        }
        if estate is not None:
            from repo_tool.cli.entitlements import estate_doc

            doc["estate"] = estate_doc(estate, len(text.encode("utf-8")))
        click.echo(json_document(doc))
    if estate is not None:
        from repo_tool.cli.entitlements import estate_lines

        for line in estate_lines(estate):
            _err(line)
    held_back = (
        f"; {len(embargoes)} pilot image(s) for their pilot suppliers only" if embargoes else ""
    )
    _err(
        f"wrote {out}: {active} active of {len(registry.suppliers)} registered organisation(s)"
        f"{held_back}; "
        f"check with `nginx -t -p PREFIX -c {out.resolve()}` (relative paths in it are under PREFIX), "
        "then start or `nginx -s reload` with the same -p and -c"
    )


def _embargoes(repo: Repository, now: datetime) -> list[Embargo]:
    """The images still in a pilot at ``now`` (issue 22), as the host configuration needs them."""
    from repo_tool.access.host_pilots import embargo_of
    from repo_tool.state.pilots import embargoed

    return [
        embargo_of(i.target, i.sha256, i.terms.suppliers, i.terms.release_at, i.notes)
        for i in embargoed(repo, now)
    ]


# ----------------------------------------------------------------------------------------- audit


@contextlib.contextmanager
def _line_counter(*, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A live "N log lines read" line on a terminal only (never in --json mode)."""
    import sys

    if not enabled or not sys.stderr.isatty():
        yield lambda _lines: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), transient=True) as progress:
        task = progress.add_task("reading access logs")
        yield lambda lines: progress.update(task, description=f"read {lines:,} log lines")


def _open_inventory(path: Path) -> Any:
    import gzip

    try:
        raw = path.open("rb")
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
    except OSError as e:
        raise ConfigurationError(f"--inventory: cannot read {path} ({e.strerror})") from e
    return gzip.GzipFile(fileobj=raw) if gzipped else raw


def _entitlement_judge(repo: Any) -> Any:
    """The judge of the repository's entitlement history, or None before the first import."""
    from repo_tool.entitle.judge import EntitlementJudge
    from repo_tool.state.entitlements import EntitlementStore

    store = EntitlementStore(repo.state_dir)
    history = store.history(repo.head)
    if not history.entries:
        return None
    return EntitlementJudge(history, store.record, repo.config.entitlements.covers)


@click.command()
@click.argument(
    "access_logs",
    nargs=-1,
    required=True,
    metavar="ACCESS_LOG...",
    type=click.Path(dir_okay=False, path_type=Path),
)
@click.option(
    "--inventory",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Inventory extract CSV (Device ID, ..., Responsible Supplier, Since); may be gzipped.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the stable audit document on stdout.")
@click.pass_context
def audit(
    ctx: click.Context, access_logs: tuple[Path, ...], inventory: Path | None, as_json: bool
) -> None:
    """Report who downloaded which image from the host's ACCESS_LOG files, and flag downloads that
    were not entitled.

    \b
    ACCESS_LOG: logs written by the `host nginx` configuration, plain or gzipped (rotated files
    too), read in the order given. Findings: unregistered-certificate, revoked-certificate,
    outside-role, pilot-not-released (an image still in a pilot that did not name the
    organisation) and, with --inventory, no-applicable-device (the organisation was responsible
    for no device the image applies to on that day; Change of Supplier counts from `Since`).
    Malformed lines are counted and listed with their line numbers, never fatal.
      cfl-repo --repo R audit /var/log/cfl/access.log.2.gz /var/log/cfl/access.log.1 \\
          /var/log/cfl/access.log --inventory sm-inventory.csv --json > audit.json

    \b
    After `cfl-repo entitlements import` (and without --inventory), each request is judged
    against the entitlement record in force at its time, grace periods included, and the report
    adds the requests refused at the host and any disagreement between host and record:
      cfl-repo --repo R audit /var/log/cfl/access.log --json > audit.json
    """
    import io
    import shutil
    import sys
    import tempfile

    from repo_tool.access.audit import (
        AuditLibrary,
        Auditor,
        Summary,
        Totals,
        judged_lines,
        render_text,
    )
    from repo_tool.access.audit_columnar import audit_logs
    from repo_tool.access.audit_host import HostCheck
    from repo_tool.access.inventory import UNREADABLE
    from repo_tool.access.inventory_columnar import read_inventory_binary

    repo = _open_repo(ctx)
    for path in access_logs:
        if not path.is_file():
            raise ConfigurationError(f"ACCESS_LOG: found {str(path)!r}, expected an existing file")
    registry = repo.suppliers()
    roles = [repo.role(name).signed for name in sorted(repo.head.roles)]
    from repo_tool.state.pilots import releases

    library = AuditLibrary.of(roles, repo.cpl(), releases(repo))
    index = None
    if inventory is not None:
        try:
            with _open_inventory(inventory) as binary:
                index = read_inventory_binary(binary)
        except (*UNREADABLE, UnicodeDecodeError) as e:
            # A truncated gzip ends in EOFError, which click would otherwise take for Ctrl-D.
            raise UnavailableError(
                f"--inventory {inventory}: unreadable ({e.__class__.__name__}: {e})"
            ) from e
        _err(f"inventory: {index.devices} device(s), {index.bad_rows} bad row(s) left out")
        for problem in index.problems:
            _err(f"  {inventory}: {problem}")
    judge = None if index is not None else _entitlement_judge(repo)
    auditor = Auditor(registry, library, index, entitlements=judge)
    totals = Totals()
    summary = Summary()
    host_check = HostCheck()
    # Entries go to a scratch file first, so a log that turns out unreadable half-way (a corrupt
    # gzip) leaves stdout empty instead of half a JSON document; memory stays flat either way.
    with tempfile.TemporaryFile("w+b") as scratch:
        # Each entry goes after ",\n    "; the first loses its comma on the way to stdout.
        with _line_counter(enabled=not as_json) as show:
            if judge is None:  # judged in columns where the lines allow (audit_columnar.py)
                write = scratch.write if as_json else None
                audit_logs(access_logs, auditor, totals, summary, write, progress=show)
            else:  # the entitlement history judges request by request
                for judged in judged_lines(access_logs, auditor, totals):
                    summary.add(judged)
                    host_check.add(judged)
                    if totals.requests % 100_000 == 0:
                        show(totals.lines)
                    if as_json:
                        scratch.write((",\n    " + judged.to_json()).encode())
        report = render_text(
            summary, registry, totals, inventory=index is not None or judge is not None
        )
        if judge is not None:
            report += "\n" + "\n".join(host_check.lines(judge.used))
        if not as_json:
            click.echo(report)
            return
        scratch.seek(0)
        if scratch.read(1) != b",":
            scratch.seek(0)
        out = sys.stdout
        out.write('{\n  "schema_version": 1,\n  "downloads": [')
        entries = io.TextIOWrapper(scratch, encoding="utf-8")
        shutil.copyfileobj(entries, out)
        entries.detach()
        suppliers = json.dumps(summary.suppliers(registry), sort_keys=True)
        more = ""
        if judge is not None:
            more = (
                f',\n  "entitlements": {json.dumps(host_check.to_dict(judge.used), sort_keys=True)}'
            )
        out.write(f'\n  ],\n  "suppliers": {suppliers}{more}\n}}\n')
    _err(report)
