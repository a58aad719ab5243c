"""`cfl log` and `cfl witness`: audit the library's transparency log, choose the witnesses a home
requires, and run a witness that cosigns the log's checkpoints (docs/transparency.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from client.cli.output import emit_json, home_of, stderr, utc_now
from client.trust.home import normalise_repository_url
from metadata_templates.errors import ConfigurationError, VerificationError


def _plain_fetch(url: str) -> Any:
    from client.log.transparency import CountingFetch
    from client.trust.transport import CflFetcher, TransportSettings

    return CountingFetch(CflFetcher(TransportSettings()), normalise_repository_url(url))


def _vkeys(values: tuple[str, ...], option: str) -> tuple[Any, ...]:
    from metadata_templates.tlog.note import parse_vkey

    try:
        return tuple(parse_vkey(v) for v in values)
    except ValueError as e:
        raise ConfigurationError(f"{option}: {e}") from e


@click.group("log")
def log_group() -> None:
    """Audit the library's transparency log, or set which witnesses this home requires.

    See docs/transparency.md.
    """


@log_group.command("verify")
@click.argument("url")
@click.option(
    "--vkey", help="The log's vkey (`cfl-repo log key`); default: the one the timestamp binds."
)
@click.option(
    "--previous",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A checkpoint you kept earlier: prove the log still contains it unchanged.",
)
@click.option(
    "--witness",
    "witnesses",
    multiple=True,
    metavar="VKEY",
    help="Report cosignatures by these witnesses.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the audit report on stdout.")
def log_verify(
    url: str, vkey: str | None, previous: Path | None, witnesses: tuple[str, ...], as_json: bool
) -> None:
    """Audit the log at URL with no keys and no home: fetch every entry and tile, recompute the tree,
    check the checkpoint's signature, and check every image, withdrawal and CPL in the current TUF
    metadata has its event in the log. Exit 1 when anything is missing or inconsistent.

    \b
    cfl log verify https://cfl.example/ --vkey "$(cat log.vkey)"
    cfl log verify https://cfl.example/ --previous checkpoint-kept-last-month.txt --json
    """
    from client.log.audit import audit

    fetch = _plain_fetch(url)
    verifier = _vkeys((vkey,), "--vkey")[0] if vkey else None
    progress = None
    if sys.stderr.isatty() and not as_json:
        from rich.progress import Progress

        bar = Progress(console=stderr, transient=True)
        task = bar.add_task("log", total=None)
        bar.start()

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

    try:
        report = audit(
            fetch,
            vkey=verifier,
            previous=previous.read_bytes() if previous else None,
            witnesses=_vkeys(witnesses, "--witness"),
            progress=progress,
        )
    finally:
        if progress is not None:
            bar.stop()
    if as_json:
        emit_json(report.to_dict())
    for problem in report.problems:
        stderr.print(f"problem: {problem}")
    summary = (
        f"log {report.origin}: {report.size} entries, root {report.root_hash[:16]}...; "
        f"{report.images_checked} image(s), {report.withdrawals_checked} withdrawal(s) and "
        f"{report.index_files_checked} cfl-index file(s) checked; "
        f"{fetch.received} bytes fetched"
    )
    if report.problems:
        raise VerificationError(f"{summary}; {len(report.problems)} problem(s) found")
    click.echo(f"verified: {summary}", err=True)


@log_group.command("witnesses")
@click.option(
    "--witness",
    "witnesses",
    multiple=True,
    metavar="VKEY",
    help="A witness's cosignature vkey. Repeat.",
)
@click.option(
    "--threshold", type=click.IntRange(0), required=True, help="How many of them must cosign."
)
@click.pass_context
def log_witnesses(ctx: click.Context, witnesses: tuple[str, ...], threshold: int) -> None:
    """Require THRESHOLD cosignatures from the named witnesses on every checkpoint this home trusts
    (0 turns the requirement off). Takes effect at the next refresh.

    \b
    cfl --home H log witnesses --witness "$(cat w1.vkey)" --witness "$(cat w2.vkey)" --threshold 1
    """
    from client.log.transparency import HomeLog, WitnessPolicy

    home = home_of(ctx)
    with home.lock():
        HomeLog(home.path).set_policy(WitnessPolicy(_vkeys(witnesses, "--witness"), threshold))
    stderr.print(
        f"every refresh now requires {threshold} of {len(witnesses)} witness cosignature(s)"
    )


@click.group("witness")
def witness_group() -> None:
    """Witness a library's transparency log: verify consistency, then cosign (C2SP cosignature/v1)."""


@witness_group.command("init")
@click.option(
    "--state",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The witness's state folder.",
)
@click.option("--name", required=True, help="The witness's key name, e.g. witness.example.org/cfl.")
@click.option("--log-vkey", required=True, help="The log's vkey (`cfl-repo log key`).")
def witness_init(state: Path, name: str, log_vkey: str) -> None:
    """Create a witness key and print its cosignature vkey on stdout (give it to suppliers)."""
    from client.log.witness import Witness

    verifier = Witness(state).init(name, log_vkey)
    click.echo(verifier.vkey)
    stderr.print(f"witness {name} created in {state}")


@witness_group.command("cosign")
@click.argument("url")
@click.option(
    "--state",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The witness's state folder.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the cosigned checkpoint here (default stdout).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def witness_cosign(url: str, state: Path, out: Path | None, as_json: bool) -> None:
    """Verify the log at URL is consistent with the last checkpoint this witness cosigned, then
    cosign the new one. The provider adds it with `cfl-repo log add-cosignatures`.

    \b
    cfl witness cosign https://cfl.example/ --state W --out cosigned.txt
    """
    from client.log.witness import Witness

    fetch = _plain_fetch(url)
    result = Witness(state).cosign(fetch, now=utc_now())
    if out is not None:
        from metadata_templates.atomic import atomic_write_bytes

        atomic_write_bytes(out, result.cosigned)
    if as_json:
        emit_json(
            {
                "origin": result.checkpoint.origin,
                "size": result.checkpoint.size,
                "previous_size": result.previous_size,
                "out": str(out) if out else None,
                "bytes_fetched": fetch.received,
            }
        )
    elif out is None:
        click.echo(result.cosigned.decode(), nl=False)
    stderr.print(
        f"cosigned {result.checkpoint.origin} at size {result.checkpoint.size} "
        f"(consistent with {result.previous_size if result.previous_size is not None else 'nothing yet'}; "
        f"{fetch.received} bytes fetched)"
    )
