"""`cfl-repo publish` and `cfl-repo refresh`: writing the static tree (and the website).

`publish` writes the staged state to a folder, or to object storage through
repo_tool/cli/publish_s3.py; `refresh` re-signs what is near expiry and publishes. Registered on
the root group by repo_tool/cli/main.py; parse, call the library, render.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from repo_tool.cli.console import emit_json as _emit_json
from repo_tool.cli.console import err as _err
from repo_tool.cli.console import open_repo as _open_repo
from repo_tool.cli.console import repo_path, utc_now

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime, timedelta

    from repo_tool.publish.folder import PublishReport
    from repo_tool.state.repository import Repository

_now = utc_now


# publish and refresh both publish, so both delete superseded versions: the same option, or an
# hourly refresh would delete at the default day what publish was told to keep.
_keep_superseded = click.option(
    "--keep-superseded",
    metavar="24h|7d|forever",
    default="1d",
    show_default=True,
    help="How long a snapshot or role version stays after a newer one is served (a client "
    "mid-refresh may still read it); then the next publish deletes it. Root versions, images "
    "and the log always stay. Give refresh the same value as publish.",
)


@click.command()
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
@click.option(
    "--object-lock-days",
    type=click.IntRange(1, 36500),
    metavar="N",
    help="With --to: put blobs, root versions and full log tiles with S3 Object Lock in "
    "compliance mode for N days (the bucket must have Object Lock enabled).",
)
@_keep_superseded
@click.option("--json", "as_json", is_flag=True, help="Print what was written on stdout.")
@click.pass_context
def publish(
    ctx: click.Context,
    out: Path | None,
    no_site: bool,
    to_url: str | None,
    endpoint_url: str | None,
    object_lock_days: int | None,
    keep_superseded: str,
    as_json: bool,
) -> None:
    """Write the static tree: blobs, manufacturer roles, targets, snapshot, timestamp.json last.

    Safe to re-run and safe to interrupt: clients see the previous library until timestamp.json lands.

    \b
    The transparency log goes out before timestamp.json: the tiles and log/cfl-index files of the
    events committed since the last publish, then the log/checkpoint the new timestamp binds.
    Superseded partial tiles (log/tile/.../<N>.p/<W>) are deleted, in R/state/log at once and in
    OUT one publish later, for a supplier who read the previous checkpoint a moment before (with
    --to, only the local mirror is pruned). See docs/transparency.md.

    \b
    Superseded metadata: a snapshot or role version that a newer one replaced more than
    --keep-superseded ago (default a day) is deleted by the next publish; no client reads it
    (--json: "superseded_deleted"). Root versions, images and the log are never deleted. See
    docs/hosting.md, "What a publish deletes".

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

    \b
    With --object-lock-days N as well, every immutable object is locked (compliance mode, N days
    from now) so that nobody, the provider included, can delete it; check it with
    `cfl-repo verify-bucket`. Example:
      cfl-repo --repo R publish --to s3://cfl-firmware/library --object-lock-days 3650
    See docs/hosting.md, "Immutable storage (S3 Object Lock)".

    \b
    It holds the repository lock and OUT/.cfl-publish.lock (with --to: the prefix's lease
    object, which keeps publishers on two machines apart) from the first read to the website,
    and never replaces the destination's timestamp.json with an older one. From cron:
      cfl-repo --wait 900 --repo R publish --to s3://cfl-lib/prod
    See docs/operator.md, "Two jobs at once".
    """
    from repo_tool.publish.superseded import parse_grace

    keep = parse_grace(keep_superseded)
    # --- S3 publishing hook (scale branch): everything lives in repo_tool/cli/publish_s3.py.
    if to_url is not None or endpoint_url is not None or object_lock_days is not None:
        from repo_tool.cli.publish_s3 import run_publish_to_s3

        run_publish_to_s3(
            lambda: _open_repo(ctx),
            to_url=to_url,
            endpoint_url=endpoint_url,
            object_lock_days=object_lock_days,
            out=out,
            no_site=no_site,
            as_json=as_json,
            now=_now(),
            keep_superseded=keep,
        )
        return
    # --- end of the S3 publishing hook

    # --- nothing new (issue 26): replay the last outcome when nothing it read has changed
    from repo_tool.publish import unchanged

    repo_dir = repo_path(ctx)
    now = _now()
    replayed = unchanged.replay(repo_dir, out or repo_dir / "public", site=not no_site, now=now)
    if replayed is not None:
        _replay(replayed, as_json)
        return
    # --- end of nothing new
    repo = _open_repo(ctx)
    target = out or repo.default_out

    def published(report: PublishReport) -> None:
        _err(_published_line(report.to_dict()))

    with repo.locked():  # the record below describes this publish's tree, not a later one's
        doc = _publish_and_record(repo, target, repo_dir, out, no_site, now, published, keep)
    if as_json:
        _emit_json(doc)


def _publish_and_record(
    repo: Repository,
    target: Path,
    repo_dir: Path,
    out: Path | None,
    no_site: bool,
    now: datetime,
    published: Callable[[PublishReport], None],
    keep: timedelta | None,
) -> dict[str, Any]:
    from repo_tool.ops.publish import publish as do_publish
    from repo_tool.ops.publish import publish_with_site
    from repo_tool.publish import unchanged

    if no_site:
        report = do_publish(repo, target, now=now, keep_superseded=keep)
        published(report)
        doc = report.to_dict()
    else:
        # The site is built under the same locks as the tree (issue 25; the hint: issue 14).
        done = publish_with_site(
            repo, target, now=now, on_published=published, keep_superseded=keep
        )
        doc = done.report.to_dict()
        site = done.site
        _err(f"website: {site.site_dir}/index.html")
        doc["site"] = str(site.site_dir)
        doc["site_build"] = {
            "appended": site.result.appended,
            "told_new_images": site.hinted,
            "changed_files": len(site.result.changed),
            "verify_memo": site.memo.to_dict() if site.memo else None,
        }
    # A pilot awaiting its date changes the site with time alone: nothing may be replayed then.
    valid_until = None if repo.head.pilots else unchanged.served_until(target)
    unchanged.record(
        repo_dir, out or repo_dir / "public", site=not no_site, outcome=doc, valid_until=valid_until
    )
    return doc


def _published_line(doc: dict[str, Any]) -> str:
    written = doc["written"]
    assert isinstance(written, dict)
    deleted = doc.get("superseded_deleted") or 0
    return (
        f"published to {doc['out']}: snapshot {doc['snapshot_version']}, "
        f"timestamp {doc['timestamp_version']}; wrote {sum(written.values())} file(s)"
        + (f", deleted {deleted} superseded metadata version(s)" if deleted else "")
    )


def _replay(doc: dict[str, Any], as_json: bool) -> None:
    """What a publish that finds nothing to do prints: the lines a full one would, but for the
    deletes (a replay deletes nothing; the next publish that writes does)."""
    if "superseded_deleted" in doc:
        doc = doc | {"superseded_deleted": 0}
    _err(_published_line(doc))
    if "site" in doc:
        _err(f"website: {doc['site']}/index.html")
    if as_json:
        _emit_json(doc)


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Published tree (default R/public).",
)
@click.option("--force", is_flag=True, help="Re-sign even if nothing is close to expiry.")
@_keep_superseded
@click.pass_context
def refresh(ctx: click.Context, out: Path | None, force: bool, keep_superseded: str) -> None:
    """Re-sign roles the provider holds that are past half their validity, then publish. Run from cron
    (e.g. hourly): timestamp lives 1 day, snapshot 7, targets 90 by default.

    \b
    Pilot images whose release date has come (and that are not held) are released in the same run:
    recorded in cfl/releases.json and the transparency log, and the website rebuilt. Then
    regenerate the host configuration so the host serves them to everyone:
      cfl-repo --repo R refresh && cfl-repo --repo R host nginx ... --out /etc/cfl/nginx.conf \\
          && nginx -s reload -p /var/lib/cfl-nginx -c /etc/cfl/nginx.conf"""
    from repo_tool.ops.publish import publish as do_publish
    from repo_tool.ops.refresh import refresh as do_refresh
    from repo_tool.publish.superseded import parse_grace
    from repo_tool.state.pilots import releases

    keep = parse_grace(keep_superseded)  # before anything is signed: a bad value changes nothing
    repo = _open_repo(ctx)
    now = _now()
    target = out or repo.default_out
    with repo.locked():  # one hold: nothing lands between the re-signing, its publish and its site
        recorded = len(releases(repo).events)
        resigned = do_refresh(repo, now=now, force=force)
        released = releases(repo).events[recorded:]  # pilots whose release date came (issue 22)
        report = do_publish(repo, target, now=now, keep_superseded=keep)
        site_rebuilt = _rebuild_site_for_releases(repo, target, now)
    _err(
        f"re-signed: {', '.join(resigned) or 'nothing was due'}; timestamp {report.timestamp_version}"
    )
    for event in released:
        _err(f"released {event.target}: {event.reason}")
    if site_rebuilt:
        _err(f"website: {target / 'site'}/index.html")
    if released:
        _err("regenerate the host configuration (`cfl-repo host nginx ...`) and `nginx -s reload`")


def _rebuild_site_for_releases(repo: Repository, target: Path, now: datetime) -> bool:
    """The site lists released images only: rebuild it as `publish` would when a release was
    recorded (and again on the next run should this one be killed before the mark is written)."""
    from repo_tool.publish import site_step

    document = repo.head.releases_sha256
    if document is None or not site_step.site_behind_releases(target / "site", document):
        return False
    from repo_tool.verify.memo import VerifyMemo

    site_step.build_published_site(
        target,
        repo.metadata_bytes("root", 1),
        now=now,
        hint=None,
        memo=VerifyMemo.of_repository(repo.path),
    )
    site_step.mark_site_releases(target / "site", document)
    return True
