"""``python -m client.conformance``: the client under test for tuf-conformance (CLIENT-CLI.md).

Independent TUF conformance suites drive a client through three commands and read only its exit
code (0 or 1, nothing else), the files it keeps and the requests it makes::

    python -m client.conformance --metadata-dir D init ROOT
    python -m client.conformance --metadata-dir D --metadata-url U refresh
    python -m client.conformance --metadata-dir D --metadata-url U --target-name P \\
        --target-base-url T --target-dir O download

It runs the project's own code, not plain ngclient: the session (client/trust/session.py, the one module
that talks to ngclient), the transport (client/trust/transport.py, with its size cap and deadline) and the
same root check and atomic writes as ``cfl init``. The trusted root given at ``init`` is kept beside
the metadata (as ``cfl`` keeps ``bootstrap-root.json``) and passed as ``bootstrap=`` on every run.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path

import click

from client.trust.home import check_root
from client.trust.session import Session, SessionPaths
from client.trust.transport import CflFetcher
from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.errors import EXIT_FAILURE, EXIT_OK, CflError, ConfigurationError

logger = logging.getLogger(__name__)

# Not ``*.json``: the suite reads every ``*.json`` in the metadata folder as trusted metadata.
ANCHOR_NAME = "trust-anchor.root"


def initialise(metadata_dir: Path, trusted_root: bytes) -> None:
    """Check the trusted root as ``cfl init`` does and keep it as the anchor for later runs.

    Raises:
        RejectedInputError: the root is not root metadata signed by a threshold of its own keys.
        UnavailableError: the folder cannot be written.
    """
    check_root(trusted_root, "TRUSTED_ROOT")
    metadata_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(metadata_dir / ANCHOR_NAME, trusted_root)


def _session(
    metadata_dir: Path, metadata_url: str, download_dir: Path, targets_url: str | None
) -> Session:
    try:
        anchor = (metadata_dir / ANCHOR_NAME).read_bytes()
    except OSError as e:
        raise ConfigurationError(
            f"{metadata_dir / ANCHOR_NAME}: no trusted root ({e.strerror or e})",
            hint="run init with a valid trusted root first",
        ) from e
    return Session(
        SessionPaths(metadata_dir, download_dir),
        metadata_url,
        CflFetcher(),
        bootstrap_root=anchor,
        metadata_url=metadata_url,
        targets_url=targets_url,
    )


def refresh(metadata_dir: Path, metadata_url: str) -> None:
    """Update the trusted top-level metadata by the TUF client workflow.

    Raises:
        CflError: no trusted root, or the refresh failed (verification, network).
    """
    with tempfile.TemporaryDirectory() as unused_downloads:
        _session(metadata_dir, metadata_url, Path(unused_downloads), None).refresh()


def download(
    metadata_dir: Path,
    metadata_url: str,
    target_names: Sequence[str],
    targets_url: str,
    target_dir: Path,
) -> None:
    """Refresh, then download each target in order into ``target_dir``, stopping at the first
    failure; a target already there with the right hashes is not fetched again.

    Raises:
        CflError: no trusted root, a target is unknown, or verification or download failed.
    """
    session = _session(metadata_dir, metadata_url, target_dir, targets_url)
    session.refresh()
    for name in target_names:
        session.download(name)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--metadata-dir", required=True, type=click.Path(path_type=Path))
@click.option("--metadata-url", help="Base URL of the repository's metadata.")
@click.option("--target-name", "target_names", multiple=True, help="Target path (repeatable).")
@click.option("--target-base-url", help="Base URL of the repository's targets.")
@click.option("--target-dir", type=click.Path(path_type=Path), help="Where downloads go.")
@click.option("-v", "--verbose", count=True, help="Log ngclient's and our steps on stderr.")
@click.pass_context
def main_group(
    ctx: click.Context,
    metadata_dir: Path,
    metadata_url: str | None,
    target_names: tuple[str, ...],
    target_base_url: str | None,
    target_dir: Path | None,
    verbose: int,
) -> None:
    """The tuf-conformance client-under-test protocol (CLIENT-CLI.md) over cfl's own code."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING)
    ctx.obj = {
        "metadata_dir": metadata_dir,
        "metadata_url": metadata_url,
        "target_names": target_names,
        "target_base_url": target_base_url,
        "target_dir": target_dir,
    }


def _required(ctx: click.Context, name: str) -> str:
    value = ctx.obj[name]
    if not value:
        raise ConfigurationError(f"--{name.replace('_', '-')}: missing, expected a value")
    return str(value)


@main_group.command("init")
@click.argument("trusted_root", type=click.Path(path_type=Path))
@click.pass_context
def init_command(ctx: click.Context, trusted_root: Path) -> None:
    """Keep TRUSTED_ROOT as the trust anchor (no request is made)."""
    initialise(ctx.obj["metadata_dir"], trusted_root.read_bytes())


@main_group.command("refresh")
@click.pass_context
def refresh_command(ctx: click.Context) -> None:
    """Update the trusted top-level metadata."""
    refresh(ctx.obj["metadata_dir"], _required(ctx, "metadata_url"))


@main_group.command("download")
@click.pass_context
def download_command(ctx: click.Context) -> None:
    """Download every --target-name, in order, into --target-dir."""
    if not ctx.obj["target_names"]:
        raise ConfigurationError("--target-name: missing, expected at least one")
    download(
        ctx.obj["metadata_dir"],
        _required(ctx, "metadata_url"),
        ctx.obj["target_names"],
        _required(ctx, "target_base_url"),
        Path(_required(ctx, "target_dir")),
    )


def run(argv: Sequence[str]) -> int:
    """Run one protocol command; 0 if it succeeded fully, 1 otherwise (the protocol knows no 2).

    Every failure, a usage mistake included, is one ``error:`` line on stderr; an unexpected
    exception also prints its traceback there, since the suite shows stderr when a test fails.
    """
    try:
        main_group.main(list(argv), prog_name="client.cli.conformance", standalone_mode=False)
    except CflError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except (click.ClickException, click.exceptions.Abort) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except click.exceptions.Exit as e:
        return EXIT_OK if e.exit_code == 0 else EXIT_FAILURE
    except Exception as e:  # the protocol allows only 0 and 1; keep the details for debugging
        traceback.print_exc()
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def main() -> None:
    """``python -m client.conformance`` entry point."""
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
