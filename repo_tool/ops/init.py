"""Create a repository: its configuration, top-level keys (development keys only when asked) and
version 1 of root and targets."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from securesystemslib.signer import SecretsHandler
from tuf.api.metadata import Metadata, Root, Targets

from metadata_templates.custom import format_timestamp
from metadata_templates.errors import ConfigurationError
from metadata_templates.locking import LockPolicy
from metadata_templates.naming import PROVIDER_ROLE, SPEC_VERSION
from metadata_templates.policy import DEFAULT_POLICY, PROVIDER_TARGETS_EXPIRY_DAYS
from repo_tool.output_paths import make_dir
from repo_tool.signing.keys import DEV_KEY_WARNING, SignerRef, write_keypair
from repo_tool.signing.provider_role import delegate_provider, first_provider_role
from repo_tool.state.config import SIGNED_ROLES, TOP_LEVEL_ROLES, RepoConfig
from repo_tool.state.head import Head
from repo_tool.state.lock import RepositoryLock
from repo_tool.state.repository import Repository
from repo_tool.tlog.provider_log import LogKeyConfig, existing_log_key, new_log_key


def refuse_initialised(path: Path) -> None:
    """Refuse, before any key is written, to initialise over a repository or under a file.

    The committed head decides, not the configuration: an init killed before its commit is no
    repository yet, and running it again completes it.

    Raises:
        ConfigurationError: ``path`` is initialised already, or is (under) a regular file.
    """
    unsafe = sorted({c for c in str(path.resolve()) if c in "#?%" or not c.isprintable()})
    if unsafe:
        # Key files are named by signer URIs (file2:<path>): '#', '?' and '%' would cut or
        # re-read the path, and a control character has no place in one.
        raise ConfigurationError(
            f"--repo {path}: found {''.join(unsafe)!r} in the path, expected a path without "
            "'#', '?', '%' or control characters (signer URIs name the key files by path)"
        )
    if (path / "state" / "head.json").exists():
        raise ConfigurationError(
            f"--repo {path}: already initialised (it holds a repository); refusing to "
            "re-initialise it",
            hint=f"use it as it is (cfl-repo --repo {path} status), or choose a new folder",
        )
    make_dir(path, field="--repo")


def development_signers(path: Path, root_keys: int) -> dict[str, list[SignerRef]]:
    """Generate unencrypted development keys under ``path/keys`` (one per role, ``root_keys`` for root).

    No head exists yet, so no key here can have signed anything anyone trusts: a key left by an init
    killed before its commit is replaced, and the re-run succeeds.
    """
    signers: dict[str, list[SignerRef]] = {role: [] for role in SIGNED_ROLES}
    keys_dir = path / "keys"
    for role in SIGNED_ROLES:
        for n in range(1, (root_keys if role == Root.type else 1) + 1):
            key, _uri = write_keypair(
                keys_dir / f"DEV-ONLY-{role}-{n}.pem", label=DEV_KEY_WARNING, overwrite=True
            )
            signers[role].append(SignerRef(key, f"file2:keys/DEV-ONLY-{role}-{n}.pem"))
    return signers


def log_key_config(
    path: Path,
    *,
    dev_keys: bool,
    origin: str | None,
    pem: Path | None,
    secrets_handler: SecretsHandler,
) -> LogKeyConfig:
    """The transparency log's note key: the operator's own PEM (``--log-key``), else a new one,
    unencrypted beside the development keys or encrypted with a passphrase. No head exists yet, so a
    key an interrupted init left can be replaced."""
    if pem is not None:
        return existing_log_key(pem, origin=origin, secrets_handler=secrets_handler)
    return new_log_key(
        path,
        origin=origin,
        passphrase=None if dev_keys else secrets_handler("passphrase for the new log key"),
        label=DEV_KEY_WARNING if dev_keys else None,
        file_name="DEV-ONLY-log.pem" if dev_keys else "log.pem",
        overwrite=True,
    )


def configuration(
    signers: dict[str, list[SignerRef]], *, root_threshold: int, image_size_cap: int, dev_keys: bool
) -> RepoConfig:
    """The configuration `init` writes.

    Raises:
        ConfigurationError: a role without keys, or a root threshold above the number of root keys.
    """
    empty = [role for role in TOP_LEVEL_ROLES if not signers[role]]
    if empty:
        raise ConfigurationError(
            f"--key: found no key for {empty}, expected at least one per top-level role"
        )
    if root_threshold > len(signers[Root.type]):
        raise ConfigurationError(
            f"--root-threshold: found {root_threshold}, expected at most {len(signers[Root.type])} (root keys)"
        )
    provider = bool(signers.get(PROVIDER_ROLE))
    policy = DEFAULT_POLICY.from_dict(
        DEFAULT_POLICY.to_dict()
        | {"root_keys": len(signers[Root.type]), "root_threshold": root_threshold}
        # With cfl-provider signing the routine documents, targets changes only in ceremonies:
        # it lives a year and is re-signed at the yearly ceremony with root (docs/design.md).
        | ({"targets_expiry_days": PROVIDER_TARGETS_EXPIRY_DAYS} if provider else {})
    )
    # cfl-provider (issue 13) is optional here only so that a production init may leave it out
    # and adopt it later (`cfl-repo provider adopt`); development keys always include it.
    return RepoConfig(
        policy=policy,
        signers={role: tuple(refs) for role, refs in signers.items() if refs},
        thresholds={role: 1 for role, refs in signers.items() if refs}
        | {Root.type: root_threshold},
        image_size_cap=image_size_cap,
        dev_keys=dev_keys,
    )


def initialise(
    path: Path,
    config: RepoConfig | Callable[[], RepoConfig],
    *,
    now: datetime,
    secrets_handler: SecretsHandler | None = None,
    lock: LockPolicy | None = None,
) -> Repository:
    """Create version 1 of root and targets in a new working directory, in one commit; with
    ``cfl-provider`` keys configured, targets delegates ``cfl/...`` to that online role from the
    start and its (empty) version 1 lands in the same commit.

    ``config`` may be a function that makes it (writing development or log keys): it runs under
    the repository lock, after the check that ``path`` is no repository yet, so a second init
    started at the same time waits or is refused and then finds the first one's repository.

    Raises:
        ConfigurationError: the directory is a repository already, or a key cannot sign.
        BusyError: another process holds the repository lock.
    """
    refuse_initialised(path)
    held = RepositoryLock(path, lock)
    with held.hold(lambda: None):
        refuse_initialised(path)  # again, now that no other init can be running
        built = config() if callable(config) else config
        repo = Repository(path, built, secrets_handler=secrets_handler, lock=lock)
        repo.lock = held  # the hold taken above, so any `locked` inside nests in it
        _create(repo, built, now)
    return repo


def _create(repo: Repository, config: RepoConfig, now: datetime) -> None:
    root = Root(version=1, expires=now + config.policy.expiry(Root.type), consistent_snapshot=True)
    root.spec_version = SPEC_VERSION
    for role in TOP_LEVEL_ROLES:
        for ref in config.signers[role]:
            root.add_key(ref.public_key, role)
        root.roles[role].threshold = config.thresholds[role]
    root_md = repo.sign(Metadata(root), Root.type, delegator=None)
    targets = Targets(version=1, expires=now + config.policy.expiry(Targets.type))
    targets.spec_version = SPEC_VERSION
    roles: dict[str, int] = {}
    if config.has_provider_keys:
        keys = [ref.public_key for ref in config.signers[PROVIDER_ROLE]]
        delegate_provider(targets, keys, config.thresholds[PROVIDER_ROLE])
        provider = first_provider_role(
            {},
            now=now,
            expires_in=config.policy.expiry(PROVIDER_ROLE),
            spec_version=SPEC_VERSION,
        )
        repo.write_metadata(
            PROVIDER_ROLE, repo.sign(Metadata(provider), PROVIDER_ROLE, delegator=targets)
        )
        roles[PROVIDER_ROLE] = 1
    targets_md = repo.sign(Metadata(targets), Targets.type, delegator=root)
    repo.write_metadata(Root.type, root_md)
    repo.write_metadata(Targets.type, targets_md)
    config.save(repo.path)
    repo.commit(
        Head(roles=roles),
        event={"event": "init", "at": format_timestamp(now), "dev_keys": config.dev_keys},
    )
