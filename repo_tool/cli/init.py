"""`cfl-repo init` and `cfl-repo rotate-keys`: the repository's top-level keys.

`init` creates the configuration, the top-level keys and the first root and targets; `rotate-keys`
changes a top-level role's keys through a new root version. Registered on the root group by
repo_tool/cli/main.py; parse, call the library, render.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from metadata_templates.errors import ConfigurationError
from metadata_templates.policy import DEFAULT_POLICY
from repo_tool.cli.console import err as _err
from repo_tool.cli.console import lock_policy as _lock_policy
from repo_tool.cli.console import open_repo as _open_repo
from repo_tool.cli.console import prompt_secret as _prompt_secret
from repo_tool.cli.console import repo_path as _repo_path
from repo_tool.cli.console import utc_now
from repo_tool.signing.keys import SignerRef, public_key_from_pem
from repo_tool.state.config import SIGNED_ROLES, TOP_LEVEL_ROLES, RepoConfig

_now = utc_now


@click.command()
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
    if dev_keys and root_threshold > root_keys:
        raise ConfigurationError(
            f"--root-threshold: found {root_threshold}, expected at most --root-keys ({root_keys})"
        )

    def build() -> RepoConfig:
        # Run by `initialise` under the repository lock, so two inits at once never write each
        # other's keys: the second waits (or is refused) and then finds a repository.
        if dev_keys:
            signers = development_signers(path, root_keys)
            _err(
                f"warning: DEVELOPMENT KEYS written unencrypted to {path / 'keys'} - never use them for a "
                "real library"
            )
        else:
            signers = _production_signers(keys)
        config = configuration(
            signers, root_threshold=root_threshold, image_size_cap=image_size_cap, dev_keys=dev_keys
        )
        # The transparency log's note key (repo_tool/tlog/provider_log.py): generated, or the PEM given.
        return replace(
            config,
            log=log_key_config(
                path,
                dev_keys=dev_keys,
                origin=log_origin,
                pem=log_key,
                secrets_handler=_prompt_secret,
            ),
        )

    repo = initialise(
        path, build, now=_now(), secrets_handler=_prompt_secret, lock=_lock_policy(ctx)
    )
    _err(
        f"initialised repository {path} (root {root_threshold} of {len(repo.config.signers['root'])} keys)"
    )
    _err(f"next: cfl-repo --repo {path} cpl import CPL.csv")


def _production_signers(keys: tuple[tuple[str, str, str], ...]) -> dict[str, list[SignerRef]]:
    signers: dict[str, list[SignerRef]] = {role: [] for role in SIGNED_ROLES}
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
    return signers


@click.command("rotate-keys")
@click.argument("role", metavar="ROLE", type=click.Choice(list(TOP_LEVEL_ROLES)))
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

    ROLE is root, targets, snapshot or timestamp.

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
