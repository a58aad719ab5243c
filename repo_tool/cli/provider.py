"""`cfl-repo provider ...`: the online ``cfl-provider`` delegation (issue 13). Registered on the main
`cfl-repo` group by repo_tool/cli/main.py; parse, call the library (repo_tool/ops/provider.py), render.
"""

from __future__ import annotations

from pathlib import Path

import click

from metadata_templates.errors import ConfigurationError
from metadata_templates.naming import PROVIDER_ROLE
from repo_tool.cli.console import emit_json as _emit_json
from repo_tool.cli.console import err as _err
from repo_tool.cli.console import open_repo as _open_repo
from repo_tool.cli.console import utc_now
from repo_tool.cli.options import (
    _proposal_or_done,
    _public_keys,
    manufacturer_signer_options,
    proposal_option,
)
from repo_tool.ops.provider import ProviderChange
from repo_tool.signing.keys import DEV_KEY_WARNING, SignerRef, write_keypair

_now = utc_now


@click.group("provider")
def provider() -> None:
    """The online cfl-provider role: it signs every cfl/* document (CPL, withdrawals, supplier
    registry, suspensions, release-note grants), so routine work never needs the offline targets
    key. Targets delegates it terminating, for cfl/ paths only, so its key cannot reach an image.

    \b
    A repository made by `cfl-repo init` has it from the start; an older one adopts it once:
      cfl-repo --repo R provider adopt --key provider.pub.pem hsm:... [--proposal targets-v9.json]
    A stolen online key is replaced through targets (no root change):
      cfl-repo --repo R provider rotate-key --add new.pub.pem --uri hsm:... --remove 3f2a9c1d \\
          --proposal targets-v10.json
    """


def _outcome(
    change: ProviderChange,
    out: Path | None,
    as_json: bool,
    done: str,
    already: str = f"{PROVIDER_ROLE} is delegated already",
) -> None:
    if change.already:
        if as_json:
            _emit_json({"done": "already", **change.to_dict()})
        _err(f"{already} (version {change.provider_version}); nothing to do")
        return
    _proposal_or_done(change.proposal, out, as_json, done)


@provider.command("adopt")
@click.option(
    "--key",
    "keys",
    nargs=2,
    multiple=True,
    metavar="PUB.pem URI",
    help="An online cfl-provider key: its public PEM and the signer URI the repository signs "
    "with (hsm:..., encfile:PATH, awskms:...). Repeat for more keys.",
)
@click.option(
    "--dev-key",
    is_flag=True,
    help="Development repositories only (init --dev-keys): generate an UNENCRYPTED key under R/keys.",
)
@click.option(
    "--threshold", type=click.IntRange(1), default=1, show_default=True, help="Signatures needed."
)
@proposal_option
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON on stdout.")
@click.pass_context
def adopt(
    ctx: click.Context,
    keys: tuple[tuple[str, str], ...],
    dev_key: bool,
    threshold: int,
    proposal_out: Path | None,
    as_json: bool,
) -> None:
    """Move an existing repository's cfl/* documents under a new online cfl-provider role.

    In one commit, targets delegates cfl/* to cfl-provider and every cfl/* target moves, byte for
    byte, into cfl-provider version 1 (event `provider-adopt`). With the targets key offline,
    --proposal writes the targets ceremony that does it; `ceremony finish` then stages both. From
    then on `cpl import`, `withdraw`, `supplier add/revoke`, `manufacturer suspend` and
    `notes grant` re-sign cfl-provider only, and `refresh` keeps it fresh (30 days).

    \b
      cfl-repo --repo R provider adopt --key provider.pub.pem hsm:          # targets key online
      cfl-repo --repo R provider adopt --key provider.pub.pem encfile:/etc/cfl/provider.pem \\
          --proposal targets-v9.json                                        # targets key offline
      cfl-repo --repo R provider adopt --dev-key                            # development only
    """
    from repo_tool.ops.provider import adopt as do_adopt

    if dev_key == bool(keys):
        raise ConfigurationError("choose exactly one of --dev-key or --key PUB.pem URI")
    repo = _open_repo(ctx)
    with repo.locked():
        refs: list[SignerRef] = []
        if dev_key and not repo.provider_delegated:
            if not repo.config.dev_keys:
                raise ConfigurationError(
                    f"--dev-key: found a repository made without development keys "
                    f"(dev_keys={repo.config.dev_keys}), expected `init --dev-keys`",
                    hint="give the online key: --key PUB.pem URI",
                )
            key, _uri = write_keypair(
                repo.path / "keys" / f"DEV-ONLY-{PROVIDER_ROLE}-1.pem",
                label=DEV_KEY_WARNING,
                overwrite=True,  # nothing trusts it yet: the delegation does not exist
            )
            refs.append(SignerRef(key, f"file2:keys/DEV-ONLY-{PROVIDER_ROLE}-1.pem"))
        for pem, uri in keys:
            public = _public_keys((Path(pem),), "--key")[0]
            refs.append(SignerRef(public, uri))
        change = do_adopt(repo, refs, threshold, now=_now(), ceremony=proposal_out is not None)
    if not change.already and change.proposal is None:
        _err(
            f"moved {len(change.moved)} document(s) into {PROVIDER_ROLE} v{change.provider_version}"
        )
    _outcome(change, proposal_out, as_json, f"adopted {PROVIDER_ROLE}")


@provider.command("rotate-key")
@click.option(
    "--add",
    "added",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PUB.pem",
    help="A new cfl-provider public key (repeat).",
)
@click.option(
    "--uri",
    "uris",
    multiple=True,
    metavar="URI",
    help="The signer URI of each --add, in order (hsm:..., encfile:PATH).",
)
@click.option(
    "--remove", "removed", multiple=True, metavar="KEYID", help="A key ID (or prefix) to revoke."
)
@click.option("--threshold", type=click.IntRange(1), help="The new threshold (default: unchanged).")
@proposal_option
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON on stdout.")
@click.pass_context
def rotate_key(
    ctx: click.Context,
    added: tuple[Path, ...],
    uris: tuple[str, ...],
    removed: tuple[str, ...],
    threshold: int | None,
    proposal_out: Path | None,
    as_json: bool,
) -> None:
    """Replace cfl-provider keys (a stolen online key): a new targets delegation, no root change.

    The commit that makes the new targets current also stages cfl-provider re-signed by the new
    keys, so clients follow at their next refresh and reject anything the old key signs.

    \b
      cfl-repo --repo R provider rotate-key --add new.pub.pem --uri hsm: --remove 3f2a9c1d \\
          --proposal targets-v10.json
    """
    from repo_tool.ops.provider import rotate_key as do_rotate

    if len(uris) != len(added):
        raise ConfigurationError(
            f"--uri: found {len(uris)}, expected one per --add ({len(added)}): the repository "
            "signs cfl-provider with its keys online"
        )
    keys = _public_keys(added, "--add")
    refs = [SignerRef(k, u) for k, u in zip(keys, uris, strict=True)]
    repo = _open_repo(ctx)
    with repo.locked():
        change = do_rotate(
            repo, refs, removed, threshold, now=_now(), ceremony=proposal_out is not None
        )
    _outcome(
        change,
        proposal_out,
        as_json,
        f"rotated the keys of {PROVIDER_ROLE}",
        already=f"{PROVIDER_ROLE} has these keys already: {[k[:8] for k in change.keyids]}",
    )


# ------------------------------------------------------------------------------------ enrolment


@click.command("enrol")
@click.option("--manufacturer", "manufacturer_id", required=True, help="Your manufacturer ID.")
@manufacturer_signer_options(
    key_help="Private key PEM (repeat for a threshold): the keys you registered with the provider.",
)
@click.option(
    "--expires-in",
    type=click.IntRange(1, 36500),
    default=365,
    show_default=True,
    help="Days the empty role is valid (the provider admits 30 to 730 by default).",
)
@click.option(
    "--out",
    "out_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Enrolment bundle to write (the signed role, JSON); hand it to the provider.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a summary as JSON on stdout.")
def enrol_bundle(
    manufacturer_id: str,
    key_files: tuple[Path, ...],
    signer_uris: tuple[str, ...],
    signer_pubkeys: tuple[Path, ...],
    expires_in: int,
    out_file: Path,
    as_json: bool,
) -> None:
    """Manufacturer: sign your empty role version 1, the enrolment bundle.

    The provider delegates your prefix with this role as its first version (a delegation never
    points at a role with no metadata), so your first deposit is version 2 and needs no offline
    provider key. Sign with the keys you registered (`manufacturer add ... --key PUB.pem`).

    \b
      cfl-repo enrol --manufacturer 121D --key mfr-121D.pem --out enrol-121D.json
    """
    import hashlib
    from datetime import timedelta

    from metadata_templates import identifiers
    from repo_tool.cli.options import _write_new, manufacturer_signers
    from repo_tool.gateway.enrolment import build_enrolment

    try:
        mfr = identifiers.manufacturer_id(manufacturer_id, "--manufacturer")
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    signers = manufacturer_signers(key_files, signer_uris, signer_pubkeys)
    data = build_enrolment(signers, now=_now(), expires_in=timedelta(days=expires_in))
    _write_new(out_file, data, "--out")
    sha = hashlib.sha256(data).hexdigest()
    if as_json:
        _emit_json({"manufacturer": mfr, "bundle": str(out_file), "sha256": sha})
    _err(f"wrote {out_file}: the enrolment of {mfr} (sha256 {sha[:16]}); send it to the provider")


@click.command("enrol")
@click.argument("manufacturer_id")
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@proposal_option
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON on stdout.")
@click.pass_context
def enrol_manufacturer(
    ctx: click.Context,
    manufacturer_id: str,
    bundle: Path,
    proposal_out: Path | None,
    as_json: bool,
) -> None:
    """Provider: delegate to a registered manufacturer, with its enrolment BUNDLE as role version 1.

    The bundle is checked as strictly as a deposit: signed by the registered keys up to the
    threshold, no targets, no delegations, version 1, expiry within policy. With the targets key
    offline, --proposal writes the targets ceremony that carries it; `ceremony finish` stages the
    delegation and the role together.

    \b
      cfl-repo --repo R manufacturer add 121D --name "Maker" --key mfr-121D.pub.pem
      cfl-repo --repo R manufacturer enrol 121D enrol-121D.json --proposal targets-v4.json
    """
    from metadata_templates import identifiers
    from repo_tool.cli.console import read_input
    from repo_tool.ops.enrol import enrol

    try:
        mfr = identifiers.manufacturer_id(manufacturer_id, "MANUFACTURER_ID")
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    repo = _open_repo(ctx)
    # Capped as check_enrolment caps it: an endless file is refused, not read whole.
    data = read_input(bundle, "BUNDLE", limit=repo.config.role_size_cap)
    with repo.locked():
        outcome = enrol(repo, mfr, data, now=_now(), ceremony=proposal_out is not None)
    if outcome.already:
        if as_json:
            _emit_json({"done": "already", **outcome.to_dict()})
        _err(f"{outcome.role} is enrolled already with this bundle; nothing to do")
        return
    _proposal_or_done(
        outcome.proposal, proposal_out, as_json, f"enrolled {mfr} ({outcome.role} v1)"
    )
