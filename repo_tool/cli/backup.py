"""`cfl-repo backup` and `cfl-repo restore`: parse, call repo_tool/ops/backup.py or restore.py,
render. Registered on the root group by repo_tool/cli/main.py."""

from __future__ import annotations

from pathlib import Path

import click

from metadata_templates.errors import ConfigurationError, field_error
from repo_tool.cli.console import emit_json as _emit_json
from repo_tool.cli.console import err as _err
from repo_tool.cli.console import open_repo as _open_repo
from repo_tool.cli.console import utc_now

_now = utc_now
_SHA256_FORM = "64 hex digits (the manifest_sha256 `backup --json` printed)"


@click.command()
@click.option(
    "--to",
    "to",
    required=True,
    metavar="DIR|s3://BUCKET/PREFIX",
    help="Where backups are kept: a folder (new, empty, or one backup wrote) or an S3 prefix.",
)
@click.option(
    "--endpoint-url",
    metavar="URL",
    help="With --to s3://...: an S3-compatible server (MinIO, Ceph, ...) instead of AWS.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was copied on stdout.")
@click.pass_context
def backup(ctx: click.Context, to: str, endpoint_url: str | None, as_json: bool) -> None:
    """Back up the repository: configuration, state, blobs, event log, rejected bundles.

    Incremental: every file is stored once under its SHA-256, so a run copies only what changed
    since the last; each run then writes one manifest, backups/<UTC time>.json, listing every
    file with its hash. The manifest is written last, so an interrupted backup leaves no
    manifest and the next run succeeds. The lock is held only while R is surveyed, so the backup
    is one consistent head even while ingests run.

    \b
    Never copied: private keys (R/keys/ and every key file cfl-repo.json names: their
    custodians back them up, HSM or offline), the published tree R/public (a publish from
    the restored repository writes it again), caches. The recovery point is the last
    manifest. See docs/operator.md, "Backup and restore".

    \b
    Examples:
      cfl-repo --repo /srv/cfl/repo backup --to /mnt/backup/cfl
      cfl-repo --repo /srv/cfl/repo backup --to s3://cfl-backup/prod --json
    """
    from repo_tool.backup.targets import open_target
    from repo_tool.ops.backup import take_backup

    repo = _open_repo(ctx)
    target = open_target(to, endpoint_url=endpoint_url, option="--to")
    report = take_backup(repo, target, now=_now())
    for path, reason in sorted(report.left_out.items()):
        _err(f"left out {path}: {reason}")
    _err(
        f"backed up {repo.path} to {target.url} {report.manifest}: {report.files} file(s), "
        f"{report.files_copied} copied ({report.bytes_copied} bytes), {report.files_reused} "
        f"already there; recovery point: event {report.event_seq}"
    )
    _err(f"manifest sha256 {report.manifest_sha256} (pin it: restore --expect-sha256)")
    if as_json:
        _emit_json(report.to_dict())


@click.command()
@click.option(
    "--from",
    "source",
    required=True,
    metavar="DIR|s3://BUCKET/PREFIX",
    help="The backup folder or S3 prefix `cfl-repo backup --to` wrote.",
)
@click.option(
    "--repo",
    "new_repo",
    type=click.Path(path_type=Path),
    help="The new repository folder (must not exist, or be empty); or the global --repo.",
)
@click.option(
    "--manifest",
    "manifest_name",
    metavar="NAME",
    help="Which backup, e.g. 20260506T221500Z (default: the latest, the recovery point).",
)
@click.option(
    "--expect-sha256",
    metavar="HEX",
    help="Refuse unless the manifest hashes to this (the manifest_sha256 backup --json printed).",
)
@click.option(
    "--endpoint-url", metavar="URL", help="With --from s3://...: an S3-compatible server."
)
@click.option("--json", "as_json", is_flag=True, help="Print what was restored on stdout.")
@click.pass_context
def restore(
    ctx: click.Context,
    source: str,
    new_repo: Path | None,
    manifest_name: str | None,
    expect_sha256: str | None,
    endpoint_url: str | None,
    as_json: bool,
) -> None:
    """Restore a backup into a new repository folder, checking every file's SHA-256.

    The files are placed in a temporary folder beside NEWDIR and renamed into place only when
    all of them matched their manifest and the result opens as a repository: a refused or
    interrupted restore leaves nothing under NEWDIR. Private keys are not in a backup: the
    command lists the key files the configuration names, for their custodians to put back
    (HSM and KMS keys need nothing). A publish from the restored repository writes the same
    metadata, byte for byte, as one from the original.

    \b
    Example (a restore drill):
      cfl-repo restore --from /mnt/backup/cfl --repo /srv/cfl/repo-restored
      cp -r /secure/cfl-keys/. /srv/cfl/repo-restored/keys/     # the key custodians' step
      cfl-repo --repo /srv/cfl/repo-restored publish --out /tmp/drill
      cfl-repo verify /tmp/drill --root /tmp/drill/metadata/1.root.json
    """
    from repo_tool.backup.targets import open_target
    from repo_tool.ops.restore import restore as do_restore

    destination = _destination(ctx, new_repo)
    if expect_sha256 is not None and (
        len(expect_sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in expect_sha256)
    ):
        raise ConfigurationError(field_error("--expect-sha256", expect_sha256, _SHA256_FORM))
    target = open_target(source, endpoint_url=endpoint_url, option="--from")
    report = do_restore(
        target, destination, manifest_name=manifest_name, expect_sha256=expect_sha256
    )
    _err(
        f"restored {destination} from {target.url} {report.manifest} ({report.created}): "
        f"{report.files} file(s), {report.bytes} bytes, every SHA-256 checked; event "
        f"{report.event_seq}"
    )
    if report.keys_to_restore:
        _err("the configuration names these private key files, not in any backup: put them back")
        for key in report.keys_to_restore:
            _err(f"  {key}")
    _err(f"next: cfl-repo --repo {destination} publish")
    if as_json:
        _emit_json(report.to_dict())


def _destination(ctx: click.Context, new_repo: Path | None) -> Path:
    """``restore --repo``, else the global ``--repo`` (not CFL_REPO: that names a live one)."""
    root = ctx.find_root()
    given = root.obj.get("repo")
    explicit = root.get_parameter_source("repo") == click.core.ParameterSource.COMMANDLINE
    if new_repo is not None:
        if explicit and given is not None and Path(given) != new_repo:
            raise ConfigurationError(
                field_error("--repo", f"{given} and {new_repo}", "one new repository folder")
            )
        return new_repo
    if explicit and given is not None:
        return Path(given)
    raise ConfigurationError(
        field_error("--repo", None, "the new repository folder: restore --from SRC --repo NEWDIR")
    )
